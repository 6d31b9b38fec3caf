"""Interferogram pair names <-> dates, and the closed triplets (loops of three pairs) of a network.

A LiCSAR pair is named ``YYYYMMDD_YYYYMMDD``: primary (earlier) then secondary acquisition date, UTC days.
These are the one definition of that convention; io, qc, invert, simulate and the pipelines import them.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from insarcloud.errors import PairNameError

__all__ = [
    "PAIR_RE",
    "closed_triplets",
    "epochs",
    "pair_dates",
    "pair_name",
    "pair_names",
    "pair_problem",
    "pair_timestamps",
    "split_pair",
]

#: ``YYYYMMDD_YYYYMMDD``; groups 1 and 2 are the primary and secondary dates. A match is not yet a valid pair
#: (``20241340`` matches): :func:`pair_problem` says whether it is.
PAIR_RE = re.compile(r"^(\d{8})_(\d{8})$")


def pair_problem(name: str) -> str | None:
    """Why ``name`` is not a pair name (not ``YYYYMMDD_YYYYMMDD``, an impossible date, primary not before
    secondary), or None when it is one.

    >>> pair_problem("20240106_20240118") is None
    True
    >>> pair_problem("20240118_20240106")
    'primary date 20240118 is not earlier than secondary 20240106'
    """
    m = PAIR_RE.match(str(name))
    if not m:
        return "not YYYYMMDD_YYYYMMDD"
    for d in m.groups():
        try:
            _dt.datetime.strptime(d, "%Y%m%d")
        except ValueError:
            return f"{d} is not a date"
    if m.group(1) >= m.group(2):
        return f"primary date {m.group(1)} is not earlier than secondary {m.group(2)}"
    return None


def split_pair(name: str) -> tuple[str, str]:
    """``"YYYYMMDD_YYYYMMDD"`` -> (primary, secondary) date strings.

    Raises
    ------
    PairNameError
        Naming the pair and what is wrong with it (:func:`pair_problem`).

    >>> split_pair("20240106_20240118")
    ('20240106', '20240118')
    """
    why = pair_problem(name)
    if why is not None:
        raise PairNameError(f"pair name {name!r}: {why}")
    a, b = str(name).split("_")
    return a, b


def pair_timestamps(name: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(primary, secondary) of a pair name as ``pd.Timestamp`` (midnight, naive: the cube's ``date`` axis)."""
    a, b = split_pair(name)
    return pd.Timestamp(a), pd.Timestamp(b)


def pair_dates(pairs: Sequence[str]) -> tuple[pd.DatetimeIndex, pd.DatetimeIndex]:
    """(primary, secondary) ``DatetimeIndex`` of a pair list, in its order; every name is validated."""
    split = [split_pair(p) for p in pairs]
    prim = pd.to_datetime([a for a, _ in split], format="%Y%m%d")
    sec = pd.to_datetime([b for _, b in split], format="%Y%m%d")
    return prim, sec


def pair_name(primary: Any, secondary: Any) -> str:
    """The pair name of two dates (anything ``pd.Timestamp`` takes).

    >>> pair_name("2024-01-06", np.datetime64("2024-01-18"))
    '20240106_20240118'
    """
    return f"{pd.Timestamp(primary):%Y%m%d}_{pd.Timestamp(secondary):%Y%m%d}"


def pair_names(dates: np.ndarray, primary: np.ndarray, secondary: np.ndarray) -> list[str]:
    """Pair names of a network given as (date,) dates and (pair,) int indices of primary and secondary."""
    s = [str(d).replace("-", "") for d in np.asarray(dates, dtype="datetime64[D]")]
    return [f"{s[i]}_{s[j]}" for i, j in zip(primary, secondary, strict=True)]


def epochs(pairs: Sequence[str]) -> list[str]:
    """Sorted unique epochs (``YYYYMMDD``) of a pair list; every name is validated."""
    out: set[str] = set()
    for name in pairs:
        out.update(split_pair(name))
    return sorted(out)


def closed_triplets(primary: Sequence[Hashable], secondary: Sequence[Hashable]) -> np.ndarray:
    """(loop, 3) int64 pair indices ``(ij, jk, ik)`` of every closed triplet of a network.

    Parameters
    ----------
    primary, secondary : sequences of (pair,) sortable epoch keys (date strings, epoch indices, datetimes),
        primary earlier than secondary; each (primary, secondary) appears once (the caller checks).

    Returns
    -------
    (loop, 3) int64 array: for epochs ``i < j < k`` with all three pairs present, the indices of pairs
    ``(i, j)``, ``(j, k)`` and ``(i, k)``; rows ordered by ``(i, j, k)`` (LiCSBAS ``make_loop_matrix``).

    >>> closed_triplets(["a", "b", "a"], ["b", "c", "c"]).tolist()
    [[0, 1, 2]]
    """
    index = {(p, s): n for n, (p, s) in enumerate(zip(primary, secondary, strict=True))}
    by_primary: dict[Hashable, list[Hashable]] = {}
    for p, s in index:
        by_primary.setdefault(p, []).append(s)
    rows = []
    for di in sorted(by_primary):  # type: ignore[type-var]
        for dj in sorted(by_primary[di]):  # type: ignore[type-var]
            for dk in sorted(by_primary.get(dj, [])):  # type: ignore[type-var]
                if (di, dk) in index:
                    rows.append((index[(di, dj)], index[(dj, dk)], index[(di, dk)]))
    return np.array(rows, dtype=np.int64).reshape(-1, 3)
