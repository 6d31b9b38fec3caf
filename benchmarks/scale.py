"""Scale benchmark: the frame chain on frames growing along pixels and along pairs, a fitted cost model per
stage, and the projection to one real frame and to the Tibetan Plateau from the measured rates.

    python benchmarks/scale.py --json bench-output/scale.json \
        [--pixels 128 256 512] [--pixel-epochs 30] [--pairs-epochs 45 90] [--pairs-size 128] \
        [--stages ingest qc quality invert noise forecast unwrap] [--workers 2] [--memory-limit 2GiB]

Each case simulates one frame (``insarcloud.simulate`` preset ``tibet_basin``, the demo's network: each epoch
to its next 3-4 acquisitions, so pairs ~ 3.4 x epochs) into a LiCSAR tree on moto's S3 server, then runs the
area job's own stage entry points (``insarcloud.pipelines.area_job.STAGES``) one after the other on one Dask
LocalCluster (worker processes with an explicit ``memory_limit``) and one local Ray. ``unwrap`` runs on a
sample of pairs (``--unwrap-pairs``) of the frame's wrapped phase and is scaled to all pairs in the model.

Per stage and case: wall seconds; CPU seconds of every process (this driver, each Dask worker, Ray's
processes, the S3 server) from ``psutil`` before/after; peak RSS per Dask worker and per Ray process (sampled
every 0.2 s); bytes written to the store (the bucket's growth under the case's prefix). Bytes read from the
store are not measured (the S3 server's socket traffic is not in its process I/O counters).

Cost model per stage, least squares over all cases: ``cpu_s = a * pixels * pairs + b * pixels + c``
(``pixels * epochs`` is folded into ``a`` since epochs ~ pairs / 3.4 in this network). Projection: one real
frame (``--frame-pixels`` 7e6, ``--frame-pairs`` 700) in core-hours, then the plateau (``--frames`` 241) on
``--project-workers`` cores, if the frames share the cores perfectly; the goals (<= 1 core-hour per frame,
plateau < 4 h on 100 workers) and the stage that holds each back, by how much.

Figures taken on a shared, loaded machine are not comparable to a quiet one; the ratios between stages of
the same run are. A progress line goes to stderr at every step; the JSON is rewritten after every case. A full
frame for an unattended run: ``--pixels 2500x2800 --pixel-epochs 200 --pairs-epochs 200 --pairs-size 512``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # after PYTHONPATH (the tree under test), as _common
    sys.path.append(str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import psutil  # noqa: E402
from _common import classify, write_json  # noqa: E402

BUCKET = "s3://insarcloud-scale"
FRAME = "012A_05443_131313"
CHAIN = ("ingest", "qc", "quality", "invert", "noise", "forecast", "unwrap")


def progress(msg: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------------
# process accounting


class Probe:
    """CPU seconds and I/O bytes of the driver and all its descendants; peak RSS sampled in a thread."""

    def __init__(self, worker_pids: set[int]) -> None:
        self.worker_pids = worker_pids
        self.peak: dict[int, int] = {}
        # last reading of every process seen during a stage: a Ray actor killed at the stage's end is gone from
        # the closing snapshot, and its CPU would be lost (it is most of quality's and forecast's)
        self.last: dict[int, dict[str, Any]] = {}
        self.kinds: dict[int, str] = {}
        self.own_cpu = 0.0  # CPU seconds of the sampler thread itself during the last stage
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def procs(self) -> list[psutil.Process]:
        me = psutil.Process()
        return [me, *me.children(recursive=True)]

    def snapshot(self) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        for p in self.procs():
            try:
                with p.oneshot():
                    t = p.cpu_times()
                    io = p.io_counters()
                    # the first kind seen sticks: an exiting process's command line reads as "gone"
                    kind = self.kinds.get(p.pid) or ("dask_worker" if p.pid in self.worker_pids else classify(p))
                    if kind != "gone":
                        self.kinds[p.pid] = kind
                    out[p.pid] = {"kind": kind, "cpu": t.user + t.system, "rchar": io.read_chars,
                                  "wchar": io.write_chars}
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return out

    def _sample(self) -> None:
        t0 = time.thread_time()
        try:
            self._sample_loop()
        finally:
            self.own_cpu = time.thread_time() - t0

    def _sample_loop(self) -> None:
        while not self._stop.wait(0.2):
            for p in self.procs():
                try:
                    rss = p.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                self.peak[p.pid] = max(self.peak.get(p.pid, 0), rss)
            self.last.update(self.snapshot())

    def start(self) -> dict[int, dict[str, Any]]:
        self.peak = {}
        self.last = {}
        self.own_cpu = 0.0
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self.snapshot()

    def stop(self, before: dict[int, dict[str, Any]]) -> dict[str, Any]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        after = {**self.last, **self.snapshot()}  # exited processes: their last reading (<= 0.2 s lost)
        per: dict[str, dict[str, Any]] = {}
        me = os.getpid()
        for pid, a in after.items():
            b = before.get(pid, {"cpu": 0.0, "rchar": 0, "wchar": 0})  # a process started during the stage
            # this sampler thread runs in the driver's process; its CPU (reading /proc of every process five
            # times a second, ~1-2 % of a core) is the benchmark's, not the job's
            own = self.own_cpu if pid == me else 0.0
            d = {"cpu_s": round(a["cpu"] - b["cpu"] - own, 3), "rchar": a["rchar"] - b["rchar"],
                 "wchar": a["wchar"] - b["wchar"], "peak_rss_mb": round(self.peak.get(pid, 0) / 2**20, 1)}
            if d["cpu_s"] > 0.005 or a["kind"] in ("driver", "dask_worker"):
                per[f"{a['kind']}:{pid}"] = d
        by_kind: dict[str, float] = {}
        for key, d in per.items():
            k = key.split(":")[0]
            by_kind[k] = round(by_kind.get(k, 0.0) + d["cpu_s"], 3)
        s3 = [d for k, d in per.items() if k.startswith("s3:")]
        return {
            "cpu_s": compute_cpu(per),
            "cpu_s_by_kind": by_kind,
            "peak_rss_mb_per_worker": {k: d["peak_rss_mb"] for k, d in per.items()
                                       if k.startswith(("dask_worker", "ray"))},
            "peak_rss_mb_driver": max((d["peak_rss_mb"] for k, d in per.items() if k.startswith("driver")),
                                      default=0.0),
            # the S3 server's socket traffic is not in its I/O counters (recv/send are not read/write): the
            # bytes written are the bucket's growth (run_case); its rchar/wchar are kept for what they are
            "s3_server_rchar": sum(d["rchar"] for d in s3),
            "s3_server_wchar": sum(d["wchar"] for d in s3),
            "processes": per,
            "probe_cpu_s_excluded": round(self.own_cpu, 3),
        }


def compute_cpu(processes: dict[str, dict[str, Any]]) -> float:
    """CPU seconds of the job's processes (all but the S3 server, which stands for the bucket). A process
    that exited while being read is "gone" (a Ray actor killed at the stage's end): it is the job's."""
    return round(sum(d["cpu_s"] for k, d in processes.items() if not k.startswith("s3:")), 3)


# ----------------------------------------------------------------------------------------------------
# one case


def shape_of(size: str) -> tuple[int, int]:
    """"512" -> (512, 512); "2500x2800" -> (2500, 2800) (rows x columns)."""
    h, _, w = str(size).partition("x")
    return int(h), int(w or h)


def simulate_case(prefix: str, size: str, epochs: int, so: dict[str, Any]) -> dict[str, Any]:
    """Simulate and upload one case's frame in a spawned process: the simulator holds the whole stack (~7 GB
    for a full frame of 12 epochs), which would otherwise be the driver's peak RSS, not the job's."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_simulate_case, prefix, size, epochs, so).result()


