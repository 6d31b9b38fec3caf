"""The invert stage's CPU on a real distributed cluster and on Dask's synchronous scheduler, two code trees.

The stage (``insarcloud.invert.dask_ops.invert_cube``: reference, inversion, write, quicklooks) runs on a copy
of one cube (a simulated ``tibet_basin`` frame written with ingest's encoding, ``qc_profile.make_cube``, or
``--cube``) in fresh subprocesses, one per (code tree, scheduler), alternated ``--repeat`` times:

- ``dist``: ``LocalCluster`` of 2 worker processes x 1 thread, ``memory_limit`` 4 GiB, workers spawned with
  ``MALLOC_MMAP_THRESHOLD_=33554432`` (``distributed.nanny.pre-spawn-environ``); CPU seconds of every process
  (driver with the scheduler, nannies, workers) by psutil, and the task stream's compute seconds by key prefix;
- ``sync``: ``dask.config.set(scheduler="synchronous")`` in the driver: its CPU seconds.

Both runs are split into phases by wrapping the functions ``invert_cube`` calls (CPU of every process between
entry and exit): ``plan`` (``invert_dataset``: the network, the reference and its series, the lazy graph),
``write`` (``write_stage_output``: the inversion itself, on the workers) and ``quicklooks``. ``--before REF``
exports that git ref's ``insarcloud`` (``git archive``) as the "before" tree; "after" is this tree. The outputs
of every run are compared with the first run's (every variable, NaN equal) and the reference pixels listed.

Without ``--cube`` the cube is simulated (``--size``, ``--epochs``) and, as the area chain has it before invert,
gets its qc group (``run_qc``, unless ``--no-qc``) and a quality group (unless ``--no-quality``): a stand-in for
the ConvNeXt map, ``0.05 + 0.95 * coh`` (float32, positive wherever coherence is finite, 0 where not, one pair
per chunk as the quality stage writes it), so the default weights (``quality_closure``) read a group of the real
layout. Its values are not a model's; the inversion's cost does not depend on them beyond which weights are 0.

``--profile``: each run is also sampled by py-spy (``--native``, 100 Hz, all threads; ``--py-spy``) in every
process that computes (the driver in ``sync``; the driver and each worker in ``dist``); samples whose innermost
frames wait (``IDLE_FRAMES``) are idle, the others split by the innermost matching frame into: ``read``
(Zarr/xarray reads and decoding, CF masks and scales), ``weights`` (quality/coherence weights, closure weights),
``kernel`` (``invert_pixels``; its connectivity ``kernel_labels`` apart), ``write`` (encoding and storing the
output), ``reference`` (``select_reference``), ``quicklooks``, ``array_ops`` (the graph's own array tasks: rechunk,
subtract, cast, multiply) and ``dask`` (the scheduler, the worker's event loop, serialization, the rest). Samples
are wall time of running or runnable threads, so the split is a share (``busy_share``), not CPU seconds; py-spy
pauses each process to sample it and shares the cores: profiled runs are for the split, their CPU totals are
not comparable with unprofiled ones.

Usage::

    PYTHONPATH=. python benchmarks/invert_dist.py --cube /path/cube.zarr --before HEAD --repo /work/main \\
        --weights closure --repeat 1 --json invert_dist.json
    PYTHONPATH=. python benchmarks/invert_dist.py --size 256 --epochs 200 --before main --repo . --repeat 3 \\
        --json invert_dist.json      # simulated cube with qc and quality groups, default weights
    PYTHONPATH=. python benchmarks/invert_dist.py --size 256 --epochs 200 --profile --repeat 1 --json prof.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from _common import export_tree  # noqa: E402 (it puts this tree's root first on sys.path: see _own_tree)

HERE = Path(__file__).resolve().parent
WORKER_ENV = {"MALLOC_MMAP_THRESHOLD_": 33554432}
PY_SPY = "/work/helpers/tools/bin/py-spy"

#: py-spy samples by the innermost frame that matches (function or file substrings), else "dask".
CATEGORIES = (
    ("quicklooks", ("stage_quicklooks", "insarcloud/plot/")),
    ("reference", ("select_reference",)),
    ("kernel_labels", ("_labels (", "pixel_components", "epoch_components")),
    ("kernel", ("invert_pixels", "insarcloud/invert/sbas.py", "insarcloud/invert/linalg.py")),
    ("weights", ("closure_weights", "quality_weights", "coherence_weights", "variable_weights",
                 "insarcloud/invert/weights.py", "insarcloud/invert/closure.py")),
    ("write", ("encode", "to_zarr", "dask/array/core.py:store", "store_chunk", "load_store_chunk",
               "write_stage_output", "__setitem__", "set_basic_selection", "_set_selection")),
    ("read", ("decode", "getter", "get_duck_array", "_apply_mask", "_scale_offset", "xarray/coding",
              "xarray/backends", "zarr/", "numcodecs", "fsspec")),
    ("array_ops", ("_task_spec.py", "dask/array/", "execute_task", "_execute_subgraph")),
)


#: a sampled stack with one of these among its 3 innermost frames waits (a lock, the GIL, a condition, the event
#: loop's poll): py-spy's own idle filter misses these native waits
IDLE_FRAMES = ("PyThread_acquire_lock", "pthread_cond_timedwait", "pthread_cond_wait", "epoll_wait", "select (",
               "poll (", "sem_wait", "sem_timedwait", "nanosleep", "futex", "take_gil", "accept (", "recv (")


def classify_stack(frames: list[str]) -> str:
    """The category of one sampled stack (root first): "idle" when it waits, else the innermost frame that
    names one wins."""
    if any(k in f for f in frames[-3:] for k in IDLE_FRAMES):
        return "idle"
    for f in reversed(frames):
        for cat, keys in CATEGORIES:
            if any(k in f for k in keys):
                return cat
    return "dask"


class Sampler:
    """py-spy ``record --format raw`` on some processes until :meth:`stop`; samples split by category."""

    def __init__(self, pids: list[int], out: Path, rate: int = 100, exe: str = PY_SPY) -> None:
        self.procs = []
        self.files = []
        for pid in pids:
            f = out / f"pyspy_{pid}.txt"
            cmd = [exe, "record", "--native", "-r", str(rate), "--format", "raw", "-o", str(f),
                   "-p", str(pid)]
            self.procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            self.files.append((pid, f))
        time.sleep(1.0)  # py-spy attaches

    def stop(self, rate: int = 100) -> dict[str, Any]:
        import signal

        for pr in self.procs:
            pr.send_signal(signal.SIGINT)
        for pr in self.procs:
            try:
                pr.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pr.kill()
        per: dict[str, dict[str, float]] = {}
        leaves: dict[str, float] = {}  # the unclassified ("dask") time by its innermost frames, to check the rules
        for pid, f in self.files:
            cats: dict[str, float] = {}
            for line in f.read_text().splitlines() if f.exists() else []:
                stack, _, n = line.rpartition(" ")
                if not stack or not n.isdigit():
                    continue
                frames = stack.split(";")
                c = classify_stack(frames)
                cats[c] = cats.get(c, 0.0) + int(n) / rate
                if c == "dask":
                    leaf = ";".join(frames[-3:])
                    leaves[leaf] = leaves.get(leaf, 0.0) + int(n) / rate
            per[str(pid)] = {k: round(v, 2) for k, v in sorted(cats.items(), key=lambda kv: -kv[1])}
        total: dict[str, float] = {}
        for cats in per.values():
            for k, v in cats.items():
                total[k] = total.get(k, 0.0) + v
        busy = sum(v for k, v in total.items() if k != "idle") or 1.0
        return {"sampled_s_by_process": per,
                "sampled_s": {k: round(v, 2) for k, v in sorted(total.items(), key=lambda kv: -kv[1])},
                "busy_share": {k: round(v / busy, 3) for k, v in sorted(total.items(), key=lambda kv: -kv[1])
                               if k != "idle"},
                "dask_top_leaves_s": {k: round(v, 2) for k, v in sorted(leaves.items(), key=lambda kv: -kv[1])[:15]}}


def _procs() -> list[Any]:
    import psutil

    me = psutil.Process()
    return [me, *me.children(recursive=True)]


def _cpu(procs: list[Any]) -> dict[int, float]:
    out = {}
    for p in procs:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system + t.children_user + t.children_system
        except Exception:  # noqa: BLE001 - a process that ended keeps its last figure below
            pass
    return out


class Meter:
    """CPU seconds of a set of processes (driver first) between two points; phases by wrapped functions."""

    def __init__(self) -> None:
        self.procs = _procs()
        self.phases: dict[str, float] = {}

    def total(self) -> float:
        return sum(_cpu(self.procs).values())

    def wrap(self, mod: Any, name: str, phase: str) -> None:
        f = getattr(mod, name)

        def wrapped(*a: Any, **k: Any) -> Any:
            c0 = self.total()
            try:
                return f(*a, **k)
            finally:
                self.phases[phase] = self.phases.get(phase, 0.0) + self.total() - c0
        setattr(mod, name, wrapped)


def _own_tree() -> str:
    """In a child (and in the worker processes it spawns, which import this script again as their main module):
    ``insarcloud`` from ``PYTHONPATH`` (the tree under test), not from the tree of this script, which ``_common``
    puts first on ``sys.path`` (while it did, every "before" run imported the "after" tree); raises if that is not
    what was imported."""
    tree = os.path.abspath(os.environ["INVERT_DIST_TREE"])
    mine = str(HERE.parent)
    if tree != mine:
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != mine]
    import insarcloud

    if not insarcloud.__file__.startswith(tree + os.sep):
        raise RuntimeError(f"imported {insarcloud.__file__}, not the tree under test {tree}")
    return insarcloud.__file__


if os.environ.get("INVERT_DIST_TREE"):
    _own_tree()


def child(args: argparse.Namespace) -> int:
    """One run of the stage (this process's PYTHONPATH is the code tree); prints one JSON line."""
    import dask

    import insarcloud
    import insarcloud.io
    import insarcloud.plot
    from insarcloud.invert import dask_ops

    res: dict[str, Any] = {"tree": args.tree, "mode": args.mode, "insarcloud": insarcloud.__file__}
    client = cluster = None
    ts = None
    if args.mode == "dist":
        from distributed import Client, LocalCluster

        env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
        env.update(WORKER_ENV)
        with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="4GiB",
                                   dashboard_address=None)
        client = Client(cluster)
        client.run(lambda: __import__("insarcloud.invert.dask_ops"))  # imports are not the stage's cost
        res["worker_env"] = client.run(lambda: os.environ.get("MALLOC_MMAP_THRESHOLD_"))
        trees = set(client.run(lambda: __import__("insarcloud").__file__).values())
        if trees != {insarcloud.__file__}:
            raise RuntimeError(f"workers imported {trees}, the driver {insarcloud.__file__}")
    meter = Meter()
    idle = None
    if client is not None:  # the cluster's own CPU while idle (event loops, heartbeats, the workers' profiler)
        a, t = meter.total(), time.perf_counter()
        time.sleep(args.idle_s)
        idle = (meter.total() - a) / (time.perf_counter() - t)
    meter.wrap(dask_ops, "invert_dataset", "plan")
    meter.wrap(insarcloud.io, "write_stage_output", "write")
    meter.wrap(insarcloud.plot, "stage_quicklooks", "quicklooks")
    sampler = None
    if args.profile:
        pids = [os.getpid()] + ([] if client is None else
                                [int(v) for v in client.run(os.getpid).values()])
        sampler = Sampler(pids, Path(args.profile), exe=args.py_spy)
    c0, t0 = _cpu(meter.procs), time.perf_counter()
    if client is not None:
        from distributed import get_task_stream

        with get_task_stream(client) as ts:
            group, plan = dask_ops.invert_cube(args.cube, weights=args.weights)
    else:
        with dask.config.set(scheduler="synchronous"):
            group, plan = dask_ops.invert_cube(args.cube, weights=args.weights)
    wall = time.perf_counter() - t0
    c1 = _cpu(meter.procs)
    if sampler is not None:
        res["profile"] = sampler.stop()
    per = {pid: c1[pid] - c0.get(pid, 0.0) for pid in c1}
    me = os.getpid()
    res.update(group=group, wall_s=round(wall, 2), cpu_s=round(sum(per.values()), 2),
               driver_cpu_s=round(per.pop(me), 2), other_cpu_s=sorted(round(v, 2) for v in per.values()),
               phases={k: round(v, 2) for k, v in meter.phases.items()},
               reference=[int(plan.reference.y), int(plan.reference.x)] if plan else None)
    if idle is not None:
        res.update(idle_cpu_per_s=round(idle, 4), cpu_minus_idle_s=round(res["cpu_s"] - idle * wall, 2))
    if ts is not None:
        by: dict[str, float] = {}
        for t in ts.data:
            key = t["key"][0] if isinstance(t["key"], tuple) else t["key"]
            pre = key.rsplit("-", 1)[0] if "-" in key else key
            for s in t["startstops"]:
                k = f"{s['action']}:{pre}"
                by[k] = by.get(k, 0.0) + s["stop"] - s["start"]
        res["task_stream_s"] = {k: round(v, 2) for k, v in sorted(by.items(), key=lambda kv: -kv[1])[:25]}
        res["n_tasks"] = len(ts.data)
    if client is not None:
        client.close()
        cluster.close()
    print("RESULT " + json.dumps(res), flush=True)
    return 0


