"""What the viewer shows, read from a frame or area cube one pixel (or one 2-D map) at a time.

The cube is opened with ``chunks=None`` (xarray's lazy indexing, no Dask): indexing one pixel of a
(date, y, x) array reads the one Zarr chunk (per date block) that holds it, never the whole stack; a map is one
2-D variable. Everything returned is plain JSON-able Python (lists of floats, None for NaN).
"""

from __future__ import annotations

import io as _io
import json
import logging
from typing import Any

import numpy as np
import xarray as xr

from insarcloud.errors import CubeError, InputArrayError

log = logging.getLogger(__name__)

MAX_MAP_SIDE = 1024  # the map PNG is strided down to at most this many pixels per side
CMAP = "RdBu_r"
MASK_RGBA = (150, 150, 150, 255)  # masked (NaN) pixels: flat grey, also in the colour bar's legend


def _open(url: str, group: str | None, storage_options: dict[str, Any] | None) -> xr.Dataset:
    from insarcloud.io.storage import storage_options_for

    try:
        return xr.open_zarr(url, group=group, consolidated=False, chunks=None, decode_coords="all",
                            storage_options=storage_options_for(url, storage_options) if "://" in url else None)
    except (FileNotFoundError, KeyError, OSError, ValueError) as exc:
        where = f"group {group!r} of " if group else ""
        raise CubeError(f"cannot open {where}{url}: {exc}") from exc


def _hex(rgb: tuple[int, ...]) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in rgb[:3])


def _complete(ds: xr.Dataset) -> bool:
    marker = ds.attrs.get("insarcloud", {})
    return isinstance(marker, dict) and bool(marker.get("complete"))


def _list(a: Any) -> list[float | None]:
    arr = np.asarray(a, dtype="float64").ravel()
    return [None if not np.isfinite(v) else round(float(v), 4) for v in arr]


def _dates(values: Any) -> list[str]:
    return [str(np.datetime64(v, "D")) for v in np.asarray(values)]


def _years(values: Any) -> np.ndarray:
    days = (np.asarray(values, dtype="datetime64[ns]") - np.asarray(values, dtype="datetime64[ns]")[0])
    return days.astype("timedelta64[s]").astype("float64") / 86400.0 / 365.25


def fit_line(dates: Any, values: np.ndarray, slope: float) -> dict[str, Any] | None:
    """The rate line drawn through a series: the stored velocity (mm/yr) with the LS intercept for that slope."""
    t = _years(dates)
    ok = np.isfinite(values)
    if not ok.any() or not np.isfinite(slope):
        return None
    intercept = float(np.mean(values[ok] - slope * t[ok]))
    return {"rate_mm_yr": round(float(slope), 4), "start": _dates(dates)[0], "end": _dates(dates)[-1],
            "value_start": round(intercept, 4), "value_end": round(intercept + slope * float(t[-1]), 4)}


