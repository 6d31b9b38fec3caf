"""Least-squares variance component estimation, univariate and multivariate.

Model (Amiri-Simkooei 2009; Babaee et al. 2022 eq. 2): ``E(vec Y) = (I_r (x) A) vec X`` and
``D(vec Y) = Sigma (x) Q``, ``Q = sum_k sigma_k Q_k``. One iteration with ``W = Q^-1 P = Q^-1 - Q^-1 A
(A^T Q^-1 A)^-1 A^T Q^-1`` (so ``E^T Q^-1 E = Y^T W Y``):

* ``Sigma-hat = Y^T W Y / (m - n)``  (eq. 8), then the Sigma model (see :mod:`.spatial`),
* ``l_k = 1/2 tr(E^T Q^-1 Q_k Q^-1 E Sigma^-1) = 1/2 <Q_k, F Sigma^-1 F^T>`` with ``F = W Y`` (m x r),
* ``N_kl = r/2 tr(Q_k W Q_l W)``,  ``sigma = N^-1 l`` (non-negative least squares when a component turns
  negative), repeat; at convergence ``Q_sigma = N^-1``.

Only m x m, m x r and r x r arrays are ever formed: the (m r) x (m r) covariance never is (the Kronecker
identities ``(Sigma (x) Q)^-1 = Sigma^-1 (x) Q^-1`` and ``tr((I (x) M)(I (x) M')) = r tr(M M')`` do the work).
With Sigma = I and r = 1 this is the univariate LS-VCE of Teunissen & Amiri-Simkooei (2008).

Scale: Sigma is normalised to unit mean diagonal (see :mod:`.spatial`); sigma_k carry the unit of Y^2.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
from scipy.linalg import LinAlgError, cho_factor
from scipy.linalg.lapack import dpotri
from scipy.optimize import nnls

from insarcloud.errors import InputArrayError

from .spatial import PairBins, SigmaFactor, SigmaModel, factor_sigma, pair_bin_products

logger = logging.getLogger(__name__)


class LSVCEResult(NamedTuple):
    """Result of one (multivariate) LS-VCE run.

    Attributes
    ----------
    names : tuple of str  component names
    sigma : (p,) float64  variance components (unit of Y^2, e.g. mm^2), non-negative when constrained
    sigma_std : (p,) float64  their standard deviation, sqrt(diag N^-1)
    Q_sigma : (p, p) float64  covariance of the components, N^-1 at convergence
    sigma_unconstrained : (p,) float64  the unconstrained solution N^-1 l of the last iteration
    negative : (p,) bool  components that were negative and constrained to zero
    S : (r, r) float64  Sigma-hat of eq. 8 at convergence, normalised to unit mean diagonal
    sigma_factor : SigmaFactor  the Sigma used by the iteration (diag, Cholesky, ln det, Gaussian fit)
    loglik : float  log-likelihood (eq. 7 in general form, see :func:`loglik`)
    reml : float  restricted log-likelihood (see :func:`loglik`), used for model selection
    X : (n, r) float64  parameters (BLUE, independent of Sigma)
    Qx : (n, n) float64  (A^T Q^-1 A)^-1; the covariance of pixel i's parameters is Sigma_ii * Qx (eq. 12)
    n_iter : int ;  converged : bool
    """

    names: tuple[str, ...]
    sigma: np.ndarray
    sigma_std: np.ndarray
    Q_sigma: np.ndarray
    sigma_unconstrained: np.ndarray
    negative: np.ndarray
    S: np.ndarray
    sigma_factor: SigmaFactor
    loglik: float
    reml: float
    X: np.ndarray
    Qx: np.ndarray
    n_iter: int
    converged: bool


class _Weights(NamedTuple):
    Q: np.ndarray
    W: np.ndarray
    logdetQ: float
    Qx: np.ndarray
    QiA: np.ndarray


def _weights(A: np.ndarray, Q: np.ndarray) -> _Weights:
    """W = Q^-1 P_A^perp (symmetric), via the Cholesky factor of the m x m Q."""
    try:
        cQ = cho_factor(Q, lower=True)
    except LinAlgError:
        # a zero component set can leave Q semi-definite; a tiny ridge keeps it solvable
        Q = Q + np.eye(Q.shape[0]) * 1e-9 * max(float(np.trace(Q)) / Q.shape[0], 1e-30)
        cQ = cho_factor(Q, lower=True)
    # Q^-1 from the Cholesky factor (LAPACK potri: ~2/3 m^3 flops against 2 m^3 for solving with I)
    Qi, info = dpotri(cQ[0], lower=1)
    if info != 0:
        raise LinAlgError(f"potri failed ({info})")
    Qi = np.tril(Qi) + np.tril(Qi, -1).T
    QiA = Qi @ A
    Qx = np.linalg.inv(A.T @ QiA)
    W = Qi - QiA @ Qx @ QiA.T
    return _Weights(Q, 0.5 * (W + W.T), 2.0 * float(np.sum(np.log(np.diag(cQ[0])))), Qx, QiA)


def loglik(Y: np.ndarray, F: np.ndarray, sf: SigmaFactor, logdetQ: float, Qx: np.ndarray) -> tuple[float, float]:
    """Gaussian log-likelihood of vec Y under Sigma (x) Q at the BLUE of X, ordinary and restricted.

    ``ln L = -mr/2 ln 2pi - 1/2 (m ln det Sigma + r ln det Q) - 1/2 tr(Sigma^-1 E^T Q^-1 E)``; with the
    unstructured Sigma-hat of eq. 8 the last term is r (m - n)/2 and this is exactly eq. 7.

    The restricted (REML) form adds ``-1/2 ln det((I (x) A)^T (Sigma (x) Q)^-1 (I (x) A)) + nr/2 ln 2pi
    = n/2 ln det Sigma - r/2 ln det(A^T Q^-1 A) + nr/2 ln 2pi``: it is the likelihood of the residuals only,
    blind to the part of Q inside the column space of A (which the data cannot see and eq. 6's large
    constant part would otherwise be penalised for). LS-VCE is the REML estimator for Gaussian data.

    Returns
    -------
    (loglik, reml) : float, float
    """
    m, r = Y.shape
    n = Qx.shape[0]
    quad = float(np.sum(Y * sf.solve(F.T).T))
    ll = -0.5 * m * r * np.log(2 * np.pi) - 0.5 * (m * sf.logdet + r * logdetQ) - 0.5 * quad
    sign, logdet_qx = np.linalg.slogdet(Qx)
    reml = ll + 0.5 * n * r * np.log(2 * np.pi) + 0.5 * n * sf.logdet + 0.5 * r * logdet_qx
    return float(ll), float(reml)


def _identity_mask(Qk: np.ndarray) -> np.ndarray:
    """Which cofactors are the identity (white noise): their product with W is W itself."""
    eye = np.eye(Qk.shape[1])
    return np.array([np.array_equal(q, eye) for q in Qk])


def _normal_matrix(Qk: np.ndarray, W: np.ndarray, r: int, eye: np.ndarray | None = None) -> np.ndarray:
    """``N_kl = r/2 tr(Q_k W Q_l W)``; ``eye`` marks identity cofactors (skips their m^3 product)."""
    eye = _identity_mask(Qk) if eye is None else eye
    M = np.empty(Qk.shape)
    if eye.any():
        M[eye] = W
    if not eye.all():
        M[~eye] = Qk[~eye] @ W
    return 0.5 * r * np.einsum("kij,lji->kl", M, M)


def _solve_components(N: np.ndarray, l: np.ndarray, nonneg: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s_u = np.linalg.solve(N, l)
    neg = s_u < 0
    if not nonneg or not neg.any():
        return s_u, s_u, np.zeros_like(neg)
    # min (s - s_u)^T N (s - s_u), s >= 0  ==  NNLS on the Cholesky factor of N
    L = np.linalg.cholesky(N)
    s, _ = nnls(L.T, L.T @ s_u)
    return s, s_u, s <= 0


def multivariate_lsvce(Y: np.ndarray, A: np.ndarray, Qk: np.ndarray, names: tuple[str, ...] | None = None, *,
                       sigma_model: SigmaModel = "full", coords_m: np.ndarray | None = None,
                       bins: PairBins | None = None, sigma0: np.ndarray | None = None, nonneg: bool = True,
                       max_iter: int = 50, tol: float = 1e-3, pair_sums: bool = True) -> LSVCEResult:
    """Multivariate LS-VCE of a class of r series (Amiri-Simkooei 2009), never forming an (m r)^2 matrix.

    Parameters
    ----------
    Y : (date, r) float64  displacement series (mm), complete (no NaN)
    A : (date, n) float64  design matrix (e.g. :func:`.cofactors.design_matrix`)
    Qk : (p, date, date) float64  cofactor matrices
    names : tuple of str, optional  component names (default "c0", "c1", ...)
    sigma_model : {"full", "gaussian", "diagonal", "identity"}
        How Sigma is modelled (:data:`.spatial.SigmaModel`). ``full`` needs r < m - n.
    coords_m : (r, 2) float64 m, bins : PairBins  required for ``gaussian``
    sigma0 : (p,) float64, optional  starting components
    nonneg : bool  constrain the components to be >= 0 (default True; constrained ones are reported)
    max_iter : int ;  tol : float
        Converged when every |change| < tol * max(std of that component, 1e-9 * |sigma|_max).
    pair_sums : bool  with the Gaussian Sigma, iterate on what its fit uses of Sigma-hat (its diagonal and
        the sums of its entries per distance bin, ``<W, Y B_b Y^T>`` from m x m products computed once per
        Y, :func:`.spatial.pair_bin_products`) instead of the r x r ``Y^T W Y`` (2 r^2 m flops) every
        iteration; False = the r x r Sigma-hat every iteration (same result, the reference)

    Returns
    -------
    LSVCEResult
    """
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    m, r = Y.shape
    n = A.shape[1]
    p = Qk.shape[0]
    names = names or tuple(f"c{k}" for k in range(p))
    dof = m - n
    if dof < 1:
        raise InputArrayError(f"need more epochs ({m}) than parameters ({n})")
    if sigma_model == "full" and r >= dof:
        raise InputArrayError(f"sigma model 'full' needs r < m - n (r={r}, m={m}, n={n}): Sigma-hat of eq. 8 "
                         "is singular; use 'gaussian' or 'diagonal'")
    if not np.all(np.isfinite(Y)):
        raise InputArrayError("Y contains NaN/inf; drop incomplete series before LS-VCE")
    if sigma0 is None:
        res = Y - A @ np.linalg.lstsq(A, Y, rcond=None)[0]
        s2 = float(np.sum(res**2)) / (dof * r)
        sigma = np.full(p, s2 / p) / np.mean(np.diagonal(Qk, axis1=1, axis2=2), axis=1)
    else:
        sigma = np.asarray(sigma0, dtype=np.float64).copy()
    normalise = sigma_model != "identity"
    eye = _identity_mask(Qk)
    converged = False
    sigma_u = sigma.copy()
    neg = np.zeros(p, bool)
    it = 0
    N = np.eye(p)
    prev: np.ndarray | None = None
    Cb = pair_bin_products(Y, bins) if pair_sums and sigma_model == "gaussian" and bins is not None else None
    S = diagS = means = None
    while it < max_iter:
        it += 1
        w = _weights(A, np.tensordot(sigma, Qk, axes=1))
        W = w.W
        F = W @ Y
        if Cb is None:
            S = (Y.T @ F) / dof
            diagS = np.diag(S)
        else:
            # only Sigma-hat's diagonal and its per-bin sums of entries: sum_(i,j in b) y_i^T W y_j = <W, C_b>
            diagS = np.einsum("ij,ij->j", Y, F) / dof
            means = np.einsum("bij,ij->b", Cb, W) / (dof * bins.counts)
        if normalise:
            # fix the common scale: mean diag Sigma-hat = 1 (rescales sigma, W, F, S consistently)
            c = float(np.mean(diagS))
            sigma, W, F, diagS = sigma * c, W / c, F / c, diagS / c
            if Cb is None:
                S = S / c
            else:
                means = means / c
        if prev is not None:
            # compare normalised iterates (with a modelled Sigma the LS-VCE update and eq. 8 may disagree on
            # the common scale by a constant factor, which the normalisation removes)
            std = np.sqrt(np.clip(np.diag(np.linalg.inv(N)), 0, None))
            if np.all(np.abs(sigma - prev) <= tol * np.maximum(std, 1e-9 * np.max(np.abs(sigma)))):
                converged = True
                break
        prev = sigma.copy()
        sf = factor_sigma(S, sigma_model, coords_m, bins, diag=diagS, pair_means=means)
        H = F @ sf.solve(F.T)  # (m, m) = F Sigma^-1 F^T
        lk = 0.5 * np.einsum("kij,ij->k", Qk, H)
        N = _normal_matrix(Qk, W, r, eye)
        sigma, sigma_u, neg = _solve_components(N, lk, nonneg)
    # final quantities at the converged components
    w = _weights(A, np.tensordot(sigma, Qk, axes=1))
    F = w.W @ Y
    S = (Y.T @ F) / dof
    if normalise:
        c = float(np.mean(np.diag(S)))
        sigma, F, S = sigma * c, F / c, S / c
        w = _weights(A, np.tensordot(sigma, Qk, axes=1))
    sf = factor_sigma(S, sigma_model, coords_m, bins)
    N = _normal_matrix(Qk, w.W, r, eye)
    Qs = np.linalg.inv(N)
    X = w.Qx @ (w.QiA.T @ Y)
    ll, reml = loglik(Y, F, sf, w.logdetQ, w.Qx)
    if not converged:
        logger.debug("LS-VCE %s not converged after %d iterations", names, max_iter)
    return LSVCEResult(tuple(names), sigma, np.sqrt(np.clip(np.diag(Qs), 0, None)), Qs, sigma_u, neg, S, sf, ll,
                       reml, X, w.Qx, it, converged)


class NuisancePrecision(NamedTuple):
    """Precision of the variance components when nuisance parameters of Q (e.g. AR(1) log alpha) were
    estimated too.

    Attributes
    ----------
    Q_sigma : (p, p) float64  covariance of the components with the nuisance uncertainty propagated
    Q_nuisance : (q, q) float64  covariance of the nuisance parameters
    fisher : (p + q, p + q) float64  joint REML Fisher information of (sigma, nuisance), Sigma fixed
    """

    Q_sigma: np.ndarray
    Q_nuisance: np.ndarray
    fisher: np.ndarray


def nuisance_precision(A: np.ndarray, Qk: np.ndarray, sigma: np.ndarray, dQ: np.ndarray, r: int, *,
                       nuisance_pixels: int | None = None) -> NuisancePrecision:
    """Propagate the uncertainty of nuisance parameters of Q into the components' precision.

    LS-VCE's ``N^-1`` is the precision of the components with every cofactor known. When a cofactor has an
    estimated parameter theta (the AR(1) time-scale), the joint REML Fisher information of
    ``(sigma, theta)`` is ``I_ij = r/2 tr(D_i W D_j W)`` with ``D = (Q_1 .. Q_p, dQ/dtheta_1 ..)`` (Sigma
    fixed; Kronecker identity as in :func:`multivariate_lsvce`), and the components' covariance is the
    sigma block of ``I^-1``: ``N^-1 + G S^-1 G^T`` with ``G = N^-1 I_s,theta`` (the slope of sigma-hat with
    theta) and ``S`` the Schur complement (the profile information of theta).

    Parameters
    ----------
    A : (date, n) float64 ;  Qk : (p, date, date) float64 ;  sigma : (p,) float64 the estimated components
    dQ : (q, date, date) float64  derivatives of ``Q = sum sigma_k Q_k`` with respect to the nuisance
        parameters (already multiplied by the component that carries them)
    r : int  series in the class (the ``r`` of the Kronecker trace)
    nuisance_pixels : int, optional  when theta was estimated from fewer series (a subset, as the alpha
        profile does), its variance is scaled by ``r / nuisance_pixels``

    Returns
    -------
    NuisancePrecision
    """
    p = Qk.shape[0]
    w = _weights(A, np.tensordot(sigma, Qk, axes=1))
    fisher = _normal_matrix(np.concatenate([Qk, dQ]), w.W, r)
    N, B, C = fisher[:p, :p], fisher[:p, p:], fisher[p:, p:]
    Ni = np.linalg.inv(N)
    G = Ni @ B
    Qn = np.linalg.inv(C - B.T @ G)
    if nuisance_pixels is not None and nuisance_pixels < r:
        Qn = Qn * (r / nuisance_pixels)
    Qs = Ni + G @ Qn @ G.T
    return NuisancePrecision(0.5 * (Qs + Qs.T), Qn, fisher)


def reml_score(Y: np.ndarray, A: np.ndarray, Qk: np.ndarray, sigma: np.ndarray, sf: SigmaFactor,
               dQ: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Score and Fisher information of the restricted likelihood in (sigma, nuisance), Sigma fixed.

    ``U_i = 1/2 [tr(Sigma^-1 F^T D_i F) - r tr(W D_i)]`` with ``F = W Y`` and ``I_ij = r/2 tr(D_i W D_j W)``,
    ``D = (Q_1 .. Q_p, dQ_1 ..)``; a Fisher-scoring step is ``I^-1 U`` (used to refine alpha on a whole class
    after its profile on a pixel subset).

    Parameters
    ----------
    Y : (date, r) ;  A : (date, n) ;  Qk : (p, date, date) ;  sigma : (p,) ;  sf : SigmaFactor (r series)
    dQ : (q, date, date)  derivatives of Q with respect to the nuisance parameters

    Returns
    -------
    U : (p + q,) float64 ;  I : (p + q, p + q) float64
    """
    r = Y.shape[1]
    w = _weights(A, np.tensordot(sigma, Qk, axes=1))
    F = w.W @ Y
    H = F @ sf.solve(F.T)
    D = np.concatenate([Qk, dQ])
    U = 0.5 * (np.einsum("kij,ij->k", D, H) - r * np.einsum("kij,ji->k", D, w.W))
    return U, _normal_matrix(D, w.W, r)


