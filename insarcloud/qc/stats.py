"""Statistical indicators: per-interferogram coverage and mean coherence (LiCSBAS step 11), and
per-pixel windowed circular phase standard deviation and mean coherence.

LiCSBAS step 11 (Morishita et al. 2020, §2.4.1; ``LiCSBAS11_check_unw.py``): the *valid area* is the set
of pixels with data in at least as many interferograms as there are epochs; an interferogram's coverage is
its number of valid pixels inside that area over the area's size, its mean coherence the mean over that
area; it is bad when ``coverage < 0.3`` or ``mean coherence < 0.05`` (or either is NaN). When the
network has fewer pairs than epochs no pixel could qualify, so the threshold becomes the number of pairs
(documented deviation). Both come as chunk-summable partials.

Circular phase standard deviation in a ``w x w`` window: ``R = |mean(exp(1j*phi))|`` over the window's
valid pixels and ``sigma = sqrt(-2 ln R)`` (Mardia & Jupp 2000, eq. 2.3.11), rad. R is clipped at 1e-3, so
sigma is at most ~3.72 rad. Fringes inside the window raise sigma a little (a gradient of 0.3 rad/pixel
gives ~0.38 rad in a 5 x 5 window); LiCSAR's filtered phase is smooth, so the statistic mainly sees
decorrelation noise.

Water: a cube's ``landmask`` (y, x) follows LiCSAR's ``<frame>.geo.landmask.tif`` convention, 1 = land and
0 = water (NaN = unknown, kept). :func:`mask_water` turns water pixels into no data before any statistic,
so LiCSBAS step 11's valid area, the loop closures (step 12) and the per-ifg label fractions are over land
only; on a frame that is mostly sea (106A_09048_000909: 86%) LiCSAR's noisy sea phase would otherwise make
every interferogram "bad" (docs/real_data.md). A cube without ``landmask`` is unchanged.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage

from insarcloud.errors import InputArrayError

#: Pixels needed in a window for a windowed statistic (fewer: NaN).
MIN_WINDOW_PIXELS = 3
_R_MIN = 1e-3


class Step11Partials(NamedTuple):
    """Chunk-summable partials of LiCSBAS step 11.

    Attributes
    ----------
    n_area : np.ndarray
        () int64 pixels of the valid area.
    n_valid : np.ndarray
        (pair,) int64 valid pixels of each pair inside the area.
    coh_sum : np.ndarray
        (pair,) float64 sum of finite coherence inside the area.
    coh_n : np.ndarray
        (pair,) int64 finite coherence values inside the area.
    """

    n_area: np.ndarray
    n_valid: np.ndarray
    coh_sum: np.ndarray
    coh_n: np.ndarray

    def __add__(self, other: Step11Partials) -> Step11Partials:  # type: ignore[override]
        return Step11Partials(*(a + b for a, b in zip(self, other, strict=True)))


class IfgStats(NamedTuple):
    """Per-interferogram step-11 statistics.

    Attributes
    ----------
    coverage : np.ndarray
        (pair,) float64 fraction of the valid area with data, 0..1 (NaN: empty area).
    coh_avg : np.ndarray
        (pair,) float64 mean coherence over the valid area (NaN: none).
    bad : np.ndarray
        (pair,) bool ``coverage < cov_thre or coh_avg < coh_thre`` or either NaN.
    """

    coverage: np.ndarray
    coh_avg: np.ndarray
    bad: np.ndarray


class WindowStats(NamedTuple):
    """Windowed per-pixel statistics.

    Attributes
    ----------
    phase_std : np.ndarray
        (..., y, x) float32 circular standard deviation of the wrapped phase, rad (NaN: no data).
    coh_mean : np.ndarray
        (..., y, x) float32 mean coherence in the window, 0..1 (NaN: no data).
    """

    phase_std: np.ndarray
    coh_mean: np.ndarray


def step11_partials(valid: np.ndarray, coh: np.ndarray, n_epochs: int) -> Step11Partials:
    """Step-11 partials of one block.

    Parameters
    ----------
    valid : np.ndarray
        (pair, y, x) bool: the pair has data at the pixel (unw finite when unwrapped products exist, else
        wrapped phase finite).
    coh : np.ndarray
        (pair, y, x) float32 coherence 0..1, NaN = no data (0 is treated as no data, as LiCSAR writes it).
    n_epochs : int
        Epochs of the whole network (not of the block).
    """
    if valid.shape != coh.shape or valid.ndim != 3:
        raise InputArrayError(f"valid {valid.shape} and coh {coh.shape} must be equal (pair, y, x) shapes")
    need = min(int(n_epochs), valid.shape[0])
    return step11_partials_in(valid, coh, valid.sum(axis=0) >= need)


def step11_partials_in(valid: np.ndarray, coh: np.ndarray, area: np.ndarray) -> Step11Partials:
    """Step-11 partials of one block inside a given valid area ((y, x) bool).

    The area is a frame-wide quantity (pixels with data in at least as many pairs as the network has
    epochs); the incremental qc (:mod:`insarcloud.qc.incremental`) derives it from a stored per-pixel count
    of valid pairs plus the new pairs', and computes only the new pairs' partials with it.
    """
    if valid.shape != coh.shape or valid.ndim != 3 or area.shape != valid.shape[1:]:
        raise InputArrayError(f"valid {valid.shape}, coh {coh.shape} and area {area.shape} must be (pair, y, x), "
                              "(pair, y, x) and (y, x)")
    v = valid & area
    c_ok = np.isfinite(coh) & (coh > 0) & area
    return Step11Partials(
        np.asarray(area.sum(), dtype=np.int64),
        v.sum(axis=(1, 2)).astype(np.int64),
        np.where(c_ok, coh, 0.0).sum(axis=(1, 2), dtype=np.float64),
        c_ok.sum(axis=(1, 2)).astype(np.int64),
    )


def finalize_step11(p: Step11Partials, cov_thre: float = 0.3, coh_thre: float = 0.05) -> IfgStats:
    """Coverage, mean coherence and the step-11 verdict from (summed) partials."""
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = np.where(p.n_area > 0, p.n_valid / np.maximum(p.n_area, 1), np.nan)
        coh = np.where(p.coh_n > 0, p.coh_sum / np.maximum(p.coh_n, 1), np.nan)
        bad = ~(cov >= cov_thre) | ~(coh >= coh_thre)
    return IfgStats(cov.astype(np.float64), coh.astype(np.float64), bad)


def step11(valid: np.ndarray, coh: np.ndarray, n_epochs: int, cov_thre: float = 0.3,
           coh_thre: float = 0.05) -> IfgStats:
    """Whole-array LiCSBAS step 11 (see module docstring)."""
    return finalize_step11(step11_partials(valid, coh, n_epochs), cov_thre, coh_thre)


def water_mask(landmask: np.ndarray | None) -> np.ndarray | None:
    """(y, x) bool True on water (``landmask == 0``); None when there is no landmask."""
    if landmask is None:
        return None
    lm = np.asarray(landmask)
    if lm.ndim != 2:
        raise InputArrayError(f"landmask must be (y, x), got shape {lm.shape}")
    return lm == 0  # NaN (unknown) compares False: kept


def mask_water(a: np.ndarray, landmask: np.ndarray | None) -> np.ndarray:
    """(..., y, x) float array with water pixels (``landmask == 0``) set to NaN; ``a`` itself when no landmask."""
    water = water_mask(landmask)
    if water is None or not water.any():
        return a
    if a.shape[-2:] != water.shape:
        raise InputArrayError(f"landmask {water.shape} does not match the array's (y, x) {a.shape[-2:]}")
    return np.where(water, np.float32(np.nan), a).astype(np.result_type(a.dtype, np.float32), copy=False)


def _box_sum(a: np.ndarray, window: int, crop: tuple[slice, slice] | None = None) -> np.ndarray:
    """Sum over a window x window box on the last two axes, zero outside the array; ``crop`` (rows, columns):
    only those outputs (a contiguous copy, so the pointwise work after it runs on the kept pixels only)."""
    # two 1-D passes over the image axes only (uniform_filter would also pass over the pair axis)
    a = ndimage.uniform_filter1d(a, window, axis=-1, mode="constant", cval=0.0)
    a = ndimage.uniform_filter1d(a, window, axis=-2, mode="constant", cval=0.0)
    if crop is not None:
        a = np.ascontiguousarray(a[..., crop[0], crop[1]])
    a *= float(window * window)
    return a


def window_stats(phase: np.ndarray, coh: np.ndarray, window: int = 5, *,
                 crop: tuple[slice, slice] | None = None) -> WindowStats:
    """Windowed circular phase std and mean coherence (NaN-aware; windows truncated at array edges).

    Parameters
    ----------
    phase : np.ndarray
        (..., y, x) float32 wrapped phase, rad, NaN = no data.
    coh : np.ndarray
        (..., y, x) float32 coherence 0..1, NaN = no data.
    window : int
        Odd window size in pixels.
    crop : (slice, slice), optional
        Rows and columns of the result wanted (a block's interior inside its halo): the same values as
        cropping the whole result, without computing the rest.

    Returns
    -------
    WindowStats
        NaN where the centre pixel has no phase, or fewer than MIN_WINDOW_PIXELS pixels are valid.
        A Dask layer gets identical values with ``map_overlap(depth=window // 2, boundary="none")``.
    """
    if window < 1 or window % 2 == 0:
        raise InputArrayError(f"window must be a positive odd number of pixels, got {window}")
    if phase.shape != coh.shape or phase.ndim < 2:
        raise InputArrayError(f"phase {phase.shape} and coh {coh.shape} must be equal (..., y, x) shapes")
    ok = np.isfinite(phase)
    p0 = np.where(ok, phase, np.float32(0)).astype(np.float32, copy=False)
    n = _box_sum(ok.astype(np.float64), window, crop)
    # cos/sin in float32 (the phase is float32), sums in float64
    t32 = np.cos(p0)
    np.copyto(t32, np.float32(0), where=~ok)
    sc = _box_sum(t32.astype(np.float64), window, crop)
    np.sin(p0, out=t32)
    np.copyto(t32, np.float32(0), where=~ok)
    ss = _box_sum(t32.astype(np.float64), window, crop)
    del t32, p0
    cok = np.isfinite(coh)
    # LiCSAR's coherence and phase have the same no-data pixels almost everywhere: the same count, not recounted
    nc = n if np.array_equal(cok, ok) else _box_sum(cok.astype(np.float64), window, crop)
    scoh = _box_sum(np.where(cok, coh, 0.0).astype(np.float64), window, crop)
    if crop is not None:
        ok = ok[..., crop[0], crop[1]]
    # the pointwise tail in place (the same float64 operations, in the same order, as
    # ``where(enough, sqrt(-2 log(clip(hypot(sc, ss) / n, R_MIN, 1))), nan)``)
    enough = np.rint(n) >= MIN_WINDOW_PIXELS
    enough &= ok
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.hypot(sc, ss, out=sc)
        r /= n
        np.clip(r, _R_MIN, 1.0, out=r)
        np.log(r, out=r)
        r *= -2.0
        np.sqrt(r, out=r)
        std = np.where(enough, r, np.float32(np.nan)).astype(np.float32)
        enough &= np.rint(nc) >= 1
        scoh /= nc
        np.clip(scoh, 0.0, 1.0, out=scoh)
        cm = np.where(enough, scoh, np.nan).astype(np.float32)
    return WindowStats(std, cm)
