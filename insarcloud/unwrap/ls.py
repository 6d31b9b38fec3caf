"""Least-squares phase unwrapping: DCT Poisson solver and weighted PCG (Ghiglia & Romero 1994, 1996).

All functions here work on one 2-D (y, x) array in float64 radians. Gradients follow one layout
everywhere: ``gx`` has shape (ny, nx-1) (``phi[:, 1:] - phi[:, :-1]``), ``gy`` has shape (ny-1, nx)
(``phi[1:, :] - phi[:-1, :]``); edge weights ``wx``, ``wy`` have the same shapes. An edge with weight 0
(for example one touching a NaN pixel) takes no part in the system, which is how no-data is handled.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
from scipy import fft

from insarcloud.core.phase import wrap

__all__ = [
    "LSResult",
    "divergence",
    "edge_weights",
    "integrate_gradients",
    "poisson_dct",
    "wrap",
    "wrapped_gradients",
]

log = logging.getLogger(__name__)


def wrapped_gradients(psi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Wrapped forward differences of a wrapped phase.

    Parameters
    ----------
    psi : ndarray (y, x) float, rad

    Returns
    -------
    gx : ndarray (y, x-1) float64, rad
    gy : ndarray (y-1, x) float64, rad
        NaN where either end is NaN.
    """
    return wrap(np.diff(psi, axis=1)), wrap(np.diff(psi, axis=0))


