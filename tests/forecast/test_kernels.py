"""Kernels of insarcloud.forecast against known truths: eq. 2 interpolation, monthly filling, regridding,
scaling and differencing round-trips, windows, the FFT rule, harmonic regression, metrics; the factor
simulator's physics."""

from __future__ import annotations

import numpy as np
import pytest

from insarcloud.errors import InputArrayError
from insarcloud.forecast.dataset import (
    difference,
    fft_window,
    fit_scaler,
    integrate,
    levels_from_model,
    make_windows,
    prepare,
)
from insarcloud.forecast.harmonic import factor_climatology, fit_harmonic, harmonic_residual, predict_harmonic
from insarcloud.forecast.metrics import moa_r2, scores
from insarcloud.forecast.resample import interp_time, interp_weights, monthly_fill, regrid_bilinear
from insarcloud.simulate.factors import simulate_factors, simulate_permafrost_ts, simulate_region


def _days(*d):
    return np.array(d, dtype="datetime64[D]").astype("datetime64[ns]")


def test_eq2_interpolation_matches_formula():
    src = _days("2020-01-01", "2020-01-09", "2020-01-17")
    vals = np.array([[0.0], [8.0], [4.0]])
    dst = _days("2020-01-05", "2020-01-09", "2020-01-13", "2019-12-01", "2020-02-01")
    out = interp_time(vals, src, dst)[:, 0]
    # Y_i = Y_{i-1} + (Y_{i+1} - Y_{i-1}) / (T_{i+1} - T_{i-1}) * (T_i - T_{i-1})
    assert out[0] == pytest.approx(0 + (8 - 0) / 8 * 4)
    assert out[1] == pytest.approx(8.0)
    assert out[2] == pytest.approx(8 + (4 - 8) / 8 * 4)
    assert out[3] == 0.0 and out[4] == 4.0  # clamped outside
    w = interp_weights(src, dst)
    assert w.extrapolated.tolist() == [False, False, False, True, True]


def test_interpolation_fills_cloud_gaps():
    src = _days("2020-01-01", "2020-01-09", "2020-01-17")
    vals = np.array([[0.0, 1.0], [np.nan, 1.0], [4.0, 1.0]])
    out = interp_time(vals, src, src)
    np.testing.assert_allclose(out, [[0, 1], [2, 1], [4, 1]])


def test_monthly_fill_and_missing_month():
    months = np.array(["2020-01", "2020-02", "2020-03"], dtype="datetime64[M]").astype("datetime64[ns]")
    vals = np.array([10.0, 20.0, 30.0])
    dates = _days("2020-01-31", "2020-02-01", "2020-03-15")
    np.testing.assert_array_equal(monthly_fill(vals, months, dates), [10, 20, 30])
    with pytest.raises(InputArrayError, match="2020-04"):
        monthly_fill(vals, months, _days("2020-04-02"))


def test_regrid_bilinear_is_exact_for_planes():
    sy = np.array([36.0, 35.5, 35.0])  # descending like the cube
    sx = np.array([93.0, 93.5, 94.0])
    plane = 2.0 * sy[:, None] - 3.0 * sx[None, :]
    dy = np.linspace(35.9, 35.1, 7)
    dx = np.linspace(93.1, 93.9, 5)
    out = regrid_bilinear(plane[None], sy, sx, dy, dx)[0]
    np.testing.assert_allclose(out, 2.0 * dy[:, None] - 3.0 * dx[None, :], rtol=1e-6)


