"""Tiled unwrapping: overlapping tiles unwrapped independently, then per-tile offsets from the overlaps.

Each tile is unwrapped on its *outer* window (its core plus ``overlap`` pixels on each side, clipped
at the image edge, as Dask's ``map_overlap(boundary="none")`` makes it). Two neighbouring tiles see the
same pixels in the intersection of their outer windows; there their results differ by a constant
(exactly ``2 pi k`` for congruent results, wherever both are right). The offsets are then a small
graph problem over tiles:

1. for each pair of neighbours (8-neighbourhood) the offset is the median difference over the common
   valid pixels, rounded to whole cycles when the tiles are congruent; its score is the number of
   common pixels that agree with it to better than pi/2;
2. a maximum spanning tree of the tile graph keeps the most trusted links (an exact pairing never
   depends on a weak one when a strong path exists), and offsets are summed along it from the tile
   with most valid pixels; tiles joined by no valid overlap form separate components, each with its
   own constant.

The stitched image takes each tile's core from its shifted result. With congruent tiles the result
equals the whole-image congruent result up to one global multiple of 2 pi wherever both agree.
This module is pure numpy; ``dask_ops`` runs the same functions on Dask blocks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import breadth_first_order, connected_components, minimum_spanning_tree

__all__ = ["Tile", "PairOffset", "plan_tiles", "pair_offset", "solve_tile_offsets", "stitch", "unwrap_tiled"]

log = logging.getLogger(__name__)


class Tile(NamedTuple):
    """One tile of a tiling.

    Attributes
    ----------
    index : (ty, tx) position in the tile grid
    core : (slice, slice) global rows/cols the tile owns in the stitched output
    outer : (slice, slice) global rows/cols it is unwrapped on (core + overlap, clipped)
    """

    index: tuple[int, int]
    core: tuple[slice, slice]
    outer: tuple[slice, slice]


class PairOffset(NamedTuple):
    """Offset between two neighbouring tiles, from their common pixels.

    Attributes
    ----------
    a, b : int
        Flat tile numbers (row-major in the tile grid).
    offset : float, rad
        ``median(u_a - u_b)`` over the common valid pixels (a multiple of 2 pi when congruent).
    score : int
        Common valid pixels agreeing with ``offset`` to better than pi/2 (0 = no usable link).
    """

    a: int
    b: int
    offset: float
    score: int


def plan_tiles(chunks_y: tuple[int, ...], chunks_x: tuple[int, ...], overlap: int) -> list[Tile]:
    """Tiles for given core sizes (like Dask chunks) and overlap depth.

    Parameters
    ----------
    chunks_y, chunks_x : tuples of int
        Core sizes along y and x (sum = image shape).
    overlap : int
        Halo depth in pixels (>= 1 so neighbours share pixels).

    Returns
    -------
    list of Tile, row-major
    """
    if overlap < 1:
        raise ValueError(f"overlap must be >= 1 pixel, got {overlap}")
    ny, nx = sum(chunks_y), sum(chunks_x)
    y0 = np.concatenate([[0], np.cumsum(chunks_y)])
    x0 = np.concatenate([[0], np.cumsum(chunks_x)])
    tiles = []
    for ty in range(len(chunks_y)):
        for tx in range(len(chunks_x)):
            core = (slice(int(y0[ty]), int(y0[ty + 1])), slice(int(x0[tx]), int(x0[tx + 1])))
            outer = (slice(max(0, int(y0[ty]) - overlap), min(ny, int(y0[ty + 1]) + overlap)),
                     slice(max(0, int(x0[tx]) - overlap), min(nx, int(x0[tx + 1]) + overlap)))
            tiles.append(Tile((ty, tx), core, outer))
    return tiles


def regular_chunks(n: int, tile: int, min_size: int = 1) -> tuple[int, ...]:
    """Split ``n`` pixels into cores of ``tile``; a last core shorter than ``min_size`` joins the one before."""
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    sizes = [tile] * (n // tile) + ([n % tile] if n % tile else [])
    if len(sizes) > 1 and sizes[-1] < min_size:
        sizes[-2] += sizes.pop()
    return tuple(sizes)


def _intersect(a: tuple[slice, slice], b: tuple[slice, slice]) -> tuple[slice, slice] | None:
    ys = slice(max(a[0].start, b[0].start), min(a[0].stop, b[0].stop))
    xs = slice(max(a[1].start, b[1].start), min(a[1].stop, b[1].stop))
    if ys.start >= ys.stop or xs.start >= xs.stop:
        return None
    return ys, xs


def _local(region: tuple[slice, slice], outer: tuple[slice, slice]) -> tuple[slice, slice]:
    return (slice(region[0].start - outer[0].start, region[0].stop - outer[0].start),
            slice(region[1].start - outer[1].start, region[1].stop - outer[1].start))


def neighbour_pairs(tiles: list[Tile]) -> list[tuple[int, int]]:
    """Pairs (a, b), a < b, of tiles in each other's 8-neighbourhood whose outer windows overlap."""
    pos = {t.index: i for i, t in enumerate(tiles)}
    pairs = []
    for i, t in enumerate(tiles):
        ty, tx = t.index
        for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):
            j = pos.get((ty + dy, tx + dx))
            if j is not None and _intersect(t.outer, tiles[j].outer) is not None:
                pairs.append((i, j))
    return pairs


