"""GeoTIFF export: rasterio reads back the cube's values, CRS, transform and dates (pixel-centre convention)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import xarray as xr

from insarcloud.errors import CubeError
from insarcloud.export.geotiff import export_cube, pixel_centre_transform
from insarcloud.io import make_frame_dataset, write_new_cube, write_stage_output

FRAME = "012A_05443_131313"


def _ts_cube(url: str, storage_options: dict | None, ny: int = 70, nx: int = 90) -> xr.Dataset:
    rng = np.random.default_rng(3)
    lat = np.round(31.6 - 0.001 * np.arange(ny), 3)
    lon = np.round(90.0 + 0.001 * np.arange(nx), 3)
    root = make_frame_dataset(frame=FRAME, pairs=["20200101_20200113"], lat=lat, lon=lon,
                              phase=np.zeros((1, ny, nx)), coh=np.ones((1, ny, nx)))
    write_new_cube(root, url, storage_options)
    dates = pd.date_range("2020-01-01", periods=5, freq="12D").values
    disp = rng.normal(0, 5, (5, ny, nx)).astype("float32")
    disp[:, :4, :6] = np.nan  # masked pixels stay NaN (nodata)
    ts = xr.Dataset({"displacement": (("date", "y", "x"), disp, {"units": "mm"}),
                     "velocity": (("y", "x"), rng.normal(0, 3, (ny, nx)).astype("float32"), {"units": "mm/yr"}),
                     "velocity_std": (("y", "x"), rng.uniform(0.1, 1, (ny, nx)).astype("float32"),
                                      {"units": "mm/yr"})},
                    coords={"date": dates, "y": lat, "x": lon}, attrs={"ref_y": 10, "ref_x": 20})
    write_stage_output(ts, url, "ts_quality_closure", stage="invert", params={"w": 1}, storage_options=storage_options)
    return ts


@pytest.mark.parametrize("store", ["file", "s3"])
def test_export_frame_ts_reads_back(store: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if store == "s3":
        bucket, so = request.getfixturevalue("bucket"), request.getfixturevalue("storage_options")
        url = f"{bucket}/cubes/{FRAME}.zarr"
    else:
        url, so = str(tmp_path / f"{FRAME}.zarr"), None
    ts = _ts_cube(url, so)
    out = tmp_path / "out"
    files = export_cube(url, "invert", out, storage_options=so)
    assert sorted(f.path.name for f in files) == ["disp.tif", "vel.tif", "vel_std.tif"]
    for name, var in (("vel.tif", "velocity"), ("vel_std.tif", "velocity_std")):
        with rasterio.open(out / name) as src:
            assert src.crs.to_epsg() == 4326 and src.count == 1 and src.dtypes[0] == "float32"
            assert np.isnan(src.nodata)
            np.testing.assert_array_equal(src.read(1), ts[var].values)
            assert src.tags()["units"] == "mm/yr" and "toward the satellite" in src.tags()["los_sign_convention"]
            # pixel-centre convention: the centre of pixel (0, 0) is (x[0], y[0]); of the last, (x[-1], y[-1])
            cx, cy = src.xy(0, 0)
            np.testing.assert_allclose((cx, cy), (ts.x.values[0], ts.y.values[0]), atol=1e-9)
            cx, cy = src.xy(ts.sizes["y"] - 1, ts.sizes["x"] - 1)
            np.testing.assert_allclose((cx, cy), (ts.x.values[-1], ts.y.values[-1]), atol=1e-9)
            np.testing.assert_allclose(src.res, (0.001, 0.001), rtol=1e-9)
            assert src.profile["tiled"]
    with rasterio.open(out / "disp.tif") as src:
        assert src.count == 5
        assert list(src.descriptions) == ["20200101", "20200113", "20200125", "20200206", "20200218"]
        got = src.read()
        np.testing.assert_array_equal(got, ts["displacement"].values)  # NaN where masked (equal_nan by default)
        assert np.isnan(got[:, :4, :6]).all()
        assert src.tags()["reference_date"] == "20200101" and src.tags()["ref_x"] == "20"
    # a second export refuses to overwrite, unless asked
    with pytest.raises(CubeError, match="already holds"):
        export_cube(url, "invert", out, storage_options=so)
    export_cube(url, "invert", out, storage_options=so, overwrite=True)


def test_export_is_a_cog_with_overviews(tmp_path: Path) -> None:
    url = str(tmp_path / f"{FRAME}.zarr")
    _ts_cube(url, None, ny=300, nx=520)
    export_cube(url, "invert", tmp_path / "o", group="ts_quality_closure")
    with rasterio.open(tmp_path / "o" / "vel.tif") as src:
        assert src.overviews(1), "a COG of this size carries overviews"
        assert src.block_shapes[0] == (256, 256)
        layout = src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT")
        assert layout == "COG"


def test_pixel_centre_transform_rejects_irregular_grids() -> None:
    with pytest.raises(CubeError, match="regular"):
        pixel_centre_transform(np.array([3.0, 2.0, 0.5]), np.array([1.0, 2.0, 3.0]))


def test_export_area_cube_and_stage_mismatch(tmp_path: Path) -> None:
    lat = np.round(31.6 - 0.001 * np.arange(20), 3)
    lon = np.round(90.0 + 0.001 * np.arange(30), 3)
    rng = np.random.default_rng(0)
    names = ["velocity_A", "velocity_std_A", "velocity_D", "velocity_std_D", "velocity_east", "velocity_up",
             "velocity_east_std", "velocity_up_std"]
    area = xr.Dataset({n: (("y", "x"), rng.normal(size=(20, 30)).astype("float32"), {"units": "mm/yr"})
                       for n in names}, coords={"y": lat, "x": lon})
    area["displacement_up"] = (("date", "y", "x"), rng.normal(size=(3, 20, 30)).astype("float32"), {"units": "mm"})
    area = area.assign_coords(date=pd.date_range("2021-01-01", periods=3, freq="6D").values)
    url = str(tmp_path / "areas" / "a.zarr")
    write_stage_output(area, url, "", stage="mosaic", params={})
    files = export_cube(url, "mosaic", tmp_path / "area")
    assert {f.path.name for f in files} == {"vel_A.tif", "vel_std_A.tif", "vel_D.tif", "vel_std_D.tif",
                                           "vel_east.tif", "vel_up.tif", "vel_east_std.tif", "vel_up_std.tif",
                                           "disp_up.tif"}
    with rasterio.open(tmp_path / "area" / "disp_up.tif") as src:
        np.testing.assert_array_equal(src.read(), area["displacement_up"].values)
        assert src.descriptions == ("20210101", "20210107", "20210113")
    with pytest.raises(CubeError, match="area cube"):
        export_cube(url, "invert", tmp_path / "x")


def test_export_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from insarcloud.export.command import add_parser

    url = str(tmp_path / f"{FRAME}.zarr")
    _ts_cube(url, None)
    ap = argparse.ArgumentParser()
    add_parser(ap.add_subparsers())
    args = ap.parse_args(["export", url, "--stage", "invert", "--format", "geotiff", "--out", str(tmp_path / "e")])
    assert args.func(args) == 0
    assert "vel.tif" in capsys.readouterr().out
    with rasterio.open(tmp_path / "e" / "vel.tif") as src:
        assert src.count == 1
