"""Batched linear algebra for the network inversion: per-pixel connectivity and banded LDL^T solves.

Why hand-written: the normal matrix of an epoch-domain SBAS network is a weighted graph Laplacian whose
half-bandwidth is the longest pair in epochs (3-5 for LiCSAR's short-baseline networks). numpy and
scipy solve either one banded system (``scipy.linalg.solveh_banded``) or many dense ones
(``numpy.linalg.solve``, one LAPACK call per pixel); neither solves many banded systems at once. Here
the loops run over the ``date`` columns and every numpy call works on all pixels, so a pixel costs
O(date * bandwidth^2) flops instead of O(date^3) and there is no per-pixel Python or LAPACK call. The sparse
operators of a network (incidence, band scatter) are built once per network object (``network_operator``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

if TYPE_CHECKING:
    from insarcloud.invert.network import Network


def pixel_components(primary_idx: np.ndarray, secondary_idx: np.ndarray, used: np.ndarray,
                     n_date: int) -> np.ndarray:
    """Connected components of every pixel's epoch graph, without a loop over pixels.

    Parameters
    ----------
    primary_idx, secondary_idx : (pair,) int, epoch indices of each pair.
    used : (pair, pix) bool, the pairs that carry a (positive-weight) observation at each pixel.
    n_date : number of epochs.

    Returns
    -------
    (date, pix) int64: for every epoch the smallest epoch index of its component (the component
    "head"); an epoch in no used pair is its own head. All pixels' graphs are one disjoint graph (node
    ``pix * n_date + epoch``) searched once by scipy's ``connected_components``; a component's head is
    its smallest node, the first occurrence of its label in node order.
    """
    n_pix = used.shape[1]
    pair, pix = np.nonzero(used)
    base = pix.astype(np.int64) * n_date
    n_nodes = n_pix * n_date
    graph = sp.csr_matrix((np.ones(pair.size, np.int8), (base + primary_idx[pair], base + secondary_idx[pair])),
                          shape=(n_nodes, n_nodes))
    _, lab = connected_components(graph, directed=False)
    _, first = np.unique(lab, return_index=True)  # labels are 0..n-1: first[label] = its smallest node
    heads = first[lab].reshape(n_pix, n_date) - (np.arange(n_pix, dtype=np.int64) * n_date)[:, None]
    return np.ascontiguousarray(heads.T)


def band_ldl_factor(band: np.ndarray) -> np.ndarray:
    """In-place LDL^T factorisation of many symmetric positive-definite banded matrices.

    Parameters
    ----------
    band : (n, bw+1, pix) float64, upper band storage: ``band[k, j, p] = N_p[k, k+j]``; entries with
        ``k + j >= n`` must be 0. Overwritten with D on ``[:, 0]`` and the unit-lower factor's columns
        ``L[k+j, k]`` on ``[k, j]``.

    A non-positive pivot (a singular system that was not pinned) becomes NaN, which propagates to
    that pixel's solution instead of raising.
    """
    n, w1, _ = band.shape
    bw = w1 - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in range(n):
            d = band[k, 0]
            d[~(d > 0)] = np.nan
            u = band[k, 1:].copy()  # N[k, k+i] after the previous eliminations
            lk = u / d
            for i in range(1, min(bw, n - 1 - k) + 1):
                # N[k+i, k+i+j] -= N[k, k+i] * L[k+i+j, k]   for j = 0 .. bw-i
                band[k + i, : bw + 1 - i] -= u[i - 1] * lk[i - 1:]
            band[k, 1:] = lk
    return band


def band_ldl_solve(factor: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve with the output of :func:`band_ldl_factor`; ``rhs`` (n, nrhs, pix) is overwritten."""
    band_ldl_forward(factor, rhs)
    rhs /= factor[:, 0][:, None, :]  # D z = y
    for j in range(rhs.shape[1]):
        band_ldl_backward(factor, rhs[:, j])
    return rhs


