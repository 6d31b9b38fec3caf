"""The mosaic stage over real Zarr cubes on the local S3 endpoint: offsets, datum, east/up, idempotence."""

from __future__ import annotations

import numpy as np
import xarray as xr

from insarcloud.io import make_frame_dataset, write_new_cube, write_stage_output
from insarcloud.mosaic.area import run_mosaic

E_A, U_A, N_A = -0.62, 0.76, -0.13
E_D, U_D, N_D = 0.60, 0.77, -0.12


def _truth_enu(lat, lon):
    yy, xx = np.meshgrid(lat, lon, indexing="ij")
    east = 4 * np.tanh((xx - 90.05) / 0.03)
    up = -6 * np.exp(-((xx - 90.08) ** 2 + (yy - 31.55) ** 2) / 0.002)
    return east, up


def _frame(url, frame, lat, lon, vec, offset, storage_options, rng):
    e, u, n = vec
    east, up = _truth_enu(lat, lon)
    v = e * east + u * up + offset + rng.normal(0, 0.2, east.shape)
    shape = (lat.size, lon.size)
    ds = make_frame_dataset(frame=frame, pairs=["20200101_20200113"], lat=lat, lon=lon,
                            phase=np.zeros((1, *shape)), coh=np.ones((1, *shape)),
                            statics={"los_e": np.full(shape, e), "los_n": np.full(shape, n),
                                     "los_u": np.full(shape, u)})
    write_new_cube(ds, url, storage_options)
    ts = xr.Dataset({"velocity": (("y", "x"), v.astype("float32")),
                     "velocity_std": (("y", "x"), np.full(shape, 0.2, "float32"))},
                    coords={"y": lat, "x": lon})
    write_stage_output(ts, url, "ts_quality", stage="invert", params={"weights": "quality"},
                       storage_options=storage_options)


def test_mosaic_three_frames(bucket, storage_options):
    rng = np.random.default_rng(0)
    lat1 = np.round(np.arange(31.6, 31.5, -0.001), 3)
    lat2 = np.round(np.arange(31.66, 31.56, -0.001), 3)
    lon = np.round(np.arange(90.0, 90.1, 0.001), 3)
    lon_d = np.round(np.arange(90.03, 90.13, 0.001), 3)
    urls = [f"{bucket}/cubes/{f}.zarr" for f in ("012A_05443_131313", "012A_05441_131313", "121D_05442_131313")]
    _frame(urls[0], "012A_05443_131313", lat1, lon, (E_A, U_A, N_A), 0.0, storage_options, rng)
    _frame(urls[1], "012A_05441_131313", lat2, lon, (E_A, U_A, N_A), 3.0, storage_options, rng)
    _frame(urls[2], "121D_05442_131313", lat2, lon_d, (E_D, U_D, N_D), -2.0, storage_options, rng)
    area = f"{bucket}/areas/test.zarr"
    summary = run_mosaic(urls, area, ts_group="ts_quality", storage_options=storage_options)
    assert abs(summary["frames"]["012A_05441_131313"]["offset_mm_yr"] - 3.0) < 0.05
    assert summary["directions"]["A"]["overlap_rms_after"] < 0.35 < summary["directions"]["A"]["overlap_rms_before"]

    ds = xr.open_zarr(area, storage_options=storage_options)
    assert ds.rio.crs.to_epsg() == 4326
    east, up = _truth_enu(ds.y.values, ds.x.values)
    ok = np.isfinite(ds.velocity_up.values)
    assert ok.sum() > 2000
    # velocities are relative: compare after removing the datum (the median difference)
    for est, truth in ((ds.velocity_up.values, up), (ds.velocity_east.values, east)):
        diff = est[ok] - truth[ok]
        assert np.sqrt(np.mean((diff - np.median(diff)) ** 2)) < 0.6
    assert float(np.nanmedian(ds.velocity_up_std)) > 0
    again = run_mosaic(urls, area, ts_group="ts_quality", storage_options=storage_options)
    assert again.get("skipped") is True


def test_frame_precision_comes_from_the_noise_group_when_complete(tmp_path):
    from insarcloud.mosaic.area import load_frame

    rng = np.random.default_rng(1)
    lat = np.round(np.arange(31.6, 31.58, -0.001), 3)
    lon = np.round(np.arange(90.0, 90.03, 0.001), 3)
    url = f"file://{tmp_path}/012A_05443_131313.zarr"
    _frame(url, "012A_05443_131313", lat, lon, (E_A, U_A, N_A), 0.0, None, rng)
    fm, _, _ = load_frame(url, "ts_quality")
    assert np.all(fm.velocity_std == np.float32(0.2))  # no noise group yet: the ts group's precision
    std = np.full((lat.size, lon.size), 0.9, "float32")
    std[:5] = np.nan  # where the noise stage has no estimate, the ts group's values stay
    noise = xr.Dataset({"velocity": (("y", "x"), np.full(std.shape, 7.0, "float32")),
                        "velocity_std": (("y", "x"), std)}, coords={"y": lat, "x": lon})
    write_stage_output(noise, url, "noise", stage="noise", params={"p": 1})
    fm, _, _ = load_frame(url, "ts_quality")
    assert np.all(fm.velocity_std[5:] == np.float32(0.9)) and np.all(fm.velocity[5:] == 7.0)
    assert np.all(fm.velocity_std[:5] == np.float32(0.2)) and np.all(fm.velocity[:5] != 7.0)
    fm, _, _ = load_frame(url, "ts_quality", precision_group=None)
    assert np.all(fm.velocity_std == np.float32(0.2))
