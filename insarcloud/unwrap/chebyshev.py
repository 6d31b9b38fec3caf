"""Chebyshev-filtered iterative least-squares unwrapping (reconstruction of ../shared/seeds/001).

The seed paper's method section is missing from our copy; sections 1, 4 and 5 state the idea:
"a Chebyshev low-pass filter ... with an adaptive filtering threshold so that the high phase gradient
is changed into flatter phase gradient", "LS unwraps" each flattened phase, and "an iterative method
is used to add all the phase unwrapped results after low-pass filtering". What follows is our
reconstruction; every choice below is ours and is stated as such.

Algorithm (``psi`` wrapped input, ``phi`` running estimate, ``H_c`` a zero-phase 2-D Chebyshev type-I
low-pass with cutoff ``c`` applied in the DCT domain, i.e. with even-symmetric boundaries like the
Neumann LS solver)::

    phi = 0, c = c_0 (adaptive, see below)
    repeat k = 0, 1, ...
        if k > 0: phi = H_c * phi                     # drop the noise earlier passes let through
        r   = wrap(psi - phi)                         # wrapped residual: flatter fringes each pass
        rf  = angle(H_c * exp(i r))                   # Chebyshev low-pass of the residual phasor
        phi = phi + LS(wrapped gradients of rf)       # DCT Poisson (or PCG with weights / NaN)
        stop when c == min_cutoff and rms(phi_k - phi_{k-1}) < tol

Filtering the *phasor* ``exp(i r)`` (not the wrapped phase) removes noise without creating new
wraps; LS of a low-passed, nearly residue-free phase is nearly exact, and the residual of the next
pass only has to carry what the filter and the LS underestimate removed, so its gradients are flat.

Adaptive threshold (cutoff ``c``, cycles/pixel, DCT radial frequency in [0, 0.707]):

* The phasor spectrum of the residual is the signal's (fringes) plus a white floor from the noise
  (``1 - exp(-sigma^2)`` per coefficient for Gaussian phase noise). The floor is estimated from the
  spectral corners (radius > 0.6 cycles/pixel, where fringes of a sampled phase rarely reach), the
  radially averaged power above ``floor + 3 standard errors`` is the signal, and its band edge
  ``b_q`` is the radius holding ``band_quantile`` of that signal power.
* ``c_0 = clip(margin * b_q, min_cutoff, max_cutoff)``: wide enough to keep the densest fringes of
  the input (steeper input -> higher cutoff; this is what keeps the method stable as the gradient
  grows).
* Pass k > 0: the band edge of the residual is measured again; if it is narrower than the current
  cutoff, ``c_k = max(min_cutoff, margin * b_q)``; if not (the residual is noise only, or too weak),
  ``c_k = max(min_cutoff, shrink * c_{k-1})``. The cutoff never increases, so the filter tightens as
  the residual flattens, down to ``min_cutoff``, which sets the resolution of the smooth output.

Output: the smooth estimate ``phi`` (what the seed's RMSE measures), or with ``congruent=True``
``phi + wrap(psi - phi)`` (the input's noise kept, integer cycles from ``phi``).
"""

from __future__ import annotations

import logging
from functools import lru_cache

import numpy as np
from scipy import fft, signal

from insarcloud.unwrap._common import UnwrapResult, check_wrapped, finish, ls_edge_weights
from insarcloud.unwrap.ls import integrate_gradients, wrap, wrapped_gradients

__all__ = ["chebyshev_lowpass", "estimate_band_edge", "unwrap_chebyshev"]

log = logging.getLogger(__name__)

_CORNER = 0.6  # cycles/pixel: spectral radius beyond which the noise floor is measured


@lru_cache(maxsize=8)
def _radius(shape: tuple[int, int]) -> np.ndarray:
    # Radial frequency (cycles/pixel) of each DCT-II coefficient: index k <-> k / (2 n).
    ny, nx = shape
    return np.hypot((np.arange(ny) / (2 * ny))[:, None], (np.arange(nx) / (2 * nx))[None, :])


def chebyshev_lowpass(shape: tuple[int, int], cutoff: float, order: int = 5, ripple_db: float = 0.5
                      ) -> np.ndarray:
    """Magnitude response of a radial Chebyshev type-I low-pass on the DCT-II grid.

    Uses the analog prototype from :func:`scipy.signal.cheby1` evaluated at ``radius / cutoff``
    (zero phase: only ``|H|`` is applied). Odd orders have unit gain at DC and gain <= 1 everywhere.

    Parameters
    ----------
    shape : (ny, nx)
    cutoff : float
        Passband edge in cycles/pixel (0 < cutoff).
    order : int
        Filter order (>= 1); steeper roll-off with higher order.
    ripple_db : float
        Passband ripple in dB (> 0).

    Returns
    -------
    ndarray (ny, nx) float64 in [0, 1]
    """
    b, a = signal.cheby1(order, ripple_db, 1.0, analog=True)
    rho = _radius(tuple(shape))
    _, h = signal.freqs(b, a, worN=(rho / cutoff).ravel())
    return np.abs(h).reshape(rho.shape)


