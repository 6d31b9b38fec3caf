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

Ownership (``cube_target``): ingest refuses a cube URL that holds anything but this frame's cube, and a
new cube's run first records every key it creates in a manifest, so that clean-up after a killed run
removes exactly those keys. Integrity (docs/ingest.md): bad metadata, folder names and product values fail
alone, named; a product whose source changed since it landed is re-ingested; storage faults are retried,
then reported as the endpoint's (``StorageUnavailableError``), never as the file's.
"""

from __future__ import annotations

import collections
import datetime as _dt
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

from insarcloud.cliargs import MAX_CHUNK, MIN_CHUNK
from insarcloud.core.pairs import pair_dates
from insarcloud.errors import ConfigError, CubeError, CubeOwnershipError, ProductError, StorageUnavailableError
from insarcloud.io import cube as cubemod
from insarcloud.io import cube_target, ingest_log

# The Dask tasks live in ingest_tasks; these names stay importable from here (tests, benchmarks).
from insarcloud.io.ingest_tasks import WRITE_HOOKS, Grid, _cube_array, _ingest_batch, _ingest_products  # noqa: F401
from insarcloud.io.licsar import (
    PAIR_KINDS,
    STATIC_VAR,
    FrameProducts,
    Header,
    discover_frame,
    read_header,
)
from insarcloud.io.storage import (
    get_fs,
    protocol_of,
    storage_options_for,
    with_retries,
)

log = logging.getLogger(__name__)
PAIR_VARS = {"diff_pha": "phase", "cc": "coh", "unw": "unw"}


@dataclass
class IngestReport:
    """What one ingest run did (its record is one element of ``ingest/runs`` in the cube: ingest_log)."""

    frame: str
    cube_url: str
    source_url: str
    added: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    source_changed: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)  # pairs re-ingested because their source changed
    bytes_read: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    task_seconds: dict[str, float] = field(default_factory=dict)
    run_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @property
    def exit_code(self) -> int:
        """0 when every product present was ingested (missing ones are reported, not failures), else
        :data:`EXIT_FAILED` (``insarcloud ingest``'s exit status; docs/STAGES.md)."""
        return EXIT_FAILED if self.failed else 0


# Exit statuses of ``insarcloud ingest`` (also in its --help and docs/STAGES.md); 2 is usage/config.
EXIT_FAILED = 3  # some products present could not be ingested: their names are printed
EXIT_STORAGE = 4  # the store stayed unreachable through the retry budget: re-run later, nothing is lost




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
    # check_target saw a frame cube of this frame here: one that no longer opens is refused, never rewritten
    try:
        root = cubemod.open_zarr_group(cube_url, None, so)
    except CubeError as exc:
        raise CubeOwnershipError(f"{cube_url}: the frame cube there does not open ({exc}); refusing to "
                                 f"overwrite it") from exc
    if "pair" not in root:
        raise CubeOwnershipError(f"{cube_url}: the frame cube there has no 'pair' index; refusing to overwrite it")
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
    prim, sec = pair_dates(pairs)
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
    prim, sec = pair_dates(new_pairs)
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

    def upload(self) -> int:
        """PUT every object that differs from what was sent; ``zarr.json`` of the root last. Returns the
        number of objects written. Nothing is ever deleted here: leftovers of a killed run are removed by
        ``cube_target.check_target``, only those its manifest lists."""
        current = {k: v.to_bytes() for k, v in self.objects.items()}
        changed = {k: v for k, v in current.items() if self.sent.get(k) != v}
        fs, root = get_fs(self.url, self.so)
        root = root.rstrip("/")
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


def check_options(chunk: int, shard_chunks: int | None, product_threads: int) -> None:
    """Refuse option values that cannot make a cube (ConfigError naming the option), before any work."""
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or not MIN_CHUNK <= chunk <= MAX_CHUNK:
        raise ConfigError(f"chunk={chunk!r}: the spatial chunk must be an integer in {MIN_CHUNK}..{MAX_CHUNK} pixels")
    if shard_chunks is not None and (isinstance(shard_chunks, bool) or not isinstance(shard_chunks, (int, np.integer))
                                     or not 1 <= shard_chunks <= 64):
        raise ConfigError(f"shard_chunks={shard_chunks!r}: chunks per shard side must be an integer in 1..64 "
                          f"(or None: no sharding)")
    if isinstance(product_threads, bool) or not isinstance(product_threads, (int, np.integer)) or not (
            1 <= product_threads <= 16):
        raise ConfigError(f"product_threads={product_threads!r}: must be an integer in 1..16")




def _ref_record(r: Any) -> dict[str, Any]:
    return {"url": r.url, "etag": r.etag, "size": r.size}


def _changed(old: dict[str, Any], refs: dict[str, Any]) -> list[str]:
    """Kinds whose source differs (ETag, or size) from what the ingest log recorded when they landed."""
    out = []
    for k, r in refs.items():
        rec = old.get(k)
        if not rec:
            continue
        if rec.get("etag") not in (None, r.etag) or rec.get("size") not in (None, r.size):
            out.append(k)
    return out


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

    Raises ConfigError (bad option), CubeOwnershipError (``cube_url`` holds something else than this
    frame's cube; nothing is deleted), StorageUnavailableError (the store stayed unreachable: what landed
    is recorded, the next run resumes; ``exc.report`` holds the report). A product that cannot be ingested
    is not an exception: it is in ``report.failed`` (``report.exit_code`` is then non-zero).
    """
    check_options(chunk, shard_chunks, product_threads)
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
    target = cube_target.check_target(cube_url, frame, so)  # refuses what is not this frame's cube
    run_id = f"{_dt.datetime.now(_dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    report = IngestReport(frame=frame, cube_url=cube_url, source_url=products.url, missing=list(products.missing),
                          run_id=run_id)
    for item in products.missing:
        log.warning("%s: missing %s", frame, item)
    for key, reason in products.problems.items():  # bad folder names and metadata files: named, not fatal
        report.failed[key] = f"{products.url}/{key}: {reason}"
    compute = client.compute if client is not None else None

    def run(tasks: list[Any]) -> list[Any]:
        from insarcloud.progress import Reporter
        from insarcloud.progress import compute as compute_reporting

        if not tasks:
            return []
        if compute is not None:  # progress lines (stderr) or a bar (terminal) as the tasks finish
            from distributed import as_completed

            futures = compute(tasks)
            with Reporter(f"ingest {frame}", len(futures), "tasks") as bar:
                for _ in as_completed(futures):
                    bar.update(1)
            return list(client.gather(futures))
        return list(compute_reporting(list(tasks), f"ingest {frame}"))

    state = _existing_state(cube_url, so) if target == "existing" else None
    if state is not None:
        _repair(cube_url, so)
        state = _existing_state(cube_url, so)
    existing_pairs, ingested, provenance = state if state is not None else ([], np.zeros(0, bool), {})
    provenance_before = json.dumps(provenance, sort_keys=True, default=str)
    position = {p: i for i, p in enumerate(existing_pairs)}
    lap("discover")

    todo: list[str] = []
    replace: list[str] = []
    for pair, refs in products.pairs.items():
        if "diff_pha" not in refs and "unw" not in refs:
            report.failed[pair] = "no diff_pha.tif or unw.tif"
            continue
        if pair in position and ingested[position[pair]]:
            kinds = _changed(provenance.get(pair, {}), refs)
            if not kinds:
                report.skipped.append(pair)
                continue
            # A corrected product: the pair is re-ingested (hidden while it is rewritten), and the
            # replacement recorded in the ingest log.
            report.source_changed.append(pair)
            replace.append(pair)
            log.warning("%s: source of %s changed since ingest (%s); re-ingesting the pair", frame, pair,
                        ", ".join(kinds))
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
        ingest_log.add_runs_array(mem.group().create_group("ingest"))
        mem.consolidate()
        # Every key this run creates, recorded before the first lands: a killed run's leftovers are then
        # removed by key (cube_target), and nothing else ever is.
        cube_target.write_manifest(cube_url, frame, run_id, list(mem.objects), so)
        n_put = mem.upload()
        cube_target.remove_manifest(cube_url, so)
        log.debug("%s: template of %d objects", cube_url, n_put)
        static_items = [(STATIC_VAR[k], r.url, k) for k, r in products.statics.items()]
        position = {p: i for i, p in enumerate(todo)}
        report.added = list(todo)
    else:
        if new:
            _append_pairs(cube_url, so, new, has_unw, products.baselines)
            n0 = len(existing_pairs)
            position.update({p: n0 + i for i, p in enumerate(new)})
            report.added = list(new)
        if replace:  # hidden (ingested = False) while rewritten; a kill leaves them for the next run
            _set_flags(cube_url, so, {position[p]: False for p in replace})
    lap("create")

    have = set(mem.group().array_keys()) if mem is not None else set(
        cubemod.open_zarr_group(cube_url, None, so).array_keys())
    calls = [(cube_url, so, src_so, run_id, f"static:{kind}", None, [(var, url, kind)], grid, product_threads)
             for var, url, kind in static_items]
    for pair in todo:
        items = [(PAIR_VARS[k], products.pairs[pair][k].url, k) for k in PAIR_KINDS
                 if k in products.pairs[pair] and PAIR_VARS[k] in have]
        calls.append((cube_url, so, src_so, run_id, pair, position[pair], items, grid, product_threads))
    # One task per pair, or up to 16 pairs per task when a frame has hundreds (>= 32 tasks left either way):
    # each pair still gets its own record and isolation (ingest_tasks._ingest_batch).
    per_task = max(1, min(16, len(calls) // 32))
    tasks = [dask.delayed(_ingest_batch)(calls[i:i + per_task]) for i in range(0, len(calls), per_task)]
    results = [r for batch in run(tasks) for r in batch]
    lap("write")
    task_seconds: collections.Counter = collections.Counter()
    for res in results:
        task_seconds.update(res.get("seconds", {}))
    report.task_seconds = {k: round(v, 3) for k, v in task_seconds.items()}
    ok: dict[str, bool] = {}
    storage_failed: dict[str, str] = {}
    for res in results:
        owner = res["owner"]
        ok[owner] = ok.get(owner, True) and res["ok"]
        if not res["ok"]:
            report.failed[owner] = res["error"]
            if res.get("storage"):
                storage_failed[owner] = res["error"]
            log.error("%s", res["error"])
    done = [p for p in todo if ok.get(p)]
    for p in done:
        provenance[p] = {k: _ref_record(r) for k, r in products.pairs[p].items()}
    report.completed = done
    report.replaced = [p for p in replace if p in done]
    report.bytes_read = int(sum(products.pairs[p][k].size for p in done for k in products.pairs[p]))
    if state is None:
        provenance["_statics"] = {k: _ref_record(r) for k, r in products.statics.items()}
    report.seconds = round(time.perf_counter() - t0, 3)
    # A storage fault is the endpoint's, not the product's: it is not recorded as the pair's error.
    product_failed = {k: v for k, v in report.failed.items() if k not in storage_failed}
    if mem is not None:
        root = mem.group()
        if done:
            root["ingested"][:] = np.array([ok.get(p, False) for p in todo], dtype=bool)
        root["ingest"].attrs["provenance"] = provenance
        root.attrs["ingest"] = ingest_log.summary({}, product_failed, done, report.missing)
        mem.consolidate()
        mem.upload()  # ingested flags, then the provenance, then the root zarr.json: three objects
    else:
        # Only what changed is written: a run that changes nothing leaves the root zarr.json byte-identical.
        root = cubemod.open_zarr_group(cube_url, None, so, mode="r+")
        if done:
            _set_flags(cube_url, so, {position[p]: True for p in done}, root)
        metadata_changed = bool(new)
        log_group = root["ingest"] if "ingest" in root else root.create_group("ingest")
        metadata_changed |= ingest_log.add_runs_array(log_group)
        if json.dumps(provenance, sort_keys=True, default=str) != provenance_before:
            log_group.attrs["provenance"] = provenance
            metadata_changed = True
        summary = ingest_log.summary(dict(root.attrs.get("ingest", {})), product_failed, done, report.missing)
        if dict(root.attrs.get("ingest", {})) != summary:
            root.attrs["ingest"] = summary
            metadata_changed = True
        if metadata_changed:
            cubemod.consolidate(cube_url, storage_options)
    record = report.to_dict() | {"at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    ingest_log.append_run(cube_url, so, record)
    lap("finish")
    log.info("%s: %d pairs added, %d completed, %d replaced, %d skipped, %d failed in %.1fs (%s)", frame,
             len(report.added), len(done), len(report.replaced), len(report.skipped), len(report.failed),
             time.perf_counter() - t0, timings)
    report.timings = timings
    if storage_failed:
        exc = StorageUnavailableError(
            f"{next(iter(storage_failed.values()))}; {len(storage_failed)} of {len(results)} products not "
            f"written this run ({', '.join(sorted(storage_failed)[:5])}): re-run to complete them")
        exc.report = report  # type: ignore[attr-defined]
        raise exc
    return report


def _set_flags(cube_url: str, so: dict[str, Any] | None, flags_at: dict[int, bool],
               root: zarr.Group | None = None) -> None:
    """Set ``ingested`` at the given pair positions (one read and one write of the small flag array)."""
    if not flags_at:
        return
    root = root if root is not None else cubemod.open_zarr_group(cube_url, None, so, mode="r+")
    flags = np.asarray(root["ingested"][:]).astype(bool)
    for i, v in flags_at.items():
        flags[i] = v
    root["ingested"][:] = flags
