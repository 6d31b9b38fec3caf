"""Ground deformation of a scene in ENU (pure numpy): fault, subsidence bowl, permafrost.

Velocities are mm/yr in east/north/up; displacement at a date is linear rate times time plus the
seasonal permafrost cycle. All of it is a function of (scene, lon, lat, date) only.

- Interseismic strike-slip fault (Savage & Burford 1973): fault-parallel velocity
  v(d) = -(s / pi) * arctan(d / D) along the strike, d the signed distance (km, > 0 right of the
  strike direction), s the slip rate (> 0 right-lateral), D the locking depth. Far-field relative
  motion is s; half of it on each side.
- Subsidence bowl: Mogi point source, u_z = C d / (r^2 + d^2)^1.5, u_r = C r / (r^2 + d^2)^1.5 with
  C = max_rate * d^2 (so u_z(r = 0) = max_rate).
- Permafrost: a thaw-subsidence trend (scene.permafrost_trend_mm_yr x ice content) and a seasonal
  frost-heave / thaw-settlement cycle  A * ice * cos(2 pi (t - (t_peak + lag)) / 1 yr), peak heave
  at the end of March (day 90) plus a 10-30 day lag that grows with soil moisture, deepest
  settlement six months later (late September), as InSAR studies of the Qinghai-Tibet Plateau report.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .dem import Surface
from .scene import Scene

__all__ = ["PEAK_HEAVE_DOY", "Velocity", "fault_velocity", "los_project", "mogi_velocity", "seasonal_up",
           "velocity_enu", "years_since"]

PEAK_HEAVE_DOY = 90.0
DAYS_PER_YEAR = 365.25
_EPOCH = np.datetime64("1970-01-01", "D")


class Velocity(NamedTuple):
    """Secular ground velocity, mm/yr, each ndarray (y, x) float32."""

    east: np.ndarray
    north: np.ndarray
    up: np.ndarray


def years_since(dates: np.ndarray, ref: np.datetime64) -> np.ndarray:
    """(dates - ref) in years of 365.25 days, float64 (date,)."""
    d = np.asarray(dates, dtype="datetime64[D]")
    return (d - np.datetime64(ref, "D")).astype(np.float64) / DAYS_PER_YEAR


def fault_velocity(scene: Scene, x_km: np.ndarray, y_km: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """East and north velocity (mm/yr, (y, x) float64) of the interseismic fault on the grid."""
    f = scene.fault
    p = scene.projection
    s = np.deg2rad(f.strike_deg)
    dx = x_km[None, :] - float(p.x_km(f.lon))
    dy = y_km[:, None] - float(p.y_km(f.lat))
    d = dx * np.cos(s) - dy * np.sin(s)  # right of the strike direction
    v = -(f.slip_rate_mm_yr / np.pi) * np.arctan(d / f.locking_depth_km)
    return v * np.sin(s), v * np.cos(s)


def mogi_velocity(scene: Scene, x_km: np.ndarray, y_km: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """East, north, up velocity (mm/yr, (y, x) float64) of the subsidence bowl."""
    b = scene.bowl
    p = scene.projection
    dx = x_km[None, :] - float(p.x_km(b.lon))
    dy = y_km[:, None] - float(p.y_km(b.lat))
    r2 = dx**2 + dy**2
    c = b.max_rate_mm_yr * b.depth_km**2
    den = (r2 + b.depth_km**2) ** 1.5
    return c * dx / den, c * dy / den, c * b.depth_km / den


def velocity_enu(scene: Scene, surf: Surface, x_km: np.ndarray, y_km: np.ndarray) -> Velocity:
    """Total secular velocity: fault + bowl + permafrost thaw trend (vertical, x ice content)."""
    fe, fn = fault_velocity(scene, x_km, y_km)
    me, mn, mu = mogi_velocity(scene, x_km, y_km)
    up = mu + scene.permafrost_trend_mm_yr * surf.ice
    f32 = np.float32
    return Velocity((fe + me).astype(f32), (fn + mn).astype(f32), up.astype(f32))


def seasonal_up(scene: Scene, surf: Surface, dates: np.ndarray) -> np.ndarray:
    """Seasonal vertical displacement (mm, absolute calendar cycle), ndarray (date, y, x) float32."""
    t = years_since(dates, _EPOCH)  # calendar time: the same cycle for every frame of the scene
    amp = scene.seasonal_amplitude_mm * surf.ice
    peak = (PEAK_HEAVE_DOY + surf.lag_days) / DAYS_PER_YEAR
    out = np.empty((len(t),) + surf.ice.shape, dtype=np.float32)
    for k, tk in enumerate(t):
        out[k] = amp * np.cos(2 * np.pi * (tk - peak))
    return out


def los_project(e: np.ndarray, n: np.ndarray, u: np.ndarray, los_e: np.ndarray, los_n: np.ndarray,
                los_u: np.ndarray) -> np.ndarray:
    """LOS component (positive toward the satellite) of an ENU vector field; shapes broadcast."""
    return e * los_e + n * los_n + u * los_u
