"""Environmental factors (LST, NDVI, precipitation) and the permafrost deformation they drive.

Pure numpy kernels (``simulate_factors``, ``simulate_permafrost_ts``) plus one thin writer
(``write_factor_stack``) that stores the factors as a Zarr store, a NetCDF file or GeoTIFF time stacks.

Physics (kept deliberately simple, but causal):

* LST (degree_Celsius) is a seasonal cosine peaking late July, with a per-pixel mean (a smooth
  "elevation" field), a smooth random inter-annual anomaly and white noise; sampled every 8 days on a
  coarse grid (MOD11A2-like).
* NDVI is summer greening that follows LST above 0 degC with a ~20 day lag, every 16 days (MOD13Q1-like).
* Precipitation is a monsoon: monthly totals (mm/month) concentrated in June-September (ERA5-Land-like).
* Ground temperature is LST delayed by ``lag_days`` and damped; the active layer thaws by Stefan's law
  (thaw depth^2 proportional to accumulated thawing degree-days) and refreezes likewise. Thaw settlement
  is proportional to the thaw depth (seasonal subsidence in summer, frost heave back in autumn), and thaw
  deeper than any earlier year melts ground ice irreversibly (extra settlement, so warm years leave a
  step). A linear creep trend and white noise complete the LOS series (mm, + toward the satellite).
"""

from __future__ import annotations

import logging
from typing import Literal, NamedTuple

import numpy as np

log = logging.getLogger(__name__)

FactorFormat = Literal["zarr", "netcdf", "geotiff"]

_DAY = np.timedelta64(1, "D")


class FactorSeries(NamedTuple):
    """Simulated environmental factors, each on its own native time axis.

    Attributes
    ----------
    lst_time, ndvi_time, precip_time : ndarray (n_t,) datetime64[ns]
        Acquisition dates (8-day, 16-day, first day of each month).
    lst : ndarray (n_lst, y, x) float32, degree_Celsius
    ndvi : ndarray (n_ndvi, y, x) float32, 0..1
    precip : ndarray (n_month, y, x) float32, mm/month
    y, x : ndarray float64
        Grid of pixel centres (degrees_north descending, degrees_east).
    daily_time : ndarray (n_day,) datetime64[ns]
    daily_lst : ndarray (n_day, y, x) float32
        Noise-free daily LST used to drive the ground (degree_Celsius).
    """

    lst_time: np.ndarray
    lst: np.ndarray
    ndvi_time: np.ndarray
    ndvi: np.ndarray
    precip_time: np.ndarray
    precip: np.ndarray
    y: np.ndarray
    x: np.ndarray
    daily_time: np.ndarray
    daily_lst: np.ndarray


class PermafrostSeries(NamedTuple):
    """Simulated permafrost LOS displacement on InSAR dates.

    Attributes
    ----------
    displacement : ndarray (date, y, x) float32, mm, + toward the satellite, 0 at the first date
    clean : ndarray (date, y, x) float32, mm, the same without noise
    trend_mm_yr : ndarray (y, x) float32, mm/yr, the imposed creep rate
    thaw_depth : ndarray (date, y, x) float32, m, the simulated active-layer thaw depth
    """

    displacement: np.ndarray
    clean: np.ndarray
    trend_mm_yr: np.ndarray
    thaw_depth: np.ndarray


def _smooth_field(shape: tuple[int, int], rng: np.random.Generator, scale: float) -> np.ndarray:
    """Smooth random field in [-1, 1] (a few low-frequency cosines; cheap and deterministic)."""
    ny, nx = shape
    yy, xx = np.meshgrid(np.linspace(0, 1, ny), np.linspace(0, 1, nx), indexing="ij")
    f = np.zeros(shape)
    for _ in range(4):
        ky, kx = rng.uniform(0.3, 1.5, 2) / max(scale, 1e-3)
        ph = rng.uniform(0, 2 * np.pi, 2)
        f += np.cos(2 * np.pi * ky * yy + ph[0]) * np.cos(2 * np.pi * kx * xx + ph[1])
    return f / max(np.abs(f).max(), 1e-9)


def _doy_frac(t: np.ndarray) -> np.ndarray:
    """Fraction of the year (0..1) of datetime64 values (uses 365.25-day years from 2000-01-01)."""
    days = (t - np.datetime64("2000-01-01", "ns")) / _DAY
    return np.mod(days / 365.25, 1.0)


def daily_lst_field(
    days: np.ndarray, lst_mean: np.ndarray, amp: float, anomaly: np.ndarray, peak_doy: float = 205.0
) -> np.ndarray:
    """Noise-free LST (degree_Celsius) of shape (day, y, x): seasonal cosine + mean + anomaly(day)."""
    phase = 2 * np.pi * (_doy_frac(days) - peak_doy / 365.25)
    seas = amp * np.cos(phase) + anomaly
    return (lst_mean[None] + seas[:, None, None]).astype(np.float32)