def make_cube(base: Path, size: int, epochs: int, *, qc: bool = True, quality: bool = True) -> dict[str, Any]:
    """The simulated cube at ``base/cube.zarr`` (``qc_profile.make_cube``) with, as the area chain has them before
    invert, its qc group and a stand-in quality group (module docstring); its shape."""
    import dask
    import xarray as xr

    sys.path.insert(0, str(HERE))
    import qc_profile

    from insarcloud import io

    shape = qc_profile.make_cube(base, size, epochs)
    url = str(base / "cube.zarr")
    with dask.config.set(scheduler="synchronous"):
        if qc:
            from insarcloud.qc.dask_ops import run_qc

            run_qc(url)
        if quality:
            root = io.open_cube(url)
            q = xr.where(np.isfinite(root["coh"]), 0.05 + 0.95 * root["coh"].clip(0, 1), 0.0).astype(np.float32)
            q = q.chunk({"pair": 1, "y": root["unw"].encoding["chunks"][1], "x": root["unw"].encoding["chunks"][2]})
            coords = {k: root[k] for k in ("pair", "primary", "secondary", "y", "x", "lat", "lon") if k in root.coords}
            out = xr.Dataset({"quality": (("pair", "y", "x"), q.data)}, coords=coords)
            out["quality"].attrs.update(long_name="benchmark stand-in quality: 0.05 + 0.95 coh", units="1")
            out.attrs.update(quality_target="stand-in")
            io.write_stage_output(out, url, "quality", stage="quality", params={"stand_in": "0.05 + 0.95 coh"})
    return {**shape, "qc_group": qc, "quality_group": quality}


