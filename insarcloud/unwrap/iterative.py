"""Iterative LS unwrapping with corrected gradients: PCUA (Xia et al.) and RPUA (Zong et al.).

Both papers unwrap by LS, then iterate on the wrapped residual ``wrap(psi - phi)`` ("phase
calibration"): ``phi <- phi + LS(corrected wrapped gradients of the residual)`` until the update is
small. They differ in how noisy gradients are corrected before each Poisson solve:

* PCUA (Xia, Chang, et al., Opt. Express 2016, "Phase calibration unwrapping algorithm for phase data
  corrupted by strong decorrelation speckle noise"), as the seed summarises it: gradients that depart
  from the average gradient by more than the standard deviation are replaced by that average.
  Reconstruction: average = ``window`` x ``window`` box mean of the gradient; standard deviation =
  global std of (gradient - average); threshold ``k_std`` times it; hard replacement.
* RPUA (Zong et al., "Robust phase unwrapping algorithm for noisy and segmented phase measurements"),
  as the seed summarises it: an exponential ("e function") correction of the gradients.
  Reconstruction: a soft version of the same rule,
  ``g' = avg + (g - avg) * exp(-((g - avg) / (k_std * std))**2 / 2)``: small departures pass, large
  ones decay smoothly toward the local average.

Neither paper is in our library; the parameter values of the seed's runs are also missing from our
copy of it, so window, k_std, max_iter and tol below are our defaults, not the authors'.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
from scipy import ndimage

from insarcloud.unwrap._common import UnwrapResult, check_wrapped, finish, ls_edge_weights
from insarcloud.unwrap.ls import integrate_gradients, wrap, wrapped_gradients

__all__ = ["correct_gradients", "unwrap_pcua", "unwrap_rpua"]

log = logging.getLogger(__name__)

Correction = Literal["hard", "exp"]


def correct_gradients(g: np.ndarray, w: np.ndarray | None, *, window: int, k_std: float,
                      kind: Correction) -> np.ndarray:
    """Correct one wrapped-gradient field toward its local average.

    Parameters
    ----------
    g : ndarray (a, b) float64, rad/pixel
        Wrapped gradients (NaN-free; entries with zero weight are ignored in the statistics).
    w : ndarray (a, b) float64 or None
        Edge weights (0 = not used).
    window : int
        Side of the box used for the local average (odd, >= 1).
    k_std : float
        Threshold in standard deviations.
    kind : {"hard", "exp"}
        PCUA's hard replacement or RPUA's exponential correction.

    Returns
    -------
    ndarray (a, b) float64
    """
    m = np.ones_like(g) if w is None else (w > 0).astype(np.float64)
    num = ndimage.uniform_filter(g * m, size=window, mode="nearest")
    den = ndimage.uniform_filter(m, size=window, mode="nearest")
    avg = num / np.maximum(den, 1e-12)
    dev = g - avg
    sel = m > 0
    std = float(np.std(dev[sel])) if sel.any() else 0.0
    if std == 0.0:
        return g
    t = k_std * std
    if kind == "hard":
        return np.where(np.abs(dev) > t, avg, g)
    return avg + dev * np.exp(-0.5 * (dev / t) ** 2)


def _iterate(wrapped: np.ndarray, weights: np.ndarray | None, *, kind: Correction, window: int,
             k_std: float, max_iter: int, tol: float, congruent: bool) -> UnwrapResult:
    if not (window >= 1 and k_std > 0 and max_iter >= 1 and tol > 0):
        raise ValueError("need window >= 1, k_std > 0, max_iter >= 1, tol > 0")
    dtype = np.asarray(wrapped).dtype
    psi, valid, w = check_wrapped(wrapped, weights)
    ew = ls_edge_weights(valid, w)
    wx, wy = ew if ew is not None else (None, None)
    psi0 = np.where(valid, psi, 0.0)
    phi = np.zeros_like(psi0)
    converged = False
    k = 0
    for k in range(1, max_iter + 1):
        gx, gy = wrapped_gradients(wrap(psi0 - phi))
        gx = correct_gradients(gx, wx, window=window, k_std=k_std, kind=kind)
        gy = correct_gradients(gy, wy, window=window, k_std=k_std, kind=kind)
        d = integrate_gradients(gx, gy, wx, wy).phase
        phi += d
        step = float(np.sqrt(np.mean((d[valid] - d[valid].mean()) ** 2)))
        log.debug("%s pass %d: rms update %.4f", kind, k, step)
        if step < tol:
            converged = True
            break
    return UnwrapResult(finish(phi, psi, valid, dtype, congruent=congruent), k, converged)


def unwrap_pcua(wrapped: np.ndarray, weights: np.ndarray | None = None, *, window: int = 5,
                k_std: float = 1.0, max_iter: int = 20, tol: float = 0.01, congruent: bool = False
                ) -> UnwrapResult:
    """PCUA: iterative LS with gradients beyond ``k_std`` std replaced by the local average.

    Parameters
    ----------
    wrapped : ndarray (y, x) float, rad; NaN = no data
    weights : ndarray (y, x) float >= 0, optional (LS weights)
    window : int, default 5
        Local-average box side (pixels).
    k_std : float, default 1.0
        "greater than the standard deviation": threshold in std units.
    max_iter : int, default 20
    tol : float, default 0.01
        Stop when the rms LS update is below this (rad).
    congruent : bool, default False
        Return ``phi + wrap(psi - phi)``.

    Returns
    -------
    UnwrapResult
    """
    return _iterate(wrapped, weights, kind="hard", window=window, k_std=k_std, max_iter=max_iter,
                    tol=tol, congruent=congruent)


def unwrap_rpua(wrapped: np.ndarray, weights: np.ndarray | None = None, *, window: int = 5,
                k_std: float = 1.0, max_iter: int = 20, tol: float = 0.01, congruent: bool = False
                ) -> UnwrapResult:
    """RPUA: iterative LS with an exponential correction of gradients toward the local average.

    Parameters are those of :func:`unwrap_pcua`; ``k_std`` is the e-folding scale (in std units).

    Returns
    -------
    UnwrapResult
    """
    return _iterate(wrapped, weights, kind="exp", window=window, k_std=k_std, max_iter=max_iter,
                    tol=tol, congruent=congruent)