def univariate_lsvce(y: np.ndarray, A: np.ndarray, Qk: np.ndarray, names: tuple[str, ...] | None = None,
                     **kw) -> LSVCEResult:
    """Univariate LS-VCE of one series (Teunissen & Amiri-Simkooei 2008): Q_y = sum sigma_k Q_k,
    ``N_kl = 1/2 tr(Q_k R P Q_l R P)``, ``l_k = 1/2 e^T R Q_k R e``.

    Parameters
    ----------
    y : (date,) float64 mm;  A : (date, n);  Qk : (p, date, date)
    """
    return multivariate_lsvce(np.asarray(y, dtype=np.float64)[:, None], A, Qk, names,
                              sigma_model="identity", **kw)


class WTest(NamedTuple):
    """AR(1) time-scale chosen by the w-test (eq. 5).

    Attributes
    ----------
    alpha : float  the alpha (1/day) maximising |w|
    alphas : (k,) float64 grid;  w : (k,) float64 statistic on the grid
    """

    alpha: float
    alphas: np.ndarray
    w: np.ndarray


def wtest_alpha(Y: np.ndarray, A: np.ndarray, days: np.ndarray, alphas: np.ndarray, *,
                sigma_model: SigmaModel = "full", coords_m: np.ndarray | None = None,
                bins: PairBins | None = None, Q0: np.ndarray | None = None) -> WTest:
    """w-test of eq. 5 for an AR(1) cofactor against the null model, over a grid of alpha.

    ``w = [b tr(E^T Q_a E Sigma^-1) - r tr(Q_a P) tr(E^T E Sigma^-1)] /
    [2 b^2 r tr(Q_a P Q_a P) - 2 r^2 b tr(Q_a P)^2]^(1/2)``, b = (m - n) r, under the white null
    ``Q0 = I`` (the paper's choice; any other null Q0 is whitened first). The denominator is the exact
    standard deviation of the numerator under the null (the paper prints its first trace as tr(Q_a P)).
    """
    from .cofactors import ar1_cofactor

    m, r = Y.shape
    n = A.shape[1]
    b = (m - n) * r
    if Q0 is not None:
        # whiten by the null cofactor so the white-null formula applies
        L = np.linalg.cholesky(Q0)
        Li = np.linalg.inv(L)
        Y, A = Li @ Y, Li @ A
    P = np.eye(m) - A @ np.linalg.solve(A.T @ A, A.T)
    E = P @ Y
    S = (E.T @ E) / (m - n)
    S = S / np.mean(np.diag(S))
    sf = factor_sigma(S, "diagonal" if sigma_model == "identity" else sigma_model, coords_m, bins)
    G = E @ sf.solve(E.T)
    trG = float(np.trace(G))
    ws = np.empty(len(alphas))
    for i, a in enumerate(alphas):
        Qa = ar1_cofactor(days, float(a))
        if Q0 is not None:
            Qa = Li @ Qa @ Li.T
        QaP = Qa @ P
        t1 = float(np.trace(QaP))
        t2 = float(np.sum(QaP * QaP.T))
        num = b * float(np.sum(Qa * G)) - r * t1 * trG
        den = np.sqrt(max(2.0 * b**2 * r * t2 - 2.0 * r**2 * b * t1**2, 1e-300))
        ws[i] = num / den
    k = int(np.argmax(np.abs(ws)))
    return WTest(float(alphas[k]), np.asarray(alphas, dtype=np.float64), ws)
