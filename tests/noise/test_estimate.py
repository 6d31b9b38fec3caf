"""Known-truth checks of the class pipeline (few trials, looser bounds than benchmarks/noise.py)."""

from __future__ import annotations

import numpy as np

from insarcloud.noise.classes import segment_velocity
from insarcloud.noise.cofactors import build_cofactors, design_matrix
from insarcloud.noise.estimate import SLOTS, estimate_class, screen
from insarcloud.noise.spatial import (
    correlations,
    fit_gaussian,
    gaussian_covariance,
    gaussian_sigma,
    make_pair_bins,
    predict_covariance,
)
from insarcloud.noise.synth import grid_coords, regular_days, simulate_class

M = 60
DAYS = regular_days(M)
XY = grid_coords(25, 100.0)


def _raw(eff: dict[str, float]) -> dict[str, float]:
    """Component variances giving the residual variances ``eff`` (mm^2) after the eq. 13 fit."""
    A = design_matrix(DAYS)
    P = np.eye(M) - A @ np.linalg.solve(A.T @ A, A.T)
    return {k: v * (M - 6) / np.trace(build_cofactors(DAYS, (k,), alpha=0.05).Q[0] @ P) for k, v in eff.items()}


def test_components_within_two_sigma_of_own_precision() -> None:
    rng = np.random.default_rng(10)
    truth = _raw({"white": 4.0, "flicker": 2.0})
    hits = []
    for _ in range(8):
        s = simulate_class(rng, DAYS, XY, truth, rho0=0.5, d_m=300.0)
        c = estimate_class(s.Y, DAYS, XY, models=("white+flicker",))
        assert c.converged and c.model == "white+flicker"
        for j, k in enumerate(SLOTS):
            if k in truth:
                hits.append(abs(c.sigma[j] - truth[k]) <= 2 * c.sigma_std[j])
    assert np.mean(hits) >= 0.75, hits


def test_likelihood_picks_ar1_over_flicker() -> None:
    rng = np.random.default_rng(11)
    truth = _raw({"white": 2.0, "ar1": 4.0})
    chosen = []
    for _ in range(5):
        s = simulate_class(rng, DAYS, XY, truth, alpha=0.05, rho0=0.5, d_m=300.0)
        c = estimate_class(s.Y, DAYS, XY, models=("white+flicker", "white+ar1"), alpha_method="wtest")
        chosen.append(c.model)
        assert np.all(np.isfinite(c.reml[:2]))
    assert chosen.count("white+ar1") >= 4, chosen


def test_velocity_interval_coverage_honest_vs_white() -> None:
    rng = np.random.default_rng(12)
    truth = _raw({"white": 1.0, "flicker": 4.0})
    A = design_matrix(DAYS)
    hit_m = hit_w = n = 0
    for _ in range(10):
        s = simulate_class(rng, DAYS, XY, truth, rho0=0.3, d_m=200.0)
        c = estimate_class(s.Y, DAYS, XY, models=("white+flicker",))
        v_ols = np.linalg.lstsq(A, s.Y, rcond=None)[0][1]
        hit_m += np.sum(np.abs(c.velocity - s.X[1]) <= 1.96 * c.velocity_std)
        hit_w += np.sum(np.abs(v_ols - s.X[1]) <= 1.96 * c.velocity_std_white)
        n += s.Y.shape[1]
    cov_m, cov_w = hit_m / n, hit_w / n
    assert 0.85 <= cov_m <= 1.0, (cov_m, cov_w)
    assert cov_w <= cov_m - 0.1, (cov_m, cov_w)


def test_gaussian_fit_recovers_exact_covariance() -> None:
    xy = grid_coords(100, 50.0)
    S = gaussian_sigma(np.ones(100), xy, 0.6, 350.0)
    fit = fit_gaussian(S, make_pair_bins(xy))
    np.testing.assert_allclose([fit.c0, fit.d], [0.6, 350.0], rtol=0.02)


def test_predict_covariance_within_and_across_classes() -> None:
    a = np.array([[0.0, 0.0], [100.0, 0.0]])
    b = np.array([[0.0, 300.0]])
    within = predict_covariance(a, a, 2.0, 400.0)
    np.testing.assert_allclose(within, gaussian_covariance(np.array([[0, 100], [100, 0]]), 2.0, 400.0))
    ab = predict_covariance(a, b, 2.0, 400.0, 1.0, 600.0)
    ba = predict_covariance(b, a, 1.0, 600.0, 2.0, 400.0)
    np.testing.assert_allclose(ab, ba.T)
    # a cross-class covariance matrix of both classes stays positive semi-definite
    pts = np.vstack([a, b])
    K = np.block([[predict_covariance(a, a, 2.0, 400.0), ab], [ab.T, predict_covariance(b, b, 1.0, 600.0)]])
    assert np.linalg.eigvalsh(K).min() > -1e-9 and K.shape == (len(pts), len(pts))


