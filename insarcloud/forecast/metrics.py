"""Evaluation indices of Table IV (RMSE, MAE, R^2, SMAPE) and the MOA-R^2 of eq. (18), numpy."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Scores(NamedTuple):
    """rmse, mae (units of the data, mm); r2 (1); smape (percent, 0..200)."""

    rmse: float
    mae: float
    r2: float
    smape: float


def scores(truth: np.ndarray, pred: np.ndarray) -> Scores:
    """Table IV indices over all finite elements of ``truth`` and ``pred`` (same shape).

    SMAPE = 100/n * sum(|p - t| / ((|t| + |p|) / 2)), terms with |t| + |p| == 0 count as 0.
    R^2 = 1 - SS_res / SS_tot with the mean of ``truth`` over all elements.
    """
    t = np.asarray(truth, np.float64)
    p = np.asarray(pred, np.float64)
    if t.shape != p.shape:
        raise ValueError(f"truth {t.shape} and prediction {p.shape} differ in shape")
    ok = np.isfinite(t) & np.isfinite(p)
    t, p = t[ok], p[ok]
    if t.size == 0:
        return Scores(np.nan, np.nan, np.nan, np.nan)
    e = p - t
    ss_tot = float(((t - t.mean()) ** 2).sum())
    den = (np.abs(t) + np.abs(p)) / 2
    smape = float(100.0 * np.mean(np.where(den > 0, np.abs(e) / np.where(den > 0, den, 1), 0.0)))
    return Scores(float(np.sqrt((e**2).mean())), float(np.abs(e).mean()),
                  1.0 - float((e**2).sum()) / ss_tot if ss_tot > 0 else np.nan, smape)


def moa_r2(truth: np.ndarray, pred: np.ndarray) -> float:
    """Eq. (18): mean over outputs (last axis) of the coefficient of determination."""
    t = np.asarray(truth, np.float64)
    p = np.asarray(pred, np.float64)
    r2 = 1 - ((t - p) ** 2).sum(0) / np.maximum(((t - t.mean(0)) ** 2).sum(0), 1e-12)
    return float(r2.mean())
