"""Loop (triplet) phase closure of unwrapped and wrapped interferograms, per pixel and per loop.

Unwrapped closure, LiCSBAS step 12 (Morishita et al. 2020, §2.4.2):
``c = unw[ij] + unw[jk] - unw[ik]``; an integer ``2*pi*k`` common to the loop (the three unwrapped
products are referenced independently) is removed, with ``k`` the median over the loop's valid pixels of
``round(c / 2pi)``; the loop's RMS is ``sqrt(mean(c**2))`` over its valid pixels; a pixel of a loop with
``|c| > pi`` is a loop error (an unwrapping error in one of its three pairs).

Wrapped closure: ``arg(exp(1j*(phi_ij + phi_jk - phi_ik)))``, the argument of the triple product
``z_ij * z_jk * conj(z_ik)``. It exists without unwrapped products; it is non-zero where filtering,
decorrelation or phase bias make the three wrapped phases inconsistent.

Every kernel here works on a block of pixels; the per-loop statistics come as chunk-summable partials
(:class:`ClosurePartials`) so a Dask layer can reduce them over spatial chunks and get exactly the
whole-frame numbers (:func:`finalize_partials`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import sparse

from insarcloud.core.phase import wrap
from insarcloud.errors import InputArrayError
from insarcloud.qc.network import Triplets

TWO_PI = 2.0 * np.pi
#: Integer ambiguities are histogrammed over [-K_MAX, K_MAX]; beyond that they are clipped (a loop
#: off by more than 32 cycles over half its pixels is garbage whatever k we take).
K_MAX = 32


class ClosurePartials(NamedTuple):
    """Chunk-summable per-loop statistics of the raw (offset-free) unwrapped closure.

    Attributes
    ----------
    k_hist : np.ndarray
        (triplet, 2*K_MAX+1) int64 histogram of ``round(c/2pi)`` (bin 0 is k = -K_MAX).
    s1, s2 : np.ndarray
        (triplet,) float64 sums of c and c**2 over valid pixels (rad, rad**2).
    n : np.ndarray
        (triplet,) int64 number of valid pixels (all three pairs finite).
    """

    k_hist: np.ndarray
    s1: np.ndarray
    s2: np.ndarray
    n: np.ndarray

    def __add__(self, other: ClosurePartials) -> ClosurePartials:  # type: ignore[override]
        return ClosurePartials(*(a + b for a, b in zip(self, other, strict=True)))


class LoopStats(NamedTuple):
    """Per-loop statistics of the unwrapped closure.

    Attributes
    ----------
    offset_k : np.ndarray
        (triplet,) int64 integer cycles removed from the loop (the median of round(c/2pi)).
    rms : np.ndarray
        (triplet,) float64 RMS of the offset-corrected closure over valid pixels, rad (NaN: no pixel).
    n_valid : np.ndarray
        (triplet,) int64 valid pixels.
    """

    offset_k: np.ndarray
    rms: np.ndarray
    n_valid: np.ndarray


class PixelLoopCounts(NamedTuple):
    """Per-pixel loop evidence.

    Attributes
    ----------
    n_loop_err : np.ndarray
        (y, x) int16 loops with ``|c| > thre`` at the pixel (LiCSBAS ``n_loop_err``).
    n_loops : np.ndarray
        (y, x) int16 loops with a finite closure at the pixel.
    pair_n_bad : np.ndarray
        (pair, y, x) int16 loops containing the pair with ``|c| > thre`` at the pixel.
    pair_n_good : np.ndarray
        (pair, y, x) int16 loops containing the pair with finite ``|c| <= thre`` at the pixel.
    pair_mean_abs : np.ndarray
        (pair, y, x) float32 mean ``|c|`` over the loops containing the pair (rad; NaN: none finite).
    """

    n_loop_err: np.ndarray
    n_loops: np.ndarray
    pair_n_bad: np.ndarray
    pair_n_good: np.ndarray
    pair_mean_abs: np.ndarray


class IfgLoopVerdict(NamedTuple):
    """Per-interferogram loop verdict, LiCSBAS step 12 style.

    Attributes
    ----------
    bad : np.ndarray
        (pair,) bool: in at least one bad loop (RMS >= threshold) and in no good loop.
    no_loop : np.ndarray
        (pair,) bool: in no closed loop at all (cannot be checked; LiCSBAS advises a manual look).
    n_good_loops, n_bad_loops : np.ndarray
        (pair,) int64 loops (with a finite RMS) below / at or above the threshold containing the pair.
    """

    bad: np.ndarray
    no_loop: np.ndarray
    n_good_loops: np.ndarray
    n_bad_loops: np.ndarray


def _check_stack(a: np.ndarray, trip: Triplets, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 3 or a.shape[0] != trip.n_pairs:
        raise InputArrayError(
            f"{name} must be (pair, y, x) with {trip.n_pairs} pairs for this network, got shape {a.shape}"
        )
    return a


def raw_closure(unw: np.ndarray, trip: Triplets) -> np.ndarray:
    """Raw loop closure ``unw[ij] + unw[jk] - unw[ik]``.

    Parameters
    ----------
    unw : np.ndarray
        (pair, y, x) float32 unwrapped phase, rad, NaN = no data.
    trip : Triplets

    Returns
    -------
    np.ndarray
        (triplet, y, x) float32 rad; NaN where any of the three pairs is NaN.
    """
    unw = _check_stack(unw, trip, "unw")
    return (unw[trip.ij] + unw[trip.jk] - unw[trip.ik]).astype(np.float32, copy=False)


def wrapped_closure(phase: np.ndarray, trip: Triplets) -> np.ndarray:
    """Closure of the wrapped phase, ``arg(z_ij z_jk conj(z_ik))``, in [-pi, pi).

    Parameters
    ----------
    phase : np.ndarray
        (pair, y, x) float32 wrapped phase, rad, NaN = no data.

    Returns
    -------
    np.ndarray
        (triplet, y, x) float32 rad, NaN where any pair is NaN.
    """
    phase = _check_stack(phase, trip, "phase")
    if phase.dtype != np.float32:
        s = phase[trip.ij].astype(np.float32) + phase[trip.jk] - phase[trip.ik]
        return wrap(s).astype(np.float32, copy=False)  # [-pi, pi), float32 arithmetic for float32 input
    # the same float32 operations as ``wrap(p[ij] + p[jk] - p[ik])``, in place in one (T, y, x) buffer
    # (bit-identical; one temporary instead of six)
    s = np.take(phase, trip.ij, axis=0)
    s += np.take(phase, trip.jk, axis=0)
    s -= np.take(phase, trip.ik, axis=0)
    s += np.float32(np.pi)
    _remainder_pos(s, np.float32(2 * np.pi))
    s -= np.float32(np.pi)
    return s


def _remainder_pos(a: np.ndarray, b: np.float32) -> None:
    """``np.remainder(a, b, out=a)`` for a positive float32 ``b``, ~5x faster (numpy's float remainder is a
    scalar loop): the exact ``fmod``, plus ``b`` where it is negative, which is what numpy's remainder does
    (``npy_divmod``: the sign of the result follows ``b``); a zero may keep its sign, which the ``- pi`` after it
    cannot see (``-0.0 - pi == 0.0 - pi``)."""
    np.fmod(a, b, out=a)
    np.add(a, b, out=a, where=a < 0)


def closure_partials(raw: np.ndarray) -> ClosurePartials:
    """Chunk-summable per-loop partials of a raw closure block (see :class:`ClosurePartials`).

    Parameters
    ----------
    raw : np.ndarray
        (triplet, y, x) float32 raw closure (rad), NaN = no data.
    """
    t = raw.shape[0]
    flat = raw.reshape(t, -1)
    ok = np.isfinite(flat)
    z = np.where(ok, flat, 0.0)  # raw's dtype (a Python float is weak): float32 for a float32 closure
    k = np.rint(z / TWO_PI)
    np.clip(k, -K_MAX, K_MAX, out=k)
    nb = 2 * K_MAX + 1
    # one bincount over (loop, k) pairs: O(pixels), no Python loop over loops; a pixel without data goes to
    # an extra bin per loop (dropped), which spares compacting the codes by the mask
    codes = np.where(ok, k.astype(np.intp) + K_MAX, nb)
    codes += np.arange(t, dtype=np.intp)[:, None] * (nb + 1)
    hist = np.bincount(codes.ravel(), minlength=t * (nb + 1)).reshape(t, nb + 1)[:, :nb].astype(np.int64)
    c = z.astype(np.float64)
    s1 = c.sum(axis=1)
    c *= c
    return ClosurePartials(hist, s1, c.sum(axis=1), ok.sum(axis=1).astype(np.int64))


def empty_partials(n_triplets: int) -> ClosurePartials:
    """Zero partials (the identity of ``+``)."""
    return ClosurePartials(
        np.zeros((n_triplets, 2 * K_MAX + 1), np.int64),
        np.zeros(n_triplets),
        np.zeros(n_triplets),
        np.zeros(n_triplets, np.int64),
    )


def median_k(k_hist: np.ndarray) -> np.ndarray:
    """Lower median of the integer ambiguities from their histogram.

    The lower median is the value at sorted position ``ceil(n/2) - 1`` (0-based), i.e. the smallest k
    whose cumulative count reaches ``ceil(n/2)``; 0 for a loop without valid pixels.

    Parameters
    ----------
    k_hist : np.ndarray
        (triplet, 2*K_MAX+1) int64 (bin 0 is k = -K_MAX).

    Returns
    -------
    np.ndarray
        (triplet,) int64.
    """
    n = k_hist.sum(axis=1)
    cum = np.cumsum(k_hist, axis=1)
    target = (n + 1) // 2
    idx = (cum < target[:, None]).sum(axis=1)
    out = idx.astype(np.int64) - K_MAX
    out[n == 0] = 0
    return out


def finalize_partials(p: ClosurePartials) -> LoopStats:
    """Per-loop offsets and RMS from (summed) partials.

    The RMS of the corrected closure ``c - o`` (``o = 2 pi k``) follows from the raw sums exactly:
    ``sum((c-o)^2) = s2 - 2 o s1 + n o^2``.
    """
    k = median_k(p.k_hist)
    o = TWO_PI * k
    with np.errstate(invalid="ignore", divide="ignore"):
        ms = (p.s2 - 2.0 * o * p.s1 + p.n * o * o) / p.n
    rms = np.sqrt(np.maximum(ms, 0.0))
    rms[p.n == 0] = np.nan
    return LoopStats(k, rms, p.n.copy())


def correct_closure(raw: np.ndarray, offset_k: np.ndarray) -> np.ndarray:
    """Remove each loop's ``2 pi k``: (triplet, y, x) float32 rad."""
    return (raw - (TWO_PI * offset_k).astype(np.float32)[:, None, None]).astype(np.float32)


