"""Ground truth of a simulated frame as an xarray Dataset / Zarr v3 store (thin I/O layer).

Coordinates follow the frame-cube contract (notes/CONTRACT.md): dims pair/date/y/x, ``pair`` strings,
``primary``/``secondary``/``date`` datetime64[ns], ``y`` latitude (descending) and ``x`` longitude of
pixel centres, ``lat``/``lon`` copies and a CF ``spatial_ref`` (EPSG:4326).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from typing import Any

import numpy as np
import xarray as xr

from insarcloud.io import get_fs, storage_options_for, with_retries

from .frame import LOS_SIGN_CONVENTION, SimulatedFrame

__all__ = ["truth_dataset", "write_truth"]

log = logging.getLogger(__name__)


def _add_spatial_ref(ds: xr.Dataset, transform: tuple[float, ...]) -> xr.Dataset:
    """CF ``spatial_ref`` (EPSG:4326) + grid_mapping on every (y, x) variable, as the cube has."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    from rasterio.transform import Affine

    ds = ds.rio.write_crs("EPSG:4326").rio.write_transform(Affine(*transform))
    ds["y"].attrs.update(standard_name="latitude", long_name="latitude of pixel centre", units="degrees_north")
    ds["x"].attrs.update(standard_name="longitude", long_name="longitude of pixel centre", units="degrees_east")
    for name, var in ds.data_vars.items():
        if "y" in var.dims and "x" in var.dims:
            ds[name].attrs.pop("grid_mapping", None)
            ds[name].encoding["grid_mapping"] = "spatial_ref"
            ds[name].encoding["coordinates"] = "spatial_ref"  # plain xr.open_zarr sees it as a coordinate
    return ds


def _consolidate(store: str, storage_options: dict[str, Any] | None = None) -> None:
    import zarr

    target = zarr.storage.FsspecStore.from_url(store, storage_options=storage_options) if "://" in store else store
    with warnings.catch_warnings():
        # consolidated metadata is not (yet) in the v3 spec; xarray and zarr-python read it
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        zarr.consolidate_metadata(target)


