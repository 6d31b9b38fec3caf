"""The noise stage over a contract ts group on the real S3 endpoint, computed by real Dask workers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from insarcloud.io import open_cube, read_marker, write_stage_output
from insarcloud.noise.dask_ops import noise_cube
from insarcloud.noise.estimate import MODEL_NAMES, estimate_class
from insarcloud.noise.spatial import lonlat_to_local_m
from insarcloud.noise.synth import simulate_class

# conftest's LocalCluster asks for the default dashboard port; on a shared machine another cluster may hold
# 8787 and distributed warns (and moves on). Not our code; named so other warnings still fail.
pytestmark = pytest.mark.filterwarnings("ignore:Port 8787 is already in use")

NY, NX, M, SIDE = 12, 12, 40, 6
OPTS = {"models": ("white+flicker", "white+ar1"), "alpha_method": "wtest"}


def _ts_cube(url: str, so: dict) -> tuple[xr.Dataset, np.ndarray]:
    rng = np.random.default_rng(7)
    lat = 35.0 - 0.001 * np.arange(NY)
    lon = 51.0 + 0.001 * np.arange(NX)
    dates = pd.date_range("2020-01-01", periods=M, freq="12D")
    days = np.arange(M) * 12.0
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    xy = lonlat_to_local_m(lo.ravel(), la.ravel())
    sim = simulate_class(rng, days, xy, {"white": 2.0, "flicker": 4.0}, rho0=0.4, d_m=300.0)
    disp = (sim.Y - sim.Y[:1]).reshape(M, NY, NX).astype("float32")  # SBAS series: zero at the first epoch
    disp[:, 0, 0] = 0.0  # the reference pixel
    disp[5, 7, 3] = np.nan  # an incomplete series
    ts = xr.Dataset(
        {"displacement": (("date", "y", "x"), disp, {"units": "mm"}),
         "velocity": (("y", "x"), sim.X[1].reshape(NY, NX).astype("float32"), {"units": "mm/yr"})},
        coords={"date": dates.values, "y": lat, "x": lon},
        attrs={"ref_y": 0, "ref_x": 0, "weights": "quality"},
    ).chunk({"date": 10, "y": 6, "x": 12})
    write_stage_output(ts, url, "ts_quality", stage="invert", params={"weights": "quality"}, storage_options=so)
    return ts.load(), sim.X[1].reshape(NY, NX)


@pytest.mark.slow
def test_noise_cube_on_s3(bucket: str, storage_options: dict, dask_client: object) -> None:
    url = f"{bucket}/cubes/028A_05385_131313.zarr"
    ts, vtrue = _ts_cube(url, storage_options)
    group, skipped = noise_cube(url, ts_group="ts_quality", class_size=SIDE * SIDE, opts=OPTS,
                                storage_options=storage_options)
    assert (group, skipped) == ("noise", False)
    assert read_marker(url, "noise", storage_options)["complete"]
    out = open_cube(url, storage_options, group="noise").load()
    assert out["velocity_std"].shape == (NY, NX) and out["class_model"].shape == (2, 2)
    assert out["velocity_std"].attrs["units"] == "mm/yr" and "spatial_ref" in out.coords
    # reference pixel and incomplete series are excluded, everything else estimated
    assert np.isnan(out["velocity_std"].values[0, 0]) and np.isnan(out["velocity_std"].values[7, 3])
    assert np.isfinite(out["velocity_std"].values).sum() == NY * NX - 2
    assert set(np.unique(out["class_id"].values)) == {0, 65536, 2 * 65536, 3 * 65536}
    # the cube result equals the kernel on the same tile (one class = one Dask task)
    tile = ts["displacement"].values[:, 6:12, 0:6].reshape(M, -1).astype(np.float64)
    la, lo = np.meshgrid(ts["y"].values[6:12], ts["x"].values[0:6], indexing="ij")
    ref = estimate_class(tile, np.arange(M) * 12.0, lonlat_to_local_m(lo.ravel(), la.ravel()), **OPTS)
    np.testing.assert_allclose(out["velocity_std"].values[6:12, 0:6].ravel(), ref.velocity_std, rtol=1e-5)
    assert MODEL_NAMES[int(out["class_model"].values[1, 0])] == ref.model
    np.testing.assert_allclose(out["class_reml"].values[1, 0], ref.reml, rtol=1e-6)
    # velocities are recovered (relative to the reference epoch the rate is unchanged)
    ok = np.isfinite(out["velocity"].values)
    z = (out["velocity"].values - vtrue)[ok] / out["velocity_std"].values[ok]
    assert np.mean(np.abs(z) < 3) > 0.9
    # same parameters again: skipped; different parameters: a new group, never an overwrite
    assert noise_cube(url, ts_group="ts_quality", class_size=SIDE * SIDE, opts=OPTS,
                      storage_options=storage_options) == ("noise", True)


@pytest.mark.slow
def test_noise_cube_segments(bucket: str, storage_options: dict, dask_client: object) -> None:
    url = f"{bucket}/cubes/028A_05385_131313.zarr"
    _ts_cube(url, storage_options)
    group, _ = noise_cube(url, ts_group="ts_quality", classes="segments", class_size=36, opts=OPTS,
                          storage_options=storage_options)
    out = open_cube(url, storage_options, group=group).load()
    ids = out["class_id"].values
    assert len(np.unique(ids[ids >= 0])) >= 2
    assert np.isfinite(out["velocity_std"].values).sum() >= NY * NX - 10


def test_ts_group_without_displacement_is_a_cube_error() -> None:
    from insarcloud.errors import CubeError
    from insarcloud.noise.dask_ops import noise_dataset

    ts = xr.Dataset({"velocity": (("y", "x"), np.zeros((2, 2)))}, coords={"y": [1.0, 0.0], "x": [0.0, 1.0]})
    with pytest.raises(CubeError, match="displacement"):
        noise_dataset(ts)
