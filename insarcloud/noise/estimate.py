"""One class end to end: epochs/pixels screening, AR(1) time-scale, candidate noise models, model choice by
likelihood (eq. 7, Table 2), Sigma and the Gaussian covariance (eqs. 8, 16) and per-pixel velocity precision
with and without the noise model (eq. 12)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal, NamedTuple

import numpy as np
from scipy.optimize import minimize_scalar

from insarcloud.errors import InputArrayError

from .cofactors import ar1_cofactor_dlogalpha, build_cofactors, design_matrix
from .lsvce import LSVCEResult, multivariate_lsvce, nuisance_precision, reml_score, wtest_alpha
from .select import DEFAULT_LEVEL, Selection, choose_model
from .spatial import SigmaModel, correlations, make_pair_bins, scale_variance

logger = logging.getLogger(__name__)

#: Component slots reported per class (the flicker slot holds eq. 6 or the power-law flicker).
SLOTS: tuple[str, ...] = ("white", "ar1", "flicker")

#: Candidate stochastic models of the paper (Table 2) plus all three components.
MODELS: dict[str, tuple[str, ...]] = {
    "white+flicker": ("white", "flicker"),
    "white+ar1": ("white", "ar1"),
    "ar1+flicker": ("ar1", "flicker"),
    "white+ar1+flicker": ("white", "ar1", "flicker"),
}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)

#: Tolerance of the profile-likelihood search in ln(alpha). 0.05 (session 1) left an optimisation error of up
#: to 5 % in alpha, about half its statistical std at r = 100, m = 100 (0.0041/day at alpha = 0.05/day).
ALPHA_XATOL = 0.01

FlickerForm = Literal["flicker", "flicker_powerlaw"]
AlphaMethod = Literal["wtest", "likelihood"]



def default_alphas(days: np.ndarray, n: int = 24) -> np.ndarray:
    """AR(1) alpha grid (1/day) where AR(1) stays distinct from the other components.

    Upper end: neighbour correlation exp(-alpha dt_median) = 0.1 (beyond it AR(1) is white noise and
    "ar1+flicker" would duplicate "white+flicker"); lower end: correlation over the whole span = 0.05
    (below it AR(1) is a constant/trend that the functional model absorbs).
    """
    d = np.asarray(days, dtype=np.float64)
    hi = np.log(10.0) / float(np.median(np.diff(d)))
    lo = np.log(20.0) / float(d[-1] - d[0])
    return np.geomspace(min(lo, hi / 10), hi, n)


class ClassNoise(NamedTuple):
    """Noise model of one class.

    Attributes
    ----------
    model : str  chosen model (a key of :data:`MODELS`, or "none" when the class could not be estimated)
    loglik : (4,) float64  log-likelihood (eq. 7) of each model of :data:`MODEL_NAMES` (its Table 2 row)
    reml : (4,) float64  restricted log-likelihood of each model; the model choice uses this one
    sigma, sigma_std : (3,) float64  components of the chosen model in :data:`SLOTS` order (mm^2), NaN if absent
    negative : (3,) bool  component was negative and constrained to zero
    sigma_std is N^-1 of LS-VCE widened by (a) alpha's own uncertainty when the chosen model has an AR(1)
        whose alpha was fitted by likelihood (joint REML Fisher information in (sigma, ln alpha)) and (b) the
        common-scale noise of Sigma's normalisation (:func:`.spatial.scale_variance`); ``fit.sigma_std``
        keeps plain N^-1
    alpha : float  AR(1) time-scale (1/day) of the chosen model (the w-test value when it has no AR(1))
    alpha_std : float  its std (1/day) from the joint REML Fisher information; NaN when not estimated by
        likelihood or the model has no AR(1)
    lrt_p : (3,) float64  p-value of removing each component (SLOTS order) from the 3-component model
        (boundary likelihood-ratio test, :mod:`.select`); NaN when not tested
    c0 : float  Gaussian covariance at zero distance (Sigma units: fraction of class-mean variance)
    c0_mm2 : float  c0 times the class-mean epoch variance mean(diag Q) (mm^2)
    d : float  correlation distance (m)
    n_iter : int ;  converged : bool ;  n_valid : int  pixels used ;  n_epochs : int  epochs used
    valid : (r,) bool
    velocity : (r,) float64 mm/yr  GLS velocity with the chosen noise model
    velocity_std : (r,) float64 mm/yr  from eq. 12, Sigma_ii (A^T Q^-1 A)^-1_vv
    velocity_std_white : (r,) float64 mm/yr  ordinary LS with white noise only (the "without" case)
    series_std, series_std_std : (r,) float64 mm  per-series noise std and its precision (eq. 11)
    fit : LSVCEResult or None  the chosen model's full LS-VCE result (valid pixels only)
    """

    model: str
    loglik: np.ndarray
    reml: np.ndarray
    sigma: np.ndarray
    sigma_std: np.ndarray
    negative: np.ndarray
    alpha: float
    alpha_std: float
    lrt_p: np.ndarray
    c0: float
    c0_mm2: float
    d: float
    n_iter: int
    converged: bool
    n_valid: int
    n_epochs: int
    valid: np.ndarray
    velocity: np.ndarray
    velocity_std: np.ndarray
    velocity_std_white: np.ndarray
    series_std: np.ndarray
    series_std_std: np.ndarray
    fit: LSVCEResult | None


def screen(Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Epochs and pixels usable by the multivariate model.

    Drops epochs that are NaN everywhere or exactly zero at every pixel (the SBAS reference epoch: its
    noise is the common offset already absorbed by y0), then keeps pixels complete over the remaining
    epochs with a non-zero spread (the reference pixel is identically zero).

    Parameters
    ----------
    Y : (date, r) float
    Returns
    -------
    epoch_keep : (date,) bool ;  pixel_keep : (r,) bool
    """
    fin = np.isfinite(Y)
    allzero = np.all(np.where(fin, Y == 0, True), axis=1)
    epoch_keep = fin.any(axis=1) & ~allzero
    Ye = Y[epoch_keep]
    pix = np.all(np.isfinite(Ye), axis=0)
    spread = np.nanstd(np.where(np.isfinite(Ye), Ye, np.nan), axis=0) if Ye.size else np.zeros(Y.shape[1])
    pix &= np.nan_to_num(spread) > 1e-6
    return epoch_keep, pix


