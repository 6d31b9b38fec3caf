"""Decimated overviews of the maps the pictures draw: the right samples, and no full-resolution read."""

from __future__ import annotations

import tracemalloc

import numpy as np
import xarray as xr

from insarcloud.plot.overview import OVERVIEW_PX, overview, overview_step, overview_values


def _store(tmp_path, ny, nx):
    lat = np.round(31.6 - 0.001 * np.arange(ny), 3)
    lon = np.round(90.0 + 0.001 * np.arange(nx), 3)
    vals = np.arange(ny * nx, dtype="float32").reshape(ny, nx)
    vals[::7, ::5] = np.nan
    ds = xr.Dataset({"velocity_up": (("y", "x"), vals, {"units": "mm/yr"}),
                     "n": (("pair",), np.arange(3))}, coords={"y": lat, "x": lon})
    # numpy in, Zarr chunks from the encoding: no Dask graph (a suite's default distributed client would get it)
    ds.to_zarr(tmp_path / "a.zarr", mode="w", zarr_format=3, consolidated=False,
               encoding={"velocity_up": {"chunks": (512, 512)}})
    return vals, xr.open_zarr(tmp_path / "a.zarr", consolidated=False)


def test_overview_takes_every_step_th_sample(tmp_path):
    assert overview_step((999, 1000)) == 1 and overview_step((1001, 10)) == 2 and overview_step((5, 2500, 2800)) == 3
    vals, ds = _store(tmp_path, 2100, 1500)
    ov = overview(ds)
    assert ov.sizes["y"] <= OVERVIEW_PX and ov.sizes["x"] <= OVERVIEW_PX
    assert ov["n"].size == 3  # variables without y/x are untouched
    np.testing.assert_array_equal(ov["y"].values, ds["y"].values[::3])
    np.testing.assert_array_equal(overview_values(ds["velocity_up"]), vals[::3, ::3])
    small = ds.isel(y=slice(0, 100), x=slice(0, 80))
    assert overview(small) is small


def _png_peak(da):
    from insarcloud.report.html import _map_png

    tracemalloc.start()
    try:
        png = _map_png(da, "up", "RdBu_r", 50, True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return peak


def test_area_map_png_reads_an_overview_not_the_area(tmp_path):
    """The report's area map of a 4000 x 4000 float32 area (64 MB) costs what the map of a 300 x 300 one does
    (both draw 300 x 300 samples at 50 dpi) plus less than a quarter of the area's size: a full-resolution read
    would add 64 MB (128 MB as float64), matplotlib's image pipeline more."""
    (tmp_path / "small").mkdir()
    (tmp_path / "big").mkdir()
    _, small = _store(tmp_path / "small", 300, 300)
    _, big = _store(tmp_path / "big", 4000, 4000)
    p_small, p_big = _png_peak(small["velocity_up"]), _png_peak(big["velocity_up"])
    assert p_big < p_small + 4000 * 4000 * 4 / 4, (p_small, p_big)
