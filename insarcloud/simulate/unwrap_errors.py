"""Unwrapping errors: whole-cycle (2 pi k) patches in low-coherence areas (pure numpy + scipy.ndimage).

Real unwrappers (SNAPHU in LiCSAR) fail as *regions*: a low-coherence island, cut off by residues,
gets integrated on the wrong side of a branch cut and ends up offset by an integer number of cycles.
The simulator mimics this: in a fraction of pairs, the smoothed true coherence below ``coh_threshold``
intersected with random smooth blobs gives candidate regions; connected ones of at least
``min_pixels`` receive k in {-2, -1, 1, 2} (P = 0.1, 0.4, 0.4, 0.1). The unw of those pixels is
exactly unw_true + noise + 2 pi k; the wrapped phase is unchanged.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["unwrap_error_cycles"]


def unwrap_error_cycles(
    coherence: np.ndarray, rng: np.random.Generator, *, pair_fraction: float = 0.2, coh_threshold: float = 0.3,
    min_pixels: int = 40, max_patches: int = 3, valid: np.ndarray | None = None,
) -> np.ndarray:
    """Integer cycle offsets of the unwrapping-error patches of one pair.

    Parameters
    ----------
    coherence : ndarray (y, x), float, true coherence of the pair
    rng : numpy.random.Generator
    pair_fraction : float, probability that this pair has errors at all
    coh_threshold : float, patches live where the 5x5-smoothed coherence is below this
    min_pixels : int, smallest patch
    max_patches : int, most patches per pair
    valid : ndarray (y, x), bool, optional; patches only inside (e.g. land, frame footprint)

    Returns
    -------
    ndarray (y, x), int8: k (0 outside patches)
    """
    k = np.zeros(coherence.shape, dtype=np.int8)
    if rng.random() >= pair_fraction:
        return k
    low = ndimage.uniform_filter(np.asarray(coherence, dtype=np.float32), size=5) < coh_threshold
    blob = ndimage.gaussian_filter(rng.standard_normal(coherence.shape).astype(np.float32), sigma=8.0)
    cand = low & (blob > np.quantile(blob, 0.55))
    if valid is not None:
        cand &= valid
    cand = ndimage.binary_opening(cand, iterations=1)
    labels, n = ndimage.label(cand)
    if n == 0:
        return k
    sizes = np.bincount(labels.ravel())[1:]
    ok = np.flatnonzero(sizes >= min_pixels) + 1
    if ok.size == 0:
        return k
    chosen = rng.choice(ok, size=min(max_patches, ok.size), replace=False)
    for lab in chosen:
        k[labels == lab] = rng.choice(np.array([-2, -1, 1, 2], dtype=np.int8), p=[0.1, 0.4, 0.4, 0.1])
    return k
