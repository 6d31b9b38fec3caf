"""The frame cube: schema, opening, and atomic stage outputs (see notes/CONTRACT.md and DESIGN.md §2).

A frame cube is a Zarr v3 store ``.../cubes/{frame}.zarr``. Its root group holds what ingest wrote
(``phase``, ``unw``, ``coh`` on (pair, y, x); statics on (y, x)); every derived product lives in a group
of its own (``quality``, ``unw_<method>``, ``qc``, ``ts_<weights>``, ``noise``, ``forecast``) with its own
copies of the coordinates it uses, so a later ingest that appends pairs never breaks what a stage wrote.

A stage output becomes visible all at once: the group is written with a marker
``attrs["insarcloud"]["complete"] = False``, then the marker is flipped with the parameters and their
hash. "Done" is read from the marker, never guessed from keys or sizes.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import hashlib
import json
import logging
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import xarray as xr
import zarr
from affine import Affine

from insarcloud.core.pairs import pair_name as pair_name  # re-exported by insarcloud.io
from insarcloud.core.pairs import pair_timestamps as parse_pair  # re-exported by insarcloud.io
from insarcloud.errors import CubeError, StageOutputError, StorageUnavailableError
from insarcloud.io.storage import endpoint_for, is_transient, storage_options_for

log = logging.getLogger(__name__)

WAVELENGTH_M = 0.05546576  # Sentinel-1 C-band (LiCSAR, LiCSBAS, MintPy all use this value)
CHUNK = 512
PIXEL_DEG = 0.001
LOS_SIGN_CONVENTION = (
    "LOS displacement is positive toward the satellite (uplift); "
    "d_mm = -unw_rad * wavelength_m / (4 pi) * 1000 (LiCSAR unw is positive for range increase)"
)
MARKER = "insarcloud"
#: The group holding each stage's current-output pointer (insarcloud.io.stages, docs/STAGES.md).
POINTER_GROUP = "stages"
CUBE_FORMAT_VERSION = 1
#: Sub-group of a stage group holding its quicklook PNGs (insarcloud.plot writes it). The PNG objects are not
#: Zarr nodes, so zarr warns when a deep listing (consolidation) meets them; that warning is expected here.
QUICKLOOK_DIR = "quicklooks"
_QUICKLOOK_WARNING = r"Object at [^ ]+\.png is not recognized as a component of a Zarr hierarchy"


def phase_to_mm(phase_rad: Any, wavelength_m: float = WAVELENGTH_M) -> Any:
    """Unwrapped phase (rad, LiCSAR sign) -> LOS displacement (mm, positive toward the satellite)."""
    return -phase_rad * (wavelength_m / (4 * math.pi) * 1000.0)


def mm_to_phase(d_mm: Any, wavelength_m: float = WAVELENGTH_M) -> Any:
    """LOS displacement (mm, positive toward the satellite) -> unwrapped phase (rad, LiCSAR sign)."""
    return -d_mm / (wavelength_m / (4 * math.pi) * 1000.0)


def grid_coords(transform: Affine, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre latitudes (descending) and longitudes of a north-up EPSG:4326 grid."""
    ny, nx = shape
    lon = transform.c + transform.a * (np.arange(nx) + 0.5)
    lat = transform.f + transform.e * (np.arange(ny) + 0.5)
    return lat, lon


def transform_from_coords(lat: np.ndarray, lon: np.ndarray) -> Affine:
    dx = float(lon[1] - lon[0]) if lon.size > 1 else PIXEL_DEG
    dy = float(lat[1] - lat[0]) if lat.size > 1 else -PIXEL_DEG
    return Affine(dx, 0.0, float(lon[0]) - dx / 2, 0.0, dy, float(lat[0]) - dy / 2)


