"""Read environmental factors from any xarray-readable source and put them on a frame's grid and dates.

Sources (on the bucket or local): a Zarr store, a NetCDF file (NETCDF3 via the scipy engine, or any
engine xarray has), or a prefix holding GeoTIFF time stacks ``lst.tif``, ``ndvi.tif``, ``precip.tif`` (one
band per date, the ISO date as each band's description or in a ``dates`` tag). Variables are found by
name (see ``ALIASES``); each may have its own time axis (any datetime64 coordinate among its dims).
Spatial axes are ``y``/``x`` or ``lat``/``lon`` or ``latitude``/``longitude``.

This is the thin I/O layer of the stage; the numerics are in :mod:`insarcloud.forecast.resample`.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import numpy as np

from insarcloud.errors import CubeError, InputArrayError, StorageError
from insarcloud.forecast.resample import interp_time, monthly_fill, regrid_bilinear

log = logging.getLogger(__name__)

ALIASES: dict[str, tuple[str, ...]] = {
    "lst": ("lst", "LST", "LST_Day_1km", "land_surface_temperature", "skt"),
    "ndvi": ("ndvi", "NDVI", "_250m_16_days_NDVI"),
    "precip": ("precip", "precipitation", "tp", "pr", "PRECTOT"),
}
_Y = ("y", "lat", "latitude")
_X = ("x", "lon", "longitude")


class FactorArray(NamedTuple):
    """One factor on its native axes: time (t,) datetime64[ns], y (sy,), x (sx,), values (t, sy, sx) float32
    (LST in degree_Celsius, NDVI 0..1, precipitation in mm/month), lazy (xarray.DataArray) until loaded."""

    time: np.ndarray
    y: np.ndarray
    x: np.ndarray
    data: Any


def _storage(url: str, storage_options: dict | None) -> dict | None:
    if "://" not in url or url.startswith("file://"):
        return None
    from insarcloud.io import storage_options_for

    return storage_options_for(url, storage_options)


def _open_dataset(url: str, storage_options: dict | None):
    import fsspec
    import xarray as xr

    so = _storage(url, storage_options)
    u = url.rstrip("/")
    try:
        if u.endswith(".nc") or u.endswith(".nc4") or u.endswith(".netcdf"):
            with fsspec.open(u, "rb", **(so or {})) as fh:
                data = fh.read()
            if data[:3] == b"CDF":
                import io

                return xr.load_dataset(io.BytesIO(data), engine="scipy")
            import io

            return xr.load_dataset(io.BytesIO(data))
        fs, path = fsspec.core.url_to_fs(u, **(so or {}))
        if fs.exists(f"{path}/zarr.json") or fs.exists(f"{path}/.zgroup") or u.endswith(".zarr"):
            return xr.open_zarr(u, storage_options=so, consolidated=False, chunks={})
        tifs = {n: f"{u}/{n}.tif" for n in ("lst", "ndvi", "precip")}
        if all(fs.exists(f"{path}/{n}.tif") for n in tifs):
            return _open_geotiff_stacks(tifs, so)
    except FileNotFoundError as exc:
        raise StorageError(f"environmental factors not found at {url}: {exc}") from exc
    raise StorageError(f"cannot read environmental factors at {url}: expected a Zarr store, a .nc file, "
                       "or a prefix with lst.tif, ndvi.tif and precip.tif")


def _open_geotiff_stacks(urls: dict[str, str], so: dict | None):
    import fsspec
    import rasterio
    import xarray as xr
    from rasterio.io import MemoryFile

    arrays = {}
    for name, u in urls.items():
        with fsspec.open(u, "rb", **(so or {})) as fh:
            data = fh.read()
        with MemoryFile(data) as mem, mem.open() as src:
            vals = src.read().astype(np.float32)
            if src.nodata is not None:
                vals[vals == src.nodata] = np.nan
            desc = list(src.descriptions)
            tag = src.tags().get("dates")
            dates = tag.split(",") if tag else desc
            if len(dates) != src.count or any(d is None for d in dates):
                raise InputArrayError(f"{u}: each band needs its ISO date as description or in a 'dates' tag")
            t = np.array([np.datetime64(d.strip(), "ns") for d in dates])
            tr = src.transform
            if abs(tr.b) > 0 or abs(tr.d) > 0:
                raise InputArrayError(f"{u}: rotated geotransforms are not supported")
            x = tr.c + tr.a * (np.arange(src.width) + 0.5)
            y = tr.f + tr.e * (np.arange(src.height) + 0.5)
            _ = rasterio
        arrays[name] = xr.DataArray(vals, dims=(f"{name}_time", "y", "x"),
                                    coords={f"{name}_time": t, "y": y, "x": x})
    return xr.Dataset(arrays)


def _pick(ds, name: str) -> FactorArray:
    for alias in ALIASES[name]:
        if alias in ds.data_vars:
            da = ds[alias]
            break
    else:
        raise CubeError(f"no {name} variable (any of {ALIASES[name]}) among {list(ds.data_vars)}")
    tdims = [d for d in da.dims if d in da.coords and np.issubdtype(da[d].dtype, np.datetime64)]
    ydim = next((d for d in da.dims if d in _Y), None)
    xdim = next((d for d in da.dims if d in _X), None)
    if len(tdims) != 1 or ydim is None or xdim is None:
        raise InputArrayError(f"{name} ({alias}) must have one time dim and y/x dims, has {da.dims}")
    da = da.transpose(tdims[0], ydim, xdim)
    values = da
    if name == "lst" and da.attrs.get("units", "") in ("K", "kelvin", "Kelvin"):
        values = da - 273.15
    return FactorArray(da[tdims[0]].values.astype("datetime64[ns]"), np.asarray(da[ydim].values, float),
                       np.asarray(da[xdim].values, float), values)


def open_factors(url: str, storage_options: dict | None = None) -> dict[str, FactorArray]:
    """Open LST, NDVI and precipitation from ``url`` (lazy where the format allows)."""
    ds = _open_dataset(url, storage_options)
    return {n: _pick(ds, n) for n in ("lst", "ndvi", "precip")}


def _subset(f: FactorArray, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Load only the source window (plus one pixel) that covers the frame pixels y, x."""
    def span(src: np.ndarray, dst: np.ndarray) -> slice:
        lo, hi = np.min(dst), np.max(dst)
        inside = np.flatnonzero((src >= lo) & (src <= hi))
        if inside.size == 0:
            j = int(np.abs(src - (lo + hi) / 2).argmin())
            return slice(max(j - 1, 0), j + 2)
        return slice(max(inside[0] - 1, 0), inside[-1] + 2)

    sy, sx = span(f.y, y), span(f.x, x)
    vals = np.asarray(f.data[:, sy, sx].values if hasattr(f.data, "values") else f.data[:, sy, sx], np.float32)
    return vals, f.y[sy], f.x[sx]


def factors_on_grid(factors: dict[str, FactorArray], dates: np.ndarray, y: np.ndarray, x: np.ndarray
                    ) -> np.ndarray:
    """The three factors on ``dates`` and the frame pixels (y, x).

    Returns ndarray (3, date, y, x) float32: LST (degC) and NDVI by eq. (2) interpolation in time,
    precipitation by monthly filling; bilinear in space. Dates outside a factor's coverage are clamped to
    its first/last acquisition (logged).
    """
    out = np.empty((3, len(dates), len(y), len(x)), np.float32)
    for k, name in enumerate(("lst", "ndvi", "precip")):
        f = factors[name]
        vals, sy, sx = _subset(f, y, x)
        if name == "precip":
            on_dates = monthly_fill(vals, f.time, dates)
        else:
            if np.min(dates) < f.time.min() or np.max(dates) > f.time.max():
                log.info("%s covers %s..%s; dates outside are clamped", name, f.time.min(), f.time.max())
            on_dates = interp_time(vals, f.time, dates)
        out[k] = regrid_bilinear(on_dates, sy, sx, y, x)
    return out
