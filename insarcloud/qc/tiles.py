"""QC by stored tile: tasks that read their tile of every pair straight from Zarr (docs/qc.md, "By stored tile").

The block path (:mod:`insarcloud.qc.dask_ops`) rechunks the cube from its stored ``(pair=1, y=512, x=512)``
chunks to ``(pair=all, y=b, x=b)`` blocks (b = 32 at ~700 pairs): on a cluster an all-to-all shuffle of every
block, twice (once per pass) at a real frame's size, and ~25 tasks per 32 px block; on two worker processes
the same QC cost ~2.4x Dask's synchronous scheduler, and it was ~60 % of the chain's CPU per real frame
(docs/scale.md). Here one task per stored tile (a 512 x 512 chunk column, or a band of it when the tile's stack
would not fit :data:`TILE_MEM_MB`) reads every pair of its tile itself (Zarr fetches the chunks concurrently;
nothing is shuffled between workers) and runs the block kernels over its ``b`` x ``b`` sub-blocks, which are
the block path's blocks, so pass 2's per-pixel products are the same values:

- pass 1 returns the tile's summed partials (reduced as a tree over tiles) and the tile's border strips
  (``window // 2`` rows and columns of phase and of stored coherence), kept where the scheduler runs;
- pass 2 reads its tile again, puts its neighbours' strips around it (the halo of the windowed statistics,
  ``boundary="none"`` at the frame's edges as in the block path), computes every sub-block's products and writes
  them into the group's chunks itself (one writer per chunk; a retried task rewrites the same chunks); it returns
  its label counts, summed as a tree for the per-ifg fractions.

Coherence stays as stored (uint8 codes) in the tile and is decoded per sub-block with xarray's own CF decoding,
so a tile holds 9 B per pixel-pair (phase, unw float32, coherence uint8): 1.65 GB for 512 x 512 px x 700 pairs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

log = logging.getLogger(__name__)

#: Memory budget of one tile task's stack (phase + unw float32, coherence uint8, with its halo), MiB. The chart's
#: Dask worker gives each thread 4 GiB (helm/insarcloud/values.yaml: 8 GiB, 2 threads) and the scale harness's
#: workers 4 GiB with one: a 512 x 512 tile of ~700 pairs (1.65 GB) fits with its sub-block working set.
TILE_MEM_MB = 2048
#: Pairs read per Zarr call: their chunks are fetched concurrently, and the transient copy stays small.
READ_PAIRS = 64


@dataclass(frozen=True)
class TileSource:
    """Where a tile task reads the cube: the store, the stored indices of the pairs QC checks, and how the
    stored coherence decodes (the CF attributes xarray decodes it with)."""

    url: str
    storage_options: dict[str, Any] | None
    pairs: tuple[int, ...] | None  # stored pair indices; None = every stored pair in order
    has_unw: bool
    has_landmask: bool
    coh_attrs: dict[str, Any] = field(default_factory=dict)
    coh_dtype: str = "uint8"  # as stored (the tile keeps the codes)


class TilePlan(NamedTuple):
    """Tile edges along y and x (multiples of the block ``b``; every tile at least ``halo`` thick)."""

    y_edges: tuple[int, ...]
    x_edges: tuple[int, ...]


class Edges(NamedTuple):
    """A tile's border strips, ``h`` thick, as the neighbours' halos need them: (P, h, tx) rows and (P, ty, h)
    columns of water-masked float32 phase and of stored coherence codes."""

    phase_top: np.ndarray
    phase_bottom: np.ndarray
    phase_left: np.ndarray
    phase_right: np.ndarray
    coh_top: np.ndarray
    coh_bottom: np.ndarray
    coh_left: np.ndarray
    coh_right: np.ndarray


class Tile(NamedTuple):
    """One tile's stack: phase and unw (P, ty, tx) float32 with water NaN, coherence as stored with water as the
    stored no-data code (so that it decodes to NaN, as the block path's masked float32)."""

    phase: np.ndarray
    coh: np.ndarray
    unw: np.ndarray | None


def _edges(n: int, step: int, halo: int) -> tuple[int, ...]:
    e = list(range(0, n, step)) + [n]
    if len(e) > 2 and e[-1] - e[-2] < max(halo, 1):
        del e[-2]  # a last tile thinner than the halo joins the one before (its neighbours' halo needs h rows)
    return tuple(e)


def plan_tiles(shape: tuple[int, int, int], stored: tuple[int, int], b: int, halo: int, *, has_unw: bool,
               coh_itemsize: int, mem_mb: float | None = None) -> TilePlan | str:
    """The tile grid of a (pair, y, x) cube with stored spatial chunks ``stored``, or why there is none.

    A tile is a stored chunk (so no chunk is fetched by two tasks), halved along y then x while its stack
    would exceed ``mem_mb`` (default :data:`TILE_MEM_MB`); tile sides stay multiples of ``b`` so its sub-blocks
    are the block path's blocks.
    """
    mem_mb = TILE_MEM_MB if mem_mb is None else mem_mb
    n_pairs, ny, nx = shape
    cy, cx = min(stored[0], ny), min(stored[1], nx)
    for c, n in ((cy, ny), (cx, nx)):
        if c < n and c % b:
            return f"stored chunk {c} px is not a multiple of the block {b} px"
    per_px = n_pairs * (4 + coh_itemsize + (4 if has_unw else 0))
    ty, tx = cy, cx
    while per_px * (ty + 2 * halo) * (tx + 2 * halo) > mem_mb * 2**20:
        if ty >= tx and ty // 2 >= b and (ty // 2) % b == 0:
            ty //= 2
        elif tx // 2 >= b and (tx // 2) % b == 0:
            tx //= 2
        else:
            return f"a {ty} x {tx} px tile of {n_pairs} pairs exceeds {mem_mb} MiB"
    ye, xe = _edges(ny, ty, halo), _edges(nx, tx, halo)
    if halo and (min(np.diff(ye)) < halo or min(np.diff(xe)) < halo):
        return f"a tile thinner than the {halo} px halo (frame {ny} x {nx})"
    return TilePlan(ye, xe)


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------


def decode_coh(raw: np.ndarray, attrs: dict[str, Any]) -> np.ndarray:
    """Stored coherence codes to float32 exactly as ``io.open_cube`` returns them: xarray's CF decoding
    (uint8 k -> k * scale_factor, the fill code -> NaN) followed by the cast to float32."""
    if not attrs:
        return np.asarray(raw, dtype=np.float32)
    var = xr.conventions.decode_cf_variable("coh", xr.Variable(("pair", "y", "x"), raw, dict(attrs)))
    return np.asarray(var.values, dtype=np.float32)


def _read_into(arr: Any, out: np.ndarray, pairs: tuple[int, ...] | None, ys: tuple[int, int],
               xs: tuple[int, int], endpoint: str | None = None) -> None:
    from zarr.core.buffer import default_buffer_prototype

    from insarcloud import io

    n = out.shape[0]
    for k0 in range(0, n, READ_PAIRS):
        k1 = min(n, k0 + READ_PAIRS)
        sel_p: Any = slice(k0, k1) if pairs is None else np.asarray(pairs[k0:k1])
        sel = (sel_p, slice(*ys), slice(*xs))
        # decoded straight into the tile (a view of it too): measured 1.3-1.4 against 2.1-3.0 CPU-s for a copy
        # per read of 668 pairs x 512 x 512 px
        buf = default_buffer_prototype().nd_buffer.from_numpy_array(out[k0:k1])
        io.with_retries(arr.get_orthogonal_selection, sel, out=buf, endpoint=endpoint)


def open_for_chunks(url: str, group: str | None, storage_options: dict[str, Any] | None,
                    mode: str = "r") -> tuple[Any, str]:
    """A tile task's Zarr group (obstore where the options translate: ``io.chunk_store``), opened under the retry
    helper, and the endpoint name every later chunk call's retries report."""
    from insarcloud import io
    from insarcloud.io.cube import open_zarr_group
    from insarcloud.io.storage import endpoint_for

    ep = endpoint_for(url, storage_options)
    return io.with_retries(open_zarr_group, url, group, storage_options, mode=mode, chunk_io=True, endpoint=ep), ep


def read_tile(src: TileSource, ys: tuple[int, int], xs: tuple[int, int], *, n_pairs: int,
              phase_out: np.ndarray | None = None, coh_out: np.ndarray | None = None) -> Tile:
    """Every checked pair of the cube over rows ``ys`` and columns ``xs``, water masked (see :class:`Tile`).

    ``phase_out``/``coh_out``: arrays (e.g. the centre of a halo'd tile) to read into instead of new ones."""
    from insarcloud import io

    g, ep = open_for_chunks(src.url, None, src.storage_options)
    shape = (n_pairs, ys[1] - ys[0], xs[1] - xs[0])
    phase = np.empty(shape, np.float32) if phase_out is None else phase_out
    coh = np.empty(shape, src.coh_dtype) if coh_out is None else coh_out
    _read_into(g["phase"], phase, src.pairs, ys, xs, ep)
    _read_into(g["coh"], coh, src.pairs, ys, xs, ep)
    unw = None
    if src.has_unw:
        unw = np.empty(shape, np.float32)
        _read_into(g["unw"], unw, src.pairs, ys, xs, ep)
    if src.has_landmask:  # LiCSAR landmask: 1 land, 0 water; water is no data for every product
        water = io.with_retries(lambda: g["landmask"][slice(*ys), slice(*xs)], endpoint=ep) == 0
        if water.any():
            phase[:, water] = np.nan
            coh[:, water] = _coh_fill(coh.dtype, src.coh_attrs)
            if unw is not None:
                unw[:, water] = np.nan
    return Tile(phase, coh, unw)


def _coh_fill(dtype: np.dtype, attrs: dict[str, Any]) -> Any:
    """The stored coherence value that decodes to NaN (the CF fill code, or NaN for float storage)."""
    if np.dtype(dtype).kind == "f":
        return np.nan
    if "_FillValue" not in attrs:
        raise ValueError(f"coherence stored as {dtype} without a _FillValue: water cannot be marked no data")
    return attrs["_FillValue"]


def sub_blocks(ys: tuple[int, int], xs: tuple[int, int], b: int) -> list[tuple[slice, slice]]:
    """The block path's ``b`` x ``b`` blocks inside a tile, as tile-local (rows, columns) slices."""
    out = []
    for y0 in range(ys[0], ys[1], b):
        for x0 in range(xs[0], xs[1], b):
            out.append((slice(y0 - ys[0], min(y0 + b, ys[1]) - ys[0]), slice(x0 - xs[0], min(x0 + b, xs[1]) - xs[0])))
    return out


__all__ = ["READ_PAIRS", "TILE_MEM_MB", "Edges", "Tile", "TilePlan", "TileSource", "decode_coh",
           "open_for_chunks", "plan_tiles", "read_tile", "sub_blocks"]
