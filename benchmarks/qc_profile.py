"""QC stage profile and before/after comparison at a realistic pair count (issue 20).

A simulated frame (``tibet_basin`` preset: each epoch paired with its next 3-4, LiCSAR-like; water masked by its
landmask) is written as a Zarr cube on local disk with the ingest encoding (one pair per chunk, uint8
coherence), then QC runs as the stage does (``open_cube`` with ``read_chunks`` -> ``qc_dataset`` ->
``storable`` -> ``to_zarr``) on Dask's synchronous scheduler, one thread (``OMP_NUM_THREADS=1``).

``--profile``: cProfile of that run, time split into kernels (closure, statistics, labels), Zarr codecs
(encode/decode), rechunk/shuffle (concatenate, getitem of the rechunk), Dask graph building/scheduling and
the rest, with the top functions.

``--compare REF``: the same run with the code of git ``REF`` (exported with ``git archive`` to a temporary
directory) and with this tree, alternated ``--repeat`` times in fresh subprocesses (best CPU time of each), the
ratio, and a check that both wrote the same qc group (every variable compared: bit-identical, or the largest
difference).

Usage::

    PYTHONPATH=. python benchmarks/qc_profile.py --json qc_profile.json --size 128 --epochs 120 --profile
    PYTHONPATH=. python benchmarks/qc_profile.py --json qc_compare.json --size 128 --epochs 120 --compare d288a9c
    PYTHONPATH=. python benchmarks/qc_profile.py --json qc_cluster.json --size 256 --epochs 200 --compare 4a290ef \
        --workers 2 --no-malloc-trim --repeat 2

``--workers N`` (with ``--compare``): each tree also runs on a distributed ``LocalCluster`` of N worker processes,
CPU of every process (driver with the scheduler, workers), beside its synchronous anchor (docs/qc.md, "On a
cluster").
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from _common import export_tree  # noqa: E402

FRAME = "012A_05850_131313"
REAL_FRAME_PX_PAIRS = 7e6 * 700  # docs/scale.md: one LiCSAR frame, 7e6 px x ~700 pairs

#: cProfile's functions by where their time counts (first match on "file:function" wins).
CATEGORIES = (
    ("codec", ("zarr/codecs", "numcodecs", "blosc", "zstd", "zarr/core/codec", "crc32c")),
    ("kernel", ("insarcloud/qc/closure.py", "insarcloud/qc/stats.py", "insarcloud/qc/labels.py",
                "insarcloud/qc/products.py", "scipy/ndimage", "insarcloud/core/phase.py")),
    ("rechunk", ("dask/array/core.py:concatenate3", "dask/array/rechunk.py", "dask/array/chunk.py:getitem",
                 "numpy/core/multiarray:concatenate", "_concatenate")),
    ("zarr_io", ("zarr/", "xarray/backends", "fsspec", "obstore")),
    ("graph", ("dask/", "toolz", "tlz")),
)


def make_cube(root: Path, size: int, epochs: int) -> dict[str, Any]:
    """Simulate and write the cube at ``root/cube.zarr`` (ingest's encoding); its shape."""
    from insarcloud import io
    from insarcloud.io.cube import cube_encoding
    from insarcloud.simulate.presets import simulate_preset_frame

    sim = simulate_preset_frame(FRAME, "tibet_basin", shape=(size, size), n_epochs=epochs, seed=1,
                                lon0=90.0, lat0=30.0)
    ds = io.make_frame_dataset(frame=FRAME, pairs=sim.pairs, lat=sim.lat, lon=sim.lon, phase=sim.phase,
                               coh=sim.coherence_est, unw=sim.unw,
                               statics={"landmask": sim.landmask.astype(np.float32)})
    url = str(root / "cube.zarr")
    ds.to_zarr(url, mode="w", zarr_format=3, consolidated=False, encoding=cube_encoding(ds, coh_uint8=True))
    io.cube.consolidate(url, None)
    return {"pairs": len(sim.pairs), "epochs": epochs, "y": size, "x": size,
            "pixel_pairs": len(sim.pairs) * size * size,
            "water_fraction": float((sim.landmask == 0).mean())}


def cube_shape(url: Path) -> dict[str, Any]:
    """The shape entry of ``make_cube`` for an existing cube."""
    import xarray as xr

    ds = xr.open_zarr(str(url), consolidated=False)
    n, ny, nx = ds["phase"].shape
    lm = ds["landmask"].values if "landmask" in ds else np.ones((ny, nx))
    return {"pairs": n, "epochs": len(set(ds["primary"].values) | set(ds["secondary"].values)), "y": ny, "x": nx,
            "pixel_pairs": n * ny * nx, "water_fraction": float((lm == 0).mean())}


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run_qc_once(root: Path, out: Path, block: int | None, workers: int = 0, trim: bool = True) -> dict[str, Any]:
    """QC of ``root/cube.zarr`` into ``out``: CPU and wall seconds. ``workers`` 0: Dask's synchronous scheduler in
    this process; N: a distributed ``LocalCluster`` of N worker processes of one thread (``memory_limit`` 4 GiB,
    the chart's worker), its scheduler and the client in this process; CPU of every process (driver and
    workers) after the cluster has started. ``trim`` False drops distributed's ``MALLOC_TRIM_THRESHOLD_`` from the
    workers' environment (it disables glibc's dynamic mmap threshold: every large array is mmap'd and
    page-faulted)."""
    import dask

    from insarcloud.qc import dask_ops
    from insarcloud.qc.config import QCParams

    # the stage itself (``run_qc``: by stored tile where the tree has it, else by block; markers, leases and
    # quicklooks on both sides) on a copy of the cube made before the clock starts; the group is ``out/qc``
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(root / "cube.zarr", out)

    def qc() -> None:
        dask_ops.run_qc(str(out), QCParams(block=block))

    if workers:
        return _run_on_cluster(qc, workers, trim)
    c0, t0, m0 = time.process_time(), time.perf_counter(), time.thread_time()
    with dask.config.set(scheduler="synchronous"):
        qc()
    cpu, main = time.process_time() - c0, time.thread_time() - m0
    # zarr v3 decodes and encodes chunks on its own threads: process CPU minus this thread's
    return {"cpu_s": cpu, "wall_s": time.perf_counter() - t0, "main_thread_cpu_s": main,
            "other_threads_cpu_s": cpu - main}


def _run_on_cluster(qc: Any, workers: int, trim: bool) -> dict[str, Any]:
    import dask
    import psutil
    from distributed import Client, LocalCluster

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
    if not trim:
        env.pop("MALLOC_TRIM_THRESHOLD_", None)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env}), \
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, memory_limit="4GiB",
                         dashboard_address=None) as cluster, Client(cluster) as client:
        procs = [psutil.Process()] + [psutil.Process(p) for p in client.run(os.getpid).values()]

        def cpu() -> list[float]:
            return [sum(p.cpu_times()[:4]) for p in procs]

        c0, t0 = cpu(), time.perf_counter()
        qc()
        c1, wall = cpu(), time.perf_counter() - t0
    per = [b - a for a, b in zip(c0, c1, strict=True)]
    return {"cpu_s": sum(per), "wall_s": wall, "driver_cpu_s": per[0], "worker_cpu_s": per[1:],
            "workers": workers, "malloc_trim_env": trim}