def pair_offset(u_a: np.ndarray, u_b: np.ndarray, tile_a: Tile, tile_b: Tile, a: int, b: int, *,
                congruent: bool) -> PairOffset:
    """Offset of tile ``a`` relative to tile ``b`` from their common pixels.

    Parameters
    ----------
    u_a, u_b : ndarray, shapes of the tiles' outer windows, rad (NaN = no data)
    tile_a, tile_b : Tile
    a, b : int
        Their flat numbers.
    congruent : bool
        Round the offset to a whole number of cycles.

    Returns
    -------
    PairOffset
    """
    region = _intersect(tile_a.outer, tile_b.outer)
    if region is None:
        return PairOffset(a, b, 0.0, 0)
    d = (u_a[_local(region, tile_a.outer)] - u_b[_local(region, tile_b.outer)]).ravel()
    d = d[np.isfinite(d)]
    if d.size == 0:
        return PairOffset(a, b, 0.0, 0)
    if congruent:
        # Mode of the cycle differences: robust where one of the two tiles is wrong in part.
        cycles = np.round(d / (2 * np.pi)).astype(np.int64)
        vals, counts = np.unique(cycles, return_counts=True)
        off = float(2 * np.pi * vals[np.argmax(counts)])
    else:
        off = float(np.median(d))
    score = int(np.count_nonzero(np.abs(d - off) < np.pi / 2))
    return PairOffset(a, b, off, score)


