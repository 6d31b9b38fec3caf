"""Geographic random fields by spectral synthesis with random Fourier modes (pure numpy).

Every spatial field of the simulator that must be the *same* wherever two frames overlap (DEM,
land cover, permafrost, atmosphere of one acquisition) is a function of (lon, lat) alone, never of
a frame's pixel grid. An FFT field lives on one grid, so instead each field is a sum of plane waves

    f(x, y) = sum_w a_w cos(kx_w x + ky_w y + phi_w)

whose wavenumbers are drawn log-uniformly per octave with random directions and whose amplitudes
follow a power-law spectrum P(k) ~ k**(-beta) (the "random-mode" or Shinozuka synthesis used for
procedural turbulence and terrain). x, y are kilometres in one fixed equirectangular projection of
the scene, so the phase of each wave separates into a lon part and a lat part and the whole sum is
one complex matrix product  Re(Ey @ diag(a e^{i phi}) @ Ex)  -- (rows, W) x (W, cols) -- which is
why it costs milliseconds instead of W full-grid cosines. No library offers this on an arbitrary
geographic grid, so it is written here.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from insarcloud.errors import ConfigError

__all__ = ["KM_PER_DEG_LAT", "Projection", "Waves", "evaluate", "evaluate_gradient", "power_law_waves"]

KM_PER_DEG_LAT = 110.574  # WGS84 mean length of one degree of latitude near 30 N
KM_PER_DEG_LON_EQ = 111.320  # one degree of longitude on the equator


class Projection(NamedTuple):
    """Fixed equirectangular projection of a scene (lon/lat degrees -> x/y kilometres).

    Fields
    ------
    lon_ref, lat_ref : float, degrees
        Scene origin; x = (lon - lon_ref) * 111.32 cos(lat_ref), y = (lat - lat_ref) * 110.574.
    """

    lon_ref: float
    lat_ref: float

    def x_km(self, lon: np.ndarray) -> np.ndarray:
        """Eastward distance (km) of longitudes ``lon`` (any shape, degrees) from the origin."""
        return (np.asarray(lon, dtype=np.float64) - self.lon_ref) * KM_PER_DEG_LON_EQ * np.cos(
            np.deg2rad(self.lat_ref)
        )

    def y_km(self, lat: np.ndarray) -> np.ndarray:
        """Northward distance (km) of latitudes ``lat`` (any shape, degrees) from the origin."""
        return (np.asarray(lat, dtype=np.float64) - self.lat_ref) * KM_PER_DEG_LAT


class Waves(NamedTuple):
    """A set of W plane waves.

    Fields
    ------
    kx, ky : ndarray (W,), float64, rad/km
    amp : ndarray (W,), float64, amplitude of each cosine (field units)
    phase : ndarray (W,), float64, rad
    std : float
        Standard deviation of the field over the plane: sqrt(sum(amp**2) / 2).
    """

    kx: np.ndarray
    ky: np.ndarray
    amp: np.ndarray
    phase: np.ndarray
    std: float


def power_law_waves(
    rng: np.random.Generator,
    *,
    beta: float,
    wavelength_min_km: float,
    wavelength_max_km: float,
    per_octave: int = 16,
    std: float = 1.0,
) -> Waves:
    """Draw plane waves whose summed field has a 2-D power spectrum P(k) ~ k**(-beta).

    Parameters
    ----------
    rng : numpy.random.Generator
    beta : float
        Spectral exponent of the isotropic 2-D PSD (8/3 for Kolmogorov turbulence in the plane,
        ~3.5-4 for mountain topography).
    wavelength_min_km, wavelength_max_km : float, km
        Band of the synthesis (shorter than one pixel is wasted; longer than the scene is a ramp).
    per_octave : int
        Waves per octave of wavenumber; ~16 hides the discreteness of the sum.
    std : float
        Target standard deviation of the field over an infinite plane.

    Returns
    -------
    Waves
        The variance in an octave around k is proportional to P(k) k^2 = k**(2 - beta), split evenly
        between its waves, then all amplitudes are scaled so the field has standard deviation ``std``.
    """
    if not 0 < wavelength_min_km < wavelength_max_km:
        raise ConfigError(f"need 0 < wavelength_min_km < wavelength_max_km, got {wavelength_min_km}, "
                         f"{wavelength_max_km}")
    k_min = 2 * np.pi / wavelength_max_km
    k_max = 2 * np.pi / wavelength_min_km
    n_oct = np.log2(k_max / k_min)
    n = max(int(np.ceil(n_oct * per_octave)), 4)
    # stratified log-uniform wavenumbers: one per equal log-step, jittered inside it
    u = (np.arange(n) + rng.uniform(0.0, 1.0, n)) / n
    k = k_min * 2.0 ** (u * n_oct)
    theta = rng.uniform(0.0, np.pi, n)  # cos is even: half a circle of directions is all of them
    # variance per wave ~ P(k) k^2 dlnk ~ k^(2-beta) (the dlnk step is constant)
    var = k ** (2.0 - beta)
    amp = np.sqrt(2.0 * var / var.sum()) * std
    # Rayleigh-distributed amplitudes would make the field exactly Gaussian for few waves; the
    # constant-amplitude version (random phase only) is the classic, lower-variance estimator.
    phase = rng.uniform(0.0, 2 * np.pi, n)
    return Waves(k * np.cos(theta), k * np.sin(theta), amp, phase, float(std))


def evaluate(waves: Waves, x_km: np.ndarray, y_km: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """Evaluate a wave sum on the grid of columns ``x_km`` and rows ``y_km``.

    Parameters
    ----------
    waves : Waves
    x_km : ndarray (x,), float, km east of the scene origin (one per column)
    y_km : ndarray (y,), float, km north of the scene origin (one per row)
    dtype : numpy dtype of the result

    Returns
    -------
    ndarray (y, x), ``dtype``: sum_w amp_w cos(kx_w x + ky_w y + phase_w)
    """
    x = np.asarray(x_km, dtype=np.float64)
    y = np.asarray(y_km, dtype=np.float64)
    # phases in float64 (they reach thousands of rad), the unit phasors and the product in complex64:
    # the sum is then accurate to ~1e-6 of the field's amplitude, and 4x faster than complex128
    ex = np.exp(1j * np.outer(waves.kx, x)).astype(np.complex64)  # (W, x)
    ey = (np.exp(1j * (np.outer(y, waves.ky) + waves.phase[None, :])) * waves.amp[None, :]).astype(np.complex64)
    out = ey @ ex  # (y, x)
    return out.real.astype(dtype, copy=False)


def evaluate_gradient(
    waves: Waves, x_km: np.ndarray, y_km: np.ndarray, dtype: type = np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """Analytic gradient of a wave sum (so it is grid-independent, unlike ``np.gradient``).

    Returns
    -------
    (d/dx, d/dy) : two ndarrays (y, x), ``dtype``, field units per km
    """
    x = np.asarray(x_km, dtype=np.float64)
    y = np.asarray(y_km, dtype=np.float64)
    ex = np.exp(1j * np.outer(waves.kx, x)).astype(np.complex64)
    ey = np.exp(1j * (np.outer(y, waves.ky) + waves.phase[None, :]))
    # d/dx a cos(.) = -a kx sin(.) = Re(i a kx e^{i.})
    gx = ((ey * (1j * waves.amp * waves.kx)[None, :]).astype(np.complex64) @ ex).real
    gy = ((ey * (1j * waves.amp * waves.ky)[None, :]).astype(np.complex64) @ ex).real
    return gx.astype(dtype, copy=False), gy.astype(dtype, copy=False)
