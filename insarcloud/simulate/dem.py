"""Fractal DEM, land cover and permafrost of a scene on a lon/lat grid (pure numpy).

Everything here is a deterministic function of (scene, lon, lat): overlapping frames agree exactly.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .fields import evaluate, evaluate_gradient, power_law_waves
from .scene import Scene

__all__ = ["LANDCOVER_CLASSES", "Surface", "dem_error_field", "surface"]

# Land-cover classes; their decorrelation parameters live in decorrelation.py
LANDCOVER_CLASSES = {0: "water", 1: "bare rock / gravel", 2: "alpine steppe / meadow",
                     3: "wet meadow (ice-rich permafrost)", 4: "glacier / perennial snow"}

_TANH_GAIN = 0.6  # z (unit variance) -> tanh(0.6 z): ~1.7 sigma to reach 80% of the half range


class Surface(NamedTuple):
    """Ground surface on a (y, x) grid.

    Fields
    ------
    hgt : ndarray (y, x), float32, m above the ellipsoid, in [4000, 5500] by construction
    dhdx, dhdy : ndarray (y, x), float32, terrain slope east / north (m per m)
    landcover : ndarray (y, x), uint8, keys of LANDCOVER_CLASSES
    landmask : ndarray (y, x), uint8, 1 land, 0 water (LiCSAR landmask convention)
    permafrost : ndarray (y, x), bool
    ice : ndarray (y, x), float32 in [0, 1], ground-ice content (scales seasonal heave and thaw trend)
    lag_days : ndarray (y, x), float32, seasonal phase lag (wetter soils freeze/thaw later)
    """

    hgt: np.ndarray
    dhdx: np.ndarray
    dhdy: np.ndarray
    landcover: np.ndarray
    landmask: np.ndarray
    permafrost: np.ndarray
    ice: np.ndarray
    lag_days: np.ndarray


def _lake_radius(scene: Scene, x_km: np.ndarray, y_km: np.ndarray) -> np.ndarray:
    """Normalised elliptical radius of the lake (1 on the shore)."""
    lk = scene.lake
    proj = scene.projection
    dx = x_km[None, :] - float(proj.x_km(lk.lon))
    dy = y_km[:, None] - float(proj.y_km(lk.lat))
    a = np.deg2rad(lk.azimuth_deg)
    u = dx * np.sin(a) + dy * np.cos(a)  # along the major axis
    v = dx * np.cos(a) - dy * np.sin(a)
    return np.sqrt((u / lk.a_km) ** 2 + (v / lk.b_km) ** 2)


def surface(scene: Scene, lon: np.ndarray, lat: np.ndarray) -> Surface:
    """Evaluate DEM, slopes, land cover and permafrost of ``scene`` on a grid.

    Parameters
    ----------
    scene : Scene
    lon : ndarray (x,), float64, degrees_east of pixel centres
    lat : ndarray (y,), float64, degrees_north of pixel centres

    Returns
    -------
    Surface
    """
    proj = scene.projection
    x = proj.x_km(lon)
    y = proj.y_km(lat)
    z = evaluate(scene.dem_waves, x, y, np.float64)
    gx, gy = evaluate_gradient(scene.dem_waves, x, y, np.float64)
    t = np.tanh(_TANH_GAIN * z)
    hgt = scene.dem_mean_m + scene.dem_half_range_m * t
    dh = scene.dem_half_range_m * _TANH_GAIN * (1.0 - t**2) / 1000.0  # m per km -> m per m
    dhdx, dhdy = dh * gx, dh * gy

    # Lake: flat water at lake level, shore blended over half a semi-axis
    rr = _lake_radius(scene, x, y)
    water = rr < 1.0
    w = np.clip((rr - 1.0) / 0.5, 0.0, 1.0)
    lvl = scene.lake.level_m
    hgt = np.where(hgt > lvl, lvl + (hgt - lvl) * w, hgt)
    hgt = np.where(water, lvl, hgt)
    dhdx = np.where(water, 0.0, dhdx * np.where(rr < 1.5, w, 1.0))
    dhdy = np.where(water, 0.0, dhdy * np.where(rr < 1.5, w, 1.0))

    m = evaluate(scene.moisture_waves, x, y, np.float64)  # unit variance
    slope = np.hypot(dhdx, dhdy)
    cover = np.full(hgt.shape, 2, dtype=np.uint8)  # steppe / meadow by default
    cover[(m < -0.5) | (slope > 0.35)] = 1  # dry or steep: bare rock and gravel
    cover[(m > 0.7) & (slope < 0.15)] = 3  # wet, flat: wet meadow
    cover[hgt > scene.glacier_min_elev_m] = 4
    cover[water] = 0

    pf = (hgt + 120.0 * np.clip(m, -2, 2) > scene.permafrost_min_elev_m) & (cover != 0) & (cover != 4)
    ice_by_class = np.array([0.0, 0.15, 0.55, 1.0, 0.0])
    ice = np.where(pf, ice_by_class[cover] * (0.75 + 0.25 * np.tanh(m)), 0.0)
    lag = 10.0 + 20.0 * (0.5 + 0.5 * np.tanh(m))
    return Surface(
        hgt.astype(np.float32), dhdx.astype(np.float32), dhdy.astype(np.float32), cover,
        (~water).astype(np.uint8), pf, ice.astype(np.float32), lag.astype(np.float32),
    )


_TAG_DEM_ERROR = 4


def dem_error_field(scene: Scene, x_km: np.ndarray, y_km: np.ndarray) -> np.ndarray:
    """Unit-variance DEM-error pattern of the scene (y, x) float32: 0.1-5 km, beta 2 (DEM noise is rough)."""
    rng = np.random.default_rng([int(scene.seed), _TAG_DEM_ERROR])
    waves = power_law_waves(rng, beta=2.0, wavelength_min_km=0.1, wavelength_max_km=5.0, per_octave=10)
    return evaluate(waves, x_km, y_km)
