"""The full QC run by stored tile (:mod:`insarcloud.qc.tiles`): the two passes' graphs, the group template that
the pass-2 tasks write into, and the per-ifg variables after them.

Used by ``run_qc`` for a cube in a store; a frame whose stored chunks do not suit tiles (a chunk that is not
a multiple of the block, a tile of one chunk over :data:`tiles.TILE_MEM_MB` even halved) goes by the block path,
and the log says why.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from insarcloud.qc import closure, stats
from insarcloud.qc.config import QCParams
from insarcloud.qc.dask_ops import (
    IFG_VARIABLES,
    STAGE,
    Layout,
    LoopPieces,
    PartialsLayout,
    PixelPieces,
    _has_unw,
    assemble,
    check_cube,
    choose_block,
    ifg_variables,
    storable,
)
from insarcloud.qc.network import epochs, find_triplets
from insarcloud.qc.tile_tasks import NEIGHBOURS, OutputSpec, OutputVar, tile_pass1, tile_pass2
from insarcloud.qc.tiles import TilePlan, TileSource, plan_tiles

log = logging.getLogger(__name__)

#: The per-pixel variables of the group and the packed rows (``dask_ops.Layout``) each is sliced from.
PIXEL_ROWS = {"phase_std": "phase_std", "coh_mean": "coh_mean", "label": "label", "reason": "reason",
              "pair_closure_wrapped": "pair_closure_wrapped", "pair_closure": "pair_closure",
              "n_loop_err": "n_loop_err", "n_loops": "n_loops", "state_n_valid": "n_valid"}


def tile_source(url: str, storage_options: dict[str, Any] | None, ds: xr.Dataset) -> TileSource:
    """The :class:`TileSource` of the checked pairs of ``ds`` (the cube at ``url`` as ``open_cube`` returned it)."""
    from insarcloud import io

    raw = io.open_cube(url, storage_options, complete_only=False, dask=False)  # as stored, nothing decoded twice
    stored = {str(v): i for i, v in enumerate(raw["pair"].values)}
    idx = [stored[str(v)] for v in ds["pair"].values]
    enc = raw["coh"].encoding
    coh_attrs = {k: enc[k] for k in ("scale_factor", "add_offset", "_FillValue") if k in enc}
    stored_dtype = np.dtype(enc.get("dtype", raw["coh"].dtype))
    if stored_dtype.kind == "f":
        coh_attrs = {}  # float storage: xarray's decoding is the identity (NaN fill)
    return TileSource(url, storage_options, None if idx == list(range(len(stored))) else tuple(idx),
                      _has_unw(ds), "landmask" in ds.data_vars and ds["landmask"].dims == ("y", "x"), coh_attrs,
                      stored_dtype.str)


def stored_chunks(ds: xr.Dataset) -> tuple[int, int]:
    enc = ds["phase"].encoding.get("chunks") or ds["phase"].data.chunksize
    return int(enc[-2]), int(enc[-1])


def _tiles(plan: TilePlan) -> dict[tuple[int, int], tuple[tuple[int, int], tuple[int, int]]]:
    ye, xe = plan.y_edges, plan.x_edges
    return {(i, j): ((ye[i], ye[i + 1]), (xe[j], xe[j + 1])) for i in range(len(ye) - 1) for j in range(len(xe) - 1)}


def run_tiled(url: str, ds: xr.Dataset, p: QCParams, group: str, marker: dict[str, Any],
              storage_options: dict[str, Any] | None, *, why: str) -> bool:
    """Compute and write the ``qc`` group ``group`` of the cube at ``url`` by stored tile; False (nothing
    written) when the cube's chunks do not suit tiles."""
    from insarcloud import io
    from insarcloud.io.cube import _raw_writable, open_zarr_group
    from insarcloud.progress import compute

    pairs = check_cube(ds)
    trip = find_triplets(pairs)
    has_unw = _has_unw(ds)
    n_pairs, ny, nx = ds["phase"].shape
    b = p.block or choose_block(n_pairs, trip.n_triplets, ny, nx, p.block_mem_mb)
    h = p.window // 2
    src = tile_source(url, storage_options, ds)
    plan = plan_tiles((n_pairs, ny, nx), stored_chunks(ds), b, h, has_unw=has_unw,
                      coh_itemsize=np.dtype(src.coh_dtype).itemsize)
    if isinstance(plan, str):
        log.info("qc: by blocks, not by stored tile: %s", plan)
        return False
    if trip.n_triplets == 0:
        log.warning("the network of %d pairs has no closed triplet: no loop closure, statistics only", len(pairs))
    tiles = _tiles(plan)
    n_ep = len(epochs(pairs))
    t0 = time.perf_counter()

    # ---- pass 1: partials summed as a tree; the tiles' border strips kept where the scheduler runs
    lay1 = PartialsLayout(n_pairs, trip.n_triplets, has_unw and trip.n_triplets > 0)
    res = {k: dask.delayed(tile_pass1, nout=2, pure=True)(src, ys, xs, n_pairs=n_pairs, b=b, halo=h, trip=trip,
                                                         n_epochs=n_ep, layout=lay1)
           for k, (ys, xs) in tiles.items()}
    total = da.stack([da.from_delayed(r[0], (lay1.n,), np.float64) for r in res.values()]).sum(axis=0,
                                                                                             split_every=8)
    # one graph, not optimised per collection type: the array optimisation would fuse the tile tasks into the
    # partials' chain under new keys, and every tile would run twice (once for the partials, once for its strips)
    kept = dask.persist(total, *[r[1] for r in res.values()], optimize_graph=False)
    edges = dict(zip(res, kept[1:], strict=True))
    pu, pw, s11p = lay1.unpack(np.asarray(kept[0].compute()))
    loops = closure.finalize_partials(pu) if pu is not None else None
    loops_w = closure.finalize_partials(pw)
    log.info("qc pass 1 over %d tiles (%d px blocks): %.1fs", len(tiles), b, time.perf_counter() - t0)

    # ---- the group: coordinates, per-loop and per-pair variables now; per-pixel chunks by the pass-2 tasks
    n_land = None
    if src.has_landmask:
        n_land = int(da.sum(~(ds["landmask"].data == 0)).compute())
        log.info("landmask: %d of %d pixels are land; water is no data for qc", n_land, ny * nx)
    layout = Layout(n_pairs, trip.n_triplets, has_unw and trip.n_triplets > 0)
    z3 = da.zeros((n_pairs, ny, nx), chunks=(n_pairs, b, b), dtype=np.float32)
    z2 = da.zeros((ny, nx), chunks=(b, b), dtype=np.int16)
    u8 = z3.astype(np.uint8)
    px = PixelPieces(z3, z3, u8, u8, z3 if "pair_closure_wrapped" in layout.rows else None,
                     z3 if "pair_closure" in layout.rows else None, z2, z2, z2)
    lp = LoopPieces(loops, loops_w, stats.finalize_step11(s11p, p.cov_thre, p.coh_thre))
    q = assemble(ds, p, pairs, trip, px, lp, block=b, has_landmask=src.has_landmask, n_land=n_land,
                 counts=(np.zeros(n_pairs, np.int64),) * 3)
    q.attrs["qc_update"] = json.dumps({"mode": "full", "reason": why})
    q.attrs["source_url"] = url
    q, enc = storable(q)
    q = q.assign_coords({k: v.compute() for k, v in q.coords.items() if v.chunks is not None})
    io.create_stage_template(q, url, group, stage=STAGE, params=marker, storage_options=storage_options,
                             encoding=enc)
    g = open_zarr_group(url, group, storage_options)
    out_vars = []
    for name, row in PIXEL_ROWS.items():
        if name not in q.data_vars:
            continue
        if not _raw_writable(g[name], q[name]):
            raise RuntimeError(f"qc group variable {name!r} needs CF encoding: the tile path writes raw values")
        out_vars.append(OutputVar(name, row, q[name].ndim == 3, str(q[name].dtype), str(g[name].dtype)))
    spec = OutputSpec(url, group, storage_options, tuple(out_vars))

    # ---- pass 2: every tile's products written by its task; its label counts summed as a tree
    th = p.rules.thresholds()
    offset_k = None if loops is None else loops.offset_k
    counts = []
    for (i, j), (ys, xs) in tiles.items():
        nb = {name: edges[(i + dy, j + dx)] for name, (dy, dx) in NEIGHBOURS.items() if (i + dy, j + dx) in edges}
        c = dask.delayed(tile_pass2, pure=True)(src, ys, xs, nb, frame=(ny, nx), n_pairs=n_pairs, b=b,
                                                window=p.window, trip=trip, offset_k=offset_k, thresholds=th,
                                                layout=layout, out=spec)
        counts.append(da.from_delayed(c, (3, n_pairs), np.int64))
    cnt = compute(da.stack(counts).sum(axis=0, split_every=8),
                  f"qc {url.rstrip('/').rsplit('/', 1)[-1].removesuffix('.zarr')} {group}")
    s12 = closure.ifg_loop_verdicts(loops.rms if loops is not None else loops_w.rms, trip, p.loop_thre)
    ifg = ifg_variables(tuple(da.from_array(c) for c in np.asarray(cnt)), lp.s11, s12, th, has_unw=has_unw,
                        unwrapped=loops is not None)
    part = xr.Dataset({k: (v[0], v[1]) for k, v in ifg.items() if k in IFG_VARIABLES}).compute()
    io.write_stage_region(part, url, group, {"pair": slice(None)}, storage_options)
    io.mark_stage_complete(url, group, storage_options, stage=STAGE, params=marker)
    log.info("qc by stored tile: %d tiles of %s px, %d px blocks: %.1fs", len(tiles),
             "x".join(str(int(np.diff(e).max())) for e in (plan.y_edges, plan.x_edges)), b,
             time.perf_counter() - t0)
    return True


__all__ = ["PIXEL_ROWS", "run_tiled", "tile_source"]
