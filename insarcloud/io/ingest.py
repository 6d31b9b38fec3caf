"""Idempotent, crash-safe Dask ingest of a LiCSAR frame into its Zarr v3 frame cube.

Why rasterio reads in Dask tasks and not stackstac: stackstac builds a lazy stack from STAC items but
reprojects every asset onto one grid and fills unreadable assets silently; LiCSAR products must be on the
frame grid exactly, and a corrupt, truncated or mis-gridded product must become an error for that
product alone (recorded in the ingest log) while the others land. STAC items are still built and stored
(``stac/items.json``) and ``insarcloud.io.stac.stack`` reads them with stackstac for users who want it.

Where the time goes (measured, notes/ingest.md): on an object store every request costs, so one task
handles one pair: it opens each of the pair's GeoTIFFs once (the grid check uses that open), reads them
one shard-row block at a time (memory bounded by the shard shape, not by the frame stack), and each
block becomes one object per variable (Zarr v3 sharding: 512 x 512 chunks for readers, packed into 2048
x 2048 shards), PUT once and never read back first. Coherence stays uint8 as in LiCSAR's cc.tif. The
cube's metadata is built in memory and uploaded in one concurrent batch; the end of the run writes three
objects.

Crash safety: pairs are appended in three steps -- (1) arrays are created or resized and the new pairs'
coordinates written with ``ingested = False``, the root ``zarr.json`` (with consolidated metadata) or the
``pair`` index last; (2) tasks write data objects; (3) ``ingested`` flips to True for pairs whose every
product landed. A killed run leaves a cube that opens (``open_cube`` hides unfinished pairs, whose data
may be partly written); the next run re-writes exactly the unfinished pairs.
"""

from __future__ import annotations

import collections
import datetime as _dt
import functools
import json
import logging
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import dask
import numpy as np
import pandas as pd
import xarray as xr
import zarr
from xarray.coding.times import encode_cf_datetime

from insarcloud.errors import CubeError, ProductError
from insarcloud.io import cube as cubemod
from insarcloud.io.licsar import (
    PAIR_KINDS,
    STATIC_VAR,
    FrameProducts,
    Header,
    check_grid,
    discover_frame,
    header_of,
    open_product,
    read_header,
    read_window,
    to_cube_values,
)
from insarcloud.io.storage import get_fs, protocol_of, storage_options_for, with_retries

log = logging.getLogger(__name__)
PAIR_VARS = {"diff_pha": "phase", "cc": "coh", "unw": "unw"}


@dataclass
class IngestReport:
    """What one ingest run did (also appended to ``ingest_log.json`` in the cube)."""

    frame: str
    cube_url: str
    source_url: str
    added: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    source_changed: list[str] = field(default_factory=list)
    bytes_read: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    task_seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# ------------------------------------------------------------------------------------------------
# Tasks (run on Dask workers): pure functions of URLs, returning small records
# ------------------------------------------------------------------------------------------------

Grid = tuple[tuple[int, int], tuple[float, ...]]


class _WholeObjectWriter(zarr.storage.WrapperStore):
    """A write-only view of the cube's store for writes that cover whole shards (or whole chunks).

    zarr 3.1 re-encodes a shard by first reading the object it replaces, even when the write covers all
    of it: on S3 that is a GET (404 for a new cube, the whole shard on a re-run) plus s3fs' HEAD and LIST
    to tell a missing key from a directory, three requests for every object written. Every write through
    this view covers whole objects, so their old content is never needed: data keys read as absent.
    Metadata (``zarr.json``) reads pass through.
    """

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        if "/c/" in f"/{key}":
            return None
        return await self._store.get(key, prototype, byte_range)


@functools.lru_cache(maxsize=64)
def _cube_array(cube_url: str, so_json: str, path: str, run: str) -> zarr.Array:
    """A cube array opened once per worker process and run (``run`` keys the cache: shapes change between
    runs) through :class:`_WholeObjectWriter`. Opening costs one metadata request; a task per pair would
    otherwise pay it for every pair."""
    so = json.loads(so_json)
    if "://" not in cube_url or cube_url.startswith("file://"):
        store: Any = zarr.storage.LocalStore(cube_url.removeprefix("file://"))
    else:
        store = zarr.storage.FsspecStore.from_url(cube_url, storage_options=so)
    return zarr.open_array(store=_WholeObjectWriter(store), path=path, mode="r+", zarr_format=3)


