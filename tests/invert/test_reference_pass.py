"""The automatic reference without its extra pass (docs/invert.md, "Reference without an extra pass").

The reference must be the same pixel as the code before it chose, on the same inputs: that code is written
out here (``_reference_before``: xarray's ``notnull().sum`` of the water-masked unw and ``mean`` of the
coherence over the pair axis, then ``choose_reference``), and compared with the new pass and with the qc
group's valid count, on a simulated LiCSAR-like frame and on the real LiCSAR crop in tests/data, water masked.
"""

from __future__ import annotations

import glob
import logging
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import rasterio
import xarray as xr

from insarcloud import io
from insarcloud.invert.dask_ops import invert_cube, invert_dataset, qc_valid_count, select_reference
from insarcloud.invert.reference import choose_reference, temporal_mean, valid_count
from insarcloud.io.cube import cube_encoding
from insarcloud.io.licsar import to_cube_values

FRAME = "012A_05850_131313"
LICSAR = Path(__file__).parents[1] / "data" / "licsar"
REAL_FRAME = "106A_09048_000909"


def _write(ds: xr.Dataset, url: str) -> str:
    """The cube as ingest encodes it (one pair per chunk, coherence uint8 with a scale factor)."""
    ds.to_zarr(url, mode="w", zarr_format=3, consolidated=False, encoding=cube_encoding(ds, coh_uint8=True))
    io.cube.consolidate(url, None)
    return url


def _simulated(tmp_path, size: int = 40, epochs: int = 24) -> str:
    from insarcloud.simulate.presets import simulate_preset_frame

    # centred so that the scene's lake is a sixth of the frame; the water keeps its (noise) unw, as LiCSAR's sea
    # does, so that only the landmask keeps it out of the count
    sim = simulate_preset_frame(FRAME, "tibet_basin", shape=(size, size), n_epochs=epochs, seed=3, lon0=89.925,
                                lat0=31.504, mask_water_in_unw=False)
    unw = sim.unw.copy()
    rng = np.random.default_rng(0)
    unw[rng.uniform(size=unw.shape) < 0.002] = np.nan  # a few unwrapping holes: not every pixel has every pair
    ds = io.make_frame_dataset(frame=FRAME, pairs=sim.pairs, lat=sim.lat, lon=sim.lon, phase=sim.phase,
                               coh=sim.coherence_est, unw=unw, statics={"landmask": sim.landmask.astype(np.float32)})
    assert (sim.landmask == 0).any(), "the frame should have water"
    return _write(ds, str(tmp_path / "sim.zarr"))


def _real_crop(tmp_path) -> str:
    """The real LiCSAR crop (320 x 384 px, Galapagos, coast and sea) as a cube. LiCSAR published no unw.tif for
    it: its wrapped phase stands in for unw, whose values the reference does not use (only where it is valid,
    which for LiCSAR's unw is where the phase is), beside the real coherence and landmask."""
    d = LICSAR / "106" / REAL_FRAME
    pairs = sorted(p.name for p in (d / "interferograms").iterdir())

    def read(path: str, kind: str) -> tuple[np.ndarray, rasterio.Affine]:
        with rasterio.open(path) as src:
            return to_cube_values(src.read(1), kind, src.nodata), src.transform

    ph = np.stack([read(f"{d}/interferograms/{p}/{p}.geo.diff_pha.tif", "diff_pha")[0] for p in pairs])
    cc = np.stack([read(f"{d}/interferograms/{p}/{p}.geo.cc.tif", "cc")[0] for p in pairs])
    lm, tr = read(glob.glob(f"{d}/metadata/*.geo.landmask.tif")[0], "landmask")
    lat = tr.f + tr.e * (np.arange(ph.shape[1]) + 0.5)
    lon = tr.c + tr.a * (np.arange(ph.shape[2]) + 0.5)
    ds = io.make_frame_dataset(frame=REAL_FRAME, pairs=pairs, lat=lat, lon=lon, phase=ph, coh=cc, unw=ph.copy(),
                               statics={"landmask": lm.astype(np.float32)})
    return _write(ds, str(tmp_path / "real.zarr"))


