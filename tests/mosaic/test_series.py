"""Area displacement series: synthetic east/up motion projected into A and D LOS with known unit vectors, through
the frames' ts groups and the mosaic, comes back as the truth (decomposed per date on common dates)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from insarcloud.errors import NetworkError
from insarcloud.io import make_frame_dataset, write_new_cube, write_stage_output
from insarcloud.mosaic.area import run_mosaic
from insarcloud.mosaic.series import common_dates, interp_weights, resample_series, years_since

E_A, N_A, U_A = -0.62, -0.13, 0.76
E_D, N_D, U_D = 0.60, -0.12, 0.77
LON = np.round(np.arange(90.0, 90.1, 0.001), 3)  # 100 px
LAT = np.round(np.arange(31.6, 31.54, -0.001), 3)  # 60 px
REF_BOX = (90.0, 31.541, 90.02, 31.6)  # western strip where the truth does not move (the datum)


def _truth(dates: np.ndarray, lat: np.ndarray, lon: np.ndarray, seasonal: bool) -> tuple[np.ndarray, np.ndarray]:
    """(date, y, x) east and up in mm, zero at 2020-01-01 and west of lon 90.02."""
    t = years_since(dates, np.datetime64("2020-01-01"))[:, None, None]
    yy, xx = np.meshgrid(lat, lon, indexing="ij")
    moving = np.clip((xx - 90.02) / 0.03, 0, 1)[None]
    up_rate = -8 * moving * np.exp(-((yy - 31.57) ** 2) / 0.0005)
    east_rate = 5 * moving
    up = up_rate * t + (4 * moving * np.sin(2 * np.pi * t) if seasonal else 0)
    east = east_rate * t
    return east, up


def _frame(url: str, frame: str, lon: np.ndarray, dates: np.ndarray, vec: tuple[float, float, float],
           seasonal: bool, storage_options: dict, offset_rate: float = 0.0) -> None:
    e, n, u = vec
    east, up = _truth(dates, LAT, lon, seasonal)
    t = years_since(dates, dates[0])
    los = e * east + u * up + offset_rate * t[:, None, None]  # north motion is zero
    los = los - los[:1]
    shape = (LAT.size, lon.size)
    pairs = [f"{pd.Timestamp(dates[0]):%Y%m%d}_{pd.Timestamp(dates[1]):%Y%m%d}"]
    root = make_frame_dataset(frame=frame, pairs=pairs, lat=LAT, lon=lon, phase=np.zeros((1, *shape)),
                              coh=np.ones((1, *shape)),
                              statics={"los_e": np.full(shape, e), "los_n": np.full(shape, n),
                                       "los_u": np.full(shape, u)})
    write_new_cube(root, url, storage_options)
    a = np.stack([t - t.mean(), np.ones_like(t)], 1)
    vel = np.linalg.lstsq(a, los.reshape(t.size, -1), rcond=None)[0][0].reshape(shape)
    ts = xr.Dataset({"displacement": (("date", "y", "x"), los.astype("float32"), {"units": "mm"}),
                     "velocity": (("y", "x"), vel.astype("float32")),
                     "velocity_std": (("y", "x"), np.full(shape, 0.3, "float32")),
                     "residual_rms": (("y", "x"), np.full(shape, 1.0 if e < 0 else 2.0, "float32"))},
                    coords={"date": dates, "y": LAT, "x": lon}, attrs={"ref_y": 5, "ref_x": 3})
    write_stage_output(ts, url, "ts_quality", stage="invert", params={"weights": "quality"},
                       storage_options=storage_options)


def test_interpolation_kernels() -> None:
    src = pd.date_range("2020-01-01", periods=5, freq="12D").values
    dst = pd.date_range("2019-12-26", periods=11, freq="6D").values  # 2019-12-26 .. 2020-02-24
    w = interp_weights(src, dst)
    assert not w.valid[0] and w.valid[1:10].all() and not w.valid[10]
    lin = years_since(src, src[0])[:, None, None] * np.ones((1, 2, 3)) * 7.0  # 7 mm/yr
    out = resample_series(lin, w)
    want = 7.0 * years_since(dst, dst[1])
    np.testing.assert_allclose(out[1:10, 0, 0], want[1:10], atol=1e-5)
    assert np.isnan(out[0]).all() and np.isnan(out[10]).all()
    cd = common_dates({"A": [src], "D": [src + np.timedelta64(6, "D")]})
    assert cd[0] == src[0] + np.timedelta64(6, "D") and cd[-1] == src[-1]
    with pytest.raises(NetworkError, match="do not overlap"):
        common_dates({"A": [src[:2]], "D": [src[3:]]})


def test_area_series_equal_the_truth(bucket: str, storage_options: dict) -> None:
    """Same dates on both passes, seasonal + linear motion, and a second ascending frame with a 3 mm/yr offset:
    the decomposed series equal the truth at every date (float32 precision)."""
    dates = pd.date_range("2020-01-01", periods=16, freq="12D").values
    urls = [f"{bucket}/cubes/{f}.zarr" for f in ("012A_05443_131313", "012A_05441_131313", "121D_05442_131313")]
    _frame(urls[0], "012A_05443_131313", LON[:70], dates, (E_A, N_A, U_A), True, storage_options)
    _frame(urls[1], "012A_05441_131313", LON[40:], dates, (E_A, N_A, U_A), True, storage_options, offset_rate=3.0)
    _frame(urls[2], "121D_05442_131313", LON, dates, (E_D, N_D, U_D), True, storage_options)
    area = f"{bucket}/areas/series.zarr"
    summary = run_mosaic(urls, area, ts_group="ts_quality", reference_box=REF_BOX, precision_group=None,
                         storage_options=storage_options, series_tile=32)
    assert abs(summary["frames"]["012A_05441_131313"]["offset_mm_yr"] - 3.0) < 1e-3
    assert summary["series"]["dates"] == 16 and summary["series"]["tiles"] == 2 * 4
    ds = xr.open_zarr(area, storage_options=storage_options)
    assert ds["displacement_up"].dims == ("date", "y", "x") and ds["displacement_up"].attrs["units"] == "mm"
    assert ds["displacement_up"].encoding["chunks"] == (16, 32, 32)
    np.testing.assert_array_equal(ds["date"].values, dates)
    east, up = _truth(dates, ds.y.values, ds.x.values, True)
    got_e, got_u = ds["displacement_east"].values, ds["displacement_up"].values
    assert np.isfinite(got_u).all()
    np.testing.assert_allclose(got_u, up, atol=2e-3)
    np.testing.assert_allclose(got_e, east, atol=2e-3)
    # the LOS series per pass are the truth projected into each LOS
    np.testing.assert_allclose(ds["displacement_D"].values, E_D * east + U_D * up, atol=2e-3)
    # precision: residual_rms 1 mm (A) and 2 mm (D) propagated through the same decomposition as the velocity
    std_a, std_d = 1.0, 2.0
    det = (E_A * U_D - E_D * U_A) ** 2
    up_std = np.sqrt((E_A**2 * std_d**2 + E_D**2 * std_a**2) / det)
    inner = ds["displacement_up_std"].values[:, 75:]  # D only + one A frame: no overlap mixing there
    np.testing.assert_allclose(inner, up_std, rtol=1e-3)
    # the velocity maps are unchanged beside the series
    assert "velocity_up" in ds and np.isfinite(ds["velocity_up"].values).all()


def test_area_series_on_common_dates_when_passes_differ(bucket: str, storage_options: dict) -> None:
    """D acquires 6 days after A: the series are resampled by linear interpolation onto the union of dates within
    the common span; with motion linear in time that is exact."""
    dates_a = pd.date_range("2020-01-01", periods=12, freq="12D").values
    dates_d = dates_a + np.timedelta64(6, "D")
    urls = [f"{bucket}/cubes/{f}.zarr" for f in ("012A_05443_131313", "121D_05442_131313")]
    _frame(urls[0], "012A_05443_131313", LON, dates_a, (E_A, N_A, U_A), False, storage_options)
    _frame(urls[1], "121D_05442_131313", LON, dates_d, (E_D, N_D, U_D), False, storage_options)
    area = f"{bucket}/areas/series2.zarr"
    run_mosaic(urls, area, ts_group="ts_quality", reference_box=REF_BOX, precision_group=None,
               storage_options=storage_options)
    ds = xr.open_zarr(area, storage_options=storage_options)
    common = np.unique(np.concatenate([dates_a, dates_d]))
    common = common[(common >= dates_d[0]) & (common <= dates_a[-1])]
    np.testing.assert_array_equal(ds["date"].values, common)
    east, up = _truth(common, ds.y.values, ds.x.values, False)
    east, up = east - east[:1], up - up[:1]  # the area series start at the first common date
    np.testing.assert_allclose(ds["displacement_up"].values, up, atol=2e-3)
    np.testing.assert_allclose(ds["displacement_east"].values, east, atol=2e-3)