def _jsonable(obj: Any) -> Any:
    """Parameters -> plain JSON types (Zarr attributes are JSON)."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def truth_dataset(sim: SimulatedFrame, *, include_noise: bool = False) -> xr.Dataset:
    """All truth arrays of ``sim`` with CF attributes.

    Returns
    -------
    xarray.Dataset with
        velocity, velocity_east, velocity_north, velocity_up (y, x) mm/yr;
        displacement, seasonal, atmosphere (date, y, x) mm LOS (+ toward the satellite);
        snow (date, y, x) bool; bperp (date) m;
        coherence (pair, y, x) true coherence; unw_true, phase_noise (pair, y, x) rad;
        unw_error (pair, y, x) bool and unw_error_cycles (pair, y, x) int8;
        hgt, los_e, los_n, los_u, incidence, landcover, landmask, permafrost, valid (y, x).
        With ``include_noise`` also phase_noise (pair, y, x) rad (it equals wrap(phase - unw_true) where
        the products are valid, so it is left out by default to keep the store small).
    """
    net = sim.network
    dates = net.dates.astype("datetime64[ns]")
    yx = ("y", "x")
    dyx = ("date", "y", "x")
    pyx = ("pair", "y", "x")
    mm = "mm"
    data = {
        "velocity": (yx, sim.velocity, {"long_name": "secular LOS velocity", "units": "mm/yr"}),
        "velocity_east": (yx, sim.velocity_east, {"long_name": "secular east velocity", "units": "mm/yr"}),
        "velocity_north": (yx, sim.velocity_north, {"long_name": "secular north velocity", "units": "mm/yr"}),
        "velocity_up": (yx, sim.velocity_up, {"long_name": "secular vertical velocity", "units": "mm/yr"}),
        "displacement": (dyx, sim.displacement, {
            "long_name": "LOS ground displacement since the first epoch (secular + seasonal)", "units": mm}),
        "seasonal": (dyx, sim.seasonal, {"long_name": "seasonal permafrost LOS displacement (calendar cycle)",
                                         "units": mm}),
        "atmosphere": (dyx, sim.atmosphere, {
            "long_name": "tropospheric apparent LOS displacement (minus slant delay, relative to 4000 m)",
            "units": mm}),
        "snow": (dyx, sim.snow, {"long_name": "snow-covered ground"}),
        "coherence": (pyx, sim.coherence, {"long_name": "true coherence the phase noise was drawn from",
                                           "units": "1"}),
        "unw_true": (pyx, sim.unw_true, {
            "long_name": "unwrapped phase of deformation + atmosphere, no noise, no unwrapping errors",
            "units": "rad"}),
        "unw_error": (pyx, sim.unw_error, {"long_name": "pixel carries an unwrapping error in unw.tif"}),
        "unw_error_cycles": (pyx, sim.unw_cycles, {"long_name": "integer cycles k added to unw (2*pi*k)",
                                                   "units": "1"}),
        "bperp": (("date",), net.bperp, {"long_name": "perpendicular baseline to the master epoch", "units": "m"}),
        "hgt": (yx, sim.hgt, {"long_name": "DEM height", "units": "m"}),
        "los_e": (yx, sim.los_e, {"long_name": "LOS unit vector ground->satellite, east", "units": "1"}),
        "los_n": (yx, sim.los_n, {"long_name": "LOS unit vector ground->satellite, north", "units": "1"}),
        "los_u": (yx, sim.los_u, {"long_name": "LOS unit vector ground->satellite, up", "units": "1"}),
        "incidence": (yx, sim.geometry.incidence_deg, {"long_name": "incidence angle", "units": "degree"}),
        "landcover": (yx, sim.landcover, {
            "long_name": "land cover class",
            "flag_values": [0, 1, 2, 3, 4],
            "flag_meanings": "water bare_rock alpine_steppe_meadow wet_meadow glacier"}),
        "landmask": (yx, sim.landmask, {"long_name": "1 land, 0 water"}),
        "permafrost": (yx, sim.permafrost, {"long_name": "permafrost present"}),
        "valid": (yx, sim.valid, {"long_name": "inside the frame footprint (products have data)"}),
    }
    if sim.dem_error is not None and float(sim.params.get("dem_error_std_m", 0.0)) > 0:
        data["dem_error"] = (yx, sim.dem_error, {"long_name": "true ground height minus hgt.tif", "units": "m"})
    if include_noise:
        data["phase_noise"] = (pyx, sim.noise, {"long_name": "drawn multilook phase noise", "units": "rad"})
    ds = xr.Dataset(
        {k: xr.Variable(dims, np.asarray(v), attrs) for k, (dims, v, attrs) in data.items()},
        coords={
            "pair": ("pair", np.array(sim.pairs, dtype=object)),  # vlen str: stable in Zarr v3
            "primary": ("pair", dates[net.primary]),
            "secondary": ("pair", dates[net.secondary]),
            "date": ("date", dates),
            "y": ("y", sim.lat),
            "x": ("x", sim.lon),
            "lat": ("y", sim.lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": ("x", sim.lon, {"units": "degrees_east", "standard_name": "longitude"}),
        },
    )
    ds.attrs.update(
        title=f"insarcloud.simulate ground truth for frame {sim.frame_id}",
        frame=sim.frame_id, track=int(sim.track), pass_direction=sim.direction,
        heading_deg=float(sim.heading_deg), wavelength_m=float(sim.params["wavelength_m"]),
        los_sign_convention=LOS_SIGN_CONVENTION,
        displacement_reference="first epoch", time_unit="years of 365.25 days",
        simulation=_jsonable(sim.params),
        atmosphere_params=_jsonable([p._asdict() for p in sim.atmosphere_params]),
    )
    return _add_spatial_ref(ds, sim.grid.transform)


def write_truth(sim: SimulatedFrame, truth_url: str, storage_options: dict[str, Any] | None = None, *,
                include_noise: bool = False) -> str:
    """Write ``truth_dataset(sim)`` as Zarr v3 to ``truth_url`` (overwrites); returns the URL.

    Chunks: 512 x 512 in space (the cube's) and up to ~8 MB along pair/date (the truth is read whole
    by evaluations; one object per pair would mean thousands of tiny PUTs). Consolidated metadata is
    added so a plain ``xr.open_zarr(truth_url, storage_options=...)`` opens it.
    """
    ds = truth_dataset(sim, include_noise=include_noise)
    enc = {}
    for name, var in ds.data_vars.items():
        chunks = []
        plane = 1
        for dim, size in zip(var.dims, var.shape, strict=True):
            if dim in ("y", "x"):
                chunks.append(min(512, size))
                plane *= min(512, size)
        lead = max(1, (8 << 20) // max(1, plane * var.dtype.itemsize))
        chunks = [min(size, lead) for dim, size in zip(var.dims, var.shape, strict=True)
                  if dim not in ("y", "x")] + chunks
        enc[name] = {"chunks": tuple(chunks)}
    fs, path = get_fs(truth_url, storage_options)
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    if "file" in protocols or "local" in protocols or "memory" in protocols:
        so = storage_options_for(truth_url, storage_options) if "://" in truth_url else None
        ds.to_zarr(truth_url, mode="w", zarr_format=3, consolidated=False, encoding=enc, storage_options=so)
        _consolidate(truth_url, so)
    else:
        # Object stores: build the store on local disk and upload its objects in one batch; zarr's own
        # array-by-array creation costs several round trips per variable (seconds on a busy endpoint).
        with tempfile.TemporaryDirectory(prefix="insarcloud-truth-") as tmp:
            local = os.path.join(tmp, "truth.zarr")
            ds.to_zarr(local, mode="w", zarr_format=3, consolidated=False, encoding=enc)
            _consolidate(local)
            if with_retries(fs.exists, path):
                with_retries(fs.rm, path, recursive=True)
            files = {}
            for root, _, names in os.walk(local):
                for name in names:
                    full = os.path.join(root, name)
                    rel = os.path.relpath(full, local).replace(os.sep, "/")
                    with open(full, "rb") as f:
                        files[f"{path.rstrip('/')}/{rel}"] = f.read()
            with_retries(fs.pipe, files)
    log.info("wrote truth %s (%d pairs, %d dates)", truth_url, ds.sizes["pair"], ds.sizes["date"])
    return truth_url
