"""Factor sources on the real S3 endpoint (Zarr, NetCDF, GeoTIFF stacks) and the Ray actor pool that
writes the forecast group of a cube on that endpoint."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from insarcloud.errors import StorageError
from insarcloud.forecast.sources import factors_on_grid, open_factors
from insarcloud.simulate.factors import simulate_region, write_factor_stack


def _region(ny=16, nx=16, n_dates=100):
    return simulate_region(ny, nx, n_dates=n_dates, rng=np.random.default_rng(7))


def test_factor_sources_agree_across_formats(bucket, storage_options):
    r = _region(6, 5, 60)
    got = {}
    for fmt, url in (("zarr", f"{bucket}/f.zarr"), ("netcdf", f"{bucket}/f.nc"), ("geotiff", f"{bucket}/tifs")):
        write_factor_stack(r.factors, url, fmt, storage_options)
        got[fmt] = factors_on_grid(open_factors(url, storage_options), r.dates, r.y, r.x)
    assert got["zarr"].shape == (3, 60, 6, 5)
    np.testing.assert_allclose(got["netcdf"], got["zarr"], rtol=1e-6)
    np.testing.assert_allclose(got["geotiff"], got["zarr"], rtol=1e-5, atol=1e-5)
    # eq. 2 on the native 8-day LST axis: a date that coincides with an acquisition returns it exactly
    f = r.factors
    hit = np.flatnonzero(np.isin(r.dates, f.lst_time))
    assert hit.size > 0
    j = int(np.flatnonzero(f.lst_time == r.dates[hit[0]])[0])
    # frame pixel (3, 3) sits on factor node (1, 1) by construction of simulate_region
    assert f.y[1] == pytest.approx(r.y[3]) and f.x[1] == pytest.approx(r.x[3])
    assert got["zarr"][0, hit[0], 3, 3] == pytest.approx(f.lst[j, 1, 1], rel=1e-4, abs=1e-4)
    # monthly precipitation is constant within a month
    m = r.dates.astype("datetime64[M]")
    same = np.flatnonzero(m[1:] == m[:-1])
    np.testing.assert_array_equal(got["zarr"][2, same], got["zarr"][2, same + 1])
    with pytest.raises(StorageError):
        open_factors(f"{bucket}/nothing-here", storage_options)


def _write_cube(url, so, r):
    from insarcloud.io import make_frame_dataset, write_new_cube, write_stage_output

    nt = len(r.dates)
    pairs = [f"{np.datetime_as_string(r.dates[i], 'D').replace('-', '')}_"
             f"{np.datetime_as_string(r.dates[i + 1], 'D').replace('-', '')}" for i in range(3)]
    z = np.zeros((3, len(r.y), len(r.x)), np.float32)
    root = make_frame_dataset(frame="099D_00001_000001", pairs=pairs, lat=r.y, lon=r.x, phase=z, coh=z + 1)
    write_new_cube(root, url, so)
    disp = r.ts.displacement.copy()
    disp[:, 0, 0] = np.nan  # a pixel without data stays without forecast
    ts = xr.Dataset(
        {"displacement": (("date", "y", "x"), disp, {"units": "mm"})},
        coords={"date": r.dates, "y": r.y, "x": r.x},
    )
    write_stage_output(ts, url, "ts_quality", stage="invert", params={"weights": "quality"},
                       storage_options=so, encoding={"displacement": {"chunks": (nt, 8, 8)}})


@pytest.mark.slow
def test_actor_pool_writes_forecast_group(ray_local, bucket, storage_options):
    from insarcloud.forecast.serve import run_forecast
    from insarcloud.io import open_cube, read_marker

    r = _region()
    url = f"{bucket}/cubes/099D_00001_000001.zarr"
    _write_cube(url, storage_options, r)
    furl = f"{bucket}/factors/region.zarr"
    write_factor_stack(r.factors, furl, "zarr", storage_options)
    kw = dict(model="mhca_gru", ts_group="ts_quality", storage_options=storage_options, train_pixels=60, n_steps=72,
              n_actors=2,
              train_cfg={"epochs": 3, "batch_size": 256, "lr": 3e-3},
              model_cfg={"width": 8, "heads": 2, "rnn_layers": 1})
    s = run_forecast(url, furl, **kw)
    assert s.group == "forecast" and not s.skipped and s.n_pixels == 16 * 16 - 1
    fc = open_cube(url, storage_options, group="forecast")
    assert fc["displacement"].dims == ("forecast_date", "y", "x")
    assert fc["displacement"].shape == (72, 16, 16)
    assert fc["forecast_date"].values[0] == r.dates[-1] + np.timedelta64(12, "D")
    assert np.all(np.diff(fc["forecast_date"].values) == np.timedelta64(12, "D"))
    v = fc["displacement"].values
    assert np.isnan(v[:, 0, 0]).all() and np.isfinite(v[:, 1:, :]).all()
    # the forecast continues the record: its first step lies near the last observation (a few mm)
    step1 = np.abs(v[0, 1:, :] - r.ts.displacement[-1, 1:, :])
    assert np.median(step1) < 5.0
    rmse = fc["test_rmse"].values
    assert np.isfinite(rmse[1:]).all() and np.nanmedian(rmse) < 5.0
    assert fc.attrs["test_metrics"]["n_pixels"] == 255
    assert read_marker(url, "forecast", storage_options)["complete"] is True
    # the same parameters again: nothing to do
    assert run_forecast(url, furl, **kw).skipped
    # the same settings as the CLI spells them (unset budgets as None, the torch seed given) are the same stage
    spelled = {**kw, "train_cfg": {**kw["train_cfg"], "early_stop": None, "max_seconds": None, "seed": 0}}
    assert run_forecast(url, furl, **spelled).skipped
    # the CLI sub-command on the same cube (Ray is already up, so init_ray connects to it)
    from insarcloud.cli import main

    rc = main(["forecast", url, "--factors", furl, "--ts", "ts_quality", "--model", "gru", "--group", "forecast_cli",
               "--steps", "6",
               "--train-pixels", "20", "--epochs", "1", "--batch-size", "256", "--lr", "1e-3",
               "--actors", "1", "--target", "harmonic_residual", "--factor-future", "climatology",
               "--rollout", "2"])
    assert rc == 0
    cli = open_cube(url, storage_options, group="forecast_cli")
    assert cli["displacement"].shape == (6, 16, 16) and cli.attrs["model"] == "gru"
    assert cli.attrs["training"]["target"] == "harmonic_residual"
    # harmonic part + residual forecast: the first step stays near the last observation
    step1 = np.abs(cli["displacement"].values[0, 1:, :] - r.ts.displacement[-1, 1:, :])
    assert np.median(step1) < 5.0


def test_work_blocks_split_small_frames_for_all_actors():
    from insarcloud.forecast.serve import work_blocks

    # the demo's 96 x 96 frame lies in one 512 chunk: 4 blocks of 48 x 48 for 2 actors
    assert work_blocks(512, 512, 96, 96, 2, 16384) == (48, 48)
    # a large frame: 512 chunks split 4 x 4 into 128 x 128 blocks (16384 pixels), each inside one ts chunk
    assert work_blocks(512, 512, 4096, 4096, 2, 16384) == (128, 128)
    # one actor, tiny frame: two blocks at least, never below one pixel
    fy, fx = work_blocks(8, 8, 3, 1, 1, 16384)
    assert (fy, fx) == (2, 1) and fy * fx >= 1
    assert work_blocks(4, 4, 1, 1, 4, 16384) == (1, 1)
