"""What several benchmarks share: the embedded object store, process classification, CPU of every process.

Imported by the scripts in this folder (``python benchmarks/X.py`` puts the folder on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# after PYTHONPATH, not before it: a --compare child's PYTHONPATH names the tree under test (inserted first, it made
# every "before" child and the workers it spawned import this tree: docs/invert.md)
if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.append(str(Path(__file__).resolve().parents[1]))

try:  # the CPU meters need it (the "bench" extra); write_json does not
    import psutil
except ImportError:  # pragma: no cover
    psutil = None

def write_json(path: str | Path | None, data: Any, **dumps: Any) -> None:
    """Write a benchmark's result to ``path`` (folders made; nothing when ``path`` is empty), one space indent."""
    if not path:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, **dumps))
    print("wrote", path)


def export_tree(repo: str | Path, ref: str, dest: Path) -> Path:
    """``ref``'s ``insarcloud`` package of the git repository ``repo`` unpacked into ``dest`` (made): a "before"
    tree to put on ``PYTHONPATH`` beside this one."""
    import subprocess

    dest.mkdir(parents=True)
    tar = subprocess.run(["git", "-C", str(repo), "archive", ref, "insarcloud"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=tar.stdout, check=True)
    return dest


#: Process kinds whose CPU is the job's compute (the S3 server is the store, reported apart).
COMPUTE_KINDS = ("driver", "dask_worker", "ray", "dask", "other")


def classify(p: psutil.Process) -> str:
    """driver, s3 (moto's server), ray (raylet, GCS, workers, actors), dask (workers, nannies) or other."""
    try:
        cmd = " ".join(p.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "gone"
    if p.pid == os.getpid():
        return "driver"
    if "moto.server" in cmd:
        return "s3"
    if "ray::" in cmd or "default_worker.py" in cmd or "ray/" in cmd or "raylet" in cmd or "gcs_server" in cmd:
        return "ray"
    if "dask" in cmd or "distributed" in cmd or "multiprocessing" in cmd or "spawn_main" in cmd:
        return "dask"
    return "other"


@contextlib.contextmanager
def embedded_s3(bucket: str, *, job_log: bool = True) -> Iterator[tuple[str, dict[str, Any]]]:
    """moto's S3 server on loopback (the demo's embedded default) with ``bucket`` created: ``(endpoint, so)``.
    ``job_log``: the area job's progress and failures (with tracebacks) on stderr, as in the demo."""
    from insarcloud.pipelines.local_s3 import local_s3

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if job_log:
        logging.getLogger("insarcloud.area_job").setLevel(logging.INFO)
    with local_s3() as endpoint:
        import s3fs

        so = {"endpoint_url": endpoint}
        s3fs.S3FileSystem(**so).mkdir(bucket.removeprefix("s3://"))
        yield endpoint, so


class CpuMeter:
    """Cumulative CPU seconds of this process and every descendant (Dask workers and nannies, Ray's raylet, GCS,
    workers and actors, the S3 server), by kind, including processes that exited: a sampler thread keeps each
    process's last reading (every ``interval`` s), so a process that exits loses at most that much.

    Use as a context manager; :meth:`totals` at any two moments gives the CPU spent in between.
    """

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self._seen: dict[int, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> None:
        me = psutil.Process()
        for p in [me, *me.children(recursive=True)]:
            try:
                with p.oneshot():
                    t = p.cpu_times()
                    cpu = t.user + t.system
                    kind = self._seen.get(p.pid, (None,))[0] or classify(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            with self._lock:
                old = self._seen.get(p.pid, (kind, 0.0))[1]
                self._seen[p.pid] = (kind, max(old, cpu))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._read()

    def __enter__(self) -> CpuMeter:
        self._read()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="cpu-meter")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def totals(self) -> dict[str, float]:
        """kind -> CPU seconds of every process seen so far (those alive read now)."""
        self._read()
        out: dict[str, float] = {}
        with self._lock:
            for kind, cpu in self._seen.values():
                out[kind] = out.get(kind, 0.0) + cpu
        return out


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """``{"cpu_s": compute CPU, "cpu_s_by_kind": {...}}`` spent between two :meth:`CpuMeter.totals`."""
    by_kind = {k: round(after.get(k, 0.0) - before.get(k, 0.0), 2) for k in sorted(set(before) | set(after))}
    by_kind = {k: v for k, v in by_kind.items() if v > 0.005}
    return {"cpu_s": round(sum(v for k, v in by_kind.items() if k in COMPUTE_KINDS), 2), "cpu_s_by_kind": by_kind}


@contextlib.contextmanager
def per_stage_cpu(meter: CpuMeter) -> Iterator[dict[str, dict[str, Any]]]:
    """While active, every stage the area job runs (``area_job.STAGES`` and the mosaic) records its wall and CPU
    seconds (all processes: one frame at a time, so the whole process tree is that stage's) into the yielded
    dict, stage -> ``{"wall_s", "cpu_s", "cpu_s_by_kind"}``."""
    import insarcloud.mosaic.area as mosaic_area
    from insarcloud.pipelines import area_job

    record: dict[str, dict[str, Any]] = {}

    def metered(stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            c0, t0 = meter.totals(), time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                record[stage] = {"wall_s": round(time.perf_counter() - t0, 2), **cpu_delta(c0, meter.totals())}
        return run

    saved_stages, saved_mosaic = dict(area_job.STAGES), mosaic_area.run_mosaic
    area_job.STAGES.update({s: metered(s, f) for s, f in saved_stages.items()})
    mosaic_area.run_mosaic = metered("mosaic", saved_mosaic)  # type: ignore[assignment]
    try:
        yield record
    finally:
        area_job.STAGES.update(saved_stages)
        mosaic_area.run_mosaic = saved_mosaic  # type: ignore[assignment]