def solve_tile_offsets(n_tiles: int, links: list[PairOffset], valid_counts: np.ndarray) -> np.ndarray:
    """Per-tile offsets along a maximum spanning tree of the tile graph.

    Parameters
    ----------
    n_tiles : int
    links : list of PairOffset
        Measured ``u_a - u_b`` offsets; a link with score 0 is ignored.
    valid_counts : ndarray (n_tiles,) int
        Valid pixels per tile (the root of each component is its largest tile).

    Returns
    -------
    ndarray (n_tiles,) float64, rad: add ``offsets[t]`` to tile t so that ``u_a + o_a == u_b + o_b``
    along the tree links.
    """
    good = [lk for lk in links if lk.score > 0]
    offsets = np.zeros(n_tiles)
    if not good:
        return offsets
    top = max(lk.score for lk in good)
    rows = np.array([lk.a for lk in good])
    cols = np.array([lk.b for lk in good])
    # Maximum spanning tree = minimum spanning tree of (top + 1 - score) (all weights > 0).
    wts = np.array([top + 1.0 - lk.score for lk in good])
    g = coo_matrix((wts, (rows, cols)), shape=(n_tiles, n_tiles)).tocsr()
    tree = minimum_spanning_tree(g)
    tree = (tree + tree.T).tocsr()
    measured = {(lk.a, lk.b): lk.offset for lk in good}
    n_comp, labels = connected_components(tree, directed=False)
    for c in range(n_comp):
        members = np.flatnonzero(labels == c)
        root = int(members[np.argmax(valid_counts[members])])
        order, pred = breadth_first_order(tree, root, directed=False, return_predecessors=True)
        for node in order[1:]:
            parent = int(pred[node])
            if (node, parent) in measured:  # u_node - u_parent = m -> o_node = o_parent - m
                offsets[node] = offsets[parent] - measured[(node, parent)]
            else:
                offsets[node] = offsets[parent] + measured[(parent, int(node))]
    return offsets


def stitch(shape: tuple[int, int], tiles: list[Tile], results: list[np.ndarray], offsets: np.ndarray,
           dtype: np.dtype) -> np.ndarray:
    """Assemble the cores of shifted tile results into one (y, x) image."""
    out = np.full(shape, np.nan, dtype=dtype)
    for t, u, o in zip(tiles, results, offsets, strict=True):
        out[t.core] = (u[_local(t.core, t.outer)] + o).astype(dtype)
    return out


def unwrap_tiled(wrapped: np.ndarray, unwrap_fn: Callable[..., np.ndarray], *, tile: int = 512,
                 overlap: int = 64, weights: np.ndarray | None = None, congruent: bool = True
                 ) -> np.ndarray:
    """Unwrap tile by tile (serially, numpy) and join tiles with offsets from their overlaps.

    Parameters
    ----------
    wrapped : ndarray (y, x) float, rad; NaN = no data
    unwrap_fn : callable ``(wrapped_tile, weights_tile) -> ndarray``
        A kernel bound to its method and parameters (its ``congruent`` must match ``congruent``).
    tile : int
        Core size in pixels.
    overlap : int
        Halo in pixels on each side.
    weights : ndarray (y, x), optional
    congruent : bool
        Whether tile results are congruent (then offsets are whole cycles).

    Returns
    -------
    ndarray (y, x), the input's dtype, rad
    """
    arr = np.asarray(wrapped)
    if arr.ndim != 2:
        from insarcloud.errors import InputArrayError

        raise InputArrayError(f"wrapped: expected a 2-D (y, x) array, got shape {arr.shape}")
    tiles = plan_tiles(regular_chunks(arr.shape[0], tile, overlap), regular_chunks(arr.shape[1], tile, overlap),
                       overlap)
    results = [unwrap_tile(arr[t.outer], None if weights is None else weights[t.outer], unwrap_fn)
               for t in tiles]
    links = [pair_offset(results[a], results[b], tiles[a], tiles[b], a, b, congruent=congruent)
             for a, b in neighbour_pairs(tiles)]
    counts = np.array([int(np.isfinite(u).sum()) for u in results])
    offsets = solve_tile_offsets(len(tiles), links, counts)
    dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.dtype(np.float64)
    return stitch(arr.shape, tiles, results, offsets, dtype)


def unwrap_tile(wrapped: np.ndarray, weights: np.ndarray | None,
                unwrap_fn: Callable[..., np.ndarray]) -> np.ndarray:
    """Unwrap one tile; a tile with fewer than 2 x 2 valid-capable pixels or no data comes back NaN."""
    w = np.asarray(wrapped, dtype=np.float64)
    if w.shape[0] < 2 or w.shape[1] < 2 or not np.isfinite(w).any():
        return np.full(w.shape, np.nan)
    return np.asarray(unwrap_fn(w, weights), dtype=np.float64)
