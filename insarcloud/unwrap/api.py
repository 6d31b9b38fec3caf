"""The one entry point: :func:`unwrap` dispatches to the kernels by method name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from insarcloud.errors import ConfigError
from insarcloud.unwrap._common import METHODS, Method, UnwrapResult, check_wrapped, finish, ls_edge_weights
from insarcloud.unwrap.chebyshev import unwrap_chebyshev
from insarcloud.unwrap.iterative import unwrap_pcua, unwrap_rpua
from insarcloud.unwrap.ls import integrate_gradients, wrapped_gradients
from insarcloud.unwrap.multiscale import unwrap_multiscale

__all__ = ["unwrap", "unwrap_ls", "unwrap_result"]


def unwrap_ls(wrapped: np.ndarray, weights: np.ndarray | None = None, *, tol: float = 1e-6,
              max_iter: int = 300, congruent: bool = False) -> UnwrapResult:
    """Least-squares unwrapping (Ghiglia & Romero): one DCT Poisson solve, or PCG with weights/no-data.

    Parameters
    ----------
    wrapped : ndarray (y, x) float, rad; NaN = no data (zero weight, NaN out)
    weights : ndarray (y, x) float >= 0, optional
        Pixel weights (coherence, quality); edge weight = min of its two pixels.
    tol, max_iter : PCG stopping rule (relative residual) and cap.
    congruent : bool, default False
        Return ``phi + wrap(psi - phi)`` instead of the smooth LS solution.

    Returns
    -------
    UnwrapResult
    """
    dtype = np.asarray(wrapped).dtype
    psi, valid, w = check_wrapped(wrapped, weights)
    ew = ls_edge_weights(valid, w)
    gx, gy = wrapped_gradients(np.where(valid, psi, 0.0))
    sol = integrate_gradients(gx, gy, *(ew if ew is not None else (None, None)), tol=tol, max_iter=max_iter)
    return UnwrapResult(finish(sol.phase, psi, valid, dtype, congruent=congruent), sol.iterations,
                        sol.converged)


def _snaphu(*args: Any, **kwargs: Any) -> UnwrapResult:
    from insarcloud.unwrap.snaphu_unwrap import unwrap_snaphu

    return unwrap_snaphu(*args, **kwargs)


_KERNELS: dict[str, Callable[..., UnwrapResult]] = {
    "ls": unwrap_ls,
    "wls": unwrap_ls,  # same solver; the name says weights are expected (coherence in the cube wrapper)
    "pcua": unwrap_pcua,
    "rpua": unwrap_rpua,
    "chebyshev": unwrap_chebyshev,
    "snaphu": _snaphu,
    "multiscale": unwrap_multiscale,
}


def unwrap_result(wrapped: np.ndarray, method: Method = "multiscale", weights: np.ndarray | None = None,
                  **params: Any) -> UnwrapResult:
    """Like :func:`unwrap` but returns the kernel's :class:`UnwrapResult` (iterations, convergence)."""
    if method not in _KERNELS:
        raise ConfigError(f"unknown unwrapping method {method!r}; choose one of {', '.join(METHODS)}")
    arr = np.asarray(wrapped)
    check_wrapped(arr, weights)  # clear errors before any cropping
    # Real frames are mostly no-data (sea): solve only on the bounding box of the valid pixels.
    valid = np.isfinite(arr)
    rows, cols = np.flatnonzero(valid.any(axis=1)), np.flatnonzero(valid.any(axis=0))
    box = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
    cropped = arr[box].shape != arr.shape and min(arr[box].shape) >= 2
    sub = arr[box] if cropped else arr
    wsub = None if weights is None else (np.asarray(weights)[box] if cropped else weights)
    try:
        res = _KERNELS[method](sub, wsub, **params)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise ConfigError(f"method {method!r}: {exc}") from exc
        raise
    if not cropped:
        return res
    full = np.full(arr.shape, np.nan, dtype=res.phase.dtype)
    full[box] = res.phase
    return UnwrapResult(full, res.iterations, res.converged)


def unwrap(wrapped: np.ndarray, method: Method = "multiscale", weights: np.ndarray | None = None,
           **params: Any) -> np.ndarray:
    """Unwrap one 2-D wrapped phase.

    Parameters
    ----------
    wrapped : ndarray (y, x) float32/float64, rad; NaN = no data
    method : {"ls", "wls", "pcua", "rpua", "chebyshev", "snaphu", "multiscale"}, default "multiscale"
    weights : ndarray (y, x) float >= 0, optional
        Coherence/quality weights (LS-family: system weights; snaphu: its coherence input).
    **params
        Method parameters (see each kernel), e.g. ``congruent=True``.

    Returns
    -------
    ndarray (y, x), the input's float dtype, rad; NaN where the input is NaN

    Raises
    ------
    insarcloud.errors.InputArrayError
        Wrong ndim, < 2 x 2 pixels, inf values, all NaN, bad weights.
    insarcloud.errors.ConfigError
        Unknown method or parameter.

    Examples
    --------
    >>> import numpy as np
    >>> y, x = np.mgrid[:64, :64]
    >>> truth = 0.3 * x + 0.2 * y
    >>> out = unwrap(np.angle(np.exp(1j * truth)), method="ls", congruent=True)
    >>> bool(np.allclose(out - out[0, 0], truth - truth[0, 0]))
    True
    """
    return unwrap_result(wrapped, method, weights, **params).phase

