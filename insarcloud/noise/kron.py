"""Gaussian Sigma of a class on a pixel grid, applied through its Kronecker structure (no r x r matrix).

On a rectilinear grid (pixel i at (x_j, y_k): what a tile of the ts cube gives, see
:func:`.spatial.lonlat_to_local_m`) the Gaussian kernel of eq. 16 separates,
``exp(-(dx^2 + dy^2)/d^2) = exp(-dx^2/d^2) exp(-dy^2/d^2)``, so the correlation matrix of the whole grid is
``K = rho0 (G_y (x) G_x) + (1 - rho0) I`` and ``K^-1 = (U_y (x) U_x) diag(1 / (rho0 l_y l_x + 1 - rho0))
(U_y (x) U_x)^T`` from the eigenpairs of the two small ``G`` (ny x ny and nx x nx). Applying it to r x q
costs ~4 r q (ny + nx) flops instead of the r^3/3 Cholesky plus 2 r^2 q solve of the dense Sigma.

Pixels of the grid that are not in the class (NaN series, the reference pixel) are handled exactly by the
Schur complement of the inverse: for the kept set S and the missing set M,
``(K_SS)^-1 = (K^-1)_SS - (K^-1)_SM ((K^-1)_MM)^-1 (K^-1)_MS`` and
``ln det K_SS = ln det K + ln det (K^-1)_MM``; it pays while M is a small part of the grid
(:data:`MAX_MISSING`), otherwise the caller keeps the dense Cholesky.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.linalg import cho_factor, cho_solve

#: Largest fraction of absent grid cells for which the Kronecker path is used (its Schur part grows with
#: the missing count k as k r (ny + nx); the dense Cholesky costs r^3/3 whatever k is).
MAX_MISSING = 0.25
#: Smallest class that takes the Kronecker path (below it the dense Cholesky is as cheap).
MIN_PIXELS = 64


class GridIndex(NamedTuple):
    """Where the class's pixels sit on their grid.

    Attributes
    ----------
    ys : (ny,) float64 m  north coordinate of each grid row ;  xs : (nx,) float64 m  east coordinate of each column
    flat : (r,) int64  grid cell (row * nx + col) of each pixel, in the class's pixel order
    missing : (k,) int64  grid cells with no pixel of the class
    """

    ys: np.ndarray
    xs: np.ndarray
    flat: np.ndarray
    missing: np.ndarray


def grid_index(coords_m: np.ndarray, max_missing: float = MAX_MISSING, min_pixels: int = MIN_PIXELS
               ) -> GridIndex | None:
    """The grid of a class's pixel coordinates, or None when they are not on one (or too sparse on it).

    Parameters
    ----------
    coords_m : (r, 2) float64 m (east, north); a pixel is on the grid when its east value is one of the
        columns' and its north value one of the rows' exactly (as :func:`.spatial.lonlat_to_local_m` of a
        lat/lon grid gives)
    """
    c = np.asarray(coords_m, dtype=np.float64)
    r = c.shape[0]
    if c.ndim != 2 or c.shape[1] != 2 or r < min_pixels:
        return None
    xs, ix = np.unique(c[:, 0], return_inverse=True)
    ys, iy = np.unique(c[:, 1], return_inverse=True)
    cells = ys.size * xs.size
    flat = iy.ravel() * xs.size + ix.ravel()
    if np.unique(flat).size != r or cells - r > max_missing * cells:
        return None
    present = np.zeros(cells, bool)
    present[flat] = True
    return GridIndex(ys, xs, flat.astype(np.int64), np.flatnonzero(~present))


class KronGaussian(NamedTuple):
    """``Sigma = D^1/2 K_SS D^1/2`` of a class on a grid, ready to solve (see the module text).

    Attributes
    ----------
    grid : GridIndex ;  diag : (r,) float64 the diagonal D
    Uy, Ux : eigenvectors of G_y (ny, ny) and G_x (nx, nx) ;  e : (ny, nx) float64 eigenvalues of K
    Z : (ny * nx, k) float64  K^-1 at the missing cells' columns ;  Cf : cho_factor of (K^-1)_MM or None
    logdet : float  ln det Sigma
    """

    grid: GridIndex
    diag: np.ndarray
    Uy: np.ndarray
    Ux: np.ndarray
    e: np.ndarray
    Z: np.ndarray
    Cf: tuple | None
    logdet: float

    def _kinv(self, V: np.ndarray) -> np.ndarray:
        """K^-1 V for V of shape (ny * nx, q)."""
        ny, nx = self.e.shape
        q = V.shape[1]
        T = np.tensordot(self.Uy, V.reshape(ny, nx, q), axes=(0, 0))  # U_y^T along rows
        T = np.matmul(self.Ux.T, T)  # U_x^T along columns (batched over rows)
        T /= self.e[:, :, None]
        T = np.matmul(self.Ux, T)
        return np.tensordot(self.Uy, T, axes=(1, 0)).reshape(ny * nx, q)

    def solve(self, B: np.ndarray) -> np.ndarray:
        """``Sigma^-1 B`` for B of shape (r, q)."""
        g = self.grid
        s = 1.0 / np.sqrt(self.diag)
        V = np.zeros((self.e.size, B.shape[1]))
        V[g.flat] = B * s[:, None]
        U = self._kinv(V)
        out = U[g.flat]
        if self.Cf is not None:
            out -= self.Z[g.flat] @ cho_solve(self.Cf, U[g.missing])
        return out * s[:, None]


def _eig_gauss(v: np.ndarray, d: float) -> tuple[np.ndarray, np.ndarray]:
    G = np.exp(-((v[:, None] - v[None, :]) ** 2) / d**2)
    lam, U = np.linalg.eigh(G)
    return np.clip(lam, 0.0, None), U


def kron_gaussian(diag: np.ndarray, grid: GridIndex, c0: float, d: float) -> KronGaussian:
    """Factor ``D^1/2 (rho0 exp(-r^2/d^2) + (1 - rho0) I) D^1/2`` (rho0 = c0 / mean(diag)), as
    :func:`.spatial.gaussian_sigma` builds it densely, through the grid's Kronecker structure."""
    rho0 = c0 / float(np.mean(diag))
    ly, Uy = _eig_gauss(grid.ys, d)
    lx, Ux = _eig_gauss(grid.xs, d)
    e = rho0 * (ly[:, None] * lx[None, :]) + (1.0 - rho0)
    logdet = float(np.sum(np.log(diag))) + float(np.sum(np.log(e)))
    ny, nx = e.shape
    k = grid.missing.size
    Z = np.zeros((ny * nx, 0))
    Cf = None
    if k:
        E = np.zeros((ny * nx, k))
        E[grid.missing, np.arange(k)] = 1.0
        kg = KronGaussian(grid, diag, Uy, Ux, e, Z, None, 0.0)
        Z = kg._kinv(E)
        C = Z[grid.missing]
        Cf = cho_factor(0.5 * (C + C.T), lower=True)
        logdet += 2.0 * float(np.sum(np.log(np.diag(Cf[0]))))
    return KronGaussian(grid, diag, Uy, Ux, e, Z, Cf, logdet)
