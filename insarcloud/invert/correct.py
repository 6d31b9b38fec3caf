"""Unwrapping-error correction by phase closure: the integer ambiguity of every pair, per pixel.

The method is MintPy's ``unwrap_error_phase_closure.py`` (Yunjun et al. 2019, Comput. Geosci. 133, §3.2):
for each pixel, the closure of every closed triplet ``c = unw_ij + unw_jk - unw_ik`` is ``2 pi`` times an
integer ``k`` (plus noise) when the pairs carry integer unwrapping errors ``U``; with ``C`` the (loop, pair)
incidence matrix (+1 for ``ij`` and ``jk``, -1 for ``ik``), ``C U = k``. The network has more pairs than
independent loops, so the sparsest ``U`` is chosen: ``min ||U||_1 subject to C U = k``, and the corrected
phase is ``unw - 2 pi U``.

Differences from MintPy, and why:

- MintPy solves the L1-regularised least squares ``min ||C U - k||_2^2 + alpha ||U||_1`` with cvxopt's
  ``l1regls`` and rounds. Here the problem is solved in integers with HiGHS (``scipy.optimize.linprog``;
  ``milp`` when the LP optimum is not integral; no cvxopt dependency): ``min sum|U| + w sum|s|`` subject
  to ``C U + s = k``. The slack ``s`` (weight ``w = pairs + 1``, so fitting a loop always beats leaving
  it) keeps the problem feasible when noise rounds one loop of a dependent set differently
  (``round(c1 + c2) != round(c1) + round(c2)``), where a hard ``C U = k`` has no solution.
- The closure of each loop is median-filtered in a 5 x 5 box before rounding (:data:`CORRECTION_WINDOW`):
  unwrapping errors are patches, closure noise is per pixel.
- Only pairs in a loop that does not close are unknowns (cycles on any other pair would open its closed
  loops and need compensating cycles elsewhere, which the L1 cost disfavours; a restriction, not proven
  optimal in every network), and those pairs split into independent groups (pairs that share no loop),
  each solved once per distinct (pairs, loops, closures) and cached. Pixels whose closures are all 0 need
  no solve. On the simulator the cache rarely hits (nearly every error pixel has its own closure pattern,
  notes/invert.md), so the cost is about one LP per error pixel: the open issue for whole frames.
- Loops with a NaN pair at the pixel are left out of its problem; pairs without data get ``U = 0``.

Errors that cancel inside every loop of a pair (the same cycles in ``ij`` and ``ik`` of a patch, with no other
loop through them) are invisible to any closure method: they are not corrected (notes/invert.md).
The closure is taken on the stack as given (before referencing), so an error at the reference pixel is
corrected there before it could be spread to the whole frame by the referencing.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.ndimage import median_filter
from scipy.optimize import Bounds, LinearConstraint, linprog, milp
from scipy.sparse import csr_matrix, hstack, identity
from scipy.sparse.csgraph import connected_components

from insarcloud.errors import InputArrayError

#: ``--correct-unwrap`` choices (``none`` = no correction).
CORRECTION_METHODS = ("none", "phase_closure")
#: Largest |cycles| a correction may assign to one pair (int8 storage).
MAX_CYCLES = 100
#: Median box (pixels) on each loop's closure before rounding: unwrapping errors are patches, closure noise is
#: per pixel (on the simulator a clean loop's closure has a std of 1.5-2.7 rad, so 6-24% of clean pixels
#: round to a non-zero integer without the box; notes/invert.md).
CORRECTION_WINDOW = 5
CORRECTION_HALO = CORRECTION_WINDOW // 2
_NAN_KEY = np.iinfo(np.int16).min


class UnwrapCorrection(NamedTuple):
    """Result of :func:`phase_closure_correction`.

    Attributes
    ----------
    cycles : np.ndarray
        (pair, ...) int8 integer cycles removed from each pair: ``corrected = unw - 2 pi cycles`` (0 where no
        correction or no data).
    corrected : np.ndarray
        (pair, ...) float32 corrected unwrapped phase, rad (NaN where ``unw`` is NaN).
    n_patterns : int
        Distinct non-zero closure patterns solved (one integer program each).
    n_unresolved : int
        Pixels whose solution leaves some loop unclosed (slack used): their closures were inconsistent.
    """

    cycles: np.ndarray
    corrected: np.ndarray
    n_patterns: int
    n_unresolved: int


def loop_incidence(trip: np.ndarray, n_pair: int) -> np.ndarray:
    """(loop, pair) int8 incidence ``C``: +1 for pairs ``ij`` and ``jk`` of a triplet, -1 for ``ik``."""
    trip = np.asarray(trip, dtype=np.int64).reshape(-1, 3)
    c = np.zeros((trip.shape[0], n_pair), np.int8)
    rows = np.arange(trip.shape[0])
    c[rows, trip[:, 0]] = 1
    c[rows, trip[:, 1]] = 1
    c[rows, trip[:, 2]] = -1
    return c


def closure_integers(unw: np.ndarray, trip: np.ndarray, window: int = 1) -> np.ndarray:
    """(loop, ...) float64 ``round(closure / 2 pi)`` of a (pair, ...) stack; NaN where a pair of the loop is NaN.

    With ``window > 1`` (a (pair, y, x) stack) each loop's closure is median-filtered in a ``window x window``
    box before rounding (NaN counted as 0 closure; edges reflected as ``scipy.ndimage`` does).
    """
    unw = np.asarray(unw, dtype=np.float64)
    a, b, c = (np.asarray(trip, np.int64).reshape(-1, 3)[:, i] for i in range(3))
    clo = unw[a] + unw[b] - unw[c]
    if window > 1:
        if clo.ndim != 3:
            raise InputArrayError(f"a closure window needs a (pair, y, x) stack, got shape {unw.shape}")
        nan = ~np.isfinite(clo)
        clo = median_filter(np.where(nan, 0.0, clo), size=(1, window, window), mode="reflect")
        clo[nan] = np.nan
    return np.rint(clo / (2 * np.pi))


def _solve_group(c: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, bool]:
    """Integer ``U`` (columns of ``c``) minimising ``||U||_1 + w ||c U - k||_1``; and whether no slack."""
    nl, npg = c.shape
    a = csr_matrix(c.astype(np.float64))
    eye = identity(nl, format="csr")
    # variables: U+, U- (pairs), s+, s- (loops); all integer >= 0
    a_eq = hstack([a, -a, eye, -eye], format="csr")
    cost = np.concatenate([np.ones(2 * npg), np.full(2 * nl, float(npg + 1))])
    ub = np.concatenate([np.full(2 * npg, MAX_CYCLES), np.full(2 * nl, np.inf)])
    # The LP relaxation (HiGHS dual simplex) was integral on every group seen on the simulator and is ~2x
    # faster than HiGHS' MILP; MILP only when it is not.
    res = linprog(cost, A_eq=a_eq, b_eq=k, bounds=list(zip(np.zeros(cost.size), ub, strict=True)),
                  method="highs-ds")
    if res.x is not None and not np.allclose(res.x, np.rint(res.x), atol=1e-6):
        res = milp(cost, constraints=LinearConstraint(a_eq, k, k), integrality=np.ones(cost.size),
                   bounds=Bounds(0, ub))
    if res.x is None:  # cannot happen with the slack (U = 0, s = k is feasible); leave the pairs untouched
        return np.zeros(npg, np.int64), False
    x = np.rint(res.x).astype(np.int64)
    return x[:npg] - x[npg: 2 * npg], not np.any(x[2 * npg:])


def solve_l1(c: np.ndarray, k: np.ndarray, cache: dict | None = None, loop_ids: np.ndarray | None = None
             ) -> tuple[np.ndarray, bool]:
    """Integer ``U`` minimising ``||U||_1 + w ||C U - k||_1`` (module docstring) for one closure vector.

    Parameters
    ----------
    c : (loop, pair) int incidence of the loops that have data.
    k : (loop,) integer closures (float or int).
    cache : dict, optional
        Solved groups, keyed by their pairs, loops and closures (shared between the pixels of a block).
    loop_ids : (loop,) int, optional
        The rows' loop numbers in the whole network (the cache key); default ``arange(loop)``.

    Returns
    -------
    (pair,) int64 ``U`` and whether every loop closes (no slack used).
    """
    npair = c.shape[1]
    u = np.zeros(npair, np.int64)
    ids = np.arange(c.shape[0]) if loop_ids is None else np.asarray(loop_ids, np.int64)
    if c.shape[0] == 0 or not np.any(k):
        return u, True
    # Only pairs in a loop that does not close can carry cycles worth their L1 cost (cycles on any other pair
    # would open its closed loops); pairs that share no loop are independent problems.
    used = np.flatnonzero(np.any(c[k != 0] != 0, axis=0))
    cu = c[:, used] != 0
    rows = np.flatnonzero(np.any(cu, axis=1))
    cu = cu[rows]
    adj = csr_matrix((cu.T.astype(np.int32) @ cu.astype(np.int32)) > 0)
    n_grp, grp = connected_components(adj, directed=False)
    closed = True
    for g in range(n_grp):
        cols = used[grp == g]
        lrows = rows[np.any(cu[:, grp == g], axis=1)]
        kg = k[lrows]
        key = (cols.tobytes(), ids[lrows].tobytes(), kg.astype(np.int64).tobytes())
        hit = None if cache is None else cache.get(key)
        if hit is None:
            hit = _solve_group(c[np.ix_(lrows, cols)], kg)
            if cache is not None:
                cache[key] = hit
        u[cols] = hit[0]
        closed &= hit[1]
    return u, closed


def phase_closure_correction(unw: np.ndarray, trip: np.ndarray, window: int = CORRECTION_WINDOW) -> UnwrapCorrection:
    """Phase-closure integer correction of a stack (module docstring).

    Parameters
    ----------
    unw : np.ndarray
        (pair, ...) unwrapped phase, rad; NaN = no data. Any trailing pixel shape.
    trip : np.ndarray
        (loop, 3) int pair indices ``(ij, jk, ik)`` of the closed triplets
        (:func:`insarcloud.invert.closure.loop_triplets`).
    window : int
        Odd side of the median box applied to each loop's closure before rounding (1: per pixel, as MintPy;
        needs a (pair, y, x) stack when > 1). A Dask caller passes ``window // 2`` pixels of overlap.

    Returns
    -------
    UnwrapCorrection
    """
    unw = np.asarray(unw)
    if window < 1 or window % 2 == 0:
        raise InputArrayError(f"closure window must be an odd number of pixels, got {window}")
    if unw.ndim < 1:
        raise InputArrayError(f"phase-closure correction needs a (pair, ...) stack, got shape {unw.shape}")
    trip = np.asarray(trip, dtype=np.int64).reshape(-1, 3)
    npair = unw.shape[0]
    if trip.size and (trip.min() < 0 or trip.max() >= npair):
        raise InputArrayError(f"loop triplets index pairs up to {int(trip.max())}, the stack has {npair}")
    flat = unw.reshape(npair, -1)
    cycles = np.zeros(flat.shape, np.int8)
    n_patterns = n_unresolved = 0
    if trip.shape[0]:
        with np.errstate(invalid="ignore"):
            k = closure_integers(unw, trip, window).reshape(trip.shape[0], -1)
        todo = np.flatnonzero(np.any(np.nan_to_num(k) != 0, axis=0))
        if todo.size:
            key = np.where(np.isfinite(k[:, todo]), np.clip(np.nan_to_num(k[:, todo]), -30000, 30000),
                           _NAN_KEY).astype(np.int16)
            patterns, inverse = np.unique(key.T, axis=0, return_inverse=True)
            inverse = np.asarray(inverse).ravel()
            inc = loop_incidence(trip, npair)
            n_patterns = patterns.shape[0]
            cache: dict = {}
            for i, pat in enumerate(patterns):
                ok = pat != _NAN_KEY
                u, closed = solve_l1(inc[ok], pat[ok].astype(np.float64), cache, np.flatnonzero(ok))
                cols = todo[inverse == i]
                cycles[:, cols] = np.clip(u, -MAX_CYCLES, MAX_CYCLES).astype(np.int8)[:, None]
                if not closed:
                    n_unresolved += cols.size
    cycles[~np.isfinite(flat)] = 0
    corrected = (flat - (2 * np.pi) * cycles).astype(np.float32)
    return UnwrapCorrection(cycles.reshape(unw.shape), corrected.reshape(unw.shape), n_patterns, n_unresolved)


def correction_block(unw: np.ndarray, *, trip: np.ndarray, window: int = CORRECTION_WINDOW) -> np.ndarray:
    """Dask block function: (pair, y, x) unwrapped block -> (pair, y, x) int8 cycles to remove."""
    return phase_closure_correction(unw, trip, window).cycles


def score_correction(cycles: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None) -> dict[str, float]:
    """Corrected pixel-pairs against known integer errors (the simulator's ``unw_cycles``).

    precision: share of corrected pixel-pairs (``cycles != 0``) that had an error; recall: share of error
    pixel-pairs that were corrected; exact: share of error pixel-pairs whose error was recovered exactly
    (``cycles == truth``); wrong_on_clean: share of clean pixel-pairs given a correction.
    """
    cycles = np.asarray(cycles, np.int64)
    truth = np.asarray(truth, np.int64)
    v = np.ones(cycles.shape, bool) if valid is None else np.asarray(valid, bool)
    fixed, err = (cycles != 0) & v, (truth != 0) & v
    n_fixed, n_err = int(fixed.sum()), int(err.sum())
    return {
        "precision": float((fixed & err).sum() / n_fixed) if n_fixed else float("nan"),
        "recall": float((fixed & err).sum() / n_err) if n_err else float("nan"),
        "exact": float((err & (cycles == truth)).sum() / n_err) if n_err else float("nan"),
        "wrong_on_clean": float((fixed & ~err).sum() / max(int((v & ~err).sum()), 1)),
        "n_error_pixel_pairs": float(n_err),
        "n_corrected_pixel_pairs": float(n_fixed),
    }
