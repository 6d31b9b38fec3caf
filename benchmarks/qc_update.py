"""Incremental qc after new epochs vs a full qc of the same frame: CPU and wall seconds (issue 18).

Figures and the decision: docs/scale.md, "Incremental qc after new epochs".

A simulated frame (``insarcloud.simulate``, default 256 x 256 px, 40 epochs, each epoch paired with its next
3-4) is written as a local Zarr cube whose last ``--add`` epochs' pairs are not yet ingested; qc runs on it,
the pairs are marked ingested (what ingest's append does last) and qc runs again: that run is the
*incremental* one (``insarcloud.qc.incremental``). The anchor, in the same process right after, is the *full*
qc of the same all-epoch cube written afresh. Both are ``run_qc`` end to end (reads, both passes, the Zarr
write, the quicklook PNGs) on Dask's threaded scheduler; CPU is this process's user + system time
(``getrusage``, every thread), so the ratio does not depend on how many cores were free. The quicklooks are
also timed alone (they are redrawn whole by both runs).

Usage: ``python benchmarks/qc_update.py --json OUT [--size 256 --epochs 40 --add 1 5]``
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import dask
import numpy as np


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _timed(fn: Any) -> tuple[Any, float, float]:
    c0, t0 = _cpu(), time.perf_counter()
    out = fn()
    return out, _cpu() - c0, time.perf_counter() - t0


def _cube(size: int, epochs: int) -> Any:
    from insarcloud import io
    from insarcloud.simulate import simulate_frame

    sim = simulate_frame(frame_id="012A_05443_131313", shape=(size, size), n_epochs=epochs, seed=3, scene_seed=5,
                         min_neighbours=3, max_neighbours=4, missing_epoch_fraction=0.0, missing_pair_fraction=0.0)
    return io.make_frame_dataset(frame="012A_05443_131313", pairs=[str(p) for p in sim.pairs], lat=sim.lat,
                                 lon=sim.lon, phase=sim.phase, coh=sim.coherence, unw=sim.unw,
                                 statics={"landmask": sim.landmask}), sim.dates


def case(ds: Any, dates: np.ndarray, add: int, root: Path) -> dict[str, Any]:
    from insarcloud import io
    from insarcloud.io import stages
    from insarcloud.io.cube import consolidate, open_zarr_group
    from insarcloud.plot import stage_quicklooks
    from insarcloud.qc.config import QCParams
    from insarcloud.qc.dask_ops import run_qc

    cut = np.datetime_as_string(dates[-add - 1], unit="D").replace("-", "")
    pairs = [str(p) for p in ds["pair"].values]
    old = [i for i, p in enumerate(pairs) if p.split("_")[1] <= cut]
    new = [i for i, p in enumerate(pairs) if p.split("_")[1] > cut]
    ds = ds.isel(pair=old + new)  # ingest keeps the old pairs first
    inc, full = str(root / f"inc{add}.zarr"), str(root / f"full{add}.zarr")
    io.write_new_cube(ds.assign(ingested=("pair", np.arange(len(pairs)) < len(old))), inc)
    _, cpu_first, wall_first = _timed(lambda: run_qc(inc, QCParams()))
    open_zarr_group(inc, None, mode="r+")["ingested"][:] = True
    consolidate(inc)
    g_inc, cpu_inc, wall_inc = _timed(lambda: run_qc(inc, QCParams()))
    info = json.loads(io.open_cube(inc, group=g_inc).attrs["qc_update"])
    assert info["mode"] == "incremental", info
    io.write_new_cube(ds, full)
    g_full, cpu_full, wall_full = _timed(lambda: run_qc(full, QCParams()))
    assert stages.current_group(full, "qc") == g_full
    _, cpu_ql, wall_ql = _timed(lambda: stage_quicklooks(full, g_full, None))
    return {"add_epochs": add, "pairs_before": len(old), "pairs_after": len(pairs), "update": info,
            "cpu_s": {"incremental": cpu_inc, "full": cpu_full, "first_run_before_append": cpu_first,
                      "quicklooks_alone": cpu_ql},
            "wall_s": {"incremental": wall_inc, "full": wall_full, "first_run_before_append": wall_first,
                       "quicklooks_alone": wall_ql},
            "cpu_ratio_incremental_to_full": cpu_inc / cpu_full,
            "cpu_ratio_without_quicklooks": (cpu_inc - cpu_ql) / max(cpu_full - cpu_ql, 1e-9)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", required=True, help="output JSON path")
    ap.add_argument("--size", type=int, default=256, help="frame side, pixels")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--add", type=int, nargs="+", default=[1], help="epochs appended (one case each)")
    ap.add_argument("--threads", type=int, default=2, help="Dask threads")
    a = ap.parse_args()
    t0 = time.perf_counter()
    ds, dates = _cube(a.size, a.epochs)
    root = Path(tempfile.mkdtemp(prefix="qc_update_"))
    try:
        with dask.config.set(scheduler="threads", num_workers=a.threads):
            cases = [case(ds, dates, add, root) for add in a.add]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    res = {"size": a.size, "epochs": a.epochs, "pairs": int(ds.sizes["pair"]), "threads": a.threads,
           "cases": cases, "host": platform.node(), "elapsed_s": time.perf_counter() - t0,
           "note": "run at nice 19 beside other jobs on a shared 2-core machine: compare the ratios, not the seconds"}
    for c in cases:
        print(f"+{c['add_epochs']} epoch(s): pairs {c['pairs_before']} -> {c['pairs_after']}, loops "
              f"{c['update']['n_loops_new']} new of {c['update']['n_loops']} ({c['update']['n_loops_revisited']} old "
              f"re-evaluated per pixel), pairs read {c['update']['n_pairs_read']}; CPU s incremental "
              f"{c['cpu_s']['incremental']:.1f} vs full {c['cpu_s']['full']:.1f} "
              f"({100 * c['cpu_ratio_incremental_to_full']:.0f}%; without the quicklooks "
              f"{100 * c['cpu_ratio_without_quicklooks']:.0f}%); step 11 {c['update']['step11']}")
    with open(a.json, "w") as f:
        json.dump(res, f, indent=1)
    print(f"wrote {a.json} ({res['elapsed_s']:.0f}s)")


if __name__ == "__main__":
    main()
