"""Area-level displacement series: A/D LOS series on common dates and their east/up decomposition (pure numpy).

Method (LiCSBAS ``LiCSBAS_decomposeLOS``-style and MintPy ``asc_desc2horz_vert``-style, applied per date):

1. Common dates: every acquisition date of any frame that lies inside the span seen by every pass direction
   (from the latest first date to the earliest last date), so no direction is extrapolated.
2. Each frame's series is resampled to those dates by linear interpolation in time between its two nearest
   acquisitions (only within its own span: NaN outside) and re-referenced to the first common date.
3. Frames of one direction get the correction the velocity mosaic found for them (offset and ramp, mm/yr)
   times the time since the first common date, and the direction's datum (reference area or GNSS, mm/yr)
   the same way, so that the slope of the area series is the area velocity; overlapping frames are combined
   with the same inverse-variance weights as the velocities.
4. Per date, ``v_k = e_k E + u_k U`` over the directions k with the same LOS unit vectors and weighted least
   squares as the velocity decomposition (:func:`insarcloud.mosaic.kernels.decompose_east_up`), north neglected.

Limit: a frame's displacement relative to its own reference pixel is tied to its neighbours by a trend
(step 3), not date by date, so a non-linear motion of a frame's reference pixel stays in that frame's series.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from insarcloud.errors import InputArrayError, NetworkError

__all__ = ["InterpWeights", "common_dates", "interp_weights", "resample_series", "years_since"]


def years_since(dates: np.ndarray, t0: np.datetime64) -> np.ndarray:
    """(date,) float64 years (days / 365.25) from ``t0``."""
    return (np.asarray(dates, "datetime64[ns]") - np.datetime64(t0, "ns")).astype("timedelta64[s]").astype(
        "float64") / 86400.0 / 365.25


def common_dates(dates_by_direction: dict[str, Sequence[np.ndarray]]) -> np.ndarray:
    """Union of all frames' dates within the span every direction covers (datetime64[ns], sorted).

    dates_by_direction : direction -> list of each frame's (date,) datetime64 arrays.
    Raises NetworkError when the directions' spans do not overlap in time (or fewer than two dates remain).
    """
    spans = {}
    every = []
    for d, frames in dates_by_direction.items():
        allv = np.concatenate([np.asarray(f, "datetime64[ns]") for f in frames])
        spans[d] = (allv.min(), allv.max())
        every.append(allv)
    start = max(s[0] for s in spans.values())
    end = min(s[1] for s in spans.values())
    union = np.unique(np.concatenate(every))
    out = union[(union >= start) & (union <= end)]
    if out.size < 2:
        raise NetworkError(f"the pass directions' time spans do not overlap in two or more dates: "
                           f"{ {d: (str(a)[:10], str(b)[:10]) for d, (a, b) in spans.items()} }")
    return out


class InterpWeights(NamedTuple):
    """Linear interpolation of a series on ``src`` dates to ``dst`` dates.

    ``out[k] = (1 - w[k]) * src[i0[k]] + w[k] * src[i1[k]]`` where ``valid[k]``; NaN elsewhere.
    """

    i0: np.ndarray  # (dst,) int
    i1: np.ndarray  # (dst,) int
    w: np.ndarray  # (dst,) float64 in [0, 1]
    valid: np.ndarray  # (dst,) bool: dst date inside the src span


def interp_weights(src: np.ndarray, dst: np.ndarray) -> InterpWeights:
    """Weights of linear interpolation in time from ``src`` (sorted datetime64) to ``dst`` dates."""
    s = np.asarray(src, "datetime64[ns]").astype("int64").astype("float64")
    t = np.asarray(dst, "datetime64[ns]").astype("int64").astype("float64")
    if s.size < 1 or np.any(np.diff(s) <= 0):
        raise InputArrayError("source dates must be strictly increasing")
    valid = (t >= s[0]) & (t <= s[-1])
    i1 = np.clip(np.searchsorted(s, t, side="left"), 0, s.size - 1)
    i0 = np.clip(i1 - 1, 0, s.size - 1)
    exact = s[i1] == t
    i0 = np.where(exact, i1, i0)
    span = s[i1] - s[i0]
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.where(span > 0, (t - s[i0]) / np.where(span > 0, span, 1.0), 0.0)
    return InterpWeights(i0, i1, np.clip(w, 0.0, 1.0), valid)


def resample_series(disp: np.ndarray, weights: InterpWeights) -> np.ndarray:
    """(date_src, y, x) -> (date_dst, y, x) float32 by :func:`interp_weights`, re-referenced to the first dst
    date inside the source span (the first common date, unless this frame starts later).

    disp : displacement, mm; NaN = no value (a NaN neighbour makes the interpolated value NaN).
    """
    w = weights.w.astype("float32")[:, None, None]
    out = disp[weights.i1].astype("float32")  # a copy (fancy indexing)
    out -= disp[weights.i0]
    out *= w
    out += disp[weights.i0]  # (1 - w) a + w b, in float32 with one (date, y, x) temporary
    out[~weights.valid] = np.nan
    first = np.flatnonzero(weights.valid)
    if first.size:
        out -= out[first[0]].copy()
    return out


def trend_correction(rate: np.ndarray, years: np.ndarray) -> np.ndarray:
    """(date, y, x) displacement of a (y, x) rate (mm/yr) over ``years`` since the first common date."""
    return np.asarray(rate, "float32")[None] * np.asarray(years, "float32")[:, None, None]
