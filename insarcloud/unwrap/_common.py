"""Shared pieces of the unwrapping kernels: input checks, the result type, masks and weights."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from insarcloud.errors import InputArrayError
from insarcloud.unwrap.ls import edge_weights, wrap
from insarcloud.unwrap.names import METHODS, Method

__all__ = ["Method", "METHODS", "UnwrapResult", "check_wrapped", "ls_edge_weights", "finish"]



class UnwrapResult(NamedTuple):
    """What every unwrapping kernel returns.

    Attributes
    ----------
    phase : ndarray (y, x), dtype of the input (float32 or float64), rad
        Unwrapped phase; NaN where the input is NaN. Its constant is arbitrary (LS methods: zero
        mean over the valid pixels before ``congruent``; snaphu: its own reference).
    iterations : int
        Outer iterations the method ran (0 for one-shot methods).
    converged : bool
        Whether the method's stopping rule was met before its iteration cap.
    """

    phase: np.ndarray
    iterations: int
    converged: bool


def check_wrapped(wrapped: np.ndarray, weights: np.ndarray | None = None, *, name: str = "wrapped"
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate a wrapped phase (and optional weights) and return float64 copies plus the valid mask.

    Parameters
    ----------
    wrapped : array_like (y, x) float, rad; NaN = no data; +-inf is an error.
    weights : array_like (y, x) float >= 0, optional; NaN counts as 0.
    name : str
        Name used in error messages.

    Returns
    -------
    psi : ndarray (y, x) float64, wrapped into [-pi, pi), NaN kept
    valid : ndarray (y, x) bool
    w : ndarray (y, x) float64 or None (0 outside ``valid``)

    Raises
    ------
    InputArrayError
        Wrong number of dimensions, fewer than 2 x 2 pixels, +-inf values, no valid pixel,
        a non-numeric dtype, or weights of another shape / negative weights.
    """
    arr = np.asarray(wrapped)
    if arr.ndim != 2:
        raise InputArrayError(f"{name}: expected a 2-D (y, x) array, got shape {arr.shape}")
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise InputArrayError(f"{name}: needs at least 2 x 2 pixels to unwrap, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating) and not np.issubdtype(arr.dtype, np.integer):
        raise InputArrayError(f"{name}: expected a real float array, got dtype {arr.dtype}")
    psi = arr.astype(np.float64)
    if np.isinf(psi).any():
        raise InputArrayError(f"{name}: {int(np.isinf(psi).sum())} non-finite (inf) values in shape "
                              f"{arr.shape}; mark no-data with NaN")
    valid = np.isfinite(psi)
    if not valid.any():
        raise InputArrayError(f"{name}: all {psi.size} pixels are NaN (no data) in shape {arr.shape}")
    psi = wrap(psi)
    w = None
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != psi.shape:
            raise InputArrayError(f"weights: shape {w.shape} differs from {name} shape {psi.shape}")
        if np.isinf(w).any():
            raise InputArrayError("weights: contains inf")
        if (w < 0).any():
            raise InputArrayError(f"weights: {int((w < 0).sum())} negative values")
        w = np.where(valid & np.isfinite(w), w, 0.0)
    return psi, valid, w


def ls_edge_weights(valid: np.ndarray, w: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Edge weights for the LS system: None (plain DCT) when all pixels are valid and unweighted."""
    if w is None:
        if valid.all():
            return None
        return edge_weights(valid.astype(np.float64))
    return edge_weights(w)


def finish(phi: np.ndarray, psi: np.ndarray, valid: np.ndarray, dtype: np.dtype, *, congruent: bool
           ) -> np.ndarray:
    """Common output step: optional congruence, zero mean over valid pixels, NaN outside, input dtype.

    ``congruent=True`` returns ``phi + wrap(psi - phi)``: the wrapped input plus the integer cycles
    the smooth estimate ``phi`` implies, so ``wrap(result) == psi`` (noise kept, full resolution).
    """
    if congruent:
        # phi's constant is arbitrary (LS): first move it to the circular mean of psi - phi, else a
        # constant near pi would flip half the noisy pixels by a cycle.
        d = np.where(valid, psi - phi, 0.0)
        phi = phi + float(np.angle(np.sum(np.exp(1j * d[valid]))))
        out = phi + wrap(psi - phi)
    else:
        out = phi.copy()
    if not congruent:
        out -= np.mean(out[valid])
    else:
        # Shift by whole cycles only so congruence survives: bring the mean near zero.
        out -= 2 * np.pi * np.round(np.mean(out[valid]) / (2 * np.pi))
    out[~valid] = np.nan
    out_dtype = dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)
    return out.astype(out_dtype, copy=False)
