"""Incremental qc (issue 18, insarcloud.qc.incremental): after ingest appends epochs, the updated qc group
equals a from-scratch qc of the whole network, and only the loops containing a new pair are computed.

A simulated frame (insarcloud.simulate) is written to the local S3 endpoint with every pair but the last 30%
of epochs' marked not ingested (``ingested`` False: what a cube looks like before ingest appends them), qc'd
on real Dask worker processes, then the pairs are marked ingested (ingest's last step) and qc runs again.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from insarcloud import io
from insarcloud.io import stages
from insarcloud.io.cube import consolidate, open_zarr_group
from insarcloud.qc import dask_ops, incremental
from insarcloud.qc.config import QCParams
from insarcloud.qc.network import find_triplets

FRAME = "012A_05443_131313"
EPOCHS = 16
FIRST = int(0.7 * EPOCHS)


def _frame(shape: tuple[int, int] = (40, 36), gap: bool = False):  # type: ignore[no-untyped-def]
    from insarcloud.simulate import simulate_frame

    sim = simulate_frame(frame_id=FRAME, shape=shape, n_epochs=EPOCHS, seed=3, scene_seed=5, min_neighbours=3,
                         max_neighbours=4, missing_epoch_fraction=0.0, missing_pair_fraction=0.0)
    cut = np.datetime_as_string(sim.dates[FIRST - 1], unit="D").replace("-", "")
    pairs = [str(p) for p in sim.pairs]
    old = [i for i, p in enumerate(pairs) if p.split("_")[1] <= cut]
    new = [i for i, p in enumerate(pairs) if p.split("_")[1] > cut]
    order = old + new  # ingest keeps the old pairs first and appends
    phase, unw = sim.phase[order].astype(np.float32), sim.unw[order].astype(np.float32)
    if gap:
        # a patch with data in FIRST + 1 old pairs only: in LiCSBAS step 11's valid area before the update
        # (>= FIRST epochs), out of it after (< EPOCHS): the step-11 sums of every pair change
        drop = np.r_[FIRST + 1:len(order)]
        phase[drop, 2:8, 3:9] = np.nan
        unw[drop, 2:8, 3:9] = np.nan
    ds = io.make_frame_dataset(frame=FRAME, pairs=[pairs[i] for i in order], lat=sim.lat, lon=sim.lon,
                               phase=phase, coh=sim.coherence[order], unw=unw,
                               statics={"landmask": sim.landmask})
    return ds, len(old)


def _set_ingested(url: str, so: dict, value: np.ndarray) -> None:
    """Mark pairs ingested (ingest's last step for appended pairs) or not (a pair gone from the cube)."""
    open_zarr_group(url, None, so, mode="r+")["ingested"][:] = value
    consolidate(url, so)


def _update_info(url: str, so: dict) -> dict:
    group = stages.current_group(url, "qc", so)
    return json.loads(io.open_cube(url, so, group=group).attrs["qc_update"])


def _assert_same(a: xr.Dataset, b: xr.Dataset) -> None:
    """Every variable equal, matched by pair and triplet name (float16 products to float16 precision)."""
    assert set(a.data_vars) == set(b.data_vars)
    for dim in ("pair", "triplet"):
        if dim in a.dims:
            assert sorted(map(str, a[dim].values)) == sorted(map(str, b[dim].values)), dim
            b = b.sel({dim: a[dim].values})
    for name in a.data_vars:
        x, y = a[name].values, b[name].values
        assert x.dtype == y.dtype and x.shape == y.shape, name
        if x.dtype.kind == "f":
            tol = 2**-11 if x.dtype == np.float16 else 1e-9
            np.testing.assert_allclose(x.astype(np.float64), y.astype(np.float64), rtol=tol, atol=1e-7,
                                       equal_nan=True, err_msg=name)
        else:
            np.testing.assert_array_equal(x, y, err_msg=name)


def _appended(bucket: str, so: dict, gap: bool):  # type: ignore[no-untyped-def]
    """(url of a cube qc'd on its first 70% of epochs and then appended, full ds, number of old pairs)."""
    ds, n_old = _frame(gap=gap)
    url = f"{bucket}/inc.zarr"
    first = np.arange(ds.sizes["pair"]) < n_old
    io.write_new_cube(ds.assign(ingested=("pair", first)), url, so)
    dask_ops.run_qc(url, QCParams(), so)
    assert _update_info(url, so)["mode"] == "full"
    _set_ingested(url, so, np.ones(ds.sizes["pair"], bool))
    return url, ds, n_old


@pytest.fixture(params=[False, True], ids=["area-same", "area-changed"])
def appended(request, bucket: str, storage_options: dict, dask_client: object):  # type: ignore[no-untyped-def]
    """Both cases of LiCSBAS step 11: valid area unchanged by the new epochs (old sums reused) or changed."""
    return _appended(bucket, storage_options, request.param)


@pytest.fixture()
def appended_one(bucket: str, storage_options: dict, dask_client: object):  # type: ignore[no-untyped-def]
    return _appended(bucket, storage_options, False)


def test_incremental_equals_scratch_and_computes_only_new_loops(appended, bucket, storage_options) -> None:
    url, ds, n_old = appended
    group = dask_ops.run_qc(url, QCParams(), storage_options)
    info = _update_info(url, storage_options)
    assert info["mode"] == "incremental", info
    pairs = [str(p) for p in ds["pair"].values]
    trip = find_triplets(pairs)
    is_new = np.arange(len(pairs)) >= n_old
    n_new_loops = int((is_new[trip.ij] | is_new[trip.jk] | is_new[trip.ik]).sum())
    # only the loops containing a new pair go through pass 1; the rest are the previous group's
    assert info["n_loops"] == trip.n_triplets and info["n_loops_new"] == n_new_loops < trip.n_triplets, info
    assert info["n_pairs_new"] == int(is_new.sum()) and info["n_pairs_read"] < len(pairs), info
    assert info["n_pairs_affected"] > 0, info  # old pairs in a new loop: their closure means and labels change
    gap = bool(np.isnan(ds["unw"].values[-1, 2:8, 3:9]).all())
    assert info["step11"].startswith("recomputed" if gap else "reused"), info
    full = f"{bucket}/full.zarr"
    io.write_new_cube(ds, full, storage_options)
    dask_ops.run_qc(full, QCParams(), storage_options)
    assert _update_info(full, storage_options)["mode"] == "full"
    _assert_same(io.open_cube(url, storage_options, group=group).load(),
                 io.open_cube(full, storage_options, group=stages.current_group(full, "qc", storage_options)).load())


def test_update_plan_counts_loops_of_new_pairs() -> None:
    pairs = ["20200101_20200113", "20200113_20200125", "20200101_20200125", "20200125_20200206",
             "20200113_20200206"]
    d = incremental.plan_delta(pairs[:3], ["20200101_20200113_20200125"], pairs)
    assert not isinstance(d, str)
    # loops: (01,13,25) old; (13,25,06) new; pairs 13_25 is old and in the new loop: affected
    assert d.new_loop.tolist() == [False, True] and d.work.tolist() == [False, True, False, True, True]
    assert d.pix_loop.tolist() == [True, True] and d.read.all()
    assert incremental.plan_delta(pairs, [], pairs[:4]).startswith("pairs removed")
    assert incremental.plan_delta(pairs, [], pairs) == "no new pair"


def test_full_recompute_when_params_changed(appended_one, storage_options, caplog) -> None:
    url, _, _ = appended_one
    with caplog.at_level("INFO", logger="insarcloud.qc.dask_ops"):
        dask_ops.run_qc(url, QCParams(loop_thre=1.2), storage_options)
    info = _update_info(url, storage_options)
    assert info == {"mode": "full", "reason": "qc parameters changed since the previous output"}
    assert any("full computation" in r.getMessage() and "parameters changed" in r.getMessage()
               for r in caplog.records)


def test_full_recompute_when_state_missing_or_pairs_removed(appended_one, storage_options) -> None:
    url, ds, _ = appended_one
    prev = stages.current_group(url, "qc", storage_options)
    g = open_zarr_group(url, prev, storage_options, mode="r+")
    del g.attrs["qc_state_version"]  # a group written before the update state existed
    dask_ops.run_qc(url, QCParams(), storage_options)
    info = _update_info(url, storage_options)
    assert info["mode"] == "full" and "no update state" in info["reason"], info
    keep = np.ones(ds.sizes["pair"], bool)
    keep[0] = False  # an old pair dropped from the cube
    _set_ingested(url, storage_options, keep)
    dask_ops.run_qc(url, QCParams(), storage_options)
    info = _update_info(url, storage_options)
    assert info["mode"] == "full" and info["reason"].startswith("pairs removed"), info
