"""Dataset making as in Huo et al. (2024) section II-D, with pixels as samples.

Variables are stacked in the order ``VARIABLES = ("deformation", "lst", "ndvi", "precip")``; arrays have
shape (variable, date, pixel). Steps: optional first differencing of the deformation (so that a trend
becomes a stationary level the networks can reproduce; undone by :func:`integrate`), standard scaling
fitted on the part before the held-out test steps, the last ``n_test`` steps held out, overlapping
"multi-step to one-step" windows of length ``window`` (chosen by :func:`fft_window`), and a seeded random
7:3 train/validation split of the windows.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from insarcloud.errors import InputArrayError

VARIABLES = ("deformation", "lst", "ndvi", "precip")


class Scaler(NamedTuple):
    """Standard scaler per variable. mean, std : ndarray (variable,) float64 (std > 0)."""

    mean: np.ndarray
    std: np.ndarray

    def transform(self, a: np.ndarray) -> np.ndarray:
        """Scale ``a`` whose first axis is the variable axis."""
        sh = (-1,) + (1,) * (a.ndim - 1)
        return ((a - self.mean.reshape(sh)) / self.std.reshape(sh)).astype(np.float32)

    def inverse(self, a: np.ndarray, var: int | None = None) -> np.ndarray:
        """Undo :meth:`transform`; with ``var`` the array holds that one variable only."""
        if var is not None:
            return (a * self.std[var] + self.mean[var]).astype(np.float32)
        sh = (-1,) + (1,) * (a.ndim - 1)
        return (a * self.std.reshape(sh) + self.mean.reshape(sh)).astype(np.float32)


def fit_scaler(series: np.ndarray) -> Scaler:
    """Fit a per-variable standard scaler to ``series`` (variable, ...) ignoring NaN."""
    flat = series.reshape(series.shape[0], -1).astype(np.float64)
    mean = np.nanmean(flat, axis=1)
    std = np.nanstd(flat, axis=1)
    return Scaler(mean, np.where(std > 1e-12, std, 1.0))


def difference(deformation: np.ndarray) -> np.ndarray:
    """Increments ``d[t] - d[t-1]`` of (date, ...) -> (date - 1, ...)."""
    return np.diff(deformation, axis=0)


def integrate(increments: np.ndarray, last_level: np.ndarray) -> np.ndarray:
    """Inverse of :func:`difference`: levels (step, ...) continuing from ``last_level`` (...)."""
    return (np.asarray(last_level)[None] + np.cumsum(increments, axis=0)).astype(np.float32)


def fft_window(series: np.ndarray, lo: int = 10, hi: int = 24, default: int = 15) -> int:
    """Input length by the paper's FFT rule.

    The paper chooses a "smaller frequency" (a long period) as the time step such that its phase spectrum
    has the smallest absolute value, around the empirical 15. We take the FFT of the region-mean series
    ``series`` (date,) (or (date, pixel), averaged), list the periods ``round(1/f)`` (in steps) that fall
    in [lo, hi], and return the one whose bin has the smallest |phase|; ``default`` when none falls there.
    """
    s = np.asarray(series, dtype=np.float64)
    if s.ndim > 1:
        s = np.nanmean(s.reshape(s.shape[0], -1), axis=1)
    s = s[np.isfinite(s)]
    if s.size < 2 * lo:
        return default
    spec = np.fft.rfft(s - s.mean())
    freqs = np.fft.rfftfreq(s.size)
    best, best_phase = default, np.inf
    for k in range(1, len(freqs)):
        period = int(round(1.0 / freqs[k]))
        if lo <= period <= hi and abs(np.angle(spec[k])) < best_phase:
            best, best_phase = period, abs(np.angle(spec[k]))
    return best


def make_windows(series: np.ndarray, window: int, start: int = 0, stop: int | None = None, horizon: int = 1
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping multi-step to one-step windows, pixels as samples.

    Parameters
    ----------
    series : ndarray (variable, date, pixel) float32
    window : int
        Input length L.
    start, stop : int
        Targets are the dates ``start + L .. stop - 1`` (stop defaults to the number of dates).
    horizon : int
        Steps after each window returned as targets (> 1 for rolled-out multi-step training; all of them
        before ``stop``).

    Returns
    -------
    x : ndarray (sample, L, variable) float32, sample = target-major then pixel
    y : ndarray (sample, variable) float32, or (sample, horizon, variable) when horizon > 1
    """
    v, t, n = series.shape
    stop = t if stop is None else stop
    targets = np.arange(start + window, stop - horizon + 1)
    if targets.size == 0:
        raise InputArrayError(f"series of {t} dates too short for window {window} in [{start}, {stop})")
    idx = targets[:, None] + np.arange(-window, 0)[None]  # (k, L)
    x = series[:, idx, :]  # (v, k, L, n)
    x = np.transpose(x, (1, 3, 2, 0)).reshape(-1, window, v)
    if horizon == 1:
        y = np.transpose(series[:, targets, :], (1, 2, 0)).reshape(-1, v)
    else:
        yi = targets[:, None] + np.arange(horizon)[None]  # (k, H)
        y = np.transpose(series[:, yi, :], (1, 3, 2, 0)).reshape(-1, horizon, v)
    return np.ascontiguousarray(x, np.float32), np.ascontiguousarray(y, np.float32)


