"""Simulated classes with a known noise truth (for tests, the benchmark and users checking a set-up).

``Y = A X + L_Q Z L_Sigma^T`` with ``Q = sum sigma_k Q_k`` and
``Sigma = D^1/2 (rho0 exp(-r^2/d^2) + (1 - rho0) I) D^1/2``: exactly the multivariate model of eq. 2 with
the Gaussian spatial covariance of eq. 16.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .cofactors import build_cofactors, design_matrix
from .spatial import gaussian_sigma


class SimClass(NamedTuple):
    """A simulated class.

    Attributes
    ----------
    Y : (date, r) float64 mm ;  days : (date,) float64 ;  coords_m : (r, 2) float64 m
    X : (n, r) float64 true parameters (row 1 = velocity, mm/yr)
    Sigma : (r, r) float64 true Sigma (unit mean diagonal) ;  Q : (date, date) float64 true temporal cofactor
    """

    Y: np.ndarray
    days: np.ndarray
    coords_m: np.ndarray
    X: np.ndarray
    Sigma: np.ndarray
    Q: np.ndarray


def regular_days(m: int, step: float = 12.0) -> np.ndarray:
    """m epochs every ``step`` days from day 0."""
    return np.arange(m, dtype=np.float64) * step


def grid_coords(r: int, spacing_m: float = 100.0) -> np.ndarray:
    """r pixel positions on a square-ish grid (m)."""
    nx = int(np.ceil(np.sqrt(r)))
    iy, ix = np.divmod(np.arange(r), nx)
    return np.column_stack([ix, iy]).astype(np.float64) * spacing_m


def simulate_class(rng: np.random.Generator, days: np.ndarray, coords_m: np.ndarray,
                   components: dict[str, float], *, alpha: float | None = None, rho0: float = 0.5,
                   d_m: float = 500.0, scale_spread: float = 0.0, velocity_std: float = 10.0,
                   functional: str = "seasonal") -> SimClass:
    """Draw one class from the multivariate model.

    Parameters
    ----------
    rng : numpy Generator
    days : (date,) float64 ;  coords_m : (r, 2) float64 m
    components : dict name -> variance (mm^2), e.g. {"white": 4.0, "flicker": 2.0}
    alpha : float, AR(1) time-scale (1/day) when "ar1" is present
    rho0, d_m : spatial correlation at zero lag and correlation distance (m) of the Gaussian Sigma
    scale_spread : log-normal spread of the per-pixel variances D (0 = all equal)
    velocity_std : spread of the true velocities (mm/yr)
    """
    r = coords_m.shape[0]
    names = tuple(components)
    cs = build_cofactors(days, names, alpha=alpha)
    Q = np.tensordot(np.array([components[k] for k in names]), cs.Q, axes=1)
    D = np.exp(scale_spread * rng.standard_normal(r))
    D /= D.mean()
    Sigma = gaussian_sigma(D, coords_m, rho0, d_m)
    A = design_matrix(days, functional)  # type: ignore[arg-type]
    X = rng.normal(0.0, 3.0, size=(A.shape[1], r))
    X[1] = rng.normal(0.0, velocity_std, size=r)
    Z = rng.standard_normal((days.size, r))
    Y = A @ X + np.linalg.cholesky(Q) @ Z @ np.linalg.cholesky(Sigma).T
    return SimClass(Y, np.asarray(days, dtype=np.float64), coords_m, X, Sigma, Q)
