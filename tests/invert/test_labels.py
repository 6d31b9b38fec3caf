"""Per-pixel connectivity of the weighted solver (``sbas._labels``) against a graph search of every pixel.

``_labels`` takes a shortcut for pixels whose every epoch after the first has a used pair to an earlier epoch
(connected by induction: one component headed by epoch 0) and searches only the others; the labels must be
those of :func:`insarcloud.invert.network.epoch_components` run on each pixel's used pairs, whatever the mix.
"""

from __future__ import annotations

import numpy as np
import pytest

import insarcloud.invert.sbas as sbas
from insarcloud.invert.network import build_network, epoch_components

from .invert_helpers import chain_network


def _want(net, used: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    heads = np.empty((net.n_date, used.shape[1]), np.int64)
    deg = np.zeros((net.n_date, used.shape[1]), np.int64)
    for j in range(used.shape[1]):
        _, lab = epoch_components(net, used[:, j])
        heads[:, j] = np.unique(lab, return_index=True)[1][lab]
        np.add.at(deg[:, j], net.primary_idx[used[:, j]], 1)
        np.add.at(deg[:, j], net.secondary_idx[used[:, j]], 1)
    return heads, deg == 0


def _shuffled_network(rng: np.random.Generator, n_date: int = 30):
    """A chain network whose pairs are stored out of time order (the shortcut must not assume an order)."""
    dates = np.datetime64("2020-01-05", "ns") + np.arange(n_date) * np.timedelta64(12, "D")
    pairs = np.array([(i, i + j) for i in range(n_date) for j in range(1, 4) if i + j < n_date])
    pairs = pairs[rng.permutation(len(pairs))]
    return build_network(dates[pairs[:, 0]], dates[pairs[:, 1]])


@pytest.mark.parametrize("make", ["chain", "shuffled", "split"])
def test_labels_equal_a_graph_search_per_pixel(make):
    rng = np.random.default_rng(5)
    if make == "chain":
        net = chain_network(30, 3)
    elif make == "shuffled":
        net = _shuffled_network(rng)
    else:  # the full network itself has two components (no pair spans epochs 14 -> 15)
        net = chain_network(30, 3, drop=((12, 15), (13, 15), (13, 16), (14, 15), (14, 16), (14, 17)))
    n_pix = 600
    # most pixels miss a few pairs (closure weights 0: nearly always still connected), some miss many (split
    # networks, isolated epochs), some miss none, some miss all
    p_drop = np.r_[rng.uniform(0.0, 0.05, 300), rng.uniform(0.3, 0.9, 200), np.zeros(50), np.ones(50)]
    used = rng.uniform(size=(net.n_pair, n_pix)) >= p_drop
    heads, isolated = sbas._labels(net, used)
    want_heads, want_iso = _want(net, used)
    np.testing.assert_array_equal(heads, want_heads)
    np.testing.assert_array_equal(isolated, want_iso)
    # both branches ran: pixels taken by the shortcut (none when the network itself is split) and pixels searched
    chained = (heads == 0).all(axis=0) & ~used.all(axis=0)
    assert (chained.sum() > 100) == (make != "split") and (~(heads == 0).all(axis=0)).sum() > 100


def test_weighted_kernel_unchanged_by_the_shortcut(monkeypatch):
    """invert_pixels with the shortcut equals invert_pixels with every partial pixel searched (the code before
    it), bit for bit, on weights with scattered zeros as closure weights give."""
    rng = np.random.default_rng(8)
    net = chain_network(40, 4)
    t = net.t_years
    phi = rng.normal(0, 5, (1, 3000)) * t[:, None]
    unw = (phi[net.secondary_idx] - phi[net.primary_idx] + rng.normal(0, 0.3, (net.n_pair, 3000))).astype(np.float32)
    w = rng.uniform(0.2, 1.0, unw.shape).astype(np.float32)
    w[rng.uniform(size=w.shape) < 0.01] = 0.0
    w[:, :200][rng.uniform(size=(net.n_pair, 200)) < 0.5] = 0.0  # split networks
    new = sbas.invert_pixels(unw, w, net, gamma=1e-4)
    new0 = sbas.invert_pixels(unw, w, net, gamma=0.0)

    def search_all(net, used):  # _labels as it was: no shortcut
        return _labels_searching_all(net, used)

    monkeypatch.setattr(sbas, "_labels", search_all)
    old = sbas.invert_pixels(unw, w, net, gamma=1e-4)
    old0 = sbas.invert_pixels(unw, w, net, gamma=0.0)
    for a, b in ((new, old), (new0, old0)):
        for name, x, y in zip(a._fields, a, b, strict=True):
            np.testing.assert_array_equal(x, y, err_msg=name)


def _labels_searching_all(net, used: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sbas._labels`` of commit 84ac52d (every pixel that misses a pair goes to the graph search)."""
    from insarcloud.invert.linalg import pixel_components

    full = used.all(axis=0)
    heads = np.empty((net.n_date, used.shape[1]), np.int64)
    _, lab = epoch_components(net)
    heads[:] = np.unique(lab, return_index=True)[1][lab][:, None]
    part = np.flatnonzero(~full)
    if part.size:
        sub = used[:, part]
        packed = np.ascontiguousarray(np.packbits(sub, axis=0).T)
        uniq, first, inverse = np.unique(packed.view(f"V{packed.shape[1]}").ravel(), return_index=True,
                                         return_inverse=True)
        if uniq.size * 16 <= part.size:
            pat = np.empty((net.n_date, uniq.size), np.int64)
            for k, j in enumerate(first):
                _, lab_k = epoch_components(net, sub[:, j])
                pat[:, k] = np.unique(lab_k, return_index=True)[1][lab_k]
            heads[:, part] = pat[:, inverse.ravel()]
        else:
            heads[:, part] = pixel_components(net.primary_idx, net.secondary_idx, sub, net.n_date)
    degree = np.asarray(sbas._incidence(net, absolute=True) @ used[:, part].astype(np.float64)) if part.size else None
    isolated = np.zeros(heads.shape, bool)
    isolated[:, full] = (sbas._incidence(net, absolute=True) @ np.ones(net.n_pair) == 0)[:, None]
    if part.size:
        isolated[:, part] = degree == 0
    return heads, isolated


@pytest.mark.parametrize("floor", [0.0, 0.2, 1.0])
def test_quality_weights_equal_the_definition(floor):
    """quality_weights (in place on one copy) against its definition as written before (three ``np.where``):
    the same float32 bits, NaN/inf/negative/zero/above-one qualities included; the input is not modified."""
    from insarcloud.invert.weights import quality_weights

    rng = np.random.default_rng(3)
    q = rng.uniform(-0.5, 1.5, (40, 30, 30)).astype(np.float32)
    q.ravel()[rng.choice(q.size, 3000, replace=False)] = rng.choice(
        np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, 1.0], np.float32), 3000)
    before = q.copy()
    c = np.clip(q, 0.0, 1.0)
    want = np.where(np.isfinite(c), np.where(c > 0, np.maximum(c, np.float32(floor)), 0.0), 0.0).astype(np.float32)
    got = quality_weights(q, floor)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    np.testing.assert_array_equal(q.view(np.uint32), before.view(np.uint32))
    np.testing.assert_array_equal(quality_weights(q.astype(np.float64), floor), want)  # any input dtype
