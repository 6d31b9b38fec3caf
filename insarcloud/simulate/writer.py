"""Write a simulated frame as a LiCSAR product tree to any fsspec URL (thin I/O layer).

Layout (COMET-LiCSAR's public tree)::

    <root>/<int(track)>/<frame>/interferograms/YYYYMMDD_YYYYMMDD/YYYYMMDD_YYYYMMDD.geo.{unw,cc,diff_pha}.tif
    <root>/<int(track)>/<frame>/epochs/YYYYMMDD/YYYYMMDD.geo.mli.tif
    <root>/<int(track)>/<frame>/metadata/<frame>.geo.{E,N,U,hgt}.tif, <frame>.geo.landmask.tif,
                                         baselines, metadata.txt, <frame>-poly.txt

GeoTIFFs copy what the real products in ../shared/data/licsar carry: EPSG:4326 north-up at 0.001 deg,
DEFLATE with predictor 3 (float32) or 2 (uint8), GDAL's default strips, AREA_OR_POINT=Area, and no
nodata tag -- 0 *is* no data by convention (unw, diff_pha, E/N/U/hgt, mli float32; cc uint8 coh*255).
The landmask is float32 0/1, tiled 256, nodata NaN, AREA_OR_POINT=Point with GDAL statistics tags, as
LiCSAR's is. Each file is encoded in memory with rasterio and uploaded with fsspec in batches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import numpy as np
import rasterio
from rasterio.io import MemoryFile
from rasterio.session import DummySession
from rasterio.transform import Affine

from insarcloud.io import get_fs, join, with_retries

from .frame import SimulatedFrame

__all__ = ["frame_url", "write_licsar_frame"]

log = logging.getLogger(__name__)
_BATCH = 48  # files per fs.pipe call (s3fs uploads a batch concurrently)
_TINY = np.float32(1e-7)  # a valid value that happens to be exactly 0 must not read as no data


def frame_url(sim: SimulatedFrame, root_url: str) -> str:
    """``<root>/<int(track)>/<frame>``."""
    return join(root_url, str(int(sim.track)), sim.frame_id)


def _ymd(d: np.datetime64) -> str:
    return str(np.datetime64(d, "D")).replace("-", "")


def _tiff_bytes(arr: np.ndarray, transform: Affine, *, kind: str = "float") -> bytes:
    """Encode one band as a LiCSAR-style GeoTIFF."""
    rows, cols = arr.shape
    profile: dict[str, Any] = dict(driver="GTiff", width=cols, height=rows, count=1, crs="EPSG:4326",
                                   transform=transform, compress="deflate")
    tags = {"AREA_OR_POINT": "Area"}
    if kind == "float":
        profile.update(dtype="float32", predictor=3)
    elif kind == "uint8":
        profile.update(dtype="uint8", predictor=2)
    elif kind == "landmask":
        profile.update(dtype="float32", nodata=float("nan"), tiled=True, blockxsize=256, blockysize=256)
        tags = {"AREA_OR_POINT": "Point"}
    else:
        raise ValueError(f"unknown GeoTIFF kind {kind!r}")
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(arr.astype(profile["dtype"], copy=False), 1)
            ds.update_tags(**tags)
            if kind == "landmask":
                a = arr.astype(np.float64)
                ds.update_tags(1, STATISTICS_MAXIMUM=f"{a.max():g}", STATISTICS_MEAN=f"{a.mean():.13g}",
                               STATISTICS_MINIMUM=f"{a.min():g}", STATISTICS_STDDEV=f"{a.std():.13g}",
                               STATISTICS_VALID_PERCENT="100")
        return bytes(mem.read())


def _float_product(a: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """NaN / invalid -> 0 (LiCSAR's no data); valid exact zeros -> a tiny value."""
    out = np.asarray(a, dtype=np.float32).copy()
    bad = ~np.isfinite(out)
    if valid is not None:
        bad |= ~valid
    out[(out == 0) & ~bad] = _TINY
    out[bad] = 0.0
    return out


def _cc_product(coh: np.ndarray) -> np.ndarray:
    """Coherence 0..1 (NaN = no data) -> uint8 1..255, 0 = no data."""
    ok = np.isfinite(coh)
    out = np.zeros(coh.shape, np.uint8)
    out[ok] = np.clip(np.round(coh[ok] * 255.0), 1, 255).astype(np.uint8)
    return out


def _metadata_txt(sim: SimulatedFrame) -> str:
    g = sim.geometry
    mid = (g.slant_range_km.shape[0] // 2, g.slant_range_km.shape[1] // 2)
    centre_range_m = float(g.slant_range_km[mid]) * 1000.0
    # Sentinel-1 passes over Tibet: ascending ~12:00 UTC (evening), descending ~23:50 UTC (morning)
    centre_time = "12:01:37.512420" if sim.direction == "A" else "23:52:11.064380"
    inc = float(np.mean(g.incidence_deg[sim.valid]))
    lines = [
        f"master={_ymd(sim.dates[sim.network.master])}",
        f"center_time={centre_time}",
        f"heading={g.heading_deg:.6f}",
        f"avg_incidence_angle={inc:.4f}",
        "azimuth_resolution=13.984720",
        "range_resolution=2.329562",
        f"centre_range_m={centre_range_m:.4f}",
        f"avg_height={float(np.mean(sim.hgt[sim.valid])):.6f}",
        "applied_DEM=insarcloud.simulate_fractal",
        f"centre_range_ok_m={centre_range_m:.4f}",
    ]
    return "\n".join(lines) + "\n"


def _baselines_txt(sim: SimulatedFrame) -> str:
    net = sim.network
    master = net.dates[net.master]
    rows = []
    for d, b in zip(net.dates, net.bperp, strict=True):
        btemp = int((np.datetime64(d, "D") - np.datetime64(master, "D")).astype(np.int64))
        rows.append(f"{_ymd(master)} {_ymd(d)} {float(b):.4f} {btemp}")
    return "\n".join(rows) + "\n"


def _poly_txt(sim: SimulatedFrame) -> str:
    return "".join(f"{lon:.14f} {lat:.14f}\n" for lon, lat in sim.params["footprint_polygon"])


def _float_tiff(arr: np.ndarray, valid: np.ndarray, tr: Affine) -> bytes:
    return _tiff_bytes(_float_product(arr, valid), tr)


def _products(sim: SimulatedFrame) -> Iterator[tuple[str, Callable[[], bytes]]]:
    """(relative path, its encoder) of every file of the tree: a file left out is never encoded."""
    tr = Affine(*sim.grid.transform)
    fid = sim.frame_id
    valid = sim.valid
    for comp, arr in (("E", sim.los_e), ("N", sim.los_n), ("U", sim.los_u), ("hgt", sim.hgt)):
        yield f"metadata/{fid}.geo.{comp}.tif", partial(_float_tiff, arr, valid, tr)
    yield (f"metadata/{fid}.geo.landmask.tif",
           partial(_tiff_bytes, sim.landmask.astype(np.float32), tr, kind="landmask"))
    yield "metadata/baselines", lambda: _baselines_txt(sim).encode()
    yield "metadata/metadata.txt", lambda: _metadata_txt(sim).encode()
    yield f"metadata/{fid}-poly.txt", lambda: _poly_txt(sim).encode()
    for k, d in enumerate(sim.dates):
        ymd = _ymd(d)
        yield f"epochs/{ymd}/{ymd}.geo.mli.tif", partial(_float_tiff, sim.mli[k], valid, tr)
    no_unw = set(sim.params.get("pairs_without_unw", ()))
    for p, name in enumerate(sim.pairs):
        base = f"interferograms/{name}/{name}.geo"
        if name not in no_unw:
            yield f"{base}.unw.tif", partial(_float_tiff, sim.unw[p], valid, tr)
        yield f"{base}.diff_pha.tif", partial(_float_tiff, sim.phase[p], valid, tr)
        yield f"{base}.cc.tif", partial(_tiff_bytes, _cc_product(sim.coherence_est[p]), tr, kind="uint8")


def _acquired_by(sim: SimulatedFrame, epochs: int) -> Callable[[str], bool]:
    """Whether a file of the tree existed when only the first ``epochs`` epochs were acquired: metadata always,
    an epoch's folder up to that date, an interferogram whose secondary date is up to it."""
    cut = _ymd(sim.dates[epochs - 1])

    def acquired(rel: str) -> bool:
        kind, _, rest = rel.partition("/")
        if kind == "epochs":
            return rest[:8] <= cut
        if kind == "interferograms":
            return rest.split("/", 1)[0].split("_")[1] <= cut
        return True

    return acquired


def write_licsar_frame(sim: SimulatedFrame, root_url: str, storage_options: dict[str, Any] | None = None, *,
                       epochs: int | None = None, only_missing: bool = False) -> str:
    """Write the LiCSAR tree of ``sim`` under ``root_url``; returns the frame directory URL.

    Parameters
    ----------
    sim : SimulatedFrame
    root_url : str
        Any fsspec URL or path (``s3://bucket/licsar``, ``file:///tmp/x``, ``memory://x``).
    storage_options : dict, optional
        fsspec options on top of the environment's (``insarcloud.io.storage_options_for``).
    epochs : int, optional
        The tree as LiCSAR had it when only the first ``epochs`` epochs were acquired: their epoch folders and
        the interferograms among them (metadata in full). An update test or benchmark writes the frame with
        ``epochs=k``, runs, then writes it again in full with ``only_missing=True`` ("LiCSAR added epochs").
    only_missing : bool
        Write only the files not there yet: the files already there keep their bytes and ETags, as LiCSAR's
        published products do (ingest re-ingests a product whose ETag changed).

    Returns
    -------
    str : ``<root_url>/<int(track)>/<frame>``
    """
    url = frame_url(sim, root_url)
    fs, path = get_fs(url, storage_options)
    path = path.rstrip("/")
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    local = "file" in protocols or "local" in protocols
    batch: dict[str, bytes] = {}
    n = size = 0

    def flush() -> None:
        if local:
            for p in {q.rsplit("/", 1)[0] for q in batch}:
                fs.makedirs(p, exist_ok=True)
        with_retries(fs.pipe, dict(batch))
        batch.clear()

    # One GDAL environment for all files: without it rasterio builds a boto3 session per MemoryFile
    # whenever AWS variables are set (~0.1 s each); encoding in memory needs no credentials at all.
    keep = _acquired_by(sim, epochs) if epochs is not None else None
    there = set(with_retries(fs.find, path)) if only_missing and with_retries(fs.exists, path) else set()
    with rasterio.Env(session=DummySession()):
        for rel, encode in _products(sim):
            if (keep is not None and not keep(rel)) or f"{path}/{rel}" in there:
                continue
            data = encode()
            batch[f"{path}/{rel}"] = data
            n += 1
            size += len(data)
            if len(batch) >= _BATCH:
                flush()
    if batch:
        flush()
    log.info("wrote %s: %d files, %.1f MB", url, n, size / 1e6)
    return url
