"""Cube-level inversion: contract cube on the real local S3 endpoint, real Dask worker processes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from insarcloud.errors import CubeError
from insarcloud.invert.dask_ops import invert_cube, invert_dataset
from insarcloud.invert.sbas import invert_pixels
from insarcloud.invert.weights import coherence_weights
from insarcloud.io import mm_to_phase, open_cube, pair_name, read_marker
from insarcloud.io.cube import make_frame_dataset, write_new_cube

from .invert_helpers import chain_network

NY, NX = 24, 20


def _cube(seed: int = 0):
    """A contract cube: linear LOS velocity (mm/yr) field, noise, holes and one bad pair patch."""
    rng = np.random.default_rng(seed)
    net = chain_network(10, 2, step_days=36)
    names = [pair_name(net.dates[p], net.dates[s]) for p, s in zip(net.primary_idx, net.secondary_idx, strict=True)]
    yy, xx = np.mgrid[:NY, :NX]
    vel = 10.0 * np.sin(yy / 9.0) + 0.3 * xx - 5.0  # mm/yr
    disp = vel[None] * net.t_years[:, None, None]  # (date, y, x) mm
    unw = mm_to_phase(disp[net.secondary_idx] - disp[net.primary_idx]).astype("float32")
    unw += rng.normal(0, 0.1, unw.shape).astype("float32")
    coh = rng.uniform(0.2, 0.95, unw.shape).astype("float32")
    unw[rng.uniform(size=unw.shape) < 0.05] = np.nan
    unw[:, 3, 3] = np.nan  # a pixel with no data at all
    lat = 31.0 - 0.001 * np.arange(NY)
    lon = 90.0 + 0.001 * np.arange(NX)
    ds = make_frame_dataset(frame="012A_05850_131313", pairs=names, lat=lat, lon=lon,
                            phase=np.angle(np.exp(1j * np.nan_to_num(unw))).astype("float32"), coh=coh, unw=unw)
    return ds, net, vel


@pytest.mark.slow
def test_invert_cube_on_s3_with_dask(bucket, storage_options, dask_client):
    ds, net, vel = _cube()
    url = f"{bucket}/cubes/012A_05850_131313.zarr"
    write_new_cube(ds, url, storage_options, chunk=24)  # few objects: moto is slow
    ref_ll = (float(ds["y"][5]), float(ds["x"][7]))  # the automatic choice is tested in memory below
    group, plan = invert_cube(url, weights="coherence", gamma=1e-4, ref_latlon=ref_ll, chunk=12,
                              storage_options=storage_options)
    assert group == "ts_coherence" and plan is not None
    out = open_cube(url, storage_options, group=group).load()
    marker = read_marker(url, group, storage_options)
    assert marker["complete"] and marker["stage"] == "invert"
    assert out["displacement"].dims == ("date", "y", "x") and out["displacement"].attrs["units"] == "mm"
    assert "toward" in out.attrs["los_sign_convention"]
    assert np.issubdtype(out["date"].dtype, np.datetime64)
    ry, rx = out.attrs["ref_y"], out.attrs["ref_x"]
    assert (ry, rx) == (5, 7) and out.attrs["ref_lat"] == pytest.approx(ref_ll[0])

    # the same numbers as the kernel called directly on the referenced stack
    unw = ds["unw"].values
    unw_ref = unw - unw[:, ry, rx][:, None, None]
    res = invert_pixels(unw_ref.reshape(net.n_pair, -1), coherence_weights(ds["coh"].values).reshape(net.n_pair, -1),
                        net, gamma=1e-4)
    disp_mm = -res.displacement * (0.05546576 / (4 * np.pi) * 1000)
    np.testing.assert_allclose(out["displacement"].values.reshape(net.n_date, -1), disp_mm, atol=1e-3, equal_nan=True)
    np.testing.assert_array_equal(out["n_pairs_used"].values.ravel(), res.n_pairs_used)
    assert int(out["n_pairs_used"][3, 3]) == 0 and np.isnan(out["velocity"][3, 3])
    # and close to the truth (velocity relative to the reference pixel)
    err = out["velocity"].values - (vel - vel[ry, rx])
    # noise 0.1 rad ~ 0.44 mm per pair, 2-epoch pairs over 0.9 yr: velocity_std ~ 1.2 mm/yr, and the
    # errors are of that size (the reference pixel's own noise adds a common offset)
    std = np.nanmedian(out["velocity_std"].values)
    assert 0.5 < std < 2.5
    assert np.nanmedian(np.abs(err)) < 1.5 * std and np.nanmax(np.abs(err)) < 6 * std
    assert (out["displacement"].values[0][np.isfinite(out["displacement"].values[0])] == 0).all()

    # a re-run with the same parameters is a no-op (the chunking is not a parameter of the result)
    again, plan2 = invert_cube(url, weights="coherence", gamma=1e-4, ref_latlon=ref_ll, chunk=8,
                               storage_options=storage_options)
    assert again == group and plan2 is None


@pytest.mark.slow
def test_chunk_size_invariance_and_user_weights(dask_client):
    ds, net, _ = _cube(1)
    ds["myw"] = ds["coh"] ** 2
    ds = ds.chunk({"pair": 1, "y": 12, "x": 12})
    a, plan = invert_dataset(ds, weights="myw", chunk=12)  # automatic reference
    b, _ = invert_dataset(ds, weights="myw", chunk=7)
    a, b = dask_client.compute([a, b], sync=True)
    for name in ("displacement", "velocity", "velocity_std", "residual_rms", "n_pairs_used"):
        xr.testing.assert_allclose(a[name], b[name], atol=1e-4)
    assert a.attrs["weights"] == "myw" and a.attrs["reference_method"].startswith("auto")
    ry, rx = plan.reference.y, plan.reference.x
    assert int(a["n_pairs_used"][ry, rx]) == ds.sizes["pair"]  # the reference has every pair
    assert float(np.abs(a["displacement"][:, ry, rx]).max()) == 0.0


def test_bad_inputs_are_named():
    ds, _, _ = _cube(2)
    with pytest.raises(CubeError, match="'nope'"):
        invert_dataset(ds, weights="nope")
    with pytest.raises(CubeError, match="unw_snaphu"):
        invert_dataset(ds, source="unw_snaphu")
    with pytest.raises(CubeError, match="outside the frame"):
        invert_dataset(ds, ref_yx=(NY, 0))
    assert pd.Timestamp(ds["date"].values[0]).year == 2020


def test_task_side_fits_thread_share_and_result_is_unchanged(monkeypatch):
    """A task of 676 pairs on 512 px cube chunks would peak at ~4.9 GB: it is split (by halving, no shuffle)
    to fit TASK_MEM_MB; a budget that forces small tasks gives the same result as whole-chunk tasks."""
    from insarcloud.invert import dask_ops

    assert dask_ops.task_side(512, 50) == 512
    side = dask_ops.task_side(512, 676)
    assert side < 512 and 512 % side == 0
    assert dask_ops.TASK_BYTES_PER_PIXEL_PAIR * 676 * side**2 <= dask_ops.TASK_MEM_MB * 2**20
    ds, _, _ = _cube(3)
    ds = ds.chunk({"pair": 1, "y": NY, "x": NX})
    whole, _ = invert_dataset(ds, ref_yx=(10, 10))
    # a budget that halves every task side: tasks of 12 x 10 px
    monkeypatch.setattr(dask_ops, "task_side", lambda native, n, mem_mb=1: -(-native // 2))
    split, _ = invert_dataset(ds, ref_yx=(10, 10))
    assert split["velocity"].data.chunks[0][0] < NY
    xr.testing.assert_allclose(whole["velocity"].compute(), split["velocity"].compute())
