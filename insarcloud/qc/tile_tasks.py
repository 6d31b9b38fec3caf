"""The two tasks of QC by stored tile (:mod:`insarcloud.qc.tiles`): pass 1 (partials and border strips) and
pass 2 (every per-pixel product, written by the task into the ``qc`` group's chunks).

Both run the block path's kernels on the block path's ``b`` x ``b`` blocks, each copied contiguous as the
block path's rechunk makes them, so the per-block values are the block path's (tests/qc/test_tiles.py).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from insarcloud.core.allocator import task_heap
from insarcloud.qc import dask_ops, labels
from insarcloud.qc.network import Triplets
from insarcloud.qc.tiles import Edges, TileSource, decode_coh, open_for_chunks, read_tile, sub_blocks


def tile_edges(phase: np.ndarray, coh: np.ndarray, h: int) -> Edges:
    """The border strips of a tile's phase and stored coherence, copied (the tile itself is not kept)."""
    def four(a: np.ndarray) -> list[np.ndarray]:
        return [a[:, :h].copy(), a[:, -h:].copy(), a[:, :, :h].copy(), a[:, :, -h:].copy()]

    return Edges(*four(phase), *four(coh))


def tile_pass1(src: TileSource, ys: tuple[int, int], xs: tuple[int, int], *, n_pairs: int, b: int, halo: int,
               trip: Triplets, n_epochs: int, layout: dask_ops.PartialsLayout) -> tuple[np.ndarray, Edges | None]:
    """Pass 1 of one tile: the summed pass-1 partials of its blocks ((layout.n,) float64) and its border strips
    (None without a halo)."""
    with task_heap():  # its block temporaries reused from the heap, not page-faulted per block in a Dask worker
        return _pass1(src, ys, xs, n_pairs=n_pairs, b=b, halo=halo, trip=trip, n_epochs=n_epochs, layout=layout)


def _pass1(src: TileSource, ys: tuple[int, int], xs: tuple[int, int], *, n_pairs: int, b: int, halo: int,
           trip: Triplets, n_epochs: int, layout: dask_ops.PartialsLayout) -> tuple[np.ndarray, Edges | None]:
    t = read_tile(src, ys, xs, n_pairs=n_pairs)
    vec = np.zeros(layout.n, np.float64)
    for sy, sx in sub_blocks(ys, xs, b):
        phase = np.ascontiguousarray(t.phase[:, sy, sx])
        coh = decode_coh(np.ascontiguousarray(t.coh[:, sy, sx]), src.coh_attrs)
        unw = np.ascontiguousarray(t.unw[:, sy, sx]) if t.unw is not None and layout.has_unw else None
        vec += layout.pack(*dask_ops._partials_block(phase, coh, unw, trip, n_epochs))
    return vec, (tile_edges(t.phase, t.coh, halo) if halo else None)


class OutputVar(NamedTuple):
    """One per-pixel variable of the ``qc`` group as pass 2 writes it: the packed rows it slices
    (:class:`dask_ops.Layout`), its dtype in the dataset (``assemble``) and in the store."""

    name: str
    rows: str
    per_pair: bool
    dtype: str
    stored: str


class OutputSpec(NamedTuple):
    url: str
    group: str
    storage_options: dict[str, Any] | None
    variables: tuple[OutputVar, ...]


#: Neighbour offsets (dy, dx) by compass name, for the halo of a tile.
NEIGHBOURS = {"n": (-1, 0), "s": (1, 0), "w": (0, -1), "e": (0, 1), "nw": (-1, -1), "ne": (-1, 1),
              "sw": (1, -1), "se": (1, 1)}