class Screened(NamedTuple):
    """A class's data as the multivariate model uses it (:func:`screened`).

    Attributes
    ----------
    r : int  pixels of the class ;  pix : (r,) bool  the pixels kept (:func:`screen`)
    Yv : (m, rv) float64 mm  the kept epochs x kept pixels ;  days : (m,) float64  the kept epochs' days
    A : (m, n) float64  the functional model's design matrix, time from the first kept epoch
    """

    r: int
    pix: np.ndarray
    Yv: np.ndarray
    days: np.ndarray
    A: np.ndarray


def screened(Y: np.ndarray, days: np.ndarray, functional: str = "seasonal") -> Screened:
    """:func:`screen` applied to a class (Y: (date, r) mm, days: (date,)) and the design matrix of what is kept;
    the common start of :func:`estimate_class` and :func:`.borrow.borrow_class`."""
    Y = np.asarray(Y, dtype=np.float64)
    epoch_keep, pix = screen(Y)
    Yv = Y[epoch_keep][:, pix]
    d_v = np.asarray(days, dtype=np.float64)[epoch_keep]
    A = design_matrix(d_v - (d_v[0] if d_v.size else 0.0), functional)  # type: ignore[arg-type]
    return Screened(Y.shape[1], pix, Yv, d_v, A)


def _empty(r: int, m: int, n_valid: int) -> ClassNoise:
    nan = np.full(r, np.nan)
    k = len(MODEL_NAMES)
    return ClassNoise("none", np.full(k, np.nan), np.full(k, np.nan), np.full(3, np.nan), np.full(3, np.nan),
                      np.zeros(3, bool), np.nan, np.nan, np.full(3, np.nan), np.nan, np.nan, np.nan, 0, False,
                      n_valid, m, np.zeros(r, bool), nan, nan.copy(), nan.copy(), nan.copy(), nan.copy(), None)


def _profile_max(fun: Callable[[float], float], lo: float, hi: float, n_grid: int = 9) -> float:
    """Maximise a profile likelihood over ln(alpha) in [lo, hi]: a grid first (the 3-component profile can
    have 2-3 local maxima), then a bounded Brent search between the best point's neighbours."""
    grid = np.linspace(lo, hi, n_grid)
    vals = np.array([fun(float(g)) for g in grid])
    k = int(np.argmax(vals))
    a, b = grid[max(k - 1, 0)], grid[min(k + 1, n_grid - 1)]
    opt = minimize_scalar(lambda x: -fun(float(x)), bounds=(a, b), method="bounded",
                          options={"xatol": ALPHA_XATOL})
    return float(opt.x) if -opt.fun >= vals[k] else float(grid[k])


