"""Per-pixel weighted SBAS / NSBAS inversion of an interferogram stack (numpy kernels).

Model (epoch domain, the same time series as LiCSBAS's increments and MintPy's ``A`` matrix):
unknowns are the phases ``phi_k`` at every epoch with ``phi_0 = 0`` (first date); pair ``i`` observes
``phi[s_i] - phi[p_i] = unw_i`` with weight ``w_i`` (0 = unused). NSBAS (LiCSBAS step 13,
``invert_nsbas``) adds, for every epoch ``k`` (including the first), the row
``gamma * (phi_k - v * t_k - c) = 0`` with unit weight, which ties components of a split network to one
linear model; with ``gamma = 0`` each component of a pixel's network is solved on its own, relative to
its own first epoch, and labelled.

The normal matrix ``A^T W A`` is a weighted graph Laplacian, banded with half-bandwidth = the longest
pair in epochs; NSBAS borders it with two dense columns (v, c) that a 2x2 Schur complement removes.
Unweighted data: every block is first solved as if all pairs were valid, with ONE matrix product of a
precomputed (date+1, pair) projector (series and velocity rows) in the data's dtype; the residual norm
comes from the normal equations, ``||r||^2 = ||d||^2 - phi^T Q phi`` (a date x date product instead of
the pair x pix residual), recomputed directly where that difference cancels. Columns with a NaN are then
redone: a pixel missing exactly one pair by a rank-1 (Sherman-Morrison) downdate of the complete
solution, patterns shared by >= ``MIN_GROUP`` pixels by their own projector, the rest by a banded LDL^T
batched over pixels (:mod:`insarcloud.invert.linalg`), or a dense batched solve when the band is wide.
Weighted data always take the banded (or dense) path.

Velocity is the least-squares slope of the series against time (LiCSBAS ``calc_vel``, MintPy
``timeseries2velocity``), with one intercept per component; its standard deviation propagates the
weighted-LS covariance of the series, ``sigma0^2 (A^T W A)^{-1}``, scaled by the a-posteriori variance
of unit weight ``sigma0^2 = sum(w r^2) / (n_used - rank)``.
"""

from __future__ import annotations

import logging
from typing import Literal, NamedTuple

import numpy as np
import scipy.sparse as sp

from insarcloud.errors import InputArrayError
from insarcloud.invert.linalg import (
    band_ldl_backward,
    band_ldl_factor,
    band_ldl_forward,
    network_operator,
    pixel_components,
    solve_2x2,
)
from insarcloud.invert.network import Network, epoch_components

log = logging.getLogger(__name__)

SolverName = Literal["auto", "banded", "dense"]
DEFAULT_GAMMA = 1e-4  # LiCSBAS step 13 default
PIXEL_BLOCK = 16384  # pixels per inner block: bounds temporaries to ~ block * (pair + date^2/...) * 8 B
# pixels per block of the weighted (banded) solver: its (pair, pix) float64 temporaries then stay in a core's
# L2 cache (230 pairs x 2048 px x 8 B = 3.8 MB; 16384 px ran 1.6x slower, docs/invert.md)
WLS_BLOCK = 2048
MIN_GROUP = 16  # a valid-pair pattern shared by at least this many pixels is solved once for all
BRIDGE_TOL = 1e-3  # rank-1 downdate only while 1 - leverage > this (else the pair is (nearly) a bridge)
# RSS from the normal equations is recomputed directly where RSS < RSS_RTOL * ||d||^2 (cancellation)
RSS_RTOL = {np.float32: 1e-3, np.float64: 1e-9}


class InversionResult(NamedTuple):
    """Per-pixel outputs of :func:`invert_pixels` (``pix`` = flattened pixels).

    Attributes
    ----------
    displacement : (date, pix) rad, float32 for float32 data (a cube's), else float64; phase relative to
        the first date (LiCSAR sign: multiply by ``-wavelength/(4 pi)`` for LOS toward the satellite).
        NaN where the pixel has no usable pair, on epochs outside every pair (gamma = 0), or where the
        system was singular.
    velocity : (pix,) rad/yr (dtype as displacement), slope of ``displacement`` against ``t_years``.
    velocity_std : (pix,) rad/yr, from the scaled weighted-LS covariance; NaN without redundancy.
    residual_rms : (pix,) rad, unweighted RMS of ``unw - A phi`` over the used pairs.
    n_pairs_used : (pix,) int32, pairs with finite data and positive weight.
    n_components : (pix,) int16, connected components of the pixel's network (isolated epochs excluded).
    component : (date, pix) int16, component label (0 = the first date's) per epoch; -1 on epochs in no
        used pair.
    """

    displacement: np.ndarray
    velocity: np.ndarray
    velocity_std: np.ndarray
    residual_rms: np.ndarray
    n_pairs_used: np.ndarray
    n_components: np.ndarray
    component: np.ndarray


