from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import insarcloud.invert.sbas as sbas
from insarcloud.errors import InputArrayError
from insarcloud.invert.sbas import invert_pixels

from .invert_helpers import chain_network, design, signal

SOLVERS = ["banded", "dense"]


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("weighted", [False, True])
def test_noise_free_linear_seasonal_exact_sbas(solver, weighted):
    rng = np.random.default_rng(1)
    net = chain_network(30, 4)
    phi, unw = signal(net, 200, rng)
    w = rng.uniform(0.05, 1.0, unw.shape) if weighted else None
    res = invert_pixels(unw, w, net, gamma=0.0, solver=solver)
    np.testing.assert_allclose(res.displacement, phi, atol=1e-9)
    np.testing.assert_allclose(res.residual_rms, 0, atol=1e-9)
    assert (res.n_pairs_used == net.n_pair).all() and (res.n_components == 1).all()
    # velocity = LS slope of the true series
    t = net.t_years - net.t_years.mean()
    np.testing.assert_allclose(res.velocity, t @ phi / (t @ t), atol=1e-9)


@pytest.mark.parametrize("solver", SOLVERS)
def test_noise_free_nsbas(solver):
    rng = np.random.default_rng(2)
    net = chain_network(30, 4)
    phi, unw = signal(net, 100, rng, seasonal=False)
    w = rng.uniform(0.05, 1.0, unw.shape)
    for weights in (None, w):
        res = invert_pixels(unw, weights, net, gamma=1e-4, solver=solver)
        np.testing.assert_allclose(res.displacement, phi, atol=1e-9)  # linear: the constraint is exact
    phi, unw = signal(net, 100, rng, seasonal=True)
    res = invert_pixels(unw, w, net, gamma=1e-4, solver=solver)
    # seasonal signal: the gamma^2 = 1e-8 pull towards v t + c is the only bias
    np.testing.assert_allclose(res.displacement, phi, atol=1e-5)


def _lstsq_reference(unw, w, net, gamma):
    """Per-pixel dense least squares, LiCSBAS's NSBAS matrix (sqrt-weighted rows, unit constraint rows)."""
    a = design(net)[:, 1:]
    n = net.n_date
    out = np.full((n, unw.shape[1]), np.nan)
    for j in range(unw.shape[1]):
        ok = np.isfinite(unw[:, j]) & (w[:, j] > 0)
        sw = np.sqrt(w[ok, j])
        if gamma > 0:
            g = np.hstack([a[ok] * sw[:, None], np.zeros((ok.sum(), 2))])
            gb = np.hstack([gamma * np.eye(n)[:, 1:], -gamma * net.t_years[:, None], -gamma * np.ones((n, 1))])
            x = np.linalg.lstsq(np.vstack([g, gb]), np.r_[unw[ok, j] * sw, np.zeros(n)], rcond=None)[0]
            out[:, j] = np.r_[0.0, x[: n - 1]]
        else:
            x = np.linalg.lstsq(a[ok] * sw[:, None], unw[ok, j] * sw, rcond=None)[0]
            out[:, j] = np.r_[0.0, x]
    return out


@pytest.mark.parametrize("gamma", [0.0, 1e-4])
def test_nan_patterns_and_weights_match_dense_lstsq(gamma):
    rng = np.random.default_rng(3)
    net = chain_network(20, 4)
    phi, unw = signal(net, 120, rng)
    unw = unw + rng.normal(0, 0.5, unw.shape)
    unw[rng.uniform(size=unw.shape) < 0.15] = np.nan  # random holes: many valid-pair patterns
    unw[:, :40] = unw[:, [0]]                        # 40 pixels with one shared pattern (shared path)
    w = rng.uniform(0.1, 2.0, unw.shape)
    for weights in (None, w):
        ww = np.ones_like(unw) if weights is None else weights
        res_b = invert_pixels(unw, weights, net, gamma=gamma, solver="banded")
        res_d = invert_pixels(unw, weights, net, gamma=gamma, solver="dense")
        connected = res_b.n_components == 1
        assert connected.sum() > 60
        ref = _lstsq_reference(unw[:, connected], ww[:, connected], net, gamma)
        np.testing.assert_allclose(res_b.displacement[:, connected], ref, atol=1e-7)
        np.testing.assert_allclose(res_d.displacement[:, connected], ref, atol=1e-7)
        np.testing.assert_allclose(res_b.velocity_std, res_d.velocity_std, rtol=1e-7)
        np.testing.assert_array_equal(res_b.n_pairs_used, np.isfinite(unw).sum(axis=0))


