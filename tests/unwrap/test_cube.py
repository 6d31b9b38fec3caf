"""The cube wrapper and CLI on the real local S3 endpoint with real Dask worker processes."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from insarcloud import io
from insarcloud.errors import CubeError
from insarcloud.unwrap import wrap

FRAME = "012A_05850_131313"
PAIRS = ["20240101_20240113", "20240101_20240125", "20240113_20240125"]


def _cube(url: str, storage_options: dict) -> np.ndarray:
    ny, nx = 80, 100
    y, x = np.mgrid[:ny, :nx].astype(float)
    truth = np.stack([
        0.3 * x + 10 * np.exp(-((x - 40) ** 2 + (y - 40) ** 2) / 300.0),
        -0.25 * y + 0.1 * x,
        0.3 * x - 0.25 * y + 5 * np.sin(x / 15.0),
    ])
    phase = wrap(truth).astype(np.float32)
    phase[:, 30:45, 50:70] = np.nan  # no data (sea) inside the fringes
    phase[2, :, :4] = np.nan
    coh = np.where(np.isfinite(phase), 0.8, np.nan).astype(np.float32)
    lat = 10.0 - 0.001 * np.arange(ny)
    lon = 20.0 + 0.001 * np.arange(nx)
    ds = io.make_frame_dataset(frame=FRAME, pairs=PAIRS, lat=lat, lon=lon, phase=phase, coh=coh)
    io.write_new_cube(ds, url, storage_options)
    return truth


@pytest.mark.slow
def test_unwrap_cube_on_s3(bucket: str, storage_options: dict, dask_client: object) -> None:
    from insarcloud.unwrap.dask_ops import unwrap_cube

    url = f"{bucket}/cubes/{FRAME}.zarr"
    truth = _cube(url, storage_options)
    res = unwrap_cube(url, "chebyshev", storage_options=storage_options)
    assert res.group == "unw_chebyshev" and not res.skipped

    # Anyone opens it with plain xarray; coords, units and marker are there.
    out = xr.open_zarr(url, group=res.group, storage_options=storage_options)
    var = out["unw_chebyshev"]
    assert var.dims == ("pair", "y", "x") and var.dtype == np.float32
    assert var.attrs["units"] == "rad" and var.attrs["method"] == "chebyshev"
    assert list(out["pair"].values) == PAIRS and "primary" in out.coords
    assert out.attrs["insarcloud"]["complete"] is True
    assert out.attrs["insarcloud"]["params"]["kernel_params"]["congruent"] is True

    src = io.open_cube(url, storage_options)["phase"].values
    unw = var.values
    for i in range(len(PAIRS)):
        m = np.isfinite(src[i])
        assert np.array_equal(np.isfinite(unw[i]), m)
        np.testing.assert_allclose(wrap(unw[i][m] - src[i][m]), 0.0, atol=1e-5)  # congruent
        d = unw[i][m] - truth[i][m]
        np.testing.assert_allclose(d - d[0], 0.0, atol=1e-4)  # exact up to one constant per pair

    # Re-running is a no-op.
    again = unwrap_cube(url, "chebyshev", storage_options=storage_options)
    assert again.skipped and again.group == "unw_chebyshev"

    # Tiled over Dask gives the same cycles as the whole image.
    tiled = unwrap_cube(url, "ls", tile=48, overlap=12, storage_options=storage_options)
    t = io.open_cube(url, storage_options, group=tiled.group)["unw_ls"].values
    for i in range(len(PAIRS)):
        m = np.isfinite(t[i])
        d = t[i][m] - truth[i][m]
        np.testing.assert_allclose(d - d[0], 0.0, atol=1e-4)


@pytest.mark.slow
def test_cli_and_errors(bucket: str, storage_options: dict, dask_client: object) -> None:
    from insarcloud.unwrap.command import add_parser, run_unwrap
    from insarcloud.unwrap.dask_ops import unwrap_cube

    url = f"{bucket}/cubes/{FRAME}.zarr"
    _cube(url, storage_options)
    import argparse

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    addr = dask_client.scheduler.address  # type: ignore[attr-defined]
    args = parser.parse_args(["unwrap", url, "--method", "wls", "--scheduler", addr])
    assert run_unwrap(args) == 0
    assert io.read_marker(url, "unw_wls", storage_options)["params"]["weights"] == "coh"
    assert run_unwrap(args) == 0  # no-op the second time
    with pytest.raises(CubeError, match="no variable 'nope'"):
        unwrap_cube(url, "ls", source="nope", storage_options=storage_options)
    bad = parser.parse_args(["unwrap", url, "--source", "nope", "--scheduler", addr])
    assert run_unwrap(bad) == 2