def _check(unw: np.ndarray, weights: np.ndarray | None, net: Network) -> None:
    if unw.ndim != 2 or unw.shape[0] != net.n_pair:
        raise InputArrayError(f"unw must be (pair={net.n_pair}, pix), got shape {unw.shape}")
    if weights is not None and weights.shape != unw.shape:
        raise InputArrayError(f"weights shape {weights.shape} differs from unw shape {unw.shape}")


def invert_pixels(unw: np.ndarray, weights: np.ndarray | None, net: Network, *,
                  gamma: float = DEFAULT_GAMMA, solver: SolverName = "auto") -> InversionResult:
    """Invert every pixel's interferograms into a time series, velocity and diagnostics.

    Parameters
    ----------
    unw : (pair, pix) float32/64 rad, unwrapped phase (LiCSAR sign), NaN = missing.
    weights : (pair, pix) float >= 0 or None (all 1). NaN or <= 0 -> the pair is not used at that pixel;
        a pixel whose weights are all zero gets NaN outputs and ``n_pairs_used = 0``.
    net : the pair network (:func:`insarcloud.invert.network.build_network`).
    gamma : NSBAS constraint weight (LiCSBAS default 1e-4); 0 = plain SBAS per component.
    solver : "banded" (batched banded LDL^T), "dense" (batched ``numpy.linalg.solve``), or "auto"
        (banded unless the half-bandwidth exceeds a third of the epochs).

    Examples
    --------
    >>> import numpy as np
    >>> from insarcloud.invert.network import build_network
    >>> d = np.array(["2020-01-01", "2020-01-13", "2020-01-25"], dtype="datetime64[ns]")
    >>> net = build_network(d[[0, 0, 1]], d[[1, 2, 2]])
    >>> phi = np.array([0.0, 1.0, 3.0])
    >>> unw = (phi[net.secondary_idx] - phi[net.primary_idx])[:, None]
    >>> np.round(invert_pixels(unw, None, net, gamma=0.0).displacement[:, 0], 9)
    array([0., 1., 3.])
    """
    _check(unw, weights, net)
    if gamma < 0 or not np.isfinite(gamma):
        raise InputArrayError(f"gamma must be finite and >= 0, got {gamma}")
    if unw.dtype not in (np.float32, np.float64):
        unw = unw.astype(np.float64)
    n_pix = unw.shape[1]
    ft = unw.dtype  # float32 data -> float32 outputs: no upcast pass over the (date, pix) series
    # the (date, pix) arrays are left unfilled: every path writes all of its columns (a fill would be
    # one more pass over the largest outputs)
    out = InversionResult(
        np.empty((net.n_date, n_pix), ft), np.full(n_pix, np.nan, ft), np.full(n_pix, np.nan, ft),
        np.full(n_pix, np.nan, ft), np.zeros(n_pix, np.int32), np.zeros(n_pix, np.int16),
        np.empty((net.n_date, n_pix), np.int16))
    # the complete pattern's projector is shared by every block (unweighted only)
    full = _shared_projector(np.ones(net.n_pair, bool), net, gamma) if weights is None else None
    block = PIXEL_BLOCK if weights is None else min(PIXEL_BLOCK, WLS_BLOCK)
    for start in range(0, n_pix, block):
        sl = slice(start, min(n_pix, start + block))
        if full is not None:
            _unweighted_block(unw[:, sl], full, net, gamma, solver, out, sl)
        else:
            _invert_cols(unw[:, sl], weights[:, sl], net, gamma, solver, out, sl)
    return out


