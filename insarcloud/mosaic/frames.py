"""A frame as the chunked mosaic sees it: lazily opened maps and where they fall on the area grid.

Nothing of a frame is read when it is opened but its coordinates; :meth:`LazyFrame.read` returns the
velocity, its precision and the LOS unit vectors of one window of the area grid only (numpy), with the noise
group's GLS velocity and precision taken where finite exactly as :func:`insarcloud.mosaic.area.load_frame`
does for the whole frame. So the mosaic holds, per frame, two 1-D index vectors and never a frame-sized array.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from insarcloud.io import open_cube, read_marker

MAPS = ("velocity", "velocity_std", "los_e", "los_n", "los_u")


def _values(da: xr.DataArray) -> np.ndarray:
    """A small window's values, read in this thread (no distributed client: the driver's own windows)."""
    data = da.data
    if hasattr(data, "compute"):
        return np.asarray(data.compute(scheduler="sync"))
    return np.asarray(data)


class LazyFrame:
    """One frame cube, opened lazily: ``frame``, ``direction``, ``lat``/``lon`` (1-D), ``iy``/``ix`` (its rows'
    and columns' indices on the area grid, set by :meth:`on_grid`)."""

    def __init__(self, url: str, ts_group: str | None, storage_options: dict[str, Any] | None = None,
                 precision_group: str | None = "noise") -> None:
        from insarcloud.io import stages

        self.url = url
        self.ts_group = stages.input_group(url, "invert", ts_group, storage_options)
        pg = precision_group and stages.optional_input_group(url, "noise", precision_group, storage_options)
        self.root = open_cube(url, storage_options)
        self.ts = open_cube(url, storage_options, group=self.ts_group)
        self.frame = str(self.root.attrs.get("frame"))
        self.direction = self.frame[3:4]
        self.lat = np.asarray(self.root["y"].values)
        self.lon = np.asarray(self.root["x"].values)
        self.pg: xr.Dataset | None = None
        if pg and (read_marker(url, pg, storage_options) or {}).get("complete"):
            ds = open_cube(url, storage_options, group=pg)
            if {"velocity", "velocity_std"} <= set(ds.data_vars):
                self.pg = ds
        self.iy = np.zeros(0, int)
        self.ix = np.zeros(0, int)

    @property
    def extent(self) -> tuple[float, float, float, float]:
        return float(self.lon.min()), float(self.lat.min()), float(self.lon.max()), float(self.lat.max())

    def on_grid(self, grid_lat: np.ndarray, grid_lon: np.ndarray) -> LazyFrame:
        """Index this frame's rows and columns on the area grid (nearest pixel centre, as ``kernels.place``)."""
        from insarcloud.errors import InputArrayError

        step = float(grid_lon[1] - grid_lon[0]) if grid_lon.size > 1 else 0.001
        self.ix = np.round((self.lon - grid_lon[0]) / step).astype(int)
        self.iy = np.round((grid_lat[0] - self.lat) / step).astype(int)
        if np.abs(self.lon - (grid_lon[0] + self.ix * step)).max(initial=0) > step / 2 + 1e-9:
            raise InputArrayError(f"{self.url}: frame longitudes are not on the area grid")
        return self

    def rows_cols(self, y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Frame row and column numbers that fall inside area window [y0:y1, x0:x1], or None."""
        ry = np.flatnonzero((self.iy >= y0) & (self.iy < y1))
        rx = np.flatnonzero((self.ix >= x0) & (self.ix < x1))
        if ry.size == 0 or rx.size == 0:
            return None
        return ry, rx

    def read(self, ry: np.ndarray, rx: np.ndarray, names: tuple[str, ...] = MAPS) -> dict[str, np.ndarray]:
        """(rows, cols) of the frame's maps ``names``, read as one rectangular window (numpy)."""
        fy, fx = slice(int(ry[0]), int(ry[-1]) + 1), slice(int(rx[0]), int(rx[-1]) + 1)
        sub = (ry - ry[0])[:, None], (rx - rx[0])[None, :]
        out: dict[str, np.ndarray] = {}
        want_v = "velocity" in names or "velocity_std" in names
        if want_v:
            vel = _values(self.ts["velocity"].isel(y=fy, x=fx)).astype("float32")
            std = _values(self.ts["velocity_std"].isel(y=fy, x=fx)).astype("float32")
            if self.pg is not None:
                pv = _values(self.pg["velocity"].isel(y=fy, x=fx)).astype("float32")
                ps = _values(self.pg["velocity_std"].isel(y=fy, x=fx)).astype("float32")
                ok = np.isfinite(pv) & np.isfinite(ps) & (ps > 0)
                vel, std = np.where(ok, pv, vel), np.where(ok, ps, std)
            out["velocity"], out["velocity_std"] = vel, std
        for n in names:
            if n.startswith("los_"):
                if n in self.root:
                    out[n] = _values(self.root[n].isel(y=fy, x=fx))
                else:
                    from insarcloud.mosaic.area import _los_fallback

                    out[n] = _los_fallback(self.root, n)[fy, fx]
        return {n: out[n][sub] for n in names}