def _refine_alpha(f: LSVCEResult, refit: Callable[[float], LSVCEResult], Y: np.ndarray, A: np.ndarray,
                  days: np.ndarray, alpha: float, lo: float, hi: float, comps: tuple[str, ...],
                  steps: int = 3) -> tuple[LSVCEResult, float]:
    """Fisher-scoring steps in ln(alpha) on the whole class (:func:`.lsvce.reml_score`), each accepted only
    when the restricted likelihood rises."""
    la = float(np.log(alpha))
    for _ in range(steps):
        k = f.names.index("ar1")
        if not f.sigma[k] > 0:
            break
        Qk = build_cofactors(days, comps, alpha=float(np.exp(la))).Q
        dQ = (f.sigma[k] * ar1_cofactor_dlogalpha(days, float(np.exp(la))))[None]
        try:
            U, info = reml_score(Y, A, Qk, f.sigma, f.sigma_factor, dQ)
            step = float(np.linalg.solve(info, U)[-1])
        except np.linalg.LinAlgError:
            break
        new = float(np.clip(la + np.clip(step, -0.5, 0.5), lo, hi))
        if abs(new - la) < ALPHA_XATOL:
            break
        g = refit(float(np.exp(new)))
        if not g.reml > f.reml:
            break
        f, la = g, new
    return f, float(np.exp(la))


def _alpha_propagated(f: LSVCEResult, A: np.ndarray, Qk: np.ndarray, days: np.ndarray, alpha: float,
                      n_alpha: int) -> tuple[np.ndarray, float]:
    """Component covariance with the AR(1) alpha's own uncertainty propagated (joint REML Fisher information in
    (sigma, ln alpha), see :func:`.lsvce.nuisance_precision`), and alpha's std (1/day).

    Why: alpha and the AR(1)/white/flicker amplitudes trade off (a larger alpha makes AR(1) whiter and takes
    variance from the white part), so ``N^-1`` at the estimated alpha is too small (measured: 3-component
    truth, within-2-sigma 0.78 with ``N^-1``). Components constrained to zero keep ``N^-1`` (the information
    about alpha vanishes with the AR(1) amplitude).
    """
    k = f.names.index("ar1")
    if not f.sigma[k] > 0 or f.negative.any():
        return f.Q_sigma, np.nan
    dQ = (f.sigma[k] * ar1_cofactor_dlogalpha(days, alpha))[None]  # d Q / d ln(alpha)
    try:
        npr = nuisance_precision(A, Qk, f.sigma, dQ, f.X.shape[1], nuisance_pixels=n_alpha)
    except np.linalg.LinAlgError:
        return f.Q_sigma, np.nan
    var_la = float(npr.Q_nuisance[0, 0])
    if not (np.all(np.isfinite(npr.Q_sigma)) and var_la > 0):
        return f.Q_sigma, np.nan
    return npr.Q_sigma, alpha * np.sqrt(var_la)