def _unweighted_block(d: np.ndarray, full: SharedProjector, net: Network, gamma: float, solver: SolverName,
                      out: InversionResult, sl: slice) -> None:
    """Unweighted block: the complete pattern for every column at once, then the columns with gaps.

    One product solves the whole block as if every pair were valid; a column with a NaN/inf has a
    non-finite sum of squares and is redone: a pixel that misses exactly one (non-bridge) pair by a
    rank-1 downdate of the complete pattern's solution (Sherman-Morrison, no refactorisation), the
    others by pattern groups / the banded solver.
    """
    dd = _apply_shared(d, full, net, gamma, out, sl)
    bad = np.flatnonzero(~np.isfinite(dd))
    if bad.size == 0:
        return
    cols = bad + sl.start
    out.displacement[:, cols] = np.nan
    for arr in (out.velocity, out.velocity_std, out.residual_rms):
        arr[cols] = np.nan
    out.n_pairs_used[cols] = 0
    out.n_components[cols] = 0
    out.component[:, cols] = -1
    db = d[:, bad]
    used = np.isfinite(db)
    n_used = np.count_nonzero(used, axis=0)
    miss = np.argmin(used, axis=0)  # the first missing pair of each column
    one = (n_used == net.n_pair - 1) & (full.hat[miss] < 1.0 - BRIDGE_TOL)
    if one.any():
        d1 = np.where(used[:, one], db[:, one], 0)
        _downdate_one(d1, miss[one], full, net, gamma, out, cols[one])
    rest = np.flatnonzero(~one)
    if rest.size:
        _invert_cols(db[:, rest], None, net, gamma, solver, out, cols[rest])