def test_split_network_sbas_per_component_and_nsbas_tie():
    rng = np.random.default_rng(4)
    net = chain_network(16, 2, drop=((6, 7), (6, 8), (5, 7)))  # epochs 0..6 | 7..15
    phi, unw = signal(net, 30, rng, seasonal=False)
    res = invert_pixels(unw, None, net, gamma=0.0)
    assert (res.n_components == 2).all()
    np.testing.assert_array_equal(res.component[:, 0], [0] * 7 + [1] * 9)
    np.testing.assert_allclose(res.displacement[:7], phi[:7], atol=1e-9)
    np.testing.assert_allclose(res.displacement[7:], phi[7:] - phi[7], atol=1e-9)  # own first epoch
    t = net.t_years
    v_true = (phi[-1] - phi[0]) / (t[-1] - t[0])
    np.testing.assert_allclose(res.velocity, v_true, atol=1e-8)  # common slope, one intercept each
    nsb = invert_pixels(unw, None, net, gamma=1e-4)
    np.testing.assert_allclose(nsb.displacement, phi, atol=1e-6)  # linear truth: NSBAS ties the parts
    np.testing.assert_allclose(nsb.velocity, v_true, atol=1e-6)


def test_epoch_without_data_at_one_pixel():
    rng = np.random.default_rng(5)
    net = chain_network(12, 3)
    phi, unw = signal(net, 4, rng, seasonal=False)
    touching = (net.primary_idx == 5) | (net.secondary_idx == 5)
    unw[touching, 1] = np.nan
    res = invert_pixels(unw, None, net, gamma=0.0)
    assert np.isnan(res.displacement[5, 1]) and res.component[5, 1] == -1
    np.testing.assert_allclose(np.delete(res.displacement[:, 1], 5), np.delete(phi[:, 1], 5), atol=1e-9)
    nsb = invert_pixels(unw, None, net, gamma=1e-4)
    assert nsb.displacement[5, 1] == pytest.approx(phi[5, 1], abs=1e-6)  # from the linear model


def test_all_zero_weights_give_nan_not_crash():
    rng = np.random.default_rng(6)
    net = chain_network(10, 3)
    phi, unw = signal(net, 6, rng)
    w = rng.uniform(0.5, 1, unw.shape)
    w[:, 2] = 0.0
    w[:, 4] = np.nan
    unw[:, 5] = np.nan
    for gamma in (0.0, 1e-4):
        for solver in SOLVERS:
            res = invert_pixels(unw, w, net, gamma=gamma, solver=solver)
            for j in (2, 4, 5):
                assert res.n_pairs_used[j] == 0 and np.isnan(res.displacement[:, j]).all()
                assert np.isnan(res.velocity[j]) and np.isnan(res.residual_rms[j])
            assert np.isfinite(res.velocity[[0, 1, 3]]).all()
            assert int((res.n_pairs_used == 0).sum()) == 3


def test_velocity_std_matches_monte_carlo():
    rng = np.random.default_rng(7)
    net = chain_network(25, 4)
    n = 4000
    phi, clean = signal(net, 1, rng, seasonal=False)
    sig = rng.uniform(0.2, 1.5, net.n_pair)[:, None]  # per-pair noise std, known weights 1/sig^2
    noisy = clean + rng.normal(0, 1, (net.n_pair, n)) * sig
    res = invert_pixels(noisy, np.broadcast_to(1 / sig**2, noisy.shape).copy(), net, gamma=0.0)
    emp = res.velocity.std()
    assert np.median(res.velocity_std) == pytest.approx(emp, rel=0.08)


def test_shape_errors():
    net = chain_network(6, 2)
    with pytest.raises(InputArrayError, match="pair=9"):
        invert_pixels(np.zeros((5, 3)), None, net)
    with pytest.raises(InputArrayError, match="weights shape"):
        invert_pixels(np.zeros((9, 3)), np.zeros((9, 2)), net)
    with pytest.raises(InputArrayError, match="gamma"):
        invert_pixels(np.zeros((9, 3)), None, net, gamma=-1)


