"""All QC products of one spatial block, and of a whole (small) frame, from the kernels.

:func:`block_products` is what one Dask task runs (every pair of a spatial block, given the frame-wide
per-loop offsets); :func:`frame_qc` runs the same kernels on whole numpy arrays: the reference that the
chunked path must reproduce exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from insarcloud.qc import closure, labels, stats
from insarcloud.qc.network import Triplets, epochs, find_triplets


class BlockProducts(NamedTuple):
    """Per-pixel QC products of a block (shapes: T triplets, P pairs, (y, x) block).

    Attributes
    ----------
    closure : np.ndarray or None
        (T, y, x) float32 unwrapped closure with per-loop 2 pi k removed, rad (None without unw).
    closure_wrapped : np.ndarray
        (T, y, x) float32 wrapped closure, rad.
    n_loop_err, n_loops : np.ndarray
        (y, x) int16 loops with |c| > pi / with finite c (unwrapped closure; wrapped without unw).
    pair_closure : np.ndarray or None
        (P, y, x) float32 mean |unwrapped closure| over the pair's loops, rad (None without unw).
    pair_closure_wrapped : np.ndarray
        (P, y, x) float32 mean |wrapped closure| over the pair's loops, rad.
    phase_std, coh_mean : np.ndarray
        (P, y, x) float32 windowed circular phase std (rad) and mean coherence.
    label, reason : np.ndarray
        (P, y, x) uint8 rule labels and reason bits (:mod:`insarcloud.qc.labels`).
    """

    closure: np.ndarray | None
    closure_wrapped: np.ndarray
    n_loop_err: np.ndarray
    n_loops: np.ndarray
    pair_closure: np.ndarray | None
    pair_closure_wrapped: np.ndarray
    phase_std: np.ndarray
    coh_mean: np.ndarray
    label: np.ndarray
    reason: np.ndarray


class FrameQC(NamedTuple):
    """Whole-frame QC (the numpy reference).

    Attributes
    ----------
    triplets : Triplets
    pixels : BlockProducts
    loops : closure.LoopStats or None
        Unwrapped per-loop offsets / RMS (None without unw).
    loops_wrapped : closure.LoopStats
        Wrapped per-loop RMS (offset always 0).
    step11 : stats.IfgStats
    step12 : closure.IfgLoopVerdict
    ifg : labels.IfgLabels
    """

    triplets: Triplets
    pixels: BlockProducts
    loops: closure.LoopStats | None
    loops_wrapped: closure.LoopStats
    step11: stats.IfgStats
    step12: closure.IfgLoopVerdict
    ifg: labels.IfgLabels


def block_products(
    phase: np.ndarray,
    coh: np.ndarray,
    unw: np.ndarray | None,
    trip: Triplets,
    offset_k: np.ndarray | None,
    *,
    phase_std: np.ndarray,
    coh_mean: np.ndarray,
    thresholds: labels.RuleThresholds,
) -> BlockProducts:
    """QC products of one block. ``phase_std``/``coh_mean`` come precomputed (they need a halo).

    Parameters
    ----------
    phase, coh, unw : np.ndarray
        (P, y, x) float32 wrapped phase (rad), coherence, unwrapped phase (rad) or None.
    offset_k : np.ndarray or None
        (T,) int64 frame-wide per-loop integer cycles (:func:`closure.finalize_partials`).
    """
    th = thresholds
    wc = closure.wrapped_closure(phase, trip) if trip.n_triplets else np.zeros((0,) + phase.shape[1:], np.float32)
    wcnt = closure.pixel_loop_counts(wc, trip, th.loop_pixel_thre)
    cu = None
    pc = None
    n_bad = n_good = None
    counts = wcnt
    if unw is not None and trip.n_triplets:
        k = np.zeros(trip.n_triplets, np.int64) if offset_k is None else offset_k
        cu = closure.correct_closure(closure.raw_closure(unw, trip), k)
        counts = closure.pixel_loop_counts(cu, trip, th.loop_pixel_thre)
        pc, n_bad, n_good = counts.pair_mean_abs, counts.pair_n_bad, counts.pair_n_good
    elif unw is not None:
        pc = np.full(phase.shape, np.nan, np.float32)
    pl = labels.pixel_labels(
        phase_std, coh_mean, pair_n_bad=n_bad, pair_n_good=n_good,
        wrapped_mean_abs=wcnt.pair_mean_abs if trip.n_triplets else None, thresholds=th,
    )
    return BlockProducts(cu, wc, counts.n_loop_err, counts.n_loops, pc, wcnt.pair_mean_abs,
                         phase_std, coh_mean, pl.label, pl.reason)


def valid_mask(phase: np.ndarray, unw: np.ndarray | None) -> np.ndarray:
    """(P, y, x) bool: data for step 11 (unw finite when present, else wrapped phase finite)."""
    return np.isfinite(unw) if unw is not None else np.isfinite(phase)


def frame_qc(
    pairs: Sequence[str],
    phase: np.ndarray,
    coh: np.ndarray,
    unw: np.ndarray | None = None,
    *,
    window: int = 5,
    loop_thre: float = 1.5,
    cov_thre: float = 0.3,
    coh_thre: float = 0.05,
    thresholds: labels.RuleThresholds | None = None,
    landmask: np.ndarray | None = None,
) -> FrameQC:
    """Every QC product of a whole frame held in memory (the reference for the chunked path).

    Parameters
    ----------
    pairs : sequence of str
        (P,) pair names.
    phase, coh, unw : np.ndarray
        (P, y, x) float32; ``unw`` None when the frame has no unwrapped products.
    landmask : np.ndarray, optional
        (y, x) LiCSAR landmask (1 land, 0 water): water pixels are no data for every product.
    """
    th = thresholds or labels.RuleThresholds()
    phase, coh = stats.mask_water(phase, landmask), stats.mask_water(coh, landmask)
    unw = None if unw is None else stats.mask_water(unw, landmask)
    trip = find_triplets(pairs)
    ws = stats.window_stats(phase, coh, window)
    loops = None
    if unw is not None and trip.n_triplets:
        loops = closure.finalize_partials(closure.closure_partials(closure.raw_closure(unw, trip)))
    px = block_products(phase, coh, unw, trip, None if loops is None else loops.offset_k,
                        phase_std=ws.phase_std, coh_mean=ws.coh_mean, thresholds=th)
    lw = closure.finalize_partials(
        closure.closure_partials(px.closure_wrapped) if trip.n_triplets else closure.empty_partials(0)
    )
    s11 = stats.step11(valid_mask(phase, unw), coh, len(epochs(pairs)), cov_thre, coh_thre)
    rms = loops.rms if loops is not None else lw.rms
    s12 = closure.ifg_loop_verdicts(rms, trip, loop_thre)
    ifg = labels.ifg_labels(
        labels.label_counts(px.label), step11_bad=s11.bad,
        step12_bad=s12.bad if loops is not None else None,
        no_loop=s12.no_loop if unw is not None else None, thresholds=th,
    )
    return FrameQC(trip, px, loops, lw, s11, s12, ifg)
