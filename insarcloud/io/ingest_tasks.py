"""Dask tasks of ingest (run on workers): pure functions of URLs that copy one pair's products into the
cube and return small records. See ingest.py for the run around them and why rasterio reads here.

Fault handling lives here because it is per product: value checks on every block, whole-object writes
retried on storage faults, a failed GDAL read judged (storage or file?) before the file is blamed, and
the fault-injection hook that kill-and-resume tests use to stop at a recorded point.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import zarr

from insarcloud.core.allocator import heap_task
from insarcloud.errors import ProductError, StorageUnavailableError
from insarcloud.io.chunk_store import chunk_store, store_endpoint
from insarcloud.io.licsar import (
    check_grid,
    check_values,
    forget_gdal_cache,
    header_of,
    open_product,
    read_window,
    to_cube_values,
)
from insarcloud.io.storage import endpoint_of, get_fs, is_transient, is_transient_message, with_retries

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
        # obstore where the options translate (~0.6x the CPU per PUT of s3fs, docs/scale.md "Chunk requests
        # through obstore"); every write is wrapped in ``with_retries`` (_copy_product), so obstore does not retry
        store = (chunk_store(cube_url, so, read_only=False)
                 or zarr.storage.FsspecStore.from_url(cube_url, storage_options=so))
    return zarr.open_array(store=_WholeObjectWriter(store), path=path, mode="r+", zarr_format=3)


# Fault injection at a recorded point (tests; never set in production): after this process has written
# INSARCLOUD_FAULT_KILL_AFTER_WRITES data objects, SIGKILL its process group (the CLI and its workers), as a
# node loss would. In-process hooks ``WRITE_HOOKS`` are called with the running count after each object.
_WRITES = [0]
WRITE_HOOKS: list[Any] = []


def _object_written() -> None:
    _WRITES[0] += 1
    for hook in list(WRITE_HOOKS):
        hook(_WRITES[0])
    limit = os.environ.get("INSARCLOUD_FAULT_KILL_AFTER_WRITES")
    if limit and _WRITES[0] >= int(limit):
        os.killpg(os.getpgrp(), signal.SIGKILL)


def _setitem(arr: zarr.Array, key: Any, block: np.ndarray) -> None:
    arr[key] = block


def _copy_product(arr: zarr.Array, index: int | None, url: str, kind: str, src_so: dict[str, Any] | None,
                  grid: Grid, clock: collections.Counter) -> None:
    """Copy one product into ``arr`` (``arr[index]`` for pair variables), one shard-row block at a time.

    The product is opened once; its header is checked against the frame grid on that open. Each block is
    a whole number of shards (or chunks) across the full width, so every object is written whole, once.
    ``clock`` accumulates seconds spent reading (GDAL: fetch + decode) and writing (Zarr: encode + PUT).
    """
    rows = (arr.shards or arr.chunks)[-2]
    t = time.perf_counter()
    # GDAL's /vsis3/ cache outlives a task in a long-lived worker: a corrected file at the same URL would
    # otherwise be read from the old bytes (measured: the replaced pair failed again with the old values).
    forget_gdal_cache(url)
    with open_product(url, src_so) as ds:
        check_grid(header_of(ds, url), *grid)
        nodata = ds.nodata
        for r0 in range(0, ds.height, rows):
            r1 = min(r0 + rows, ds.height)
            raw = read_window(ds, url, r0, r1)
            check_values(raw, kind, url)
            block = to_cube_values(raw, kind, nodata, arr.dtype)
            clock["read"] += time.perf_counter() - t
            t = time.perf_counter()
            key = (slice(r0, r1), slice(None)) if index is None else (index, slice(r0, r1), slice(None))
            with_retries(_setitem, arr, key, block, endpoint=_store_name(arr))
            _object_written()
            clock["write"] += time.perf_counter() - t
            t = time.perf_counter()


def _store_name(arr: zarr.Array) -> str:
    store = getattr(arr, "store", None)
    fs = getattr(getattr(store, "_store", store), "fs", None)  # through _WholeObjectWriter
    if fs is not None:
        return endpoint_of(fs)
    return store_endpoint(store) or "the cube's store"


class _StoreFault(ConnectionError):
    """A GDAL read failed while the source store was unreachable: retried as a storage fault."""


def _copy_once(arr: zarr.Array, index: int | None, url: str, kind: str, src_so: dict[str, Any] | None,
               grid: Grid, clock: collections.Counter) -> None:
    """:func:`_copy_product`, with a failed GDAL open/read judged before the file is blamed.

    GDAL's message often hides the cause ("Read failed. See previous exception", "not recognized as being
    in a supported file format"): when CURL's text anywhere in the exception chain blames the connection,
    or the source store does not answer a HEAD of the file, it is a storage fault (:class:`_StoreFault`,
    retried by the caller). When the store answers, the product is read once more (GDAL's cache
    forgotten) before the failure is the file's: the endpoint may have come back between the failed read
    and the HEAD."""
    try:
        _copy_product(arr, index, url, kind, src_so, grid, clock)
        return
    except ProductError as exc:
        if type(exc) is not ProductError:  # value and grid errors are the file's, whatever the store does
            raise
        forget_gdal_cache(url)
        if is_transient_message(_chain_text(exc)):
            raise _StoreFault(str(exc)) from exc
        if "://" in url:
            fs, path = get_fs(url, src_so)
            try:
                fs.info(path)
            except Exception as probe:
                if is_transient(probe):
                    raise _StoreFault(f"{url}: source store unreachable ({probe})") from exc
    try:  # the store answers: confirm on a fresh read before blaming the file
        _copy_product(arr, index, url, kind, src_so, grid, clock)
    except ProductError as again:
        forget_gdal_cache(url)
        if type(again) is ProductError and is_transient_message(_chain_text(again)):
            raise _StoreFault(str(again)) from again
        raise


def _chain_text(exc: BaseException) -> str:
    parts, cur, seen = [], exc, 0
    while cur is not None and seen < 16:
        parts.append(str(cur))
        cur, seen = cur.__cause__ or cur.__context__, seen + 1
    return " | ".join(parts)


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
        arr = with_retries(_cube_array, cube_url, so_json, var, run, endpoint=endpoint_of(cube_url, so))
        clock["open_array"] += time.perf_counter() - t
        with_retries(_copy_once, arr, index, url, kind, src_so, grid, clock, endpoint=endpoint_of(url, src_so))

    out: dict[str, Any] = {"owner": owner, "ok": True}
    try:
        if threads <= 1 or len(items) == 1:
            for it in items:
                one(it)
        else:
            with ThreadPoolExecutor(min(threads, len(items))) as pool:
                for fut in [pool.submit(one, it) for it in items]:
                    fut.result()
    except StorageUnavailableError as exc:  # the endpoint's fault: the run stops, the next one resumes
        out = {"owner": owner, "ok": False, "storage": True, "error": str(exc)}
    except (ProductError, OSError, ValueError) as exc:
        out = {"owner": owner, "ok": False, "error": str(exc)}
    out["seconds"] = {k: round(v, 4) for k, v in clock.items()} | {"task": round(time.perf_counter() - t0, 4)}
    return out


@heap_task  # docs/scale.md "Worker processes and glibc's allocator": per task, not per worker
def _ingest_batch(calls: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """:func:`_ingest_products` for several pairs in one Dask task (one record per pair, in order).

    Each pair keeps its own isolation (a bad product fails its owner only) and its own record; a frame of
    hundreds of small pairs (the demo's 64 px frames: ~0.1 s of work per pair) otherwise spends a good part
    of its CPU on scheduling one task per pair."""
    return [_ingest_products(*c) for c in calls]
