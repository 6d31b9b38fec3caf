"""Interferogram weights for the network inversion (numpy kernels).

Every function maps a (pair, ...) array to non-negative float32 weights with 0 = "do not use"; NaN inputs
become 0. Only relative weights matter to the estimate; the velocity std is scaled by the a-posteriori
variance of unit weight, so it does not depend on the scale either.
"""

from __future__ import annotations

import numpy as np

from insarcloud.core.options import InversionWeights
from insarcloud.errors import InputArrayError

# or any (pair, y, x) variable name; "closure" and "quality_closure": insarcloud.invert.closure
WeightMode = InversionWeights
COH_MIN, COH_MAX = 0.01, 0.99  # LiCSBAS/MintPy clip before the variance formula
# smallest weight of a positive ConvNeXt quality (design frames 10-11; see quality_weights)
QUALITY_FLOOR = 0.2


def coherence_weights(coh: np.ndarray) -> np.ndarray:
    """Inverse phase variance from coherence, as LiCSBAS (``--inv_alg WLS``) and MintPy do.

    ``var = (1 - c^2) / (2 c^2)`` with ``c = clip(coh, 0.01, 0.99)`` (the Cramer-Rao bound for one
    look; LiCSBAS ``LiCSBAS13_sb_inv.py``); the weight is ``1 / var``, i.e. 2.0e-4 at c = 0.01 and 98 at
    c = 0.99.

    Parameters
    ----------
    coh : (pair, ...) float, coherence in 0..1; NaN -> weight 0.
    """
    c = np.clip(np.asarray(coh, dtype=np.float32), COH_MIN, COH_MAX)
    w = 2.0 * c * c / (1.0 - c * c)
    return np.where(np.isfinite(w), w, 0.0).astype(np.float32)


def quality_weights(quality: np.ndarray, floor: float | None = None) -> np.ndarray:
    """Weights from a pixel-wise quality map in [0, 1] (1 = good; the ConvNeXt ``quality`` group).

    ``w = max(clip(q, 0, 1), floor)`` where ``q`` is valid; NaN -> 0 (no data). A quality of exactly 0 is
    what the ConvNeXt stage writes for *no data*, so it stays 0 (the pair is removed at that pixel); any
    positive quality gets at least ``floor``.

    Why a floor (default :data:`QUALITY_FLOOR` = 0.2, chosen on the benchmark's DESIGN frames, seeds 10
    and 11, from the grid 0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5 and q^k, k = 0.1..1; see notes/invert.md,
    session 3): the packaged ConvNeXt checkpoint was trained to flag "unwrapping error OR true coherence
    < 0.2", so on simulated frames it is a decorrelation map (ROC AUC 0.985 against that target, 0.71
    against unwrapping errors alone and 0.52 = chance among decorrelated pixel-pairs, where every
    unwrapping error lies). Used linearly (``floor=0``, the paper-literal mapping) it gives clean but
    decorrelated pairs ~0.09 of a good pair's weight and makes the velocity RMSE worse than unweighted
    (-18% report frames); the floor bounds that down-weighting to 5x while keeping the ordering.

    Parameters
    ----------
    quality : (pair, ...) float, quality in [0, 1]; NaN or <= 0 -> weight 0.
    floor : float in [0, 1], optional
        Smallest weight of a pixel-pair with positive quality; None -> :data:`QUALITY_FLOOR`;
        0 -> weight = quality (linear).

    Returns
    -------
    (pair, ...) float32 weights in [0, 1].
    """
    f = QUALITY_FLOOR if floor is None else float(floor)
    if not 0.0 <= f <= 1.0:
        raise InputArrayError(f"quality weight floor must be in [0, 1], got {f}")
    # in place on one float32 copy (4 passes instead of 8; the same values): after the clip only NaN is not
    # finite, and NaN fails q > 0, so the "not finite -> 0" of the definition is the "q <= 0 -> 0" below
    q = np.clip(np.asarray(quality, dtype=np.float32), np.float32(0.0), np.float32(1.0))
    off = ~(q > 0)
    np.maximum(q, np.float32(f), out=q)
    q[off] = 0.0
    return q


def variable_weights(values: np.ndarray, name: str = "weights") -> np.ndarray:
    """Weights taken as given from a user variable; NaN -> 0.

    Raises
    ------
    InputArrayError
        A negative or infinite value (names the variable).
    """
    v = np.asarray(values, dtype=np.float32)
    bad = np.isinf(v) | (v < 0)
    if bad.any():
        raise InputArrayError(f"weight variable {name!r} has {int(bad.sum())} negative or infinite value(s); "
                              "weights must be >= 0 (NaN = unused)")
    return np.where(np.isnan(v), 0.0, v).astype(np.float32)
