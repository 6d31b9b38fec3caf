"""Write the area cube's displacement series, one area tile at a time (method: :mod:`insarcloud.mosaic.series`).

Memory is bounded by one tile: for each ``tile`` x ``tile`` window of the area grid, only the frames' chunks
that cover it are read (all dates of those pixels), resampled, combined and decomposed, then written as a
chunk-aligned region of ``displacement_{A,D}``, ``displacement_east`` and ``displacement_up``. No (date, y, x)
array of the whole area is ever held.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from insarcloud.io import open_cube, read_marker, write_stage_region
from insarcloud.mosaic.frames import _values
from insarcloud.mosaic.kernels import decompose_east_up
from insarcloud.mosaic.series import (
    common_dates,
    interp_weights,
    resample_series,
    trend_correction,
    years_since,
)

log = logging.getLogger(__name__)

SERIES_TILE = 256  # default area tile side for up to 128 dates; see series_tile_for
CHUNK_BUDGET = 32 * 2**20  # bytes of one (date, tile, tile) float32 chunk of a series


def series_tile_for(n_dates: int) -> int:
    """The largest tile side (512, 256, 128 or 64) whose (date, tile, tile) float32 chunk fits CHUNK_BUDGET.

    One tile's working set is a few such arrays (measured: benchmarks/mosaic_series.py), so the memory of the
    series stays near that of a chunk whatever the area's size or the number of dates.
    """
    for side in (512, 256, 128):
        if n_dates * side * side * 4 <= CHUNK_BUDGET:
            return side
    return 64


class FrameSeries:
    """One frame's lazily opened displacement and what places it on the area grid; ``frame`` is the frame's
    :class:`insarcloud.mosaic.frames.LazyFrame` (its precision is read by windows too)."""

    def __init__(self, url: str, ts_group: str, frame: Any, lat: np.ndarray, lon: np.ndarray, grid_lat: np.ndarray,
                 grid_lon: np.ndarray, storage_options: dict[str, Any] | None, precision_group: str | None) -> None:
        self.frame, self.lat, self.lon = frame, lat, lon
        from insarcloud.io import stages

        # the invert and noise stages' current groups (docs/STAGES.md)
        ts_group = stages.input_group(url, "invert", ts_group, storage_options)
        precision_group = precision_group and stages.optional_input_group(url, "noise", precision_group,
                                                                          storage_options)
        self.ts = open_cube(url, storage_options, group=ts_group)
        self.dates = self.ts["date"].values
        step = float(grid_lon[1] - grid_lon[0]) if grid_lon.size > 1 else 0.001
        self.iy = np.round((grid_lat[0] - lat) / step).astype(int)
        self.ix = np.round((lon - grid_lon[0]) / step).astype(int)
        # per-epoch noise std of a series: the noise stage's estimate, else the inversion's residual RMS
        self.std_source: xr.DataArray | None = None
        if precision_group and (read_marker(url, precision_group, storage_options) or {}).get("complete"):
            pg = open_cube(url, storage_options, group=precision_group)
            if "series_std" in pg:
                self.std_source = pg["series_std"]
        if self.std_source is None and "residual_rms" in self.ts:
            self.std_source = self.ts["residual_rms"]

    def window(self, y0: int, y1: int, x0: int, x1: int) -> tuple[slice, slice, slice, slice] | None:
        """(frame rows, frame cols, tile rows, tile cols) of the frame inside area window [y0:y1, x0:x1]."""
        ry = np.flatnonzero((self.iy >= y0) & (self.iy < y1))
        rx = np.flatnonzero((self.ix >= x0) & (self.ix < x1))
        if ry.size == 0 or rx.size == 0:
            return None
        fy, fx = slice(int(ry[0]), int(ry[-1]) + 1), slice(int(rx[0]), int(rx[-1]) + 1)
        ty = slice(int(self.iy[ry[0]]) - y0, int(self.iy[ry[-1]]) - y0 + 1)
        tx = slice(int(self.ix[rx[0]]) - x0, int(self.ix[rx[-1]]) - x0 + 1)
        return fy, fx, ty, tx


def series_dates(frames: Sequence[FrameSeries]) -> np.ndarray:
    by_dir: dict[str, list[np.ndarray]] = {}
    for f in frames:
        by_dir.setdefault(f.frame.direction, []).append(f.dates)
    return common_dates(by_dir)


def series_template(ds: xr.Dataset, dates: np.ndarray, directions: Sequence[str], tile: int) -> xr.Dataset:
    """Dask placeholders of the series variables (for ``create_stage_template``), chunked by area tile."""
    import dask.array as da

    ny, nx = ds.sizes["y"], ds.sizes["x"]
    nd = dates.size
    c3, c2 = (nd, tile, tile), (tile, tile)
    out = xr.Dataset(coords={"date": ("date", dates, {"long_name": "common date of the area series"})})
    sign = "positive toward the satellite"
    for d in directions:
        name = "ascending" if d == "A" else "descending"
        out[f"displacement_{d}"] = (("date", "y", "x"), da.full((nd, ny, nx), np.nan, "float32", chunks=c3), {
            "units": "mm", "long_name": f"LOS displacement, {name}, mosaicked on common dates",
            "positive": sign, "reference": "first common date and the area datum"})
        out[f"displacement_std_{d}"] = (("y", "x"), da.full((ny, nx), np.nan, "float32", chunks=c2), {
            "units": "mm", "long_name": f"1-sigma of one epoch of displacement_{d} (noise series_std or residual "
            "RMS of the frames)"})
    if len(directions) >= 2:
        for c in ("east", "up"):
            out[f"displacement_{c}"] = (("date", "y", "x"), da.full((nd, ny, nx), np.nan, "float32", chunks=c3), {
                "units": "mm", "long_name": f"{c} displacement (north neglected), per-date decomposition of the "
                "A/D LOS series", "positive": "eastward" if c == "east" else "upward",
                "reference": "first common date and the area datum"})
            out[f"displacement_{c}_std"] = (("y", "x"), da.full((ny, nx), np.nan, "float32", chunks=c2), {
                "units": "mm", "long_name": f"1-sigma of one epoch of displacement_{c}"})
    return out


def _frame_tile(f: FrameSeries, win: tuple[slice, slice, slice, slice], weights: Any, years: np.ndarray,
                corr: dict[str, Any], grid_lat: np.ndarray, grid_lon: np.ndarray, y0: int, x0: int,
                shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One frame's resampled, corrected series on the tile, its combine weight and series std (NaN outside)."""
    fy, fx, ty, tx = win
    nd = years.size
    raw = np.asarray(_values(f.ts["displacement"].isel(y=fy, x=fx)), "float32")
    series = resample_series(raw, weights)
    lat = grid_lat[y0 + ty.start:y0 + ty.stop] - grid_lat.mean()
    lon = grid_lon[x0 + tx.start:x0 + tx.stop] - grid_lon.mean()
    rate = corr["offset"] + corr["ramp"][0] * lon[None, :] + corr["ramp"][1] * lat[:, None]
    series -= trend_correction(rate, years)
    out = np.full((nd, *shape), np.nan, "float32")
    out[:, ty, tx] = series
    vstd = np.full(shape, np.nan, "float32")
    # the frame's (noise-group) precision of these rows and columns only (LazyFrame reads the window)
    vstd[ty, tx] = f.frame.read(np.arange(fy.start, fy.stop), np.arange(fx.start, fx.stop),
                                ("velocity_std",))["velocity_std"]
    sstd = np.full(shape, np.nan, "float32")
    if f.std_source is not None:
        sstd[ty, tx] = np.asarray(_values(f.std_source.isel(y=fy, x=fx)), "float32")
    return out, vstd, sstd