def _copy_product(arr: zarr.Array, index: int | None, url: str, kind: str, src_so: dict[str, Any] | None,
                  grid: Grid, clock: collections.Counter) -> None:
    """Copy one product into ``arr`` (``arr[index]`` for pair variables), one shard-row block at a time.

    The product is opened once; its header is checked against the frame grid on that open. Each block is
    a whole number of shards (or chunks) across the full width, so every object is written whole, once.
    ``clock`` accumulates seconds spent reading (GDAL: fetch + decode) and writing (Zarr: encode + PUT).
    """
    rows = (arr.shards or arr.chunks)[-2]
    t = time.perf_counter()
    with open_product(url, src_so) as ds:
        check_grid(header_of(ds, url), *grid)
        nodata = ds.nodata
        for r0 in range(0, ds.height, rows):
            r1 = min(r0 + rows, ds.height)
            block = to_cube_values(read_window(ds, url, r0, r1), kind, nodata, arr.dtype)
            clock["read"] += time.perf_counter() - t
            t = time.perf_counter()
            if index is None:
                arr[r0:r1, :] = block
            else:
                arr[index, r0:r1, :] = block
            clock["write"] += time.perf_counter() - t
            t = time.perf_counter()


def _ingest_products(cube_url: str, so: dict[str, Any] | None, src_so: dict[str, Any] | None, run: str,
                     owner: str, index: int | None, items: list[tuple[str, str, str]], grid: Grid,
                     threads: int = 1) -> dict[str, Any]:
    """Write the products ``items`` = [(variable, url, kind)] of one pair (or one static layer).

    With ``threads`` > 1 the products go through one thread each, so that one's fetch overlaps another's
    decoding (GDAL releases the GIL); that pays where the store's latency bounds a task, not where the CPU
    does (measured on 2 cores with moto: 15% more CPU for no gain, hence the default 1). A bad product fails
    its owner (the pair stays ``ingested = False``, and the error names the file); whatever of the pair
    landed is rewritten by the next run. The record returned carries the seconds spent opening arrays,
    reading and writing (summed over threads).
    """
    t0 = time.perf_counter()
    so_json = json.dumps(so or {}, sort_keys=True, default=str)
    clock: collections.Counter = collections.Counter()

    def one(item: tuple[str, str, str]) -> None:
        var, url, kind = item
        t = time.perf_counter()
        arr = _cube_array(cube_url, so_json, var, run)
        clock["open_array"] += time.perf_counter() - t
        _copy_product(arr, index, url, kind, src_so, grid, clock)

    out: dict[str, Any] = {"owner": owner, "ok": True}
    try:
        if threads <= 1 or len(items) == 1:
            for it in items:
                one(it)
        else:
            with ThreadPoolExecutor(min(threads, len(items))) as pool:
                for fut in [pool.submit(one, it) for it in items]:
                    fut.result()
    except (ProductError, OSError, ValueError) as exc:
        out = {"owner": owner, "ok": False, "error": str(exc)}
    out["seconds"] = {k: round(v, 4) for k, v in clock.items()} | {"task": round(time.perf_counter() - t0, 4)}
    return out


# ------------------------------------------------------------------------------------------------
# Planning (plain functions that return what to do)
# ------------------------------------------------------------------------------------------------


def _frame_grid(headers: dict[str, Header]) -> tuple[tuple[int, int], tuple[float, ...]]:
    """The grid most products agree on (a lone mis-gridded product cannot redefine the frame)."""
    def key(h: Header) -> tuple:
        return h.shape, tuple(round(v, 9) for v in h.transform)

    counts = collections.Counter(key(h) for h in headers.values())
    best, _ = counts.most_common(1)[0]
    for h in headers.values():
        if key(h) == best:
            return h.shape, h.transform
    raise AssertionError("unreachable")


