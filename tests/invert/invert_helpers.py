"""Small known-truth networks and signals for the inversion tests."""

from __future__ import annotations

import numpy as np

from insarcloud.invert.network import Network, build_network


def chain_network(n_date: int = 24, neighbours: int = 3, step_days: int = 12,
                  drop: tuple[tuple[int, int], ...] = ()) -> Network:
    """Each epoch paired with its next ``neighbours`` epochs; ``drop`` removes (i, j) pairs."""
    dates = np.datetime64("2020-01-05", "ns") + np.arange(n_date) * np.timedelta64(step_days, "D")
    pairs = [(i, i + j) for i in range(n_date) for j in range(1, neighbours + 1)
             if i + j < n_date and (i, i + j) not in drop]
    p, s = np.array(pairs).T
    return build_network(dates[p], dates[s])


def signal(net: Network, n_pix: int, rng: np.random.Generator, seasonal: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(date, pix) phase relative to the first date (linear + annual), and its (pair, pix) interferograms."""
    t = net.t_years
    v = rng.normal(0, 20, n_pix)
    a = rng.normal(0, 3, n_pix) if seasonal else np.zeros(n_pix)
    ph = rng.uniform(0, 2 * np.pi, n_pix)
    phi = v[None] * t[:, None] + a[None] * np.sin(2 * np.pi * t[:, None] + ph[None])
    phi -= phi[0]
    return phi, phi[net.secondary_idx] - phi[net.primary_idx]


def design(net: Network) -> np.ndarray:
    a = np.zeros((net.n_pair, net.n_date))
    a[np.arange(net.n_pair), net.primary_idx] = -1
    a[np.arange(net.n_pair), net.secondary_idx] = 1
    return a
