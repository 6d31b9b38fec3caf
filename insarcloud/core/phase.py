"""Phase wrapping: the one definition of each wrapping convention (NumPy; torch code keeps its own)."""

from __future__ import annotations

import numpy as np

__all__ = ["wrap", "wrap_angle"]


def wrap(phase: np.ndarray) -> np.ndarray:
    """Wrap phase into [-pi, pi).

    Parameters
    ----------
    phase : ndarray, any shape, float, rad

    Returns
    -------
    ndarray, same shape and dtype (a float32 array stays float32), rad in [-pi, pi)

    >>> float(wrap(np.array(np.pi)))
    -3.141592653589793
    """
    return (phase + np.pi) % (2 * np.pi) - np.pi


def wrap_angle(phase: np.ndarray) -> np.ndarray:
    """Wrap phase into (-pi, pi], the convention of ``np.angle(np.exp(1j * phase))`` (LiCSAR's diff_pha),
    without the complex temporaries.

    >>> float(wrap_angle(np.array(np.pi)))
    3.141592653589793
    """
    p = np.asarray(phase)
    return np.pi - np.mod(np.pi - p, 2 * np.pi)