def _reference_before(root: xr.Dataset):
    """The automatic reference as the code before this change chose it (its select_reference, verbatim)."""
    unw = root["unw"].where(root["landmask"] != 0)
    n_valid = unw.notnull().sum("pair")
    mean_coh = root["coh"].mean("pair")
    n_valid_np, coh_np = da.compute(n_valid.data, mean_coh.data)
    return choose_reference(np.asarray(n_valid_np), np.asarray(coh_np)), np.asarray(n_valid_np), np.asarray(coh_np)


def test_kernels_equal_xarray_reductions_bit_for_bit():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (57, 9, 11)).astype(np.float32)
    x[rng.uniform(size=x.shape) < 0.2] = np.nan
    x[:, 0, 0] = np.nan  # no value at all: NaN, as nanmean
    land = rng.uniform(size=(9, 11)) > 0.3
    xa = xr.DataArray(da.from_array(x, chunks=(-1, 5, 5)), dims=("pair", "y", "x"))
    with dask.config.set(scheduler="synchronous"), np.errstate(invalid="ignore"):
        want_mean = xa.mean("pair").values
        want_n = xa.where(xr.DataArray(land, dims=("y", "x"))).notnull().sum("pair").values
    got = temporal_mean(x)
    assert got.dtype == np.float32 and np.array_equal(got, want_mean, equal_nan=True)
    with pytest.warns(RuntimeWarning, match="Mean of empty slice"):  # pixel (0, 0)
        assert np.array_equal(got, np.nanmean(x, axis=0), equal_nan=True)
    assert np.array_equal(valid_count(x, land), want_n)
    assert np.array_equal(valid_count(x), (~np.isnan(x)).sum(axis=0))


@pytest.mark.parametrize("cube", ["simulated", "real_crop"])
def test_reference_is_the_same_pixel_from_the_new_pass_and_from_qc(tmp_path, caplog, cube):
    from insarcloud.qc.dask_ops import run_qc

    url = _simulated(tmp_path) if cube == "simulated" else _real_crop(tmp_path)
    with dask.config.set(scheduler="synchronous"):
        root = io.open_cube(url, chunks={"pair": -1})
        want, n_want, coh_want = _reference_before(root)
        land = root["landmask"] != 0
        assert int(n_want.max()) > 0 and (n_want == 0).any()  # water and no-data pixels count nothing
        got = select_reference(root["unw"], root["coh"], land=land)
        assert got == want
        # the same maps, bit for bit, so the same pixel whatever the ties
        assert np.array_equal(valid_count(root["unw"].values, land.values), n_want)
        assert np.array_equal(temporal_mean(root["coh"].values), coh_want, equal_nan=True)

        run_qc(url)  # the real qc stage; its group now holds the per-pixel valid count
        qc = io.open_stage(url, "qc")
        pairs = root["pair"].values
        shape = (root.sizes["y"], root.sizes["x"])
        n_qc, why = qc_valid_count(qc, pairs, shape, water_masked=True)
        assert n_qc is not None, why
        assert np.array_equal(n_qc.values, n_want)
        assert select_reference(root["unw"], root["coh"], n_valid=n_qc) == want
        # counted otherwise: not used
        assert qc_valid_count(qc, pairs, shape, water_masked=False)[0] is None
        assert qc_valid_count(qc, pairs[:-1], shape, water_masked=True)[0] is None
        assert qc_valid_count(qc.drop_vars("state_n_valid"), pairs, shape, water_masked=True)[0] is None
        assert qc_valid_count(qc.assign_attrs(has_unw=0), pairs, shape, water_masked=True)[0] is None
        assert qc_valid_count(None, pairs, shape, water_masked=True)[0] is None

        # the stage: the same output with the qc group's count as with its own pass
        with caplog.at_level(logging.INFO, logger="insarcloud.invert.dask_ops"):
            g_qc, plan_qc = invert_cube(url, weights="closure", group="ts_with_qc")
        assert "valid pairs per pixel from the qc group" in caplog.text
        ts_qc = io.open_cube(url, group=g_qc).load()
        ds_own, plan_own = invert_dataset(root, weights="closure")
        ts_own = ds_own.load()
    assert plan_qc.reference == plan_own.reference and plan_own.reference[:2] == want[:2]
    for v in ts_own.data_vars:
        np.testing.assert_array_equal(ts_qc[v].values, ts_own[v].values, err_msg=v)
    assert (ts_qc.attrs["ref_y"], ts_qc.attrs["ref_x"]) == (want.y, want.x)


