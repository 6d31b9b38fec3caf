"""Driver memory and time of the mosaic against the area's size: chunked (run_mosaic) vs whole-array.

    python benchmarks/mosaic_scale.py --json bench-output/mosaic_scale.json [--mpx 1 4 16] [--budget-mb 512]
        [--whole-max-mpx 4]

For each area size (Mpx), writes four synthetic frames into a local directory (two ascending side by side with
64 columns in common, two descending on the same footprints; velocity, velocity_std and LOS vectors, no series),
then in fresh child processes:

- ``chunked``: ``run_mosaic`` (the chunked path, automatic reference area, ``--budget-mb``);
- ``whole``: the whole-array reference (``load_frame`` + ``mosaic_arrays`` + ``write_stage_output``), only up
  to ``--whole-max-mpx`` (its ~335 B per area pixel + ~25 B per frame x area pixel would not fit this
  machine's share at 16 Mpx);
- ``imports``: a child that only imports what the others do (the RSS floor).

Each child reports its peak RSS (``VmHWM``), wall and CPU seconds (user + system). Times on a shared,
loaded machine are not comparable to a quiet one; the ratios within a run are.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import write_json  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FRAMES = (("012A_05443_131313", 0, 0.0), ("012A_05441_131313", 1, 3.0), ("121D_05442_131313", 0, -2.0),
          ("121D_05440_131313", 1, 1.0))


def _write_frames(root: Path, mpx: float) -> tuple[list[str], tuple[int, int]]:
    import numpy as np
    import xarray as xr

    from insarcloud.io import make_frame_dataset, write_new_cube, write_stage_output

    ny = int(round(math.sqrt(mpx * 1e6 / 2)))
    nx = 2 * ny
    half = nx // 2
    urls = []
    rng = np.random.default_rng(0)
    for frame, k, off in FRAMES:
        e, u = (-0.62, 0.76) if frame[3] == "A" else (0.60, 0.77)
        c0 = 0 if k == 0 else half - 64
        c1 = half + 64 if k == 0 else nx
        lat = np.round(31.6 - 0.001 * np.arange(ny), 3)
        lon = np.round(90.0 + 0.001 * np.arange(c0, c1), 3)
        shape = (ny, c1 - c0)
        url = str(root / f"{frame}.zarr")
        write_new_cube(make_frame_dataset(frame=frame, pairs=["20200101_20200113"], lat=lat, lon=lon,
                                          phase=np.zeros((1, *shape), "float32"), coh=np.ones((1, *shape), "float32"),
                                          statics={"los_e": np.full(shape, e, "float32"),
                                                   "los_u": np.full(shape, u, "float32"),
                                                   "los_n": np.full(shape, -0.12, "float32")}), url)
        v = (np.linspace(-10, 10, shape[1], dtype="float32")[None, :] + off
             + rng.normal(0, 0.3, shape).astype("float32"))
        ts = xr.Dataset({"velocity": (("y", "x"), v), "velocity_std": (("y", "x"), np.full(shape, 0.5, "float32"))},
                        coords={"y": lat, "x": lon})
        write_stage_output(ts, url, "ts_quality", stage="invert", params={})
        urls.append(url)
        del v, ts
    return urls, (ny, nx)


def _peak_rss_mb() -> float:
    """This process's own high-water RSS (VmHWM). Not ``ru_maxrss``: Linux keeps that across ``execve``, so a
    child started by a parent that had written large frames reports the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _usage(t0: float) -> dict[str, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"wall_s": round(time.perf_counter() - t0, 2), "cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
            "peak_rss_mb": round(_peak_rss_mb(), 1)}


def _child(mode: str, urls: list[str], area: str, budget_mb: int) -> None:
    import xarray as xr  # noqa: F401 - the same imports in every mode

    from insarcloud.io import write_stage_output
    from insarcloud.mosaic.area import load_frame, mosaic_arrays, run_mosaic

    t0 = time.perf_counter()
    out: dict[str, object] = {}
    if mode == "chunked":
        summary = run_mosaic(urls, area, ts_group="ts_quality", precision_group=None, series=False,
                             memory_budget=budget_mb * 2**20)
        out["chunks"] = summary["chunks"]
    elif mode == "whole":
        ds, _ = mosaic_arrays([load_frame(u, "ts_quality", precision_group=None) for u in urls])
        write_stage_output(ds, area, "", stage="mosaic", params={})
    print(json.dumps({**_usage(t0), **out}))


def _run(mode: str, urls: list[str], area: str, budget_mb: int) -> dict[str, object]:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(budget_mb), area, *urls],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--mpx", type=float, nargs="+", default=[1, 4, 16])
    ap.add_argument("--budget-mb", type=int, default=512)
    ap.add_argument("--whole-max-mpx", type=float, default=4)
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child[0], args.child[3:], args.child[2], int(args.child[1]))
        return
    rows = []
    for mpx in args.mpx:
        with tempfile.TemporaryDirectory(prefix="mosaic-scale-") as tmp:
            t0 = time.perf_counter()
            urls, shape = _write_frames(Path(tmp), mpx)
            row: dict[str, object] = {"area_mpx": round(shape[0] * shape[1] / 1e6, 2), "area_shape": list(shape),
                                      "frames": len(urls), "budget_mb": args.budget_mb,
                                      "write_frames_s": round(time.perf_counter() - t0, 1)}
            row["imports"] = _run("imports", urls, str(Path(tmp) / "none.zarr"), args.budget_mb)
            row["chunked"] = _run("chunked", urls, str(Path(tmp) / "chunked.zarr"), args.budget_mb)
            if mpx <= args.whole_max_mpx:
                row["whole"] = _run("whole", urls, str(Path(tmp) / "whole.zarr"), args.budget_mb)
                import numpy as np
                import xarray as xr

                a = xr.open_zarr(str(Path(tmp) / "chunked.zarr"), consolidated=False)
                b = xr.open_zarr(str(Path(tmp) / "whole.zarr"), consolidated=False)
                row["identical"] = all(np.array_equal(a[v].values, b[v].values, equal_nan=True)
                                       for v in b.data_vars)
            floor = float(row["imports"]["peak_rss_mb"])  # type: ignore[index]
            for mode in ("chunked", "whole"):
                if mode in row:
                    row[mode]["above_imports_mb"] = round(float(row[mode]["peak_rss_mb"]) - floor, 1)  # type: ignore[index]
            print(json.dumps(row), flush=True)
            rows.append(row)
    write_json(args.json, {"rows": rows, "note": "shared machine under load: times are comparable within this "
                                                 "run only"})


if __name__ == "__main__":
    main()