def loop_stats(unw: np.ndarray, trip: Triplets) -> tuple[np.ndarray, LoopStats]:
    """Whole-array convenience: offset-corrected closure (triplet, y, x) float32 and :class:`LoopStats`."""
    raw = raw_closure(unw, trip)
    st = finalize_partials(closure_partials(raw))
    return correct_closure(raw, st.offset_k), st


def _scatter_pairs_loop(per_loop: np.ndarray, trip: Triplets, dtype: type) -> np.ndarray:
    """The reference of :func:`_scatter_pairs`: a Python loop over loops of whole-plane adds."""
    out = np.zeros((trip.n_pairs,) + per_loop.shape[1:], dtype=dtype)
    for t in range(trip.n_triplets):
        v = per_loop[t]
        out[trip.ij[t]] += v
        out[trip.jk[t]] += v
        out[trip.ik[t]] += v
    return out


def pair_incidence(trip: Triplets) -> sparse.csr_array:
    """(pair, triplet) float32 CSR matrix, 1 where the pair is one of the loop's three, columns ascending."""
    t = np.arange(trip.n_triplets, dtype=np.int64)
    rows = np.concatenate([trip.ij, trip.jk, trip.ik]).astype(np.int64)
    cols = np.concatenate([t, t, t])
    order = np.lexsort((cols, rows))  # by pair, then by loop: the order the sums run in
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=trip.n_pairs))])
    return sparse.csr_array((np.ones(rows.size, np.float32), cols[order], indptr),
                            shape=(trip.n_pairs, trip.n_triplets))