def simulate_factors(
    start: str | np.datetime64,
    end: str | np.datetime64,
    y: np.ndarray,
    x: np.ndarray,
    *,
    rng: np.random.Generator,
    lst_mean_c: float = -3.0,
    lst_amp_c: float = 14.0,
    anomaly_c: float = 1.5,
    ndvi_lag_days: float = 20.0,
    precip_annual_mm: float = 400.0,
) -> FactorSeries:
    """Simulate LST, NDVI and precipitation on the grid (y, x) between ``start`` and ``end``.

    Parameters
    ----------
    start, end : date-like
        Period (inclusive) covered; the daily driver starts one year earlier so that the ground has a
        thermal history at ``start``.
    y, x : ndarray float64
        Factor grid (degrees), usually coarser than the frame grid.
    rng : numpy Generator
    lst_mean_c, lst_amp_c : float
        Mean and seasonal amplitude of LST (degree_Celsius).
    anomaly_c : float
        Standard deviation of the smooth inter-annual LST anomaly (degree_Celsius).
    ndvi_lag_days : float
        Lag of greening behind LST.
    precip_annual_mm : float
        Mean annual precipitation (mm).
    """
    t0 = np.datetime64(start, "D") - np.timedelta64(366, "D")
    t1 = np.datetime64(end, "D")
    days = np.arange(t0, t1 + _DAY, _DAY).astype("datetime64[ns]")
    ny, nx = len(y), len(x)
    lst_mean = lst_mean_c + 2.0 * _smooth_field((ny, nx), rng, 1.0)
    # inter-annual anomaly: a random value every ~120 days, smoothly interpolated
    knots = np.arange(0, len(days) + 120, 120)
    anomaly = np.interp(np.arange(len(days)), knots, rng.normal(0, anomaly_c, len(knots)))
    daily = daily_lst_field(days, lst_mean, lst_amp_c, anomaly)

    sel = days >= np.datetime64(start, "ns")
    lst_idx = np.flatnonzero(sel)[::8]
    lst = daily[lst_idx] + rng.normal(0, 1.0, (len(lst_idx), ny, nx)).astype(np.float32)

    # NDVI: greening follows LST above freezing, lagged
    lag = int(round(ndvi_lag_days))
    ndvi_idx = np.flatnonzero(sel)[::16]
    warm = np.clip(daily[np.maximum(ndvi_idx - lag, 0)] / lst_amp_c, 0, None)
    ndvi_base = 0.12 + 0.05 * _smooth_field((ny, nx), rng, 1.0)
    ndvi = ndvi_base[None] + 0.35 * warm + rng.normal(0, 0.015, (len(ndvi_idx), ny, nx))
    ndvi = np.clip(ndvi, 0.0, 1.0).astype(np.float32)

    # precipitation: monthly totals, monsoon weights peaking in July-August
    months = np.arange(np.datetime64(start, "M"), np.datetime64(end, "M") + 1).astype("datetime64[ns]")
    m = ((months.astype("datetime64[M]").astype(int)) % 12) + 1
    w = np.exp(-0.5 * ((m - 7.5) / 1.6) ** 2)
    w = w / np.exp(-0.5 * ((np.arange(1, 13) - 7.5) / 1.6) ** 2).sum()
    spatial = 1.0 + 0.2 * _smooth_field((ny, nx), rng, 1.0)
    gam = rng.gamma(4.0, 0.25, (len(months), 1, 1))
    precip = (precip_annual_mm * w[:, None, None] * spatial[None] * gam + 1.0).astype(np.float32)

    return FactorSeries(
        lst_time=days[lst_idx], lst=lst.astype(np.float32), ndvi_time=days[ndvi_idx], ndvi=ndvi,
        precip_time=months, precip=precip, y=np.asarray(y, float), x=np.asarray(x, float),
        daily_time=days, daily_lst=daily,
    )


