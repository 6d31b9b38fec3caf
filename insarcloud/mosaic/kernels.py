"""Multi-frame mosaicking kernels: common grid, frame offsets from overlaps, east/up decomposition, GNSS tie.

All pure numpy. Frames are on LiCSAR's 0.001-degree grid; a frame is placed on the area grid by index
(nearest pixel centre), so no resampling blurs the velocities.

Datum: InSAR velocities are relative. Frames of one pass direction are tied to each other by least
squares over their overlaps (one offset, optionally a ramp, per frame; the first frame of the direction
fixed). Directions are then tied to GNSS when stations are given, else to a common reference area (the
median of each direction over it is zero). The east/up decomposition then uses both directions with
north neglected, as is usual for near-polar orbits (the north LOS component is ~0.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from insarcloud.errors import InputArrayError, NetworkError


class Grid(NamedTuple):
    """A north-up regular lat/lon grid; ``lat`` descending pixel centres, ``lon`` ascending (degrees)."""

    lat: np.ndarray
    lon: np.ndarray

    @property
    def step(self) -> float:
        return float(self.lon[1] - self.lon[0]) if self.lon.size > 1 else 0.001


def area_grid(extents: Sequence[tuple[float, float, float, float]], step: float = 0.001,
              bbox: tuple[float, float, float, float] | None = None) -> Grid:
    """Grid covering the union of frame ``extents`` (lon_min, lat_min, lon_max, lat_max of pixel centres),
    clipped to ``bbox`` when given; centres on multiples of ``step``."""
    ext = np.asarray(extents, dtype=float)
    lo_x, lo_y = ext[:, 0].min(), ext[:, 1].min()
    hi_x, hi_y = ext[:, 2].max(), ext[:, 3].max()
    if bbox is not None:
        lo_x, lo_y = max(lo_x, bbox[0]), max(lo_y, bbox[1])
        hi_x, hi_y = min(hi_x, bbox[2]), min(hi_y, bbox[3])
    if hi_x < lo_x or hi_y < lo_y:
        raise InputArrayError(f"frames {extents} do not intersect the area bbox {bbox}")
    i0, i1 = int(np.round(lo_x / step)), int(np.round(hi_x / step))
    j0, j1 = int(np.round(lo_y / step)), int(np.round(hi_y / step))
    lon = np.arange(i0, i1 + 1) * step
    lat = np.arange(j1, j0 - 1, -1) * step
    return Grid(lat=lat, lon=lon)


def place(grid: Grid, lat: np.ndarray, lon: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Put a frame's (..., y, x) ``values`` onto ``grid`` (NaN elsewhere) by nearest pixel centre."""
    step = grid.step
    ix = np.round((lon - grid.lon[0]) / step).astype(int)
    iy = np.round((grid.lat[0] - lat) / step).astype(int)
    if np.abs(lon - (grid.lon[0] + ix * step)).max(initial=0) > step / 2 + 1e-9:
        raise InputArrayError("frame longitudes are not on the area grid")
    out = np.full(values.shape[:-2] + (grid.lat.size, grid.lon.size), np.nan, dtype="float32")
    okx = (ix >= 0) & (ix < grid.lon.size)
    oky = (iy >= 0) & (iy < grid.lat.size)
    sub = values[..., oky, :][..., okx]
    out[..., iy[oky][:, None], ix[okx][None, :]] = sub
    return out


class OffsetSolution(NamedTuple):
    """Per-frame corrections from overlaps: ``v_corrected = v - (offset + ramp_x * dx + ramp_y * dy)``."""

    offsets: np.ndarray  # (frame,) mm/yr
    ramps: np.ndarray  # (frame, 2) mm/yr per degree (lon, lat); zeros when no ramp
    offsets_std: np.ndarray  # (frame,) mm/yr from the LS covariance scaled by the residual variance
    overlap_rms_before: float
    overlap_rms_after: float
    n_overlap_pixels: int
    edges: list[tuple[int, int, int]]  # (i, j, n_pixels)


class Overlap(NamedTuple):
    """Where frames ``i`` and ``j`` (i < j) both have a value: the input of :func:`solve_offsets`."""

    i: int
    j: int
    idx: np.ndarray  # (k,) int64 flat indices on the area grid (row-major), ascending
    diff: np.ndarray  # (k,) float32 v_i - v_j at idx (mm/yr)