@settings(max_examples=15, deadline=None)
@given(block=st.integers(1, 70), seed=st.integers(0, 2**16), weighted=st.booleans())
def test_block_size_invariance(block, seed, weighted):
    rng = np.random.default_rng(seed)
    net = chain_network(12, 3)
    _, unw = signal(net, 70, rng)
    unw = unw + rng.normal(0, 0.3, unw.shape)
    unw[rng.uniform(size=unw.shape) < 0.1] = np.nan
    w = rng.uniform(0, 1, unw.shape) if weighted else None
    full = invert_pixels(unw, w, net)
    old = sbas.PIXEL_BLOCK, sbas.WLS_BLOCK
    sbas.PIXEL_BLOCK, sbas.WLS_BLOCK = block, max(1, block // 3)
    try:
        parts = invert_pixels(unw, w, net)
    finally:
        sbas.PIXEL_BLOCK, sbas.WLS_BLOCK = old
    for a, b in zip(full, parts, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


def _mixed_stack(net, rng, n_pix=160):
    """Noisy data whose columns cover every unweighted path: complete, one pair missing (every pair,
    bridges included), several missing, a shared pattern of >= MIN_GROUP pixels with an isolated epoch,
    all missing, inf."""
    _, unw = signal(net, n_pix, rng)
    unw = unw + rng.normal(0, 0.4, unw.shape)
    k = net.n_pair
    unw[np.arange(k) % k, 20 + np.arange(k) % (n_pix - 60)] = np.nan  # one missing pair each
    holes = rng.uniform(size=(k, 20)) < 0.2
    unw[:, n_pix - 40: n_pix - 20][holes] = np.nan  # several missing
    unw[:, n_pix - 20:] = unw[:, [n_pix - 20]]  # one shared pattern
    unw[3, n_pix - 20:] = np.nan
    touching = (net.primary_idx == 9) | (net.secondary_idx == 9)
    unw[touching, n_pix - 20:] = np.nan  # ... with an isolated epoch (NSBAS fills it; velocity uses it)
    unw[:, 0] = np.nan  # nothing at all
    unw[5, 1] = np.inf  # inf counts as missing
    return unw


@pytest.mark.parametrize("gamma", [0.0, 1e-4])
@pytest.mark.parametrize("bridge", [False, True])
def test_unweighted_fast_paths_equal_general_solver(gamma, bridge):
    """Complete pattern (one product), rank-1 downdates and pattern groups == the banded solver with unit
    weights, for every output; a downdated bridge pair falls back to the general path."""
    rng = np.random.default_rng(11)
    drop = ((3, 6), (4, 6), (4, 7), (5, 7), (5, 8)) if bridge else ()  # (5, 6) is then the only link
    net = chain_network(14, 3, drop=drop)
    unw = _mixed_stack(net, rng)
    fast = invert_pixels(unw, None, net, gamma=gamma)
    ref = invert_pixels(unw, np.ones_like(unw), net, gamma=gamma, solver="banded")
    for name, a, b in zip(fast._fields, fast, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-9, err_msg=name)
    assert fast.n_pairs_used[0] == 0 and fast.n_pairs_used[1] == net.n_pair - 1
    if bridge and gamma == 0:
        k = int(np.flatnonzero((net.primary_idx == 5) & (net.secondary_idx == 6))[0])
        j = 20 + k % (unw.shape[1] - 60)
        assert fast.n_components[j] == 2  # missing the bridge splits that pixel's network
    ok = (fast.n_components == 1) & (fast.component >= 0).all(axis=0)  # connected, no isolated epoch
    lst = _lstsq_reference(np.where(np.isfinite(unw), unw, np.nan)[:, ok], np.ones((net.n_pair, ok.sum())), net, gamma)
    np.testing.assert_allclose(fast.displacement[:, ok], lst, atol=1e-7)


@pytest.mark.parametrize("gamma", [0.0, 1e-4])
def test_float32_data_float32_outputs_and_exact_residual(gamma):
    """float32 cube data stay float32; noise-free data give a residual of ~0 (no cancellation from the
    normal-equation identity), with and without one missing pair."""
    rng = np.random.default_rng(12)
    net = chain_network(30, 4)
    phi, unw = signal(net, 300, rng, seasonal=False)
    unw32 = unw.astype(np.float32)
    unw32[np.arange(100) % net.n_pair, np.arange(100)] = np.nan
    res = invert_pixels(unw32, None, net, gamma=gamma)
    assert res.displacement.dtype == np.float32 and res.velocity.dtype == np.float32
    scale = np.abs(phi).max()
    np.testing.assert_allclose(res.displacement, phi, atol=3e-6 * scale)
    assert np.nanmax(res.residual_rms) < 1e-5 * scale
    noisy = unw32 + rng.normal(0, 0.5, unw.shape).astype(np.float32)
    r32 = invert_pixels(noisy, None, net, gamma=gamma)
    r64 = invert_pixels(noisy.astype(np.float64), None, net, gamma=gamma)
    np.testing.assert_allclose(r32.residual_rms, r64.residual_rms, rtol=1e-3)
    np.testing.assert_allclose(r32.velocity_std, r64.velocity_std, rtol=1e-3)
    np.testing.assert_allclose(r32.displacement, r64.displacement, atol=1e-5 * scale)
