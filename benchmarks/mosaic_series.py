"""Peak memory of the mosaic with the area displacement series, against the size of the area stack.

    python benchmarks/mosaic_series.py --json bench-output/mosaic_series.json [--sizes 256 1024] [--dates 40]

For each size N, writes one ascending and one descending N x N frame (``--dates`` epochs, ts groups with
displacement, velocity, velocity_std, residual_rms) into a local directory, then runs ``run_mosaic`` (with the
series) in a fresh child process and reports its peak RSS (``VmHWM``) and wall time. The anchor is the
size of the area's four (date, y, x) float32 series (A, D, east, up) held whole, and the same mosaic without the series
(``series=False``): the series are written per area tile, so what they add should stay near one tile's
working set, not grow with dates x N^2. Times on a shared machine are not comparable to a quiet one.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import write_json  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _write_frames(root: Path, n: int, nd: int) -> list[str]:
    import numpy as np
    import pandas as pd
    import xarray as xr

    from insarcloud.io import make_frame_dataset, write_new_cube, write_stage_output

    lat = np.round(31.6 - 0.001 * np.arange(n), 3)
    lon = np.round(90.0 + 0.001 * np.arange(n), 3)
    dates = pd.date_range("2020-01-01", periods=nd, freq="12D").values
    t = ((dates - dates[0]) / np.timedelta64(1, "D") / 365.25).astype("float32")
    urls = []
    for frame, e, u in (("012A_05443_131313", -0.62, 0.76), ("121D_05442_131313", 0.60, 0.77)):
        url = str(root / f"{frame}.zarr")
        write_new_cube(make_frame_dataset(frame=frame, pairs=["20200101_20200113"], lat=lat, lon=lon,
                                          phase=np.zeros((1, n, n), "float32"),
                                          coh=np.ones((1, n, n), "float32"),
                                          statics={"los_e": np.full((n, n), e), "los_u": np.full((n, n), u),
                                                   "los_n": np.full((n, n), -0.12)}), url)
        rate = np.linspace(-10, 10, n, dtype="float32")[None, :] * np.ones((n, 1), "float32")
        disp = (t[:, None, None] * rate[None]).astype("float32")
        ts = xr.Dataset({"displacement": (("date", "y", "x"), disp), "velocity": (("y", "x"), rate),
                         "velocity_std": (("y", "x"), np.full((n, n), 0.5, "float32")),
                         "residual_rms": (("y", "x"), np.full((n, n), 1.0, "float32"))},
                        coords={"date": dates, "y": lat, "x": lon})
        write_stage_output(ts, url, "ts_quality", stage="invert", params={},
                           encoding={"displacement": {"chunks": (nd, 512, 512)}})
        urls.append(url)
        del disp
    return urls


def _peak_rss_mb() -> float:
    """This process's own high-water RSS (VmHWM): ``ru_maxrss`` survives ``execve`` on Linux, so a child of the
    parent that wrote the frames would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(urls: list[str], area: str, series: bool) -> None:
    from insarcloud.mosaic.area import run_mosaic

    t0 = time.perf_counter()
    summary = run_mosaic(urls, area, ts_group="ts_quality", precision_group=None, series=series,
                         reference_box=(90.0, 31.0, 90.02, 32.0))
    print(json.dumps({"seconds": time.perf_counter() - t0, "tiles": summary.get("series", {}).get("tiles", 0),
                      "peak_rss_mb": _peak_rss_mb()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--dates", type=int, default=40)
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child[:-2], args.child[-2], args.child[-1] == "series")
        return
    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="mosaic-series-") as tmp:
            urls = _write_frames(Path(tmp), n, args.dates)
            res = {}
            for mode in ("velocity_only", "series"):  # the anchor: the same mosaic without the series
                out = subprocess.run([sys.executable, __file__, "--child", *urls, str(Path(tmp) / f"{mode}.zarr"),
                                      mode], capture_output=True, text=True, check=True)
                res[mode] = json.loads(out.stdout.strip().splitlines()[-1])
            stack_mb = 4 * args.dates * n * n * 4 / 2**20
            extra = res["series"]["peak_rss_mb"] - res["velocity_only"]["peak_rss_mb"]
            row = {"size": n, "dates": args.dates, "series_stack_mb_if_whole": round(stack_mb, 1),
                   "peak_rss_mb_velocity_only": round(res["velocity_only"]["peak_rss_mb"], 1),
                   "peak_rss_mb_with_series": round(res["series"]["peak_rss_mb"], 1),
                   "series_extra_mb": round(extra, 1), "extra_over_stack": round(extra / stack_mb, 3),
                   "seconds_velocity_only": round(res["velocity_only"]["seconds"], 2),
                   "seconds_with_series": round(res["series"]["seconds"], 2), "tiles": res["series"]["tiles"]}
            print(json.dumps(row), flush=True)
            rows.append(row)
    write_json(args.json, {"rows": rows})


if __name__ == "__main__":
    main()