def edge_weights(pixel_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edge weights from pixel weights: the smaller of the two ends (0 where either is 0 or NaN).

    Parameters
    ----------
    pixel_weights : ndarray (y, x) float, >= 0; NaN counts as 0

    Returns
    -------
    wx : ndarray (y, x-1) float64
    wy : ndarray (y-1, x) float64
    """
    w = np.nan_to_num(np.asarray(pixel_weights, dtype=np.float64), nan=0.0)
    return np.minimum(w[:, 1:], w[:, :-1]), np.minimum(w[1:, :], w[:-1, :])


def divergence(fx: np.ndarray, fy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Discrete divergence (the adjoint of minus the forward difference), Neumann boundaries.

    Parameters
    ----------
    fx : ndarray (y, x-1)
    fy : ndarray (y-1, x)
    shape : (ny, nx)

    Returns
    -------
    ndarray (y, x) float64: ``rho[i,j] = fx[i,j] - fx[i,j-1] + fy[i,j] - fy[i-1,j]`` (missing terms 0).
    """
    rho = np.zeros(shape, dtype=np.float64)
    rho[:, :-1] += fx
    rho[:, 1:] -= fx
    rho[:-1, :] += fy
    rho[1:, :] -= fy
    return rho


_EIG_CACHE: dict[tuple[int, int], np.ndarray] = {}


def _laplacian_eigenvalues(shape: tuple[int, int]) -> np.ndarray:
    # Eigenvalues of the 5-point Neumann Laplacian in the DCT-II basis; (0, 0) is the null space
    # (a constant), set to 1 here and its coefficient zeroed by the caller.
    if shape not in _EIG_CACHE:
        ny, nx = shape
        ey = 2 * np.cos(np.pi * np.arange(ny) / ny) - 2
        ex = 2 * np.cos(np.pi * np.arange(nx) / nx) - 2
        eig = ey[:, None] + ex[None, :]
        eig[0, 0] = 1.0
        if len(_EIG_CACHE) > 16:
            _EIG_CACHE.clear()
        _EIG_CACHE[shape] = eig
    return _EIG_CACHE[shape]


def poisson_dct(rho: np.ndarray) -> np.ndarray:
    """Solve the Neumann Poisson equation ``laplacian(phi) = rho`` by DCT (Ghiglia & Romero 1994).

    Parameters
    ----------
    rho : ndarray (y, x) float64
        Right-hand side; its mean is ignored (the solvable part).

    Returns
    -------
    ndarray (y, x) float64, zero mean.
    """
    coef = fft.dctn(rho, type=2, norm="ortho")
    coef /= _laplacian_eigenvalues(rho.shape)
    coef[0, 0] = 0.0
    return fft.idctn(coef, type=2, norm="ortho")


class LSResult(NamedTuple):
    """Output of :func:`integrate_gradients`.

    Attributes
    ----------
    phase : ndarray (y, x) float64, rad
        Least-squares integral of the gradients (arbitrary constant per connected region).
    iterations : int
        PCG iterations (0 for the direct DCT solve).
    converged : bool
        Whether the relative residual reached ``tol`` (always True for the direct solve).
    """

    phase: np.ndarray
    iterations: int
    converged: bool


def _apply_q(p: np.ndarray, wx: np.ndarray, wy: np.ndarray) -> np.ndarray:
    # Weighted Laplacian div(w grad p), negated so the operator is positive semi-definite.
    return -divergence(wx * np.diff(p, axis=1), wy * np.diff(p, axis=0), p.shape)


def integrate_gradients(
    gx: np.ndarray,
    gy: np.ndarray,
    wx: np.ndarray | None = None,
    wy: np.ndarray | None = None,
    *,
    tol: float = 1e-6,
    max_iter: int = 300,
    x0: np.ndarray | None = None,
) -> LSResult:
    """Least-squares integration: minimise ``sum wx (dx phi - gx)^2 + sum wy (dy phi - gy)^2``.

    Without weights (or with all weights equal to one) this is one DCT Poisson solve. With weights it is
    Ghiglia & Romero's preconditioned conjugate gradient with the unweighted DCT solver as preconditioner
    (the weights enter linearly, i.e. they are the *squared* weights of their paper).

    Parameters
    ----------
    gx : ndarray (y, x-1) float, rad
    gy : ndarray (y-1, x) float, rad
        Target gradients; NaN entries must carry weight 0 (they are replaced by 0).
    wx, wy : ndarray like gx / gy, float >= 0, optional
        Edge weights; both or neither.
    tol : float
        Relative residual ``|r| / |b|`` at which PCG stops.
    max_iter : int
        PCG iteration cap.
    x0 : ndarray (y, x), optional
        PCG starting point.

    Returns
    -------
    LSResult
    """
    ny, nx = gy.shape[0] + 1, gx.shape[1] + 1
    gx = np.nan_to_num(gx, nan=0.0)
    gy = np.nan_to_num(gy, nan=0.0)
    if wx is None or (np.all(wx == 1.0) and np.all(wy == 1.0)):
        return LSResult(poisson_dct(divergence(gx, gy, (ny, nx))), 0, True)
    # b = -div(w g); Q p = -div(w grad p); solve Q p = b.
    b = -divergence(wx * gx, wy * gy, (ny, nx))
    bnorm = float(np.linalg.norm(b))
    x = np.zeros((ny, nx)) if x0 is None else np.array(x0, dtype=np.float64)
    if bnorm == 0.0:
        return LSResult(x, 0, True)
    r = b - _apply_q(x, wx, wy)
    z = -poisson_dct(r)
    p = z.copy()
    rz = float(np.vdot(r, z))
    converged = False
    k = 0
    for _ in range(max_iter):
        k += 1
        qp = _apply_q(p, wx, wy)
        pq = float(np.vdot(p, qp))
        if pq <= 0:
            converged = True
            break
        alpha = rz / pq
        x += alpha * p
        r -= alpha * qp
        if np.linalg.norm(r) <= tol * bnorm:
            converged = True
            break
        z = -poisson_dct(r)
        rz_new = float(np.vdot(r, z))
        p = z + (rz_new / rz) * p
        rz = rz_new
    if not converged:
        log.debug("PCG stopped at max_iter=%d with relative residual %.2e", max_iter,
                  np.linalg.norm(r) / bnorm)
    return LSResult(x, k, converged)

