"""The global tile grid of quality inference (numpy only: the driver plans with it without importing torch).

A region's quality is the sin^2-blended prediction of every tile of a grid that depends only on the image
size, the tile and the overlap, so chunked inference equals whole-image inference (``insarcloud.qc.model``
``infer_regions``; ``insarcloud.qc.serve``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from insarcloud.core.options import tile_overlap_error


def tile_starts_global(n: int, tile: int, overlap: int) -> np.ndarray:
    """Origins of the global tile grid along an axis of ``n`` pixels: 0, s, 2s, ... (s = tile - overlap).

    The grid depends only on (n, tile, overlap), never on how the image is chunked, so every chunk
    computes exactly the tiles the whole image would, and blended results agree across chunk borders.
    The last tile may run past ``n`` (it is padded with NaN = no data).
    """
    if why := tile_overlap_error(tile, overlap):  # the project's one rule: 0 <= overlap < tile / 2
        raise ValueError(why)
    stride = tile - overlap
    return np.arange(0, max(n - overlap, 1), stride, dtype=np.int64)


def blend_weights(tile: int, overlap: int) -> np.ndarray:
    """(tile, tile) float32 separable sin^2 taper over ``overlap`` pixels at each side.

    Neighbouring tiles' tapers sum to exactly 1 in their overlap (sin^2 + cos^2), so blended maps are
    a partition of unity: no seams, and interior pixels far from tile borders keep weight 1.
    """
    w = np.ones(tile, np.float64)
    if overlap > 0:
        r = np.sin(0.5 * np.pi * (np.arange(overlap) + 0.5) / overlap) ** 2
        w[:overlap] = r
        w[tile - overlap :] = r[::-1]
    return np.outer(w, w).astype(np.float32)


class WindowPlan(NamedTuple):
    """What to read for one output region: the window (clipped to the image) and its tiles.

    Attributes
    ----------
    read_y, read_x : (start, stop) pixel ranges of the image to read (end-exclusive, inside the image).
    tiles : list of (y0, x0) global tile origins intersecting the region (may run past the image).
    """

    read_y: tuple[int, int]
    read_x: tuple[int, int]
    tiles: list[tuple[int, int]]


def plan_window(shape: tuple[int, int], region_y: tuple[int, int], region_x: tuple[int, int], tile: int,
                overlap: int) -> WindowPlan:
    """Tiles of the global grid that touch ``region`` and the image window they need."""
    ny, nx = shape
    sy = [int(s) for s in tile_starts_global(ny, tile, overlap) if s < region_y[1] and s + tile > region_y[0]]
    sx = [int(s) for s in tile_starts_global(nx, tile, overlap) if s < region_x[1] and s + tile > region_x[0]]
    ry = (sy[0], min(ny, sy[-1] + tile))
    rx = (sx[0], min(nx, sx[-1] + tile))
    return WindowPlan(ry, rx, [(y, x) for y in sy for x in sx])


__all__ = ["WindowPlan", "blend_weights", "plan_window", "tile_starts_global"]