def _root_exists(cube_url: str, so: dict[str, Any] | None) -> bool:
    """Whether the cube's root ``zarr.json`` exists (one request; a new cube is the common first case)."""
    fs, path = get_fs(cube_url, so)
    return bool(with_retries(fs.exists, f"{path.rstrip('/')}/zarr.json"))


def _existing_state(cube_url: str, so: dict[str, Any] | None) -> tuple[list[str], np.ndarray, dict] | None:
    if not _root_exists(cube_url, so):
        return None
    try:
        root = cubemod.open_zarr_group(cube_url, None, so)
    except CubeError:
        return None
    if "pair" not in root:
        return None
    n = root["pair"].shape[0]
    pairs = [str(p) for p in root["pair"][:]]
    ingested = np.asarray(root["ingested"][:n]).astype(bool) if "ingested" in root else np.ones(n, bool)
    prov = dict(root["ingest"].attrs.get("provenance", {})) if "ingest" in root else {}
    return pairs, ingested, prov


def _repair(cube_url: str, so: dict[str, Any] | None) -> None:
    """Make every pair-dimension array as long as the ``pair`` index (a crash can stop a resize midway)."""
    root = cubemod.open_zarr_group(cube_url, None, so, mode="r+")
    n = root["pair"].shape[0]
    for name, arr in root.arrays():
        dims = arr.metadata.dimension_names or ()
        if dims and dims[0] == "pair" and arr.shape[0] != n:
            log.warning("repairing %s: %s had %d pairs, index has %d", cube_url, name, arr.shape[0], n)
            arr.resize((n, *arr.shape[1:]))


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------


def _template(products: FrameProducts, pairs: list[str], shape: tuple[int, int], transform: tuple[float, ...],
              has_unw: bool, chunk: int) -> xr.Dataset:
    import dask.array as da
    from affine import Affine

    lat, lon = cubemod.grid_coords(Affine(*transform[:6]), shape)
    n = len(pairs)
    # Never computed (the template is written with compute=False); one Dask chunk per array so that any
    # Zarr chunk/shard layout passes xarray's alignment check.
    empty = da.full((n, *shape), np.nan, dtype="float32", chunks=-1)
    meta = products.metadata
    statics = {STATIC_VAR[k]: da.full(shape, np.nan, dtype="float32", chunks=-1) for k in products.statics}
    prim = pd.to_datetime([p[:8] for p in pairs], format="%Y%m%d")
    sec = pd.to_datetime([p[9:] for p in pairs], format="%Y%m%d")
    dates = sorted(set(prim) | set(sec))
    data_vars: dict[str, Any] = {
        "phase": (("pair", "y", "x"), empty),
        "coh": (("pair", "y", "x"), empty),
        "ingested": (("pair",), np.zeros(n, dtype=bool)),
    }
    if has_unw:
        data_vars["unw"] = (("pair", "y", "x"), empty)
    for name, arr in statics.items():
        data_vars[name] = (("y", "x"), arr)
    if products.baselines:
        data_vars["bperp"] = (("date",), np.array(
            [products.baselines.get(f"{d:%Y%m%d}", np.nan) for d in dates], dtype="float32"))
    ds = xr.Dataset(
        data_vars,
        coords={
            "pair": np.array(pairs, dtype=object),
            "primary": ("pair", prim.values.astype("datetime64[ns]")),
            "secondary": ("pair", sec.values.astype("datetime64[ns]")),
            "date": pd.DatetimeIndex(dates).values.astype("datetime64[ns]"),
            "y": lat, "x": lon, "lat": ("y", lat), "lon": ("x", lon),
        },
    )
    ds.attrs.update({
        "frame": products.frame,
        "track": int(products.frame[:3]),
        "pass_direction": products.frame[3],
        "wavelength_m": cubemod.WAVELENGTH_M,
        "heading_deg": float(meta.get("heading", "nan")),
        "incidence_deg": float(meta.get("avg_incidence_angle", "nan")),
        "reference_epoch": meta.get("master", ""),
        "source_url": products.url,
        "licsar_metadata": json.dumps(meta),
        "polygon": json.dumps(products.polygon),
        "los_sign_convention": cubemod.LOS_SIGN_CONVENTION,
        "cube_format_version": cubemod.CUBE_FORMAT_VERSION,
        "Conventions": "CF-1.10",
        "history": "created by insarcloud ingest",
    })
    return cubemod.annotate(ds)