def band_ldl_forward(factor: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``L^-1 rhs`` in place for the unit-lower factor of :func:`band_ldl_factor`; ``rhs`` (n, nrhs, pix).

    With ``z = L^-1 y`` a quadratic form of the inverse is ``y^T N^-1 x = sum_k z_y[k] z_x[k] / D[k]``: the
    variances and Schur complements of the inversion need this half of the solve only.
    """
    n, w1, _ = factor.shape
    bw = w1 - 1
    for k in range(n - 1):
        m = min(bw, n - 1 - k)
        rhs[k + 1: k + 1 + m] -= factor[k, 1: 1 + m, None, :] * rhs[k][None]
    return rhs


def band_ldl_backward(factor: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``L^-T z`` in place for one right-hand side per pixel, ``z`` (n, pix) (already divided by D)."""
    n, w1, _ = factor.shape
    bw = w1 - 1
    for k in range(n - 2, -1, -1):
        m = min(bw, n - 1 - k)
        z[k] -= np.einsum("jp,jp->p", factor[k, 1: 1 + m], z[k + 1: k + 1 + m])
    return z


def solve_2x2(s: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Solve many 2x2 systems: s (2, 2, pix), r (2, ..., pix) -> (2, ..., pix)."""
    det = s[0, 0] * s[1, 1] - s[0, 1] * s[1, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        x0 = (s[1, 1] * r[0] - s[0, 1] * r[1]) / det
        x1 = (s[0, 0] * r[1] - s[1, 0] * r[0]) / det
    return np.stack([x0, x1])


_OPERATORS: dict[tuple[int, str], tuple[Network, sp.csr_matrix]] = {}


def network_operator(net: Network, kind: str) -> sp.csr_matrix:
    """Sparse operators of the network ``net``, built once per network object and kept (a weighted block
    is small: building them per block cost a few percent of its time). The cache entry holds ``net`` itself,
    so its id cannot be reused by another network while the entry lives.

    ``kind``: "inc" (date, pair) A^T, -1 at the primary, +1 at the secondary; "abs" the same with |.|; "later"
    (date, pair) int32, 1 at the later epoch of each pair;
    "design" (pair, date) A; "band" (date * (bw+1), pair) scatter of pair weights into the upper band
    storage of A^T W A (diagonal at [:, 0], see :func:`band_ldl_factor`).
    """
    hit = _OPERATORS.get((id(net), kind))
    if hit is not None and hit[0] is net:
        return hit[1]
    cols = np.arange(net.n_pair)
    p, s = net.primary_idx, net.secondary_idx
    if kind == "later":  # (date, pair) int32: 1 at the later epoch of each pair (counts pairs to earlier epochs)
        op = sp.csr_matrix((np.ones(net.n_pair, np.int32), (np.maximum(p, s), cols)),
                           shape=(net.n_date, net.n_pair))
    elif kind in ("inc", "abs"):  # (date, pair) A^T: -1 at the primary, +1 at the secondary (|.| for abs)
        sign = -1.0 if kind == "inc" else 1.0
        op = sp.csr_matrix((np.r_[sign * np.ones(net.n_pair), np.ones(net.n_pair)], (np.r_[p, s], np.r_[cols, cols])),
                           shape=(net.n_date, net.n_pair))
    elif kind == "design":  # (pair, date) A
        op = network_operator(net, "inc").T.tocsr()
    else:  # "band": (date * (bw+1), pair) scatter of the weights into the upper band of A^T W A
        n, bw = net.n_date, net.bandwidth
        rows = np.r_[p * (bw + 1), s * (bw + 1), p * (bw + 1) + (s - p)]
        vals = np.r_[np.ones(2 * net.n_pair), -np.ones(net.n_pair)]
        op = sp.csr_matrix((vals, (rows, np.r_[cols, cols, cols])), shape=(n * (bw + 1), net.n_pair))
    if len(_OPERATORS) >= 32:  # a few networks per process; never grows without bound
        _OPERATORS.clear()
    _OPERATORS[(id(net), kind)] = (net, op)
    return op
