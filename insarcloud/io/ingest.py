"""Idempotent, crash-safe Dask ingest of a LiCSAR frame into its Zarr v3 frame cube.

Why rasterio reads in Dask tasks and not stackstac: stackstac builds a lazy stack from STAC items but
reprojects every asset onto one grid and fills unreadable assets silently; LiCSAR products must be on the
frame grid exactly, and a corrupt, truncated or mis-gridded product must become an error for that
product alone (recorded in the ingest log) while the others land. So each task reads one row band of one
pair through GDAL/fsspec range requests and writes its chunk-aligned region itself; memory is bounded by
the band (``chunk`` rows x frame width), not by the frame stack. STAC items are still built and stored
(``stac/items.json``) and ``insarcloud.io.stac.stack`` reads them with stackstac for users who want it.

Crash safety: pairs are appended in three steps — (1) arrays are resized and the new pairs' coordinates
written with ``ingested = False``, the ``pair`` index last; (2) tasks write data chunks; (3) ``ingested``
flips to True for pairs whose every band landed. A killed run leaves a cube that opens (the consolidated
metadata still describes the last complete state, and ``open_cube`` hides unfinished pairs); the next
run re-writes exactly the unfinished pairs.
"""

from __future__ import annotations

import collections
import datetime as _dt
import json
import logging
import time
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
    discover_frame,
    read_header,
    read_rows,
)
from insarcloud.io.storage import storage_options_for

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

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# ------------------------------------------------------------------------------------------------
# Tasks (run on Dask workers): pure functions of URLs, returning small records
# ------------------------------------------------------------------------------------------------


def _write_pair_band(cube_url: str, so: dict[str, Any] | None, src_so: dict[str, Any] | None, index: int,
                     pair: str, refs: dict[str, str], row0: int, row1: int,
                     grid: tuple[tuple[int, int], tuple[float, ...]]) -> dict[str, Any]:
    """Check one pair's products against the frame grid, read rows row0:row1, write the cube's chunks.

    Every product of the band is read before anything is written, so a bad product leaves the band
    untouched; the pair stays ``ingested = False`` and the error names the file.
    """
    try:
        root = cubemod.open_zarr_group(cube_url, None, so, mode="r+")
        rows = {PAIR_VARS[k]: read_rows(u, row0, row1, k, src_so, grid) for k, u in refs.items()
                if PAIR_VARS[k] in root}
        for var, data in rows.items():
            root[var][index, row0:row1, :] = data
        return {"pair": pair, "ok": True}
    except (ProductError, OSError, ValueError) as exc:
        return {"pair": pair, "ok": False, "error": str(exc)}


def _write_static_band(cube_url: str, so: dict[str, Any] | None, src_so: dict[str, Any] | None, kind: str,
                       url: str, row0: int, row1: int, grid: tuple[tuple[int, int], tuple[float, ...]]
                       ) -> dict[str, Any]:
    try:
        root = cubemod.open_zarr_group(cube_url, None, so, mode="r+")
        root[STATIC_VAR[kind]][row0:row1, :] = read_rows(url, row0, row1, kind, src_so, grid)
        return {"static": kind, "ok": True}
    except (ProductError, OSError, ValueError) as exc:
        return {"static": kind, "ok": False, "error": str(exc)}


# ------------------------------------------------------------------------------------------------
# Planning (plain functions that return what to do)
# ------------------------------------------------------------------------------------------------


def _frame_grid(headers: dict[str, Header]) -> tuple[tuple[int, int], tuple[float, ...]]:
    """The grid most products agree on (a lone mis-gridded product cannot redefine the frame)."""
    counts = collections.Counter((h.shape, tuple(round(v, 9) for v in h.transform)) for h in headers.values())
    (shape, _), _ = counts.most_common(1)[0]
    for h in headers.values():
        if h.shape == shape:
            return shape, h.transform
    raise AssertionError("unreachable")


def _existing_state(cube_url: str, so: dict[str, Any] | None) -> tuple[list[str], np.ndarray, dict] | None:
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
    empty = da.full((n, *shape), np.nan, dtype="float32", chunks=(1, chunk, chunk))
    meta = products.metadata
    statics = {STATIC_VAR[k]: da.full(shape, np.nan, dtype="float32", chunks=chunk) for k in products.statics}
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


def _bands(ny: int, chunk: int) -> list[tuple[int, int]]:
    return [(r, min(r + chunk, ny)) for r in range(0, ny, chunk)]


