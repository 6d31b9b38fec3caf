"""``make demo``: the area job on the embedded default.

A local S3 endpoint (moto's server on 127.0.0.1), a Dask LocalCluster of worker processes and a local Ray.
Three overlapping simulated LiCSAR frames over the central-southern Tibetan Plateau (two ascending, one
descending, sharing one ground truth) and their environmental factors are written to the bucket; then the
area job runs every stage, mosaics the frames, and writes the report. Because the endpoint stops with the
demo, the area cube, the report and the run log are copied to ``demo-output/`` at the end, and the line to
open the cube with xarray is printed.

    python -m insarcloud.pipelines.demo [--out demo-output] [--size 64] [--epochs 122] [--stages ...]

The scene is the simulator's ``tibet_basin`` preset (``insarcloud.simulate.presets``): ~4.3 years of 12-day
acquisitions, a 35 mm/yr subsiding basin, fault creep, permafrost thaw and seasonal heave, atmosphere and
decorrelation; docs/demo.md says why these settings. The summary line says in words how the velocities
compare with the truth (``insarcloud.pipelines.truth.truth_verdict``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from insarcloud.pipelines.local_s3 import local_s3

BUCKET = "s3://insarcloud-demo"
AREA = "tibet-demo"
# Two ascending frames stacked along track and one descending frame across them, placed (in frame widths)
# about the scene's subsiding basin (preset tibet_basin: a Mogi source at 90.040 E, 31.562 N, -35 mm/yr, 2.5 km
# deep), so the basin lies in the overlaps where the mosaic ties the frames and decomposes east/up.
CENTRE = (90.04, 31.56)
FRAMES = (
    ("012A_05443_131313", -0.1, -0.3, 1),
    ("012A_05441_131313", -0.1, 0.3, 2),
    ("121D_05442_131313", 0.2, 0.0, 3),
)
PIXEL_DEG = 0.001
DEMO_FORECAST_TARGET = "harmonic_residual"
PRESET = "tibet_basin"
DEFAULT_SIZE = 64
DEFAULT_EPOCHS = 122


def frame_centre(dlon: float, dlat: float, size: int) -> tuple[float, float]:
    """Centre of a demo frame offset by (dlon, dlat) frame widths from ``CENTRE``."""
    return round(CENTRE[0] + dlon * size * PIXEL_DEG, 3), round(CENTRE[1] + dlat * size * PIXEL_DEG, 3)


def simulate_inputs(size: int, epochs: int, storage_options: dict) -> list[str]:
    """Write the frames' LiCSAR trees, truths and environmental factors to the demo bucket."""
    from insarcloud.simulate import write_licsar_frame, write_truth
    from insarcloud.simulate.factors import simulate_factors, write_factor_stack
    from insarcloud.simulate.presets import preset_scene, simulate_preset_frame

    frames = []
    scene = preset_scene(PRESET)
    for frame, dlon, dlat, seed in FRAMES:
        t0 = time.perf_counter()
        lon0, lat0 = frame_centre(dlon, dlat, size)
        # the preset's LiCSAR-like network: each epoch to its next 3-4 acquisitions
        sim = simulate_preset_frame(frame, PRESET, shape=(size, size), n_epochs=epochs, seed=seed, lon0=lon0,
                                    lat0=lat0, scene=scene)
        write_licsar_frame(sim, f"{BUCKET}/licsar", storage_options)
        write_truth(sim, f"{BUCKET}/truth/{frame}.zarr", storage_options)
        f = simulate_factors(sim.dates[0], sim.dates[-1], sim.lat[::8], sim.lon[::8],
                             rng=np.random.default_rng(seed))
        write_factor_stack(f, f"{BUCKET}/factors/{frame}.zarr", "zarr", storage_options)
        print(f"  simulated {frame}: {len(sim.pairs)} pairs, {len(sim.dates)} epochs "
              f"({time.perf_counter() - t0:.1f}s)")
        frames.append(frame)
    return frames


def start_local_ray(tries: int = 6) -> None:
    """Start the local Ray now, retrying, unless a Ray address is configured ($INSARCLOUD_RAY_ADDRESS).

    On a loaded machine a raylet can miss Ray's fixed 30 s registration wait ("The current node timed out
    during startup"); started here, before the inputs are simulated, a retry costs seconds instead of the
    whole run. The area job's ``init_ray`` finds this Ray initialised and uses it (and shuts it down).
    """
    import ray

    from insarcloud.engines import init_ray, ray_address

    if ray_address(None):
        return
    for k in range(1, tries + 1):
        before = _children()
        try:
            init_ray()
            return
        except Exception as exc:  # ray raises a bare Exception for the startup timeout
            ray.shutdown()
            # a try that timed out leaves its GCS, dashboard, log monitor (and raylet) running: ray.shutdown()
            # knows no node to stop; stop the processes this try started (this process's new children)
            _stop(_children() - before)
            if k == tries:
                raise
            print(f"  local Ray did not start ({exc}); try {k + 1} of {tries}")


def _children() -> set[int]:
    import psutil

    return {c.pid for c in psutil.Process().children(recursive=True)}


def _stop(pids: set[int], timeout: float = 10.0) -> None:
    """Terminate these processes (ours), then kill those still running after ``timeout`` seconds."""
    import psutil

    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
            procs[-1].terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


