"""Put environmental factors on the InSAR dates and the frame grid (pure numpy).

Time: linear interpolation between the two bracketing acquisitions (eq. 2 of Huo et al. 2024,
``Y_i = Y_{i-1} + (Y_{i+1} - Y_{i-1}) / (T_{i+1} - T_{i-1}) * (T_i - T_{i-1})``) for LST and NDVI, and the
"monthly filling" of precipitation (each InSAR date takes its calendar month's value). Space: separable
bilinear interpolation of the factor grid onto the frame pixel centres, clamped at the edges.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from insarcloud.errors import InputArrayError


class InterpWeights(NamedTuple):
    """Bracketing indices and weights: ``out = (1 - w) * src[i0] + w * src[i1]``.

    Attributes
    ----------
    i0, i1 : ndarray (n_dst,) int64
    w : ndarray (n_dst,) float64 in [0, 1]
    extrapolated : ndarray (n_dst,) bool
        True where the target lies outside the source range (value clamped to the edge).
    """

    i0: np.ndarray
    i1: np.ndarray
    w: np.ndarray
    extrapolated: np.ndarray


def _as_float_axis(t: np.ndarray) -> np.ndarray:
    t = np.asarray(t)
    if np.issubdtype(t.dtype, np.datetime64):
        return t.astype("datetime64[ns]").astype(np.int64).astype(np.float64) / 86400e9
    return t.astype(np.float64)


def interp_weights(src: np.ndarray, dst: np.ndarray) -> InterpWeights:
    """Eq. 2 weights from a sorted or unsorted source axis (datetime64 or numeric) to ``dst``."""
    s = _as_float_axis(src)
    d = _as_float_axis(dst)
    if s.ndim != 1 or s.size == 0:
        raise InputArrayError(f"source axis must be 1-D and non-empty, got shape {s.shape}")
    order = np.argsort(s, kind="stable")
    ss = s[order]
    if s.size == 1:
        z = np.zeros(d.shape, np.int64)
        return InterpWeights(order[z], order[z], np.zeros(d.shape), d != ss[0])
    j = np.clip(np.searchsorted(ss, d, side="right"), 1, ss.size - 1)
    t0, t1 = ss[j - 1], ss[j]
    span = np.where(t1 > t0, t1 - t0, 1.0)
    w = np.clip((d - t0) / span, 0.0, 1.0)
    return InterpWeights(order[j - 1], order[j], w, (d < ss[0]) | (d > ss[-1]))


def interp_time(values: np.ndarray, src_t: np.ndarray, dst_t: np.ndarray) -> np.ndarray:
    """Linearly interpolate ``values`` (t, ...) from ``src_t`` to ``dst_t`` (eq. 2); NaN-aware.

    NaNs in the source are first filled along time by the same rule from their valid neighbours
    (per pixel), so a cloudy LST scene does not punch holes in the output.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.shape[0] != len(src_t):
        raise InputArrayError(f"values have {v.shape[0]} time steps but the time axis has {len(src_t)}")
    if np.isnan(v).any():
        v = _fill_nan_time(v, _as_float_axis(src_t))
    w = interp_weights(src_t, dst_t)
    shape = (-1,) + (1,) * (v.ndim - 1)
    return ((1 - w.w).reshape(shape) * v[w.i0] + w.w.reshape(shape) * v[w.i1]).astype(np.float32)


def _fill_nan_time(v: np.ndarray, t: np.ndarray) -> np.ndarray:
    flat = v.reshape(v.shape[0], -1).copy()
    bad_cols = np.flatnonzero(np.isnan(flat).any(0))
    for c in bad_cols:
        ok = ~np.isnan(flat[:, c])
        if ok.any():
            flat[~ok, c] = np.interp(t[~ok], t[ok], flat[ok, c])
    return flat.reshape(v.shape)


def monthly_fill(values: np.ndarray, month_t: np.ndarray, dst_t: np.ndarray) -> np.ndarray:
    """Give each date in ``dst_t`` the value of its calendar month from ``values`` (month, ...).

    Raises InputArrayError naming the first date whose month is absent from ``month_t``.
    """
    v = np.asarray(values)
    months = np.asarray(month_t).astype("datetime64[M]")
    want = np.asarray(dst_t).astype("datetime64[M]")
    order = np.argsort(months)
    ms = months[order]
    j = np.clip(np.searchsorted(ms, want), 0, len(ms) - 1)
    miss = ms[j] != want
    if miss.any():
        raise InputArrayError(f"precipitation has no value for month {want[miss][0]} "
                              f"(covers {ms[0]}..{ms[-1]})")
    return v[order[j]].astype(np.float32)


def regrid_bilinear(values: np.ndarray, src_y: np.ndarray, src_x: np.ndarray,
                    dst_y: np.ndarray, dst_x: np.ndarray) -> np.ndarray:
    """Separable bilinear interpolation of ``values`` (..., sy, sx) onto (dst_y, dst_x), edges clamped."""
    v = np.asarray(values, dtype=np.float32)
    if v.shape[-2:] != (len(src_y), len(src_x)):
        raise InputArrayError(f"values grid {v.shape[-2:]} != coords ({len(src_y)}, {len(src_x)})")
    wy = interp_weights(src_y, dst_y)
    wx = interp_weights(src_x, dst_x)
    a = (v[..., wy.i0, :] * (1 - wy.w)[:, None] + v[..., wy.i1, :] * wy.w[:, None]).astype(np.float32)
    return (a[..., wx.i0] * (1 - wx.w) + a[..., wx.i1] * wx.w).astype(np.float32)