def test_reference_series_in_the_graph_equals_the_computed_one(tmp_path):
    """The automatic reference's series is a task of the inversion's graph when every pair has data there;
    the output equals referencing to the same pixel given explicitly (its series computed first)."""
    url = _simulated(tmp_path, size=32, epochs=16)
    with dask.config.set(scheduler="synchronous"):
        root = io.open_cube(url, chunks={"pair": -1})
        auto, plan = invert_dataset(root, weights="closure", chunk=16)
        assert plan.reference.n_valid == root.sizes["pair"] and plan.pairs_dropped_by_reference == []
        given, plan_g = invert_dataset(root, weights="closure", chunk=16,
                                       ref_yx=(plan.reference.y, plan.reference.x))
        assert plan_g.reference.n_valid == plan.reference.n_valid
        auto, given = auto.load(), given.load()
    for v in auto.data_vars:
        np.testing.assert_array_equal(auto[v].values, given[v].values, err_msg=v)
    assert auto.attrs["pairs_dropped_by_reference"] == 0


def test_pairs_without_data_at_the_reference_are_named(tmp_path):
    """No pixel has every pair (the automatic reference misses one) and a given reference misses two: their
    pairs are counted and named from the reference's series, computed before the inversion."""
    from insarcloud.simulate.presets import simulate_preset_frame

    sim = simulate_preset_frame(FRAME, "tibet_basin", shape=(20, 20), n_epochs=12, seed=2, lon0=90.0, lat0=30.0)
    unw = sim.unw.copy()
    unw[3] = np.nan  # pair 3 has no data anywhere
    unw[5, 4, 6] = unw[7, 4, 6] = np.nan
    ds = io.make_frame_dataset(frame=FRAME, pairs=sim.pairs, lat=sim.lat, lon=sim.lon, phase=sim.phase,
                               coh=sim.coherence_est, unw=unw)
    url = _write(ds, str(tmp_path / "holes.zarr"))
    with dask.config.set(scheduler="synchronous"):
        root = io.open_cube(url, chunks={"pair": -1})
        _, plan = invert_dataset(root, weights="none")
        assert plan.reference.n_valid == len(sim.pairs) - 1
        assert plan.pairs_dropped_by_reference == [sim.pairs[3]]
        out, plan = invert_dataset(root, weights="none", ref_yx=(4, 6))
    assert plan.reference.n_valid == len(sim.pairs) - 3
    assert plan.pairs_dropped_by_reference == [sim.pairs[i] for i in (3, 5, 7)]
    assert out.attrs["pairs_dropped_by_reference"] == 3


@pytest.mark.parametrize("cube", ["simulated", "real_crop"])
def test_coherence_by_table_is_open_cubes_coherence_bit_for_bit(tmp_path, cube):
    """The stage reads the uint8-packed coherence through a table of its decoded codes
    (``dask_ops.coherence_by_table``): every value, NaN (the fill code) included, is the bits of ``open_cube``'s
    CF decoding; on every pair and on a subset of pairs (a cube whose later pairs are not ingested)."""
    from insarcloud.invert.dask_ops import coherence_by_table

    url = _simulated(tmp_path) if cube == "simulated" else _real_crop(tmp_path)
    with dask.config.set(scheduler="synchronous"):
        root = io.open_cube(url, chunks={"pair": -1})
        fast = coherence_by_table(root, url)
        assert fast["coh"].data.name != root["coh"].data.name  # the table path was taken
        want = root["coh"].values
        assert np.isnan(want).any() and np.unique(want).size > 100
        got = fast["coh"].values
        assert got.dtype == np.float32 and fast["coh"].data.chunks == root["coh"].data.chunks
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
        sub = root.isel(pair=slice(1, None, 2))
        np.testing.assert_array_equal(coherence_by_table(sub, url)["coh"].values.view(np.uint32),
                                      sub["coh"].values.view(np.uint32))
        # coherence stored as float32 (no packing): nothing to gain, the dataset is returned as it is
        plain = root.load()
        plain_url = str(tmp_path / "plain.zarr")
        plain.to_zarr(plain_url, mode="w", zarr_format=3, consolidated=False)
        again = io.open_cube(plain_url, chunks={"pair": -1})
        assert coherence_by_table(again, plain_url) is again