def _upsample_nearest(a: np.ndarray, src_y: np.ndarray, src_x: np.ndarray,
                      y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Nearest-neighbour map of a (..., sy, sx) field onto (y, x) (for the ground driver only)."""
    iy = np.abs(src_y[:, None] - np.asarray(y)[None]).argmin(0)
    ix = np.abs(src_x[:, None] - np.asarray(x)[None]).argmin(0)
    return a[..., iy[:, None], ix[None, :]]


def simulate_permafrost_ts(
    factors: FactorSeries,
    dates: np.ndarray,
    y: np.ndarray,
    x: np.ndarray,
    *,
    rng: np.random.Generator,
    lag_days: float = 25.0,
    damping: float = 0.8,
    settle_mm_per_m: float = 14.0,
    ice_mm_per_m: float = 60.0,
    trend_mm_yr: tuple[float, float] = (-12.0, 2.0),
    noise_mm: float = 1.0,
    incidence_deg: float = 34.7,
) -> PermafrostSeries:
    """Permafrost heave/thaw LOS displacement on ``dates`` driven by the simulated LST.

    Parameters
    ----------
    factors : FactorSeries
        From :func:`simulate_factors` (its noise-free daily LST drives the ground).
    dates : ndarray (date,) datetime64[ns]
        InSAR acquisition dates (e.g. every 12 days), within the factor period.
    y, x : ndarray
        Frame grid; the ground driver is taken from the nearest factor pixel.
    lag_days, damping : float
        Ground temperature = damping * LST(t - lag_days).
    settle_mm_per_m, ice_mm_per_m : float
        Seasonal (reversible) settlement per metre of thaw, irreversible settlement per metre of thaw
        beyond the previous maximum (ground-ice melt). Scaled per pixel by a smooth ice-content field.
    trend_mm_yr : (low, high)
        Range of the per-pixel linear creep (mm/yr, vertical; negative = subsidence).
    noise_mm : float
        White noise on each date (mm).
    incidence_deg : float
        Vertical motion is projected to LOS with cos(incidence).
    """
    dates = np.asarray(dates).astype("datetime64[ns]")
    days = factors.daily_time
    if dates.min() < days[0] or dates.max() > days[-1]:
        raise ValueError(f"dates {dates.min()}..{dates.max()} outside factor period {days[0]}..{days[-1]}")
    ny, nx = len(y), len(x)
    lag = int(round(lag_days))
    tg_src = damping * np.concatenate([np.repeat(factors.daily_lst[:1], lag, 0), factors.daily_lst[:-lag or None]])
    tg = _upsample_nearest(tg_src, factors.y, factors.x, y, x)  # (day, y, x)

    # Stefan: h^2 grows with thawing degree-days, shrinks with freezing degree-days
    k_thaw, k_freeze, h_max = 2.0e-3, 2.5e-3, 3.5  # m^2/(degC day), m
    h2 = np.zeros((ny, nx))
    hmax_seen = np.zeros((ny, nx))
    ice = 0.6 + 0.4 * (_smooth_field((ny, nx), rng, 0.7) + 1) / 2
    h_daily = np.empty((len(days), ny, nx), np.float32)
    irrev = np.empty((len(days), ny, nx), np.float32)
    lost = np.zeros((ny, nx))
    spinup = int(np.searchsorted(days, dates.min()))
    for i in range(len(days)):
        t = tg[i]
        h2 = np.clip(h2 + np.where(t > 0, k_thaw * t, k_freeze * t), 0.0, h_max**2)
        h = np.sqrt(h2)
        if i >= spinup:  # irreversible melt only counts once the record starts
            deeper = np.maximum(h - hmax_seen, 0.0)
            lost += deeper
        hmax_seen = np.maximum(hmax_seen, h)
        h_daily[i] = h
        irrev[i] = lost

    idx = np.searchsorted(days, dates)
    h_d = h_daily[idx]
    years = (dates - dates[0]) / _DAY / 365.25
    trend = rng.uniform(*trend_mm_yr) + 3.0 * _smooth_field((ny, nx), rng, 0.8)
    vertical = (-settle_mm_per_m * ice[None] * h_d - ice_mm_per_m * ice[None] * irrev[idx]
                + trend[None] * years[:, None, None])
    los = vertical * np.cos(np.deg2rad(incidence_deg))
    los = los - los[:1]
    noisy = los + rng.normal(0, noise_mm, los.shape)
    noisy = noisy - noisy[:1]
    return PermafrostSeries(
        displacement=noisy.astype(np.float32), clean=los.astype(np.float32),
        trend_mm_yr=trend.astype(np.float32), thaw_depth=h_d.astype(np.float32),
    )


def factors_dataset(f: FactorSeries):  # -> xarray.Dataset
    """The factors as an xarray Dataset with separate time axes (``lst_time``, ``ndvi_time``, ``precip_time``)."""
    import xarray as xr

    coords = {"y": ("y", f.y, {"units": "degrees_north", "standard_name": "latitude"}),
              "x": ("x", f.x, {"units": "degrees_east", "standard_name": "longitude"})}
    ds = xr.Dataset(
        {
            "lst": (("lst_time", "y", "x"), f.lst, {"units": "degree_Celsius",
                                                    "long_name": "land surface temperature"}),
            "ndvi": (("ndvi_time", "y", "x"), f.ndvi, {"units": "1", "long_name": "NDVI"}),
            "precip": (("precip_time", "y", "x"), f.precip, {"units": "mm/month",
                                                             "long_name": "monthly precipitation"}),
        },
        coords={**coords, "lst_time": f.lst_time, "ndvi_time": f.ndvi_time, "precip_time": f.precip_time},
        attrs={"source": "insarcloud.simulate.factors", "crs": "EPSG:4326"},
    )
    return ds


def write_factor_stack(f: FactorSeries, url: str, fmt: FactorFormat = "zarr",
                       storage_options: dict | None = None) -> list[str]:
    """Write the factors to ``url`` as Zarr, NetCDF (NETCDF3, scipy engine) or GeoTIFF time stacks.

    GeoTIFF: ``url`` is a prefix; one file per factor (``{url}/lst.tif`` ...) with one band per date and
    the ISO date as each band's description. Returns the URLs written.
    """
    import fsspec

    ds = factors_dataset(f)
    so = storage_options or {}
    if fmt == "zarr":
        ds.to_zarr(url, mode="w", storage_options=so or None, consolidated=False)
        return [url]
    if fmt == "netcdf":
        payload = ds.to_netcdf(engine="scipy")
        with fsspec.open(url, "wb", **so) as fh:
            fh.write(bytes(payload))
        return [url]
    if fmt == "geotiff":
        import rasterio
        from rasterio.io import MemoryFile
        from rasterio.transform import from_origin

        dy = abs(float(f.y[1] - f.y[0])) if len(f.y) > 1 else 0.01
        dx = abs(float(f.x[1] - f.x[0])) if len(f.x) > 1 else 0.01
        transform = from_origin(float(f.x[0]) - dx / 2, float(f.y[0]) + dy / 2, dx, dy)
        out = []
        for name, tname in (("lst", "lst_time"), ("ndvi", "ndvi_time"), ("precip", "precip_time")):
            arr = ds[name].values
            with MemoryFile() as mem:
                with mem.open(driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
                              dtype="float32", crs="EPSG:4326", transform=transform) as dst:
                    dst.write(arr)
                    for b, t in enumerate(ds[tname].values, start=1):
                        dst.set_band_description(b, str(np.datetime64(t, "D")))
                    dst.update_tags(units=ds[name].attrs["units"], variable=name)
                data = mem.read()
            u = f"{url.rstrip('/')}/{name}.tif"
            with fsspec.open(u, "wb", **so) as fh:
                fh.write(data)
            out.append(u)
        _ = rasterio  # imported for its driver registry
        return out
    raise ValueError(f"unknown factor format {fmt!r} (zarr, netcdf, geotiff)")


class PermafrostRegion(NamedTuple):
    """A simulated region: factors on a coarse grid and the LOS series they drive on the frame grid.

    Attributes
    ----------
    dates : ndarray (date,) datetime64[ns], every 12 days
    y, x : ndarray, frame grid
    factors : FactorSeries (coarse grid, native time axes)
    ts : PermafrostSeries on (date, y, x)
    """

    dates: np.ndarray
    y: np.ndarray
    x: np.ndarray
    factors: FactorSeries
    ts: PermafrostSeries


def simulate_region(ny: int = 16, nx: int = 16, *, start: str = "2019-01-06", n_dates: int = 183,
                    step_days: int = 12, rng: np.random.Generator, lat0: float = 35.6, lon0: float = 93.0,
                    spacing_deg: float = 0.001, factor_spacing_deg: float = 0.004, **kwargs) -> PermafrostRegion:
    """Simulate factors and permafrost LOS displacement for a (ny, nx) frame patch on 12-day dates.

    ``kwargs`` go to :func:`simulate_permafrost_ts` (lag_days, noise_mm, trend_mm_yr, ...).
    """
    dates = (np.datetime64(start, "D") + np.arange(n_dates) * np.timedelta64(step_days, "D")).astype(
        "datetime64[ns]")
    y = lat0 - spacing_deg * np.arange(ny)
    x = lon0 + spacing_deg * np.arange(nx)
    nfy = max(2, int(np.ceil(ny * spacing_deg / factor_spacing_deg)) + 1)
    nfx = max(2, int(np.ceil(nx * spacing_deg / factor_spacing_deg)) + 1)
    fy = lat0 + spacing_deg - factor_spacing_deg * np.arange(nfy)
    fx = lon0 - spacing_deg + factor_spacing_deg * np.arange(nfx)
    end = dates[-1].astype("datetime64[D]") + np.timedelta64(31, "D")
    f = simulate_factors(np.datetime64(start, "D") - np.timedelta64(20, "D"), end, fy, fx, rng=rng)
    ts = simulate_permafrost_ts(f, dates, y, x, rng=rng, **kwargs)
    return PermafrostRegion(dates, y, x, f, ts)
