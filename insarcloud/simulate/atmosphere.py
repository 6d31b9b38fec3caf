"""Tropospheric delay of one acquisition (pure numpy): turbulence + height-correlated stratification.

The delay of an acquisition depends on the scene, the track and pass (acquisition time of day) and the
date -- never on the frame box -- so two frames of one track on one date see the same atmosphere where
they overlap, while ascending and descending frames (different tracks, different times) have their own.

- Turbulent part: a random field with the 2-D power law P(k) ~ k^(-8/3) between 0.3 and 150 km
  (Hanssen 2001, Kolmogorov turbulence seen through a thick layer), zenith standard deviation
  sigma(t) = (2 + 6 w(t)) * LogNormal(0, 0.35) mm, w(t) the summer-monsoon weight (1 at the end of July,
  0 at the end of January): Tibetan summers are convective, winters dry.
- Stratified part: wet zenith delay A(t) * (exp(-(h - 4000) / 2 km) - 1) with A(t) = 25 + 45 w(t)
  + N(0, 6) mm the wet delay at 4000 m, plus the hydrostatic change dP(t) * (exp(-(h - 4000) / 7.5 km) - 1),
  dP ~ N(0, 8) mm of zenith delay; both relative to 4000 m (a constant offset is invisible to InSAR).
- Slant = zenith / cos(incidence). Stored as *apparent LOS displacement* (mm, positive toward the
  satellite), i.e. minus the slant delay, so that an interferogram adds it to the deformation.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .fields import evaluate, power_law_waves
from .scene import Scene

__all__ = ["AtmosphereParams", "acquisition_atmosphere", "summer_weight"]

_TAG_ATM = 2
H_REF_M = 4000.0
WET_SCALE_KM = 2.0
DRY_SCALE_KM = 7.5


class AtmosphereParams(NamedTuple):
    """Per-acquisition draws (returned so the truth can record them).

    Fields: turb_std_mm (zenith, infinite-plane std of the turbulent field), wet_mm (A(t)),
    dry_mm (dP(t)).
    """

    turb_std_mm: float
    wet_mm: float
    dry_mm: float


def summer_weight(date: np.datetime64) -> float:
    """Monsoon weight in [0, 1]: 1 on day-of-year ~205 (late July), 0 six months later."""
    d = np.datetime64(date, "D")
    doy = float((d - d.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64))
    return 0.5 + 0.5 * np.cos(2 * np.pi * (doy - 205.0) / 365.25)


def acquisition_atmosphere(
    scene: Scene, track: int, direction: str, date: np.datetime64, x_km: np.ndarray, y_km: np.ndarray,
    hgt: np.ndarray, incidence_deg: np.ndarray, *, turbulence_scale: float = 1.0,
    stratified_scale: float = 1.0,
) -> tuple[np.ndarray, AtmosphereParams]:
    """Apparent LOS displacement (mm, (y, x) float32) caused by the troposphere of one acquisition.

    Parameters
    ----------
    scene : Scene
    track : int
    direction : "A" or "D"
    date : numpy.datetime64
    x_km, y_km : ndarray (x,), (y,), float64, km in the scene projection
    hgt : ndarray (y, x), float, m
    incidence_deg : ndarray (y, x), float, deg
    turbulence_scale, stratified_scale : float
        Multipliers of the two parts (0 switches a part off).

    Returns
    -------
    (atmosphere_mm, AtmosphereParams)
    """
    day = int(np.datetime64(date, "D").astype(np.int64))
    rng = np.random.default_rng([int(scene.seed), _TAG_ATM, int(track), 0 if direction == "A" else 1, day])
    w = summer_weight(date)
    sigma = (2.0 + 6.0 * w) * float(rng.lognormal(0.0, 0.35))
    waves = power_law_waves(rng, beta=8.0 / 3.0, wavelength_min_km=0.3, wavelength_max_km=150.0,
                            per_octave=12, std=sigma)
    wet = 25.0 + 45.0 * w + float(rng.normal(0.0, 6.0))
    dry = float(rng.normal(0.0, 8.0))
    zen = turbulence_scale * evaluate(waves, x_km, y_km, np.float64)
    dh = (np.asarray(hgt, dtype=np.float64) - H_REF_M) / 1000.0
    zen = zen + stratified_scale * (wet * np.expm1(-dh / WET_SCALE_KM) + dry * np.expm1(-dh / DRY_SCALE_KM))
    slant = zen / np.cos(np.deg2rad(np.asarray(incidence_deg, dtype=np.float64)))
    return (-slant).astype(np.float32), AtmosphereParams(sigma, wet, dry)
