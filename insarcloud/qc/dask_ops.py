"""The thin Dask layer: QC kernels mapped over spatial blocks of a frame cube, and the ``qc`` group writer.

``run_qc`` computes a full group by stored tile where the cube's chunks allow (:mod:`insarcloud.qc.tile_run`:
one task per stored chunk column reads every pair itself, no rechunk; docs/qc.md "By stored tile"); the block
path below is the rest: numpy-backed cubes, the lazy ``qc_dataset`` (tests, the per-loop maps), chunks that are
not a multiple of the block.

Plan (two passes, both spatially chunked; no task ever holds more than one spatial block of the stack):

1. Inputs are rechunked to ``(pair=all, y=b, x=b)`` blocks, ``b`` a divisor/multiple of the cube's 512
   chunks chosen so a block's working set fits ``block_mem_mb``.
2. Pass 1 (small reductions, computed at once on the workers): per-loop closure partials (integer-cycle
   histogram, sums) and LiCSBAS step-11 partials, summed over blocks -> per-loop offsets ``2 pi k``
   and RMS, step-11/12 verdicts (exactly the whole-frame numbers, see ``finalize_partials``).
3. Pass 2 (lazy, written by the workers straight to Zarr): one task per block takes the block with its
   ``window // 2`` halo (``da.overlap.overlap``, or views of a numpy-backed cube), computes the windowed
   statistics and every per-pixel product into a packed float32 block that the output variables slice
   (docs/qc.md); per-ifg label fractions are per-block counts summed as a tree, so everything is computed in
   the single ``to_zarr`` of ``write_stage_output``.
"""

from __future__ import annotations

import json
import logging
import operator
import time
import uuid
from itertools import product
from typing import Any, NamedTuple

import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask.array.core import normalize_chunks

from insarcloud.errors import CubeError
from insarcloud.qc import closure, labels, stats
from insarcloud.qc.config import QCParams
from insarcloud.qc.network import Triplets, epochs, find_triplets
from insarcloud.qc.products import block_products
from insarcloud.qc.reuse import reuse_inputs

log = logging.getLogger(__name__)

STAGE = "qc"
GROUP = "qc"


# ------------------------------------------------------------------------------------------------
# block size
# ------------------------------------------------------------------------------------------------


def choose_block(n_pairs: int, n_triplets: int, ny: int, nx: int, mem_mb: int, native: int = 512) -> int:
    """Largest block side (a power-of-two split of ``native``, >= 16) whose working set fits ``mem_mb``.

    The working set of one block is about (3 inputs + 2 windowed + 8 products) per pair and 3 per loop,
    float32, plus the float64 filter temporaries (6 per pair).
    """
    per_px = 4 * (13 * n_pairs + 3 * n_triplets) + 8 * 6 * n_pairs
    b = native
    while b > 16 and per_px * b * b > mem_mb * 2**20:
        b //= 2
    return max(16, min(b, max(ny, nx)))


# ------------------------------------------------------------------------------------------------
# block functions (numpy in, numpy out; run on the workers)
# ------------------------------------------------------------------------------------------------


def _window_block(phase: np.ndarray, coh: np.ndarray, window: int) -> np.ndarray:
    """Both windowed statistics from one overlap task, packed as complex64 (real: phase std, imag:
    mean coherence), so ``map_overlap`` keeps the block shape and the filters run once."""
    w = stats.window_stats(phase, coh, window)
    out = np.empty(phase.shape, np.complex64)
    out.real = w.phase_std
    out.imag = w.coh_mean
    return out


def _partials_block(phase: np.ndarray, coh: np.ndarray, unw: np.ndarray | None, trip: Triplets,
                    n_epochs: int) -> tuple[closure.ClosurePartials | None, closure.ClosurePartials,
                                            stats.Step11Partials]:
    pu = closure.closure_partials(closure.raw_closure(unw, trip)) if unw is not None and trip.n_triplets else None
    pw = (closure.closure_partials(closure.wrapped_closure(phase, trip)) if trip.n_triplets
          else closure.empty_partials(0))
    valid = np.isfinite(unw) if unw is not None else np.isfinite(phase)
    return pu, pw, stats.step11_partials(valid, coh, n_epochs)