def add_spatial_ref(ds: xr.Dataset) -> xr.Dataset:
    """Attach a CF ``spatial_ref`` (EPSG:4326) and CF attributes to the y/x coordinates."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    transform = transform_from_coords(ds["y"].values, ds["x"].values)
    ds = ds.rio.write_crs("EPSG:4326").rio.write_transform(transform)
    ds["y"].attrs.update(standard_name="latitude", long_name="latitude of pixel centre", units="degrees_north")
    ds["x"].attrs.update(standard_name="longitude", long_name="longitude of pixel centre", units="degrees_east")
    for name, var in ds.data_vars.items():
        if "y" in var.dims and "x" in var.dims:
            ds[name].attrs.pop("grid_mapping", None)
            ds[name].encoding["grid_mapping"] = "spatial_ref"
            # Listing spatial_ref here makes a plain xr.open_zarr() see it as a coordinate, so
            # rioxarray finds the CRS without decode_coords="all".
            ds[name].encoding["coordinates"] = "spatial_ref"
    return ds


def make_frame_dataset(
    *,
    frame: str,
    pairs: Sequence[str],
    lat: np.ndarray,
    lon: np.ndarray,
    phase: np.ndarray,
    coh: np.ndarray,
    unw: np.ndarray | None = None,
    statics: Mapping[str, np.ndarray] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Build a root frame-cube dataset that follows the contract, from numpy arrays.

    Parameters
    ----------
    pairs : names ``YYYYMMDD_YYYYMMDD`` (primary earlier).
    lat, lon : (y,), (x,) pixel-centre degrees; lat descending.
    phase, coh, unw : (pair, y, x) float32; rad, 0..1, rad; NaN = no data.
    statics : optional (y, x) arrays among ``hgt``, ``los_e``, ``los_n``, ``los_u``, ``landmask``.
    """
    pairs = [str(p) for p in pairs]
    prim, sec = zip(*(parse_pair(p) for p in pairs), strict=True) if pairs else ((), ())
    dates = sorted(set(prim) | set(sec))
    data_vars: dict[str, Any] = {
        "phase": (("pair", "y", "x"), np.asarray(phase, dtype="float32")),
        "coh": (("pair", "y", "x"), np.asarray(coh, dtype="float32")),
        "ingested": (("pair",), np.ones(len(pairs), dtype=bool)),
    }
    if unw is not None:
        data_vars["unw"] = (("pair", "y", "x"), np.asarray(unw, dtype="float32"))
    for name, arr in (statics or {}).items():
        data_vars[name] = (("y", "x"), np.asarray(arr, dtype="float32"))
    ds = xr.Dataset(
        data_vars,
        coords={
            "pair": np.array(pairs, dtype=object),
            "primary": ("pair", pd.DatetimeIndex(prim).values.astype("datetime64[ns]")),
            "secondary": ("pair", pd.DatetimeIndex(sec).values.astype("datetime64[ns]")),
            "date": pd.DatetimeIndex(dates).values.astype("datetime64[ns]"),
            "y": np.asarray(lat, dtype="float64"),
            "x": np.asarray(lon, dtype="float64"),
        },
    )
    ds = ds.assign_coords(lat=("y", ds["y"].values), lon=("x", ds["x"].values))
    ds.attrs.update(
        {
            "frame": frame,
            "track": int(frame[:3]) if frame[:3].isdigit() else -1,
            "pass_direction": frame[3:4],
            "wavelength_m": WAVELENGTH_M,
            "los_sign_convention": LOS_SIGN_CONVENTION,
            "cube_format_version": CUBE_FORMAT_VERSION,
            "Conventions": "CF-1.10",
        }
    )
    ds.attrs.update(dict(attrs or {}))
    return annotate(ds)


_VAR_ATTRS: dict[str, dict[str, str]] = {
    "phase": {"long_name": "wrapped interferometric phase (LiCSAR diff_pha)", "units": "rad"},
    "unw": {"long_name": "unwrapped interferometric phase (LiCSAR unw)", "units": "rad"},
    "coh": {"long_name": "interferometric coherence", "units": "1"},
    "hgt": {"long_name": "DEM height", "units": "m", "standard_name": "height_above_reference_ellipsoid"},
    "los_e": {"long_name": "east component of the unit vector ground to satellite", "units": "1"},
    "los_n": {"long_name": "north component of the unit vector ground to satellite", "units": "1"},
    "los_u": {"long_name": "up component of the unit vector ground to satellite", "units": "1"},
    "landmask": {"long_name": "land mask (1 land, 0 water)", "units": "1"},
    "ingested": {"long_name": "pair fully written by ingest"},
    "bperp": {"long_name": "perpendicular baseline to the frame's reference epoch", "units": "m"},
}