def write_area_series(frames: Sequence[FrameSeries], ds: xr.Dataset, summary: dict[str, Any], dates: np.ndarray,
                      area_url: str, group: str, storage_options: dict[str, Any] | None,
                      tile: int = SERIES_TILE) -> dict[str, Any]:
    """Compute and write the series variables tile by tile into ``group`` (created by the caller).

    ``ds``: the area group with its maps written, opened lazily (its LOS vectors are read per tile)."""
    grid_lat, grid_lon = ds["y"].values, ds["x"].values
    ny, nx = grid_lat.size, grid_lon.size
    years = years_since(dates, dates[0])
    directions = sorted({f.frame.direction for f in frames})
    weights = {id(f): interp_weights(f.dates, dates) for f in frames}
    datum = {}
    for d in directions:
        dd = summary["directions"][d].get("datum", {})
        datum[d] = float(dd["gnss"]["offset"]) if "gnss" in dd else float(dd.get("reference_area_median_removed", 0.0))
    n_tiles = 0
    for y0 in range(0, ny, tile):
        for x0 in range(0, nx, tile):
            y1, x1 = min(ny, y0 + tile), min(nx, x0 + tile)
            shape = (y1 - y0, x1 - x0)
            part: dict[str, Any] = {}
            per_dir: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            for d in directions:
                num = np.zeros((dates.size, *shape), "float32")
                den = np.zeros((dates.size, *shape), "float32")
                var_num = np.zeros(shape)
                wsum2 = np.zeros(shape)
                for f in (f for f in frames if f.frame.direction == d):
                    win = f.window(y0, y1, x0, x1)
                    if win is None:
                        continue
                    info = summary["frames"][f.frame.frame]
                    corr = {"offset": info["offset_mm_yr"], "ramp": info["ramp_mm_yr_per_deg"]}
                    s, vstd, sstd = _frame_tile(f, win, weights[id(f)], years, corr, grid_lat, grid_lon, y0, x0,
                                                shape)
                    w = np.where(np.isfinite(vstd) & (vstd > 0), 1.0 / np.maximum(vstd, 1e-6) ** 2, 0.0)
                    w3 = np.where(np.isfinite(s), w[None].astype("float32"), np.float32(0))
                    den += w3
                    w3 *= np.nan_to_num(s, copy=False)
                    num += w3
                    del s, w3
                    ok = (w > 0) & np.isfinite(sstd)
                    var_num += np.where(ok, w**2 * np.nan_to_num(sstd) ** 2, 0.0)
                    wsum2 += np.where(ok, w, 0.0)
                with np.errstate(invalid="ignore", divide="ignore"):
                    num /= den
                    num[den <= 0] = np.nan
                    num -= (datum[d] * years).astype("float32")[:, None, None]
                    std = np.where(wsum2 > 0, np.sqrt(var_num) / wsum2, np.nan)
                del den
                per_dir[d] = (num, std.astype("float32"))
                part[f"displacement_{d}"] = (("date", "y", "x"), per_dir[d][0])
                part[f"displacement_std_{d}"] = (("y", "x"), per_dir[d][1])
            if len(directions) >= 2:
                win2 = (slice(y0, y1), slice(x0, x1))
                e = [_values(ds[f"los_e_{d}"].isel(y=win2[0], x=win2[1])) for d in directions]
                u = [_values(ds[f"los_u_{d}"].isel(y=win2[0], x=win2[1])) for d in directions]
                stds = [per_dir[d][1] for d in directions]
                east = np.full((dates.size, *shape), np.nan, "float32")
                up = np.full((dates.size, *shape), np.nan, "float32")
                for k in range(dates.size):  # date by date: temporaries of one (y, x) map, not of the stack
                    dec = decompose_east_up([per_dir[d][0][k] for d in directions], stds, e, u)
                    east[k], up[k] = dec.east, dec.up
                prec = decompose_east_up([np.zeros(shape)] * len(directions), stds, e, u)
                part.update(displacement_east=(("date", "y", "x"), east), displacement_up=(("date", "y", "x"), up),
                            displacement_east_std=(("y", "x"), prec.east_std),
                            displacement_up_std=(("y", "x"), prec.up_std))
            write_stage_region(xr.Dataset(part), area_url, group, {"y": slice(y0, y1), "x": slice(x0, x1)},
                               storage_options)
            n_tiles += 1
    log.info("area series: %d dates, %d tiles of %d px written to %s", dates.size, n_tiles, tile, area_url)
    return {"dates": int(dates.size), "first_date": str(dates[0])[:10], "last_date": str(dates[-1])[:10],
            "tiles": n_tiles, "tile": tile,
            "method": "linear interpolation to common dates within each frame's span, re-referenced to the first "
                      "common date; frame and datum corrections of the velocity mosaic applied as trends; per-date "
                      "weighted LS east/up decomposition (north neglected)"}