def compare_outputs(a: str, ga: str, b: str, gb: str) -> dict[str, Any]:
    import xarray as xr

    x = xr.open_zarr(a, group=ga, consolidated=False)
    y = xr.open_zarr(b, group=gb, consolidated=False)
    out: dict[str, Any] = {}
    for v in x.data_vars:
        u, w = np.asarray(x[v].values), np.asarray(y[v].values)
        out[v] = bool(u.shape == w.shape and np.array_equal(u, w, equal_nan=u.dtype.kind == "f"))
    out["ref_attrs_equal"] = all(x.attrs.get(k) == y.attrs.get(k) for k in ("ref_y", "ref_x"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--cube", help="cube to copy (default: simulate --size x --size, --epochs)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--weights", help="inversion weights (default: the stage's default, quality_closure)")
    ap.add_argument("--no-qc", action="store_true", help="simulated cube: no qc group (the reference counts unw)")
    ap.add_argument("--no-quality", action="store_true", help="simulated cube: no quality group")
    ap.add_argument("--keep-cube", type=Path, help="simulated cube: keep a copy here (reuse it with --cube)")
    ap.add_argument("--before", help="git ref whose insarcloud is the 'before' tree (of --repo)")
    ap.add_argument("--repo", default=str(HERE.parent), help="repository of --before")
    ap.add_argument("--modes", nargs="+", default=["dist", "sync"], choices=["dist", "sync"])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--workdir", type=Path, help="where the cube copies go (default: a temporary directory)")
    ap.add_argument("--idle-s", type=float, default=10.0, help="seconds of idle cluster CPU measured before a run")
    ap.add_argument("--profile", action="store_true", help="sample every computing process with py-spy")
    ap.add_argument("--py-spy", default=PY_SPY, help="py-spy executable")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tree", help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.weights is None and not args.child:
        from insarcloud.core.options import DEFAULT_INVERT_WEIGHTS

        args.weights = DEFAULT_INVERT_WEIGHTS
    if args.child:
        args.profile = os.environ.get("INVERT_DIST_PROFILE_DIR") if args.profile else None
        return child(args)
    base = Path(tempfile.mkdtemp(prefix="invert_dist_", dir=args.workdir))
    try:
        trees = {"after": str(HERE.parent)}
        if args.before:
            trees = {"before": str(export_tree(args.repo, args.before, base / "before")), **trees}
        src = args.cube
        shape: dict[str, Any] = {}
        if src is None:
            shape = make_cube(base, args.size, args.epochs, qc=not args.no_qc, quality=not args.no_quality)
            src = str(base / "cube.zarr")
            if args.keep_cube:
                shutil.copytree(src, args.keep_cube)
        runs: list[dict[str, Any]] = []
        for rep in range(args.repeat):
            for mode in args.modes:
                for tree, path in trees.items():
                    cube = base / f"{tree}_{mode}_{rep}.zarr"
                    shutil.copytree(src, cube)
                    env = {**os.environ, "PYTHONPATH": path, "INVERT_DIST_TREE": path,
                           "INVERT_DIST_PROFILE_DIR": str(base)}
                    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--tree", tree, "--mode", mode,
                           "--cube", str(cube), "--weights", args.weights, "--idle-s", str(args.idle_s),
                           "--py-spy", args.py_spy] + (["--profile"] if args.profile else [])
                    p = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=path)
                    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
                    if p.returncode or not line:
                        raise RuntimeError(f"{tree}/{mode} failed:\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}")
                    r = json.loads(line[-1][7:])
                    r["repeat"] = rep
                    if runs:
                        r["same_output_as_first"] = compare_outputs(runs[0]["cube"], runs[0]["group"], str(cube),
                                                                    r["group"])
                    r["cube"] = str(cube)
                    runs.append(r)
                    idle = (f" idle {r['idle_cpu_per_s']:.3f} cpu-s/s, less idle x wall {r['cpu_minus_idle_s']:.1f}"
                            if "idle_cpu_per_s" in r else "")
                    print(f"{tree:6s} {mode:4s} cpu {r['cpu_s']:7.1f} s (driver {r['driver_cpu_s']:.1f}) "
                          f"wall {r['wall_s']:6.1f} s phases {r['phases']} ref {r['reference']}{idle}", flush=True)
                    if "task_stream_s" in r:
                        print("        task stream:", dict(list(r["task_stream_s"].items())[:8]), flush=True)
                    if "profile" in r:
                        print("        py-spy busy share:", r["profile"]["busy_share"], flush=True)
                    if "same_output_as_first" in r:
                        print("        same output as the first run:", r["same_output_as_first"], flush=True)
                    shutil.rmtree(cube.with_suffix(".done"), ignore_errors=True)
        summary = {}
        for mode in args.modes:
            for tree in trees:
                sel = [r["cpu_s"] for r in runs if r["mode"] == mode and r["tree"] == tree]
                summary[f"{tree}_{mode}_cpu_s_min"] = min(sel)
        for tree in trees:
            if "dist" in args.modes and "sync" in args.modes:
                summary[f"{tree}_dist_over_sync"] = round(summary[f"{tree}_dist_cpu_s_min"]
                                                          / summary[f"{tree}_sync_cpu_s_min"], 3)
        if args.before:
            for mode in args.modes:
                summary[f"before_over_after_{mode}"] = round(summary[f"before_{mode}_cpu_s_min"]
                                                             / summary[f"after_{mode}_cpu_s_min"], 3)
        print(json.dumps(summary, indent=1))
        for r in runs:
            r.pop("cube", None)
        doc = {"shape": shape, "cube": args.cube, "weights": args.weights, "before": args.before, "runs": runs,
               "summary": summary, "load_avg": os.getloadavg(), "cpu_count": os.cpu_count()}
        if args.json:
            args.json.write_text(json.dumps(doc, indent=1))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
