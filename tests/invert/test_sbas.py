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
    old = sbas.PIXEL_BLOCK
    sbas.PIXEL_BLOCK = block
    try:
        parts = invert_pixels(unw, w, net)
    finally:
        sbas.PIXEL_BLOCK = old
    for a, b in zip(full, parts, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
