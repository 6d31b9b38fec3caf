"""Model choice by boundary likelihood-ratio tests, the joint (sigma, alpha) precision and the
normalisation-scale variance, against hand values and brute-force dense computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2

from insarcloud.noise.cofactors import ar1_cofactor, ar1_cofactor_dlogalpha, build_cofactors, design_matrix
from insarcloud.noise.estimate import MODELS, _profile_max
from insarcloud.noise.lsvce import nuisance_precision, reml_score
from insarcloud.noise.select import chibar_pvalue, choose_model
from insarcloud.noise.spatial import SigmaFactor, factor_sigma, gaussian_sigma, make_pair_bins, scale_variance
from insarcloud.noise.synth import grid_coords, regular_days


def test_chibar_pvalue_hand_values() -> None:
    assert chibar_pvalue(0.0) == 1.0 and chibar_pvalue(-0.3) == 1.0
    # 1/2 chi2_0 + 1/2 chi2_1: the 5 % critical value is the 10 % point of chi2_1, 2.7055
    assert chibar_pvalue(2.705543454) == pytest.approx(0.05, abs=1e-8)
    # 1/2 chi2_1 + 1/2 chi2_2 at T = 5: 0.5 * 0.025347 + 0.5 * exp(-2.5)
    assert chibar_pvalue(5.0, free=1) == pytest.approx(0.5 * 0.0253473 + 0.5 * np.exp(-2.5), rel=1e-5)
    assert chibar_pvalue(5.0, free=1) == pytest.approx(0.5 * chi2.sf(5, 1) + 0.5 * chi2.sf(5, 2))


def test_choose_model_backward_elimination() -> None:
    full = "white+ar1+flicker"
    # every removal strongly rejected -> 3 components
    reml = {"white+flicker": -120.0, "white+ar1": -115.0, "ar1+flicker": -110.0, full: -100.0}
    c = choose_model(reml, MODELS)
    assert c.model == full and max(c.pvalues.values()) < 1e-4
    # removing white costs 0.5 (T = 1, p = 0.159 > 0.05): white is not needed
    reml["ar1+flicker"] = -100.5
    c = choose_model(reml, MODELS)
    assert c.model == "ar1+flicker"
    assert c.pvalues["white"] == pytest.approx(0.5 * chi2.sf(1.0, 1))
    # at level 0.2 the same evidence keeps white
    assert choose_model(reml, MODELS, level=0.2).model == full
    # the removal of AR(1) is tested with alpha as one more parameter: T = 3 gives p = 0.153 (not 0.042)
    reml = {"white+flicker": -101.5, "white+ar1": -115.0, "ar1+flicker": -110.0, full: -100.0}
    c = choose_model(reml, MODELS)
    assert c.model == "white+flicker"
    assert c.pvalues["ar1"] == pytest.approx(0.5 * chi2.sf(3, 1) + 0.5 * chi2.sf(3, 2))
    assert choose_model(reml, MODELS, alpha_fitted=False).model == full
    # without the 3-component candidate: the Akaike rule (alpha counts one parameter)
    c = choose_model({"white+flicker": -100.0, "white+ar1": -99.5}, MODELS)
    assert c.model == "white+flicker" and c.pvalues == {}
    assert choose_model({"white+flicker": -100.0, "white+ar1": -98.5}, MODELS).model == "white+ar1"
    assert choose_model(reml, MODELS, selection="aic").model == "white+flicker"


def test_ar1_dlogalpha_is_finite_difference() -> None:
    days = np.array([0.0, 12.0, 36.0, 100.0])
    a, h = 0.05, 1e-6
    fd = (ar1_cofactor(days, a * np.exp(h)) - ar1_cofactor(days, a * np.exp(-h))) / (2 * h)
    np.testing.assert_allclose(ar1_cofactor_dlogalpha(days, a), fd, rtol=1e-7, atol=1e-12)
    # by hand: -0.05*12*exp(-0.6)
    assert ar1_cofactor_dlogalpha(days, a)[0, 1] == pytest.approx(-0.6 * np.exp(-0.6), rel=1e-12)


def test_joint_fisher_equals_dense_kronecker() -> None:
    # (sigma_white, sigma_ar1, ln alpha) of Sigma (x) Q on r = 3, m = 9: brute-force (mr)^2 REML information
    rng = np.random.default_rng(3)
    days = np.cumsum(np.r_[0, rng.integers(6, 30, 8)]).astype(float)
    A = design_matrix(days, "linear")
    alpha, sig = 0.04, np.array([2.0, 5.0])
    cs = build_cofactors(days, ("white", "ar1"), alpha=alpha)
    dQ = (sig[1] * ar1_cofactor_dlogalpha(days, alpha))[None]
    S = np.array([[1.0, 0.4, 0.1], [0.4, 1.2, 0.3], [0.1, 0.3, 0.8]])
    out = nuisance_precision(A, cs.Q, sig, dQ, r=3, nuisance_pixels=None)
    # dense: R = (S (x) Q)^-1, P = I - Ab (Ab^T R Ab)^-1 Ab^T R, I_ij = 1/2 tr(R P D_i R P D_j), D_i = S (x) dQ_i
    Q = np.tensordot(sig, cs.Q, 1)
    Ab = np.kron(np.eye(3), A)
    R = np.linalg.inv(np.kron(S, Q))
    P = np.eye(27) - Ab @ np.linalg.solve(Ab.T @ R @ Ab, Ab.T @ R)
    D = [np.kron(S, q) for q in (*cs.Q, dQ[0])]
    dense = np.array([[0.5 * np.trace(R @ P @ a @ R @ P @ b) for b in D] for a in D])
    np.testing.assert_allclose(out.fisher, dense, rtol=1e-9)
    Ii = np.linalg.inv(dense)
    np.testing.assert_allclose(out.Q_sigma, Ii[:2, :2], rtol=1e-9)
    np.testing.assert_allclose(out.Q_nuisance, Ii[2:, 2:], rtol=1e-9)
    # propagating alpha can only widen the components' variances
    assert np.all(np.diag(out.Q_sigma) >= np.diag(np.linalg.inv(dense[:2, :2])))
    # alpha from a subset of the series: its variance scales with r / n
    sub = nuisance_precision(A, cs.Q, sig, dQ, r=3, nuisance_pixels=1)
    np.testing.assert_allclose(sub.Q_nuisance, 3 * out.Q_nuisance, rtol=1e-12)


def test_scale_variance_dense_and_monte_carlo() -> None:
    xy = grid_coords(36, 100.0)
    diag = np.ones(36)
    S = gaussian_sigma(diag, xy, 0.5, 300.0)
    sf = factor_sigma(S, "gaussian", xy, make_pair_bins(xy))
    dof = 20
    # dense: 2 (||R||_F^2 - r) / (r^2 dof) with R the fitted Gaussian correlation
    Rm = gaussian_sigma(sf.diag, xy, sf.fit.c0, sf.fit.d)
    Rm = Rm / np.sqrt(np.outer(np.diag(Rm), np.diag(Rm)))
    want = 2 * (np.sum(Rm**2) - 36) / (36**2 * dof)
    assert scale_variance(sf, xy, dof) == pytest.approx(want, rel=1e-10)
    assert scale_variance(SigmaFactor(diag, None, 0.0, None), xy, dof) == 0.0
    # Monte Carlo: var of the mean per-pixel variance (dof each) minus the whitened estimator's 2/(r dof)
    rng = np.random.default_rng(0)
    L = np.linalg.cholesky(S)
    means = [np.mean(np.sum((rng.standard_normal((dof, 36)) @ L.T) ** 2, axis=0) / dof) for _ in range(4000)]
    mc = np.var(means) - 2 / (36 * dof)
    assert mc == pytest.approx(scale_variance(sf, xy, dof), rel=0.15)


def _dense_reml(Y: np.ndarray, A: np.ndarray, Q: np.ndarray) -> float:
    """REML of r independent series with covariance Q (Sigma = I), up to a constant, by dense formulas."""
    Qi = np.linalg.inv(Q)
    W = Qi - Qi @ A @ np.linalg.solve(A.T @ Qi @ A, A.T @ Qi)
    r = Y.shape[1]
    return -0.5 * (r * np.linalg.slogdet(Q)[1] + r * np.linalg.slogdet(A.T @ Qi @ A)[1] + np.sum(Y * (W @ Y)))


def test_reml_score_is_gradient_of_dense_reml() -> None:
    rng = np.random.default_rng(4)
    days = regular_days(30)
    A = design_matrix(days, "linear")
    alpha, sig = 0.05, np.array([2.0, 3.0])
    cs = build_cofactors(days, ("white", "ar1"), alpha=alpha)
    Y = np.linalg.cholesky(np.tensordot(sig, cs.Q, 1)) @ rng.standard_normal((30, 5))
    sf = SigmaFactor(np.ones(5), None, 0.0, None)
    dQ = (sig[1] * ar1_cofactor_dlogalpha(days, alpha))[None]
    U, info = reml_score(Y, A, cs.Q, sig, sf, dQ)

    def reml(s: np.ndarray, la: float) -> float:
        q = build_cofactors(days, ("white", "ar1"), alpha=float(np.exp(la))).Q
        return _dense_reml(Y, A, np.tensordot(s, q, 1))

    h = 1e-5
    la = np.log(alpha)
    num = [(reml(sig + h * e, la) - reml(sig - h * e, la)) / (2 * h) for e in np.eye(2)]
    num.append((reml(sig, la + h) - reml(sig, la - h)) / (2 * h))
    np.testing.assert_allclose(U, num, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(info, nuisance_precision(A, cs.Q, sig, dQ, 5).fisher, rtol=1e-12)


def test_profile_search_finds_global_maximum() -> None:
    # two local maxima in ln(alpha); a bounded search over the whole range alone can stop at the lower one
    def f(x: float) -> float:
        return float(np.exp(-((x + 4.0) / 0.3) ** 2) + 2.0 * np.exp(-((x + 1.5) / 0.3) ** 2))

    x = _profile_max(f, -6.0, -1.0)
    assert abs(x + 1.5) < 0.02
