"""A small interferogram stack with known truth, for QC tests and the benchmark.

Stages never import each other, so QC keeps its own tiny generator (``insarcloud.simulate`` builds the
realistic frames; tests and the benchmark use it when it is there). Everything is seeded through an
explicit ``numpy.random.Generator``.

Model: epoch phases are a smooth deformation field times time plus a smooth atmosphere per epoch; each
pair gets a true coherence map (a smooth field, plus decorrelated patches on some pairs), phase noise with
the Cramer-Rao standard deviation ``sqrt((1-g^2) / (2 L g^2))`` for ``L`` looks (uniformly random phase
where ``g < 0.15``); wrapped phase is the wrapped noisy phase; "unwrapped" products are the noisy phase
plus integer-cycle errors (``2 pi k``, k = +-1 or +-2) in rectangular patches on some pairs.
Truth: bad = unwrapping error | true coherence < ``DECORRELATED`` (0.2).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage

from insarcloud.core.phase import wrap

#: True coherence below which a pixel counts as decorrelated in the truth mask.
DECORRELATED = 0.2


class SyntheticStack(NamedTuple):
    """A stack with truth.

    Attributes
    ----------
    pairs : list[str]
        (pair,) names ``YYYYMMDD_YYYYMMDD``.
    phase : np.ndarray
        (pair, y, x) float32 wrapped phase, rad.
    unw : np.ndarray
        (pair, y, x) float32 unwrapped phase with injected integer-cycle errors, rad.
    coh : np.ndarray
        (pair, y, x) float32 estimated coherence 0..1.
    coh_true : np.ndarray
        (pair, y, x) float32 true coherence 0..1.
    unw_error : np.ndarray
        (pair, y, x) bool: an unwrapping error was injected at the pixel.
    truth : np.ndarray
        (pair, y, x) uint8 0 = good, 1 = bad (unw_error | coh_true < DECORRELATED).
    """

    pairs: list[str]
    phase: np.ndarray
    unw: np.ndarray
    coh: np.ndarray
    coh_true: np.ndarray
    unw_error: np.ndarray
    truth: np.ndarray


def _smooth(shape: tuple[int, int], rng: np.random.Generator, sigma: float) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (f - f.mean()) / (f.std() + 1e-12)


def make_stack(
    rng: np.random.Generator,
    *,
    shape: tuple[int, int] = (96, 96),
    n_epochs: int = 5,
    max_span: int = 3,
    n_error_pairs: int = 2,
    n_decorrelated_pairs: int = 2,
    looks: int = 16,
    start: str = "2024-01-06",
    step_days: int = 12,
) -> SyntheticStack:
    """Generate a stack (module docstring). Pairs connect epochs up to ``max_span`` apart."""
    ny, nx = shape
    dates = np.datetime64(start) + np.arange(n_epochs) * np.timedelta64(step_days, "D")
    names = [str(d).replace("-", "") for d in dates]
    t = np.arange(n_epochs) * step_days / 365.25
    defo = 25.0 * _smooth(shape, rng, 12.0)  # rad/yr: a few fringes over the stack
    epoch_phase = np.stack([defo * ti + 1.5 * _smooth(shape, rng, 8.0) for ti in t])
    epoch_phase -= epoch_phase[0]
    idx = [(i, j) for i in range(n_epochs) for j in range(i + 1, min(n_epochs, i + max_span + 1))]
    pairs = [f"{names[i]}_{names[j]}" for i, j in idx]
    n = len(idx)
    base = 0.55 + 0.3 * np.tanh(_smooth(shape, rng, 10.0))
    coh_true = np.empty((n, ny, nx), np.float32)
    for p, (i, j) in enumerate(idx):
        g = base * np.exp(-(j - i) * 0.08) + 0.05 * _smooth(shape, rng, 4.0)
        coh_true[p] = np.clip(g, 0.02, 0.98)
    for p in rng.choice(n, size=min(n_decorrelated_pairs, n), replace=False):
        y0, x0 = rng.integers(0, ny // 2), rng.integers(0, nx // 2)
        coh_true[p, y0:y0 + ny // 3, x0:x0 + nx // 3] = rng.uniform(0.03, 0.12)
    unw_error = np.zeros((n, ny, nx), bool)
    cycles = np.zeros((n, ny, nx), np.float32)
    for p in rng.choice(n, size=min(n_error_pairs, n), replace=False):
        y0, x0 = rng.integers(0, ny // 2), rng.integers(0, nx // 2)
        sl = (p, slice(y0, y0 + ny // 4 + 4), slice(x0, x0 + nx // 4 + 4))
        unw_error[sl] = True
        cycles[sl] = rng.choice([-2, -1, 1, 2])
    with np.errstate(divide="ignore"):
        sigma = np.sqrt((1 - coh_true**2) / (2 * looks * coh_true**2))
    noise = np.clip(rng.standard_normal((n, ny, nx)) * sigma, -np.pi, np.pi)
    rnd = coh_true < 0.15
    noise[rnd] = rng.uniform(-np.pi, np.pi, int(rnd.sum()))
    true_unw = np.stack([epoch_phase[j] - epoch_phase[i] for i, j in idx])
    noisy = true_unw + noise
    phase = wrap(noisy)
    unw = noisy + 2 * np.pi * cycles
    coh = np.clip(coh_true + 0.04 * rng.standard_normal((n, ny, nx)), 0.0, 1.0)
    truth = (unw_error | (coh_true < DECORRELATED)).astype(np.uint8)
    return SyntheticStack(
        pairs,
        phase.astype(np.float32),
        unw.astype(np.float32),
        coh.astype(np.float32),
        coh_true,
        unw_error,
        truth,
    )
