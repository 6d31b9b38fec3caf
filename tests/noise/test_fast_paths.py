"""The faster paths of the noise stage equal the formulas they replace (docs/noise.md): the Kronecker Gaussian
Sigma against the dense r x r Cholesky, and the LS-VCE weights and normal matrix against their plain forms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import cho_factor, cho_solve

from insarcloud.noise.cofactors import build_cofactors, design_matrix
from insarcloud.noise.kron import grid_index
from insarcloud.noise.lsvce import _normal_matrix, _weights, multivariate_lsvce
from insarcloud.noise.spatial import factor_sigma, gaussian_sigma, lonlat_to_local_m, make_pair_bins
from insarcloud.noise.synth import regular_days, simulate_class


def _tile(n: int) -> np.ndarray:
    lat = 35.0 - 0.001 * np.arange(n)
    lon = 51.0 + 0.001 * np.arange(n)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    return lonlat_to_local_m(lo.ravel(), la.ravel())


@pytest.mark.parametrize("drop", [0, 3, 40])
def test_kron_sigma_equals_dense_cholesky(drop: int) -> None:
    rng = np.random.default_rng(drop)
    xy = _tile(16)
    keep = np.ones(len(xy), bool)
    keep[rng.choice(len(xy), drop, replace=False)] = False
    xy = xy[rng.permutation(np.flatnonzero(keep))]  # any pixel order
    D = np.exp(0.3 * rng.standard_normal(len(xy)))
    S = gaussian_sigma(D / D.mean(), xy, 0.6, 250.0)
    fast = factor_sigma(S, "gaussian", xy, make_pair_bins(xy))
    assert fast.kron is not None and fast.chol is None
    # reference: the dense Sigma of the fitted Gaussian, Cholesky-factored
    M = gaussian_sigma(fast.diag, xy, fast.fit.c0, fast.fit.d)
    c = cho_factor(M, lower=True)
    B = rng.standard_normal((len(xy), 7))
    np.testing.assert_allclose(fast.solve(B), cho_solve(c, B), rtol=1e-9, atol=1e-12)
    assert fast.logdet == pytest.approx(2.0 * np.sum(np.log(np.diag(c[0]))), rel=1e-11)
    dense = factor_sigma(S, "gaussian", xy, make_pair_bins(xy, kron=False))
    assert dense.kron is None and dense.chol is not None
    np.testing.assert_allclose(fast.solve(B), dense.solve(B), rtol=1e-9, atol=1e-12)


def test_grid_index_refuses_scattered_or_sparse_pixels() -> None:
    xy = _tile(16)
    assert grid_index(xy) is not None
    assert grid_index(xy[::2]).missing.size == 0  # every other column: a complete coarser grid
    half = np.random.default_rng(1).permutation(len(xy))[: len(xy) // 2]
    assert grid_index(xy[half]) is None  # half the grid absent: the dense Cholesky is cheaper
    assert grid_index(xy + np.random.default_rng(0).normal(0, 1.0, xy.shape)) is None  # not on a grid
    assert grid_index(xy[:20]) is None  # too small to pay


def test_weights_and_normal_matrix_equal_plain_formulas() -> None:
    days = regular_days(30)
    A = design_matrix(days)
    Qk = build_cofactors(days, ("white", "ar1", "flicker"), alpha=0.05).Q
    sig = np.array([2.0, 3.0, 1.5])
    Q = np.tensordot(sig, Qk, axes=1)
    w = _weights(A, Q)
    Qi = np.linalg.inv(Q)
    W = Qi - Qi @ A @ np.linalg.inv(A.T @ Qi @ A) @ A.T @ Qi
    np.testing.assert_allclose(w.W, W, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(w.W @ Q @ w.W, w.W, rtol=1e-8, atol=1e-11)  # W Q W = W (W = Q^-1 P)
    r = 17
    N = 0.5 * r * np.array([[np.trace(a @ W @ b @ W) for b in Qk] for a in Qk])
    np.testing.assert_allclose(_normal_matrix(Qk, w.W, r), N, rtol=1e-9)


def test_lsvce_on_known_truth_class_same_with_and_without_kronecker() -> None:
    rng = np.random.default_rng(3)
    days = regular_days(40)
    xy = _tile(10)
    truth = {"white": 4.0, "flicker": 3.0}
    s = simulate_class(rng, days, xy, truth, rho0=0.5, d_m=300.0, scale_spread=0.2)
    keep = np.ones(len(xy), bool)
    keep[[0, 37, 58]] = False  # reference pixel and two incomplete series
    Y, c = s.Y[:, keep], xy[keep]
    A = design_matrix(days)
    Qk = build_cofactors(days, tuple(truth)).Q
    fast = multivariate_lsvce(Y, A, Qk, tuple(truth), sigma_model="gaussian", coords_m=c, bins=make_pair_bins(c))
    ref = multivariate_lsvce(Y, A, Qk, tuple(truth), sigma_model="gaussian", coords_m=c,
                             bins=make_pair_bins(c, kron=False))
    assert fast.sigma_factor.kron is not None and ref.sigma_factor.kron is None
    assert fast.n_iter == ref.n_iter and fast.converged
    np.testing.assert_allclose(fast.sigma, ref.sigma, rtol=1e-8)
    np.testing.assert_allclose(fast.Q_sigma, ref.Q_sigma, rtol=1e-8)
    assert fast.reml == pytest.approx(ref.reml, rel=1e-10) and fast.loglik == pytest.approx(ref.loglik, rel=1e-10)
    np.testing.assert_allclose(fast.X, ref.X, rtol=1e-8, atol=1e-9)
    # and the truth is recovered within 3 of its own standard deviations
    err = np.abs(fast.sigma - np.array(list(truth.values())))
    assert np.all(err < 3 * fast.sigma_std), (fast.sigma, fast.sigma_std)


def test_binned_pair_sums_equal_full_sigma_hat() -> None:
    # the iteration on Sigma-hat's diagonal and per-bin sums <W, C_b> against the r x r Y^T W Y (dense path:
    # scattered pixels, so the Kronecker path is off and only the pair sums differ)
    rng = np.random.default_rng(4)
    days = regular_days(30)
    xy = rng.uniform(0, 2000.0, (60, 2))
    s = simulate_class(rng, days, xy, {"white": 3.0, "flicker": 2.0}, rho0=0.4, d_m=400.0)
    A = design_matrix(days)
    Qk = build_cofactors(days, ("white", "flicker")).Q
    bins = make_pair_bins(xy)
    assert bins.grid is None
    fast = multivariate_lsvce(s.Y, A, Qk, sigma_model="gaussian", coords_m=xy, bins=bins)
    ref = multivariate_lsvce(s.Y, A, Qk, sigma_model="gaussian", coords_m=xy, bins=bins, pair_sums=False)
    assert fast.n_iter == ref.n_iter
    np.testing.assert_allclose(fast.sigma, ref.sigma, rtol=1e-9)
    assert fast.sigma_factor.fit.c0 == pytest.approx(ref.sigma_factor.fit.c0, rel=1e-9)
    assert fast.reml == pytest.approx(ref.reml, rel=1e-11)
    # the products themselves: sum of S over each bin's pairs, S = Y^T W Y for a symmetric W
    from insarcloud.noise.spatial import pair_bin_products

    W = rng.standard_normal((30, 30))
    W = W + W.T
    S = s.Y.T @ W @ s.Y
    sums = np.bincount(bins.bin_index, weights=S[bins.iu, bins.ju], minlength=bins.counts.size)
    np.testing.assert_allclose(np.einsum("bij,ij->b", pair_bin_products(s.Y, bins), W), sums, rtol=1e-9, atol=1e-8)
