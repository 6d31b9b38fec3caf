"""Coherence of each interferogram and the phase noise it implies (pure numpy).

True coherence of a pair (primary t1, secondary t2) is a product of factors (Zebker & Villasenor 1992):

    gamma = gamma_temporal * gamma_snow * gamma_geom * gamma_thermal * texture

- Temporal (Rocca 2007 exponential model with a floor): gamma_inf + (gamma_0 - gamma_inf) exp(-I),
  I = integral over [t1, t2] of 1 / tau(t) dt, where tau blends a winter value (frozen ground) and a
  summer value (growing vegetation, rain) with the monsoon weight w(t). Parameters per land cover class
  (CLASS_PARAMS): bare rock stays coherent for years, wet meadow decorrelates within weeks in summer.
- Snow: if the ground is snow-covered at one epoch the pair keeps 20% of its coherence, 35% when at
  both (snowfall, drift and melt between acquisitions). Snow cover is weather: a function of scene,
  date, elevation; the snow line drops from ~5700 m to ~5200 m in mid winter, with random snowfall
  events that bring it lower, and a static patchy +-150 m field (snow collects in the same places).
- Geometric: 1 - |B_perp| / B_crit, B_crit = 5 km for Sentinel-1 IW (negligible for |B| < 200 m).
- Thermal: 0.96; texture: exp(0.15 z), z a smooth unit random field per pair; all clipped to [0, 0.97].

Phase noise: the multilooked interferogram of L independent looks of two circular Gaussian signals with
correlation gamma is the off-diagonal of a complex Wishart matrix W ~ CW(L, C). By the Bartlett
decomposition W = A T T^H A^H with A = chol(C), t11^2 ~ Gamma(L), t22^2 ~ Gamma(L - 1),
t21 ~ CN(0, 1), so a draw costs four random numbers per pixel whatever L is, and its phase follows the
exact multilook phase pdf (Lee et al. 1994) while |W12| / sqrt(W11 W22) is the usual biased sample
coherence -- what LiCSAR's cc holds.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from insarcloud.errors import ConfigError

from .atmosphere import summer_weight
from .fields import evaluate, power_law_waves
from .scene import Scene

__all__ = ["CLASS_PARAMS", "NoiseDraw", "draw_phase_noise", "interval_weights", "pair_coherence", "snow_cover",
           "snow_patchiness"]

_TAG_SNOW = 3


class ClassParams(NamedTuple):
    """Temporal decorrelation of a land-cover class: gamma_0, gamma_inf, tau_winter_d, tau_summer_d."""

    gamma0: float
    gamma_inf: float
    tau_winter_d: float
    tau_summer_d: float


CLASS_PARAMS: dict[int, ClassParams] = {
    0: ClassParams(0.05, 0.05, 1.0, 1.0),  # water
    1: ClassParams(0.92, 0.45, 600.0, 250.0),  # bare rock / gravel
    2: ClassParams(0.85, 0.12, 150.0, 30.0),  # alpine steppe / meadow
    3: ClassParams(0.78, 0.06, 90.0, 18.0),  # wet meadow
    4: ClassParams(0.08, 0.08, 1.0, 1.0),  # glacier
}
SNOW_ONE = 0.20
SNOW_BOTH = 0.35
B_CRIT_M = 5000.0
THERMAL = 0.96


def snow_cover(scene: Scene, date: np.datetime64, hgt: np.ndarray, x_km: np.ndarray, y_km: np.ndarray,
               patchiness: np.ndarray | None = None) -> np.ndarray:
    """Snow-covered ground (bool (y, x)) on ``date``: elevation + patchiness above the snow line.

    ``patchiness`` (m, (y, x)) is ``snow_patchiness(scene, x_km, y_km)``: snow collects in the same
    places every winter (lee slopes, hollows), so one field per scene serves every date.
    """
    d = np.datetime64(date, "D")
    rng = np.random.default_rng([int(scene.seed), _TAG_SNOW, int(d.astype(np.int64))])
    doy = float((d - d.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64))
    winter = max(0.0, float(np.cos(2 * np.pi * (doy - 35.0) / 365.25)))
    line = 5700.0 - 500.0 * winter
    if rng.random() < 0.3 * winter:  # a snowfall event brings snow lower for a while
        line -= float(rng.uniform(200.0, 600.0))
    if patchiness is None:
        patchiness = snow_patchiness(scene, x_km, y_km)
    return (np.asarray(hgt) + patchiness) > line


def snow_patchiness(scene: Scene, x_km: np.ndarray, y_km: np.ndarray) -> np.ndarray:
    """Scene-wide +-150 m (std) perturbation of the snow line, ndarray (y, x) float32, m."""
    rng = np.random.default_rng([int(scene.seed), _TAG_SNOW])
    waves = power_law_waves(rng, beta=3.0, wavelength_min_km=1.0, wavelength_max_km=40.0, per_octave=8,
                            std=150.0)
    return evaluate(waves, x_km, y_km)


def interval_weights(t1: np.datetime64, t2: np.datetime64) -> tuple[float, float]:
    """(days weighted by summer, days weighted by winter) between two dates."""
    days = np.arange(np.datetime64(t1, "D"), np.datetime64(t2, "D"))
    w = np.array([summer_weight(d) for d in days[::3]])  # 3-day steps: w is smooth
    step = len(days) / max(len(w), 1)
    return float(w.sum() * step), float((1.0 - w).sum() * step)


def pair_coherence(
    landcover: np.ndarray, t1: np.datetime64, t2: np.datetime64, snow1: np.ndarray, snow2: np.ndarray,
    dbperp_m: float, texture: np.ndarray | None = None,
) -> np.ndarray:
    """True coherence of one pair.

    Parameters
    ----------
    landcover : ndarray (y, x), uint8, classes of dem.LANDCOVER_CLASSES
    t1, t2 : numpy.datetime64, primary and secondary dates
    snow1, snow2 : ndarray (y, x), bool, snow cover at t1 and t2
    dbperp_m : float, perpendicular baseline of the pair (m)
    texture : ndarray (y, x), float, optional multiplicative texture (1 = none)

    Returns
    -------
    ndarray (y, x), float32 in [0, 0.97]
    """
    ws, ww = interval_weights(t1, t2)
    g0 = np.zeros(landcover.shape)
    out = np.zeros(landcover.shape)
    for c, p in CLASS_PARAMS.items():
        m = landcover == c
        if not m.any():
            continue
        decay = np.exp(-(ws / p.tau_summer_d + ww / p.tau_winter_d))
        out[m] = p.gamma_inf + (p.gamma0 - p.gamma_inf) * decay
        g0[m] = 1.0
    snow = np.where(snow1 & snow2, SNOW_BOTH, np.where(snow1 | snow2, SNOW_ONE, 1.0))
    geom = max(0.0, 1.0 - abs(dbperp_m) / B_CRIT_M)
    out = out * snow * geom * THERMAL
    if texture is not None:
        out = out * texture
    return np.clip(out, 0.0, 0.97).astype(np.float32)


class NoiseDraw(NamedTuple):
    """One multilook draw per pixel.

    Fields
    ------
    phase : ndarray (y, x), float32, rad in (-pi, pi], interferometric phase noise
    coherence : ndarray (y, x), float32 in [0, 1], sample coherence estimate (biased upward at low gamma)
    """

    phase: np.ndarray
    coherence: np.ndarray


def draw_phase_noise(gamma: np.ndarray, looks: float, rng: np.random.Generator) -> NoiseDraw:
    """Draw multilook interferometric phase noise and sample coherence for true coherence ``gamma``.

    Parameters
    ----------
    gamma : ndarray (y, x) (any shape), float in [0, 1), true coherence
    looks : float >= 2, equivalent number of independent looks L
    rng : numpy.random.Generator

    Returns
    -------
    NoiseDraw
    """
    if looks < 2:
        raise ConfigError(f"looks must be >= 2 (a 2x2 Wishart needs L >= p), got {looks}")
    f32 = np.float32
    g = np.clip(np.asarray(gamma, dtype=f32), 0.0, 0.999)
    s = np.sqrt(1.0 - g**2)
    t11 = np.sqrt(rng.standard_gamma(looks, g.shape, dtype=f32))
    t22 = np.sqrt(rng.standard_gamma(looks - 1.0, g.shape, dtype=f32))
    t21 = (rng.standard_normal(g.shape, dtype=f32) + 1j * rng.standard_normal(g.shape, dtype=f32)) * f32(
        np.sqrt(0.5))
    # rows of A T: [t11, 0] and [g t11 + s t21, s t22]
    b = g * t11 + s * t21
    w12 = t11 * np.conj(b)
    w11 = t11**2
    w22 = np.abs(b) ** 2 + (s * t22) ** 2
    phase = -np.angle(w12)  # angle(s2 s1*) : zero-mean, symmetric
    coh = np.abs(w12) / np.sqrt(w11 * w22)
    return NoiseDraw(phase.astype(np.float32), coh.astype(np.float32))