def _simulate_case(prefix: str, size: str, epochs: int, so: dict[str, Any]) -> dict[str, Any]:
    from insarcloud.pipelines.demo import PRESET, frame_centre
    from insarcloud.simulate import write_licsar_frame
    from insarcloud.simulate.factors import simulate_factors, write_factor_stack
    from insarcloud.simulate.presets import simulate_preset_frame

    shape = shape_of(size)
    lon0, lat0 = frame_centre(0.0, 0.0, max(shape))
    sim = simulate_preset_frame(FRAME, PRESET, shape=shape, n_epochs=epochs, seed=1, lon0=lon0, lat0=lat0)
    write_licsar_frame(sim, f"{prefix}/licsar", so)
    f = simulate_factors(sim.dates[0], sim.dates[-1], sim.lat[::8], sim.lon[::8], rng=np.random.default_rng(1))
    write_factor_stack(f, f"{prefix}/factors/{FRAME}.zarr", "zarr", so)
    return {"pairs": len(sim.pairs), "epochs": len(sim.dates), "pixels": shape[0] * shape[1]}


def case_config(prefix: str, size: str, endpoint: str, stages: list[str]) -> Any:
    from insarcloud.config import parse_config
    from insarcloud.pipelines.demo import config_dict

    d = config_dict([FRAME], [s for s in stages if s != "unwrap"], endpoint, size=max(shape_of(size)))
    d.update(source_url=f"{prefix}/licsar", output_url=prefix)
    if max(shape_of(size)) > 512:  # the demo's one model tile per frame would be a 2,800 px forward pass:
        d["params"]["quality"] = {"num_actors": 1}  # the stage's own (the chart's) tile, overlap and batch
    d["report"] = {}
    return parse_config(d, "<scale>")