def estimate_class(Y: np.ndarray, days: np.ndarray, coords_m: np.ndarray | None = None, *,
                   models: tuple[str, ...] = MODEL_NAMES, sigma_model: SigmaModel = "gaussian",
                   flicker: FlickerForm = "flicker", alphas: np.ndarray | None = None,
                   alpha_method: AlphaMethod = "likelihood", profile_pixels: int = 200,
                   functional: Literal["seasonal", "linear"] = "seasonal",
                   selection: Selection = "lrt", level: float = DEFAULT_LEVEL, penalty: float = 1.0,
                   min_pixels: int = 3, max_iter: int = 50, tol: float = 1e-3) -> ClassNoise:
    """Estimate the noise model of one class of r displacement series.

    Parameters
    ----------
    Y : (date, r) float  LOS displacement (mm); NaN = missing
    days : (date,) float64  days since the first epoch
    coords_m : (r, 2) float64 m, optional  pixel positions (needed for ``sigma_model="gaussian"``)
    models : tuple of str  candidate models (keys of :data:`MODELS`)
    sigma_model : Sigma model of the iteration; ``gaussian`` (default) works for any r, ``full`` needs r < m - n
    flicker : "flicker" (eq. 6) or "flicker_powerlaw" (GNSS power law, kappa = -1)
    alphas : (k,) float64, optional  AR(1) grid (1/day) for the w-test, its min/max bound the likelihood
        search; default :func:`default_alphas` of the epochs
    alpha_method : "likelihood" (default: per AR model, alpha maximising the restricted likelihood) or
        "wtest" (eq. 5, the paper's: one alpha maximising |w| under the white null, for every AR model)
    profile_pixels : int  pixels used for the alpha profile (a spread subset; all when fewer)
    functional : "seasonal" (eq. 13) or "linear"
    selection : "lrt" (default) or "aic"
        Model choice on the restricted likelihood (:func:`.select.choose_model`): "lrt" = backward
        elimination from the 3-component model by boundary likelihood-ratio tests (chi-bar-square) at
        ``level``; "aic" = maximise ``reml - penalty * n_parameters`` (parameters: the variance components
        plus alpha when fitted by likelihood). The plain maximum of eq. 7 always prefers the 3-component
        model (it nests the others).
    level : float  test level of "lrt" (default :data:`.select.DEFAULT_LEVEL` = 0.05)
    penalty : float  per-parameter penalty of "aic" (1 = Akaike; 0 = plain maximum as eq. 7 reads)
    min_pixels : int  fewer valid pixels -> model "none"

    Returns
    -------
    ClassNoise
    """
    r, pix, Yv, d_v, A = screened(Y, days, functional)
    m, rv = Yv.shape
    if rv < min_pixels or m - A.shape[1] < 3:
        logger.debug("class skipped: %d valid pixels, %d epochs", rv, m)
        return _empty(r, m, rv)
    if sigma_model == "full" and rv >= m - A.shape[1]:
        sigma_model = "gaussian"
        logger.debug("r=%d >= m-n=%d: Sigma-hat singular, using the gaussian Sigma model", rv, m - A.shape[1])
    cv = None if coords_m is None else np.asarray(coords_m, dtype=np.float64)[pix]
    if sigma_model == "gaussian" and cv is None:
        raise InputArrayError("sigma_model='gaussian' needs coords_m")
    bins = make_pair_bins(cv) if sigma_model == "gaussian" else None
    kw = dict(sigma_model=sigma_model, coords_m=cv, bins=bins, max_iter=max_iter, tol=tol)

    def comps_of(name: str) -> tuple[str, ...]:
        return tuple("flicker_powerlaw" if c == "flicker" and flicker != "flicker" else c for c in MODELS[name])

    starts: dict[str, np.ndarray] = {}

    def fit(name: str, a: float, Ys: np.ndarray = Yv, sub: dict | None = None) -> LSVCEResult:
        cs = build_cofactors(d_v, comps_of(name), alpha=None if np.isnan(a) else a)
        res = multivariate_lsvce(Ys, A, cs.Q, MODELS[name], sigma0=starts.get(name), **(sub or kw))
        if np.all(np.isfinite(res.sigma)) and np.any(res.sigma > 0):
            # warm start for the next alpha / the full-class fit: fewer iterations
            starts[name] = np.maximum(res.sigma, 1e-3 * np.max(res.sigma))
        return res

    ar_models = [k for k in models if "ar1" in MODELS[k]]
    alphas = default_alphas(d_v) if alphas is None else np.asarray(alphas, dtype=np.float64)
    alpha_of: dict[str, float] = {k: np.nan for k in models}
    w_alpha = np.nan
    if ar_models:
        w_alpha = wtest_alpha(Yv, A, d_v, np.asarray(alphas), sigma_model=sigma_model, coords_m=cv,
                              bins=bins).alpha
        if alpha_method == "wtest":
            alpha_of.update({k: w_alpha for k in ar_models})
        else:
            # profile restricted likelihood over log(alpha), per model, on at most `profile_pixels` pixels
            # (alpha is a class-wide temporal parameter; a spatially spread subset pins it down cheaply)
            if rv > profile_pixels:
                sel = np.linspace(0, rv - 1, profile_pixels).round().astype(int)
                sub_bins = make_pair_bins(cv[sel]) if bins is not None else None
                Ys, sub = Yv[:, sel], dict(kw, coords_m=None if cv is None else cv[sel], bins=sub_bins)
            else:
                Ys, sub = Yv, kw
            lo, hi = np.log(float(np.min(alphas))), np.log(float(np.max(alphas)))
            for name in ar_models:
                la = _profile_max(lambda x, nm=name: fit(nm, float(np.exp(x)), Ys, sub).reml, lo, hi)
                alpha_of[name] = float(np.exp(la))
    ll = np.full(len(MODEL_NAMES), np.nan)
    rl = np.full(len(MODEL_NAMES), np.nan)
    fits: dict[str, LSVCEResult] = {}
    refine = alpha_method == "likelihood" and rv > profile_pixels
    for name in models:
        fits[name] = fit(name, alpha_of[name])
        if refine and "ar1" in MODELS[name]:
            # alpha came from a pixel subset; the REML comparison needs each model at its whole-class
            # optimum (measured r = 400: the subset alpha cost up to 1 log-unit per model, which inflated
            # the LR statistic): Fisher-scoring steps in ln alpha on the whole class
            fits[name], alpha_of[name] = _refine_alpha(fits[name], lambda a, nm=name: fit(nm, a), Yv, A, d_v,
                                                       alpha_of[name], np.log(float(np.min(alphas))),
                                                       np.log(float(np.max(alphas))), comps_of(name))
        ll[MODEL_NAMES.index(name)] = fits[name].loglik
        rl[MODEL_NAMES.index(name)] = fits[name].reml
    choice = choose_model({k: fits[k].reml for k in models}, MODELS, alpha_fitted=alpha_method == "likelihood",
                          selection=selection, level=level, penalty=penalty)
    chosen = choice.model
    lrt_p = np.array([choice.pvalues.get(c, np.nan) for c in SLOTS])
    f = fits[chosen]

    alpha = alpha_of[chosen] if "ar1" in MODELS[chosen] else w_alpha
    cs = build_cofactors(d_v, comps_of(chosen), alpha=None if np.isnan(alpha) else float(alpha))
    Qs, alpha_std = f.Q_sigma, np.nan
    if "ar1" in MODELS[chosen] and alpha_method == "likelihood":
        # alpha's information: the subset's, unless it was refined on the whole class
        Qs, alpha_std = _alpha_propagated(f, A, cs.Q, d_v, float(alpha), rv if refine else min(rv, profile_pixels))
    # the common scale fixed by Sigma's normalisation is noisier than N^-1 assumes (spatial correlation)
    Qs = Qs + scale_variance(f.sigma_factor, cv, m - A.shape[1]) * np.outer(f.sigma, f.sigma)
    comp_std = np.sqrt(np.clip(np.diag(Qs), 0, None))
    sig = np.full(3, np.nan)
    sstd = np.full(3, np.nan)
    neg = np.zeros(3, bool)
    for j, c in enumerate(f.names):
        s = SLOTS.index(c)
        sig[s], sstd[s], neg[s] = f.sigma[j], comp_std[j], f.negative[j]
    qbar = float(np.mean(np.diag(np.tensordot(f.sigma, cs.Q, axes=1))))
    gfit = f.sigma_factor.fit
    c0 = gfit.c0 if gfit is not None else np.nan
    dist = gfit.d if gfit is not None else np.nan
    corr = correlations(f.S, m - A.shape[1], qbar)

    vel = np.full(r, np.nan)
    vstd = np.full(r, np.nan)
    vwhite = np.full(r, np.nan)
    sstd_px = np.full(r, np.nan)
    sstd_std = np.full(r, np.nan)
    vel[pix] = f.X[1]
    vstd[pix] = np.sqrt(f.S.diagonal() * f.Qx[1, 1])
    # white-noise-only ordinary LS, per pixel (what an SBAS velocity_std usually reports)
    AtAi = np.linalg.inv(A.T @ A)
    res = Yv - A @ (AtAi @ (A.T @ Yv))
    vwhite[pix] = np.sqrt(np.sum(res**2, axis=0) / (m - A.shape[1]) * AtAi[1, 1])
    sstd_px[pix], sstd_std[pix] = corr.std, corr.std_std
    return ClassNoise(chosen, ll, rl, sig, sstd, neg, float(alpha), float(alpha_std), lrt_p, float(c0),
                      float(c0 * qbar), float(dist), f.n_iter, f.converged, rv, m, pix, vel, vstd, vwhite, sstd_px,
                      sstd_std, f)
