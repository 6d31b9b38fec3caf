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

Usage::

    PYTHONPATH=. python benchmarks/invert_dist.py --cube /path/cube.zarr --before HEAD --repo /work/main \\
        --weights closure --repeat 1 --json invert_dist.json
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
from _common import export_tree  # noqa: E402

HERE = Path(__file__).resolve().parent
WORKER_ENV = {"MALLOC_MMAP_THRESHOLD_": 33554432}


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
    meter = Meter()
    idle = None
    if client is not None:  # the cluster's own CPU while idle (event loops, heartbeats, the workers' profiler)
        a, t = meter.total(), time.perf_counter()
        time.sleep(args.idle_s)
        idle = (meter.total() - a) / (time.perf_counter() - t)
    meter.wrap(dask_ops, "invert_dataset", "plan")
    meter.wrap(insarcloud.io, "write_stage_output", "write")
    meter.wrap(insarcloud.plot, "stage_quicklooks", "quicklooks")
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
    ap.add_argument("--weights", default="closure")
    ap.add_argument("--before", help="git ref whose insarcloud is the 'before' tree (of --repo)")
    ap.add_argument("--repo", default=str(HERE.parent), help="repository of --before")
    ap.add_argument("--modes", nargs="+", default=["dist", "sync"], choices=["dist", "sync"])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--workdir", type=Path, help="where the cube copies go (default: a temporary directory)")
    ap.add_argument("--idle-s", type=float, default=10.0, help="seconds of idle cluster CPU measured before a run")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tree", help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)
    base = Path(tempfile.mkdtemp(prefix="invert_dist_", dir=args.workdir))
    try:
        trees = {"after": str(HERE.parent)}
        if args.before:
            trees = {"before": str(export_tree(args.repo, args.before, base / "before")), **trees}
        src = args.cube
        shape: dict[str, Any] = {}
        if src is None:
            sys.path.insert(0, str(HERE))
            import qc_profile

            shape = qc_profile.make_cube(base, args.size, args.epochs)
            src = str(base / "cube.zarr")
        runs: list[dict[str, Any]] = []
        for rep in range(args.repeat):
            for mode in args.modes:
                for tree, path in trees.items():
                    cube = base / f"{tree}_{mode}_{rep}.zarr"
                    shutil.copytree(src, cube)
                    env = {**os.environ, "PYTHONPATH": path}
                    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--tree", tree, "--mode", mode,
                           "--cube", str(cube), "--weights", args.weights, "--idle-s", str(args.idle_s)]
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
