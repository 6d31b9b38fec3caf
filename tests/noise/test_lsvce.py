"""Multivariate LS-VCE against a brute-force dense (m r) x (m r) computation on a tiny case."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from insarcloud.noise.cofactors import build_cofactors, design_matrix
from insarcloud.noise.lsvce import multivariate_lsvce, univariate_lsvce, wtest_alpha
from insarcloud.noise.synth import grid_coords, regular_days, simulate_class


def _dense_multivariate(Y, A, Qk, iters=500):
    """Textbook LS-VCE on vec(Y) with cofactors Sigma (x) Q_k, Sigma-hat from eq. 8 each iteration."""
    m, r = Y.shape
    n = A.shape[1]
    Ab = np.kron(np.eye(r), A)
    y = Y.T.reshape(-1)  # vec, column by column
    sig = np.ones(len(Qk))
    for _ in range(iters):
        Q = np.tensordot(sig, Qk, 1)
        Qi = np.linalg.inv(Q)
        E = Y - A @ np.linalg.solve(A.T @ Qi @ A, A.T @ Qi @ Y)
        S = E.T @ Qi @ E / (m - n)
        R = np.linalg.inv(np.kron(S, Q))
        P = np.eye(m * r) - Ab @ np.linalg.solve(Ab.T @ R @ Ab, Ab.T @ R)
        e = P @ y
        Qb = [np.kron(S, q) for q in Qk]
        N = np.array([[0.5 * np.trace(a @ R @ P @ b @ R @ P) for b in Qb] for a in Qb])
        l = np.array([0.5 * e @ R @ a @ R @ e for a in Qb])
        new = np.linalg.solve(N, l)
        if np.max(np.abs(new - sig)) < 1e-13:
            sig = new
            break
        sig = new
    Q = np.tensordot(sig, Qk, 1)
    Qi = np.linalg.inv(Q)
    X = np.linalg.solve(A.T @ Qi @ A, A.T @ Qi @ Y)
    E = Y - A @ X
    S = E.T @ Qi @ E / (m - n)
    Qy = np.kron(S, Q)
    ll = multivariate_normal(Ab @ X.T.reshape(-1), Qy).logpdf(y)
    reml = ll + 0.5 * n * r * np.log(2 * np.pi) - 0.5 * np.linalg.slogdet(Ab.T @ np.linalg.inv(Qy) @ Ab)[1]
    R = np.linalg.inv(Qy)
    P = np.eye(m * r) - Ab @ np.linalg.solve(Ab.T @ R @ Ab, Ab.T @ R)
    Qb = [np.kron(S, q) for q in Qk]
    N = np.array([[0.5 * np.trace(a @ R @ P @ b @ R @ P) for b in Qb] for a in Qb])
    c = np.mean(np.diag(S))
    return sig * c, np.linalg.inv(N) * c**2, S / c, X, ll, reml


@pytest.mark.parametrize("seed", [1, 5, 7])  # seeds whose unconstrained solution is positive
def test_multivariate_equals_dense_r3_m8(seed: int) -> None:
    rng = np.random.default_rng(seed)
    days = np.cumsum(np.r_[0, rng.integers(6, 40, 7)]).astype(float)
    A = design_matrix(days, "linear")
    cs = build_cofactors(days, ("white", "flicker"))
    L = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.2, 0.3, 0.9]])
    Y = np.linalg.cholesky(4.0 * cs.Q[0] + 2.0 * cs.Q[1]) @ rng.standard_normal((8, 3)) @ L.T
    Y += A @ rng.normal(size=(2, 3))
    res = multivariate_lsvce(Y, A, cs.Q, cs.names, sigma_model="full", nonneg=False, tol=1e-12, max_iter=500)
    sig, Qs, S, X, ll, reml = _dense_multivariate(Y, A, cs.Q)
    assert res.converged
    np.testing.assert_allclose(res.sigma, sig, rtol=1e-7)
    np.testing.assert_allclose(res.Q_sigma, Qs, rtol=1e-7)
    np.testing.assert_allclose(res.S, S, rtol=1e-7)
    np.testing.assert_allclose(res.X, X, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(res.loglik, ll, rtol=1e-10)
    np.testing.assert_allclose(res.reml, reml, rtol=1e-10)
    # eq. 7 exactly: with the unstructured Sigma-hat the quadratic term is r (m - n) / 2
    m, r, n = 8, 3, 2
    eq7 = -m * r / 2 * np.log(2 * np.pi) - 0.5 * (m * res.sigma_factor.logdet
                                                   + r * np.linalg.slogdet(np.tensordot(res.sigma, cs.Q, 1))[1]) \
        - r * (m - n) / 2
    np.testing.assert_allclose(res.loglik, eq7, rtol=1e-10)


def test_univariate_equals_dense_formulas() -> None:
    rng = np.random.default_rng(5)
    days = regular_days(40)
    A = design_matrix(days)
    cs = build_cofactors(days, ("white", "ar1"), alpha=0.05)
    y = np.linalg.cholesky(3.0 * cs.Q[0] + 5.0 * cs.Q[1]) @ rng.standard_normal(40) + A @ rng.normal(size=6)
    res = univariate_lsvce(y, A, cs.Q, cs.names, tol=1e-12, max_iter=500)
    # one dense Teunissen & Amiri-Simkooei step at the solution must return the solution (fixed point)
    Qy = np.tensordot(res.sigma, cs.Q, 1)
    R = np.linalg.inv(Qy)
    P = np.eye(40) - A @ np.linalg.solve(A.T @ R @ A, A.T @ R)
    e = P @ y
    N = np.array([[0.5 * np.trace(a @ R @ P @ b @ R @ P) for b in cs.Q] for a in cs.Q])
    l = np.array([0.5 * e @ R @ a @ R @ e for a in cs.Q])
    np.testing.assert_allclose(np.linalg.solve(N, l), res.sigma, rtol=1e-8)
    np.testing.assert_allclose(res.Q_sigma, np.linalg.inv(N), rtol=1e-8)


def test_negative_component_constrained_and_reported() -> None:
    rng = np.random.default_rng(0)
    days = regular_days(60)
    A = design_matrix(days)
    cs = build_cofactors(days, ("white", "ar1"), alpha=0.05)
    Y = 2.0 * rng.standard_normal((60, 4))  # white only: the AR(1) part is ~0 and goes negative often
    hits = 0
    for k in range(6):
        Y = 2.0 * np.random.default_rng(k).standard_normal((60, 4))
        free = multivariate_lsvce(Y, A, cs.Q, cs.names, sigma_model="diagonal", nonneg=False)
        con = multivariate_lsvce(Y, A, cs.Q, cs.names, sigma_model="diagonal")
        assert np.all(con.sigma >= 0)
        if free.sigma[1] < 0:
            hits += 1
            assert con.negative[1] and con.sigma[1] == 0
    assert hits >= 1


def test_never_forms_mr_square() -> None:
    # r = 3000 series of m = 30: (m r)^2 doubles would be 65 GB (this machine has 24), so this only runs
    # because the Kronecker identities keep every array at m x m, m x r or r x r
    rng = np.random.default_rng(1)
    days = regular_days(30)
    A = design_matrix(days, "linear")
    cs = build_cofactors(days, ("white", "flicker"))
    Y = np.linalg.cholesky(2.0 * cs.Q[0] + 1.0 * cs.Q[1]) @ rng.standard_normal((30, 3000))
    res = multivariate_lsvce(Y, A, cs.Q, cs.names, sigma_model="diagonal")
    assert res.converged
    assert np.all(np.abs(res.sigma - [2.0, 1.0]) < 4 * res.sigma_std)


def test_full_sigma_refuses_singular_case() -> None:
    days = regular_days(10)
    A = design_matrix(days)
    cs = build_cofactors(days, ("white",))
    with pytest.raises(ValueError, match="r < m - n"):
        multivariate_lsvce(np.random.default_rng(0).normal(size=(10, 4)), A, cs.Q, sigma_model="full")


def test_wtest_picks_true_alpha_for_pure_ar1() -> None:
    rng = np.random.default_rng(2)
    days = regular_days(80)
    xy = grid_coords(16)
    hits = 0
    for _ in range(5):
        s = simulate_class(rng, days, xy, {"white": 1.0, "ar1": 6.0}, alpha=0.05, rho0=0.0)
        A = design_matrix(days)
        wt = wtest_alpha(s.Y, A, days, np.geomspace(0.005, 1, 24), sigma_model="diagonal")
        hits += 0.025 <= wt.alpha <= 0.1
    assert hits >= 4