def _time_values(arr: zarr.Array, values: pd.DatetimeIndex) -> np.ndarray:
    units, calendar = arr.attrs.get("units"), arr.attrs.get("calendar", "proleptic_gregorian")
    encoded, _, _ = encode_cf_datetime(values.values.astype("datetime64[ns]"), units, calendar,
                                       dtype=arr.dtype)
    return np.asarray(encoded).astype(arr.dtype)


def _append_pairs(cube_url: str, so: dict[str, Any] | None, new_pairs: list[str], has_unw: bool,
                  baselines: dict[str, float]) -> None:
    """Grow the pair (and date) dimensions of an existing cube; the ``pair`` index is written last."""
    old_dates = pd.to_datetime(xr.open_zarr(cube_url, consolidated=False, storage_options=so)["date"].values)
    root = cubemod.open_zarr_group(cube_url, None, so, mode="r+")
    n0 = root["pair"].shape[0]
    n1 = n0 + len(new_pairs)
    prim = pd.to_datetime([p[:8] for p in new_pairs], format="%Y%m%d")
    sec = pd.to_datetime([p[9:] for p in new_pairs], format="%Y%m%d")
    for name, arr in root.arrays():
        dims = arr.metadata.dimension_names or ()
        if name == "pair" or not dims or dims[0] != "pair":
            continue
        arr.resize((n1, *arr.shape[1:]))
        if name == "primary":
            arr[n0:n1] = _time_values(arr, prim)
        elif name == "secondary":
            arr[n0:n1] = _time_values(arr, sec)
        elif name == "ingested":
            arr[n0:n1] = False
    if "unw" not in root and has_unw:
        log.warning("%s: new products carry unw.tif but the cube was created without `unw`; not ingested", cube_url)
    dates_arr = root["date"]
    all_dates = pd.DatetimeIndex(sorted(set(old_dates) | set(prim) | set(sec)))
    if len(all_dates) != len(old_dates):
        dates_arr.resize((len(all_dates),))
        dates_arr[:] = _time_values(dates_arr, all_dates)
        if "bperp" in root:
            root["bperp"].resize((len(all_dates),))
            root["bperp"][:] = np.array([baselines.get(f"{d:%Y%m%d}", np.nan) for d in all_dates], dtype="float32")
    pair_arr = root["pair"]
    pair_arr.resize((n1,))
    pair_arr[n0:n1] = np.array(new_pairs, dtype=object)


def _sample_headers(products: FrameProducts, todo: list[str], src_so: dict[str, Any] | None) -> dict[str, Header]:
    """Headers of a few products, read concurrently (GDAL releases the GIL): the phase (or unw) of each of
    the first three pairs -- a lone mis-gridded product cannot outvote two -- and the first pair's cc."""
    sample = [next(r for k, r in sorted(products.pairs[p].items()) if k != "cc").url for p in todo[:3]]
    if "cc" in products.pairs[todo[0]]:
        sample.append(products.pairs[todo[0]]["cc"].url)
    with ThreadPoolExecutor(len(sample)) as pool:
        found = list(pool.map(lambda u: _try_header(u, src_so), sample))
    headers = {h.url: h for h in found if h is not None}
    if not headers:
        raise ProductError(f"frame {products.frame}: no readable product among {sample}")
    return headers


def _try_header(url: str, src_so: dict[str, Any] | None) -> Header | None:
    try:
        return read_header(url, src_so)
    except ProductError as exc:
        log.warning("%s", exc)
        return None