def test_scaler_and_difference_round_trip():
    rng = np.random.default_rng(0)
    a = rng.normal([[[5.0]], [[-2.0]]], [[[3.0]], [[0.5]]], (2, 40, 7))
    s = fit_scaler(a)
    z = s.transform(a)
    np.testing.assert_allclose(z.reshape(2, -1).mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(z.reshape(2, -1).std(1), 1, atol=1e-5)
    np.testing.assert_allclose(s.inverse(z), a, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s.inverse(z[1], var=1), a[1], rtol=1e-5, atol=1e-5)
    d = np.cumsum(rng.normal(size=(30, 4)), 0)
    inc = difference(d)
    np.testing.assert_allclose(integrate(inc[10:], d[10]), d[11:], atol=1e-5)


def test_windows_pixels_as_samples():
    v, t, n, L = 4, 20, 3, 5
    series = np.arange(v * t * n, dtype=np.float32).reshape(v, t, n)
    x, y = make_windows(series, L, 0, 15)
    assert x.shape == ((15 - L) * n, L, v) and y.shape == ((15 - L) * n, v)
    # sample k*n + p is target date L + k of pixel p
    k, p = 3, 2
    np.testing.assert_array_equal(x[k * n + p], series[:, k : k + L, p].T)
    np.testing.assert_array_equal(y[k * n + p], series[:, k + L, p])
    with pytest.raises(InputArrayError):
        make_windows(series, 25)


def test_fft_rule_picks_window_near_15():
    t = np.arange(150)
    s = np.sin(2 * np.pi * t / 15.0)
    assert 10 <= fft_window(s) <= 24
    assert fft_window(np.zeros(5)) == 15


def test_prepare_split_holdout_and_inverse():
    rng = np.random.default_rng(1)
    t, n = 80, 6
    d = np.cumsum(rng.normal(-0.5, 1, (t, n)), 0).astype(np.float32)
    f = rng.normal(size=(3, t, n)).astype(np.float32)
    p = prepare(d, f, window=12, n_test=10, rng=np.random.default_rng(0))
    n_windows = (t - 1 - 10 - 12) * n
    assert len(p.x_train) + len(p.x_val) == n_windows
    assert len(p.x_train) == round(0.7 * n_windows)
    # the held-out steps never appear as targets
    test_targets = p.series[:, -10:].transpose(1, 2, 0).reshape(-1, 4)
    all_targets = np.concatenate([p.y_train, p.y_val])
    assert not (all_targets[:, None, :] == test_targets[None]).all(-1).any()
    # the scaled increments go back to the levels exactly
    lv = levels_from_model(p.series[0, -10:], p, d[-11])
    np.testing.assert_allclose(lv, d[-10:], atol=1e-4)
    with pytest.raises(InputArrayError):
        prepare(d[:20], f[:, :20], window=12)


def test_harmonic_recovers_truth_and_extrapolates():
    dates = (np.datetime64("2019-01-01") + np.arange(100) * np.timedelta64(12, "D")).astype("datetime64[ns]")
    t = (dates - dates[0]) / np.timedelta64(1, "D") / 365.25
    truth = np.stack([3 - 10 * t + 4 * np.cos(2 * np.pi * t) + 1.5 * np.sin(4 * np.pi * t),
                      -2 * t + 0 * t], axis=1)
    fit = fit_harmonic(dates[:70], truth[:70])
    np.testing.assert_allclose(predict_harmonic(fit, dates[70:]), truth[70:], atol=1e-4)
    lst = np.stack([5 * np.cos(2 * np.pi * (t - 0.55))] * 2, axis=1)
    fit2 = fit_harmonic(dates[:70], truth[:70], lst=lst[:70])
    assert predict_harmonic(fit2, dates[70:]).shape == (30, 2)


def test_harmonic_residual_and_factor_climatology():
    dates = (np.datetime64("2019-01-01") + np.arange(100) * np.timedelta64(12, "D")).astype("datetime64[ns]")
    t = (dates - dates[0]) / np.timedelta64(1, "D") / 365.25
    smooth = 3 - 10 * t + 4 * np.cos(2 * np.pi * t) + 1.5 * np.sin(4 * np.pi * t)
    d = np.stack([smooth, smooth], axis=1)
    d[85:, 1] += 20.0  # a step after the fit window: must not leak into the fit
    hr = harmonic_residual(dates, d, n_fit=80)
    assert hr.residual.shape == (100, 2) and hr.residual.dtype == np.float32
    np.testing.assert_allclose(hr.residual[:, 0], 0, atol=1e-3)
    np.testing.assert_allclose(hr.residual[85:, 1], 20.0, atol=1e-3)  # the residual keeps what the fit misses
    np.testing.assert_allclose(hr.residual[:85, 1], 0, atol=1e-3)
    with pytest.raises(InputArrayError):
        harmonic_residual(dates, d, n_fit=5)
    # climatology: annual + semi-annual per pixel and factor, extrapolated on future dates (no trend)
    f = np.stack([np.stack([5 + 10 * np.cos(2 * np.pi * (t - 0.55)), 0.3 + 0 * t], 1)] * 3)  # (3, 100, 2)
    clim = factor_climatology(dates[:60], f[:, :60], dates[60:])
    assert clim.shape == (3, 40, 2)
    np.testing.assert_allclose(clim, f[:, 60:], atol=1e-4)


def test_scores_known_values():
    t = np.array([1.0, 2.0, 3.0, 4.0])
    p = np.array([1.0, 2.0, 3.0, 6.0])
    s = scores(t, p)
    assert s.rmse == pytest.approx(1.0) and s.mae == pytest.approx(0.5)
    assert s.r2 == pytest.approx(1 - 4 / 5)
    assert s.smape == pytest.approx(100 / 4 * (2 / 5))
    assert moa_r2(np.stack([t, t], 1), np.stack([t, p], 1)) == pytest.approx((1 + 0.2) / 2)


def test_factor_simulator_physics():
    rng = np.random.default_rng(3)
    y = np.linspace(35.6, 35.5, 4)
    x = np.linspace(93.0, 93.1, 4)
    f = simulate_factors("2019-01-01", "2022-01-01", y, x, rng=rng)
    assert np.all(np.diff(f.lst_time) == np.timedelta64(8, "D"))
    assert np.all(np.diff(f.ndvi_time) == np.timedelta64(16, "D"))
    assert len(f.precip_time) == 37
    # LST peaks in summer, NDVI greens after it, precipitation is a summer monsoon
    month = f.lst_time.astype("datetime64[M]").astype(int) % 12 + 1
    assert f.lst[month == 7].mean() > f.lst[month == 1].mean() + 15
    nmonth = f.ndvi_time.astype("datetime64[M]").astype(int) % 12 + 1
    assert f.ndvi[np.isin(nmonth, (7, 8))].mean() > f.ndvi[np.isin(nmonth, (1, 2))].mean() + 0.15
    pm = f.precip_time.astype("datetime64[M]").astype(int) % 12 + 1
    assert f.precip[np.isin(pm, (6, 7, 8, 9))].sum() > 0.8 * f.precip.sum()
    dates = (np.datetime64("2019-02-01") + np.arange(80) * np.timedelta64(12, "D")).astype("datetime64[ns]")
    ts = simulate_permafrost_ts(f, dates, y, x, rng=rng, noise_mm=0.0, trend_mm_yr=(0.0, 0.0))
    # thaw settlement follows thaw depth: displacement anti-correlates with the active layer
    c = np.corrcoef(ts.clean[:, 1, 1], ts.thaw_depth[:, 1, 1])[0, 1]
    assert c < -0.8
    # and the thaw lags LST: the deepest thaw comes after the LST peak (late July)
    dm = dates.astype("datetime64[M]").astype(int) % 12 + 1
    assert ts.thaw_depth[np.isin(dm, (9, 10)), 1, 1].mean() > ts.thaw_depth[np.isin(dm, (6,)), 1, 1].mean()
    with pytest.raises(ValueError, match="outside"):
        simulate_permafrost_ts(f, dates + np.timedelta64(4000, "D"), y, x, rng=rng)


def test_simulate_region_shapes():
    r = simulate_region(5, 6, n_dates=40, rng=np.random.default_rng(0))
    assert r.ts.displacement.shape == (40, 5, 6)
    assert np.all(r.ts.displacement[0] == 0)
    assert r.factors.y.max() >= r.y.max() and r.factors.x.max() >= r.x.max()