def annotate(ds: xr.Dataset) -> xr.Dataset:
    """CF attributes for known variables, and the spatial reference."""
    for name, attrs in _VAR_ATTRS.items():
        if name in ds:
            ds[name].attrs.update(attrs)
    for name in ("primary", "secondary", "date"):
        if name in ds.coords:
            ds[name].attrs.setdefault("long_name", f"{name} acquisition date")
    return add_spatial_ref(ds)


SHARD_CHUNKS = 4  # chunks per shard side in ingested cubes: one object per 2048 x 2048 pixels of a pair
COH_SCALE = 1.0 / 255.0  # LiCSAR cc.tif steps; the cube keeps them (uint8, 0 = no data)


def blosc_lz4() -> Any:
    """The ingest codec: Blosc-LZ4 without shuffle.

    Measured on the real frame's 512 x 512 chunks (notes/ingest.md): it encodes wrapped phase at ~1.7 GB/s
    to 0.305 of float32 size vs 0.36 GB/s to 0.273 for Zarr's default Zstd; shuffle shrinks phase by 4% for
    a third of the speed. Valid phase is nearly incompressible, so every lossless codec writes about the
    GeoTIFF's size; the fastest leaves the CPU to GDAL's DEFLATE decoding, which bounds ingest here."""
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="lz4", clevel=5, shuffle="noshuffle")


def cube_encoding(ds: xr.Dataset, chunk: int = CHUNK, *, shard_chunks: int | None = None,
                  coh_uint8: bool = False, compressor: Any = None) -> dict[str, dict[str, Any]]:
    """Zarr encoding of a root frame cube.

    Chunks are one pair along ``pair`` (append-friendly) and ``chunk`` x ``chunk`` in space (what readers
    see: Dask chunks, partial reads). With ``shard_chunks`` the chunks of a pair are packed into Zarr v3
    shards of up to ``shard_chunks`` x ``shard_chunks`` chunks, i.e. one object per pair and 2048 x 2048
    pixels instead of 16, which is what makes ingest fast on object stores that charge per request.
    ``coh_uint8`` stores coherence as LiCSAR does (uint8 k, coherence = k/255, 0 = no data) with CF
    ``scale_factor``/``_FillValue`` so that xarray decodes it to 0..1 with NaN (``open_cube`` returns it
    as float32).
    """
    enc: dict[str, dict[str, Any]] = {}
    for name, var in ds.data_vars.items():
        chunks = []
        for dim, size in zip(var.dims, var.shape, strict=True):
            if dim in ("pair", "date") and var.ndim == 3:
                chunks.append(1)
            elif dim in ("y", "x"):
                chunks.append(max(1, min(chunk, size)))
            else:
                chunks.append(max(1, size))
        enc[name] = {"chunks": tuple(chunks)}
        spatial = var.ndim >= 2 and var.dims[-2:] == ("y", "x")
        if shard_chunks and spatial:
            shards = list(chunks)
            for axis in (-2, -1):
                n = math.ceil(var.shape[axis] / chunks[axis])
                shards[axis] = chunks[axis] * max(1, min(shard_chunks, n))
            enc[name]["shards"] = tuple(shards)
        if compressor is not None and spatial:
            enc[name]["compressors"] = (compressor,)
        if coh_uint8 and name == "coh":
            enc[name].update(dtype="uint8", scale_factor=COH_SCALE, _FillValue=0)
    return enc


def open_zarr_group(url: str, group: str | None = None, storage_options: dict[str, Any] | None = None,
                    mode: str = "r", *, chunk_io: bool = False) -> zarr.Group:
    """Open a Zarr group without consolidated metadata (always the current truth).

    ``chunk_io``: for a task that moves thousands of chunks, an S3 URL goes through obstore where its options
    translate (:mod:`insarcloud.io.chunk_store`), else through fsspec like every other open."""
    from insarcloud.io.chunk_store import chunk_store

    store = chunk_store(url, storage_options, read_only=mode == "r") if chunk_io else None
    try:
        if store is not None:
            return zarr.open_group(store, path=group or "", mode=mode, use_consolidated=False)
        return zarr.open_group(
            url,
            path=group or "",
            mode=mode,
            storage_options=storage_options_for(url, storage_options) if "://" in url else None,
            use_consolidated=False,
        )
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise CubeError(f"no Zarr group {group or '/'} at {url}") from exc


