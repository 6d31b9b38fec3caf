"""Multilooked intensity (LiCSAR ``epochs/*/*.geo.mli.tif``) of one acquisition (pure numpy).

sigma0 (linear) by land cover, scaled by the local-incidence brightness of the terrain
(cos(theta_local) / cos(theta_ellipsoid), clipped to keep shadow/layover finite), darkened by wet snow
in the spring melt, times Gamma(L, 1/L) speckle. Only meant to look like an MLI, not to be inverted.
"""

from __future__ import annotations

import numpy as np

__all__ = ["intensity"]

_SIGMA0 = np.array([0.004, 0.12, 0.08, 0.06, 0.15])  # water, rock, meadow, wet meadow, glacier


def intensity(
    landcover: np.ndarray, dhdx: np.ndarray, dhdy: np.ndarray, los_e: np.ndarray, los_n: np.ndarray,
    los_u: np.ndarray, snow: np.ndarray, date: np.datetime64, looks: float, rng: np.random.Generator,
) -> np.ndarray:
    """MLI intensity (y, x) float32 > 0 of one date; all inputs (y, x) as in dem.Surface / geometry."""
    nz = 1.0 / np.sqrt(1.0 + dhdx.astype(np.float64) ** 2 + dhdy.astype(np.float64) ** 2)
    cos_loc = (-dhdx * los_e - dhdy * los_n + los_u) * nz
    bright = np.clip(cos_loc, 0.05, 1.0) / np.maximum(los_u, 0.05)
    s0 = _SIGMA0[landcover] * bright
    d = np.datetime64(date, "D")
    doy = int((d - d.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64))
    if 90 <= doy <= 160:  # wet snow absorbs C-band
        s0 = np.where(snow, s0 * 0.2, s0)
    speckle = rng.gamma(looks, 1.0 / looks, s0.shape)
    return np.maximum(s0 * speckle, 1e-6).astype(np.float32)
