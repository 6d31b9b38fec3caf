"""MATLAB ``peaks(N)`` surface and wrapped, noisy phase-unwrapping test cases (pure numpy).

The seed paper (../shared/seeds/001) and most LS-unwrapping papers test on ``scale * peaks(512)``
wrapped with additive Gaussian phase noise; this module rebuilds that input bit-for-bit in the
truth (MATLAB's formula) and with a seeded ``numpy.random.Generator`` for the noise.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from insarcloud.core.phase import wrap

__all__ = ["PeaksCase", "make_peaks_case", "peaks", "wrap"]


def peaks(n: int = 49) -> np.ndarray:
    """MATLAB ``peaks(n)``: the n x n sample of the peaks surface on [-3, 3]^2.

    ``z = 3(1-x)^2 e^{-x^2-(y+1)^2} - 10(x/5 - x^3 - y^5) e^{-x^2-y^2} - 1/3 e^{-(x+1)^2-y^2}``
    with ``[x, y] = meshgrid(linspace(-3, 3, n))`` (rows follow y, columns follow x).

    Parameters
    ----------
    n : int
        Samples per side (>= 2).

    Returns
    -------
    ndarray, shape (n, n), float64, unitless (range about -6.55 .. 8.11)
    """
    if n < 2:
        raise ValueError(f"peaks needs n >= 2, got {n}")
    v = np.linspace(-3.0, 3.0, n)
    x, y = np.meshgrid(v, v)
    return (
        3 * (1 - x) ** 2 * np.exp(-(x**2) - (y + 1) ** 2)
        - 10 * (x / 5 - x**3 - y**5) * np.exp(-(x**2) - y**2)
        - 1 / 3 * np.exp(-((x + 1) ** 2) - y**2)
    )


class PeaksCase(NamedTuple):
    """A wrapped-phase test case with its truth.

    Attributes
    ----------
    truth : ndarray (y, x) float64, rad
        ``scale * peaks(n)``, the noise-free unwrapped phase.
    noisy : ndarray (y, x) float64, rad
        ``truth + N(0, noise_std^2)``, unwrapped.
    wrapped : ndarray (y, x) float64, rad in [-pi, pi)
        ``wrap(noisy)``: the unwrapper's input.
    """

    truth: np.ndarray
    noisy: np.ndarray
    wrapped: np.ndarray


def make_peaks_case(
    n: int = 512, scale: float = 10.0, noise_std: float = 1.0, rng: np.random.Generator | None = None
) -> PeaksCase:
    """Build ``wrap(scale * peaks(n) + N(0, noise_std^2))``.

    Parameters
    ----------
    n : int
        Image side in pixels.
    scale : float
        Multiplier of peaks (the seed's "peak to valley" 10 .. 15), rad per peaks unit.
    noise_std : float
        Standard deviation of the additive Gaussian phase noise, rad (>= 0).
    rng : numpy.random.Generator, optional
        Source of the noise; ``np.random.default_rng(0)`` when omitted.

    Returns
    -------
    PeaksCase
    """
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    rng = np.random.default_rng(0) if rng is None else rng
    truth = scale * peaks(n)
    noisy = truth + rng.normal(0.0, noise_std, truth.shape) if noise_std > 0 else truth.copy()
    return PeaksCase(truth=truth, noisy=noisy, wrapped=wrap(noisy))
