"""Phase-closure unwrapping-error correction (issue 21) against the simulator's known integer errors, and the
inversion's water mask."""

from __future__ import annotations

import numpy as np
import pytest

from insarcloud import io
from insarcloud.errors import ConfigError, InputArrayError
from insarcloud.invert.closure import loop_triplets
from insarcloud.invert.correct import loop_incidence, phase_closure_correction, score_correction, solve_l1
from insarcloud.invert.dask_ops import invert_cube, invert_dataset
from insarcloud.invert.network import build_network
from insarcloud.io import parse_pair
from insarcloud.simulate.frame import simulate_frame

from .invert_helpers import chain_network

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def frame():
    fr = simulate_frame(shape=(40, 40), n_epochs=12, seed=5, unw_error_pair_fraction=0.3)
    prim, sec = zip(*(parse_pair(p) for p in fr.pairs), strict=True)
    net = build_network(np.array(prim, "datetime64[ns]"), np.array(sec, "datetime64[ns]"))
    return fr, net


def test_single_error_is_put_on_its_pair():
    net = chain_network(n_date=6, neighbours=3)
    trip = loop_triplets(net)
    c = loop_incidence(trip, net.n_pair)
    u_true = np.zeros(net.n_pair, np.int64)
    u_true[4] = 2
    u, closed = solve_l1(c, (c @ u_true).astype(float))
    assert closed and np.array_equal(u, u_true)
    # an inconsistent closure vector (noise rounded one loop differently) is still solved, with slack
    k = (c @ u_true).astype(float)
    k[0] += 1
    u2, closed2 = solve_l1(c, k)
    assert not closed2 and np.abs(u2).sum() <= 3


def test_recovers_the_simulator_integers(frame):
    fr, net = frame
    trip = loop_triplets(net)
    assert (fr.unw_cycles != 0).mean() > 0.03  # the frame has errors to find
    res = phase_closure_correction(fr.unw, trip)
    valid = np.isfinite(fr.unw)
    sc = score_correction(res.cycles, fr.unw_cycles, valid)
    print({k: round(v, 4) for k, v in sc.items()}, res.n_patterns, res.n_unresolved)
    assert sc["precision"] > 0.95 and sc["recall"] > 0.9 and sc["exact"] > 0.9
    assert sc["wrong_on_clean"] < 0.01
    assert res.cycles.dtype == np.int8 and res.cycles.shape == fr.unw.shape
    np.testing.assert_allclose(res.corrected, fr.unw - 2 * np.pi * res.cycles, atol=1e-5)
    # per pixel (MintPy's rule, window 1) the simulator's closure noise makes many false corrections
    per_px = score_correction(phase_closure_correction(fr.unw, trip, window=1).cycles, fr.unw_cycles, valid)
    assert per_px["precision"] < sc["precision"]
    # a clean stack (the simulator's errors removed) is hardly touched
    clean = fr.unw - 2 * np.pi * fr.unw_cycles
    assert (phase_closure_correction(clean, trip).cycles[valid] != 0).mean() < 0.01
    with pytest.raises(InputArrayError, match="window"):
        phase_closure_correction(fr.unw, trip, window=4)


def _dataset(fr, landmask=None):
    lat = 31.0 - np.arange(fr.shape[0]) * 0.001
    lon = 90.0 + np.arange(fr.shape[1]) * 0.001
    statics = {"landmask": landmask} if landmask is not None else None
    return io.make_frame_dataset(frame=fr.frame_id, pairs=list(fr.pairs), lat=lat, lon=lon, phase=fr.phase,
                                 coh=fr.coherence_est, unw=fr.unw, statics=statics)


def test_dask_correction_equals_kernel_and_is_recorded(frame, dask_client):
    fr, net = frame
    ds = _dataset(fr)
    ts, _ = invert_dataset(ds, ref_yx=(20, 20), chunk=16, correct_unwrap="phase_closure")
    ts = ts.compute()
    ref = phase_closure_correction(fr.unw, loop_triplets(net))
    assert ts["unw_correction"].dtype == np.int8 and ts["unw_correction"].dims == ("pair", "y", "x")
    np.testing.assert_array_equal(ts["unw_correction"].values, ref.cycles)  # chunks of 16 + halo = whole frame
    assert ts.attrs["correct_unwrap"] == "phase_closure"
    # the correction lowers the velocity error against the truth
    plain = invert_dataset(ds, ref_yx=(20, 20), chunk=16)[0].compute()
    v_true = fr.velocity - fr.velocity[20, 20]
    e0 = np.sqrt(np.nanmean((plain["velocity"].values - v_true) ** 2))
    e1 = np.sqrt(np.nanmean((ts["velocity"].values - v_true) ** 2))
    print(f"velocity RMSE {e0:.2f} -> {e1:.2f} mm/yr with the correction")
    assert e1 < e0
    with pytest.raises(ConfigError, match="correct_unwrap"):
        invert_dataset(ds, correct_unwrap="bridging")


def test_water_is_not_fitted_and_no_landmask_is_unchanged(frame):
    fr, _ = frame
    lm = np.ones(fr.shape, np.float32)
    lm[:, :10] = 0  # a strip of sea
    with_lm, _ = invert_dataset(_dataset(fr, lm), ref_yx=(20, 20))
    without, _ = invert_dataset(_dataset(fr), ref_yx=(20, 20))
    a, b = with_lm.compute(), without.compute()
    assert a.attrs["water_masked"] == 1 and b.attrs["water_masked"] == 0
    assert np.isnan(a["velocity"].values[:, :10]).all() and (a["n_pairs_used"].values[:, :10] == 0).all()
    np.testing.assert_allclose(a["velocity"].values[:, 10:], b["velocity"].values[:, 10:], rtol=1e-5, atol=1e-4)
    off, _ = invert_dataset(_dataset(fr, lm), ref_yx=(20, 20), mask_water=False)
    np.testing.assert_allclose(off["velocity"].values, b["velocity"].values, rtol=1e-5, atol=1e-4)


def test_invert_cube_writes_the_correction_group(frame, tmp_path):
    fr, _ = frame
    url = str(tmp_path / "cube.zarr")
    io.write_new_cube(_dataset(fr), url)
    group, plan = invert_cube(url, weights="none", ref_yx=(20, 20), correct_unwrap="phase_closure", chunk=20)
    assert plan is not None
    out = io.open_cube(url, group=group)
    assert out["unw_correction"].dtype == np.int8 and int((out["unw_correction"] != 0).sum()) > 0
    assert out.attrs["correct_unwrap"] == "phase_closure"
    # the option is part of the parameters: a plain inversion is a different output
    g2, _ = invert_cube(url, weights="none", ref_yx=(20, 20), chunk=20)
    assert g2 != group