def consolidate(url: str, storage_options: dict[str, Any] | None = None, group: str | None = None) -> None:
    """Refresh consolidated metadata so a plain ``xr.open_zarr(url)`` opens fast and warning-free."""
    so = storage_options_for(url, storage_options) if "://" in url else None
    store = zarr.storage.FsspecStore.from_url(url, storage_options=so) if "://" in url else url
    with warnings.catch_warnings():
        # zarr warns that consolidated metadata is not (yet) in the v3 spec; xarray and zarr-python read
        # it, and without it every plain xr.open_zarr() warns instead.
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        warnings.filterwarnings("ignore", message=_QUICKLOOK_WARNING, category=UserWarning)
        if group:
            zarr.consolidate_metadata(store, path=group)
        zarr.consolidate_metadata(store)


def write_new_cube(ds: xr.Dataset, url: str, storage_options: dict[str, Any] | None = None,
                   chunk: int = CHUNK) -> None:
    """Write a whole root dataset (tests and small cubes; ingest appends through ``ingest``)."""
    ds.to_zarr(
        url, mode="w", zarr_format=3, consolidated=False, encoding=cube_encoding(ds, chunk),
        storage_options=storage_options_for(url, storage_options) if "://" in url else None,
    )
    consolidate(url, storage_options)


def open_cube(url: str, storage_options: dict[str, Any] | None = None, *, group: str | None = None,
              complete_only: bool = True, chunks: Any = None, dask: bool = True) -> xr.Dataset:
    """Open a frame cube (root) or one of its derived groups, lazily with Dask.

    The root is returned with only the pairs that ingest finished (``ingested == True``) unless
    ``complete_only`` is False. A derived group is returned only when its marker says complete.

    ``dask=False`` opens it lazily without Dask (xarray's indexing of the Zarr arrays): for a reader of small
    windows (a quality actor) that would otherwise build and keep a graph of every stored chunk of the frame
    (it grew with the frame: tests/pipelines/test_flat_memory.py). Coherence is then as stored after CF
    decoding (uint8-packed reads as float64): cast the blocks read, a whole-variable cast would load it.

    On S3 the chunks are read through obstore where the options translate (``io.chunk_store``: ~half the CPU
    per request of s3fs, docs/scale.md "Chunk requests through obstore"), retrying within the project's budget
    itself, since no ``io.with_retries`` wraps a read inside the Dask graph; else through fsspec.
    """
    from insarcloud.io.chunk_store import chunk_store

    store = chunk_store(url, storage_options, read_only=True, retry=True)
    try:
        ds = xr.open_zarr(
            url if store is None else store, group=group, consolidated=False, decode_coords="all",
            chunks=None if not dask else (chunks if chunks is not None else {}),
            storage_options=storage_options_for(url, storage_options) if "://" in url and store is None else None,
        )
    except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError) as exc:
        where = f"group {group!r} of " if group else ""
        raise CubeError(f"cannot open {where}cube {url}: {exc}") from exc
    except Exception as exc:
        if not is_transient(exc):
            raise
        # after the store's own retries (s3fs', or obstore's with the project's budget): the endpoint's fault
        text = str(exc)
        first = text.splitlines()[0][:300] if text else type(exc).__name__
        raise StorageUnavailableError(
            f"storage unreachable: {endpoint_for(url, storage_options)} while opening {url}: {first}") from exc
    if dask and group is None and "coh" in ds and ds["coh"].dtype != np.float32:
        # uint8-packed coherence (CF scale_factor 1/255) decodes to float64; the contract is float32.
        ds["coh"] = ds["coh"].astype(np.float32)
    if group is None and complete_only and "ingested" in ds:
        ingested = ds["ingested"].values.astype(bool)
        if not ingested.all():
            ds = ds.isel(pair=np.flatnonzero(ingested))
    if group is not None and complete_only:
        marker = ds.attrs.get(MARKER, {})
        if not marker.get("complete", False):
            raise CubeError(f"group {group!r} of {url} is incomplete (its stage did not finish)")
    return ds


