"""Multi-stage rule labels: good / bad / uncertain per pixel, per interferogram and per tile.

The selection follows the seed paper's multi-stage strategy (loop phase closure, then statistical
indicators, then manual verification of what the rules cannot decide):

Stage 1, loop closure (per pixel and pair). With unwrapped products: the pair's loops at the pixel are
counted bad (``|c| > loop_pixel_thre``, pi: an integer-cycle jump) or good. The pair is *closure-bad* at
the pixel when it is in at least one bad loop and in no good loop (LiCSBAS step 12's rule, applied per
pixel), *closure-supported* when it has more good loops than bad ones. The wrapped closure's mean
``|c|`` over the pair's loops only keeps a pixel out of GOOD (above ``wrapped_good``): it cannot tell
which pair of a loop is at fault and its per-pixel noise is large, so alone it is a poor bad-pixel
detector (precision 0.36-0.59 against the synthetic truth, see notes/qc.md) and never makes a pixel BAD.

Stage 2, statistics (per pixel and pair): windowed mean coherence and circular phase std.

Decision (thresholds in :class:`RuleThresholds`, defaults below):

- ``NODATA`` (255): no wrapped phase or no coherence in the window.
- ``BAD`` (1): closure-bad, or ``coh_mean < coh_bad`` (0.2), or ``phase_std > std_bad`` (1.3 rad).
- ``GOOD`` (0): not bad, ``coh_mean >= coh_good`` (0.35), ``phase_std <= std_good`` (0.8 rad), wrapped
  closure mean ``<= wrapped_good`` (1.0 rad) where known, and, when the frame has unwrapped products,
  closure-supported.
- ``UNCERTAIN`` (2): everything else; these go to manual verification (``insarcloud review``).

The coherence and std thresholds were chosen on :mod:`insarcloud.qc.synthetic` stacks (seeds 0-2; the
truth's decorrelation threshold is a true coherence of 0.2); the benchmark scores other seeds.

Per interferogram: bad when LiCSBAS step 11 or step 12 says bad or more than ``ifg_bad_frac`` (0.5) of its
valid pixels are bad; good when at least ``ifg_good_frac`` (0.6) are good, at most ``ifg_max_bad_frac``
(0.1) are bad and (with unwrapped products) it is in a loop; uncertain otherwise.
Per tile: NODATA without valid pixels; bad above ``tile_bad_frac`` (0.5) bad pixels; good with at least
``tile_good_frac`` (0.8) good and at most ``tile_max_bad_frac`` (0.05) bad; uncertain otherwise.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from insarcloud.errors import InputArrayError
from insarcloud.qc.thresholds import RuleThresholds as RuleThresholds  # defined numpy-free

GOOD, BAD, UNCERTAIN, NODATA = 0, 1, 2, 255
LABEL_NAMES = {GOOD: "good", BAD: "bad", UNCERTAIN: "uncertain", NODATA: "nodata"}

#: Reason bits (``reason`` maps): why a pixel is not good (R_WRAPPED and R_UNSUPPORTED alone give
#: UNCERTAIN, the others BAD).
R_CLOSURE, R_COH, R_STD, R_WRAPPED, R_UNSUPPORTED = 1, 2, 4, 8, 16


class PixelLabels(NamedTuple):
    """Per-pixel rule labels.

    Attributes
    ----------
    label : np.ndarray
        (pair, y, x) uint8 GOOD / BAD / UNCERTAIN / NODATA.
    reason : np.ndarray
        (pair, y, x) uint8 bit mask of R_* flags that fired (0 for good pixels).
    """

    label: np.ndarray
    reason: np.ndarray


class LabelCounts(NamedTuple):
    """Chunk-summable per-pair label counts: (pair,) int64 each."""

    n_good: np.ndarray
    n_bad: np.ndarray
    n_uncertain: np.ndarray

    def __add__(self, other: LabelCounts) -> LabelCounts:  # type: ignore[override]
        return LabelCounts(*(a + b for a, b in zip(self, other, strict=True)))


class IfgLabels(NamedTuple):
    """Per-interferogram labels.

    Attributes
    ----------
    label : np.ndarray
        (pair,) uint8 GOOD / BAD / UNCERTAIN (NODATA when the pair has no valid pixel).
    frac_good, frac_bad, frac_uncertain : np.ndarray
        (pair,) float64 fractions of the pair's valid pixels.
    """

    label: np.ndarray
    frac_good: np.ndarray
    frac_bad: np.ndarray
    frac_uncertain: np.ndarray


class LabelScore(NamedTuple):
    """Rule labels against a truth mask (1 = bad).

    Attributes
    ----------
    precision, recall, f1 : float
        Of ``label == BAD`` against ``truth == 1`` over pixels where both are known; uncertain pixels
        count as not flagged.
    precision_decided, recall_decided : float
        The same over decided pixels only (label GOOD or BAD).
    good_precision : float
        Fraction of ``label == GOOD`` pixels that are truly good.
    uncertain_fraction : float
        Fraction of known pixels labelled UNCERTAIN.
    n_pixels : int
        Pixels where both label and truth are known.
    """

    precision: float
    recall: float
    f1: float
    precision_decided: float
    recall_decided: float
    good_precision: float
    uncertain_fraction: float
    n_pixels: int


def pixel_labels(
    phase_std: np.ndarray,
    coh_mean: np.ndarray,
    *,
    pair_n_bad: np.ndarray | None = None,
    pair_n_good: np.ndarray | None = None,
    wrapped_mean_abs: np.ndarray | None = None,
    thresholds: RuleThresholds | None = None,
) -> PixelLabels:
    """Per-pixel rule labels (module docstring).

    Parameters
    ----------
    phase_std : np.ndarray
        (pair, y, x) float32 windowed circular phase std, rad (NaN = no data).
    coh_mean : np.ndarray
        (pair, y, x) float32 windowed mean coherence (NaN = no data).
    pair_n_bad, pair_n_good : np.ndarray, optional
        (pair, y, x) int unwrapped-closure loop counts (:func:`insarcloud.qc.closure.pixel_loop_counts`);
        None when the frame has no unwrapped products.
    wrapped_mean_abs : np.ndarray, optional
        (pair, y, x) float32 mean |wrapped closure| over the pair's loops, rad (NaN: the pair has no loop).
    thresholds : RuleThresholds, optional
    """
    th = thresholds or RuleThresholds()
    if phase_std.shape != coh_mean.shape:
        raise InputArrayError(f"phase_std {phase_std.shape} and coh_mean {coh_mean.shape} differ in shape")
    for name, a in (("pair_n_bad", pair_n_bad), ("pair_n_good", pair_n_good),
                    ("wrapped_mean_abs", wrapped_mean_abs)):
        if a is not None and a.shape != phase_std.shape:
            raise InputArrayError(f"{name} has shape {a.shape}, expected {phase_std.shape}")
    if (pair_n_bad is None) != (pair_n_good is None):
        raise InputArrayError("pair_n_bad and pair_n_good come together")
    nodata = ~np.isfinite(phase_std) | ~np.isfinite(coh_mean)
    reason = np.zeros(phase_std.shape, dtype=np.uint8)
    with np.errstate(invalid="ignore"):
        low_coh = coh_mean < th.coh_bad
        high_std = phase_std > th.std_bad
        bad = low_coh | high_std
        reason |= np.where(low_coh, R_COH, 0).astype(np.uint8)
        reason |= np.where(high_std, R_STD, 0).astype(np.uint8)
        good = (coh_mean >= th.coh_good) & (phase_std <= th.std_good)
        if pair_n_bad is not None and pair_n_good is not None:
            cbad = (pair_n_bad > 0) & (pair_n_good == 0)
            supported = pair_n_good > pair_n_bad
            bad |= cbad
            reason |= np.where(cbad, R_CLOSURE, 0).astype(np.uint8)
            reason |= np.where(~cbad & ~supported, R_UNSUPPORTED, 0).astype(np.uint8)
            good &= supported
        if wrapped_mean_abs is not None:
            wfar = wrapped_mean_abs > th.wrapped_good
            reason |= np.where(wfar, R_WRAPPED, 0).astype(np.uint8)
            good &= ~wfar
    label = np.full(phase_std.shape, UNCERTAIN, dtype=np.uint8)
    label[good & ~bad] = GOOD
    label[bad] = BAD
    label[nodata] = NODATA
    reason[nodata] = 0
    return PixelLabels(label, reason)


def label_counts(label: np.ndarray) -> LabelCounts:
    """Per-pair counts of a (pair, y, x) uint8 label block (chunk-summable)."""
    if label.ndim != 3:
        raise InputArrayError(f"label must be (pair, y, x), got {label.shape}")
    return LabelCounts(
        (label == GOOD).sum(axis=(1, 2)).astype(np.int64),
        (label == BAD).sum(axis=(1, 2)).astype(np.int64),
        (label == UNCERTAIN).sum(axis=(1, 2)).astype(np.int64),
    )


def ifg_labels(
    counts: LabelCounts,
    *,
    step11_bad: np.ndarray | None = None,
    step12_bad: np.ndarray | None = None,
    no_loop: np.ndarray | None = None,
    thresholds: RuleThresholds | None = None,
) -> IfgLabels:
    """Per-interferogram labels from pixel counts and the step-11/12 verdicts (module docstring).

    ``no_loop`` (pair,) bool, when given (frames with unwrapped products), keeps a pair out of GOOD.
    """
    th = thresholds or RuleThresholds()
    n = counts.n_good + counts.n_bad + counts.n_uncertain
    with np.errstate(invalid="ignore", divide="ignore"):
        fg = np.where(n > 0, counts.n_good / np.maximum(n, 1), np.nan)
        fb = np.where(n > 0, counts.n_bad / np.maximum(n, 1), np.nan)
        fu = np.where(n > 0, counts.n_uncertain / np.maximum(n, 1), np.nan)
    p = n.shape[0]
    s11 = np.zeros(p, bool) if step11_bad is None else np.asarray(step11_bad, bool)
    s12 = np.zeros(p, bool) if step12_bad is None else np.asarray(step12_bad, bool)
    nl = np.zeros(p, bool) if no_loop is None else np.asarray(no_loop, bool)
    with np.errstate(invalid="ignore"):
        bad = s11 | s12 | (fb > th.ifg_bad_frac)
        good = ~bad & ~nl & (fg >= th.ifg_good_frac) & (fb <= th.ifg_max_bad_frac)
    lab = np.full(p, UNCERTAIN, dtype=np.uint8)
    lab[good] = GOOD
    lab[bad] = BAD
    lab[n == 0] = NODATA
    return IfgLabels(lab, fg, fb, fu)


def tile_label(label: np.ndarray, thresholds: RuleThresholds | None = None) -> int:
    """Per-tile verdict of a (ty, tx) uint8 pixel-label tile (module docstring)."""
    th = thresholds or RuleThresholds()
    valid = label != NODATA
    n = int(valid.sum())
    if n == 0:
        return NODATA
    fb = float((label == BAD).sum()) / n
    fg = float((label == GOOD).sum()) / n
    if fb > th.tile_bad_frac:
        return BAD
    if fg >= th.tile_good_frac and fb <= th.tile_max_bad_frac:
        return GOOD
    return UNCERTAIN


def _ratio(a: float, b: float) -> float:
    return float(a) / float(b) if b > 0 else float("nan")


def score_labels(label: np.ndarray, truth: np.ndarray) -> LabelScore:
    """Precision / recall of the rule labels against a truth mask.

    Parameters
    ----------
    label : np.ndarray
        uint8 GOOD / BAD / UNCERTAIN / NODATA, any shape.
    truth : np.ndarray
        uint8 0 = good, 1 = bad, 255 = unknown; the same shape.
    """
    if label.shape != truth.shape:
        raise InputArrayError(f"label {label.shape} and truth {truth.shape} differ in shape")
    known = (label != NODATA) & (truth != NODATA)
    t = (truth == 1) & known
    flagged = (label == BAD) & known
    decided = known & ((label == BAD) | (label == GOOD))
    tp = float((flagged & t).sum())
    p_ = _ratio(tp, flagged.sum())
    r_ = _ratio(tp, t.sum())
    f1 = 2 * p_ * r_ / (p_ + r_) if (p_ + r_) > 0 else float("nan")
    good_l = (label == GOOD) & known
    return LabelScore(
        p_,
        r_,
        f1,
        p_,
        _ratio(tp, (t & decided).sum()),
        _ratio((good_l & ~t).sum(), good_l.sum()),
        _ratio(((label == UNCERTAIN) & known).sum(), known.sum()),
        int(known.sum()),
    )
