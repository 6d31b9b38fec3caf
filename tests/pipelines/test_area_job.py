"""The area job end to end: simulated frames on the local S3 endpoint, real Dask worker processes, real
local Ray; a corrupt frame does not stop the area; a killed job re-run continues where it stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import s3fs
import xarray as xr

from insarcloud.config import parse_config
from insarcloud.io import read_marker

pytestmark = pytest.mark.slow

FRAMES = (("012A_05443_131313", 90.00, 31.50, 1), ("121D_05442_131313", 90.03, 31.52, 3))
BROKEN = ("012A_05441_131313", 90.00, 31.58, 2)
SIZE, EPOCHS = 64, 40
STAGES = ["ingest", "qc", "quality", "invert", "noise", "forecast", "mosaic"]


def _simulate(bucket: str, so: dict, frames) -> None:
    from insarcloud.simulate import simulate_frame, write_licsar_frame, write_truth
    from insarcloud.simulate.factors import simulate_factors, write_factor_stack

    for frame, lon0, lat0, seed in frames:
        sim = simulate_frame(frame_id=frame, shape=(SIZE, SIZE), n_epochs=EPOCHS, seed=seed, scene_seed=7,
                             lon0=lon0, lat0=lat0, min_neighbours=3, max_neighbours=3)
        write_licsar_frame(sim, f"{bucket}/licsar", so)
        write_truth(sim, f"{bucket}/truth/{frame}.zarr", so)
        f = simulate_factors(sim.dates[0], sim.dates[-1], sim.lat[::8], sim.lon[::8],
                             rng=np.random.default_rng(seed))
        write_factor_stack(f, f"{bucket}/factors/{frame}.zarr", "zarr", so)


def _config(bucket: str, endpoint: str, frames: list[str], stages=STAGES) -> dict:
    return {
        "area": {"name": "test-area", "bbox": [89.9, 31.4, 90.2, 31.7]},
        "frames": frames,
        "source_url": f"{bucket}/licsar",
        "output_url": bucket,
        "storage": {"endpoint_url": endpoint},
        "stages": stages,
        "params": {"forecast": {"factors_url": "{output_url}/factors/{frame}.zarr", "horizon": 12,
                                "train_pixels": 300, "epochs": 3, "max_train_seconds": 15},
                   "quality": {"num_actors": 1}, "noise": {"class_size": 256}},
        "report": {"points": [{"name": "overlap", "lon": 90.02, "lat": 31.51}],
                   "truth_url": "{output_url}/truth/{frame}.zarr"},
    }


@pytest.fixture()
def area_bucket(bucket, storage_options):
    _simulate(bucket, storage_options, FRAMES)
    return bucket


def test_area_job_end_to_end_with_a_corrupt_frame(area_bucket, storage_options, s3_endpoint, ray_local):
    from insarcloud.pipelines.area_job import run_area

    bucket = area_bucket
    fs = s3fs.S3FileSystem(**storage_options)
    # a third frame whose every GeoTIFF is truncated: it must fail alone
    _simulate(bucket, storage_options, [BROKEN])
    for path in fs.find(f"{bucket}/licsar/12/{BROKEN[0]}/interferograms"):
        fs.pipe_file(path, fs.cat_file(path)[:300])
    frames = [FRAMES[0][0], FRAMES[1][0], BROKEN[0]]
    cfg = parse_config(_config(bucket, s3_endpoint, frames))
    result = run_area(cfg)
    assert result.failed == [BROKEN[0]]
    assert "ingest" in result.frames[BROKEN[0]].error
    for f, _, _, _ in FRAMES:
        assert result.frames[f].ok, result.frames[f].error

    area = xr.open_zarr(cfg.area_url(), storage_options=storage_options)
    assert {"velocity_A", "velocity_D", "velocity_up", "velocity_east"} <= set(area.data_vars)
    assert area.rio.crs.to_epsg() == 4326
    # the mosaic against the simulator's truth, after removing the datum (velocities are relative)
    truth = xr.open_zarr(f"{bucket}/truth/{FRAMES[0][0]}.zarr", storage_options=storage_options)
    v = area.velocity_A.sel(y=truth.y, x=truth.x, method="nearest").values
    ok = np.isfinite(v) & np.isfinite(truth.velocity.values)
    diff = v[ok] - truth.velocity.values[ok]
    rmse = float(np.sqrt(np.mean((diff - np.median(diff)) ** 2)))
    assert rmse < 10.0, rmse  # mm/yr on a 40-epoch, 64-pixel toy frame; the benchmark reports the real figure

    # the job's own truth comparison (report.truth_url) agrees with this independent one
    frame_stats = result.truth["frames"][FRAMES[0][0]]
    ts = xr.open_zarr(cfg.cube_url(FRAMES[0][0]), group="ts_quality_closure", storage_options=storage_options)
    d = ts.velocity.values - truth.velocity.values  # the same grid, pixel for pixel
    d = d[np.isfinite(d)]
    assert frame_stats["rmse_mm_yr"] == pytest.approx(np.sqrt(np.mean((d - np.median(d)) ** 2)), abs=2e-3)
    # the noise group (the mosaic's input) is scored too, with its own precision, on the same frame
    noise_stats = result.truth["frames_noise"][FRAMES[0][0]]
    assert noise_stats["n"] > 0.9 * frame_stats["n"] and 0.0 <= noise_stats["frac_within_1.96_sigma"] <= 1.0
    assert result.truth["mosaic"]["velocity_A"]["whole"]["rmse_mm_yr"] < 10.0
    assert result.truth["mosaic"]["velocity_up"]["rmse_mm_yr"] < 15.0

    for f, _, _, _ in FRAMES:
        cube = cfg.cube_url(f)
        for group in ("qc", "quality", "ts_quality_closure", "noise", "forecast"):
            assert (read_marker(cube, group, storage_options) or {}).get("complete"), (f, group)
    assert fs.exists(result.report_url.removeprefix("s3://"))
    page = fs.cat_file(result.report_url.removeprefix("s3://")).decode()
    assert "velocity_up.png" in page and "network_" in page
    assert "Against the simulator&#x27;s truth" in page or "Against the simulator's truth" in page
    assert fs.exists(result.log_url.removeprefix("s3://"))

    # a second run finds every stage done and redoes nothing
    again = run_area(parse_config(_config(bucket, s3_endpoint, frames[:2])))
    assert not again.failed
    assert all(again.frames[f].outputs["ingest"]["appended"] == 0 for f in frames[:2])


def test_killed_area_job_resumes(area_bucket, storage_options, s3_endpoint, tmp_path):
    """`insarcloud run` dies hard right after the first frame's qc stage (a recorded point, not a delay:
    ``$INSARCLOUD_EXIT_AT``, see insarcloud/faultpoints.py); the re-run skips what was done and completes."""
    import yaml

    from insarcloud import faultpoints

    bucket = area_bucket
    stages = ["ingest", "qc", "invert", "mosaic"]
    cfg_dict = _config(bucket, s3_endpoint, [f for f, *_ in FRAMES], stages)
    cfg_dict["params"]["invert"] = {"weights": "coherence"}  # no quality stage in this job
    path = tmp_path / "area.yaml"
    path.write_text(yaml.safe_dump(cfg_dict))
    cfg = parse_config(cfg_dict)
    env = {**os.environ, faultpoints.ENV: "stage:qc:1"}
    log = tmp_path / "run.stderr"
    with log.open("wb") as err:  # a file, not a pipe: the job's orphaned workers would hold a pipe open
        proc = subprocess.Popen([sys.executable, "-m", "insarcloud.cli", "run", str(path)], start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=err, env=env)
        try:
            proc.wait(timeout=900)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # what the job left behind (its Dask workers), as a kill would
            proc.wait()
    assert proc.returncode == faultpoints.EXIT_CODE, log.read_text(errors="replace")[-3000:]
    done = [f for f, *_ in FRAMES if (read_marker(cfg.cube_url(f), "qc", storage_options) or {}).get("complete")]
    assert done, "the job exited at the first finished qc stage, so one frame's qc group is complete"
    assert not (read_marker(cfg.area_url(), "", storage_options) or {}).get("complete")

    from insarcloud.pipelines.area_job import run_area

    result = run_area(cfg)
    assert not result.failed
    assert all(result.frames[f].outputs["ingest"]["appended"] == 0 for f, *_ in FRAMES)  # not redone
    assert (read_marker(cfg.area_url(), "", storage_options) or {}).get("complete")