def unwrap_sample(cfg: Any, n_pairs: int, so: dict[str, Any]) -> dict[str, Any]:
    """Unwrap ``n_pairs`` evenly spaced pairs of the cube's wrapped phase (a sub-cube written beside it)."""
    from insarcloud import io
    from insarcloud.unwrap.dask_ops import unwrap_cube

    url = cfg.cube_url(FRAME)
    ds = io.open_cube(url, so)
    idx = np.unique(np.linspace(0, ds.sizes["pair"] - 1, n_pairs).round().astype(int))
    sub = ds[["phase", "coh"]].isel(pair=idx)
    sub_url = url.replace(".zarr", "_unwrap_sample.zarr")
    io.write_new_cube(sub.load(), sub_url, so)
    p = cfg.params.unwrap
    unwrap_cube(sub_url, p.method, tile=p.tile, overlap=p.overlap, storage_options=so)
    return {"sample_pairs": int(idx.size)}


def store_bytes(prefix: str, so: dict[str, Any]) -> int:
    """Bytes under ``prefix`` in the bucket (what the stages have written there)."""
    import s3fs

    fs = s3fs.S3FileSystem(**so, use_listings_cache=False)
    return int(sum(fs.du(prefix.removeprefix("s3://"), total=False).values())) if fs.exists(prefix) else 0


def run_case(axis: str, size: str, epochs: int, stages: list[str], args: argparse.Namespace, endpoint: str,
             so: dict[str, Any], client: Any, probe: Probe) -> dict[str, Any]:
    from insarcloud.pipelines.area_job import run_frame_stage, stage_context

    prefix = f"{BUCKET}/{axis}_{size}_{epochs}"
    progress(f"{axis}: simulating {size} px, {epochs} epochs")
    t0 = time.perf_counter()
    meta = simulate_case(prefix, size, epochs, so)
    meta.update(axis=axis, size=size, simulate_s=round(time.perf_counter() - t0, 1), stages={})
    cfg = case_config(prefix, size, endpoint, stages)
    outputs: dict[str, Any] = {}
    for stage in stages:
        progress(f"{axis} {size} px {meta['pairs']} pairs: {stage} started")
        size0 = store_bytes(prefix, so)
        before = probe.start()
        t1 = time.perf_counter()
        err = None
        extra: dict[str, Any] = {}
        try:
            if stage == "unwrap":
                extra = unwrap_sample(cfg, args.unwrap_pairs, so)
            else:
                ctx = stage_context(cfg, FRAME, client=client, upstream=outputs)
                outputs[stage] = run_frame_stage(cfg, FRAME, stage, ctx)
        except Exception as exc:  # noqa: BLE001 (a failing stage is reported, the next case still runs)
            err = f"{type(exc).__name__}: {exc}"
            logging.getLogger("scale").exception("stage %s failed", stage)
        wall = time.perf_counter() - t1
        m = probe.stop(before)
        m.update(wall_s=round(wall, 2), error=err, store_written_bytes=store_bytes(prefix, so) - size0, **extra)
        meta["stages"][stage] = m
        progress(f"{axis} {size} px {meta['pairs']} pairs: {stage} {'FAILED ' + err if err else 'done'} "
                 f"wall {wall:.1f}s cpu {m['cpu_s']:.1f}s, worker peak "
                 f"{max(m['peak_rss_mb_per_worker'].values(), default=0):.0f} MB")
        if err and stage == "ingest":
            break
    return meta


# ----------------------------------------------------------------------------------------------------
# model and projection