def ingest_frame(source_url: str, frame: str, cube_url: str, *, storage_options: dict[str, Any] | None = None,
                 chunk: int = cubemod.CHUNK, client: Any = None) -> IngestReport:
    """Stream one LiCSAR frame from ``source_url`` into the cube at ``cube_url`` (idempotent).

    Runs on the active Dask client (or ``client``); with none, on Dask's default scheduler.
    """
    t0 = time.perf_counter()
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
        sample = [r.url for p in todo[:4] for r in products.pairs[p].values()]
        headers = {}
        for u in sample:
            try:
                headers[u] = read_header(u, src_so)
            except ProductError as exc:
                log.warning("%s", exc)
        if not headers:
            raise ProductError(f"frame {frame}: no readable product among {sample}")
        shape, transform = _frame_grid(headers)
    else:
        ref = xr.open_zarr(cube_url, consolidated=False, storage_options=so)
        shape = (ref.sizes["y"], ref.sizes["x"])
        transform = tuple(cubemod.transform_from_coords(ref["y"].values, ref["x"].values))[:6]
    grid = (shape, transform)
    good = list(todo)
    has_unw = any("unw" in products.pairs[p] for p in good)

    new = [p for p in good if p not in position]
    if state is None:
        if not good:
            raise ProductError(f"frame {frame}: every product failed validation: {report.failed}")
        tmpl = _template(products, good, shape, transform, has_unw, chunk)
        tmpl.to_zarr(cube_url, mode="w", zarr_format=3, consolidated=False, compute=False,
                     encoding=cubemod.cube_encoding(tmpl, chunk), storage_options=so)
        # A new cube is consolidated at once so that it opens even if this run is killed; its pairs read as
        # ingested=False (and open_cube hides them) until their data has landed.
        cubemod.consolidate(cube_url, storage_options)
        statics = {k: r.url for k, r in products.statics.items()}
        static_tasks = [dask.delayed(_write_static_band)(cube_url, so, src_so, k, u, r0, r1, grid)
                        for k, u in statics.items() for r0, r1 in _bands(shape[0], chunk)]
        for res in run(static_tasks):
            if not res["ok"]:
                _fail(report, ("static", res["static"]), res["error"])
        position = {p: i for i, p in enumerate(good)}
        report.added = list(good)
    elif new:
        _append_pairs(cube_url, so, new, has_unw, products.baselines)
        n0 = len(existing_pairs)
        position.update({p: n0 + i for i, p in enumerate(new)})
        report.added = list(new)

    tasks = []
    for pair in good:
        refs = {k: products.pairs[pair][k].url for k in PAIR_KINDS if k in products.pairs[pair]}
        for r0, r1 in _bands(shape[0], chunk):
            tasks.append(dask.delayed(_write_pair_band)(cube_url, so, src_so, position[pair], pair, refs, r0, r1,
                                                        grid))
    results = run(tasks)
    ok: dict[str, bool] = {}
    for res in results:
        ok[res["pair"]] = ok.get(res["pair"], True) and res["ok"]
        if not res["ok"]:
            report.failed[res["pair"]] = res["error"]
            log.error("%s", res["error"])
    done = [p for p in good if ok.get(p)]
    if done:
        root = cubemod.open_zarr_group(cube_url, None, so, mode="r+")
        flags = np.asarray(root["ingested"][:]).astype(bool)
        for p in done:
            flags[position[p]] = True
        root["ingested"][:] = flags
        for p in done:
            provenance[p] = {k: {"url": r.url, "etag": r.etag, "size": r.size} for k, r in products.pairs[p].items()}
    report.completed = done
    report.bytes_read = int(sum(products.pairs[p][k].size for p in done for k in products.pairs[p]))
    if state is None:
        provenance["_statics"] = {
            k: {"url": r.url, "etag": r.etag, "size": r.size} for k, r in products.statics.items()
        }
    report.seconds = round(time.perf_counter() - t0, 3)
    _log_run(cube_url, so, report, provenance)
    cubemod.consolidate(cube_url, storage_options)
    log.info("%s: %d pairs added, %d completed, %d skipped, %d failed in %.1fs", frame, len(report.added),
             len(done), len(report.skipped), len(report.failed), report.seconds)
    return report


def _fail(report: IngestReport, key: tuple[str, str], message: str) -> None:
    owner, kind = key
    if owner == "static":
        report.failed[f"static:{kind}"] = message
    else:
        report.failed[owner] = message
    log.error("%s", message)


def _log_run(cube_url: str, so: dict[str, Any] | None, report: IngestReport, provenance: dict[str, Any]) -> None:
    """Record this run and the provenance (source URL, ETag, size per product) in the ``ingest`` group.

    The log lives in Zarr attributes (group ``ingest``) rather than loose JSON objects, so the cube stays a
    pure Zarr hierarchy that any reader walks without warnings.
    """
    root = cubemod.open_zarr_group(cube_url, None, so, mode="r+")
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
