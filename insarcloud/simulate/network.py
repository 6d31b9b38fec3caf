"""Sentinel-1 acquisition calendar and LiCSAR-style small-baseline network (pure numpy).

Acquisitions repeat every 12 days (Sentinel-1A alone, as for most Tibetan tracks since 2022 and many
before 2017); a fraction of slots is missing (no acquisition or failed processing). LiCSAR links each
epoch to its next 3-5 acquisitions (12-60 days); a few of those interferograms are missing. The
network is kept connected (a dropped pair that would split it is restored).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from insarcloud.core.pairs import pair_names
from insarcloud.errors import ConfigError

__all__ = ["Network", "acquisition_dates", "make_network", "pair_names"]

REPEAT_DAYS = 12


class Network(NamedTuple):
    """Epochs and interferograms of a frame.

    Fields
    ------
    dates : ndarray (date,), datetime64[D], acquired epochs, ascending
    primary, secondary : ndarray (pair,), int64, indices into ``dates`` (primary < secondary)
    n_forward : ndarray (date,), int64, forward neighbours drawn for each epoch (3-5, fewer near the end)
    missing_dates : ndarray, datetime64[D], 12-day slots with no acquisition
    missing_pairs : list of (int, int), drawn pairs left out (interferograms LiCSAR did not make)
    bperp : ndarray (date,), float32, m, perpendicular baseline w.r.t. the master epoch
    master : int, index of the master (reference) epoch of the baselines file
    """

    dates: np.ndarray
    primary: np.ndarray
    secondary: np.ndarray
    n_forward: np.ndarray
    missing_dates: np.ndarray
    missing_pairs: list
    bperp: np.ndarray
    master: int


def acquisition_dates(start_date: str | np.datetime64, n_epochs: int, rng: np.random.Generator,
                      missing_fraction: float = 0.08) -> tuple[np.ndarray, np.ndarray]:
    """12-day calendar from ``start_date`` with ``n_epochs`` acquisitions and random missing slots.

    Returns
    -------
    (dates, missing) : datetime64[D] arrays; the first slot is never missing.
    """
    if n_epochs < 2:
        raise ConfigError(f"need at least 2 epochs, got {n_epochs}")
    t0 = np.datetime64(start_date, "D")
    dates, missing = [t0], []
    slot = 1
    while len(dates) < n_epochs:
        d = t0 + np.timedelta64(slot * REPEAT_DAYS, "D")
        # never two missing slots in a row, so a gap is at most 24 days and the network stays linked
        if rng.random() < missing_fraction and not (missing and missing[-1] == d - REPEAT_DAYS):
            missing.append(d)
        else:
            dates.append(d)
        slot += 1
    return np.array(dates, dtype="datetime64[D]"), np.array(missing, dtype="datetime64[D]")


def _connected(n: int, pairs: list[tuple[int, int]]) -> bool:
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for i, j in pairs:
        parent[find(i)] = find(j)
    return len({find(i) for i in range(n)}) == 1


def make_network(start_date: str | np.datetime64, n_epochs: int, rng: np.random.Generator, *,
                 min_neighbours: int = 3, max_neighbours: int = 5, missing_epoch_fraction: float = 0.08,
                 missing_pair_fraction: float = 0.04, bperp_std_m: float = 50.0) -> Network:
    """Draw the calendar, the pairs (each epoch to its next ``min..max`` epochs) and the baselines."""
    if not 1 <= min_neighbours <= max_neighbours:
        raise ConfigError(f"need 1 <= min_neighbours <= max_neighbours, got {min_neighbours}, {max_neighbours}")
    dates, missing = acquisition_dates(start_date, n_epochs, rng, missing_epoch_fraction)
    n = len(dates)
    n_fwd = rng.integers(min_neighbours, max_neighbours + 1, size=n)
    n_fwd = np.minimum(n_fwd, n - 1 - np.arange(n))
    drawn = [(i, j) for i in range(n) for j in range(i + 1, i + 1 + int(n_fwd[i]))]
    kept = list(drawn)
    dropped: list[tuple[int, int]] = []
    for p in drawn:
        if rng.random() < missing_pair_fraction:
            trial = [q for q in kept if q != p]
            if _connected(n, trial):
                kept, dropped = trial, dropped + [p]
    bperp = rng.normal(0.0, bperp_std_m, size=n)
    master = n // 2
    bperp = (bperp - bperp[master]).astype(np.float32)
    prim = np.array([p[0] for p in kept], dtype=np.int64)
    sec = np.array([p[1] for p in kept], dtype=np.int64)
    return Network(dates, prim, sec, n_fwd.astype(np.int64), missing, dropped, bperp, master)