def config_dict(frames: list[str], stages: list[str], endpoint: str, size: int = DEFAULT_SIZE) -> dict:
    centres = [frame_centre(f[1], f[2], size) for f in FRAMES]
    half = size * PIXEL_DEG / 2 + 0.01
    tile = max(32, -(-size // 32) * 32)  # the ConvNeXt's strides want a multiple of 32
    lon, lat = [c[0] for c in centres], [c[1] for c in centres]
    return {
        "version": 1,
        "area": {"name": AREA, "bbox": [min(lon) - half, min(lat) - half, max(lon) + half, max(lat) + half]},
        "frames": frames,
        "source_url": f"{BUCKET}/licsar",
        "output_url": BUCKET,
        "storage": {"endpoint_url": endpoint},
        "stages": stages,
        # CPU-sized forecast (Table III's 128 epochs take hours on 2 cores; a GPU runs them as written): a
        # training budget sized by need (400 sampled pixels x ~110 windows each, at most 8 epochs or 40 s), a
        # 2-year forecast (61 steps: the horizon the truth comparison scores; GLER costs ~60-135 us of CPU
        # per pixel and step, batched over all pixels of a block), and the design that does not drift over
        # long horizons: the network forecasts the residual about each pixel's harmonic fit, with the
        # factors' climatology as their future (notes/forecast.md)
        # (invert: the quality model's weights need its stage; without it (--stages ...), loop closures alone)
        "params": {"invert": {"weights": "quality_closure" if "quality" in stages else "closure"},
                   "forecast": {"factors_url": "{output_url}/factors/{frame}.zarr", "epochs": 8,
                                "max_train_seconds": 40, "early_stop": 3, "train_pixels": 400, "horizon": 61,
                                "target": DEMO_FORECAST_TARGET, "factor_future": "climatology"},
                   # one model tile per frame: the default 256 px tile would pad a 64 px frame to 16x the pixels;
                   # 16 tiles per forward pass = 16 pairs per actor call (one read per variable, one region
                   # write): one pair per call cost ~4x more in requests and call overhead than in inference
                   "quality": {"num_actors": 1, "tile": tile, "overlap": min(32, tile // 4), "batch_size": 16}},
        "report": {"truth_url": "{output_url}/truth/{frame}.zarr",
                   "points": [{"name": "bowl", "lon": CENTRE[0], "lat": CENTRE[1]},
                              {"name": "north", "lon": CENTRE[0] - 0.01, "lat": CENTRE[1] + 0.03}]},
    }


def stage_times(result: Any) -> str:
    """``ingest 41, qc 106, ...``: each stage's wall seconds on its slowest frame, then mosaic and report."""
    per: dict[str, float] = {}
    for r in result.frames.values():
        for stage, sec in r.stage_seconds.items():
            per[stage] = max(per.get(stage, 0.0), sec)
    per.update({k: v for k, v in result.seconds.items() if k in ("mosaic", "report")})
    return ", ".join(f"{k} {v:.0f}" for k, v in per.items())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="demo-output", help="local folder for the copied results")
    ap.add_argument("--size", type=int, default=DEFAULT_SIZE, help="frame size in pixels (square)")
    ap.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="epochs per frame (12-day sampling)")
    ap.add_argument("--stages", nargs="*", default=None, help="stages to run (default: all but unwrap)")
    args = ap.parse_args(argv)
    stages = args.stages or ["ingest", "qc", "quality", "invert", "noise", "forecast", "mosaic"]
    if "forecast" in stages:  # the stack length is known now: fail here, not after every other stage
        from insarcloud.pipelines.checks import forecast_epochs_problem, min_forecast_epochs

        problem = forecast_epochs_problem(args.epochs, "--epochs", DEMO_FORECAST_TARGET,
                                          fix=f"use --epochs {min_forecast_epochs(DEMO_FORECAST_TARGET)} or more, "
                                          "or leave forecast out of --stages")
        if problem:
            ap.error(problem)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("insarcloud.area_job").setLevel(logging.INFO)
    out = Path(args.out).resolve()
    t0 = time.perf_counter()
    with local_s3() as endpoint:
        import s3fs

        from insarcloud.config import parse_config
        from insarcloud.pipelines.area_job import run_area
        from insarcloud.pipelines.truth import truth_verdict

        so = {"endpoint_url": endpoint}
        s3fs.S3FileSystem(**so).mkdir(BUCKET.removeprefix("s3://"))
        print(f"local S3 endpoint {endpoint}, bucket {BUCKET}")
        if {"quality", "forecast"} & set(stages):
            start_local_ray()
        frames = simulate_inputs(args.size, args.epochs, so)
        cfg = parse_config(config_dict(frames, stages, endpoint, args.size), source="demo")
        out.mkdir(parents=True, exist_ok=True)
        (out / "area.yaml").write_text(cfg.to_yaml())
        result = run_area(cfg)
        summary = result.to_dict()
        summary["truth_verdict"] = truth_verdict(result.truth)
        fs = s3fs.S3FileSystem(**so)
        for sub in ("areas", "reports", "logs"):
            if (out / sub).exists():
                shutil.rmtree(out / sub)
            src = f"{BUCKET.removeprefix('s3://')}/{sub}"
            if fs.exists(src):
                fs.get(src + "/", str(out / sub) + "/", recursive=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    verdict = summary["truth_verdict"]
    print(f"\ndone in {time.perf_counter() - t0:.0f}s; {len(result.failed)} frame(s) failed; {verdict[0]}")
    print(f"  stage seconds (slowest frame; frames run in parallel): {stage_times(result)}")
    for line in verdict[1:]:
        print(f"  {line}")
    print(f"report:     {out / 'reports' / AREA / 'index.html'}")
    print(f"area cube:  {out / 'areas' / (AREA + '.zarr')} (copied from {result.area_url})")
    print(f"open it:    python -c \"import xarray as xr; print(xr.open_zarr('{out / 'areas' / (AREA + '.zarr')}'))\"")
    print(f"run log:    {out / 'logs' / AREA}")
    return 1 if result.failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
    sys.exit(main())