def fit(cases: list[dict[str, Any]], stage: str) -> dict[str, Any] | None:
    rows, y = [], []
    for c in cases:
        s = c["stages"].get(stage)
        if not s or s.get("error"):
            continue
        pairs = c["pairs"]
        if stage == "unwrap":  # the sample's cost, per pair, times the frame's pairs
            scale = pairs / max(1, s.get("sample_pairs", pairs))
            rows.append([c["pixels"] * pairs, c["pixels"], 1.0])
            y.append(s["cpu_s"] * scale)
            continue
        rows.append([c["pixels"] * pairs, c["pixels"], 1.0])
        y.append(s["cpu_s"])
    if len(rows) < 3:
        return None
    a = np.asarray(rows, float)
    b = np.asarray(y, float)
    # scale columns so the solve is well conditioned; non-negative coefficients (costs do not shrink)
    from scipy.optimize import nnls

    norm = a.max(axis=0)
    coef, _ = nnls(a / norm, b)
    coef = coef / norm
    pred = a @ coef
    return {"a_cpu_s_per_pixel_pair": float(coef[0]), "b_cpu_s_per_pixel": float(coef[1]), "c_cpu_s": float(coef[2]),
            "max_rel_residual": float(np.max(np.abs(pred - b) / np.maximum(b, 1e-9))), "n_cases": len(rows)}


