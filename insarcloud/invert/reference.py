"""Reference-point choice (numpy kernel on (y, x) summary maps).

LiCSBAS (step 12/13) references every interferogram to a small area that has all interferograms
unwrapped and the smallest loop-closure error; MintPy's default (``reference_point``) takes the pixel of
maximum average spatial coherence among pixels valid in every interferogram. We do the same without
importing the qc stage: candidates are the pixels with the most valid pairs; among them the one whose
window-averaged mean coherence is highest (a high-coherence *area*, not an isolated bright pixel) wins;
ties go to the smallest residual proxy when given (e.g. a loop-closure RMS map from qc).

The (y, x) summaries it needs are :func:`valid_count` and :func:`temporal_mean` of each block's pairs; the valid
count may also come from the qc group when it counted the same pairs (docs/invert.md, "Reference without an
extra pass").
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.ndimage import uniform_filter

from insarcloud.errors import InputArrayError


def valid_count(unw: np.ndarray, land: np.ndarray | None = None) -> np.ndarray:
    """(y, x) int32 number of pairs whose value is not NaN (``notnull``), 0 where ``land`` is False.

    Parameters
    ----------
    unw : (pair, y, x) float, unwrapped phase (rad).
    land : (y, x) bool, optional; False = water (no pair counts there).
    """
    n = np.zeros(unw.shape[1:], np.int32)
    for row in unw:  # row by row: no (pair, y, x) temporary
        n += ~np.isnan(row)
    if land is not None:
        n *= land
    return n


def temporal_mean(x: np.ndarray) -> np.ndarray:
    """(y, x) float32 mean over pairs of the non-NaN values of ``x`` (pair, y, x) float32 (NaN where none).

    The float32 sum runs in pair order, as ``numpy.nansum(x, axis=0, dtype=float32)`` (and xarray's / Dask's
    ``nanmean`` of one pair chunk) adds the rows, so the result is the same bits, without their
    whole-block copies.
    """
    acc = np.zeros(x.shape[1:], np.float32)
    cnt = np.zeros(x.shape[1:], np.int32)
    for row in x:
        ok = ~np.isnan(row)
        np.add(acc, row, out=acc, where=ok)
        cnt += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.divide(acc, cnt.astype(np.float32), dtype=np.float32)


class ReferencePoint(NamedTuple):
    """A reference pixel. ``y``, ``x``: pixel indices; ``n_valid``: its valid pairs; ``score``: its
    window-averaged mean coherence."""

    y: int
    x: int
    n_valid: int
    score: float


def choose_reference(n_valid: np.ndarray, mean_coh: np.ndarray, *, window: int = 5,
                     closure_rms: np.ndarray | None = None) -> ReferencePoint:
    """Pick the reference pixel.

    Parameters
    ----------
    n_valid : (y, x) int, number of pairs with finite unwrapped phase.
    mean_coh : (y, x) float, temporal mean coherence (NaN allowed).
    window : side of the square window (pixels) for the area-averaged coherence.
    closure_rms : optional (y, x) float rad; lower is better, breaks ties.
    """
    if n_valid.shape != mean_coh.shape or n_valid.ndim != 2:
        raise InputArrayError(f"n_valid {n_valid.shape} and mean_coh {mean_coh.shape} must be equal (y, x)")
    best = int(n_valid.max()) if n_valid.size else 0
    if best == 0:
        raise InputArrayError("no pixel has any valid pair: cannot choose a reference point")
    coh = np.nan_to_num(np.asarray(mean_coh, dtype=np.float64), nan=0.0)
    area = uniform_filter(coh, size=window, mode="nearest")
    score = np.where(n_valid == best, area, -np.inf)
    if closure_rms is not None:
        top = score >= np.nanmax(score) - 1e-6
        rms = np.where(top & np.isfinite(closure_rms), closure_rms, np.inf)
        if np.isfinite(rms).any():
            iy, ix = np.unravel_index(int(np.argmin(rms)), rms.shape)
            return ReferencePoint(int(iy), int(ix), best, float(area[iy, ix]))
    iy, ix = np.unravel_index(int(np.argmax(score)), score.shape)
    return ReferencePoint(int(iy), int(ix), best, float(area[iy, ix]))