def categorize(stats: Any) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Self time per category and the 25 functions with most self time."""
    cats: dict[str, float] = {c: 0.0 for c, _ in CATEGORIES}
    cats["numpy/other"] = 0.0
    rows = []
    for (file, line, fn), (_cc, _nc, tt, ct, _callers) in stats.stats.items():
        key = f"{file}:{fn}"
        # builtins (numpy ufuncs, array methods) are "numpy/other": their callers' categories hold them in
        # cumulative time (``inclusive``)
        cat = next((c for c, pats in CATEGORIES if any(p in key for p in pats)), "numpy/other")
        cats[cat] += tt
        rows.append({"function": f"{file.split('site-packages/')[-1]}:{line}:{fn}", "self_s": tt, "cum_s": ct,
                     "category": cat})
    rows.sort(key=lambda r: -r["self_s"])
    return cats, rows[:25]


def inclusive(stats: Any, names: dict[str, tuple[str, str]]) -> dict[str, float]:
    """Cumulative time of given functions (file substring, function name)."""
    out = {}
    for label, (fsub, fn) in names.items():
        out[label] = sum(ct for (f, _l, n), (_cc, _nc, _tt, ct, _c) in stats.stats.items() if fsub in f and n == fn)
    return out


def profile(root: Path, block: int | None) -> dict[str, Any]:
    import cProfile
    import pstats

    run_qc_once(root, root / "warm.zarr", block)  # imports and first-use costs outside the profile
    pr = cProfile.Profile(time.thread_time)  # CPU of the thread that runs the tasks (not waits)
    pr.enable()
    t = run_qc_once(root, root / "qc.zarr", block)
    pr.disable()
    st = pstats.Stats(pr)
    cats, top = categorize(st)
    incl = inclusive(st, {
        "pass1_partials_tasks": ("insarcloud/qc/dask_ops.py", "_partials_vec"),
        "window_stats_tasks_before": ("insarcloud/qc/dask_ops.py", "_window_block"),
        "window_stats": ("insarcloud/qc/stats.py", "window_stats"),
        "pack_block_tasks": ("insarcloud/qc/dask_ops.py", "_pack_block"),
        "wrapped_closure": ("insarcloud/qc/closure.py", "wrapped_closure"),
        "raw_closure": ("insarcloud/qc/closure.py", "raw_closure"),
        "closure_partials": ("insarcloud/qc/closure.py", "closure_partials"),
        "pixel_loop_counts": ("insarcloud/qc/closure.py", "pixel_loop_counts"),
        "scatter_pairs": ("insarcloud/qc/closure.py", "_scatter_pairs"),
        "step11_partials": ("insarcloud/qc/stats.py", "step11_partials_in"),
        "pixel_labels": ("insarcloud/qc/labels.py", "pixel_labels"),
        "qc_dataset_call": ("insarcloud/qc/dask_ops.py", "qc_dataset"),
        "to_zarr": ("xarray/core/dataset.py", "to_zarr"),
        "codec_decode": ("zarr/core/codec_pipeline.py", "decode"),
        "codec_encode": ("zarr/core/codec_pipeline.py", "encode"),
        "concatenate3": ("dask/array/core.py", "concatenate3"),
        "dask_get_sync": ("dask/local.py", "get_async"),
    })
    total = sum(cats.values())
    return {"run": t, "profiled_total_s": total, "self_time_by_category_s": cats,
            "self_time_share": {k: v / total for k, v in cats.items()}, "inclusive_s": incl, "top": top}


def compare_groups(a: Path, b: Path) -> dict[str, Any]:
    """Every variable and coordinate of two qc groups: bit-identical, or the largest difference."""
    import xarray as xr

    x, y = (xr.open_zarr(str(p), group="qc", consolidated=False) for p in (a, b))
    out: dict[str, Any] = {"same_variables": sorted(x.variables) == sorted(y.variables)}
    diffs = {}
    for name in sorted(set(x.variables) & set(y.variables)):
        u, v = x[name].values, y[name].values
        if u.shape != v.shape or u.dtype != v.dtype:
            diffs[name] = f"shape/dtype {u.shape} {u.dtype} vs {v.shape} {v.dtype}"
        elif u.dtype.kind in "fc":
            same = np.array_equal(u, v, equal_nan=True) and np.array_equal(np.signbit(u), np.signbit(v))
            if not same:
                fin = np.isfinite(u) & np.isfinite(v)
                diffs[name] = {"max_abs_diff": float(np.abs(u[fin].astype(np.float64) - v[fin]).max()) if fin.any()
                               else None, "nan_mismatch": int((np.isnan(u) != np.isnan(v)).sum()),
                               "n_diff": int((~((u == v) | (np.isnan(u) & np.isnan(v)))).sum())}
        elif not np.array_equal(u, v):
            diffs[name] = {"n_diff": int((u != v).sum())}
    attrs = {k for k in set(x.attrs) | set(y.attrs) if x.attrs.get(k) != y.attrs.get(k)}
    out.update(bit_identical=not diffs and out["same_variables"], diffs=diffs, attrs_differ=sorted(attrs))
    return out


def child(args: argparse.Namespace) -> int:
    """One timed run (in a subprocess for --compare): prints one JSON line."""
    r = run_qc_once(Path(args.root), Path(args.out), args.block, args.workers, not args.no_malloc_trim)
    print(json.dumps(r))
    return 0


def compare(root: Path, ref: str, repeat: int, block: int | None, workers: int = 0,
            trim: bool = True) -> dict[str, Any]:
    """Both trees alternated ``repeat`` times in fresh subprocesses; with ``workers``, each tree's cluster run
    beside its synchronous anchor (ratios against the anchor of the same tree and round)."""
    repo = Path(__file__).resolve().parent.parent
    base = export_tree(repo, ref, root / "baseline_src")
    trees = {"baseline": str(base), "current": str(repo)}
    modes = ["sync"] + ([f"cluster{workers}"] if workers else [])
    times: dict[str, list[dict[str, Any]]] = {f"{k}_{m}": [] for k in trees for m in modes}
    for i in range(repeat):
        for name, src in trees.items():
            for m in modes:
                env = {**os.environ, "PYTHONPATH": src}
                cmd = [sys.executable, __file__, "--child", "--root", str(root), "--out",
                       str(root / f"qc_{name}_{m}.zarr"), "--json", "-"] + (["--block", str(block)] if block else [])
                if m != "sync":
                    cmd += ["--workers", str(workers)] + ([] if trim else ["--no-malloc-trim"])
                p = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=src)
                if p.returncode:
                    raise RuntimeError(f"{name} {m} run failed:\n{p.stderr[-3000:]}")
                times[f"{name}_{m}"].append(json.loads(p.stdout.strip().splitlines()[-1]))
                print(f"  run {i + 1}/{repeat} {name} {m}: {times[f'{name}_{m}'][-1]['cpu_s']:.2f} CPU-s", flush=True)
    best = {k: min(t["cpu_s"] for t in v) for k, v in times.items()}
    last = modes[-1]
    res: dict[str, Any] = {
        "ref": ref, "runs": times, "best_cpu_s": best,
        "speedup_cpu": best[f"baseline_{last}"] / best[f"current_{last}"],
        "outputs": compare_groups(root / f"qc_baseline_{last}.zarr", root / f"qc_current_{last}.zarr"),
        "qc_group_bytes": {k: dir_bytes(root / f"qc_{k}_{last}.zarr" / "qc") for k in trees}}
    if workers:
        # per round: the cluster run's CPU over the synchronous anchor run just before it (same tree)
        res["cluster_over_sync"] = {k: [c["cpu_s"] / s["cpu_s"] for s, c in zip(times[f"{k}_sync"],
                                                                                 times[f"{k}_{last}"], strict=True)]
                                    for k in trees}
        res["cluster_vs_sync_outputs"] = compare_groups(root / "qc_current_sync.zarr", root / f"qc_current_{last}.zarr")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", required=True, help="output JSON path")
    ap.add_argument("--size", type=int, default=128, help="frame side, pixels")
    ap.add_argument("--epochs", type=int, default=120, help="epochs (the preset pairs each with its next 3-4)")
    ap.add_argument("--block", type=int, default=None, help="QCParams.block (default: from block_mem_mb)")
    ap.add_argument("--profile", action="store_true", help="cProfile split of one run")
    ap.add_argument("--compare", metavar="REF", help="git ref of the baseline code")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cube", help="an existing cube (ingest's encoding) instead of simulating one")
    ap.add_argument("--workers", type=int, default=0,
                    help="with --compare: also run on a LocalCluster of this many worker processes (1 thread each)")
    ap.add_argument("--no-malloc-trim", action="store_true",
                    help="drop distributed's MALLOC_TRIM_THRESHOLD_ from the workers' environment")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        return child(a)
    t0 = time.perf_counter()
    res: dict[str, Any] = {"benchmark": "qc_profile", "machine": {
        "python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
        "load_avg_1min": os.getloadavg()[0], "numpy": np.__version__, "threads": 1}}
    with tempfile.TemporaryDirectory(prefix="qc_profile_") as tmp:
        root = Path(tmp)
        if a.cube:  # a cube made before (e.g. by an earlier run of this script): the same frame, no simulation
            (root / "cube.zarr").symlink_to(Path(a.cube).resolve())
            res["frame"] = cube_shape(root / "cube.zarr")
        else:
            res["frame"] = make_cube(root, a.size, a.epochs)
        res["cube_bytes"] = dir_bytes(root / "cube.zarr")
        print(f"frame {res['frame']}, cube {res['cube_bytes'] / 2**20:.1f} MiB", flush=True)
        if a.profile:
            pr = profile(root, a.block)
            res["profile"] = pr
            res["qc_group_bytes"] = dir_bytes(root / "qc.zarr" / "qc")
            n = res["frame"]["pixel_pairs"]
            res["cpu_s_per_pixel_pair"] = pr["run"]["cpu_s"] / n
            res["real_frame_core_h"] = pr["run"]["cpu_s"] / n * REAL_FRAME_PX_PAIRS / 3600
            print(f"qc run: {pr['run']['cpu_s']:.2f} CPU-s ({res['cpu_s_per_pixel_pair']:.2e} CPU-s per "
                  f"pixel-pair -> {res['real_frame_core_h']:.2f} core-h per real frame); qc group "
                  f"{res['qc_group_bytes'] / 2**20:.1f} MiB vs cube {res['cube_bytes'] / 2**20:.1f} MiB")
            for k, v in pr["self_time_by_category_s"].items():
                print(f"  {k:>12}: {v:7.2f} s self ({pr['self_time_share'][k]:.0%})")
            for k, v in pr["inclusive_s"].items():
                print(f"  incl {k:>22}: {v:7.2f} s")
            for r in pr["top"][:15]:
                print(f"  {r['self_s']:7.2f} s self {r['cum_s']:7.2f} cum  [{r['category']}] {r['function']}")
        if a.compare:
            c = compare(root, a.compare, a.repeat, a.block, a.workers, not a.no_malloc_trim)
            res["compare"] = c
            n = res["frame"]["pixel_pairs"]
            res["real_frame_core_h"] = {k: v / n * REAL_FRAME_PX_PAIRS / 3600 for k, v in c["best_cpu_s"].items()}
            print(f"best CPU-s: {c['best_cpu_s']}  speedup x{c['speedup_cpu']:.2f}; real frame core-h "
                  f"{res['real_frame_core_h']}; outputs bit-identical: {c['outputs']['bit_identical']} "
                  f"{c['outputs']['diffs'] or ''}; qc group bytes {c['qc_group_bytes']} vs cube {res['cube_bytes']}")
            if a.workers:
                print(f"cluster CPU / synchronous CPU per round: {c['cluster_over_sync']}; cluster vs synchronous "
                      f"outputs bit-identical: {c['cluster_vs_sync_outputs']['bit_identical']}")
    res["elapsed_s"] = time.perf_counter() - t0
    with open(a.json, "w") as f:
        json.dump(res, f, indent=1, default=str)
    print(f"wrote {a.json} ({res['elapsed_s']:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
