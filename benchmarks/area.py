"""The area job against the simulator's truth: mosaic velocity RMSE and wall time per stage and frame.

    python benchmarks/area.py --json bench-output/area.json [--size 128] [--epochs 40] [--stages ...]

Runs the demo's area (two ascending frames and one descending frame over the central-southern Tibetan
Plateau, one shared ground truth) on the embedded default (moto S3 on loopback, Dask LocalCluster, local
Ray), then compares with the truth Zarr the simulator wrote:
- per frame: LOS velocity of ``ts_<weights>`` against the truth LOS velocity;
- the mosaic: ``velocity_A``/``velocity_D`` against the truth LOS of the frames placed on the area grid, over
  the whole area and over the overlaps; ``velocity_east``/``velocity_up`` against the truth ENU velocity.
Velocities are relative (each InSAR map has its own datum), so every RMSE is taken after removing the
median difference; the datum offsets are reported too. The anchor is the same RMSE of a map of zeros (the
truth's own spread), so the ratio says how much of the signal the job recovers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.demo import BUCKET, config_dict, simulate_inputs  # noqa: E402
from pipelines.local_s3 import local_s3  # noqa: E402


def _rmse(est: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    ok = np.isfinite(est) & np.isfinite(truth)
    if ok.sum() < 10:
        return {"n": int(ok.sum())}
    d = est[ok] - truth[ok]
    datum = float(np.median(d))
    t = truth[ok] - np.median(truth[ok])
    rmse = float(np.sqrt(np.mean((d - datum) ** 2)))
    spread = float(np.sqrt(np.mean(t**2)))
    return {"rmse_mm_yr": round(rmse, 3), "truth_spread_mm_yr": round(spread, 3),
            "rmse_over_spread": round(rmse / spread, 3) if spread else None, "datum_mm_yr": round(datum, 3),
            "n": int(ok.sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--stages", nargs="*", default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    with local_s3() as endpoint:
        import s3fs

        from insarcloud.config import parse_config
        from pipelines.area_job import run_area

        so = {"endpoint_url": endpoint}
        s3fs.S3FileSystem(**so).mkdir(BUCKET.removeprefix("s3://"))
        t_sim = time.perf_counter()
        frames = simulate_inputs(args.size, args.epochs, so)
        t_sim = time.perf_counter() - t_sim
        stages = args.stages or ["ingest", "qc", "quality", "invert", "noise", "forecast", "mosaic"]
        cfg = parse_config(config_dict(frames, stages, endpoint), source="benchmark")
        result = run_area(cfg)
        ts_group = f"ts_{cfg.params.invert.weights}"
        out: dict = {"frames": {}, "mosaic": {}, "wall_s": {"simulate": round(t_sim, 1), **result.seconds},
                     "stage_seconds": {f: r.stage_seconds for f, r in result.frames.items()},
                     "failed": result.failed, "size": args.size, "epochs": args.epochs}
        truths = {f: xr.open_zarr(f"{BUCKET}/truth/{f}.zarr", storage_options=so) for f in frames}
        for f in frames:
            if f in result.failed:
                continue
            ts = xr.open_zarr(cfg.cube_url(f), group=ts_group, storage_options=so)
            out["frames"][f] = _rmse(ts.velocity.values, truths[f].velocity.values)
        if "mosaic" in stages and not result.failed:
            area = xr.open_zarr(cfg.area_url(), storage_options=so)
            for d in ("A", "D"):
                name = f"velocity_{d}"
                if name not in area:
                    continue
                truth_map = np.full(area[name].shape, np.nan)
                count = np.zeros(area[name].shape, int)
                for f in frames:
                    if f[3] != d:
                        continue
                    t = truths[f].velocity
                    iy = np.round((area.y.values[0] - t.y.values) / 0.001).astype(int)
                    ix = np.round((t.x.values - area.x.values[0]) / 0.001).astype(int)
                    oky, okx = (iy >= 0) & (iy < area.sizes["y"]), (ix >= 0) & (ix < area.sizes["x"])
                    truth_map[np.ix_(iy[oky], ix[okx])] = t.values[np.ix_(oky, okx)]
                    count[np.ix_(iy[oky], ix[okx])] += 1
                est = area[name].values
                out["mosaic"][name] = {"whole": _rmse(est, truth_map),
                                       "overlaps": _rmse(np.where(count > 1, est, np.nan), truth_map)}
            for comp in ("east", "up"):
                name = f"velocity_{comp}"
                if name not in area:
                    continue
                truth_map = np.full(area[name].shape, np.nan)
                for f in frames:
                    t = truths[f][name]
                    iy = np.round((area.y.values[0] - t.y.values) / 0.001).astype(int)
                    ix = np.round((t.x.values - area.x.values[0]) / 0.001).astype(int)
                    oky, okx = (iy >= 0) & (iy < area.sizes["y"]), (ix >= 0) & (ix < area.sizes["x"])
                    truth_map[np.ix_(iy[oky], ix[okx])] = t.values[np.ix_(oky, okx)]
                out["mosaic"][name] = _rmse(area[name].values, truth_map)
    out["wall_s"]["benchmark_total"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