def _dct_apply(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    return fft.idctn(fft.dctn(x, type=2, norm="ortho") * h, type=2, norm="ortho")


# Normalised convolution: filter(x m) / filter(m), so holes are not zeros. A Chebyshev kernel has
# negative side lobes, so filter(m) can approach 0 (or go negative) on small islands of data; there
# the ratio would explode, and the unfiltered value is kept instead.
_MIN_SUPPORT = 0.1


def _filter_phasor(z: np.ndarray, h: np.ndarray, m: np.ndarray | None) -> np.ndarray:
    out = _dct_apply(z.real, h) + 1j * _dct_apply(z.imag, h)
    if m is not None:
        den = _dct_apply(m, h)
        out = np.where(den > _MIN_SUPPORT, out / np.maximum(den, _MIN_SUPPORT), z)
    return out


def _filter_real(x: np.ndarray, h: np.ndarray, m: np.ndarray | None, cutoff: float) -> np.ndarray:
    if m is None:
        return _dct_apply(x, h)
    # With no-data, re-smoothing phi goes through a normalised convolution every pass. The Chebyshev
    # kernel's negative lobes give that ratio a gain above 1 for some patterns, and modes the masked
    # LS cannot see (per-region constants) then grow geometrically from pass to pass (seen on a real
    # LiCSAR coastline). A Gaussian with the same half-power cutoff has a positive kernel, so the
    # normalised convolution is a weighted mean (gain <= 1) and the iteration stays bounded.
    g = np.exp(-0.5 * np.log(2.0) * (_radius(x.shape) / cutoff) ** 2)
    den = _dct_apply(m, g)
    return np.where(den > _MIN_SUPPORT, _dct_apply(x * m, g) / np.maximum(den, _MIN_SUPPORT), x)


def estimate_band_edge(z: np.ndarray, quantile: float = 0.99, n_bins: int = 128,
                       min_signal: float = 0.02) -> float:
    """Radius (cycles/pixel) holding ``quantile`` of the above-noise power of a phasor image.

    Parameters
    ----------
    z : ndarray (y, x) complex
        Unit phasors (0 at no-data).
    quantile : float
        Fraction of the signal power to keep (0 < quantile < 1).
    n_bins : int
        Radial bins over [0, 0.5] cycles/pixel.
    min_signal : float
        If the above-noise power is below this fraction of the total, return 0 (no signal band).

    Returns
    -------
    float
        Band edge in cycles/pixel, 0.0 when no signal stands above the noise floor.
    """
    p = fft.dctn(z.real, type=2, norm="ortho") ** 2 + fft.dctn(z.imag, type=2, norm="ortho") ** 2
    rho = _radius(z.shape)
    corner = p[rho > _CORNER]
    if corner.size < 16:
        corner = p[rho > 0.5 * rho.max()]
    # Per-coefficient power of white phasor noise is ~exponential: mean = median / ln 2.
    floor = float(np.median(corner)) / np.log(2.0)
    b = np.minimum((rho / 0.5 * n_bins).astype(np.int64), n_bins)
    cnt = np.bincount(b.ravel(), minlength=n_bins + 1)
    tot = np.bincount(b.ravel(), weights=p.ravel(), minlength=n_bins + 1)
    mean = tot / np.maximum(cnt, 1)
    se = floor / np.sqrt(np.maximum(cnt, 1))
    excess = np.where(mean - floor > 3 * se, (mean - floor) * cnt, 0.0)[:n_bins]
    # The lowest bin holds the residual's coherent mean (DC), which says nothing about fringes.
    excess[0] = 0.0
    total = float(excess.sum())
    if total <= min_signal * float(p.sum() - tot[0]) or total == 0.0:
        return 0.0
    cum = np.cumsum(excess) / total
    return float((np.searchsorted(cum, quantile) + 1) / n_bins * 0.5)


def unwrap_chebyshev(
    wrapped: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    order: int = 5,
    ripple_db: float = 0.5,
    band_quantile: float = 0.99,
    margin: float = 1.25,
    min_cutoff: float = 0.03,
    max_cutoff: float = 0.5,
    shrink: float = 0.5,
    max_iter: int = 40,
    tol: float = 0.01,
    ls_tol: float = 1e-3,
    congruent: bool = False,
) -> UnwrapResult:
    """Unwrap by Chebyshev-filtered iterative least squares (the seed's method, reconstructed).

    Parameters
    ----------
    wrapped : ndarray (y, x) float32/float64, rad; NaN = no data
    weights : ndarray (y, x) float >= 0, optional
        Pixel weights (e.g. coherence) for the LS solves and the filters; NaN input gets 0.
    order : int, default 5
        Chebyshev type-I order. Odd so the DC gain is exactly 1 (an even order's DC gain is
        ``10**(-ripple_db/20)``, which biases the repeated smoothing of ``phi``).
    ripple_db : float, default 0.5
        Passband ripple (dB); the usual trade of roll-off steepness against passband flatness.
    band_quantile : float, default 0.99
        Share of the above-noise phasor power the adaptive cutoff keeps.
    margin : float, default 1.25
        Cutoff = ``margin`` x band edge, so the densest fringes sit inside the passband.
    min_cutoff : float, default 0.03
        Floor of the adaptive cutoff (cycles/pixel): the final smoothing, i.e. the resolution of the
        smooth output (features shorter than ~1/min_cutoff = 33 pixels are smoothed).
    max_cutoff : float, default 0.5
        Ceiling of the first cutoff (cycles/pixel; 0.5 is the Nyquist limit along one axis).
    shrink : float, default 0.5
        Factor applied to the cutoff when the residual shows no band narrower than it.
    max_iter : int, default 40
        Cap on passes.
    tol : float, default 0.01
        Stop when the rms change of ``phi`` in one pass is below this (rad) at the floor cutoff.
    ls_tol : float, default 1e-3
        Relative-residual stop of each pass's PCG solve (only with weights / no-data); loose because
        the outer iteration corrects what one pass leaves.
    congruent : bool, default False
        Return ``phi + wrap(psi - phi)`` instead of the smooth ``phi``.

    Returns
    -------
    UnwrapResult
    """
    if not (order >= 1 and ripple_db > 0 and 0 < band_quantile < 1 and margin > 0
            and 0 < min_cutoff <= max_cutoff and 0 <= shrink < 1 and max_iter >= 1 and tol > 0):
        raise ValueError("chebyshev: invalid parameters (need order>=1, ripple_db>0, 0<band_quantile<1, "
                         "margin>0, 0<min_cutoff<=max_cutoff, 0<=shrink<1, max_iter>=1, tol>0)")
    dtype = np.asarray(wrapped).dtype
    psi, valid, w = check_wrapped(wrapped, weights)
    m = None if (w is None and valid.all()) else (valid.astype(np.float64) if w is None else w)
    ew = ls_edge_weights(valid, w)
    psi0 = np.where(valid, psi, 0.0)
    phi = np.zeros_like(psi0)
    cutoff = max_cutoff
    converged = False
    k = 0
    for k in range(1, max_iter + 1):
        r = wrap(psi0 - phi)
        z = np.exp(1j * r) if m is None else np.exp(1j * r) * m
        edge = estimate_band_edge(z, band_quantile)
        if k == 1:
            cutoff = float(np.clip(margin * edge, min_cutoff, max_cutoff))
        elif edge == 0.0:  # residual is noise: tighten
            cutoff = max(min_cutoff, shrink * cutoff)
        elif margin * edge < cutoff:  # residual signal is narrower than the filter: follow it
            cutoff = max(min_cutoff, margin * edge)
        # else: signal is left beyond the cutoff; keep the filter so the next pass can take it
        h = chebyshev_lowpass(psi.shape, cutoff, order, ripple_db)
        prev = phi
        if k > 1:
            phi = _filter_real(phi, h, m, cutoff)
            r = wrap(psi0 - phi)
            z = np.exp(1j * r) if m is None else np.exp(1j * r) * m
        rf = np.angle(_filter_phasor(z, h, m))
        gx, gy = wrapped_gradients(rf)
        sol = integrate_gradients(gx, gy, *(ew if ew is not None else (None, None)), tol=ls_tol)
        phi = phi + sol.phase
        change = phi - prev
        step = float(np.sqrt(np.mean((change[valid] - change[valid].mean()) ** 2)))
        log.debug("chebyshev pass %d: band edge %.4f cutoff %.4f rms change %.4f", k, edge, cutoff, step)
        if k > 1 and step < tol:
            converged = True
            break
    return UnwrapResult(finish(phi, psi, valid, dtype, congruent=congruent), k, converged)