class PartialsLayout:
    """Offsets of every pass-1 partial in one flat float64 vector, so the per-block partials are a Dask
    array that ``sum`` reduces as a tree on the workers (``split_every``) and only the final vector
    (~68 x 8 B per loop and 24 B per pair: ~1 MB for a real frame) reaches the driver. Counts stay exact
    in float64 up to 2**53."""

    def __init__(self, n_pairs: int, n_triplets: int, has_unw: bool) -> None:
        nb = 2 * closure.K_MAX + 1
        t, p = n_triplets, n_pairs
        spec = [("u_hist", t * nb if has_unw else 0), ("u_s1", t if has_unw else 0), ("u_s2", t if has_unw else 0),
                ("u_n", t if has_unw else 0), ("w_hist", t * nb), ("w_s1", t), ("w_s2", t), ("w_n", t),
                ("n_area", 1), ("n_valid", p), ("coh_sum", p), ("coh_n", p)]
        self.rows: dict[str, tuple[int, int]] = {}
        pos = 0
        for name, n in spec:
            self.rows[name] = (pos, pos + n)
            pos += n
        self.n, self.nb, self.t, self.has_unw = pos, nb, t, has_unw

    def pack(self, pu: closure.ClosurePartials | None, pw: closure.ClosurePartials,
             s11: stats.Step11Partials) -> np.ndarray:
        v = np.empty(self.n, np.float64)
        parts = {"w_hist": pw.k_hist, "w_s1": pw.s1, "w_s2": pw.s2, "w_n": pw.n, "n_area": s11.n_area,
                 "n_valid": s11.n_valid, "coh_sum": s11.coh_sum, "coh_n": s11.coh_n}
        if pu is not None:
            parts.update(u_hist=pu.k_hist, u_s1=pu.s1, u_s2=pu.s2, u_n=pu.n)
        for name, (a, b) in self.rows.items():
            if b > a:
                v[a:b] = np.ravel(parts[name])
        return v

    def unpack(self, v: np.ndarray) -> tuple[closure.ClosurePartials | None, closure.ClosurePartials,
                                              stats.Step11Partials]:
        def g(name: str, dtype: Any = np.float64) -> np.ndarray:
            a, b = self.rows[name]
            x = v[a:b]
            return np.rint(x).astype(np.int64) if dtype is np.int64 else x.astype(dtype)

        def cp(pre: str) -> closure.ClosurePartials:
            return closure.ClosurePartials(g(f"{pre}_hist", np.int64).reshape(self.t, self.nb), g(f"{pre}_s1"),
                                           g(f"{pre}_s2"), g(f"{pre}_n", np.int64))

        s11 = stats.Step11Partials(g("n_area", np.int64).reshape(()), g("n_valid", np.int64), g("coh_sum"),
                                   g("coh_n", np.int64))
        return (cp("u") if self.has_unw else None), cp("w"), s11


def _partials_vec(phase: np.ndarray, coh: np.ndarray, *unw: np.ndarray, trip: Triplets, n_epochs: int,
                  layout: PartialsLayout) -> np.ndarray:
    """One block's pass-1 partials as a (1, 1, 1, L) float64 block (see :class:`PartialsLayout`)."""
    pu, pw, s11 = _partials_block(phase, coh, unw[0] if unw else None, trip, n_epochs)
    return layout.pack(pu, pw, s11)[None, None, None]


def pass1_partials(phase: da.Array, coh: da.Array, unw: da.Array | None, trip: Triplets, n_epochs: int,
                   split_every: int = 8) -> tuple[closure.ClosurePartials | None, closure.ClosurePartials,
                                                   stats.Step11Partials]:
    """Pass-1 partials of every block summed on the workers (a ``split_every``-ary tree), then unpacked.

    The inputs are (pair, y, x) arrays with one chunk along ``pair``; the result equals the sum of the
    per-block partials (integer parts exactly; float sums up to the summation order).
    """
    layout = PartialsLayout(phase.shape[0], trip.n_triplets, unw is not None and trip.n_triplets > 0)
    args = [phase, coh] + ([unw] if layout.has_unw else [])
    per_block = da.map_blocks(_partials_vec, *args, new_axis=[3], chunks=(1, 1, 1, layout.n), dtype=np.float64,
                              trip=trip, n_epochs=n_epochs, layout=layout)
    total = per_block.sum(axis=(0, 1, 2), split_every=split_every)
    (vec,) = dask.compute(total)
    return layout.unpack(np.asarray(vec))


class Layout:
    """Row layout of the packed per-block float32 array (what one task computes once): every per-pixel product
    of a block, the windowed statistics included (the per-loop maps, not stored by default, are separate lazy
    arrays: see :func:`closure_maps`)."""

    def __init__(self, n_pairs: int, n_triplets: int, has_unw: bool) -> None:
        self.rows: dict[str, tuple[int, int]] = {}
        pos = 0
        spec = [("phase_std", n_pairs), ("coh_mean", n_pairs), ("n_loop_err", 1), ("n_loops", 1),
                ("pair_closure", n_pairs if has_unw else 0), ("pair_closure_wrapped", n_pairs if n_triplets else 0),
                ("label", n_pairs), ("reason", n_pairs), ("n_valid", 1)]
        for name, n in spec:
            if n:
                self.rows[name] = (pos, pos + n)
                pos += n
        self.n = pos


def _pack_block(phase_h: np.ndarray, coh_h: np.ndarray, *unw: np.ndarray, window: int, trip: Triplets,
                offset_k: np.ndarray | None, thresholds: labels.RuleThresholds, layout: Layout,
                block_info: dict[Any, Any] | None = None) -> np.ndarray:
    """Every per-pixel product of one block in one task: the windowed statistics of the block's halo'd phase
    and coherence (``z_h``: phase + 1j coh, ``da.overlap.overlap``, depth ``window // 2``, no halo at the
    frame's edges), cropped to
    the block, then :func:`block_products`, packed as :class:`Layout` rows. The same values as
    ``map_overlap(window_stats)`` followed by a ``map_blocks`` of the products, without the intermediate
    arrays, their tasks and their copies."""
    assert block_info is not None
    out_info = block_info[None]
    (_, by, bx), loc = out_info["chunk-shape"], out_info["chunk-location"]
    h = window // 2
    y0, x0 = (h if loc[1] > 0 else 0), (h if loc[2] > 0 else 0)
    crop = (slice(y0, y0 + by), slice(x0, x0 + bx))
    return pack_halo_block(phase_h, coh_h, unw[0] if unw else None, crop, window=window, trip=trip,
                           offset_k=offset_k, thresholds=thresholds, layout=layout)


