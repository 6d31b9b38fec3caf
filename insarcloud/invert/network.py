"""Interferogram network analysis: epochs, design matrices, connectivity, gaps.

Pure numpy/scipy; the pair list is all it needs. Dates are indexed in time order; pair ``i`` is
``(primary_idx[i], secondary_idx[i])`` with ``primary_idx < secondary_idx`` and
``unw[i] = phase(secondary) - phase(primary)`` (notes/CONTRACT.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from insarcloud.errors import NetworkError

DAYS_PER_YEAR = 365.25


class Network(NamedTuple):
    """An interferogram network (independent of pixels).

    Attributes
    ----------
    dates : (date,) datetime64[ns], sorted, every epoch in a pair.
    primary_idx, secondary_idx : (pair,) int64 indices into ``dates``.
    t_years : (date,) float64, years since the first date (days / 365.25).
    bandwidth : int, max(secondary_idx - primary_idx): half-bandwidth of the normal matrix.
    """

    dates: np.ndarray
    primary_idx: np.ndarray
    secondary_idx: np.ndarray
    t_years: np.ndarray
    bandwidth: int

    @property
    def n_pair(self) -> int:
        return int(self.primary_idx.size)

    @property
    def n_date(self) -> int:
        return int(self.dates.size)


class NetworkReport(NamedTuple):
    """What the pair network supports (see :func:`analyse_network`).

    Attributes
    ----------
    n_pair, n_date : int
    n_components : int, connected components of the epoch graph (1 = connected).
    component : (date,) int64, component label per epoch (0 = component of the first date).
    ifgs_per_epoch : (date,) int64, interferograms touching each epoch.
    gaps : list of (date_before, date_after) datetime64 pairs: consecutive epochs that no interferogram
        spans (the time series cannot be tied across them without a temporal model).
    design_increments : (pair, date-1) int8, SBAS design matrix of the epoch increments
        (1 between primary and secondary, LiCSBAS ``Gall``).
    design_epochs : (pair, date) int8, -1 at the primary, +1 at the secondary (MintPy ``A`` before
        dropping the reference date).
    """

    n_pair: int
    n_date: int
    n_components: int
    component: np.ndarray
    ifgs_per_epoch: np.ndarray
    gaps: list[tuple[np.datetime64, np.datetime64]]
    design_increments: np.ndarray
    design_epochs: np.ndarray

    def summary(self) -> str:
        """A human-readable report, explicit about splits and gaps."""
        lines = [f"network: {self.n_pair} interferograms, {self.n_date} epochs, "
                 f"{self.n_components} connected component(s)"]
        if self.n_components > 1:
            for c in range(self.n_components):
                idx = np.flatnonzero(self.component == c)
                lines.append(f"  component {c}: {idx.size} epochs, epoch index {idx[0]}..{idx[-1]}")
            lines.append("  the network is SPLIT: use NSBAS (gamma > 0) to tie the components with a "
                         "linear model, or get per-component series (gamma = 0)")
        for a, b in self.gaps:
            lines.append(f"  gap: no interferogram spans {str(a)[:10]} -> {str(b)[:10]}")
        weak = np.flatnonzero(self.ifgs_per_epoch < 2)
        if weak.size:
            lines.append(f"  {weak.size} epoch(s) in fewer than 2 interferograms (no redundancy)")
        return "\n".join(lines)


def build_network(primary: Sequence | np.ndarray, secondary: Sequence | np.ndarray) -> Network:
    """Index a pair list on its sorted epochs.

    Parameters
    ----------
    primary, secondary : (pair,) datetime64-like; primary earlier than secondary.

    Raises
    ------
    NetworkError
        Empty pair list, a pair whose primary is not earlier than its secondary, or a duplicate pair.
    """
    prim = np.asarray(primary, dtype="datetime64[ns]")
    sec = np.asarray(secondary, dtype="datetime64[ns]")
    if prim.ndim != 1 or prim.shape != sec.shape:
        raise NetworkError(f"primary {prim.shape} and secondary {sec.shape} must be equal 1-D arrays")
    if prim.size == 0:
        raise NetworkError("the pair list is empty: nothing to invert")
    bad = np.flatnonzero(prim >= sec)
    if bad.size:
        i = int(bad[0])
        raise NetworkError(f"pair {i} ({str(prim[i])[:10]}_{str(sec[i])[:10]}): primary must precede secondary")
    dates = np.unique(np.concatenate([prim, sec]))
    pi = np.searchsorted(dates, prim)
    si = np.searchsorted(dates, sec)
    key = pi * dates.size + si
    uniq, counts = np.unique(key, return_counts=True)
    if (counts > 1).any():
        k = int(uniq[np.argmax(counts > 1)])
        raise NetworkError(f"duplicate pair {str(dates[k // dates.size])[:10]}_{str(dates[k % dates.size])[:10]}")
    days = (dates - dates[0]) / np.timedelta64(1, "D")
    return Network(dates, pi.astype(np.int64), si.astype(np.int64), days / DAYS_PER_YEAR,
                   int((si - pi).max()))


def design_increments(net: Network) -> np.ndarray:
    """(pair, date-1) int8: 1 for every increment between primary and secondary (LiCSBAS ``Gall``)."""
    g = np.zeros((net.n_pair, net.n_date - 1), dtype=np.int8)
    cols = np.arange(net.n_date - 1)
    g[(cols >= net.primary_idx[:, None]) & (cols < net.secondary_idx[:, None])] = 1
    return g


def design_epochs(net: Network) -> np.ndarray:
    """(pair, date) int8: -1 at the primary epoch, +1 at the secondary epoch."""
    a = np.zeros((net.n_pair, net.n_date), dtype=np.int8)
    rows = np.arange(net.n_pair)
    a[rows, net.primary_idx] = -1
    a[rows, net.secondary_idx] = 1
    return a


def epoch_components(net: Network, used: np.ndarray | None = None) -> tuple[int, np.ndarray]:
    """Connected components of the epoch graph (edges = used pairs).

    Labels are renumbered in order of their first epoch, so label 0 holds the first date.
    """
    used = np.ones(net.n_pair, bool) if used is None else np.asarray(used, bool)
    adj = sp.coo_matrix((np.ones(int(used.sum())), (net.primary_idx[used], net.secondary_idx[used])),
                        shape=(net.n_date, net.n_date))
    n, lab = connected_components(adj, directed=False)
    _, first = np.unique(lab, return_index=True)
    order = np.argsort(np.argsort(first))  # old label -> rank of its first epoch
    return int(n), order[lab].astype(np.int64)


def analyse_network(net: Network) -> NetworkReport:
    """Components, interferograms per epoch, gaps and both design matrices of ``net``."""
    n_comp, comp = epoch_components(net)
    per_epoch = np.bincount(net.primary_idx, minlength=net.n_date) + np.bincount(
        net.secondary_idx, minlength=net.n_date)
    g = design_increments(net)
    spanned = g.any(axis=0)  # increment k (date k -> k+1) covered by at least one pair
    gaps = [(net.dates[k], net.dates[k + 1]) for k in np.flatnonzero(~spanned)]
    return NetworkReport(net.n_pair, net.n_date, n_comp, comp, per_epoch.astype(np.int64), gaps, g,
                         design_epochs(net))