def _scatter_pairs(per_loop: np.ndarray, trip: Triplets, dtype: type,
                   inc: sparse.csr_array | None = None) -> np.ndarray:
    """Sum a (triplet, y, x) quantity onto the pairs of each loop: (pair, y, x).

    One sparse product ``incidence @ per_loop`` in float32: each pair's sum runs over its loops in ascending
    order, exactly the float32 additions of a loop over triplets (``out[ij[t]] += v[t]`` ...; bit-identical),
    without ~3 Python-level plane operations per loop. Counts (bool input) are exact in float32 below 2**24.
    """
    if per_loop.dtype not in (np.float32, np.bool_) or not trip.n_triplets:
        return _scatter_pairs_loop(per_loop, trip, dtype)
    inc = pair_incidence(trip) if inc is None else inc
    flat = per_loop.reshape(per_loop.shape[0], -1)
    if flat.dtype != np.float32:
        flat = flat.astype(np.float32)
    out = inc @ flat
    return out.reshape((trip.n_pairs,) + per_loop.shape[1:]).astype(dtype, copy=False)


def pixel_loop_counts(closure: np.ndarray, trip: Triplets, thre: float = np.pi) -> PixelLoopCounts:
    """Per-pixel and per-pair-per-pixel loop evidence (see :class:`PixelLoopCounts`).

    Parameters
    ----------
    closure : np.ndarray
        (triplet, y, x) float32 closure (offset-corrected unwrapped, or wrapped), rad, NaN = no data.
    thre : float
        A loop is in error at a pixel when ``|c| > thre`` (rad); LiCSBAS uses pi.
    """
    if closure.ndim != 3 or closure.shape[0] != trip.n_triplets:
        raise InputArrayError(f"closure must be ({trip.n_triplets}, y, x), got {closure.shape}")
    fin = np.isfinite(closure)
    a = np.abs(closure)
    bad = fin & (a > thre)
    inc = pair_incidence(trip)
    n_fin_pair = _scatter_pairs(fin, trip, np.int16, inc)
    n_bad_pair = _scatter_pairs(bad, trip, np.int16, inc)
    n_good_pair = n_fin_pair - n_bad_pair  # good = finite and not bad
    a[~fin] = 0.0
    s_abs = _scatter_pairs(a, trip, np.float32, inc)
    n_fin = n_fin_pair.astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_abs = np.where(n_fin > 0, s_abs / n_fin, np.nan).astype(np.float32)
    return PixelLoopCounts(
        bad.sum(axis=0).astype(np.int16),
        fin.sum(axis=0).astype(np.int16),
        n_bad_pair,
        n_good_pair,
        mean_abs,
    )


def ifg_loop_verdicts(rms: np.ndarray, trip: Triplets, thre: float = 1.5) -> IfgLoopVerdict:
    """Per-interferogram verdict from per-loop RMS (LiCSBAS step 12 ``identify_bad_ifg``).

    Parameters
    ----------
    rms : np.ndarray
        (triplet,) loop RMS, rad (NaN: loop without valid pixels, counted neither good nor bad).
    thre : float
        Loop threshold, rad (LiCSBAS default 1.5): a loop with ``rms >= thre`` is bad.
    """
    rms = np.asarray(rms, dtype=np.float64)
    if rms.shape != (trip.n_triplets,):
        raise InputArrayError(f"rms must be ({trip.n_triplets},), got {rms.shape}")
    a = np.abs(trip.loop_matrix()).astype(np.int64)
    fin = np.isfinite(rms)
    bad_loop = fin & (rms >= thre)
    good_loop = fin & (rms < thre)
    n_bad = bad_loop.astype(np.int64) @ a
    n_good = good_loop.astype(np.int64) @ a
    no_loop = a.sum(axis=0) == 0
    return IfgLoopVerdict((n_bad > 0) & (n_good == 0), no_loop, n_good, n_bad)