def pack_halo_block(phase_h: np.ndarray, coh_h: np.ndarray, unw: np.ndarray | None, crop: tuple[slice, slice], *,
                    window: int, trip: Triplets, offset_k: np.ndarray | None, thresholds: labels.RuleThresholds,
                    layout: Layout) -> np.ndarray:
    """(layout.n, by, bx) float32 products of one block from its halo'd phase and coherence (P, by + halo,
    bx + halo) float32, ``crop`` the block inside them, and its unw (P, by, bx) or None: the one kernel of
    both the block path and the tile path (:mod:`insarcloud.qc.tile_tasks`)."""
    w = stats.window_stats(phase_h, coh_h, window, crop=crop)
    phase, coh = phase_h[:, crop[0], crop[1]], coh_h[:, crop[0], crop[1]]
    bp = block_products(phase, coh, unw, trip, offset_k, phase_std=w.phase_std,
                        coh_mean=w.coh_mean, thresholds=thresholds)
    return _packed(bp, phase, unw, layout)


def _packed(bp: Any, phase: np.ndarray, unw: np.ndarray | None, layout: Layout) -> np.ndarray:
    out = np.empty((layout.n,) + phase.shape[1:], np.float32)
    for name, (a, b) in layout.rows.items():
        if name == "n_valid":  # step 11's validity count (exact in float32 below 2**24 pairs)
            out[a] = np.isfinite(unw if unw is not None else phase).sum(axis=0)
            continue
        v = getattr(bp, name)
        out[a:b] = v if v.ndim == 3 else v[None]
    return out


def _wrapped_closure_block(phase: np.ndarray, trip: Triplets) -> np.ndarray:
    return closure.wrapped_closure(phase, trip)


def _closure_block(unw: np.ndarray, trip: Triplets, offset_k: np.ndarray) -> np.ndarray:
    return closure.correct_closure(closure.raw_closure(unw, trip), offset_k)


def closure_maps(phase: da.Array, unw: da.Array | None, trip: Triplets,
                 offset_k: np.ndarray | None) -> tuple[da.Array | None, da.Array | None]:
    """The per-loop (triplet, y, x) float32 maps, lazily: wrapped closure, and the unwrapped closure with each
    loop's ``2 pi k`` removed (None without loops / unw). Separate tasks, computed only when written."""
    if not trip.n_triplets:
        return None, None
    chunks = ((trip.n_triplets,), phase.chunks[1], phase.chunks[2])
    wc = da.map_blocks(_wrapped_closure_block, phase, dtype=np.float32, chunks=chunks, trip=trip,
                       meta=np.empty((0, 0, 0), np.float32))
    cu = None
    if unw is not None:
        k = np.zeros(trip.n_triplets, np.int64) if offset_k is None else offset_k
        cu = da.map_blocks(_closure_block, unw, dtype=np.float32, chunks=chunks, trip=trip, offset_k=k,
                           meta=np.empty((0, 0, 0), np.float32))
    return wc, cu


# ------------------------------------------------------------------------------------------------
# the lazy QC dataset
# ------------------------------------------------------------------------------------------------


def _has_unw(ds: xr.Dataset) -> bool:
    return "unw" in ds.data_vars


def check_cube(ds: xr.Dataset) -> list[str]:
    """The cube's pair names, after checking it has ``phase`` and ``coh`` on (pair, y, x) and some pair."""
    for name in ("phase", "coh"):
        if name not in ds.data_vars:
            raise CubeError(f"the cube has no {name!r} variable (needs phase and coh on (pair, y, x))")
        if ds[name].dims != ("pair", "y", "x"):
            raise CubeError(f"{name!r} has dims {ds[name].dims}, expected ('pair', 'y', 'x')")
    pairs = [str(v) for v in ds["pair"].values]
    if not pairs:
        raise CubeError("the cube has no ingested pair: nothing to check")
    return pairs


class Inputs(NamedTuple):
    """QC inputs as float32 (pair=all, y=b, x=b) Dask arrays with water set to NaN.

    phase, coh, unw : (pair, y, x) float32 (unw None without unwrapped products).
    has_landmask : the cube has a (y, x) ``landmask`` (applied).
    n_land : land pixels (None without landmask).
    halo : phase and coh blocks with a ``halo``-pixel border (numpy-backed cubes only; else None).
    """

    phase: da.Array
    coh: da.Array
    unw: da.Array | None
    has_landmask: bool
    n_land: int | None
    halo: tuple[da.Array, da.Array] | None = None


