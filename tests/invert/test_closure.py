"""Loop-closure weights: triplets against brute force, flagged patches against a known injected error,
chunked (map_overlap) results against the whole frame, and the quality floor chosen by the map's export."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import xarray as xr

from insarcloud.errors import InputArrayError
from insarcloud.invert.closure import closure_weights, loop_triplets
from insarcloud.invert.dask_ops import invert_dataset, resolve_quality_floor, stage_params
from insarcloud.invert.sbas import invert_pixels
from insarcloud.invert.weights import QUALITY_FLOOR
from insarcloud.io import mm_to_phase, pair_name
from insarcloud.io.cube import make_frame_dataset

from .invert_helpers import chain_network

NY, NX = 30, 26
PATCH = (slice(8, 17), slice(6, 15))  # 9 x 9 unwrapping-error patch


def test_loop_triplets_match_brute_force():
    net = chain_network(9, 3, drop=((2, 4), (5, 6)))
    pairs = {(int(p), int(s)): n for n, (p, s) in enumerate(zip(net.primary_idx, net.secondary_idx, strict=True))}
    brute = sorted((pairs[(i, j)], pairs[(j, k)], pairs[(i, k)])
                   for i, j, k in itertools.combinations(range(net.n_date), 3)
                   if (i, j) in pairs and (j, k) in pairs and (i, k) in pairs)
    got = loop_triplets(net)
    assert got.shape == (len(brute), 3) and len(brute) > 10
    np.testing.assert_array_equal(got, np.array(brute))


def _stack(seed: int = 0, bad_pair: int = 4):
    """Clean interferograms of a smooth velocity field plus noise, one pair with a 2 pi patch, and
    single-pixel 2 pi spikes in another pair (isolated: the majority rule must ignore them)."""
    rng = np.random.default_rng(seed)
    net = chain_network(12, 3, step_days=24)
    yy, xx = np.mgrid[:NY, :NX]
    vel = 8.0 * np.sin(yy / 7.0) + 0.2 * xx  # mm/yr
    disp = vel[None] * net.t_years[:, None, None]
    unw = mm_to_phase(disp[net.secondary_idx] - disp[net.primary_idx]).astype(np.float64)
    unw += rng.normal(0, 0.3, unw.shape)
    unw[bad_pair][PATCH] += 2 * np.pi
    spikes = rng.uniform(size=(NY, NX)) < 0.05
    unw[bad_pair + 3][spikes] -= 2 * np.pi
    return net, unw, vel


def test_closure_weights_flag_the_error_patch_and_only_it():
    net, unw, _ = _stack()
    trip = loop_triplets(net)
    w = closure_weights(unw, trip)
    assert w.shape == unw.shape and w.dtype == np.float32
    n_loops = np.bincount(trip.ravel(), minlength=net.n_pair)
    inner = (slice(PATCH[0].start + 2, PATCH[0].stop - 2), slice(PATCH[1].start + 2, PATCH[1].stop - 2))
    # the erroneous pair: every loop it is in closes at 2 pi inside the patch
    assert (w[4][inner] == 0).all()
    # each partner pair shares one (or two) of its loops with it: weight 1 - shared/its loops
    partners = {int(p) for t in trip if 4 in t for p in t} - {4}
    for p in partners:
        shared = sum(1 for t in trip if 4 in t and p in t)
        np.testing.assert_allclose(w[p][inner], 1 - shared / n_loops[p], rtol=1e-6)
    # pairs in no loop with pair 4, and every pair away from the patch, keep full weight
    others = sorted(set(range(net.n_pair)) - partners - {4})
    assert (w[others] == 1).all()
    outside = np.ones((NY, NX), bool)
    outside[PATCH[0].start - 3: PATCH[0].stop + 3, PATCH[1].start - 3: PATCH[1].stop + 3] = False
    assert (w[:, outside] == 1).all()  # the isolated spikes of pair 7 are not flagged


def test_closure_weights_treat_nan_as_unflagged_and_check_inputs():
    net, unw, _ = _stack()
    unw[4][PATCH] = np.nan
    w = closure_weights(unw, loop_triplets(net))
    assert (w == 1).all()
    with pytest.raises(InputArrayError, match="odd"):
        closure_weights(unw, loop_triplets(net), window=4)
    with pytest.raises(InputArrayError, match="pair, y, x"):
        closure_weights(unw[0], loop_triplets(net))


def test_closure_weights_restore_the_velocity_under_an_error_patch():
    net, unw, vel = _stack(1)
    trip = loop_triplets(net)
    clean = unw.copy()
    clean[4][PATCH] -= 2 * np.pi  # the same noise without the unwrapping error: the attainable floor
    truth = mm_to_phase(vel).ravel()
    inside = np.zeros((NY, NX), bool)
    inside[PATCH] = True

    def err(u: np.ndarray, w: np.ndarray | None) -> float:
        w = None if w is None else w.reshape(net.n_pair, -1)
        v = invert_pixels(u.reshape(net.n_pair, -1), w, net, gamma=1e-4).velocity
        return float(np.median(np.abs(v - truth)[inside.ravel()]))  # rad/yr

    e_none, e_clo, e_clean = err(unw, None), err(unw, closure_weights(unw, trip)), err(clean, None)
    assert e_none > 3 * e_clean  # the 2 pi step biases the unweighted velocity
    assert e_clo < 1.5 * e_clean  # closure weights bring it back to the noise floor


def _cube(unw: np.ndarray, net, quality: np.ndarray | None = None, target: str | None = None) -> xr.Dataset:
    names = [pair_name(net.dates[p], net.dates[s]) for p, s in zip(net.primary_idx, net.secondary_idx, strict=True)]
    lat = 31.0 - 0.001 * np.arange(NY)
    lon = 90.0 + 0.001 * np.arange(NX)
    unw = unw.astype(np.float32)
    ds = make_frame_dataset(frame="012A_05850_131313", pairs=names, lat=lat, lon=lon,
                            phase=np.angle(np.exp(1j * unw)).astype(np.float32),
                            coh=np.full(unw.shape, 0.8, np.float32), unw=unw)
    if quality is not None:
        ds["quality"] = (("pair", "y", "x"), quality.astype(np.float32))
    if target is not None:
        ds.attrs["quality_target"] = target
    return ds


def test_chunked_closure_inversion_equals_the_whole_frame():
    net, unw, _ = _stack(2)
    ds = _cube(unw, net)
    ref = (2, 2)
    whole, _ = invert_dataset(ds, weights="closure", ref_yx=ref, chunk=NY + NX)
    tiled, _ = invert_dataset(ds.chunk({"y": 7, "x": 7}), weights="closure", ref_yx=ref, chunk=7)
    whole, tiled = whole.compute(), tiled.compute()
    for name in ("displacement", "velocity", "velocity_std", "n_pairs_used"):
        xr.testing.assert_allclose(whole[name], tiled[name], atol=1e-4)
    # and both equal the kernel on the referenced whole-frame stack
    u = ds["unw"].values.astype(np.float64)
    u = u - u[:, ref[0], ref[1]][:, None, None]
    res = invert_pixels(u.reshape(net.n_pair, -1), closure_weights(u, loop_triplets(net)).reshape(net.n_pair, -1),
                        net, gamma=1e-4)
    np.testing.assert_allclose(-whole["velocity"].values.ravel() / (0.05546576 / (4 * np.pi) * 1000),
                               res.velocity, rtol=1e-4, atol=1e-4)
    assert "closure" in whole.attrs["closure_weight"] and "quality_floor" not in whole.attrs


def test_quality_closure_multiplies_and_takes_the_floor_from_the_export():
    net, unw, _ = _stack(3)
    q = np.full(unw.shape, 0.05)
    q[:, :, : NX // 2] = 1.0  # left half good; right half low quality in every pair
    for target, floor in (("unw_error", 0.0), ("unw_error_or_decorrelation", QUALITY_FLOOR), (None, QUALITY_FLOOR)):
        ds = _cube(unw, net, q, target)
        assert resolve_quality_floor(None, ds.attrs) == floor
        out, _ = invert_dataset(ds, weights="quality_closure", ref_yx=(2, 2), weight_ds=ds)
        assert out.attrs["quality_floor"] == floor and "closure_weight" in out.attrs
    assert resolve_quality_floor(0.3, {"quality_target": "unw_error"}) == 0.3
    assert stage_params("quality_closure", "unw", 1e-4, None, 0.0)["quality_floor"] == 0.0
    assert stage_params("closure", "unw", 1e-4, None)["closure"]["window"] == 5
    # the product of weights: a uniform quality scale does not change the estimate, the closure part does
    u = unw - unw[:, 2, 2][:, None, None]
    a, _ = invert_dataset(_cube(unw, net, np.full(unw.shape, 0.5)), weights="quality_closure",
                          ref_yx=(2, 2))
    b, _ = invert_dataset(_cube(unw, net), weights="closure", ref_yx=(2, 2))
    np.testing.assert_allclose(a["velocity"].values, b["velocity"].values, rtol=1e-4, atol=1e-4)
    w = closure_weights(u, loop_triplets(net))
    assert (w < 1).any()
