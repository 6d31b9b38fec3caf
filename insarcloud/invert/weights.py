"""Interferogram weights for the network inversion (numpy kernels).

Every function maps a (pair, ...) array to non-negative float32 weights with 0 = "do not use"; NaN inputs
become 0. Only relative weights matter to the estimate; the velocity std is scaled by the a-posteriori
variance of unit weight, so it does not depend on the scale either.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from insarcloud.errors import InputArrayError

WeightMode = Literal["none", "coherence", "quality"]  # or any (pair, y, x) variable name
COH_MIN, COH_MAX = 0.01, 0.99  # LiCSBAS/MintPy clip before the variance formula


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


def quality_weights(quality: np.ndarray) -> np.ndarray:
    """Weights from a pixel-wise quality map in [0, 1] (1 = good; the ConvNeXt ``quality`` group).

    Values are clipped to [0, 1]; NaN -> 0. A quality of 0 removes the pixel's pair from the solve.
    """
    q = np.clip(np.asarray(quality, dtype=np.float32), 0.0, 1.0)
    return np.where(np.isfinite(q), q, 0.0).astype(np.float32)


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