def numpy_blocks(x: np.ndarray, b: int, halo: int = 0) -> da.Array:
    """A (pair, y, x) numpy array as a Dask array of (pair=all, y=b, x=b) views, without a copy.

    ``da.from_array`` copies its input first (to guard against later mutation): a whole-stack copy per
    variable held by the graph for the whole run, which is what made QC's memory grow with a numpy-backed
    frame. The cube is not mutated while QC runs, so the blocks are plain slices of it. With ``halo`` each
    spatial block extends ``halo`` pixels into its neighbours (not beyond the array): the blocks
    ``da.overlap.overlap(depth=halo, boundary="none")`` makes, without its strip and concatenation tasks.
    """
    name = f"qc-numpy-{uuid.uuid4().hex}"
    chunks = normalize_chunks((-1, b, b) if x.ndim == 3 else (b, b), x.shape)
    sp = x.ndim - 2  # the first spatial axis
    dsk: dict[Any, Any] = {}
    out_chunks = [list(c) for c in chunks]
    for idx in product(*(range(len(c)) for c in chunks)):
        sl = []
        for ax, (c, i) in enumerate(zip(chunks, idx, strict=True)):
            lo, hi = sum(c[:i]), sum(c[:i + 1])
            if halo and ax >= sp:  # the block with its halo: views of the neighbours' edges, no strip tasks
                lo, hi = max(0, lo - halo), min(x.shape[ax], hi + halo)
                out_chunks[ax][i] = hi - lo
            sl.append(slice(lo, hi))
        dsk[(name, *idx)] = (operator.getitem, x, tuple(sl))
    return da.Array(dsk, name, tuple(tuple(c) for c in out_chunks), dtype=x.dtype)


def prepare_inputs(ds: xr.Dataset, b: int, halo: int = 0) -> Inputs:
    """The cube's phase, coh (and unw) rechunked to (pair=all, y=b, x=b), water (landmask 0) no data; with
    ``halo`` and a numpy-backed cube, also phase and coh blocks with their halo (:func:`numpy_blocks`)."""
    chunks = {0: -1, 1: b, 2: b}

    def arr(name: str, h: int = 0) -> da.Array:
        a = ds[name].data
        if h:
            return numpy_blocks(np.asarray(a), b, h).astype(np.float32)
        a = a if isinstance(a, da.Array) else numpy_blocks(np.asarray(a), b)
        return a.astype(np.float32).rechunk(chunks)

    phase, coh = arr("phase"), arr("coh")
    unw = arr("unw") if _has_unw(ds) else None
    numpy_backed = not any(isinstance(ds[v].data, da.Array) for v in ("phase", "coh", "landmask") if v in ds)
    hal = (arr("phase", halo), arr("coh", halo)) if halo and numpy_backed else None
    # water (LiCSAR landmask 0) is no data for every product: statistics and labels over land only
    has_lm = "landmask" in ds.data_vars and ds["landmask"].dims == ("y", "x")
    n_land = None
    if has_lm:
        lmv = ds["landmask"].data
        lmv = lmv if isinstance(lmv, da.Array) else numpy_blocks(np.asarray(lmv), b)
        water = (lmv == 0).rechunk((b, b))[None]
        phase, coh = da.where(water, np.float32(np.nan), phase), da.where(water, np.float32(np.nan), coh)
        unw = None if unw is None else da.where(water, np.float32(np.nan), unw)
        if hal is not None:
            wh = (numpy_blocks(np.asarray(ds["landmask"].data), b, halo) == 0)[None]
            hal = (da.where(wh, np.float32(np.nan), hal[0]), da.where(wh, np.float32(np.nan), hal[1]))
        n_land = int(da.sum(~water).compute())
        log.info("landmask: %d of %d pixels are land; water is no data for qc", n_land,
                 ds.sizes["y"] * ds.sizes["x"])
    return Inputs(phase, coh, unw, has_lm, n_land, hal)


def window_arrays(phase: da.Array, coh: da.Array, window: int) -> tuple[da.Array, da.Array]:
    """Windowed phase std and mean coherence (pair, y, x) float32, lazily, with the inputs' chunks."""
    h = window // 2
    win = da.map_overlap(_window_block, phase, coh, depth={0: 0, 1: h, 2: h}, boundary="none",
                         dtype=np.complex64, window=window)
    # map_overlap may merge a thin last chunk into its neighbour: give the inputs' chunks back, so every
    # map_blocks input and the declared output chunks agree
    win = win.rechunk(phase.chunks)
    return win.real.astype(np.float32), win.imag.astype(np.float32)


def pass2_pack(phase: da.Array, coh: da.Array, unw: da.Array | None, trip: Triplets, offset_k: np.ndarray | None,
               window: int, thresholds: labels.RuleThresholds, layout: Layout,
               halo: tuple[da.Array, da.Array] | None = None) -> da.Array:
    """(layout.n, y, x) float32: every per-pixel product, one :func:`_pack_block` task per spatial block."""
    h = window // 2
    kw: dict[str, Any] = dict(window=window, trip=trip, offset_k=offset_k, thresholds=thresholds, layout=layout)
    out_chunks = ((layout.n,), phase.chunks[1], phase.chunks[2])
    if h and min(min(phase.chunks[1]), min(phase.chunks[2])) < h:
        # a block thinner than the halo: let map_overlap's chunk handling make the halos, then crop nothing
        std, cm = window_arrays(phase, coh, window)
        return da.map_blocks(_pack_block_presmoothed, phase, coh, std, cm, *([unw] if unw is not None else []),
                             dtype=np.float32, chunks=out_chunks, meta=np.empty((0, 0, 0), np.float32), **kw)
    # phase and coherence travel as one complex64 array (exact: float32 real and imaginary parts), so the
    # halo exchange is one set of strip tasks, not two
    args = list(halo) if halo is not None else [da.overlap.overlap(a, depth={0: 0, 1: h, 2: h}, boundary="none")
                                                for a in (phase, coh)]
    if unw is not None:
        args.append(unw)
    # the halo'd blocks and the plain ones correspond one to one (map_blocks pairs blocks by index, no rechunk)
    return da.map_blocks(_pack_block, *args, dtype=np.float32, chunks=out_chunks,
                         meta=np.empty((0, 0, 0), np.float32), **kw)


