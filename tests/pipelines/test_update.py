"""An area job updated with new acquisitions equals a from-scratch run (issue 18, docs/STAGES.md).

A simulated frame on the local S3 endpoint goes through every stage (real Dask worker processes of the job's
own cluster, real local Ray for quality and forecast) with its first 70% of epochs; LiCSAR then "adds" the
rest, the same job is re-run, and every group the area cube reads (the invert and noise stages' current
outputs, and their inputs qc and quality) equals a from-scratch run on all epochs to float tolerance, as does
the mosaic itself.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from insarcloud import io
from insarcloud.config import parse_config
from insarcloud.io import stages

pytestmark = pytest.mark.slow

FRAME, LON0, LAT0 = "012A_05443_131313", 90.0, 31.5
SIZE, EPOCHS = 24, 40
FIRST = int(0.7 * EPOCHS)  # 28: the forecast stage needs 28 epochs (insarcloud.pipelines.checks)
STAGES = ["ingest", "qc", "quality", "invert", "noise", "forecast", "mosaic"]


def _source(bucket: str, so: dict, first: int | None):  # type: ignore[no-untyped-def]
    """LiCSAR's tree of the frame with its first ``first`` epochs (None: all, adding only the new files)."""
    from insarcloud.simulate import simulate_frame, write_licsar_frame
    from insarcloud.simulate.factors import simulate_factors, write_factor_stack

    sim = simulate_frame(frame_id=FRAME, shape=(SIZE, SIZE), n_epochs=EPOCHS, seed=1, scene_seed=7, lon0=LON0,
                         lat0=LAT0, min_neighbours=3, max_neighbours=3, missing_epoch_fraction=0.0,
                         missing_pair_fraction=0.0)
    write_licsar_frame(sim, f"{bucket}/licsar", so, epochs=first, only_missing=True)
    f = simulate_factors(sim.dates[0], sim.dates[-1], sim.lat[::8], sim.lon[::8], rng=np.random.default_rng(1))
    write_factor_stack(f, f"{bucket}/factors/{FRAME}.zarr", "zarr", so)
    return sim


def _config(source: str, output: str, endpoint: str) -> dict:
    return {
        "area": {"name": "update-area", "bbox": [89.95, 31.45, 90.1, 31.6]},
        "frames": [FRAME],
        "source_url": source,
        "output_url": output,
        "storage": {"endpoint_url": endpoint},
        "stages": STAGES,
        "params": {"forecast": {"factors_url": f"{source.rsplit('/', 1)[0]}/factors/{{frame}}.zarr", "horizon": 6,
                                "train_pixels": 100, "epochs": 2, "max_train_seconds": 10},
                   "quality": {"num_actors": 1}, "noise": {"class_size": 256}},
        "report": {"enabled": False},
    }


def _same(a: xr.Dataset, b: xr.Dataset, what: str) -> None:
    """Equal variables, matched by pair and triplet name: an appended cube keeps its old pairs first, a fresh
    ingest lists them in LiCSAR's order."""
    assert set(a.data_vars) == set(b.data_vars), what
    for dim in ("pair", "triplet"):
        if dim in a.dims:
            assert sorted(map(str, a[dim].values)) == sorted(map(str, b[dim].values)), (what, dim)
            b = b.sel({dim: a[dim].values})
    for name in a.data_vars:
        x, y = a[name].values, b[name].values
        assert x.shape == y.shape, (what, name)
        if x.dtype.kind in "fc":
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-4, equal_nan=True, err_msg=f"{what}:{name}")
        else:
            assert (x == y).all(), (what, name)


@pytest.mark.timeout(2400)  # three whole area jobs: ~300 s each at load average ~16 (tests/conftest.py LONG_TIMEOUTS_S)
def test_update_with_new_epochs_equals_a_full_run(bucket, storage_options, s3_endpoint, ray_local):
    from insarcloud.pipelines.area_job import decision_lines, run_area

    so = storage_options
    _source(bucket, so, FIRST)
    cfg = parse_config(_config(f"{bucket}/licsar", f"{bucket}/out", s3_endpoint))
    first = run_area(cfg)
    assert not first.failed, first.frames[FRAME].error
    cube = cfg.cube_url(FRAME)
    ts_first = stages.current_group(cube, "invert", so)
    assert io.open_cube(cube, so, group=ts_first).sizes["date"] == FIRST

    _source(bucket, so, None)  # the rest of the epochs arrive
    again = run_area(cfg)
    assert not again.failed, again.frames[FRAME].error
    why = again.frames[FRAME].decisions
    assert why["ingest"].startswith("appended ")
    for stage in ("qc", "quality", "invert", "noise", "forecast"):
        assert why[stage].startswith("recomputed ") and "inputs changed" in why[stage], (stage, why[stage])
    lines = decision_lines(again)
    assert f"{FRAME} invert: {why['invert']}" in lines and lines[-1].startswith("mosaic: recomputed")

    full = parse_config(_config(f"{bucket}/licsar", f"{bucket}/full", s3_endpoint))
    scratch = run_area(full)
    assert not scratch.failed, scratch.frames[FRAME].error
    fresh = full.cube_url(FRAME)
    for stage in ("qc", "quality", "invert", "noise"):
        a, b = stages.open_stage(cube, stage, so), stages.open_stage(fresh, stage, so)
        _same(a, b, stage)
    assert stages.open_stage(cube, "invert", so).sizes["date"] == EPOCHS
    # the forecast continues the new series (its values depend on a time-budgeted training: not compared)
    fc = stages.open_stage(cube, "forecast", so)
    assert fc["forecast_date"].values[0] > stages.open_stage(cube, "invert", so)["date"].values[-1]
    # the area cube's root (what `xr.open_zarr(area_url)` shows) follows the update (insarcloud.io.root)
    area_a = xr.open_zarr(cfg.area_url(), storage_options=so)
    area_b = xr.open_zarr(full.area_url(), storage_options=so)
    _same(area_a, area_b, "area cube")
    assert area_a.sizes["date"] == EPOCHS
