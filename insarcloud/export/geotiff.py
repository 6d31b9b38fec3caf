"""Cloud-Optimized GeoTIFFs of a frame's or an area's results for GIS users (QGIS, GMT, ArcGIS).

Names follow MintPy's ``save_gdal.py`` / LiCSBAS habits where sensible: ``vel.tif`` and ``vel_std.tif``
(mm/yr), ``disp.tif`` with one band per date (band description ``YYYYMMDD``, mm, relative to the first date
and the reference point); on an area cube one pair per pass direction and component (``vel_A.tif``,
``vel_std_A.tif``, ``vel_up.tif``, ``vel_up_std.tif``, ``disp_up.tif``, ...). Every file is EPSG:4326 with
the transform of the cube's pixel-centre coordinates (centre of pixel (0, 0) = (x[0], y[0]), so the corner
is half a pixel up and left), float32, nodata NaN, and GDAL metadata tags for units, sign convention, the
source URL and group.

Large stacks never pass through memory whole: a file is written block by block (one cube chunk of one
band at a time) into a tiled GeoTIFF with overviews, then copied into GDAL's COG driver (GDAL >= 3.1);
without that driver the tiled GeoTIFF with internal overviews is the result (still cloud-optimisable).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import xarray as xr
from affine import Affine

from insarcloud.errors import CubeError

log = logging.getLogger(__name__)

__all__ = ["ExportedFile", "LOS_TAG", "export_cube", "export_dataset", "is_area_cube", "pixel_centre_transform",
           "write_geotiff"]

LOS_TAG = "LOS displacement and velocity positive toward the satellite (uplift on both passes)"
BLOCK = 512


class ExportedFile(NamedTuple):
    """One written GeoTIFF: its path, the variable it came from, band count, unit."""

    path: Path
    variable: str
    bands: int
    units: str


def pixel_centre_transform(y: np.ndarray, x: np.ndarray) -> Affine:
    """GDAL's corner transform of a regular grid given its pixel-centre coordinates.

    y : (y,) latitudes of pixel centres (degrees_north, descending); x : (x,) longitudes (degrees_east).
    The step is the mean spacing (robust to float rounding of the stored centres).
    """
    if y.size < 2 or x.size < 2:
        raise CubeError(f"a GeoTIFF needs at least 2 x 2 pixels, got {y.size} x {x.size}")
    dx = float(x[-1] - x[0]) / (x.size - 1)
    dy = float(y[-1] - y[0]) / (y.size - 1)
    if not np.allclose(np.diff(x), dx, rtol=1e-4, atol=1e-9) or not np.allclose(np.diff(y), dy, rtol=1e-4, atol=1e-9):
        raise CubeError("the cube's x/y coordinates are not a regular grid; cannot write a GeoTIFF transform")
    return Affine(dx, 0.0, float(x[0]) - dx / 2, 0.0, dy, float(y[0]) - dy / 2)


def _cog_available() -> bool:
    import rasterio

    with rasterio.Env() as env:
        return "COG" in env.drivers()


def write_geotiff(da_: xr.DataArray, path: Path, *, band_dim: str | None = None, tags: dict[str, str] | None = None,
                  band_names: Sequence[str] | None = None) -> ExportedFile:
    """Write a (y, x) or (band_dim, y, x) DataArray (lazy or not) as a COG at ``path``.

    Reads one (block of one band) at a time, so the memory is one chunk whatever the stack's size.
    """
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.shutil import copy as rio_copy

    if band_dim is None:
        da_ = da_.expand_dims("band")
        band_dim = "band"
    da_ = da_.transpose(band_dim, "y", "x")
    nb, ny, nx = (int(n) for n in da_.shape)
    transform = pixel_centre_transform(np.asarray(da_["y"].values, float), np.asarray(da_["x"].values, float))
    units = str(da_.attrs.get("units", ""))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(driver="GTiff", width=nx, height=ny, count=nb, dtype="float32", crs="EPSG:4326",
                   transform=transform, nodata=np.nan, tiled=True, blockxsize=256, blockysize=256,
                   compress="deflate", predictor=3, BIGTIFF="IF_SAFER")
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as tmp:
        tmp_path = Path(tmp) / path.name
        with rasterio.open(tmp_path, "w", **profile) as dst:
            for b in range(nb):
                for y0 in range(0, ny, BLOCK):
                    for x0 in range(0, nx, BLOCK):
                        block = da_.isel({band_dim: b, "y": slice(y0, y0 + BLOCK), "x": slice(x0, x0 + BLOCK)})
                        arr = np.asarray(block.values, dtype="float32")
                        win = rasterio.windows.Window(x0, y0, arr.shape[1], arr.shape[0])
                        dst.write(arr, b + 1, window=win)
                names = band_names or [str(v) for v in range(1, nb + 1)]
                dst.set_band_description(b + 1, names[b])
                dst.update_tags(b + 1, units=units)
            dst.update_tags(units=units, **(tags or {}))
            factors = [f for f in (2, 4, 8, 16, 32) if min(nx, ny) // f >= 64]
            if factors:
                dst.build_overviews(factors, Resampling.average)
        if _cog_available():
            rio_copy(tmp_path, path, driver="COG", compress="DEFLATE", predictor="FLOATING_POINT",
                     blocksize=256, overview_resampling="average", BIGTIFF="IF_SAFER")
        else:  # tiled GeoTIFF with internal overviews
            shutil.move(tmp_path, path)
    log.info("wrote %s (%d band(s), %d x %d)", path, nb, ny, nx)
    return ExportedFile(path, str(da_.name), nb, units)


def _dates(values: np.ndarray) -> list[str]:
    return [np.datetime_as_string(np.datetime64(v, "D")).replace("-", "") for v in values]


def export_dataset(ds: xr.Dataset, out_dir: str | Path, *, kind: str, source: str,
                   overwrite: bool = False) -> list[ExportedFile]:
    """Export the velocity/σ pairs and displacement stacks of one group.

    kind : ``ts`` (a frame's ts group: velocity, velocity_std, displacement), ``noise`` (velocity, velocity_std
    under the noise model), ``forecast`` (displacement per forecast_date) or ``area`` (velocity_A/D/east/up and
    their std, displacement_east/up when present).
    source : the URL and group, written into each file's tags.
    overwrite : replace existing files of the same names; otherwise an existing one is an error (nothing is
        written then).
    """
    out = Path(out_dir)
    base_tags = {"source": source, "los_sign_convention": LOS_TAG, "crs": "EPSG:4326",
                 "pixel_convention": "transform from pixel-centre coordinates x/y of the cube"}
    for key in ("ref_lat", "ref_lon", "ref_y", "ref_x", "weights", "frame"):
        if key in ds.attrs:
            base_tags[key] = str(ds.attrs[key])
    files: list[ExportedFile] = []
    names = _planned(ds, kind)
    existing = [n for n in names if (out / n).exists()]
    if existing and not overwrite:
        raise CubeError(f"{out} already holds {', '.join(existing)}: choose another --out or pass --overwrite")

    def vel(name: str, fname: str, what: str) -> None:
        if name in ds:
            files.append(write_geotiff(ds[name], out / fname, tags={**base_tags, "quantity": what},
                                       band_names=[name]))

    def disp(name: str, fname: str, date_dim: str, what: str) -> None:
        if name in ds:
            dates = _dates(ds[date_dim].values)
            files.append(write_geotiff(ds[name], out / fname, band_dim=date_dim, band_names=dates,
                                       tags={**base_tags, "quantity": what, "dates": ",".join(dates),
                                             "reference_date": dates[0]}))

    if kind in ("ts", "noise"):
        vel("velocity", "vel.tif", "LOS velocity (mm/yr)")
        vel("velocity_std", "vel_std.tif", "1-sigma of the LOS velocity (mm/yr)")
        if kind == "ts":
            disp("displacement", "disp.tif", "date", "LOS displacement (mm) relative to the first date")
    elif kind == "forecast":
        disp("displacement", "disp_forecast.tif", "forecast_date", "forecast LOS displacement (mm)")
    elif kind == "area":
        for d in ("A", "D"):
            vel(f"velocity_{d}", f"vel_{d}.tif", f"LOS velocity, pass {d} (mm/yr)")
            vel(f"velocity_std_{d}", f"vel_std_{d}.tif", f"1-sigma of the LOS velocity, pass {d} (mm/yr)")
        for c in ("east", "up"):
            vel(f"velocity_{c}", f"vel_{c}.tif", f"{c} velocity (mm/yr), north neglected")
            vel(f"velocity_{c}_std", f"vel_{c}_std.tif", f"1-sigma of the {c} velocity (mm/yr)")
            disp(f"displacement_{c}", f"disp_{c}.tif", "date", f"{c} displacement (mm) relative to the first date")
    else:
        raise CubeError(f"unknown export kind {kind!r}")
    if not files:
        raise CubeError(f"{source} holds none of the variables an export of kind {kind!r} writes "
                        f"(it has {sorted(ds.data_vars)})")
    return files


def _planned(ds: xr.Dataset, kind: str) -> list[str]:
    table = {"ts": [("velocity", "vel.tif"), ("velocity_std", "vel_std.tif"), ("displacement", "disp.tif")],
             "noise": [("velocity", "vel.tif"), ("velocity_std", "vel_std.tif")],
             "forecast": [("displacement", "disp_forecast.tif")],
             "area": [(f"velocity_{d}", f"vel_{d}.tif") for d in ("A", "D", "east", "up")]
             + [(f"velocity_std_{d}", f"vel_std_{d}.tif") for d in ("A", "D")]
             + [(f"velocity_{c}_std", f"vel_{c}_std.tif") for c in ("east", "up")]
             + [(f"displacement_{c}", f"disp_{c}.tif") for c in ("east", "up")]}
    return [f for v, f in table.get(kind, []) if v in ds]


def group_for_stage(stage: str, group: str | None, is_area: bool) -> tuple[str | None, str]:
    """(zarr group, export kind) for ``--stage`` (``--group`` overrides the group name)."""
    if is_area != (stage == "mosaic"):
        raise CubeError("--stage mosaic goes with an area cube (areas/NAME.zarr), the other stages with a frame "
                        f"cube; this is {'an area' if is_area else 'a frame'} cube and --stage is {stage!r}")
    if is_area:
        return (group or None), "area"
    if stage == "invert":
        from insarcloud.config import InvertParams

        return group or f"ts_{InvertParams().weights}", "ts"
    if stage in ("noise", "forecast"):
        return group or stage, stage
    raise CubeError(f"--stage {stage!r}: exportable stages are invert, noise, forecast (frame cubes) and mosaic "
                    "(area cubes)")


def is_area_cube(root: Any) -> bool:
    """Whether a Zarr root group is an area cube (the mosaic's output) rather than a frame cube."""
    return any(name in root for name in ("velocity_A", "velocity_D", "velocity_up")) and "phase" not in root


def export_cube(url: str, stage: str, out_dir: str | Path, *, group: str | None = None,
                storage_options: dict[str, Any] | None = None, overwrite: bool = False) -> list[ExportedFile]:
    """Export ``stage``'s group of the cube at ``url`` as COGs into ``out_dir``."""
    from insarcloud.io import open_cube
    from insarcloud.io.cube import open_zarr_group

    root = open_zarr_group(url, None, storage_options)
    grp, kind = group_for_stage(stage, group, is_area_cube(root))
    if group is None and stage in ("invert", "noise", "forecast") and not is_area_cube(root):
        from insarcloud.io.stages import current_group

        grp = current_group(url, stage, storage_options) or grp  # the stage's current output (docs/STAGES.md)
    ds = open_cube(url, storage_options, group=grp)
    if root.attrs.get("frame"):
        ds.attrs.setdefault("frame", root.attrs["frame"])
    return export_dataset(ds, out_dir, kind=kind, source=f"{url}" + (f" group {grp}" if grp else ""),
                          overwrite=overwrite)