def overlaps_of(maps: Sequence[np.ndarray]) -> list[Overlap]:
    """Every pair (i < j) of whole-area ``maps`` with the pixels where both are finite (the reference path)."""
    out = []
    for i in range(len(maps)):
        for j in range(i + 1, len(maps)):
            idx = np.flatnonzero(np.isfinite(maps[i]) & np.isfinite(maps[j]))
            out.append(Overlap(i, j, idx, maps[i].ravel()[idx] - maps[j].ravel()[idx]))
    return out


#: above this size of the dense design matrix, :func:`solve_offsets` accumulates normal equations instead
DENSE_LIMIT = 256 * 2**20


def frame_offsets(maps: Sequence[np.ndarray], grid: Grid, *, ramp: bool = False, fixed: int = 0,
                  min_overlap: int = 50, max_samples: int = 20000,
                  rng: np.random.Generator | None = None) -> OffsetSolution:
    """Least squares over the frame graph: for every overlapping pair (i, j) and overlap pixel p,
    ``v_i(p) - v_j(p) = c_i - c_j (+ ramp terms)``; frame ``fixed`` has zero correction (the gauge).

    maps : (frame) list of (y, x) velocities on ``grid`` (mm/yr, NaN outside a frame).
    A frame connected to no other raises NetworkError naming it (it cannot be tied by overlaps).
    """
    return solve_offsets(overlaps_of(maps), len(maps), grid, ramp=ramp, fixed=fixed, min_overlap=min_overlap,
                         max_samples=max_samples, rng=rng)