def _pack_block_presmoothed(phase: np.ndarray, coh: np.ndarray, std: np.ndarray, cm: np.ndarray, *unw: np.ndarray,
                            window: int, trip: Triplets, offset_k: np.ndarray | None,
                            thresholds: labels.RuleThresholds, layout: Layout) -> np.ndarray:
    bp = block_products(phase, coh, unw[0] if unw else None, trip, offset_k, phase_std=std, coh_mean=cm,
                        thresholds=thresholds)
    return _packed(bp, phase, unw[0] if unw else None, layout)


def valid_count(phase: da.Array, unw: da.Array | None) -> da.Array:
    """(y, x) int16 pairs with data at each pixel (step 11's validity: unw finite, else phase finite)."""
    return da.isfinite(unw if unw is not None else phase).sum(axis=0).astype(np.int16)


class PixelPieces(NamedTuple):
    """The lazy per-pixel products of a frame, in the frame's pair order (what :func:`assemble` writes).

    phase_std, coh_mean, pair_closure_wrapped, pair_closure : (pair, y, x) float32 (the closures None when
    the frame has no loop / no unw). label, reason : (pair, y, x) uint8. n_loop_err, n_loops, n_valid :
    (y, x) int16. closure, closure_wrapped : (triplet, y, x) float32 or None (not stored by default).
    """

    phase_std: da.Array
    coh_mean: da.Array
    label: da.Array
    reason: da.Array
    pair_closure_wrapped: da.Array | None
    pair_closure: da.Array | None
    n_loop_err: da.Array
    n_loops: da.Array
    n_valid: da.Array
    closure_wrapped: da.Array | None = None
    closure: da.Array | None = None


class LoopPieces(NamedTuple):
    """Per-loop and per-pair results of pass 1 for the whole network.

    loops : unwrapped loop statistics (None without unw or loops); loops_w : wrapped (rms only used);
    s11 : LiCSBAS step 11 of every pair, in the frame's pair order.
    """

    loops: closure.LoopStats | None
    loops_w: closure.LoopStats
    s11: stats.IfgStats


def label_counts_block(lab: np.ndarray) -> np.ndarray:
    counts = [(lab == v).sum(axis=(1, 2), dtype=np.int64) for v in (labels.GOOD, labels.BAD, labels.UNCERTAIN)]
    return np.stack(counts)[:, :, None, None]


def label_counts_lazy(label: da.Array) -> tuple[da.Array, da.Array, da.Array]:
    """(pair,) int64 counts of good, bad and uncertain pixels of a lazy (pair, y, x) label array.

    One task per block counts the three labels ((3, pair, 1, 1) int64), summed over the blocks as a tree on
    the workers (exact integers): one task per block instead of three reductions' worth.
    """
    nby, nbx = len(label.chunks[1]), len(label.chunks[2])
    per_block = da.map_blocks(label_counts_block, label, new_axis=[0], dtype=np.int64,
                              chunks=((3,), label.chunks[0], (1,) * nby, (1,) * nbx),
                              meta=np.empty((0, 0, 0, 0), np.int64))
    total = per_block.sum(axis=(2, 3), split_every=8, dtype=np.int64).rechunk({0: 1, 1: -1})
    return total[0], total[1], total[2]


