"""The Dask layer against the whole-array reference, and the qc group on real S3 with real workers."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import yaml

from insarcloud import io
from insarcloud.errors import CubeError
from insarcloud.qc import dask_ops, labels, products, reuse
from insarcloud.qc.config import QCParams

from .conftest import synthetic_cube


def qc_sync(ds, params: QCParams | None = None):  # type: ignore[no-untyped-def]
    """The QC dataset built and computed on the synchronous scheduler (a QC dataset is computed on the scheduler
    active when it was built: the session's client may exist, see ``insarcloud.qc.reuse``)."""
    import dask

    with dask.config.set(scheduler="synchronous"):
        return dask_ops.qc_dataset(ds, params).compute()


PIXEL_VARS = ["closure", "closure_wrapped", "pair_closure", "pair_closure_wrapped", "phase_std", "label", "reason",
              "n_loop_err", "n_loops"]


@pytest.mark.parametrize("block", [16, 48, 512])
def test_chunked_equals_whole_array(block: int) -> None:
    s, ds = synthetic_cube(0)
    ref = products.frame_qc(s.pairs, s.phase, s.coh, s.unw)
    q = qc_sync(ds, QCParams(block=block))
    for name in PIXEL_VARS:
        np.testing.assert_array_equal(q[name].values, getattr(ref.pixels, name), err_msg=name)
    np.testing.assert_allclose(q["coh_mean"].values, ref.pixels.coh_mean, atol=1e-6)
    np.testing.assert_allclose(q["triplet_rms"].values, ref.loops.rms, rtol=1e-6)
    np.testing.assert_array_equal(q["triplet_offset_k"].values, ref.loops.offset_k)
    np.testing.assert_array_equal(q["ifg_label"].values, ref.ifg.label)
    np.testing.assert_array_equal(q["step12_bad"].values, ref.step12.bad)
    np.testing.assert_allclose(q["coverage"].values, ref.step11.coverage)
    assert q["pair_ij"].values.tolist() == [s.pairs[i] for i in ref.triplets.ij]


def test_no_unw_no_triplets_and_dead_pair(caplog: pytest.LogCaptureFixture) -> None:
    s, ds = synthetic_cube(1, unw=False)
    q = qc_sync(ds, QCParams(block=64))
    assert "closure" not in q and "closure_wrapped" in q and q.attrs["has_unw"] == 0
    assert q["step12_bad"].attrs["source"] == "wrapped"
    # a network without any closed loop: statistics and labels, a warning, no crash
    _, ds2 = synthetic_cube(1, pairs=["20240106_20240118", "20240118_20240130"])
    with caplog.at_level(logging.WARNING, logger="insarcloud.qc.dask_ops"):
        q2 = qc_sync(ds2)
    assert "no closed triplet" in caplog.text
    assert "triplet" not in q2.dims and q2["no_loop"].values.all()
    assert set(np.unique(q2["label"].values)) <= {0, 1, 2, 255}
    # a pair with no overlap (all NaN)
    ds3 = ds.copy(deep=True)
    ds3["phase"][2] = np.nan
    ds3["coh"][2] = np.nan
    q3 = qc_sync(ds3)
    assert bool(q3["step11_bad"][2]) and float(q3["coverage"][2]) == 0.0
    assert q3["ifg_label"].values[2] == labels.NODATA
    with pytest.raises(CubeError, match="no 'phase'"):
        dask_ops.qc_dataset(ds.drop_vars("phase"))


def test_params_yaml_round_trip() -> None:
    p = QCParams(window=7, loop_thre=1.2, rules={"coh_bad": 0.1})
    assert QCParams.from_yaml(p.to_yaml()) == p
    assert yaml.safe_load(p.to_yaml())["rules"]["coh_bad"] == 0.1
    with pytest.raises(ValueError, match="odd"):
        QCParams(window=4)
    with pytest.raises(ValueError, match="extra"):
        QCParams(windw=5)


def test_choose_block_respects_budget() -> None:
    assert dask_ops.choose_block(6, 4, 2000, 2000, 256) == 512
    b = dask_ops.choose_block(1000, 3000, 2000, 2000, 256)
    assert b < 512 and (4 * (13 * 1000 + 3 * 3000) + 48 * 1000) * b * b <= 256 * 2**20


@pytest.mark.slow
def test_qc_group_on_s3_with_workers(bucket: str, storage_options: dict, dask_client: object) -> None:
    s, ds = synthetic_cube(2, shape=(90, 80))
    url = f"{bucket}/cubes/012A_05850_131313.zarr"
    io.write_new_cube(ds, url, storage_options, chunk=48)
    p = QCParams(block=48)
    group = dask_ops.run_qc(url, p, storage_options)
    assert group == "qc"
    q = io.open_cube(url, storage_options, group="qc")
    assert q.attrs["insarcloud"]["complete"] and q.attrs["insarcloud"]["stage"] == "qc"
    ref = products.frame_qc(s.pairs, s.phase, s.coh, s.unw)
    np.testing.assert_array_equal(q["label"].values, ref.pixels.label)
    np.testing.assert_allclose(q["pair_closure"].values.astype(np.float32), ref.pixels.pair_closure, rtol=2**-11)
    assert "closure" not in q  # per-loop maps are not stored (dask_ops.storable)
    # spatial chunks follow the blocks; several pairs share a chunk, up to ~8 MB of float32
    chunks = q["label"].encoding["chunks"]
    assert chunks[1:] == (48, 48) and 1 <= chunks[0] <= (8 * 2**20) // (4 * 48 * 48)
    # same parameters: nothing to do (the block size is not a parameter of the result)
    written = q.attrs["insarcloud"]["written_at"]
    assert dask_ops.run_qc(url, QCParams(block=32), storage_options) == "qc"
    assert io.open_cube(url, storage_options, group="qc").attrs["insarcloud"]["written_at"] == written
    sc = labels.score_labels(q["label"].values, s.truth)
    assert sc.precision > 0.8 and sc.recall > 0.7


@pytest.mark.slow
def test_real_frame_qc_group(real_cube_url: str, storage_options: dict, dask_client: object) -> None:
    """The real LiCSAR crop: six pairs over four epochs, four closed triplets, no unw."""
    group = dask_ops.run_qc(real_cube_url, QCParams(), storage_options)
    q = io.open_cube(real_cube_url, storage_options, group=group)
    assert q.sizes["triplet"] == 4 and q.sizes["pair"] == 6
    assert "closure" not in q  # the frame has no unw.tif: wrapped closure only
    assert q["no_loop"].values.sum() == 0 and (q["n_good_loops"] + q["n_bad_loops"]).values.tolist() == [2] * 6
    wc = q["pair_closure_wrapped"].values.astype(np.float32)
    land = np.isfinite(wc)
    assert land.mean() > 0.2
    # LiCSAR's filtered phases nearly close on coherent land: the wrapped misclosure is small there
    good_px = (q["coh_mean"].values > 0.6) & land
    assert np.median(wc[good_px]) < 0.2
    assert not q["step11_bad"].values.any()  # January-February 2024 pairs all pass LiCSBAS step 11
    lab = q["label"].values
    assert set(np.unique(lab)) <= {0, 1, 2, 255}
    assert (lab == labels.GOOD).mean() > 0.2 and (lab == labels.NODATA).mean() > 0.2  # land / ocean
    assert np.isfinite(q["triplet_rms_wrapped"].values).all()
    # the labelled tiles of the real frame (its qc group is reused): ocean tiles that are all NaN are skipped
    from insarcloud.qc import dataset

    out = real_cube_url.replace("/cubes/", "/datasets/").replace(".zarr", "_tiles.zarr")
    summary = dataset.build_dataset([real_cube_url], out, tile=128, storage_options=storage_options)
    d = dataset.open_dataset(out, storage_options)
    assert [str(c) for c in d["channel"].values] == ["cos_phase", "sin_phase", "coh"]  # no unw: no unw channels
    assert 0 < summary["tiles"] < 6 * 3 * 3 and (d["truth"].values == 255).all()
    assert set(summary["tile_label"]) <= {"good", "bad", "uncertain"}


def test_pass1_tree_reduction_equals_whole_array() -> None:
    """Pass 1 reduced as a tree of block partials (42 blocks, 4 per node: 3 levels) = the whole-array sums."""
    import dask.array as da

    from insarcloud.qc import closure, stats
    from insarcloud.qc.network import epochs, find_triplets

    s, _ = synthetic_cube(3)
    trip = find_triplets(s.pairs)
    n_ep = len(epochs(s.pairs))
    arrs = [da.from_array(a, chunks=(-1, 16, 16)) for a in (s.phase, s.coh, s.unw)]
    assert arrs[0].npartitions == 42
    pu, pw, s11 = dask_ops.pass1_partials(*arrs, trip, n_ep, split_every=4)
    ref_u = closure.closure_partials(closure.raw_closure(s.unw, trip))
    ref_w = closure.closure_partials(closure.wrapped_closure(s.phase, trip))
    ref_11 = stats.step11_partials(np.isfinite(s.unw), s.coh, n_ep)
    for got, ref in ((pu, ref_u), (pw, ref_w)):
        np.testing.assert_array_equal(got.k_hist, ref.k_hist)
        np.testing.assert_array_equal(got.n, ref.n)
        np.testing.assert_allclose(got.s1, ref.s1, rtol=1e-9, atol=1e-6)
        np.testing.assert_allclose(got.s2, ref.s2, rtol=1e-9)
    assert int(s11.n_area) == int(ref_11.n_area)
    np.testing.assert_array_equal(s11.n_valid, ref_11.n_valid)
    np.testing.assert_array_equal(s11.coh_n, ref_11.coh_n)
    np.testing.assert_allclose(s11.coh_sum, ref_11.coh_sum, rtol=1e-12)
    # the graph sums partials on the workers: the driver receives one vector, not one per block
    layout = dask_ops.PartialsLayout(len(s.pairs), trip.n_triplets, True)
    assert layout.n == trip.n_triplets * (2 * (2 * closure.K_MAX + 1) + 6) + 1 + 3 * len(s.pairs)


def test_inputs_rechunked_once_and_kept_locally() -> None:
    import dask
    import dask.array as da

    s, _ = synthetic_cube(0)
    x = da.from_array(s.phase, chunks=(1, 50, 45)).rechunk((-1, 32, 32))
    with dask.config.set(scheduler="synchronous"):  # a local scheduler, whether or not a session client exists
        assert reuse.active_client() is None
        (kept,), how = dask_ops.reuse_inputs([x])
        assert how == "local" and len(kept.__dask_graph__()) == kept.npartitions  # one computed key per block
        np.testing.assert_array_equal(kept.compute(), s.phase)


@pytest.mark.slow
def test_inputs_kept_on_cluster_equal_local(dask_client: object, monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """With the session's client as the scheduler the rechunked inputs are kept on the workers between the passes,
    and the QC dataset equals the synchronous one in every variable and attribute. The test suite's sequence that
    made persisted keys go missing ("Missing dependency rechunk-merge-...": a session client exists, a dataset is
    computed synchronously) runs in between on the same client, then a cluster run that keeps nothing."""
    import gc

    import dask
    import xarray as xr

    s, ds = synthetic_cube(2, shape=(90, 80))
    ds = ds.chunk({"pair": 1, "y": 48, "x": 48})
    p = QCParams(block=32)
    assert reuse.active_client() is dask_client
    with caplog.at_level(logging.INFO, logger="insarcloud.qc.dask_ops"):
        q = dask_ops.qc_dataset(ds, p)
        gc.collect()  # the kept blocks' futures live in the dataset's graph, not in a local of qc_dataset
        on_cluster = q.compute()
    assert "inputs cluster" in caplog.text
    with dask.config.set(scheduler="synchronous"):
        assert reuse.active_client() is None
        local = dask_ops.qc_dataset(ds, p).compute()
    xr.testing.assert_identical(on_cluster, local)
    caplog.clear()
    monkeypatch.setattr(reuse, "CLUSTER_REUSE_FRACTION", 0.0)  # inputs too large for the workers: read twice
    with caplog.at_level(logging.INFO, logger="insarcloud.qc.dask_ops"):
        again = dask_ops.qc_dataset(ds, p).compute()
    assert "inputs recompute" in caplog.text
    xr.testing.assert_identical(again, local)


def test_stored_group_smaller_than_cube(tmp_path) -> None:
    """The written qc group (no per-loop maps, float16 float products) is smaller than the cube it checks,
    and its stored values equal the whole-array reference to float16 precision."""
    s, ds = synthetic_cube(4, shape=(64, 64))
    url = str(tmp_path / "cube.zarr")
    io.write_new_cube(ds, url)
    dask_ops.run_qc(url, QCParams(block=32))

    def du(p) -> int:
        # chunk objects only: the zarr.json documents (markers with run times and ids, a fixed ~1 kB per
        # array whatever the frame size) vary between runs by a few kB, as much as the margin at 64 px
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and f.name != "zarr.json")

    qc_bytes = du(tmp_path / "cube.zarr" / "qc")
    cube_bytes = du(tmp_path / "cube.zarr") - qc_bytes
    assert 0 < qc_bytes <= cube_bytes, (qc_bytes, cube_bytes)
    q = io.open_cube(url, group="qc")
    assert "closure" not in q and "closure_wrapped" not in q and q["phase_std"].dtype == np.float16
    ref = products.frame_qc(s.pairs, s.phase, s.coh, s.unw)
    np.testing.assert_array_equal(q["label"].values, ref.pixels.label)
    np.testing.assert_array_equal(q["n_loop_err"].values, ref.pixels.n_loop_err)
    for name in dask_ops.HALF:
        np.testing.assert_allclose(q[name].values.astype(np.float32), getattr(ref.pixels, name), rtol=2**-11,
                                   atol=1e-7, err_msg=name)


@pytest.mark.xfail(reason="issue 20 (open): QC's traced peak grows 1.90x (alone) to 2.04x (in a full-suite run: "
                   "2.54 -> 5.18 MB) for 4x the pixels against the 2.0x asserted; the growth left is the Dask graph "
                   "(~87 KB per 32 px block, docs/qc.md), not blocks of data. Flat would need each pass-2 task to "
                   "write its own output regions", strict=False)
def test_qc_peak_memory_flat_as_frame_grows(tmp_path, monkeypatch) -> None:
    """QC's traced peak (numpy allocations) grows far less than the frame (4x in pixels): the tasks hold
    blocks of the stack, not the stack."""
    import tracemalloc

    import dask

    from insarcloud.qc import synthetic

    monkeypatch.setattr(reuse, "LOCAL_REUSE_MB", 0)  # the bounded path (no inputs kept between passes)
    peaks, stack = [], []
    for side in (48, 96, 192):  # 48: a warm-up (first-use allocations of zarr/xarray), not compared
        s = synthetic.make_stack(np.random.default_rng(5), shape=(side, side), n_epochs=8)
        ds = io.make_frame_dataset(frame="012A_05850_131313", pairs=s.pairs, lat=1.0 - np.arange(side) * 1e-3,
                                   lon=10.0 + np.arange(side) * 1e-3, phase=s.phase, coh=s.coh, unw=s.unw)
        tracemalloc.start()
        with dask.config.set(scheduler="synchronous"):
            q = dask_ops.qc_dataset(ds, QCParams(block=32))
            q, enc = dask_ops.storable(q)
            q.to_zarr(str(tmp_path / f"qc{side}.zarr"), zarr_format=3, consolidated=False, encoding=enc)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        stack.append(s.phase.nbytes)
    peaks, stack = peaks[1:], stack[1:]
    assert stack[1] == 4 * stack[0]
    # measured 19.8 -> 25.9 MB (1.31x) for a 4x frame alone; a whole-stack algorithm would grow ~4x
    assert peaks[1] < 2.0 * peaks[0], peaks


@pytest.mark.parametrize(("shape", "block", "dask_backed"), [((100, 90), 32, True), ((65, 50), 32, False),
                                                              ((65, 50), 32, True)])
def test_pass2_paths_equal_whole_array(shape: tuple[int, int], block: int, dask_backed: bool) -> None:
    """Pass 2's three ways to a block's halo (views of a numpy cube, ``da.overlap`` of a Dask cube, and
    ``map_overlap`` when a block (65 = 2 x 32 + 1 rows) is thinner than the halo) give the whole-array values."""
    s, ds = synthetic_cube(3, shape=shape)
    if dask_backed:
        ds = ds.chunk({"pair": 1, "y": 64, "x": 64})
    ref = products.frame_qc(s.pairs, s.phase, s.coh, s.unw)
    q = qc_sync(ds, QCParams(block=block))
    for name in PIXEL_VARS:
        np.testing.assert_array_equal(q[name].values, getattr(ref.pixels, name), err_msg=name)
    # the box filter's running sums start at the block's halo, not at the frame's edge: float32 ulps
    np.testing.assert_allclose(q["coh_mean"].values, ref.pixels.coh_mean, atol=1e-6)
    np.testing.assert_array_equal(q["state_n_valid"].values, np.isfinite(s.unw).sum(axis=0))
    np.testing.assert_array_equal(q["ifg_label"].values, ref.ifg.label)
    np.testing.assert_allclose(q["frac_good"].values, ref.ifg.frac_good, rtol=1e-6)
