"""One class end to end: epochs/pixels screening, AR(1) time-scale, candidate noise models, model choice by
likelihood (eq. 7, Table 2), Sigma and the Gaussian covariance (eqs. 8, 16) and per-pixel velocity precision
with and without the noise model (eq. 12)."""

from __future__ import annotations

import logging
from typing import Literal, NamedTuple

import numpy as np
from scipy.optimize import minimize_scalar

from insarcloud.errors import InputArrayError

from .cofactors import build_cofactors, design_matrix
from .lsvce import LSVCEResult, multivariate_lsvce, wtest_alpha
from .spatial import SigmaModel, correlations, make_pair_bins

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
    alpha : float  AR(1) time-scale (1/day) of the chosen model (the w-test value when it has no AR(1))
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


def _empty(r: int, m: int, n_valid: int) -> ClassNoise:
    nan = np.full(r, np.nan)
    k = len(MODEL_NAMES)
    return ClassNoise("none", np.full(k, np.nan), np.full(k, np.nan), np.full(3, np.nan), np.full(3, np.nan),
                      np.zeros(3, bool), np.nan, np.nan, np.nan, np.nan, 0, False, n_valid, m,
                      np.zeros(r, bool), nan, nan.copy(), nan.copy(), nan.copy(), nan.copy(), None)


def estimate_class(Y: np.ndarray, days: np.ndarray, coords_m: np.ndarray | None = None, *,
                   models: tuple[str, ...] = MODEL_NAMES, sigma_model: SigmaModel = "gaussian",
                   flicker: FlickerForm = "flicker", alphas: np.ndarray | None = None,
                   alpha_method: AlphaMethod = "likelihood", profile_pixels: int = 200,
                   functional: Literal["seasonal", "linear"] = "seasonal",
                   penalty: float = 1.0, min_pixels: int = 3,
                   max_iter: int = 50, tol: float = 1e-3) -> ClassNoise:
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
    penalty : float
        Model choice maximises ``reml - penalty * n_parameters`` (1 = Akaike's criterion; 0 = plain maximum
        likelihood as eq. 7 reads). Parameters: the variance components, plus alpha when it was fitted by
        likelihood. The plain maximum always prefers the 3-component model (it nests the others) and
        AR(1) models whose alpha was tuned; the penalty makes the comparison fair.
    min_pixels : int  fewer valid pixels -> model "none"

    Returns
    -------
    ClassNoise
    """
    Y = np.asarray(Y, dtype=np.float64)
    m_all, r = Y.shape
    epoch_keep, pix = screen(Y)
    Yv = Y[epoch_keep][:, pix]
    d_v = np.asarray(days, dtype=np.float64)[epoch_keep]
    m, rv = Yv.shape
    A = design_matrix(d_v - (d_v[0] if m else 0.0), functional)
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
                opt = minimize_scalar(lambda la, nm=name: -fit(nm, float(np.exp(la)), Ys, sub).reml,
                                      bounds=(lo, hi), method="bounded", options={"xatol": 0.05})
                alpha_of[name] = float(np.exp(opt.x))
    ll = np.full(len(MODEL_NAMES), np.nan)
    rl = np.full(len(MODEL_NAMES), np.nan)
    fits: dict[str, LSVCEResult] = {}
    for name in models:
        fits[name] = fit(name, alpha_of[name])
        ll[MODEL_NAMES.index(name)] = fits[name].loglik
        rl[MODEL_NAMES.index(name)] = fits[name].reml
    # Akaike-type choice on the restricted likelihood: each variance component and a fitted AR(1) alpha
    # count one parameter (the profile over alpha otherwise favours AR(1) models, and the 3-component
    # model nests the others). With lr_threshold=None the 3-component model needs that margin instead.
    def n_par(k: str) -> int:
        return len(MODELS[k]) + int("ar1" in MODELS[k] and alpha_method == "likelihood")

    chosen = max(models, key=lambda k: fits[k].reml - penalty * n_par(k))
    f = fits[chosen]

    sig = np.full(3, np.nan)
    sstd = np.full(3, np.nan)
    neg = np.zeros(3, bool)
    for j, c in enumerate(f.names):
        s = SLOTS.index(c)
        sig[s], sstd[s], neg[s] = f.sigma[j], f.sigma_std[j], f.negative[j]
    alpha = alpha_of[chosen] if "ar1" in MODELS[chosen] else w_alpha
    cs = build_cofactors(d_v, comps_of(chosen), alpha=None if np.isnan(alpha) else float(alpha))
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
    return ClassNoise(chosen, ll, rl, sig, sstd, neg, float(alpha), float(c0), float(c0 * qbar), float(dist),
                      f.n_iter, f.converged, rv, m, pix, vel, vstd, vwhite, sstd_px, sstd_std, f)
