"""SNAPHU (Chen & Zebker statistical-cost network flow) through the ``snaphu`` PyPI package.

The field's reference unwrapper; optional (``pip install snaphu``). When no coherence is given it is
estimated from the wrapped phase itself as the magnitude of the ``window`` x ``window`` mean phasor,
which is what an interferogram's coherence estimate measures for unit-amplitude data.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from insarcloud.unwrap._common import UnwrapResult, check_wrapped, finish

__all__ = ["phasor_coherence", "unwrap_snaphu"]


def phasor_coherence(psi: np.ndarray, valid: np.ndarray, window: int = 5) -> np.ndarray:
    """Coherence estimate |<exp(i psi)>| over a ``window`` box, ignoring no-data.

    Parameters
    ----------
    psi : ndarray (y, x) float64, rad (NaN-free where ``valid``)
    valid : ndarray (y, x) bool
    window : int

    Returns
    -------
    ndarray (y, x) float64 in [0, 1], 0 where not valid
    """
    m = valid.astype(np.float64)
    z = np.where(valid, np.exp(1j * np.where(valid, psi, 0.0)), 0)
    re = ndimage.uniform_filter(z.real, window, mode="nearest")
    im = ndimage.uniform_filter(z.imag, window, mode="nearest")
    den = np.maximum(ndimage.uniform_filter(m, window, mode="nearest"), 1e-12)
    return np.where(valid, np.clip(np.hypot(re, im) / den, 0.0, 1.0), 0.0)


def unwrap_snaphu(wrapped: np.ndarray, weights: np.ndarray | None = None, *, nlooks: float = 10.0,
                  cost: str = "smooth", init: str = "mcf", coherence_window: int = 5,
                  congruent: bool = True) -> UnwrapResult:
    """Unwrap with SNAPHU.

    Parameters
    ----------
    wrapped : ndarray (y, x) float, rad; NaN = no data (masked in SNAPHU, NaN out)
    weights : ndarray (y, x) float in [0, 1], optional
        Coherence; estimated from the phase (see :func:`phasor_coherence`) when omitted.
    nlooks : float, default 10
        Equivalent number of looks of the coherence estimate (SNAPHU's statistical model).
    cost : {"smooth", "defo"}, default "smooth"
    init : {"mcf", "mst"}, default "mcf"
    coherence_window : int, default 5
    congruent : bool, default True
        SNAPHU's output is already congruent; False only re-centres it (kept for a uniform API).

    Returns
    -------
    UnwrapResult
    """
    try:
        import snaphu
    except ImportError as exc:  # pragma: no cover - optional extra
        raise ImportError("method 'snaphu' needs the snaphu package: pip install snaphu") from exc
    dtype = np.asarray(wrapped).dtype
    psi, valid, w = check_wrapped(wrapped, weights)
    corr = phasor_coherence(psi, valid, coherence_window) if w is None else np.clip(w, 0.0, 1.0)
    igram = np.where(valid, np.exp(1j * np.where(valid, psi, 0.0)), 0).astype(np.complex64)
    mask = valid if not valid.all() else None
    unw, _ = snaphu.unwrap(igram, corr.astype(np.float32), nlooks=nlooks, cost=cost, init=init, mask=mask)
    phi = np.asarray(unw, dtype=np.float64)
    return UnwrapResult(finish(phi, psi, valid, dtype, congruent=True) if congruent
                        else finish(phi, psi, valid, dtype, congruent=False), 0, True)