def qc_dataset(ds: xr.Dataset, params: QCParams | None = None) -> xr.Dataset:
    """The ``qc`` group of a frame cube as a lazy (Dask-backed) dataset.

    Pass 1 (per-loop and per-ifg reductions) is computed here, on the active Dask scheduler; pass 2 stays
    lazy. Works without ``unw`` (wrapped closure only) and without any closed loop (statistics and labels
    only, with a warning). With a ``landmask`` (y, x) variable (LiCSAR: 1 land, 0 water) water pixels are no
    data for every product, so step 11/12 and the label fractions are over land only
    (:func:`insarcloud.qc.stats.mask_water`); attribute ``landmask_applied`` says whether it was.

    Parameters
    ----------
    ds : xr.Dataset
        A frame cube root (``phase``, ``coh`` (pair, y, x); ``unw`` optional), Dask- or numpy-backed.
    params : QCParams, optional
    """
    p = params or QCParams()
    pairs = check_cube(ds)
    trip = find_triplets(pairs)
    if trip.n_triplets == 0:
        log.warning("the network of %d pairs has no closed triplet: no loop closure, statistics only", len(pairs))
    has_unw = _has_unw(ds)
    n_pairs, ny, nx = ds["phase"].shape
    b = p.block or choose_block(n_pairs, trip.n_triplets, ny, nx, p.block_mem_mb)
    th = p.rules.thresholds()
    inp = prepare_inputs(ds, b, halo=p.window // 2)
    phase, coh, unw = inp.phase, inp.coh, inp.unw
    n_ep = len(epochs(pairs))
    t0 = time.perf_counter()
    kept, how = reuse_inputs([phase, coh] + ([unw] if unw is not None else []))
    phase, coh = kept[0], kept[1]
    unw = kept[2] if unw is not None else None

    # ---- pass 1: small reductions over blocks, computed now on the workers
    pu, pw, s11p = pass1_partials(phase, coh, unw, trip, n_ep)
    loops = closure.finalize_partials(pu) if pu is not None else None
    loops_w = closure.finalize_partials(pw)
    log.info("qc pass 1 (loop and step-11 reductions) over %d blocks of %d px, inputs %s: %.1fs",
             phase.npartitions, b, how, time.perf_counter() - t0)

    # ---- pass 2: lazy per-pixel products, one task per block (windowed statistics on the halo'd block,
    # closures, counts, labels), sliced into the output variables
    layout = Layout(n_pairs, trip.n_triplets, has_unw and trip.n_triplets > 0)
    offset_k = None if loops is None else loops.offset_k
    pack = pass2_pack(phase, coh, unw, trip, offset_k, p.window, th, layout, halo=inp.halo)

    def rows(name: str) -> da.Array | None:
        if name not in layout.rows:
            return None
        a, bb = layout.rows[name]
        return pack[a:bb]

    label = rows("label").astype(np.uint8)  # type: ignore[union-attr]
    wc, cu = closure_maps(phase, unw, trip, offset_k)
    px = PixelPieces(rows("phase_std"), rows("coh_mean"), label,  # type: ignore[arg-type]
                     rows("reason").astype(np.uint8),  # type: ignore[union-attr]
                     rows("pair_closure_wrapped"), rows("pair_closure"),
                     rows("n_loop_err")[0].astype(np.int16), rows("n_loops")[0].astype(np.int16),  # type: ignore[index]
                     rows("n_valid")[0].astype(np.int16), wc, cu)  # type: ignore[index]
    lp = LoopPieces(loops, loops_w, stats.finalize_step11(s11p, p.cov_thre, p.coh_thre))
    return assemble(ds, p, pairs, trip, px, lp, block=b, has_landmask=inp.has_landmask, n_land=inp.n_land)


#: Version of the stored update state (``state_*`` variables, :mod:`insarcloud.qc.incremental`); a previous group
#: with another version (or none) makes the next update a full recompute.
STATE_VERSION = 1

#: The per-ifg variables derived from the label counts (pass 2's only frame-wide reduction).
IFG_VARIABLES = ("ifg_label", "frac_good", "frac_bad", "frac_uncertain")


def ifg_variables(cnt: tuple[da.Array, ...], s11: Any, s12: Any, th: labels.RuleThresholds, *, has_unw: bool,
                  unwrapped: bool) -> dict[str, tuple[tuple[str], da.Array, dict[str, Any]]]:
    """The :data:`IFG_VARIABLES` (pair,) from the (pair,) counts of good, bad and uncertain pixels, lazily."""
    def _ifg(g: np.ndarray, bd: np.ndarray, u: np.ndarray, which: int) -> np.ndarray:
        r = labels.ifg_labels(labels.LabelCounts(g.astype(np.int64), bd.astype(np.int64), u.astype(np.int64)),
                              step11_bad=s11.bad, step12_bad=s12.bad if unwrapped else None,
                              no_loop=s12.no_loop if has_unw else None, thresholds=th)
        return np.asarray(r[which])

    out: dict[str, tuple[tuple[str], da.Array, dict[str, Any]]] = {}
    for which, (name, dt) in enumerate(zip(IFG_VARIABLES, (np.uint8, np.float32, np.float32, np.float32),
                                           strict=True)):
        out[name] = (("pair",), da.map_blocks(_ifg, *cnt, dtype=dt, which=which).astype(dt), {})
    out["ifg_label"][2].update(flag_values=[0, 1, 2, 255], flag_meanings="good bad uncertain nodata")
    return out


def assemble(ds: xr.Dataset, p: QCParams, pairs: list[str], trip: Triplets, px: PixelPieces, lp: LoopPieces, *,
             block: int, has_landmask: bool, n_land: int | None,
             counts: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> xr.Dataset:
    """The qc dataset from its pieces (shared by the full run, the tile path and the incremental update, so all
    write the same variables, dtypes and attributes). Frame-wide verdicts (step 11, step 12, ifg labels) are
    derived here from the per-loop and per-pair pieces; ``counts`` (good, bad, uncertain per pair), when
    known, replace the label counts of ``px.label``."""
    th = p.rules.thresholds()
    has_unw = _has_unw(ds)
    loops, loops_w = lp.loops, lp.loops_w
    s11 = lp.s11
    s12 = closure.ifg_loop_verdicts(loops.rms if loops is not None else loops_w.rms, trip, p.loop_thre)
    if not np.any(s11.coverage > 0):
        log.warning("no pixel has data in enough pairs (valid area empty): every ifg fails step 11")
    # Several pairs (or triplets) per Zarr chunk, up to ~8 MB of float32: one pair per chunk would turn a
    # small frame's qc group into tens of thousands of tiny objects (one PUT each on an object store).
    cy, cx = px.phase_std.chunks[1][0], px.phase_std.chunks[2][0]
    per_chunk = max(1, (8 * 2**20) // (4 * cy * cx))

    def stack(a: da.Array, dtype: Any) -> da.Array:
        return a.astype(dtype).rechunk({0: per_chunk})

    yx = ("y", "x")
    out: dict[str, Any] = {
        "phase_std": (("pair", *yx), stack(px.phase_std, np.float32), {"long_name": f"circular phase std in a "
                      f"{p.window}x{p.window} window", "units": "rad"}),
        "coh_mean": (("pair", *yx), stack(px.coh_mean, np.float32), {"long_name": f"mean coherence in a "
                     f"{p.window}x{p.window} window", "units": "1"}),
        "label": (("pair", *yx), stack(px.label, np.uint8), {"long_name": "rule label",
                  "flag_values": [0, 1, 2, 255], "flag_meanings": "good bad uncertain nodata"}),
        "reason": (("pair", *yx), stack(px.reason, np.uint8),
                   {"long_name": "why a pixel is not good (bits)", "flag_masks": [1, 2, 4, 8, 16],
                    "flag_meanings": "closure low_coherence high_phase_std wrapped_closure no_closure_support"}),
        "n_loop_err": (yx, px.n_loop_err.astype(np.int16),
                       {"long_name": "loops with |closure| > threshold", "units": "1"}),
        "n_loops": (yx, px.n_loops.astype(np.int16), {"long_name": "loops with a finite closure", "units": "1"}),
    }
    if trip.n_triplets:
        if px.closure_wrapped is not None:
            out["closure_wrapped"] = (("triplet", *yx), stack(px.closure_wrapped, np.float32),
                                      {"long_name": "wrapped loop closure arg(z_ij z_jk conj z_ik)", "units": "rad"})
        out["pair_closure_wrapped"] = (("pair", *yx), stack(px.pair_closure_wrapped, np.float32),  # type: ignore[arg-type]
                                       {"long_name": "mean |wrapped closure| over the pair's loops", "units": "rad"})
    if px.pair_closure is not None:
        if px.closure is not None:
            out["closure"] = (("triplet", *yx), stack(px.closure, np.float32),
                              {"long_name": "unwrapped loop closure, per-loop 2 pi k removed", "units": "rad"})
        out["pair_closure"] = (("pair", *yx), stack(px.pair_closure, np.float32),
                               {"long_name": "mean |unwrapped closure| over the pair's loops", "units": "rad"})
    cnt = label_counts_lazy(px.label) if counts is None else tuple(da.from_array(c) for c in counts)
    out.update(ifg_variables(cnt, s11, s12, th, has_unw=has_unw, unwrapped=loops is not None))
    out["coverage"] = (("pair",), s11.coverage.astype(np.float32), {"long_name": "LiCSBAS step-11 coverage"})
    out["coh_avg"] = (("pair",), s11.coh_avg.astype(np.float32), {"long_name": "mean coherence (valid area)"})
    out["step11_bad"] = (("pair",), s11.bad, {"long_name": f"coverage < {p.cov_thre} or coh_avg < {p.coh_thre}"})
    out["step12_bad"] = (("pair",), s12.bad, {"long_name": "in a bad loop and in no good loop",
                                              "source": "unwrapped" if loops is not None else "wrapped"})
    out["no_loop"] = (("pair",), s12.no_loop, {"long_name": "in no closed loop"})
    out["n_good_loops"] = (("pair",), s12.n_good_loops.astype(np.int32), {})
    out["n_bad_loops"] = (("pair",), s12.n_bad_loops.astype(np.int32), {})
    # the incremental state (insarcloud.qc.incremental): exact partial sums an update adds new pairs and loops to
    state = {"long_name": "qc update state"}  # insarcloud.qc.incremental; attributes kept short (group size)
    out["state_n_valid"] = (yx, px.n_valid.astype(np.int16), state)  # pairs with data: step 11's count
    coords: dict[str, Any] = {k: ds.coords[k] for k in ("pair", "primary", "secondary", "y", "x", "lat", "lon")
                              if k in ds.coords}
    if trip.n_triplets:
        names = np.array(pairs, dtype=object)
        coords.update(triplet=np.array(trip.names, dtype=object), pair_ij=("triplet", names[trip.ij]),
                      pair_jk=("triplet", names[trip.jk]), pair_ik=("triplet", names[trip.ik]))
        # float64: the exact per-loop values an update reuses (step 12 compares them with loop_thre)
        out["triplet_rms_wrapped"] = (("triplet",), loops_w.rms.astype(np.float64), {"units": "rad"})
        if loops is not None:
            out["triplet_rms"] = (("triplet",), loops.rms.astype(np.float64), {"units": "rad"})
            out["triplet_offset_k"] = (("triplet",), loops.offset_k.astype(np.int32),
                                       {"long_name": "integer cycles removed from the loop"})
            out["triplet_n_valid"] = (("triplet",), loops.n_valid.astype(np.int64), {})
            out["triplet_bad"] = (("triplet",), loops.rms >= p.loop_thre, {"long_name": f"rms >= {p.loop_thre} rad"})
    res = xr.Dataset({k: xr.Variable(v[0], v[1], v[2]) for k, v in out.items()}, coords=coords)
    res.attrs.update(
        frame=str(ds.attrs.get("frame", "")),
        has_unw=int(has_unw),
        n_triplets=int(trip.n_triplets),
        block=int(block),
        thresholds=p.model_dump_json(),
        landmask_applied=int(has_landmask),
        qc_state_version=STATE_VERSION,
        **({"n_land_pixels": n_land} if n_land is not None else {}),
        description="insarcloud QC: loop closure (LiCSBAS step 12), coverage/coherence (step 11), windowed "
                    "phase std and coherence, multi-stage rule labels (see insarcloud.qc.labels)",
    )
    return res


#: Per-loop (triplet, y, x) maps are not stored by default: they are ~1.4x the pairs of a LiCSAR network
#: and recomputable from the cube (``closure.raw_closure`` minus ``2 pi triplet_offset_k``); their per-pixel
#: and per-pair summaries (``n_loop_err``, ``n_loops``, ``pair_closure*``) are stored.
TRIPLET_MAPS = ("closure", "closure_wrapped")
#: Float products stored as float16 (read back as float16: half of float32 for every reader too; NaN kept):
#: relative step 2**-11, i.e. <= 0.002 rad on a phase std or mean |closure| of 2-4 rad and <= 2.5e-4 on a
#: coherence of 0.25-0.5, far below the labels' thresholds, which are computed from the float32 values.
HALF = ("phase_std", "coh_mean", "pair_closure_wrapped", "pair_closure")


def storable(q: xr.Dataset, *, triplet_maps: bool = False) -> tuple[xr.Dataset, dict[str, dict[str, Any]]]:
    """The qc dataset as written, and its encoding: no per-loop maps unless asked, float products in float16.

    Measured on the ``tibet_basin`` demo frame this makes the group smaller than the cube it checks
    (docs/scale.md).
    """
    if not triplet_maps:
        q = q.drop_vars([v for v in TRIPLET_MAPS if v in q.data_vars])
    return q, {name: {"dtype": "float16"} for name in HALF if name in q.data_vars}


#: Bytes of one read task: a cube stores one pair per chunk, so a frame of many small pairs would otherwise
#: be read by one task per pair and variable (the demo's 64 x 64 px, 387 pairs: 1,161 read tasks, ~95% of
#: QC's tasks; one task of many pairs lets Zarr fetch its chunks concurrently).
READ_TASK_MB = 64


def read_chunks(ds: xr.Dataset) -> dict[str, int]:
    """Dask chunks to open a cube with for QC: the stored spatial chunks, as many pairs per task as fit
    ``READ_TASK_MB`` (a multiple of the stored pair chunk, so no Zarr chunk is read twice)."""
    enc = ds["phase"].encoding.get("chunks") or ds["phase"].data.chunksize
    cp, cy, cx = (int(c) for c in enc)
    k = max(1, (READ_TASK_MB * 2**20) // (4 * cy * cx * cp)) * cp
    return {"pair": min(k, ds.sizes["pair"])}  # y, x: each variable's stored chunks


def run_qc(url: str, params: QCParams | None = None, storage_options: dict[str, Any] | None = None,
           *, group: str = GROUP) -> str:
    """Compute and write the ``qc`` group of the cube at ``url``; returns the group written (or found done)."""
    from insarcloud import io

    p = params or QCParams()
    from insarcloud.io import stages

    # read chunks from the whole stored pair axis (pairs not yet ingested included: a pair chunk that cut the
    # stored chunks of the 1-D pair variables would warn)
    ds = io.open_cube(url, storage_options, chunks=read_chunks(io.open_cube(url, storage_options,
                                                                          complete_only=False)))
    # the pair list is part of the input identity: a cube that gained pairs gets a fresh group (docs/STAGES.md)
    plan = stages.plan_stage(url, STAGE, group, p.marker_params(), pairs=[str(v) for v in ds["pair"].values],
                             storage_options=storage_options)
    marker = plan.identity
    if plan.done:
        stages.finish_stage(url, plan, storage_options, base=group)
        return plan.group
    t0 = time.perf_counter()
    # a grown network: only the new loops and pairs (insarcloud.qc.incremental), else a full run, saying why
    from insarcloud.qc import incremental

    prev = stages.current_group(url, STAGE, storage_options)
    out, why = incremental.try_update(url, ds, p, plan.identity["params"], prev, plan.group, storage_options)
    if out is None:
        log.info("qc: full computation of %s: %s", plan.group, why)
        from insarcloud.qc.tile_run import run_tiled  # the tile path builds on this module

        written = run_tiled(url, ds, p, plan.group, marker, storage_options, why=why)
        if not written:
            out = qc_dataset(ds, p)
            out.attrs["qc_update"] = json.dumps({"mode": "full", "reason": why})
    else:
        written = False
    if not written:
        out.attrs["source_url"] = url
        out, enc = storable(out)
        io.write_stage_output(out, url, plan.group, stage=STAGE, params=marker, storage_options=storage_options,
                              encoding=enc)
    from insarcloud.plot import stage_quicklooks  # network, coherence matrix, loop closure PNGs beside the group

    stage_quicklooks(url, plan.group, storage_options)
    stages.finish_stage(url, plan, storage_options, base=group)  # consumers now read this group
    n = ds.sizes["pair"] * ds.sizes["y"] * ds.sizes["x"]
    dt = time.perf_counter() - t0
    log.info("qc wrote %s/%s: %d pixel-pairs in %.1fs (%.2f Mpx-pair/s)", url, plan.group, n, dt,
             n / max(dt, 1e-9) / 1e6)
    return plan.group


__all__ = ["choose_block", "pass1_partials", "qc_dataset", "reuse_inputs", "run_qc", "storable"]