class _MemoryCube:
    """A new cube's metadata and coordinates, built in memory and uploaded in one concurrent batch.

    xarray writes the template (CF encoding of every coordinate) into a Zarr ``MemoryStore``; the objects are
    then PUT concurrently, the root ``zarr.json`` (holding the consolidated metadata) last, so the cube
    exists only once everything it lists exists. The end of the run edits the same in-memory hierarchy
    and uploads only what changed (the ``ingested`` flags, the ingest log, the root ``zarr.json``).
    """

    def __init__(self, cube_url: str, so: dict[str, Any] | None) -> None:
        self.url, self.so = cube_url, so
        self.objects: dict[str, Any] = {}
        self.store = zarr.storage.MemoryStore(self.objects)
        self.sent: dict[str, bytes] = {}

    def group(self) -> zarr.Group:
        return zarr.open_group(self.store, mode="r+", zarr_format=3, use_consolidated=False)

    def consolidate(self) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            zarr.consolidate_metadata(self.store)

    def upload(self, *, clear: bool = False) -> int:
        """PUT every object that differs from what was sent; ``zarr.json`` of the root last. Returns the
        number of objects written."""
        current = {k: v.to_bytes() for k, v in self.objects.items()}
        changed = {k: v for k, v in current.items() if self.sent.get(k) != v}
        fs, root = get_fs(self.url, self.so)
        root = root.rstrip("/")
        if clear and with_retries(fs.exists, root):
            fs.rm(root, recursive=True)  # leftovers of a run killed before its root zarr.json landed
        last = changed.pop("zarr.json", None)
        _put_objects(fs, root, changed, local=protocol_of(self.url) == "file")
        if last is not None:
            _put_objects(fs, root, {"zarr.json": last}, local=protocol_of(self.url) == "file")
            changed["zarr.json"] = last
        self.sent = current
        return len(changed)


def _put_objects(fs: Any, root: str, objects: dict[str, bytes], *, local: bool) -> None:
    if not objects:
        return
    if local:
        import os

        for key, data in objects.items():
            path = f"{root}/{key}"
            fs.makedirs(fs._parent(path), exist_ok=True)
            tmp = f"{path}.tmp-{os.getpid()}"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)  # a reader never sees half an object
        return
    with_retries(fs.pipe, {f"{root}/{k}": v for k, v in objects.items()})


def ingest_frame(source_url: str, frame: str, cube_url: str, *, storage_options: dict[str, Any] | None = None,
                 chunk: int = cubemod.CHUNK, client: Any = None,
                 shard_chunks: int | None = cubemod.SHARD_CHUNKS, product_threads: int = 1,
                 lease_wait: float | None = None) -> IngestReport:
    """Ingest under the cube's lease (one writer per cube, insarcloud.io.lease): a second ingest of the same
    cube waits up to ``lease_wait`` seconds (default ``INSARCLOUD_LEASE_WAIT_S`` or 0) for the first, then
    finds its pairs done; or it raises LeaseHeldError naming the owner. Arguments: :func:`_ingest_frame`."""
    from insarcloud.io.lease import hold

    so = storage_options_for(cube_url, storage_options) if "://" in cube_url else None
    with hold(cube_url, "root", so, wait=lease_wait, job=f"ingest {frame}"):
        return _ingest_frame(source_url, frame, cube_url, storage_options=storage_options, chunk=chunk,
                             client=client, shard_chunks=shard_chunks, product_threads=product_threads)


