"""A class's noise with the noise model of a nearby class (``NoiseParams.model_stride``; docs/noise.md,
"Noise model on a sample of classes").

The full model search of :func:`.estimate.estimate_class` (the alpha profile, four candidate models, the model
choice) runs on a regular sample of the classes; every other class takes the nearest sampled class's model
(which components, alpha) and estimates only what is its own:

* ``fit="model"``: ONE multivariate LS-VCE fit of the component amplitudes on the class's own data with the
  donor's model and alpha fixed, warm-started from the donor's components; Sigma (its Gaussian C0, d) is the
  class's own, re-fitted inside that fit as in every LS-VCE fit of the stage. Velocity, eq. 12 precision and
  eq. 11 series std then come from that fit.
* ``fit="all"``: the same single fit with all three components (white + AR(1) + flicker, the donor's alpha;
  non-negative, so an absent one goes to zero): the donor's model *choice*, a boundary test that flips from
  class to class, is not imposed.
* ``fit="subset"`` (the stage's default, see docs/noise.md for the figures): that fit of all three
  components on ``profile_pixels`` (200) pixels spread over the class (as the alpha profile of
  :func:`.estimate.estimate_class` does), then the per-pixel GLS of ``"scale"`` with those components: the
  class's own component ratios at ~1/5 of the whole-class fit's cost.
* ``fit="scale"``: no LS-VCE at all: the donor's
  components (their ratios) define the temporal cofactor ``Q``; the class only rescales them by its own mean
  a-posteriori variance factor, and each pixel gets its GLS velocity and
  ``std_i = sqrt(e_i^T W e_i / (m - n) * (A^T Q^-1 A)^-1_vv)`` (its own variance factor). C0 and d are the
  donor's.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np

from .cofactors import ar1_cofactor_dlogalpha, build_cofactors
from .estimate import MODEL_NAMES, MODELS, SLOTS, ClassNoise, FlickerForm, _empty, screened
from .lsvce import _normal_matrix, _weights, multivariate_lsvce
from .spatial import SigmaModel, make_pair_bins, scale_variance

#: How a class uses a borrowed model (see the module text).
BorrowFit = Literal["scale", "model", "all", "subset"]
BORROW_DEFAULT: BorrowFit = "subset"


class Donor(NamedTuple):
    """The noise model a class borrows (the class fields of the donor class, :data:`.dask_ops.CLASS_FIELDS`).

    Attributes
    ----------
    model : str  a key of :data:`.estimate.MODELS`
    sigma, sigma_std : (3,) float64 mm^2  components of the donor in :data:`.estimate.SLOTS` order (NaN absent)
    alpha, alpha_std : float 1/day  the donor's AR(1) alpha and its std (NaN: none / not by likelihood)
    c0, d : float  the donor's Gaussian spatial covariance (Sigma units) and distance (m)
    n_valid : int  the donor's pixels ;  class_id : int  the donor's class id
    """

    model: str
    sigma: np.ndarray
    sigma_std: np.ndarray
    alpha: float
    alpha_std: float
    c0: float
    d: float
    n_valid: int
    class_id: int


def donor_of(c: ClassNoise, class_id: int) -> Donor:
    """The :class:`Donor` of an estimated class."""
    return Donor(c.model, np.asarray(c.sigma, np.float64), np.asarray(c.sigma_std, np.float64), float(c.alpha),
                 float(c.alpha_std), float(c.c0), float(c.d), int(c.n_valid), int(class_id))


def _components(model: str, flicker: FlickerForm) -> tuple[str, ...]:
    return tuple("flicker_powerlaw" if c == "flicker" and flicker != "flicker" else c for c in MODELS[model])


def borrow_class(Y: np.ndarray, days: np.ndarray, coords_m: np.ndarray | None, donor: Donor, *,
                 fit: BorrowFit = BORROW_DEFAULT, sigma_model: SigmaModel = "gaussian",
                 flicker: FlickerForm = "flicker", functional: str = "seasonal", min_pixels: int = 3,
                 max_iter: int = 50, tol: float = 1e-3, profile_pixels: int = 200,
                 **_model_search: object) -> ClassNoise:
    """Noise of one class with the donor's model fixed (see the module text).

    Parameters
    ----------
    Y : (date, r) float  LOS displacement (mm); NaN = missing
    days : (date,) float64 ;  coords_m : (r, 2) float64 m (needed for the Gaussian Sigma with a fit)
    donor : Donor  the model to use (its ``model`` must not be "none")
    fit : "scale", "model" or "all"  the donor's components rescaled, or one LS-VCE fit of the amplitudes of
        the donor's model or of all three components (see the module text)
    sigma_model, flicker, functional, min_pixels, max_iter, tol : as :func:`.estimate.estimate_class`
    _model_search : the model-search options of ``estimate_class`` (alphas, models, selection, ...): unused

    Returns
    -------
    ClassNoise  ``model``/``alpha``/``alpha_std`` are the donor's; ``loglik``/``reml`` are set for that model
    only (a fit) or NaN; ``lrt_p`` NaN (no test ran)
    """
    r, pix, Yv, d_v, A = screened(Y, days, functional)
    m, rv = Yv.shape
    dof = m - A.shape[1]
    if rv < min_pixels or dof < 3:
        return _empty(r, m, rv)
    model = "white+ar1+flicker" if fit in ("all", "subset") and np.isfinite(donor.alpha) else donor.model
    names = MODELS[model]
    has_ar = "ar1" in names
    alpha = float(donor.alpha)
    cs = build_cofactors(d_v, _components(model, flicker), alpha=alpha if has_ar else None)
    slot = [SLOTS.index(c) for c in names]
    s_d = np.nan_to_num(np.asarray(donor.sigma, np.float64)[slot])
    s0 = np.maximum(s_d, 1e-3 * max(float(np.max(s_d)), 1e-12))  # estimate_class's warm-start floor
    ll = np.full(len(MODEL_NAMES), np.nan)
    rl = np.full(len(MODEL_NAMES), np.nan)
    if fit == "subset":
        # the class's own amplitudes from a spread pixel subset, then the whole class's GLS as "scale" does
        sel = np.linspace(0, rv - 1, min(rv, profile_pixels)).round().astype(int)
        cv = None if coords_m is None else np.asarray(coords_m, dtype=np.float64)[pix][sel]
        sm = "gaussian" if sigma_model == "full" and sel.size >= dof else sigma_model
        f = multivariate_lsvce(Yv[:, sel], A, cs.Q, names, sigma_model=sm, coords_m=cv,
                               bins=make_pair_bins(cv) if sm == "gaussian" else None, sigma0=s0, max_iter=max_iter,
                               tol=tol)
        if np.all(np.isfinite(f.sigma)) and np.any(f.sigma > 0):
            s_d = f.sigma
    if fit not in ("scale", "subset"):
        if sigma_model == "full" and rv >= dof:
            sigma_model = "gaussian"
        cv = None if coords_m is None else np.asarray(coords_m, dtype=np.float64)[pix]
        bins = make_pair_bins(cv) if sigma_model == "gaussian" else None
        f = multivariate_lsvce(Yv, A, cs.Q, names, sigma_model=sigma_model, coords_m=cv, bins=bins, sigma0=s0,
                               max_iter=max_iter, tol=tol)
        sigma, neg, Qs = f.sigma, f.negative, f.Q_sigma
        if has_ar and np.isfinite(donor.alpha_std) and sigma[names.index("ar1")] > 0 and not neg.any():
            # the donor's alpha is not exact: its variance (the donor's Fisher information) propagated through
            # this class's joint information of (sigma, ln alpha), as estimate_class does for its own alpha
            w = _weights(A, np.tensordot(sigma, cs.Q, axes=1))
            dQ = (sigma[names.index("ar1")] * ar1_cofactor_dlogalpha(d_v, alpha))[None]
            fi = _normal_matrix(np.concatenate([cs.Q, dQ]), w.W, rv)
            p = len(names)
            G = np.linalg.solve(fi[:p, :p], fi[:p, p:])
            Qs = Qs + (donor.alpha_std / alpha) ** 2 * (G @ G.T)
        Qs = Qs + scale_variance(f.sigma_factor, cv, dof) * np.outer(sigma, sigma)
        sstd_c = np.sqrt(np.clip(np.diag(Qs), 0, None))
        diag_s = f.S.diagonal()
        qbar = float(np.mean(np.diag(np.tensordot(sigma, cs.Q, axes=1))))
        gfit = f.sigma_factor.fit
        c0, dist = (gfit.c0, gfit.d) if gfit is not None else (np.nan, np.nan)
        X, qx_vv = f.X, f.Qx[1, 1]
        ll[MODEL_NAMES.index(model)], rl[MODEL_NAMES.index(model)] = f.loglik, f.reml
        n_iter, converged = f.n_iter, f.converged
    else:
        w = _weights(A, np.tensordot(s_d, cs.Q, axes=1))
        F = w.W @ Yv
        raw = np.einsum("ij,ij->j", Yv, F) / dof  # per-pixel a-posteriori variance factor under the donor's Q
        c = float(np.mean(raw))
        sigma, neg = s_d * c, s_d <= 0
        sstd_c = np.nan_to_num(np.asarray(donor.sigma_std, np.float64)[slot]) * c
        if fit == "subset":  # the subset fit's own precision (N^-1 of its pixels) and Gaussian Sigma
            sstd_c = f.sigma_std * c
            if f.sigma_factor.fit is not None:
                donor = donor._replace(c0=f.sigma_factor.fit.c0, d=f.sigma_factor.fit.d)
        diag_s = raw / c  # Sigma's diagonal at unit mean, as the fit normalises it
        qbar = float(np.mean(np.diag(np.tensordot(sigma, cs.Q, axes=1))))
        c0, dist = donor.c0, donor.d
        X, qx_vv = w.Qx @ (w.QiA.T @ Yv), w.Qx[1, 1] * c
        n_iter, converged = (f.n_iter, f.converged) if fit == "subset" else (0, True)
    sig = np.full(3, np.nan)
    sstd = np.full(3, np.nan)
    negs = np.zeros(3, bool)
    sig[slot], sstd[slot], negs[slot] = sigma, sstd_c, neg
    vel = np.full(r, np.nan)
    vstd = np.full(r, np.nan)
    vwhite = np.full(r, np.nan)
    sstd_px = np.full(r, np.nan)
    sstd_std = np.full(r, np.nan)
    vel[pix] = X[1]
    vstd[pix] = np.sqrt(diag_s * qx_vv)
    AtAi = np.linalg.inv(A.T @ A)
    res = Yv - A @ (AtAi @ (A.T @ Yv))
    vwhite[pix] = np.sqrt(np.sum(res**2, axis=0) / dof * AtAi[1, 1])
    # eq. 11 from Sigma's diagonal (what .spatial.correlations computes of it, without the r x r correlations)
    sstd_px[pix] = np.sqrt(np.clip(diag_s, 0, None)) * np.sqrt(qbar)
    sstd_std[pix] = sstd_px[pix] / np.sqrt(2.0 * dof)
    return ClassNoise(model, ll, rl, sig, sstd, negs, alpha if has_ar else float(donor.alpha),
                      float(donor.alpha_std) if has_ar else np.nan, np.full(3, np.nan), float(c0), float(c0 * qbar),
                      float(dist), int(n_iter), bool(converged), rv, m, pix, vel, vstd, vwhite, sstd_px, sstd_std,
                      None)