def require_input(url: str, name: str, storage_options: dict[str, Any] | None = None, *, fix: str,
                  root_ok: bool = False) -> None:
    """Up-front check of a stage command's input: ``name`` is a complete group of the cube (or, with
    ``root_ok``, a variable of its root). Raises CubeError naming what the cube has and ``fix``."""
    if root_ok:
        root = open_zarr_group(url, None, storage_options)
        if name in root.array_keys():
            return
    marker = read_marker(url, name, storage_options)
    if marker is not None and marker.get("complete"):
        return
    groups = list_groups(url, storage_options)
    state = "is incomplete (its stage did not finish)" if marker is not None else "does not exist"
    raise CubeError(f"{name!r} {state} in {url} (groups: {', '.join(groups) or 'none'}): {fix}")


def list_groups(url: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """The cube's data groups (stage outputs, gacos, ...); not the stage pointers' group."""
    root = open_zarr_group(url, None, storage_options)
    return sorted(name for name, _ in root.groups() if name != POINTER_GROUP)


# ---------------------------------------------------------------------------------------------
# Stage outputs
# ---------------------------------------------------------------------------------------------


def params_hash(params: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


def read_marker(url: str, group: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The stage marker of ``group`` or None when the group does not exist."""
    try:
        g = open_zarr_group(url, group, storage_options)
    except CubeError:
        return None
    return dict(g.attrs.get(MARKER, {})) or None


class OutputPlan(NamedTuple):
    """Where a stage writes and whether it has nothing to do."""

    group: str
    done: bool


def resolve_output(url: str, group: str, params: Mapping[str, Any],
                   storage_options: dict[str, Any] | None = None) -> OutputPlan:
    """Decide where a stage with ``params`` writes: skip, (re)write, or a new name.

    Same parameters and complete -> ``done``; absent or incomplete -> the same name; complete with other
    parameters -> ``f"{group}_{hash[:8]}"`` (a re-run with new parameters never silently overwrites).
    """
    h = params_hash(params)
    marker = read_marker(url, group, storage_options)
    if marker is None or not marker.get("complete"):
        return OutputPlan(group, False)
    if marker.get("params_hash") == h:
        return OutputPlan(group, True)
    alt = f"{group}_{h[:8]}"
    alt_marker = read_marker(url, alt, storage_options)
    return OutputPlan(alt, bool(alt_marker and alt_marker.get("complete") and alt_marker.get("params_hash") == h))


#: Key and version marking a mapping as a stage identity (insarcloud.io.stages), not plain parameters.
IDENTITY_KEY, IDENTITY_VERSION = "stage_contract", 1

#: Environment variable naming the area-job run that is writing (set by insarcloud.pipelines.area_job); markers
#: record it so the report can name the run that made each output even after a resumed run skipped it all.
RUN_ID_ENV = "INSARCLOUD_RUN_ID"


def _marker(stage: str, params: Mapping[str, Any], complete: bool) -> dict[str, Any]:
    # A stage identity (insarcloud.io.stages.stage_identity: params + input identities) is recorded as its
    # params and its inputs; params_hash is then the input fingerprint (docs/STAGES.md).
    ident = params.get(IDENTITY_KEY) == IDENTITY_VERSION
    marker = {
        "stage": stage,
        "params": json.loads(json.dumps(dict(params["params"] if ident else params), default=str)),
        **({"inputs": json.loads(json.dumps(params["inputs"], default=str))} if ident else {}),
        "params_hash": params_hash(params),
        "complete": complete,
        "written_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if os.environ.get(RUN_ID_ENV):
        marker["run_id"] = os.environ[RUN_ID_ENV]
    return marker


def _prepare(ds: xr.Dataset) -> xr.Dataset:
    if "y" in ds.dims and "x" in ds.dims and "spatial_ref" not in ds.coords:
        ds = add_spatial_ref(ds)
    elif "y" in ds.dims and "x" in ds.dims:
        for name, var in ds.data_vars.items():
            if "y" in var.dims and "x" in var.dims:
                ds[name].attrs.pop("grid_mapping", None)
                ds[name].encoding["grid_mapping"] = "spatial_ref"
                ds[name].encoding["coordinates"] = "spatial_ref"
    for name in ds.variables:
        # Storage choices of the variable a stage read (chunks, shards, uint8 packing of coherence) are
        # the cube's, not the stage output's. (Time coordinates keep their units/dtype pair.)
        enc = ds[name].encoding
        for key in ("chunks", "preferred_chunks", "shards"):
            enc.pop(key, None)
        if "scale_factor" in enc or "add_offset" in enc:
            for key in ("dtype", "scale_factor", "add_offset", "_FillValue", "fill_value"):
                enc.pop(key, None)
    return ds


def write_stage_output(ds: xr.Dataset, url: str, group: str, *, stage: str, params: Mapping[str, Any],
                       storage_options: dict[str, Any] | None = None,
                       encoding: dict[str, dict[str, Any]] | None = None) -> None:
    """Write a derived group, then flip its completion marker.

    ``ds`` may be Dask-backed: under an active ``distributed.Client`` the workers compute the chunks and
    write them to the store themselves; nothing large passes through the caller.
    """
    from insarcloud.io.lease import hold
    from insarcloud.progress import compute

    so = storage_options_for(url, storage_options) if "://" in url else None
    with hold(url, _lease_scope(group), so, job=f"stage {stage}") as lease:
        if lease.waited_for is not None and _complete_with(url, group, params, storage_options):
            # Another writer of the same output finished while this one waited: nothing left to do.
            log.info("%s group %r was completed by %s with the same parameters; not rewritten", url, group,
                     lease.waited_for)
            return
        ds = _prepare(ds.copy())
        ds.attrs[MARKER] = _marker(stage, params, complete=False)
        writes = ds.to_zarr(url, group=group or None, mode="w", zarr_format=3, consolidated=False,
                            storage_options=so, encoding=encoding or {}, compute=False)
        # the one place most stages' Dask work runs: progress lines (stderr) or a bar (terminal) per stage output
        compute(writes, f"{stage} {url.rstrip('/').rsplit('/', 1)[-1].removesuffix('.zarr')} {group or '/'}")
        mark_stage_complete(url, group, storage_options, stage=stage, params=params)


def _lease_scope(group: str | None) -> str:
    """The lease scope of a stage group (one writer per group); the root of an area cube is ``root``."""
    return f"group-{group}" if group else "root"


def _complete_with(url: str, group: str, params: Mapping[str, Any], storage_options: dict[str, Any] | None) -> bool:
    marker = read_marker(url, group, storage_options) or {}
    return bool(marker.get("complete")) and marker.get("params_hash") == params_hash(params)


# Leases of groups whose template this process created (Ray path): held from create_stage_template until
# mark_stage_complete (or process exit, when the heartbeat stops and the lease expires or its owner is seen gone).
_TEMPLATE_LEASES: dict[tuple[str, str], Any] = {}


def hold_stage_lease(url: str, group: str, *, stage: str, storage_options: dict[str, Any] | None = None,
                     wait: float | None = None) -> None:
    """Take the lease of ``group`` for a driver whose workers write regions (Ray actors); released by
    :func:`mark_stage_complete` (or at process exit). :func:`create_stage_template` calls it; a driver that
    resumes an existing template without re-creating it calls it itself before its workers write."""
    from insarcloud.io.lease import Lease, adopt, held_here

    if (url, group) in _TEMPLATE_LEASES or held_here(url, _lease_scope(group)) is not None:
        return  # this process already holds it (a re-created template, or inside write_stage_output)
    so = storage_options_for(url, storage_options) if "://" in url else None
    lease = Lease(url, _lease_scope(group), so, job=f"stage {stage}").acquire(wait)
    _TEMPLATE_LEASES[(url, group)] = lease
    adopt(lease)


@atexit.register
def _release_template_leases() -> None:
    """A driver that exits without marking a group complete frees its lease at once (no TTL wait)."""
    from insarcloud.io.lease import disown

    while _TEMPLATE_LEASES:
        _, lease = _TEMPLATE_LEASES.popitem()
        with contextlib.suppress(Exception):  # exiting: the lease expires anyway
            disown(lease)
            lease.release()


def create_stage_template(template: xr.Dataset, url: str, group: str, *, stage: str,
                          params: Mapping[str, Any], storage_options: dict[str, Any] | None = None,
                          encoding: dict[str, dict[str, Any]] | None = None) -> None:
    """Create a derived group's arrays and coordinates (no data chunks) for region writers (Ray actors).

    ``template`` is usually Dask-backed; its chunks become the Zarr chunks.
    """
    so = storage_options_for(url, storage_options) if "://" in url else None
    hold_stage_lease(url, group, stage=stage, storage_options=storage_options)
    template = _prepare(template.copy())
    template.attrs[MARKER] = _marker(stage, params, complete=False)
    template.to_zarr(url, group=group, mode="w", zarr_format=3, consolidated=False, storage_options=so,
                     compute=False, encoding=encoding or {})


def write_stage_region(part: xr.Dataset, url: str, group: str, region: Mapping[str, slice],
                       storage_options: dict[str, Any] | None = None) -> None:
    """Write ``part`` into ``region`` of an existing group; the region must be chunk-aligned."""
    g = open_zarr_group(url, group, storage_options, mode="r+")
    for name, var in part.data_vars.items():
        if name not in g:
            raise StageOutputError(f"variable {name!r} is not in group {group!r} of {url}")
        arr = g[name]
        dims = var.dims
        for axis, dim in enumerate(dims):
            if dim not in region:
                continue
            sl = region[dim]
            csize, size = arr.chunks[axis], arr.shape[axis]
            start, stop = sl.start or 0, size if sl.stop is None else sl.stop
            if start % csize or (stop % csize and stop != size):
                raise StageOutputError(
                    f"region {dim}={start}:{stop} of {group}/{name} is not aligned to its chunks of {csize}"
                )
    if all(_raw_writable(g[name], var) for name, var in part.data_vars.items()):
        # Values that need no CF encoding go straight into the open arrays: one PUT per chunk. xarray's
        # region write re-opens the group and reads every array's and coordinate's metadata first (~20 requests
        # per call on an object store, which made a Ray actor's small region writes cost 10x its inference).
        for name, var in part.data_vars.items():
            idx = tuple(region.get(d, slice(None)) for d in var.dims)
            g[name][idx] = np.asarray(var.values, dtype=g[name].dtype)
        return
    part = part.drop_vars(list(part.coords))
    region = {**{d: slice(None) for d in part.dims}, **dict(region)}
    for name in part.variables:
        part[name].encoding = {}
        part[name].attrs = {}
    part.attrs = {}
    so = storage_options_for(url, storage_options) if "://" in url else None
    part.to_zarr(url, group=group, region=dict(region), mode="r+", storage_options=so, consolidated=False)


def _raw_writable(arr: Any, var: xr.DataArray) -> bool:
    """True when xarray's encoding of ``var`` into ``arr`` would be the identity (plain numbers, NaN fill)."""
    attrs = arr.attrs
    if any(k in attrs for k in ("scale_factor", "add_offset", "missing_value", "calendar", "dtype")):
        return False
    if " since " in str(attrs.get("units", "")) or var.dtype.kind not in "fiub" or arr.dtype.kind not in "fiub":
        return False
    if "_FillValue" in attrs:  # only a float array's NaN fill (NaN stays NaN) is the identity
        return arr.dtype.kind == "f" and var.dtype.kind == "f" and bool(np.isnan(arr.fill_value))
    return True


def mark_stage_complete(url: str, group: str, storage_options: dict[str, Any] | None = None, *,
                        stage: str | None = None, params: Mapping[str, Any] | None = None) -> None:
    """Flip the completion marker of ``group`` (last step of a stage) and refresh consolidated metadata."""
    g = open_zarr_group(url, group, storage_options, mode="r+")
    marker = dict(g.attrs.get(MARKER, {}))
    if stage is not None:
        marker.update(_marker(stage, params or {}, complete=True))
    marker["complete"] = True
    g.attrs[MARKER] = marker
    consolidate(url, storage_options, group)
    lease = _TEMPLATE_LEASES.pop((url, group), None)
    if lease is not None:
        from insarcloud.io.lease import disown

        disown(lease)
        lease.release()
