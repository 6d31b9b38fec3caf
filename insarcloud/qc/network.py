"""Interferogram network: pair names, epochs and closed triplets (loops of three interferograms).

A triplet is three epochs ``i < j < k`` with all three pairs ``ij``, ``jk`` and ``ik`` present.
Its loop closure is ``unw[ij] + unw[jk] - unw[ik]`` (LiCSBAS ``make_loop_matrix``: +1, +1, -1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from insarcloud.core.pairs import closed_triplets, split_pair
from insarcloud.core.pairs import epochs as epochs  # re-exported: qc.dask_ops and qc.products take it from here
from insarcloud.errors import NetworkError


class Triplets(NamedTuple):
    """Closed triplets of a pair network.

    Attributes
    ----------
    ij, jk, ik : np.ndarray
        (triplet,) int64 indices into the pair list of the pairs (d_i, d_j), (d_j, d_k), (d_i, d_k).
    names : list[str]
        (triplet,) ``"YYYYMMDD_YYYYMMDD_YYYYMMDD"`` (the three epochs).
    n_pairs : int
        Number of pairs in the network the indices refer to.
    """

    ij: np.ndarray
    jk: np.ndarray
    ik: np.ndarray
    names: list[str]
    n_pairs: int

    @property
    def n_triplets(self) -> int:
        return int(self.ij.size)

    def loop_matrix(self) -> np.ndarray:
        """(triplet, pair) int8 matrix with +1 for ij and jk and -1 for ik (LiCSBAS ``Aloop``)."""
        a = np.zeros((self.n_triplets, self.n_pairs), dtype=np.int8)
        rows = np.arange(self.n_triplets)
        a[rows, self.ij] = 1
        a[rows, self.jk] = 1
        a[rows, self.ik] = -1
        return a

    def loops_per_pair(self) -> np.ndarray:
        """(pair,) int64 number of triplets each pair belongs to (0 = the pair is in no loop)."""
        return np.abs(self.loop_matrix()).sum(axis=0).astype(np.int64)


def find_triplets(pairs: Sequence[str]) -> Triplets:
    """All closed triplets of a pair list.

    Parameters
    ----------
    pairs : sequence of str
        (pair,) ``"YYYYMMDD_YYYYMMDD"`` names, primary earlier. Duplicates are refused.

    Returns
    -------
    Triplets
        Possibly empty (``n_triplets == 0``); :func:`require_triplets` turns that into an error.

    Examples
    --------
    >>> t = find_triplets(["20240106_20240118", "20240118_20240130", "20240106_20240130"])
    >>> t.names, t.ij.tolist(), t.jk.tolist(), t.ik.tolist()
    (['20240106_20240118_20240130'], [0], [1], [2])
    """
    keys = [split_pair(name) for name in pairs]
    seen: set[tuple[str, str]] = set()
    for name, key in zip(pairs, keys, strict=True):
        if key in seen:
            raise NetworkError(f"pair {name!r} appears twice in the network")
        seen.add(key)
    trip = closed_triplets([p for p, _ in keys], [s for _, s in keys])
    names = [f"{keys[a][0]}_{keys[a][1]}_{keys[b][1]}" for a, b, _ in trip.tolist()]
    return Triplets(
        np.ascontiguousarray(trip[:, 0]),
        np.ascontiguousarray(trip[:, 1]),
        np.ascontiguousarray(trip[:, 2]),
        names,
        len(keys),
    )


def require_triplets(pairs: Sequence[str]) -> Triplets:
    """:func:`find_triplets`, raising :class:`NetworkError` naming the network when it has no loop."""
    t = find_triplets(pairs)
    if t.n_triplets == 0:
        shown = ", ".join(list(pairs)[:6]) + (" ..." if len(pairs) > 6 else "")
        raise NetworkError(
            f"the network of {len(pairs)} pair(s) [{shown}] has no closed triplet (i<j<k with pairs ij, jk "
            "and ik all present): loop closure cannot be computed"
        )
    return t