def project(models: dict[str, dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    px, pairs = args.frame_pixels, args.frame_pairs
    per_stage = {s: (m["a_cpu_s_per_pixel_pair"] * px * pairs + m["b_cpu_s_per_pixel"] * px + m["c_cpu_s"]) / 3600
                 for s, m in models.items() if m}
    total = sum(per_stage.values())
    goal_frame = 1.0
    plateau_h = total * args.frames / args.project_workers
    worst = max(per_stage, key=per_stage.get) if per_stage else None
    return {
        "frame": {"pixels": px, "pairs": pairs},
        "core_hours_per_frame_by_stage": {k: round(v, 3) for k, v in sorted(per_stage.items(), key=lambda kv: -kv[1])},
        "core_hours_per_frame": round(total, 3),
        "goal_core_hours_per_frame": goal_frame,
        # nothing fitted (fewer than 3 cases of a stage) is not a met goal
        "frame_goal_met": (total <= goal_frame) if per_stage else None,
        "frame_goal_factor": round(total / goal_frame, 2),
        "plateau_frames": args.frames,
        "plateau_workers": args.project_workers,
        "plateau_hours_if_perfectly_shared": round(plateau_h, 2),
        "plateau_goal_hours": 4.0,
        "plateau_goal_met": (plateau_h < 4.0) if per_stage else None,
        "holding_back": worst,
        "holding_back_core_hours": round(per_stage.get(worst, 0.0), 3) if worst else None,
        "over_goal_without_it": round((total - per_stage.get(worst, 0.0)) / goal_frame, 2) if worst else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--pixels", nargs="*", default=["128", "256", "512"],
                    help="frame sizes of the pixel axis: N (square) or HxW, e.g. 2500x2800 (a full frame)")
    ap.add_argument("--pixel-epochs", type=int, default=30,
                    help="epochs of the pixel-axis cases (the forecast stage needs 28 or more)")
    ap.add_argument("--pairs-epochs", type=int, nargs="*", default=[45, 90],
                    help="epochs of the pair-axis cases (pairs ~ 3.4 x epochs)")
    ap.add_argument("--pairs-size", default="128", help="square size of the pair-axis cases")
    ap.add_argument("--stages", nargs="*", default=list(CHAIN), choices=CHAIN)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="2GiB", help="memory_limit of every Dask worker")
    ap.add_argument("--malloc-threshold", type=int, default=0,
                    help="glibc trim and mmap thresholds of the Dask workers in bytes (0: Dask's setting; "
                         "insarcloud.engines.MALLOC_THRESHOLD is the value measured in docs/scale.md)")
    ap.add_argument("--unwrap-pairs", type=int, default=4)
    ap.add_argument("--frame-pixels", type=float, default=7e6)
    ap.add_argument("--frame-pairs", type=float, default=700)
    ap.add_argument("--frames", type=int, default=241)
    ap.add_argument("--project-workers", type=int, default=100)
    ap.add_argument("--refit", nargs="+", default=None, metavar="JSON",
                    help="measure nothing: merge the cases of earlier runs' JSON files (a later file's stage "
                    "replaces an earlier one's for the same case), recount each stage's CPU from its processes, "
                    "and fit and project again (e.g. a stage re-measured after a speed-up)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stages = [s for s in CHAIN if s in args.stages]
    t0 = time.perf_counter()
    if args.refit:
        cases = merged_cases(args.refit)
        summarize(cases, [s for s in CHAIN if any(s in c["stages"] for c in cases)], args, t0,
                  sources=args.refit)
        return
    from insarcloud.engines import dask_client, init_ray, shutdown_ray
    from insarcloud.pipelines.local_s3 import local_s3

    cases: list[dict[str, Any]] = []
    with local_s3() as endpoint:
        import s3fs

        so = {"endpoint_url": endpoint}
        s3fs.S3FileSystem(**so).mkdir(BUCKET.removeprefix("s3://"))
        progress(f"starting {args.workers} Dask workers (memory_limit {args.memory_limit}) and local Ray")
        with dask_client(None, n_workers=args.workers, memory_limit=args.memory_limit,
                         malloc_threshold=args.malloc_threshold) as client:
            worker_pids = set(client.run(os.getpid).values())
            ray_up = False
            if any(s in stages for s in ("quality", "forecast")):
                try:  # a loaded machine can miss Ray's startup wait: the Dask stages are still measured
                    init_ray()
                    ray_up = True
                except Exception as exc:  # noqa: BLE001 (ray raises a bare Exception on startup timeout)
                    progress(f"local Ray did not start ({exc}): quality and forecast are skipped")
                    stages = [s for s in stages if s not in ("quality", "forecast")]
            try:
                probe = Probe(worker_pids)
                plan = [("pixels", s, args.pixel_epochs) for s in args.pixels]
                plan += [("pairs", args.pairs_size, e) for e in args.pairs_epochs]
                for k, (axis, size, epochs) in enumerate(plan, 1):
                    progress(f"case {k}/{len(plan)}")
                    cases.append(run_case(axis, size, epochs, stages, args, endpoint, so, client, probe))
                    if args.json:  # what an unattended run has measured so far survives a stop
                        write(args.json, {"benchmark": "scale", "partial": True, "cases": cases})
            finally:
                if ray_up:
                    shutdown_ray()
    summarize(cases, stages, args, t0)


def merged_cases(paths: list[str]) -> list[dict[str, Any]]:
    """Cases of several runs, keyed by (axis, size, epochs); each stage's CPU recounted by :func:`compute_cpu`
    (runs before the "gone" fix left exited Ray actors out of ``cpu_s``)."""
    by_key: dict[tuple[str, str, int], dict[str, Any]] = {}
    for path in paths:
        for c in json.loads(Path(path).read_text())["cases"]:
            key = (c["axis"], str(c["size"]), int(c["epochs"]))
            into = by_key.setdefault(key, {**c, "stages": {}})
            for stage, m in c["stages"].items():
                if "processes" in m:
                    m = {**m, "cpu_s": compute_cpu(m["processes"]), "from": path}
                into["stages"][stage] = m
    return list(by_key.values())


def summarize(cases: list[dict[str, Any]], stages: list[str], args: argparse.Namespace, t0: float,
              sources: list[str] | None = None) -> None:
    models = {s: fit(cases, s) for s in stages}
    out = {
        "benchmark": "scale",
        "machine": {"cpus": os.cpu_count(), "load_avg_1m_at_end": os.getloadavg()[0],
                    "note": "shared machine under load: compare stages within this run, not with other runs"},
        "workers": args.workers, "memory_limit": args.memory_limit, "malloc_threshold": args.malloc_threshold,
        "cases": cases,
        "cost_model": models,
        "projection": project({k: v for k, v in models.items() if v}, args),
        "seconds": round(time.perf_counter() - t0, 1),
        **({"refit_of": sources} if sources else {}),
    }
    print(json.dumps({"cost_model": out["cost_model"], "projection": out["projection"]}, indent=1))
    table = []
    for c in cases:
        for s, m in c["stages"].items():
            table.append(f"{c['axis']:6s} {c['size']:>9s} px {c['pairs']:4d} pairs {s:9s} wall {m['wall_s']:8.1f}s "
                         f"cpu {m['cpu_s']:8.1f}s peak/worker "
                         f"{max(m['peak_rss_mb_per_worker'].values(), default=0):7.0f} MB "
                         f"store written {m['store_written_bytes'] / 2**20:8.1f} MB"
                         f"{'  ' + m['error'] if m['error'] else ''}")
    print("\n".join(table))
    if args.json:
        write(args.json, out)


def write(path: str, data: dict[str, Any]) -> None:
    write_json(path, data, default=str)


if __name__ == "__main__":
    main()
