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


class SimTiles(NamedTuple):
    """A simulated ts group whose noise truth varies smoothly across its tiles (:func:`simulate_tiles`).

    Attributes
    ----------
    ts : xarray.Dataset  ``displacement`` (date, y, x) mm (zero at the first date, the SBAS convention) and
        ``velocity`` (y, x) mm/yr: the true velocity
    components : dict name -> (tiles_y, tiles_x) float64  the true variance components of each tile (mm^2)
    """

    ts: object
    components: dict[str, np.ndarray]


def simulate_tiles(rng: np.random.Generator, tiles: tuple[int, int], side: int, days: np.ndarray,
                   components: dict[str, float], *, gradient: float = 0.3, alpha: float | None = None,
                   rho0: float = 0.5, d_m: float = 300.0, spacing_deg: float = 0.001) -> SimTiles:
    """A ts group of ``tiles`` square tiles of ``side`` pixels, one noise model family everywhere, its
    amplitudes changing smoothly across the tiles: component k of the tile at grid position (i, j) is
    ``components[k] * (1 + gradient * (u_k (i - ci) / ny + v_k (j - cj) / nx))`` with a fixed direction
    (u_k, v_k) per component (so the ratios between components change too).

    Parameters
    ----------
    rng ;  tiles : (tiles_y, tiles_x) ;  side : pixels per tile side ;  days : (date,) float64
    components : dict name -> variance (mm^2) at the centre ;  gradient : relative change over the grid
    alpha : AR(1) time-scale (1/day) when "ar1" is present ;  rho0, d_m : the Gaussian Sigma of every tile
    """
    import pandas as pd
    import xarray as xr

    from .spatial import lonlat_to_local_m

    nty, ntx = tiles
    ny, nx = nty * side, ntx * side
    m = days.size
    lat = 35.0 - spacing_deg * np.arange(ny)
    lon = 51.0 + spacing_deg * np.arange(nx)
    disp = np.zeros((m, ny, nx), np.float32)
    vel = np.zeros((ny, nx), np.float32)
    direction = {k: (np.cos(2.1 * j + 0.3), np.sin(2.1 * j + 0.3)) for j, k in enumerate(components)}
    truth = {k: np.zeros(tiles) for k in components}
    for i in range(nty):
        for j in range(ntx):
            comp = {k: v * (1.0 + gradient * (direction[k][0] * (i - (nty - 1) / 2) / nty
                                             + direction[k][1] * (j - (ntx - 1) / 2) / ntx))
                    for k, v in components.items()}
            ys, xs = slice(i * side, (i + 1) * side), slice(j * side, (j + 1) * side)
            la, lo = np.meshgrid(lat[ys], lon[xs], indexing="ij")
            s = simulate_class(rng, days, lonlat_to_local_m(lo.ravel(), la.ravel()), comp, alpha=alpha, rho0=rho0,
                               d_m=d_m)
            disp[:, ys, xs] = (s.Y - s.Y[:1]).reshape(m, side, side)
            vel[ys, xs] = s.X[1].reshape(side, side)
            for k, v in comp.items():
                truth[k][i, j] = v
    dates = pd.Timestamp("2020-01-01") + pd.to_timedelta(days, unit="D")
    ts = xr.Dataset({"displacement": (("date", "y", "x"), disp, {"units": "mm"}),
                     "velocity": (("y", "x"), vel, {"units": "mm/yr"})},
                    coords={"date": dates.values, "y": lat, "x": lon},
                    attrs={"los_sign_convention": "LOS positive toward the satellite"})
    return SimTiles(ts, truth)
