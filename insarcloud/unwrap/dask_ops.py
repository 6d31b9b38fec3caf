"""Thin Dask layer: unwrap every pair of a frame cube and write the ``unw_<method>`` group.

Two ways to cut the work, both one Dask graph the workers run and write themselves:

* whole image (default when a pair fits ``max_whole_pixels``): one task per pair on the full (y, x)
  plane, the exact kernel result;
* tiled (``tile=N``): per pair, ``map_overlap`` unwraps overlapping tiles independently, the driver
  reads back only one small offset per neighbouring tile pair, solves the tile graph
  (:mod:`insarcloud.unwrap.tiling`), and a ``map_blocks`` trims halos and adds the offsets.

Everything numerical is in the kernels; this module only maps them.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, NamedTuple

import dask
import dask.array as da
import numpy as np
import xarray as xr

from insarcloud import io
from insarcloud.errors import ConfigError, CubeError
from insarcloud.unwrap._common import METHODS
from insarcloud.unwrap.api import unwrap
from insarcloud.unwrap.tiling import (
    Tile,
    _local,
    neighbour_pairs,
    pair_offset,
    plan_tiles,
    regular_chunks,
    solve_tile_offsets,
    unwrap_tile,
)

__all__ = ["UnwrapCubeResult", "unwrap_cube", "unwrap_pairs", "unwrap_tiled_dask"]

log = logging.getLogger(__name__)

STAGE = "unwrap"
# Methods that take the cube's coherence as weights by default (wls is LS with weights; snaphu's
# statistical cost is built on coherence).
_COH_BY_DEFAULT = ("wls", "snaphu", "multiscale")


class UnwrapCubeResult(NamedTuple):
    """What :func:`unwrap_cube` did.

    Attributes
    ----------
    group : str
        The group holding the result (``unw_<method>``, or ``unw_<method>_<hash8>`` when a complete
        group with other parameters was already there).
    skipped : bool
        True when that group was already complete with the same parameters (nothing was computed).
    params : dict
        The parameters recorded in the group's marker.
    """

    group: str
    skipped: bool
    params: dict[str, Any]


def _kernel(method: str, params: dict[str, Any]) -> Any:
    return partial(_call, method=method, params=params)


def _call(wrapped: np.ndarray, weights: np.ndarray | None, *, method: str, params: dict[str, Any]
          ) -> np.ndarray:
    return unwrap(wrapped, method, weights, **params)  # type: ignore[arg-type]


def _unwrap_plane(phase: np.ndarray, coh: np.ndarray | None = None, *, method: str,
                  params: dict[str, Any]) -> np.ndarray:
    """One Dask block (1, y, x) -> (1, y, x) float32; a pair with no valid pixel stays NaN."""
    out = np.full(phase.shape, np.nan, dtype=np.float32)
    for i in range(phase.shape[0]):
        p = phase[i]
        if np.isfinite(p).sum() < 4:
            log.warning("pair block %d has no data to unwrap; left NaN", i)
            continue
        w = None if coh is None else coh[i]
        out[i] = unwrap(p, method, w, **params).astype(np.float32)  # type: ignore[arg-type]
    return out


def _trim_shift(u: np.ndarray, tiles: dict[tuple[int, int], Tile], offsets: dict[tuple[int, int], float],
                block_info: dict | None = None) -> np.ndarray:
    loc = tuple(block_info[None]["chunk-location"])  # type: ignore[index]
    t = tiles[loc]  # type: ignore[index]
    return (u[_local(t.core, t.outer)] + offsets[loc]).astype(np.float32)  # type: ignore[index]


def unwrap_tiled_dask(phase: da.Array, method: str, params: dict[str, Any], *, overlap: int,
                      weights: da.Array | None = None) -> da.Array:
    """Tiled unwrapping of one (y, x) Dask array; its chunks are the tile cores.

    Runs the per-tile unwraps and the small offset statistics now (they are needed to solve the tile
    graph), keeps the unwrapped tiles on the workers (``persist``), and returns the lazy trimmed,
    shifted result with ``phase``'s chunks.

    Parameters
    ----------
    phase : dask array (y, x) float, rad; NaN = no data
    method, params : kernel name and parameters (``params["congruent"]`` decides whole-cycle offsets)
    overlap : int
        Halo depth in pixels (must not exceed the smallest chunk).
    weights : dask array (y, x), optional, same chunks

    Returns
    -------
    dask array (y, x) float32, rad
    """
    if overlap < 1:
        raise ConfigError(f"overlap must be >= 1 pixel, got {overlap}")
    if overlap > min(min(phase.chunks[0]), min(phase.chunks[1])):
        raise ConfigError(f"overlap {overlap} is larger than the smallest tile {phase.chunks}")
    congruent = bool(params.get("congruent", False))
    fn = _kernel(method, params)
    tiles = plan_tiles(phase.chunks[0], phase.chunks[1], overlap)
    by_loc = {t.index: t for t in tiles}
    # overlap() (what map_overlap does inside) with boundary="none": blocks are the tiles' outer windows,
    # and, unlike map_overlap(trim=False), the chunk metadata says so.
    ext_in = da.overlap.overlap(phase, depth=overlap, boundary="none")
    if weights is None:
        ext = ext_in.map_blocks(unwrap_tile, None, fn, dtype=np.float64)
    else:
        ext_w = da.overlap.overlap(weights.rechunk(phase.chunks), depth=overlap, boundary="none")
        ext = da.map_blocks(unwrap_tile, ext_in, ext_w, fn, dtype=np.float64)
    ext = ext.persist()
    blocks = ext.to_delayed()
    links_d = [dask.delayed(pair_offset)(blocks[tiles[a].index], blocks[tiles[b].index], tiles[a], tiles[b],
                                         a, b, congruent=congruent)
               for a, b in neighbour_pairs(tiles)]
    counts_d = [dask.delayed(lambda u: int(np.isfinite(u).sum()))(blocks[t.index]) for t in tiles]
    links, counts = dask.compute(links_d, counts_d)
    offsets = solve_tile_offsets(len(tiles), list(links), np.asarray(counts))
    off_by_loc = {t.index: float(o) for t, o in zip(tiles, offsets, strict=True)}
    return da.map_blocks(_trim_shift, ext, tiles=by_loc, offsets=off_by_loc, chunks=phase.chunks,
                         dtype=np.float32)


def unwrap_pairs(phase: xr.DataArray, method: str, params: dict[str, Any], *,
                 coh: xr.DataArray | None = None, tile: int | None = None, overlap: int = 64) -> xr.DataArray:
    """Lazy unwrapping of a (pair, y, x) DataArray, whole-image per pair or tiled.

    Returns
    -------
    DataArray (pair, y, x) float32, rad, Dask-backed, chunks (1, 512, 512)
    """
    ny, nx = phase.sizes["y"], phase.sizes["x"]
    if tile is None:
        src = phase.data.rechunk((1, ny, nx))
        args = [src] if coh is None else [src, coh.data.rechunk((1, ny, nx))]
        data = da.map_blocks(_unwrap_plane, *args, method=method, params=params, dtype=np.float32)
    else:
        chunks = (regular_chunks(ny, tile, overlap), regular_chunks(nx, tile, overlap))
        planes = []
        for i in range(phase.sizes["pair"]):
            p = phase.data[i].rechunk(chunks)
            w = None if coh is None else coh.data[i].rechunk(chunks)
            log.info("tiled unwrap of pair %s (%d tiles)", str(phase["pair"].values[i]),
                     len(chunks[0]) * len(chunks[1]))
            planes.append(unwrap_tiled_dask(p, method, params, overlap=overlap, weights=w))
        data = da.stack(planes, axis=0)
    data = data.rechunk((1, min(io.CHUNK, ny), min(io.CHUNK, nx)))
    return xr.DataArray(data, dims=("pair", "y", "x"), coords={k: v for k, v in phase.coords.items()
                                                               if set(v.dims) <= {"pair", "y", "x"}})


def unwrap_cube(url: str, method: str = "multiscale", *, source: str = "phase", weights: str | None = None,
                params: dict[str, Any] | None = None, tile: int | None = None, overlap: int = 64,
                max_whole_pixels: int = 16_000_000, storage_options: dict[str, Any] | None = None
                ) -> UnwrapCubeResult:
    """Unwrap every ingested pair of a cube's ``source`` variable into group ``unw_<method>``.

    Parameters
    ----------
    url : str
        Frame cube URL.
    method : one of ``METHODS``
    source : str
        Variable (pair, y, x) of wrapped phase in rad; default ``phase``.
    weights : {"coh", "none"}, optional
        LS/snaphu weights; default ``coh`` for ``wls`` and ``snaphu``, ``none`` otherwise.
    params : dict, optional
        Kernel parameters. ``congruent`` defaults to True here: cube outputs keep the input's phase
        (``wrap(unw) == phase``) and take only the integer cycles from the method.
    tile : int, optional
        Tile core in pixels; default: whole image when ``y * x <= max_whole_pixels``, else 1024.
    overlap : int
        Tile halo in pixels.
    storage_options : dict, optional

    With a ``landmask`` (y, x) variable (LiCSAR: 1 land, 0 water), water pixels are no data for every
    method (excluded from the solve, NaN in the output).

    Returns
    -------
    UnwrapCubeResult
    """
    if method not in METHODS:
        raise ConfigError(f"unknown unwrapping method {method!r}; choose one of {', '.join(METHODS)}")
    ds = io.open_cube(url, storage_options)
    if source not in ds:
        raise CubeError(f"cube {url} has no variable {source!r} (has: {', '.join(map(str, ds.data_vars))})")
    if ds[source].dims != ("pair", "y", "x"):
        raise CubeError(f"{url}:{source} has dims {ds[source].dims}, expected ('pair', 'y', 'x')")
    wmode = weights or ("coh" if method in _COH_BY_DEFAULT else "none")
    if wmode not in ("coh", "none"):
        raise ConfigError(f"weights must be 'coh' or 'none', got {wmode!r}")
    if wmode == "coh" and "coh" not in ds:
        raise CubeError(f"cube {url} has no 'coh' variable for weights='coh'")
    kparams = {"congruent": True, **(params or {})}
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    if tile is None and ny * nx > max_whole_pixels:
        tile = 1024
    pairs = [str(p) for p in ds["pair"].values]
    from insarcloud.io import stages

    params_ = {
        "method": method, "source": source, "weights": wmode, "tile": tile,
        "overlap": overlap if tile else None, "kernel_params": kparams,
        **({"landmask": "water (0) is no data"} if "landmask" in ds.data_vars else {}),
    }
    group = f"unw_{method}"
    # new pairs appended by a later ingest are part of the input identity: not taken as done (docs/STAGES.md)
    plan = stages.plan_stage(url, STAGE, group, params_, pairs=pairs, storage_options=storage_options)
    record = plan.identity
    if plan.done:
        stages.finish_stage(url, plan, storage_options, base=group)
        return UnwrapCubeResult(plan.group, True, record)
    if not pairs:
        raise CubeError(f"cube {url} has no ingested pairs to unwrap")
    coh = ds["coh"] if wmode == "coh" else None
    src = ds[source]
    if "landmask" in ds.data_vars:
        # LiCSAR landmask (1 land, 0 water): water is no data (zero weight in every kernel, NaN out), so sea
        # noise neither pulls the LS solution nor bridges islands; NaN (unknown) is kept
        land = ds["landmask"] != 0
        src = src.where(land)
        coh = None if coh is None else coh.where(land)
    unw = unwrap_pairs(src, method, kparams, coh=coh, tile=tile, overlap=overlap)
    name = f"unw_{method}"
    unw.attrs = {
        "units": "rad",
        "long_name": f"unwrapped interferometric phase ({method})",
        "method": method,
        "source": source,
        "weights": wmode,
        "congruent": str(bool(kparams.get("congruent"))),
        "sign_convention": "as the wrapped input: positive for range increase (LiCSAR); "
                           "d_mm = -unw * wavelength / (4 pi) * 1000, + toward the satellite",
        "no_data": "NaN",
        "water_masked": str("landmask" in ds.data_vars),
    }
    out = unw.to_dataset(name=name)
    out.attrs = {"frame": ds.attrs.get("frame", ""), "stage": STAGE, "method": method}
    enc = {name: {"chunks": (1, min(io.CHUNK, ny), min(io.CHUNK, nx))}}
    log.info("unwrapping %d pairs of %s with %s into %s", len(pairs), url, method, plan.group)
    io.write_stage_output(out, url, plan.group, stage=STAGE, params=record, storage_options=storage_options,
                          encoding=enc)
    stages.finish_stage(url, plan, storage_options, base=group)
    return UnwrapCubeResult(plan.group, False, record)