def _halo_tile(src: TileSource, ys: tuple[int, int], xs: tuple[int, int], frame: tuple[int, int],
               nb: dict[str, Edges], n_pairs: int, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None,
                                                                      int, int]:
    """The tile read into the centre of (P, ty + halo, tx + halo) phase and coherence arrays whose borders are
    the neighbours' strips (none beyond the frame); returns them, unw and the top and left border widths."""

    ny, nx = frame
    ty, tx = ys[1] - ys[0], xs[1] - xs[0]
    top, bot = (h if ys[0] > 0 else 0), (h if ys[1] < ny else 0)
    left, right = (h if xs[0] > 0 else 0), (h if xs[1] < nx else 0)
    shape = (n_pairs, ty + top + bot, tx + left + right)
    ph, co = np.empty(shape, np.float32), np.empty(shape, src.coh_dtype)
    cy, cx = slice(top, top + ty), slice(left, left + tx)
    t = read_tile(src, ys, xs, n_pairs=n_pairs, phase_out=ph[:, cy, cx], coh_out=co[:, cy, cx])
    for arr, kind in ((ph, "phase"), (co, "coh")):
        def e(name: str, side: str, kind: str = kind) -> np.ndarray:
            return getattr(nb[name], f"{kind}_{side}")

        if top:
            arr[:, :top, cx] = e("n", "bottom")
            if left:
                arr[:, :top, :left] = e("nw", "bottom")[:, :, -h:]
            if right:
                arr[:, :top, left + tx:] = e("ne", "bottom")[:, :, :h]
        if bot:
            arr[:, top + ty:, cx] = e("s", "top")
            if left:
                arr[:, top + ty:, :left] = e("sw", "top")[:, :, -h:]
            if right:
                arr[:, top + ty:, left + tx:] = e("se", "top")[:, :, :h]
        if left:
            arr[:, cy, :left] = e("w", "right")
        if right:
            arr[:, cy, left + tx:] = e("e", "left")
    return ph, co, t.unw, top, left


def tile_pass2(src: TileSource, ys: tuple[int, int], xs: tuple[int, int], nb: dict[str, Edges], *,
               frame: tuple[int, int], n_pairs: int, b: int, window: int, trip: Triplets,
               offset_k: np.ndarray | None, thresholds: labels.RuleThresholds, layout: dask_ops.Layout,
               out: OutputSpec) -> np.ndarray:
    """Pass 2 of one tile: every block's products written into the group's chunks; returns the tile's
    (3, P) int64 counts of good, bad and uncertain pixels per pair."""
    with task_heap():
        return _pass2(src, ys, xs, nb, frame=frame, n_pairs=n_pairs, b=b, window=window, trip=trip,
                      offset_k=offset_k, thresholds=thresholds, layout=layout, out=out)


def _pass2(src: TileSource, ys: tuple[int, int], xs: tuple[int, int], nb: dict[str, Edges], *,
           frame: tuple[int, int], n_pairs: int, b: int, window: int, trip: Triplets,
           offset_k: np.ndarray | None, thresholds: labels.RuleThresholds, layout: dask_ops.Layout,
           out: OutputSpec) -> np.ndarray:
    from insarcloud import io

    h = window // 2
    ny, nx = frame
    ph, co, unw, top, left = _halo_tile(src, ys, xs, frame, nb, n_pairs, h)
    g, ep = open_for_chunks(out.url, out.group, out.storage_options, mode="r+")
    arrays = {v.name: g[v.name] for v in out.variables}
    counts = np.zeros((3, n_pairs), np.int64)
    for sy, sx in sub_blocks(ys, xs, b):
        gy, gx = slice(ys[0] + sy.start, ys[0] + sy.stop), slice(xs[0] + sx.start, xs[0] + sx.stop)
        hy0, hx0 = (h if gy.start > 0 else 0), (h if gx.start > 0 else 0)
        hy1, hx1 = (h if gy.stop < ny else 0), (h if gx.stop < nx else 0)
        rows = slice(top + sy.start - hy0, top + sy.stop + hy1)
        cols = slice(left + sx.start - hx0, left + sx.stop + hx1)
        phase_h = np.ascontiguousarray(ph[:, rows, cols])
        coh_h = decode_coh(np.ascontiguousarray(co[:, rows, cols]), src.coh_attrs)
        unw_b = np.ascontiguousarray(unw[:, sy, sx]) if unw is not None else None  # n_valid counts unw's data
        crop = (slice(hy0, hy0 + sy.stop - sy.start), slice(hx0, hx0 + sx.stop - sx.start))
        pack = dask_ops.pack_halo_block(phase_h, coh_h, unw_b, crop, window=window, trip=trip, offset_k=offset_k,
                                        thresholds=thresholds, layout=layout)
        for v in out.variables:
            a, z = layout.rows[v.rows]
            val = (pack[a:z] if v.per_pair else pack[a]).astype(v.dtype).astype(v.stored)
            idx = (slice(None), gy, gx) if v.per_pair else (gy, gx)
            io.with_retries(arrays[v.name].__setitem__, idx, val, endpoint=ep)
            if v.name == "label":
                counts += dask_ops.label_counts_block(val)[:, :, 0, 0]
    return counts


__all__ = ["NEIGHBOURS", "OutputSpec", "OutputVar", "tile_edges", "tile_pass1", "tile_pass2"]
