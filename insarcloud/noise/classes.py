"""Classes of pixels: square spatial tiles (default) or segments of the velocity map.

The paper cuts its area into classes only to bound the r x r Sigma; the choice "does not have any effect on
the final results" (its section 4.1), so tiles are the default: they make the whole plateau one
``map_blocks``. Segments (connected regions of similar velocity, the paper's eCognition step) are built
inside each processing block, so a segment never crosses a block border.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from skimage.measure import label

from insarcloud.errors import InputArrayError

ClassKind = Literal["tiles", "segments"]


def tile_side(class_size: int) -> int:
    """Side (pixels) of a square tile holding about ``class_size`` pixels."""
    if class_size < 4:
        raise InputArrayError(f"class size must be >= 4 pixels, got {class_size}")
    return int(round(np.sqrt(class_size)))


def segment_velocity(velocity: np.ndarray, class_size: int, min_size: int | None = None) -> np.ndarray:
    """Connected regions of similar velocity, each of at most ~class_size pixels.

    Velocity is cut into ``ceil(n_valid / class_size)`` quantile levels (at least 2); connected components
    (4-connectivity) of each level are the segments. Segments smaller than ``min_size`` (default
    class_size // 20, >= 3) are pooled per level into one class (nearby, similar velocity); segments larger
    than 2 class_size are cut into square tiles of class_size.

    Parameters
    ----------
    velocity : (y, x) float  mm/yr, NaN = no data
    class_size : int  target pixels per class

    Returns
    -------
    labels : (y, x) int64, 0..k-1, -1 where velocity is NaN
    """
    v = np.asarray(velocity, dtype=np.float64)
    ok = np.isfinite(v)
    out = np.full(v.shape, -1, np.int64)
    if not ok.any():
        return out
    min_size = max(3, class_size // 20) if min_size is None else min_size
    n_lev = max(2, int(np.ceil(ok.sum() / class_size)))
    edges = np.unique(np.quantile(v[ok], np.linspace(0, 1, n_lev + 1))[1:-1])
    lev = np.where(ok, np.searchsorted(edges, np.where(ok, v, 0.0), side="right"), -1)
    comp = label(lev + 1, background=0, connectivity=1)
    side = tile_side(class_size)
    yy, xx = np.indices(v.shape)
    nxt = 0
    pooled: dict[int, int] = {}
    for c in range(1, int(comp.max()) + 1):
        m = comp == c
        size = int(m.sum())
        if size < min_size:
            lv = int(lev[m][0])
            if lv not in pooled:
                pooled[lv] = nxt
                nxt += 1
            out[m] = pooled[lv]
        elif size > 2 * class_size:
            tid = (yy[m] // side) * (v.shape[1] // side + 1) + xx[m] // side
            _, inv = np.unique(tid, return_inverse=True)
            out[m] = nxt + inv
            nxt += int(inv.max()) + 1
        else:
            out[m] = nxt
            nxt += 1
    # relabel densely
    _, dense = np.unique(out[ok], return_inverse=True)
    out[ok] = dense
    return out
