"""Loop-closure weights: which pixel-pairs an unwrapping error has touched, from the data alone.

The inversion has what LiCSBAS step 12 uses (the network and the unwrapped stack), so it can weigh every
pixel-pair by the loops that close around it without a model. The rule (fixed, not tuned per frame; it was
the benchmark's data-only stand-in in sessions 2-4, ``benchmarks/invert.py``, notes/invert.md):

1. closure of each triplet ``(ij, jk, ik)``: ``c = unw[ij] + unw[jk] - unw[ik]`` of the *referenced* stack
   (each pair minus its value at the reference pixel, which removes the loop's common ``2 pi k``);
2. a loop is flagged at a pixel when more than half of the ``window x window`` box around it has
   ``|c| > thre`` (unwrapping errors come in patches; noise-driven closures are scattered);
3. a pair's weight at a pixel is ``1 - (flagged loops it is in) / (loops it is in)``; pixel-pairs in no
   loop keep 1.

Unlike LiCSBAS, which counts loop errors per pixel (``n_loop_err``) and masks pixels, the count here is per
pair *and* pixel, so an error in one pair lowers that pair where it is and leaves the rest of the pixel's
network at full weight. Written by hand: no library computes per-pair loop evidence over a network.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter

from insarcloud.core.pairs import closed_triplets
from insarcloud.errors import InputArrayError
from insarcloud.invert.network import Network

CLOSURE_THRESHOLD = np.pi  # rad; LiCSBAS step 12's loop error threshold for |closure| at a pixel
CLOSURE_WINDOW = 5  # pixels; box of the majority rule (an odd side: no ties)
#: pixels of context a chunk needs on each side for the box filter to equal the whole-frame result
CLOSURE_HALO = CLOSURE_WINDOW // 2


def loop_triplets(net: Network) -> np.ndarray:
    """(loop, 3) int64 pair indices ``(ij, jk, ik)`` of every closed triplet of the network.

    Pairs are indexed as in ``net`` (pair ``p`` joins ``primary_idx[p] < secondary_idx[p]``); each triplet
    of epochs ``i < j < k`` with all three pairs present appears once.
    """
    trip = closed_triplets(np.asarray(net.primary_idx).tolist(), np.asarray(net.secondary_idx).tolist())
    return trip[np.lexsort(trip.T[::-1])]  # rows in (ij, jk, ik) order


def closure_weights(unw: np.ndarray, trip: np.ndarray, *, thre: float = CLOSURE_THRESHOLD,
                    window: int = CLOSURE_WINDOW) -> np.ndarray:
    """Per pixel-pair loop-closure weights (module docstring) of one spatial block.

    Parameters
    ----------
    unw : (pair, y, x) float, unwrapped phase in rad, referenced to the reference pixel; NaN = no data
        (a loop with a NaN pair is not flagged at that pixel).
    trip : (loop, 3) int, :func:`loop_triplets` of the network.
    thre : |closure| (rad) above which a pixel of a loop counts as an error.
    window : odd side (pixels) of the majority box. At the block's edges the box is reflected, as
        ``scipy.ndimage`` does; a Dask caller passes ``window // 2`` pixels of overlap so that chunk results
        equal the whole-frame computation.

    Returns
    -------
    (pair, y, x) float32 weights in [0, 1] (1: no flagged loop).
    """
    unw = np.asarray(unw)
    trip = np.asarray(trip, dtype=np.int64).reshape(-1, 3)
    if unw.ndim != 3:
        raise InputArrayError(f"closure weights need a (pair, y, x) block, got shape {unw.shape}")
    if window < 1 or window % 2 == 0:
        raise InputArrayError(f"closure window must be an odd number of pixels, got {window}")
    if trip.size and (trip.min() < 0 or trip.max() >= unw.shape[0]):
        raise InputArrayError(f"loop triplets index pairs up to {int(trip.max())}, the block has {unw.shape[0]}")
    n_bad = np.zeros(unw.shape, np.float32)
    n_all = np.bincount(trip.ravel(), minlength=unw.shape[0]).astype(np.float32)
    # one loop at a time keeps memory at one (y, x) plane per loop instead of (loop, y, x)
    for a, b, c in trip:
        with np.errstate(invalid="ignore"):
            bad = (np.abs(unw[a] + unw[b] - unw[c]) > thre).astype(np.float32)  # NaN compares False
        flagged = uniform_filter(bad, size=window) > 0.5
        n_bad[a] += flagged
        n_bad[b] += flagged
        n_bad[c] += flagged
    frac = n_bad / np.maximum(n_all, 1.0)[:, None, None]
    return np.clip(1.0 - frac, 0.0, 1.0).astype(np.float32)