def test_correlation_precision_eq10_and_std_eq11() -> None:
    S = np.array([[4.0, 1.0], [1.0, 1.0]])
    c = correlations(S, dof=50, scale=2.0)
    np.testing.assert_allclose(c.rho[0, 1], 0.5)
    np.testing.assert_allclose(c.rho_std[0, 1], (1 - 0.25) / np.sqrt(50))
    np.testing.assert_allclose(c.std, [np.sqrt(8.0), np.sqrt(2.0)])
    np.testing.assert_allclose(c.std_std, c.std / 10.0)


def test_screen_drops_reference_epoch_and_pixel() -> None:
    Y = np.random.default_rng(0).normal(size=(10, 5))
    Y[0] = 0.0
    Y[:, 2] = 0.0
    Y[4, 3] = np.nan
    ek, pk = screen(Y)
    assert not ek[0] and ek[1:].all()
    np.testing.assert_array_equal(pk, [True, True, False, False, True])


def test_segments_follow_velocity_regions() -> None:
    v = np.zeros((20, 20))
    v[:, 10:] = 30.0
    v[0, 0] = np.nan
    lab = segment_velocity(v, class_size=200)
    assert lab[0, 0] == -1
    assert len(np.unique(lab[:, :10][lab[:, :10] >= 0])) == 1
    assert set(np.unique(lab[:, 10:])).isdisjoint(np.unique(lab[:, :10]))


def test_alpha_precision_propagated_and_calibrated() -> None:
    # white + AR(1) truth, alpha fitted by likelihood: the reported alpha std matches the spread of alpha
    # over trials, and the components' std (alpha propagated, normalisation scale) is never below N^-1
    rng = np.random.default_rng(13)
    truth = _raw({"white": 2.0, "ar1": 4.0})
    alphas, astd = [], []
    for _ in range(12):
        s = simulate_class(rng, DAYS, XY, truth, alpha=0.05, rho0=0.5, d_m=300.0)
        c = estimate_class(s.Y, DAYS, XY, models=("white+ar1",))
        assert c.model == "white+ar1" and np.isfinite(c.alpha_std) and c.alpha_std > 0
        plain = c.fit.sigma_std
        assert np.all(c.sigma_std[[0, 1]] >= plain - 1e-12)
        alphas.append(c.alpha)
        astd.append(c.alpha_std)
    ratio = np.std(alphas, ddof=1) / np.mean(astd)
    assert 0.5 <= ratio <= 1.8, (ratio, alphas, astd)
    assert abs(np.mean(alphas) - 0.05) <= 3 * np.mean(astd) / np.sqrt(12)


def test_model_choice_reports_lrt_pvalues() -> None:
    rng = np.random.default_rng(14)
    s = simulate_class(rng, DAYS, XY, _raw({"white": 2.0, "ar1": 4.0, "flicker": 2.0}), alpha=0.05, rho0=0.5,
                       d_m=300.0)
    c = estimate_class(s.Y, DAYS, XY)
    assert np.all((c.lrt_p >= 0) & (c.lrt_p <= 1)), c.lrt_p
    # the choice follows the tests: 3 components iff every removal is rejected at the level
    assert (c.model == "white+ar1+flicker") == bool(np.all(c.lrt_p < 0.05))
    lo = estimate_class(s.Y, DAYS, XY, level=0.5)
    np.testing.assert_allclose(lo.lrt_p, c.lrt_p)
    assert (lo.model == "white+ar1+flicker") == bool(np.all(c.lrt_p < 0.5))
    a = estimate_class(s.Y, DAYS, XY, selection="aic")
    assert np.all(np.isnan(a.lrt_p)) and a.model in ("white+flicker", "white+ar1", "ar1+flicker", "white+ar1+flicker")


def test_alpha_from_subset_is_refined_to_whole_class_optimum() -> None:
    # alpha profiled on 8 of 25 pixels, then Fisher-scoring on the whole class, against the profile on all 25
    rng = np.random.default_rng(15)
    s = simulate_class(rng, DAYS, XY, _raw({"white": 2.0, "ar1": 4.0}), alpha=0.05, rho0=0.5, d_m=300.0)
    full = estimate_class(s.Y, DAYS, XY, models=("white+ar1",), profile_pixels=25)
    sub = estimate_class(s.Y, DAYS, XY, models=("white+ar1",), profile_pixels=8)
    assert abs(np.log(sub.alpha / full.alpha)) < 0.03, (sub.alpha, full.alpha)
    assert sub.reml[1] >= full.reml[1] - 0.01