class ClimatologyWindows(NamedTuple):
    """The training/validation windows of :class:`Prepared` with the factor channels replaced by the factors'
    climatology (same samples, same order, same scaler; the deformation channel is identical).

    Used by "train as you forecast" (``TrainConfig.factor_climatology_prob``): the cyclic forecast feeds the
    factors' climatology, so a network trained only on true factors learns to use anomalies it will never see.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


class Prepared(NamedTuple):
    """A region ready for training and evaluation.

    Attributes
    ----------
    series : ndarray (variable, step, pixel) float32, scaled model space (deformation differenced when
        ``differenced``)
    scaler : Scaler
    window : int
    n_test : int
        The last ``n_test`` steps of ``series`` are the test set.
    differenced : bool
    first_level : ndarray (pixel,) float32, mm; the deformation at the first date (levels = first_level +
        cumsum of increments)
    x_train, y_train, x_val, y_val : windows from the non-test part (see :func:`make_windows`)
    climatology : ClimatologyWindows or None
        The same windows with climatological factors, when :func:`prepare` was given them.
    """

    series: np.ndarray
    scaler: Scaler
    window: int
    n_test: int
    differenced: bool
    first_level: np.ndarray
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    climatology: ClimatologyWindows | None = None


def prepare(deformation: np.ndarray, factors: np.ndarray, *, window: int | None = None, n_test: int = 10,
            differenced: bool = True, train_fraction: float = 0.7,
            rng: np.random.Generator | None = None, max_samples: int | None = None, horizon: int = 1,
            factor_climatology: np.ndarray | None = None) -> Prepared:
    """Build the scaled series and the train/validation windows.

    Parameters
    ----------
    deformation : ndarray (date, pixel) float, mm
    factors : ndarray (3, date, pixel) float: LST (degC), NDVI, precipitation (mm/month) on the same dates
    window : int, optional
        Input length; :func:`fft_window` of the mean deformation when None.
    n_test : int
        Number of final steps held out as the test set.
    differenced : bool
        Model the 12-day increments of deformation rather than its level.
    train_fraction : float
        Share of windows in training (the rest is validation), 0.7 in the paper.
    max_samples : int, optional
        Randomly keep at most this many windows (before the split) to bound the cost per epoch.
    horizon : int
        Target steps per window: 1 (the paper's one-step training) or K > 1 for rolled-out training, where
        y_train/y_val are (sample, K, variable) (see ``insarcloud.forecast.train``).
    factor_climatology : ndarray (3, date, pixel) float, optional
        The factors' climatology on the same dates (physical units, e.g. from
        :func:`insarcloud.forecast.harmonic.factor_climatology`); when given, ``Prepared.climatology`` holds
        the same windows with these factors, scaled with the scaler of the true series.
    """
    d = np.asarray(deformation, np.float32)
    f = np.asarray(factors, np.float32)
    if d.ndim != 2 or f.shape != (3,) + d.shape:
        raise InputArrayError(f"deformation {d.shape} must be (date, pixel) and factors (3, date, pixel); "
                              f"got factors {f.shape}")
    if not np.isfinite(d).all() or not np.isfinite(f).all():
        raise InputArrayError("deformation/factors contain NaN; select valid pixels first")
    rng = rng or np.random.default_rng(0)
    first_level = d[0].copy()
    if differenced:
        d_model = difference(d)
        f_model = f[:, 1:]
    else:
        d_model, f_model = d, f
    series = np.concatenate([d_model[None], f_model], axis=0)
    if window is None:
        window = fft_window(d)
    n_steps = series.shape[1]
    if n_steps - n_test <= window + 2:
        raise InputArrayError(f"{n_steps} steps leave too few for window {window} and {n_test} test steps")
    scaler = fit_scaler(series[:, : n_steps - n_test])
    scaled = scaler.transform(series)
    x, y = make_windows(scaled, window, 0, n_steps - n_test, horizon=horizon)
    order = rng.permutation(len(x))
    if max_samples is not None and len(order) > max_samples:
        order = order[:max_samples]
    n_tr = int(round(train_fraction * len(order)))
    tr, va = order[:n_tr], order[n_tr:]
    clim = None
    if factor_climatology is not None:
        fc = np.asarray(factor_climatology, np.float32)
        if fc.shape != f.shape:
            raise InputArrayError(f"factor_climatology {fc.shape} must match factors {f.shape}")
        fc_model = fc[:, 1:] if differenced else fc
        # the scaler of the true series: the climatology must land where the forecast loop will put it
        xc, yc = make_windows(scaler.transform(np.concatenate([d_model[None], fc_model], axis=0)), window, 0,
                              n_steps - n_test, horizon=horizon)
        clim = ClimatologyWindows(xc[tr], yc[tr], xc[va], yc[va])
    return Prepared(scaled, scaler, int(window), n_test, differenced, first_level,
                    x[tr], y[tr], x[va], y[va], clim)


def levels_from_model(pred: np.ndarray, prepared: Prepared, level_before: np.ndarray) -> np.ndarray:
    """Model-space deformation predictions (step, pixel) -> displacement levels (mm).

    Undo the scaling, then (when differenced) integrate from ``level_before`` (pixel,), the displacement at
    the date before the first predicted step.
    """
    inc = prepared.scaler.inverse(np.asarray(pred), var=0)
    if prepared.differenced:
        return integrate(inc, level_before)
    return inc


def transform_for_inference(deformation: np.ndarray, factors: np.ndarray, scaler: Scaler, window: int,
                            differenced: bool, n_test: int = 10) -> Prepared:
    """Model-space series of new pixels with a scaler fitted elsewhere (serving); no windows are built.

    deformation (date, pixel) mm and factors (3, date, pixel) as in :func:`prepare`.
    """
    d = np.asarray(deformation, np.float32)
    f = np.asarray(factors, np.float32)
    if differenced:
        series = np.concatenate([difference(d)[None], f[:, 1:]], axis=0)
    else:
        series = np.concatenate([d[None], f], axis=0)
    empty = np.zeros((0, window, 4), np.float32)
    return Prepared(scaler.transform(series), scaler, int(window), n_test, differenced, d[0].copy(),
                    empty, np.zeros((0, 4), np.float32), empty, np.zeros((0, 4), np.float32))