def solve_offsets(overlaps: Sequence[Overlap], n: int, grid: Grid, *, ramp: bool = False, fixed: int = 0,
                  min_overlap: int = 50, max_samples: int = 20000, rng: np.random.Generator | None = None,
                  dense_limit: int = DENSE_LIMIT) -> OffsetSolution:
    """:func:`frame_offsets` from the frames' overlaps (in (i, j) order), however they were gathered.

    Up to ``max_samples`` pixels per overlap are drawn (same draws whether the overlaps came from whole maps
    or from windows). The LS is solved densely (``np.linalg.lstsq``, the historical path) while the design
    matrix stays under ``dense_limit`` bytes, else from accumulated normal equations, whose memory is
    (frames x params)^2 instead of samples x frames x params (equal to the dense solution within rounding).
    """
    rng = rng or np.random.default_rng(0)
    npar = 3 if ramp else 1
    lat_c = grid.lat - grid.lat.mean()
    lon_c = grid.lon - grid.lon.mean()
    nx = grid.lon.size
    samples, edges = [], []
    for ov in overlaps:
        k = int(ov.idx.size)
        if k < min_overlap:
            continue
        idx, d = ov.idx, ov.diff
        if k > max_samples:
            pos = rng.choice(k, max_samples, replace=False)  # the draws of rng.choice(idx, ...)
            idx, d = idx[pos], d[pos]
        d = d.astype(float)
        basis = [np.ones(idx.size)] + ([lon_c[idx % nx], lat_c[idx // nx]] if ramp else [])
        samples.append((ov.i, ov.j, d, basis))
        edges.append((ov.i, ov.j, k))
    connected = {fixed} | {e[0] for e in edges} | {e[1] for e in edges}
    lonely = [i for i in range(n) if i not in connected]
    if n > 1 and (lonely or not edges):
        raise NetworkError(f"frames {lonely or list(range(n))} overlap no other frame of their direction")
    if not edges:
        z = np.zeros(n)
        return OffsetSolution(z, np.zeros((n, 2)), z, 0.0, 0.0, 0, [])
    keep = [c for c in range(n * npar) if c // npar != fixed]
    n_rows = sum(s[2].size for s in samples)
    if n_rows * n * npar * 8 <= dense_limit:
        params, resid, cov = _dense_ls(samples, n, npar, keep)
    else:
        params, resid, cov = _normal_ls(samples, n, npar, keep)
    std = np.zeros(n * npar)
    std[keep] = np.sqrt(np.clip(np.diag(cov), 0, None))
    p = params.reshape(n, npar)
    ramps = p[:, 1:3] if ramp else np.zeros((n, 2))
    before = np.concatenate([s[2] for s in samples])
    return OffsetSolution(
        offsets=p[:, 0], ramps=ramps, offsets_std=std.reshape(n, npar)[:, 0],
        overlap_rms_before=float(np.sqrt(np.mean(before**2))),
        overlap_rms_after=float(np.sqrt(np.mean(resid**2))), n_overlap_pixels=int(sum(e[2] for e in edges)),
        edges=edges,
    )


def _dense_ls(samples: list, n: int, npar: int, keep: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, rhs = [], []
    for i, j, d, basis in samples:
        a = np.zeros((d.size, n * npar))
        for q, b in enumerate(basis):
            a[:, i * npar + q] = b
            a[:, j * npar + q] = -b
        rows.append(a)
        rhs.append(d)
    a = np.vstack(rows)
    d = np.concatenate(rhs)
    sol, *_ = np.linalg.lstsq(a[:, keep], d, rcond=None)
    params = np.zeros(n * npar)
    params[keep] = sol
    resid = d - a @ params
    dof = max(1, d.size - len(keep))
    s2 = float(resid @ resid) / dof
    cov = s2 * np.linalg.pinv(a[:, keep].T @ a[:, keep])
    return params, resid, cov


def _normal_ls(samples: list, n: int, npar: int, keep: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same LS from N = A^T A and A^T d accumulated edge by edge (A is never built)."""
    big_n = np.zeros((n * npar, n * npar))
    rhs = np.zeros(n * npar)
    for i, j, d, basis in samples:
        b = np.stack(basis, axis=1)  # (k, npar)
        cols = np.r_[i * npar:(i + 1) * npar, j * npar:(j + 1) * npar]
        a = np.hstack([b, -b])
        big_n[np.ix_(cols, cols)] += a.T @ a
        rhs[cols] += a.T @ d
    nk = big_n[np.ix_(keep, keep)]
    sol, *_ = np.linalg.lstsq(nk, rhs[keep], rcond=None)
    params = np.zeros(n * npar)
    params[keep] = sol
    resid = []
    for i, j, d, basis in samples:
        b = np.stack(basis, axis=1)
        resid.append(d - b @ (params[i * npar:(i + 1) * npar] - params[j * npar:(j + 1) * npar]))
    r = np.concatenate(resid)
    dof = max(1, r.size - len(keep))
    cov = float(r @ r) / dof * np.linalg.pinv(nk)
    return params, r, cov


def correction_map(sol: OffsetSolution, k: int, grid: Grid, rows: slice = slice(None),
                   cols: slice = slice(None)) -> np.ndarray:
    """The (y, x) correction of frame ``k`` on ``grid`` (offset + ramp), or on its window [rows, cols]
    (the same numbers, element for element, as the whole map's)."""
    yy = (grid.lat - grid.lat.mean())[rows][:, None]
    xx = (grid.lon - grid.lon.mean())[cols][None, :]
    out = sol.offsets[k] + sol.ramps[k, 0] * xx + sol.ramps[k, 1] * yy
    return np.broadcast_to(out, (yy.shape[0], xx.shape[1])).astype("float32")


def combine(maps: Sequence[np.ndarray], stds: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse-variance mean of overlapping frames; returns (value, std, count) on the grid."""
    v = np.stack(maps).astype(float)
    s = np.stack(stds).astype(float)
    w = np.where(np.isfinite(v) & np.isfinite(s) & (s > 0), 1.0 / np.maximum(s, 1e-6) ** 2, 0.0)
    wsum = w.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        val = np.where(wsum > 0, (w * np.nan_to_num(v)).sum(0) / wsum, np.nan)
        std = np.where(wsum > 0, 1.0 / np.sqrt(wsum), np.nan)
    return val.astype("float32"), std.astype("float32"), (w > 0).sum(0).astype("int16")


class Decomposition(NamedTuple):
    """East and up velocity (mm/yr) with 1-sigma precision from two or more LOS directions."""

    east: np.ndarray
    up: np.ndarray
    east_std: np.ndarray
    up_std: np.ndarray
    n_looks: np.ndarray


def decompose_east_up(los: Sequence[np.ndarray], los_std: Sequence[np.ndarray], los_e: Sequence[np.ndarray],
                      los_u: Sequence[np.ndarray]) -> Decomposition:
    """Per-pixel weighted LS ``v_k = e_k E + u_k U`` over directions k (north neglected).

    los, los_std : (k) lists of (y, x) LOS velocity (mm/yr, + toward the satellite) and its 1-sigma.
    los_e, los_u : (k) lists of (y, x) east and up components of the ground-to-satellite unit vector.
    Pixels seen by fewer than two directions are NaN.
    """
    v = np.stack(los).astype(float)
    s = np.stack(los_std).astype(float)
    e = np.stack(los_e).astype(float)
    u = np.stack(los_u).astype(float)
    ok = np.isfinite(v) & np.isfinite(s) & (s > 0) & np.isfinite(e) & np.isfinite(u)
    w = np.where(ok, 1.0 / np.maximum(s, 1e-6) ** 2, 0.0)
    v, e, u = np.nan_to_num(v), np.nan_to_num(e), np.nan_to_num(u)
    n_ee, n_eu, n_uu = (w * e * e).sum(0), (w * e * u).sum(0), (w * u * u).sum(0)
    b_e, b_u = (w * e * v).sum(0), (w * u * v).sum(0)
    det = n_ee * n_uu - n_eu**2
    count = ok.sum(0)
    good = (count >= 2) & (np.abs(det) > 1e-12 * np.maximum(n_ee * n_uu, 1e-30))
    with np.errstate(invalid="ignore", divide="ignore"):
        east = np.where(good, (n_uu * b_e - n_eu * b_u) / det, np.nan)
        up = np.where(good, (n_ee * b_u - n_eu * b_e) / det, np.nan)
        east_std = np.where(good, np.sqrt(n_uu / det), np.nan)
        up_std = np.where(good, np.sqrt(n_ee / det), np.nan)
    f = "float32"
    return Decomposition(east.astype(f), up.astype(f), east_std.astype(f), up_std.astype(f), count.astype("int16"))


def reference_offset(v: np.ndarray, region: np.ndarray) -> float:
    """Median of ``v`` over a boolean ``region`` (the common reference area)."""
    vals = v[region & np.isfinite(v)]
    if vals.size == 0:
        raise NetworkError("the reference area holds no valid pixel of this direction")
    return float(np.median(vals))


class GnssTie(NamedTuple):
    offset: float
    offset_std: float
    n_stations: int
    rms_before: float
    rms_after: float


def gnss_tie(v_los: np.ndarray, grid: Grid, stations: Sequence[dict], los_e: np.ndarray, los_n: np.ndarray,
             los_u: np.ndarray) -> GnssTie:
    """Offset that best ties a LOS velocity map to GNSS velocities projected into that LOS.

    stations : dicts with lon, lat, ve, vn, vu (mm/yr) and optional sigma_e/n/u.
    """
    diffs, weights = [], []
    for st in stations:
        ix = int(np.round((st["lon"] - grid.lon[0]) / grid.step))
        iy = int(np.round((grid.lat[0] - st["lat"]) / grid.step))
        if not (0 <= iy < grid.lat.size and 0 <= ix < grid.lon.size):
            continue
        win = (slice(max(0, iy - 2), iy + 3), slice(max(0, ix - 2), ix + 3))
        vi = np.nanmedian(v_los[win]) if np.isfinite(v_los[win]).any() else np.nan
        e, n, u = (float(np.nanmean(a[win])) for a in (los_e, los_n, los_u))
        if not np.isfinite(vi) or not np.isfinite(e + n + u):
            continue
        g = e * st["ve"] + n * st["vn"] + u * st["vu"]
        sg2 = (e * st.get("sigma_e", 1.0)) ** 2 + (n * st.get("sigma_n", 1.0)) ** 2 + (u * st.get("sigma_u", 1.0)) ** 2
        diffs.append(vi - g)
        weights.append(1.0 / max(sg2, 1e-6))
    if not diffs:
        raise NetworkError("no GNSS station falls on valid pixels of this direction")
    d, w = np.asarray(diffs), np.asarray(weights)
    off = float((w * d).sum() / w.sum())
    resid = d - off
    std = float(np.sqrt(1.0 / w.sum()) if d.size == 1 else np.sqrt((w * resid**2).sum() / w.sum() / (d.size - 1)))
    return GnssTie(off, std, int(d.size), float(np.sqrt(np.mean(d**2))), float(np.sqrt(np.mean(resid**2))))
