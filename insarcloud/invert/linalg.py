"""Batched linear algebra for the network inversion: per-pixel connectivity and banded LDL^T solves.

Why hand-written: the normal matrix of an epoch-domain SBAS network is a weighted graph Laplacian whose
half-bandwidth is the longest pair in epochs (3-5 for LiCSAR's short-baseline networks). numpy and
scipy solve either one banded system (``scipy.linalg.solveh_banded``) or many dense ones
(``numpy.linalg.solve``, one LAPACK call per pixel); neither solves many banded systems at once. Here
the loops run over the ``date`` columns and every numpy call works on all pixels, so a pixel costs
O(date * bandwidth^2) flops instead of O(date^3) and there is no per-pixel Python or LAPACK call.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components


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