def _invert_cols(unw: np.ndarray, weights: np.ndarray | None, net: Network, gamma: float, solver: SolverName,
                 out: InversionResult, base: slice | np.ndarray) -> None:
    """General path for the columns ``base`` (a slice or absolute indices) of the outputs."""
    if weights is None:
        used = np.isfinite(unw)
        w = used  # bool stands for weight 1 (cast only where a weighted solver needs it)
    else:
        used = (weights > 0) & np.isfinite(unw)  # NaN weight (False here) or NaN/inf data -> unused
        w = np.zeros(unw.shape)
        np.copyto(w, weights, where=used)
    n_used = np.count_nonzero(used, axis=0)
    out.n_pairs_used[base] = n_used
    empty = _at(base, np.flatnonzero(n_used == 0))
    out.displacement[:, empty] = np.nan
    out.component[:, empty] = -1
    todo = np.flatnonzero(n_used > 0)
    if todo.size == 0:
        return
    if weights is None:
        # pixels with the same valid-pair pattern share A^T W A: solve each pattern once (one matrix
        # product for all its pixels); bytes of the packed validity bits are the key
        packed = np.ascontiguousarray(np.packbits(used[:, todo], axis=0).T)
        keys = packed.view(f"V{packed.shape[1]}").ravel()
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        inverse = inverse.ravel()
        big = counts >= MIN_GROUP
        for g in np.flatnonzero(big):
            cols = todo[inverse == g]
            used1 = used[:, cols[0]]
            _apply_shared(np.where(used1[:, None], unw[:, cols], 0), _shared_projector(used1, net, gamma), net,
                          gamma, out, _at(base, cols))
        todo = todo[~big[inverse]]
    wide = net.bandwidth > max(1, net.n_date // 3)
    fn = _solve_dense if solver == "dense" or (solver == "auto" and wide) else _solve_banded
    for start in range(0, todo.size, WLS_BLOCK):  # cache-sized pieces (the unweighted rest can be large)
        part = todo[start: start + WLS_BLOCK]
        used_p = _take(used, part)
        d = np.zeros(used_p.shape)
        np.copyto(d, _take(unw, part), where=used_p)  # NaN/inf -> 0, float64
        fn(d, _take(w, part).astype(np.float64, copy=False), net, gamma, out, _at(base, part), used_p)


def _every(cols: np.ndarray, n: int) -> bool:
    return cols.size == n and (n == 0 or (cols[0] == 0 and cols[-1] == n - 1))


def _take(a: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``a[:, cols]`` without a copy when ``cols`` is every column in order."""
    return a if _every(cols, a.shape[1]) else a[:, cols]


def _at(base: slice | np.ndarray, cols: np.ndarray) -> slice | np.ndarray:
    """Absolute output columns of the local columns ``cols`` of ``base`` (the slice itself when all)."""
    if isinstance(base, slice):
        return base if _every(cols, base.stop - base.start) else cols + base.start
    return base[cols]


# ------------------------------------------------------------------------------------------------
# Shared pieces: pinning, regression weights, post-processing
# ------------------------------------------------------------------------------------------------


def _labels(net: Network, used: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Component heads (date, pix) and isolated-epoch mask (date, pix) for the used pairs.

    Pixels that use every pair share the network's labels. Of the others, a pixel where every epoch after the
    first has a used pair to an earlier epoch is connected (by induction every epoch reaches the first): one
    component headed by epoch 0, no isolated epoch; only the rest run a graph search. (With closure weights
    ~40 % of a frame's pixels miss a pair somewhere, nearly all of them still connected this way; the search
    over their many distinct patterns was half of the weighted kernel, docs/invert.md.)
    """
    full = used.all(axis=0)
    heads = np.empty((net.n_date, used.shape[1]), np.int64)
    _, lab = epoch_components(net)
    heads[:] = np.unique(lab, return_index=True)[1][lab][:, None]  # first epoch of each component
    part = np.flatnonzero(~full)
    if part.size:
        earlier = np.asarray(network_operator(net, "later") @ used[:, part].view(np.uint8))  # (date, pix)
        chained = (earlier[1:] > 0).all(axis=0)
        heads[:, part[chained]] = 0
        part = part[~chained]
    if part.size:
        sub = used[:, part]
        packed = np.ascontiguousarray(np.packbits(sub, axis=0).T)
        uniq, first, inverse = np.unique(packed.view(f"V{packed.shape[1]}").ravel(), return_index=True,
                                         return_inverse=True)
        if uniq.size * 16 <= part.size:  # few patterns: one graph search each (scipy), then broadcast
            pat = np.empty((net.n_date, uniq.size), np.int64)
            for k, j in enumerate(first):
                _, lab_k = epoch_components(net, sub[:, j])
                pat[:, k] = np.unique(lab_k, return_index=True)[1][lab_k]
            heads[:, part] = pat[:, inverse.ravel()]
        else:  # many patterns: label propagation vectorised over pixels
            heads[:, part] = pixel_components(net.primary_idx, net.secondary_idx, sub, net.n_date)
    degree = np.asarray(_incidence(net, absolute=True) @ used[:, part].astype(np.float64)) if part.size else None
    isolated = np.zeros(heads.shape, bool)
    isolated[:, full] = (_incidence(net, absolute=True) @ np.ones(net.n_pair) == 0)[:, None]
    if part.size:
        isolated[:, part] = degree == 0
    return heads, isolated


def _incidence(net: Network, absolute: bool = False) -> sp.csr_matrix:
    """(date, pair) sparse A^T: -1 at the primary, +1 at the secondary (|.| when ``absolute``)."""
    return network_operator(net, "abs" if absolute else "inc")


def _pins(heads: np.ndarray, isolated: np.ndarray, gamma: float) -> np.ndarray:
    """Epochs fixed to 0: the first date always; with gamma = 0 every component head and isolated epoch."""
    if gamma > 0:
        pin = np.zeros(heads.shape, bool)
        pin[0] = True
        return pin
    return (heads == np.arange(heads.shape[0])[:, None]) | isolated


def _slope_weights(net: Network, heads: np.ndarray, isolated: np.ndarray, gamma: float) -> np.ndarray:
    """h (date, pix) such that velocity = sum_k h_k phi_k (LS slope, one intercept per component)."""
    t = np.broadcast_to(net.t_years[:, None], heads.shape)
    if gamma > 0:
        tc = t - net.t_years.mean()
        s = (tc ** 2).sum(axis=0)
        return tc / s
    keep = ~isolated
    tc = np.zeros(heads.shape)
    for h in np.unique(heads[keep]):  # at most `date` distinct heads, each a vectorised pass
        m = (heads == h) & keep
        cnt = m.sum(axis=0)
        mean = np.where(cnt > 0, (t * m).sum(axis=0) / np.maximum(cnt, 1), 0.0)
        tc = np.where(m, t - mean, tc)
    s = (tc ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(s > 0, tc / s, np.nan)


def _finish(phi: np.ndarray, q: np.ndarray, h: np.ndarray, d: np.ndarray, w: np.ndarray, net: Network,
            heads: np.ndarray, isolated: np.ndarray, gamma: float, out: InversionResult,
            cols: np.ndarray, used: np.ndarray) -> None:
    """Residuals, velocity, its std and labels from the solved series ``phi`` (date, pix)."""
    r = d - np.asarray(network_operator(net, "design") @ phi)  # (pair, pix)
    r *= used
    r *= r
    n_used = used.sum(axis=0)
    wr2 = np.einsum("ip,ip->p", w, r)
    r2 = r.sum(axis=0)
    keep = ~isolated
    # number of components among non-isolated epochs: heads that head themselves and are not isolated
    is_head = (heads == np.arange(net.n_date)[:, None]) & keep
    n_comp = is_head.sum(axis=0)
    rank = keep.sum(axis=0) - n_comp
    dof = n_used - rank
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma2 = np.where(dof > 0, wr2 / dof, np.nan)
        rms = np.sqrt(r2 / n_used)
    if gamma == 0:
        phi = np.where(isolated, np.nan, phi)
    vel = np.where(h == 0, 0.0, h * phi).sum(axis=0)
    vel = np.where(np.isfinite(h).all(axis=0), vel, np.nan)
    bad = ~np.isfinite(phi).any(axis=0) | (n_used == 0)
    vel[bad] = np.nan
    out.displacement[:, cols] = np.where(bad, np.nan, phi)
    out.velocity[cols] = vel
    out.velocity_std[cols] = np.where(bad, np.nan, np.sqrt(sigma2 * np.maximum(q, 0.0)))
    out.residual_rms[cols] = np.where(bad, np.nan, rms)
    out.n_components[cols] = n_comp
    if (heads == heads[:, :1]).all() and (isolated == isolated[:, :1]).all():  # one labelling (e.g. all used)
        lab1 = (np.cumsum(is_head[:, 0]) - 1)[heads[:, 0]]
        out.component[:, cols] = np.where(isolated[:, 0], -1, lab1).astype(np.int16)[:, None]
        return
    comp = np.cumsum(is_head, axis=0, dtype=np.int16) - np.int16(1)  # rank of each head in time order
    lab = np.take_along_axis(comp, heads, axis=0)
    out.component[:, cols] = np.where(isolated, -1, lab).astype(np.int16)


# ------------------------------------------------------------------------------------------------
# Solvers
# ------------------------------------------------------------------------------------------------


def _normal_dense(w: np.ndarray, net: Network, gamma: float, pin: np.ndarray) -> np.ndarray:
    """(pix, M, M) normal matrices, M = date (+2 with NSBAS), pinned rows/cols replaced by identity."""
    n = net.n_date
    m_tot = n + 2 if gamma > 0 else n
    n_pix = w.shape[1]
    nm = np.zeros((n_pix, m_tot, m_tot))
    p, s = net.primary_idx, net.secondary_idx
    k = np.arange(net.n_pair)
    scatter = sp.csr_matrix((np.r_[np.ones(2 * k.size), -np.ones(2 * k.size)],
                             (np.r_[p * n + p, s * n + s, p * n + s, s * n + p], np.r_[k, k, k, k])),
                            shape=(n * n, net.n_pair))
    nm[:, :n, :n] = np.asarray(scatter @ w).reshape(n, n, n_pix).transpose(2, 0, 1)
    if gamma > 0:
        g2 = gamma * gamma
        t = net.t_years
        idx = np.arange(n)
        nm[:, idx, idx] += g2
        nm[:, :n, n] = nm[:, n, :n] = -g2 * t
        nm[:, :n, n + 1] = nm[:, n + 1, :n] = -g2
        nm[:, n, n] = g2 * (t * t).sum()
        nm[:, n, n + 1] = nm[:, n + 1, n] = g2 * t.sum()
        nm[:, n + 1, n + 1] = g2 * n
    pin_t = pin.T
    keep = np.ones((n_pix, m_tot), bool)
    keep[:, :n] = ~pin_t
    nm *= keep[:, :, None] & keep[:, None, :]
    ii = np.arange(n)
    nm[:, ii, ii] = np.where(pin_t, 1.0, nm[:, ii, ii])
    return nm


def _rhs(d: np.ndarray, w: np.ndarray, net: Network) -> np.ndarray:
    """A^T W d: (date, pix)."""
    return np.asarray(_incidence(net) @ (w * d))


def _solve_dense(d: np.ndarray, w: np.ndarray, net: Network, gamma: float, out: InversionResult,
                 cols: np.ndarray, used: np.ndarray) -> None:
    """Reference solver: one dense (M, M) system per pixel via numpy's batched LAPACK."""
    heads, isolated = _labels(net, used)
    pin = _pins(heads, isolated, gamma)
    h = _slope_weights(net, heads, isolated, gamma)
    nm = _normal_dense(w, net, gamma, pin)
    n = net.n_date
    m_tot = nm.shape[1]
    rhs = np.zeros((w.shape[1], m_tot, 2))
    rhs[:, :n, 0] = np.where(pin, 0.0, _rhs(d, w, net)).T
    rhs[:, :n, 1] = np.where(pin, 0.0, np.nan_to_num(h)).T
    with np.errstate(invalid="ignore"):
        try:
            x = np.linalg.solve(nm, rhs)
        except np.linalg.LinAlgError:  # one singular pixel: fall back to a per-pixel lstsq (rare)
            x = np.stack([np.linalg.lstsq(a, b, rcond=None)[0] for a, b in zip(nm, rhs, strict=True)])
    phi = x[:, :n, 0].T
    hz = np.where(pin, 0.0, np.nan_to_num(h))
    q = np.einsum("kp,kp->p", hz, x[:, :n, 1].T)
    _finish(phi, q, h, d, w, net, heads, isolated, gamma, out, cols, used)


def _band_normal(w: np.ndarray, net: Network, gamma: float, pin: np.ndarray) -> np.ndarray:
    """(date, bw+1, pix) upper-band storage of A^T W A (+ gamma^2 I), pinned rows/cols -> identity."""
    n, bw = net.n_date, net.bandwidth
    band = np.asarray(network_operator(net, "band") @ w).reshape(n, bw + 1, -1)
    if gamma > 0:
        band[:, 0] += gamma * gamma
    # pinned epoch k: zero its row (band[k, :]) and its column (band[k-j, j]), unit diagonal
    band[:, 1:] *= ~pin[:, None, :]
    for j in range(1, bw + 1):
        band[: n - j, j] *= ~pin[j:]
    band[:, 0] = np.where(pin, 1.0, band[:, 0])
    return band


def _solve_banded(d: np.ndarray, w: np.ndarray, net: Network, gamma: float, out: InversionResult,
                  cols: np.ndarray, used: np.ndarray) -> None:
    """Batched banded LDL^T (+ 2x2 Schur complement for NSBAS's v, c).

    Only the series needs a full solve: with ``z = L^-1 y`` every quadratic form of ``N^-1`` (the Schur
    complement ``C^T N^-1 C``, ``C^T N^-1 b``, the velocity variance factor ``h^T N^-1 h``) is a
    ``D^-1``-weighted dot product of forward substitutions, so the backward substitution runs once, for
    the series, instead of once per right-hand side (4 with NSBAS).
    """
    heads, isolated = _labels(net, used)
    pin = _pins(heads, isolated, gamma)
    h = _slope_weights(net, heads, isolated, gamma)
    hz = np.where(pin, 0.0, np.nan_to_num(h))
    fac = band_ldl_factor(_band_normal(w, net, gamma, pin))
    n, n_pix = net.n_date, w.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        dinv = 1.0 / fac[:, 0]  # NaN where a pivot failed: propagates to that pixel's outputs
    rhs = np.empty((n, 2 if gamma == 0 else 4, n_pix))
    rhs[:, 0] = _rhs(d, w, net)
    rhs[:, 0][pin] = 0.0
    rhs[:, -1] = hz
    if gamma == 0:
        z = band_ldl_forward(fac, rhs)
        zb, zh = z[:, 0], z[:, 1]
        q = np.einsum("kp,kp,kp->p", zh, zh, dinv)
        x = zb * dinv
    else:
        g2, t = gamma * gamma, net.t_years
        rhs[:, 1] = np.where(pin, 0.0, -g2 * t[:, None])
        rhs[:, 2] = np.where(pin, 0.0, -g2)
        z = band_ldl_forward(fac, rhs)
        zb, zc, zh = z[:, 0], z[:, 1:3], z[:, 3]
        zcd = zc * dinv[:, None]
        dmat = g2 * np.array([[(t * t).sum(), t.sum()], [t.sum(), float(n)]])
        schur = dmat[:, :, None] - np.einsum("kip,kjp->ijp", zc, zcd)  # D - C^T N^-1 C (2, 2, pix)
        vc = solve_2x2(schur, -np.einsum("kip,kp->ip", zcd, zb))
        x = (zb - np.einsum("kjp,jp->kp", zc, vc)) * dinv  # D^-1 L^-1 (b - C vc)
        cth = np.einsum("kip,kp->ip", zcd, zh)
        q = np.einsum("kp,kp,kp->p", zh, zh, dinv) + np.einsum("ip,ip->p", cth, solve_2x2(schur, cth))
    phi = band_ldl_backward(fac, x)
    _finish(phi, q, h, d, w, net, heads, isolated, gamma, out, cols, used)


# ------------------------------------------------------------------------------------------------
# One valid-pair pattern shared by many pixels (unweighted): one projector, matrix products only
# ------------------------------------------------------------------------------------------------


class SharedProjector(NamedTuple):
    """Everything the pixels of one unweighted valid-pair pattern share (float64 matrices).

    ``proj`` (date+1, pair): rows 0..date-1 map the data to the series (pinned rows 0), the last row to
    the velocity; ``quad`` (date, date) Q with ``RSS = ||d_used||^2 - phi^T Q phi`` (Q = A^T W A +
    2 gamma^2 (I - Pi_t), Pi_t the projector on [t, 1]: the NSBAS (v, c) are the LS line of phi);
    ``hat`` (pair,) leverages ``a_i^T N^-1 a_i`` (0 for unused pairs); ``design`` (pair, date) A with
    pinned columns zeroed; ``q = hz^T N^-1 hz`` (velocity variance factor); ``labels`` (date,) int16.
    """

    proj: np.ndarray
    quad: np.ndarray
    hat: np.ndarray
    design: np.ndarray
    used: np.ndarray
    q: float
    dof: int
    n_used: int
    n_comp: int
    labels: np.ndarray
    isolated: np.ndarray
    vel_ok: bool


def _shared_projector(used1: np.ndarray, net: Network, gamma: float) -> SharedProjector:
    heads, isolated = _labels(net, used1[:, None])
    pin = _pins(heads, isolated, gamma)[:, 0]
    h = _slope_weights(net, heads, isolated, gamma)[:, 0]
    w1 = used1.astype(np.float64)
    nm = _normal_dense(w1[:, None], net, gamma, pin[:, None])[0]
    n = net.n_date
    a = np.zeros((net.n_pair, n))
    a[np.arange(net.n_pair), net.primary_idx] = -1.0
    a[np.arange(net.n_pair), net.secondary_idx] = 1.0
    a *= ~pin
    ninv = np.linalg.inv(nm)
    pm = ninv[:n, :n] @ a.T * w1  # (date, pair): phi = pm @ d (the (v, c) border only enters through ninv)
    hv = np.nan_to_num(h)  # 0 on isolated epochs (gamma = 0); NSBAS fills and uses them
    quad = a.T @ (a * w1[:, None])
    if gamma > 0:
        tt = np.stack([net.t_years, np.ones(n)], axis=1)
        quad += 2 * gamma * gamma * (np.eye(n) - tt @ np.linalg.pinv(tt))
    hz = np.where(pin, 0.0, hv)
    keep = ~isolated[:, 0]
    is_head = (heads[:, 0] == np.arange(n)) & keep
    n_comp = int(is_head.sum())
    n_used = int(used1.sum())
    labels = np.where(isolated[:, 0], -1, (np.cumsum(is_head) - 1)[heads[:, 0]]).astype(np.int16)
    return SharedProjector(np.vstack([pm, hv @ pm]), quad, np.einsum("ik,ki->i", a, pm), a, used1,
                           float(hz @ ninv[:n, :n] @ hz), n_used - (int(keep.sum()) - n_comp), n_used, n_comp,
                           labels, isolated[:, 0], bool(np.isfinite(h).all()))


def _rss(d: np.ndarray, phi: np.ndarray, sp_: SharedProjector, dd: np.ndarray, net: Network,
         removed: np.ndarray | None = None) -> np.ndarray:
    """Residual sum of squares over the used pairs, float64 (pix,).

    ``||d||^2 - phi^T Q phi`` (one small product instead of the (pair, pix) residual). Where that
    difference is small against ``||d||^2`` the subtraction loses digits (float32: ~1e-6 ||d||^2), so
    those columns (noise-free or nearly exact data) get the residual computed directly.
    """
    rss = dd - np.einsum("kp,kp->p", phi, sp_.quad.astype(phi.dtype) @ phi)
    if removed is not None:  # the downdated pair is not in the sum
        m = np.arange(phi.shape[1])
        yi = phi[net.secondary_idx[removed], m] - phi[net.primary_idx[removed], m]
        rss = rss + yi * yi
    rss = rss.astype(np.float64)
    tol = RSS_RTOL[phi.dtype.type]
    redo = np.flatnonzero(~(rss >= tol * dd))
    redo = redo[np.isfinite(dd[redo])]
    if redo.size:
        r = d[:, redo] - sp_.design.astype(phi.dtype) @ phi[:, redo]
        r *= sp_.used[:, None]
        if removed is not None:
            r[removed[redo], np.arange(redo.size)] = 0
        rss[redo] = np.einsum("ip,ip->p", r, r)
    return np.maximum(rss, 0.0)


def _write_shared(x: np.ndarray, rss: np.ndarray, sp_: SharedProjector, gamma: float, out: InversionResult,
                  cols: slice | np.ndarray, q: float | np.ndarray, dof: int, n_used: int) -> None:
    n = sp_.labels.size
    phi = x[:n]
    if gamma == 0 and sp_.isolated.any():
        phi[sp_.isolated] = np.nan
    out.displacement[:, cols] = phi
    out.velocity[cols] = x[n] if sp_.vel_ok else np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        out.residual_rms[cols] = np.sqrt(rss / n_used)
        out.velocity_std[cols] = np.sqrt(rss / dof * q) if dof > 0 else np.nan
    out.n_pairs_used[cols] = n_used
    out.n_components[cols] = sp_.n_comp
    out.component[:, cols] = sp_.labels[:, None]


def _apply_shared(d: np.ndarray, sp_: SharedProjector, net: Network, gamma: float, out: InversionResult,
                  cols: slice | np.ndarray) -> np.ndarray:
    """Solve the pixels ``d`` (pair, pix) (0 on unused pairs) of one pattern; returns ``||d||^2`` (pix,).

    One product with the (date+1, pair) projector gives series and velocity in the data's own dtype
    (float32 from a cube; the projector itself is computed in float64, it carries the ill-conditioning
    of NSBAS on a split network); the residual norm comes from the normal equations (:func:`_rss`).
    A column with NaN/inf data gets non-finite outputs and ``||d||^2``; the caller redoes it.
    """
    with np.errstate(invalid="ignore", over="ignore"):  # inf data: reported as missing by the caller
        x = sp_.proj.astype(d.dtype) @ d
        dd = np.einsum("ip,ip->p", d, d).astype(np.float64)
        rss = _rss(d, x[: net.n_date], sp_, dd, net)
    _write_shared(x, rss, sp_, gamma, out, cols, sp_.q, sp_.dof, sp_.n_used)
    return dd


def _downdate_one(d: np.ndarray, miss: np.ndarray, full: SharedProjector, net: Network, gamma: float,
                  out: InversionResult, cols: np.ndarray) -> None:
    """Pixels that miss exactly one pair ``miss`` (pix,) of the complete pattern (``d`` is 0 there).

    Removing row ``a_i`` from the normal matrix is a rank-1 downdate (Sherman-Morrison): with ``x`` the
    complete-pattern solution of ``d`` (d_i = 0) and ``u = N^-1 a_i`` (column i of the projector),
    ``x' = x + u (a_i^T x) / (1 - h_ii)``; the velocity variance factor becomes
    ``q + (h^T u)^2 / (1 - h_ii)``. Valid while ``h_ii < 1`` (pair i is not a bridge of the network).
    """
    n, m = net.n_date, np.arange(miss.size)
    x = full.proj.astype(d.dtype) @ d
    lev = 1.0 - full.hat[miss]
    yhat = x[net.secondary_idx[miss], m] - x[net.primary_idx[miss], m]
    x += full.proj[:, miss].astype(d.dtype) * (yhat / lev).astype(d.dtype)
    dd = np.einsum("ip,ip->p", d, d).astype(np.float64)
    rss = _rss(d, x[:n], full, dd, net, removed=miss)
    q = full.q + full.proj[n, miss] ** 2 / lev
    _write_shared(x, rss, full, gamma, out, cols, q, full.dof - 1, full.n_used - 1)
