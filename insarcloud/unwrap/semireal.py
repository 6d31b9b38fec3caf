"""Semi-real unwrapping cases: a known signal plus a real interferogram's own noise, under its real mask (issue 21).

Used by ``benchmarks/unwrap_semireal.py`` (whole LiCSAR frame and windows) and the unwrapping tests
(the crop in tests/data/licsar). The noise of a real wrapped phase ``psi`` is taken as
``wrap(psi - angle(box(exp(i psi))))``: LiCSAR's phase is already filtered; what a 9 x 9 phasor low-pass
leaves is its decorrelation noise, with its real amplitude, coherence dependence, short-range
correlation and residues, while the real long-wavelength signal (whose truth is unknown) is removed.
Filtering the phasor, not the phase, creates no wraps. Real fringes steeper than the filter passes
stay in the noise, so the cases are, if anything, pessimistic.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage

from insarcloud.unwrap.ls import wrap

__all__ = ["SIGNALS", "CycleScore", "centre_of", "cycle_score", "known_signal", "real_noise"]

SIGNALS = ("bowl", "lobe", "fault", "ramp")


def real_noise(psi: np.ndarray, window: int = 9) -> np.ndarray:
    """``wrap(psi - angle(box_window(exp(i psi))))`` over valid pixels; NaN where ``psi`` is NaN.

    Parameters
    ----------
    psi : ndarray (y, x) float, rad; NaN = no data
    window : int, box side in pixels

    Returns
    -------
    ndarray (y, x) float64 in [-pi, pi), rad
    """
    m = np.isfinite(psi)
    z = np.where(m, np.exp(1j * np.where(m, psi, 0.0)), 0)
    zf = ndimage.uniform_filter(z.real, window) + 1j * ndimage.uniform_filter(z.imag, window)
    return np.where(m, wrap(psi - np.angle(zf)), np.nan)


def centre_of(valid: np.ndarray) -> tuple[float, float]:
    """The valid pixel nearest the median row/column of the valid pixels (a centre that is on land)."""
    yy, xx = np.nonzero(valid)
    my, mx = np.median(yy), np.median(xx)
    i = int(np.argmin((yy - my) ** 2 + (xx - mx) ** 2))
    return float(yy[i]), float(xx[i])


def known_signal(kind: str, shape: tuple[int, int], centre: tuple[float, float], *, gain: float = 1.0
                 ) -> np.ndarray:
    """A known deformation-like signal (rad) on a (y, x) grid.

    ``bowl``: Gaussian subsidence, sigma = min(shape)/5, max gradient 0.25 rad/px;
    ``lobe``: steep Mogi-like uplift ``A / (1 + r^2/d^2)^1.5``, d = 25 px, max gradient 0.6 rad/px;
    ``fault``: screw dislocation ``(s/pi) atan(x'/D)``, s = 12 rad, D = 8 px (max gradient 0.48 rad/px)
    plus a 1.5 rad surface step, fault line through ``centre`` at 30 degrees;
    ``ramp``: 0.06 rad/px in x, -0.04 rad/px in y (an orbit-like trend). ``gain`` scales the signal.
    """
    ny, nx = shape
    y, x = np.mgrid[:ny, :nx].astype(np.float64)
    dy, dx = y - centre[0], x - centre[1]
    if kind == "bowl":
        sigma = min(ny, nx) / 5
        amp = 0.25 * sigma / np.exp(-0.5)  # max gradient of a Gaussian = amp e^-1/2 / sigma
        s = -amp * np.exp(-(dx**2 + dy**2) / (2 * sigma**2))
    elif kind == "lobe":
        d = 25.0
        amp = 0.6 * d / 0.859  # max gradient of A (1 + r^2/d^2)^-1.5 = 0.859 A / d
        s = amp / (1 + (dx**2 + dy**2) / d**2) ** 1.5
    elif kind == "fault":
        ang = np.deg2rad(30.0)
        xp = dx * np.cos(ang) - dy * np.sin(ang)  # signed distance across the fault line
        s = 12.0 / np.pi * np.arctan(xp / 8.0) + 0.75 * np.sign(xp)
    elif kind == "ramp":
        s = 0.06 * dx - 0.04 * dy
    else:
        raise ValueError(f"unknown signal {kind!r}; choose one of {', '.join(SIGNALS)}")
    return gain * s


class CycleScore(NamedTuple):
    """Cycle errors of a congruent unwrapped phase against the truth.

    Attributes
    ----------
    off_frac : float
        Share of valid pixels off by more than pi after the best single 2 pi k offset (whole array).
    off_frac_region : float
        The same with one best offset per 4-connected valid region (relative region constants are
        not observable from the data).
    rmse_rad : float
        RMS of ``u - truth - 2 pi k0`` over valid pixels, rad.
    """

    off_frac: float
    off_frac_region: float
    rmse_rad: float


def cycle_score(u: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> CycleScore:
    """Score an unwrapped phase ``u`` (y, x) against ``truth`` over ``valid`` (see :class:`CycleScore`)."""
    valid = valid & np.isfinite(u)
    d = (u - truth)[valid]
    k = np.round(d / (2 * np.pi)).astype(np.int64)
    vals, counts = np.unique(k, return_counts=True)
    k0 = vals[np.argmax(counts)]
    labels = ndimage.label(valid)[0][valid]
    order = np.lexsort((k, labels))
    # per region: pixels not in the region's most common cycle count
    bad = 0
    lab_s, k_s = labels[order], k[order]
    bounds = np.flatnonzero(np.diff(lab_s)) + 1
    for kr in np.split(k_s, bounds):
        bad += len(kr) - int(np.unique(kr, return_counts=True)[1].max())
    return CycleScore(float(np.mean(k != k0)), bad / max(len(k), 1),
                      float(np.sqrt(np.mean((d - 2 * np.pi * k0) ** 2))))