class CubeView:
    """A frame cube's ts group (``kind='frame'``) or an area cube (``kind='area'``), ready to serve."""

    def __init__(self, url: str, group: str | None = None, storage_options: dict[str, Any] | None = None) -> None:
        self.url, self.so = url, storage_options
        root = _open(url, None, storage_options)
        self.root = root
        self.kind = "area" if any(v in root for v in ("velocity_A", "velocity_D", "velocity_up")) and \
            "phase" not in root else "frame"
        if self.kind == "frame":
            from insarcloud.config import InvertParams
            from insarcloud.io.stages import current_group, input_group

            # the invert stage's current output (docs/STAGES.md); a name picks that kind's current output
            try:
                self.group = input_group(url, "invert", group, storage_options)
            except CubeError:
                self.group = group or f"ts_{InvertParams().weights}"
            try:
                self.ts = _open(url, self.group, storage_options)
            except CubeError as exc:
                from insarcloud.io import list_groups

                ts_groups = [g for g in list_groups(url, storage_options) if g.startswith("ts_")]
                raise CubeError(f"{url} has no group {self.group!r}; its ts groups: {ts_groups or 'none'} "
                                "(choose one with --group)") from exc
            if not _complete(self.ts):
                raise CubeError(f"group {self.group!r} of {url} is incomplete (its stage did not finish)")
            self.extra = {name: self._optional(current_group(url, name, storage_options) or name)
                          for name in ("quality", "noise", "forecast")}
            self.layers = [v for v in ("velocity", "velocity_std", "residual_rms") if v in self.ts]
            self.grid = self.ts
        else:
            self.group = group
            self.ts = _open(url, group, storage_options) if group else root
            self.extra = {}
            self.layers = [v for v in ("velocity_up", "velocity_east", "velocity_A", "velocity_D",
                                       "velocity_up_std", "velocity_east_std", "velocity_std_A", "velocity_std_D")
                           if v in self.ts]
            self.grid = self.ts
        if not self.layers:
            raise CubeError(f"{url} {self.group or ''} has no velocity map to show (has {sorted(self.ts.data_vars)})")
        self.ny, self.nx = int(self.grid.sizes["y"]), int(self.grid.sizes["x"])
        self.stride = max(1, int(np.ceil(max(self.ny, self.nx) / MAX_MAP_SIDE)))

    def _optional(self, group: str) -> xr.Dataset | None:
        try:
            ds = _open(self.url, group, self.so)
        except CubeError:
            return None
        return ds if _complete(ds) else None

    # ---------------------------------------------------------------------------------------------- maps
    def reference(self) -> dict[str, Any] | None:
        a = self.ts.attrs
        if "ref_y" in a and "ref_x" in a:
            return {"y": int(a["ref_y"]), "x": int(a["ref_x"]), "lat": a.get("ref_lat"), "lon": a.get("ref_lon"),
                    "kind": "point"}
        mosaic = a.get("mosaic")
        if isinstance(mosaic, str):
            try:
                box = json.loads(mosaic).get("reference_area")
            except ValueError:
                box = None
            if box:
                y = self.grid["y"].values
                x = self.grid["x"].values
                ix0, ix1 = int(np.abs(x - box[0]).argmin()), int(np.abs(x - box[2]).argmin())
                iy0, iy1 = int(np.abs(y - box[3]).argmin()), int(np.abs(y - box[1]).argmin())
                return {"y": (iy0 + iy1) // 2, "x": (ix0 + ix1) // 2, "box": [iy0, ix0, iy1, ix1], "kind": "area",
                        "lat": None, "lon": None}
        return None

    def meta(self) -> dict[str, Any]:
        y, x = self.grid["y"].values, self.grid["x"].values
        out: dict[str, Any] = {
            "url": self.url, "kind": self.kind, "group": self.group, "ny": self.ny, "nx": self.nx,
            "stride": self.stride, "layers": self.layers, "lat0": float(y[0]), "lat1": float(y[-1]),
            "lon0": float(x[0]), "lon1": float(x[-1]), "reference": self.reference(),
            "frame": self.root.attrs.get("frame"),
            "groups": {k: v is not None for k, v in self.extra.items()},
            "sign": "LOS positive toward the satellite; up positive upward; east positive eastward",
        }
        return out

    def layer_values(self, layer: str) -> np.ndarray:
        if layer not in self.layers:
            raise InputArrayError(f"no map layer {layer!r}; layers are {self.layers}")
        s = self.stride
        return np.asarray(self.grid[layer].isel(y=slice(None, None, s), x=slice(None, None, s)).values, "float64")

    def colour_scale(self, layer: str, values: np.ndarray) -> dict[str, Any]:
        from matplotlib import colormaps

        finite = values[np.isfinite(values)]
        std_like = "std" in layer or layer == "residual_rms"
        if finite.size == 0:
            lo, hi = -1.0, 1.0
        elif std_like:
            lo, hi = 0.0, float(np.percentile(finite, 98)) or 1.0
        else:
            m = float(np.percentile(np.abs(finite), 98)) or 1.0
            lo, hi = -m, m
        cmap = "viridis" if std_like else CMAP
        stops = [_hex(tuple(int(255 * c) for c in colormaps[cmap](f)[:3])) for f in np.linspace(0, 1, 11)]
        units = str(self.grid[layer].attrs.get("units", "mm/yr"))
        return {"layer": layer, "vmin": lo, "vmax": hi, "cmap": cmap, "stops": stops, "units": units,
                "long_name": str(self.grid[layer].attrs.get("long_name", layer)),
                "masked_colour": _hex(MASK_RGBA[:3]),
                "masked_share": round(float(1 - finite.size / max(values.size, 1)), 4)}

    def map_png(self, layer: str) -> tuple[bytes, dict[str, Any]]:
        from matplotlib import colormaps
        from matplotlib.image import imsave

        values = self.layer_values(layer)
        scale = self.colour_scale(layer, values)
        x = np.clip((values - scale["vmin"]) / (scale["vmax"] - scale["vmin"]), 0.0, 1.0)
        rgba = (colormaps[scale["cmap"]](np.nan_to_num(x)) * 255).astype(np.uint8)
        rgba[~np.isfinite(values)] = MASK_RGBA
        buf = _io.BytesIO()
        imsave(buf, rgba, format="png")
        return buf.getvalue(), scale

    # ---------------------------------------------------------------------------------------------- pixels
    def _check(self, iy: int, ix: int) -> None:
        if not (0 <= iy < self.ny and 0 <= ix < self.nx):
            raise InputArrayError(f"pixel ({iy}, {ix}) is outside the {self.ny} x {self.nx} grid")

    def pixel(self, iy: int, ix: int) -> dict[str, Any]:
        self._check(iy, ix)
        g = self.grid
        out: dict[str, Any] = {"y": iy, "x": ix, "lat": round(float(g["y"].values[iy]), 6),
                               "lon": round(float(g["x"].values[ix]), 6), "series": [], "values": {}}
        for layer in self.layers:
            out["values"][layer] = _list(g[layer].isel(y=iy, x=ix).values)[0]
        if self.kind == "frame":
            self._frame_pixel(iy, ix, out)
        else:
            self._area_pixel(iy, ix, out)
        return out

    def _frame_pixel(self, iy: int, ix: int, out: dict[str, Any]) -> None:
        ts = self.ts
        dates = ts["date"].values
        disp = np.asarray(ts["displacement"].isel(y=iy, x=ix).values, "float64")
        std, std_source = None, None
        noise = self.extra.get("noise")
        if noise is not None and "series_std" in noise:
            s = float(noise["series_std"].isel(y=iy, x=ix).values)
            if np.isfinite(s):
                std, std_source = s, "noise group series_std (per-epoch noise std under the estimated model)"
        if std is None and "residual_rms" in ts:
            s = float(ts["residual_rms"].isel(y=iy, x=ix).values)
            if np.isfinite(s):
                std, std_source = s, "ts residual_rms (RMS of the pixel's interferogram residuals)"
        vel = float(ts["velocity"].isel(y=iy, x=ix).values) if "velocity" in ts else float("nan")
        out["series"].append({
            "name": "LOS", "units": "mm", "dates": _dates(dates), "values": _list(disp),
            "std": None if std is None else [round(std, 4)] * len(dates), "std_source": std_source,
            "fit": fit_line(dates, disp, vel),
            "velocity_std": _list(ts["velocity_std"].isel(y=iy, x=ix).values)[0] if "velocity_std" in ts else None,
        })
        fc = self.extra.get("forecast")
        if fc is not None and "displacement" in fc:
            out["forecast"] = {"dates": _dates(fc["forecast_date"].values),
                               "values": _list(fc["displacement"].isel(y=iy, x=ix).values),
                               "model": fc.attrs.get("model")}
        q = self.extra.get("quality")
        if q is not None and "quality" in q:
            vals = np.asarray(q["quality"].isel(y=iy, x=ix).values, "float64")
            pairs = [str(p) for p in q["pair"].values]
            out["pairs"] = {"names": pairs, "quality": _list(vals), "source": "quality group"}
        out["n_pairs_used"] = _list(ts["n_pairs_used"].isel(y=iy, x=ix).values)[0] if "n_pairs_used" in ts else None

    def _area_pixel(self, iy: int, ix: int, out: dict[str, Any]) -> None:
        ds = self.ts
        for comp in ("A", "D", "up", "east"):
            name = f"displacement_{comp}"
            if name not in ds:
                continue
            dates = ds["date"].values
            disp = np.asarray(ds[name].isel(y=iy, x=ix).values, "float64")
            std_name = f"{name}_std" if comp in ("up", "east") else f"displacement_std_{comp}"
            std = None
            if std_name in ds:
                s = float(ds[std_name].isel(y=iy, x=ix).values)
                std = None if not np.isfinite(s) else [round(s, 4)] * len(dates)
            vel = float(ds[f"velocity_{comp}"].isel(y=iy, x=ix).values) if f"velocity_{comp}" in ds else float("nan")
            vstd = f"velocity_{comp}_std" if comp in ("up", "east") else f"velocity_std_{comp}"
            label = {"A": "LOS ascending", "D": "LOS descending"}.get(comp, comp)
            out["series"].append({"name": label, "units": "mm", "dates": _dates(dates), "values": _list(disp),
                                  "std": std, "std_source": std_name if std else None,
                                  "fit": fit_line(dates, disp, vel),
                                  "velocity_std": _list(ds[vstd].isel(y=iy, x=ix).values)[0] if vstd in ds else None})
