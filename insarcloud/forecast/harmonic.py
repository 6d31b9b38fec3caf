"""Per-pixel harmonic regression: the baseline a geodesist tries first (pure numpy).

d(t) = a + b t + c1 cos(2 pi t) + s1 sin(2 pi t) + c2 cos(4 pi t) + s2 sin(4 pi t) [+ g LST(t - lag)],
t in years, least squares over the pixels at once (one design matrix). For forecasting, the lagged-LST
term needs future LST: we extrapolate a per-pixel annual + semi-annual LST climatology fitted the same way.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from insarcloud.errors import InputArrayError


class HarmonicFit(NamedTuple):
    """coef : ndarray (k, pixel); lst_coef : ndarray (5, pixel) or None (LST climatology);
    lag_years : float; t0 : datetime64 reference date; with_lst : bool."""

    coef: np.ndarray
    lst_coef: np.ndarray | None
    lag_years: float
    t0: np.datetime64
    with_lst: bool


def _years(dates: np.ndarray, t0: np.datetime64) -> np.ndarray:
    return (np.asarray(dates).astype("datetime64[ns]") - t0) / np.timedelta64(1, "D") / 365.25


def design(t: np.ndarray, trend: bool = True) -> np.ndarray:
    """Design matrix (date, 6) or (date, 5) without the trend column: 1, t, cos, sin, cos2, sin2."""
    w = 2 * np.pi * t
    cols = [np.ones_like(t)] + ([t] if trend else []) + [np.cos(w), np.sin(w), np.cos(2 * w), np.sin(2 * w)]
    return np.stack(cols, axis=1)


def _lagged(values: np.ndarray, t: np.ndarray, lag: float) -> np.ndarray:
    """values (date, pixel) evaluated at t - lag by linear interpolation (edges clamped)."""
    out = np.empty_like(values, dtype=np.float64)
    for j in range(values.shape[1]):
        out[:, j] = np.interp(t - lag, t, values[:, j])
    return out


def fit_harmonic(dates: np.ndarray, deformation: np.ndarray, lst: np.ndarray | None = None,
                 lag_days: float = 25.0) -> HarmonicFit:
    """Fit the model to ``deformation`` (date, pixel) mm; ``lst`` (date, pixel) adds the lagged-LST term."""
    d = np.asarray(deformation, np.float64)
    if d.ndim != 2 or d.shape[0] != len(dates):
        raise InputArrayError(f"deformation {d.shape} does not match {len(dates)} dates")
    t0 = np.asarray(dates).astype("datetime64[ns]")[0]
    t = _years(dates, t0)
    a = design(t)
    lag = lag_days / 365.25
    if lst is None:
        coef, *_ = np.linalg.lstsq(a, d, rcond=None)
        return HarmonicFit(coef, None, lag, t0, False)
    lst = np.asarray(lst, np.float64)
    lst_coef, *_ = np.linalg.lstsq(design(t, trend=False), lst, rcond=None)
    lagged = _lagged(lst, t, lag)
    coef = np.empty((a.shape[1] + 1, d.shape[1]))
    for j in range(d.shape[1]):  # the LST column differs per pixel
        aj = np.column_stack([a, lagged[:, j]])
        coef[:, j] = np.linalg.lstsq(aj, d[:, j], rcond=None)[0]
    return HarmonicFit(coef, lst_coef, lag, t0, True)


def predict_harmonic(fit: HarmonicFit, dates: np.ndarray) -> np.ndarray:
    """Displacement (date, pixel) mm on ``dates`` (future dates use the LST climatology)."""
    t = _years(dates, fit.t0)
    pred = design(t) @ fit.coef[:6]
    if fit.with_lst:
        lst_clim = design(t - fit.lag_years, trend=False) @ fit.lst_coef
        pred = pred + fit.coef[6][None] * lst_clim
    return pred.astype(np.float32)


class HarmonicResidual(NamedTuple):
    """Deformation split into a deterministic per-pixel harmonic part and a residual (our design option).

    fit : HarmonicFit (trend + annual + semi-annual, fitted on the first ``n_fit`` dates)
    residual : ndarray (date, pixel) float32, mm: deformation minus the fit on every date
    """

    fit: HarmonicFit
    residual: np.ndarray


def harmonic_residual(dates: np.ndarray, deformation: np.ndarray, n_fit: int | None = None) -> HarmonicResidual:
    """Fit trend + annual + semi-annual per pixel on the first ``n_fit`` dates (all when None) and return
    the residual on all dates. A network then forecasts the residual (e.g. the response to the factors that
    the 6-parameter model misses); the forecast displacement is ``predict_harmonic(fit, future) + residual
    forecast``. ``n_fit`` < len(dates) keeps held-out test dates out of the fit."""
    d = np.asarray(deformation, np.float64)
    n_fit = len(dates) if n_fit is None else int(n_fit)
    if n_fit < 7:
        raise InputArrayError(f"harmonic fit needs at least 7 dates, got {n_fit}")
    fit = fit_harmonic(np.asarray(dates)[:n_fit], d[:n_fit])
    return HarmonicResidual(fit, (d - predict_harmonic(fit, dates)).astype(np.float32))


def factor_climatology(dates: np.ndarray, factors: np.ndarray, future: np.ndarray) -> np.ndarray:
    """Per-pixel annual + semi-annual climatology of each factor, evaluated on ``future`` dates.

    factors (3, date, pixel) on ``dates``; returns (3, len(future), pixel) float32 in the factors' units. Used
    as the known future of the environmental factors (the expected season, no anomaly) in cyclic forecasts;
    the harmonic + lagged-LST baseline extrapolates LST the same way.
    """
    f = np.asarray(factors, np.float64)
    t0 = np.asarray(dates).astype("datetime64[ns]")[0]
    a = design(_years(dates, t0), trend=False)
    af = design(_years(future, t0), trend=False)
    out = np.empty((f.shape[0], len(future), f.shape[2]), np.float32)
    for v in range(f.shape[0]):
        coef, *_ = np.linalg.lstsq(a, f[v], rcond=None)
        out[v] = af @ coef
    return out