def _ingest_frame(source_url: str, frame: str, cube_url: str, *, storage_options: dict[str, Any] | None = None,
                  chunk: int = cubemod.CHUNK, client: Any = None,
                  shard_chunks: int | None = cubemod.SHARD_CHUNKS, product_threads: int = 1) -> IngestReport:
    """Stream one LiCSAR frame from ``source_url`` into the cube at ``cube_url`` (idempotent).

    Runs on the active Dask client (or ``client``); with none, on Dask's default scheduler. A new cube
    gets ``chunk`` x ``chunk`` chunks packed into shards of ``shard_chunks`` x ``shard_chunks`` chunks
    (None: one object per chunk), Blosc-LZ4, and uint8 coherence when the frame's cc.tif are uint8.
    ``product_threads`` > 1 reads and writes the products of a pair concurrently (see ``_ingest_products``).
    """
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    since = [t0]

    def lap(name: str) -> None:
        now = time.perf_counter()
        timings[name] = round(now - since[0], 3)
        since[0] = now

    so = storage_options_for(cube_url, storage_options) if "://" in cube_url else None
    src_so = storage_options_for(source_url, storage_options) if "://" in source_url else None
    products = discover_frame(source_url, frame, src_so)
    report = IngestReport(frame=frame, cube_url=cube_url, source_url=products.url, missing=list(products.missing))
    for item in products.missing:
        log.warning("%s: missing %s", frame, item)
    compute = client.compute if client is not None else None

    def run(tasks: list[Any]) -> list[Any]:
        if not tasks:
            return []
        if compute is not None:
            return list(client.gather(compute(tasks)))
        return list(dask.compute(*tasks))

    state = _existing_state(cube_url, so)
    if state is not None:
        _repair(cube_url, so)
        state = _existing_state(cube_url, so)
    existing_pairs, ingested, provenance = state if state is not None else ([], np.zeros(0, bool), {})
    position = {p: i for i, p in enumerate(existing_pairs)}
    lap("discover")

    todo: list[str] = []
    for pair, refs in products.pairs.items():
        if "diff_pha" not in refs and "unw" not in refs:
            report.failed[pair] = "no diff_pha.tif or unw.tif"
            continue
        if pair in position and ingested[position[pair]]:
            old = provenance.get(pair, {})
            if any(old.get(k, {}).get("etag") not in (None, r.etag) for k, r in refs.items()):
                report.source_changed.append(pair)
                log.warning("%s: source of %s changed since ingest; kept the ingested version", frame, pair)
            report.skipped.append(pair)
            continue
        todo.append(pair)

    # The frame grid: the cube's, or (new cube) the one most of a sample of product headers agree on. Each
    # task then checks its own products against it on the same open that reads the data.
    if state is None:
        if not todo:
            raise ProductError(f"frame {frame}: every product failed validation: {report.failed}")
        headers = _sample_headers(products, todo, src_so)
        cc = products.pairs[todo[0]].get("cc")
        grid = _frame_grid({u: h for u, h in headers.items() if cc is None or u != cc.url} or headers)
        # LiCSAR's cc.tif is uint8; a frame whose cc is float keeps float32 coherence.
        coh_uint8 = cc is None or cc.url not in headers or headers[cc.url].dtype == "uint8"
    else:
        ref = xr.open_zarr(cube_url, consolidated=False, storage_options=so)
        grid = ((ref.sizes["y"], ref.sizes["x"]), tuple(cubemod.transform_from_coords(ref["y"].values,
                                                                                        ref["x"].values))[:6])
    shape, transform = grid
    has_unw = any("unw" in products.pairs[p] for p in todo)
    lap("grid")

    mem: _MemoryCube | None = None
    new = [p for p in todo if p not in position]
    static_items: list[tuple[str, str, str]] = []
    if state is None:
        tmpl = _template(products, todo, shape, transform, has_unw, chunk)
        # A new cube is complete metadata before any data lands, so that it opens even if this run is killed;
        # its pairs read as ingested=False (and open_cube hides them) until their data has landed.
        mem = _MemoryCube(cube_url, so)
        tmpl.to_zarr(mem.store, mode="w", zarr_format=3, consolidated=False, compute=False,
                     encoding=cubemod.cube_encoding(tmpl, chunk, shard_chunks=shard_chunks, coh_uint8=coh_uint8,
                                                    compressor=cubemod.blosc_lz4()))
        mem.group().create_group("ingest")
        mem.consolidate()
        n_put = mem.upload(clear=True)
        log.debug("%s: template of %d objects", cube_url, n_put)
        static_items = [(STATIC_VAR[k], r.url, k) for k, r in products.statics.items()]
        position = {p: i for i, p in enumerate(todo)}
        report.added = list(todo)
    elif new:
        _append_pairs(cube_url, so, new, has_unw, products.baselines)
        n0 = len(existing_pairs)
        position.update({p: n0 + i for i, p in enumerate(new)})
        report.added = list(new)
    lap("create")

    run_id = uuid.uuid4().hex
    have = set(mem.group().array_keys()) if mem is not None else set(
        cubemod.open_zarr_group(cube_url, None, so).array_keys())
    tasks = [dask.delayed(_ingest_products)(cube_url, so, src_so, run_id, f"static:{kind}", None,
                                            [(var, url, kind)], grid, product_threads)
             for var, url, kind in static_items]
    for pair in todo:
        items = [(PAIR_VARS[k], products.pairs[pair][k].url, k) for k in PAIR_KINDS
                 if k in products.pairs[pair] and PAIR_VARS[k] in have]
        tasks.append(dask.delayed(_ingest_products)(cube_url, so, src_so, run_id, pair, position[pair], items,
                                                    grid, product_threads))
    results = run(tasks)
    lap("write")
    task_seconds: collections.Counter = collections.Counter()
    for res in results:
        task_seconds.update(res.get("seconds", {}))
    report.task_seconds = {k: round(v, 3) for k, v in task_seconds.items()}
    ok: dict[str, bool] = {}
    for res in results:
        owner = res["owner"]
        ok[owner] = ok.get(owner, True) and res["ok"]
        if not res["ok"]:
            report.failed[owner] = res["error"]
            log.error("%s", res["error"])
    done = [p for p in todo if ok.get(p)]
    for p in done:
        provenance[p] = {k: {"url": r.url, "etag": r.etag, "size": r.size} for k, r in products.pairs[p].items()}
    report.completed = done
    report.bytes_read = int(sum(products.pairs[p][k].size for p in done for k in products.pairs[p]))
    if state is None:
        provenance["_statics"] = {
            k: {"url": r.url, "etag": r.etag, "size": r.size} for k, r in products.statics.items()
        }
    report.seconds = round(time.perf_counter() - t0, 3)
    if mem is not None:
        root = mem.group()
        if done:
            root["ingested"][:] = np.array([ok.get(p, False) for p in todo], dtype=bool)
        _log_run(root, report, provenance)
        mem.consolidate()
        mem.upload()  # ingested flags, then the log, then the root zarr.json: three objects
    else:
        root = cubemod.open_zarr_group(cube_url, None, so, mode="r+")
        if done:
            flags = np.asarray(root["ingested"][:]).astype(bool)
            for p in done:
                flags[position[p]] = True
            root["ingested"][:] = flags
        _log_run(root, report, provenance)
        cubemod.consolidate(cube_url, storage_options)
    lap("finish")
    log.info("%s: %d pairs added, %d completed, %d skipped, %d failed in %.1fs (%s)", frame, len(report.added),
             len(done), len(report.skipped), len(report.failed), time.perf_counter() - t0, timings)
    report.timings = timings
    return report


def _fail(report: IngestReport, key: tuple[str, str], message: str) -> None:
    owner, kind = key
    if owner == "static":
        report.failed[f"static:{kind}"] = message
    else:
        report.failed[owner] = message
    log.error("%s", message)


def _log_run(root: zarr.Group, report: IngestReport, provenance: dict[str, Any]) -> None:
    """Record this run and the provenance (source URL, ETag, size per product) in the ``ingest`` group.

    The log lives in Zarr attributes (group ``ingest``) rather than loose JSON objects, so the cube stays a
    pure Zarr hierarchy that any reader walks without warnings.
    """
    log_group = root["ingest"] if "ingest" in root else root.create_group("ingest")
    runs = list(log_group.attrs.get("runs", []))
    entry = report.to_dict()
    entry["at"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    runs.append(entry)
    log_group.attrs.update({"runs": runs, "provenance": provenance})
    errors = {k: v for run in runs for k, v in run.get("failed", {}).items()}
    for run in runs:
        for p in run.get("completed", []):
            errors.pop(p, None)
    root.attrs["ingest"] = {
        "runs": len(runs),
        "last_run": entry["at"],
        "missing_products": report.missing,
        "errors": errors,
    }
