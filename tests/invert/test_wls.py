"""The weighted (banded) inversion against a straightforward per-pixel weighted ``np.linalg.lstsq``.

Random network (pairs up to 4 epochs apart, some skipped), random weights (some zero, one NaN), random
holes in the data; several solver blocks (``WLS_BLOCK`` lowered). Every output of ``invert_pixels`` is
recomputed pixel by pixel from its definition: tolerance 1e-8 rad (1e-9 relative) on series up to ~60 rad.
"""

from __future__ import annotations

import numpy as np
import pytest

import insarcloud.invert.sbas as sbas
from insarcloud.invert.linalg import pixel_components
from insarcloud.invert.network import build_network, epoch_components
from insarcloud.invert.sbas import invert_pixels

from .invert_helpers import design, signal

ATOL, RTOL = 1e-8, 1e-9


def _random_network(rng: np.random.Generator, n_date: int = 22):
    dates = np.datetime64("2020-01-05", "ns") + np.cumsum(rng.integers(6, 25, n_date)) * np.timedelta64(1, "D")
    pairs = [(i, i + j) for i in range(n_date) for j in range(1, 5)
             if i + j < n_date and (j == 1 or rng.uniform() < 0.6)]
    p, s = np.array(pairs).T
    return build_network(dates[p], dates[s])


def _reference(unw: np.ndarray, w: np.ndarray, net, gamma: float) -> dict[str, np.ndarray]:
    """Per pixel: weighted LS of the used pairs (sqrt-weighted rows; NSBAS adds LiCSBAS's unit-weight rows
    gamma (phi_k - v t_k - c) = 0), velocity = LS slope of the series, its std = sqrt(sigma0^2 h^T C h)
    with C the (phi, phi) block of the normal matrix's inverse and sigma0^2 = sum(w r^2) / (n_used - (date - 1))."""
    a = design(net)[:, 1:]
    n, t = net.n_date, net.t_years
    tc = t - t.mean()
    h = (tc / (tc @ tc))[1:]  # phi_0 = 0
    out = {k: np.full(unw.shape[1], np.nan) for k in ("velocity", "velocity_std", "residual_rms")}
    out["displacement"] = np.full((n, unw.shape[1]), np.nan)
    for j in range(unw.shape[1]):
        ok = np.isfinite(unw[:, j]) & (w[:, j] > 0)
        sw = np.sqrt(w[ok, j])
        g, rhs = a[ok] * sw[:, None], unw[ok, j] * sw
        if gamma > 0:
            g = np.vstack([np.hstack([g, np.zeros((ok.sum(), 2))]),
                           np.hstack([gamma * np.eye(n)[:, 1:], -gamma * t[:, None], -gamma * np.ones((n, 1))])])
            rhs = np.r_[rhs, np.zeros(n)]
        x = np.linalg.lstsq(g, rhs, rcond=None)[0]
        phi = np.r_[0.0, x[: n - 1]]
        r = unw[ok, j] - a[ok] @ phi[1:]
        cov = np.linalg.inv(g.T @ g)[: n - 1, : n - 1]
        out["displacement"][:, j] = phi
        out["velocity"][j] = h @ phi[1:]
        out["residual_rms"][j] = np.sqrt(np.mean(r * r))
        out["velocity_std"][j] = np.sqrt((w[ok, j] * r * r).sum() / (ok.sum() - (n - 1)) * (h @ cov @ h))
    return out


@pytest.mark.parametrize("gamma", [0.0, 1e-4])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_weighted_solver_equals_per_pixel_lstsq(gamma, dtype, monkeypatch):
    rng = np.random.default_rng(21)
    net = _random_network(rng)
    phi, unw = signal(net, 300, rng)
    unw = (unw + rng.normal(0, 0.5, unw.shape)).astype(dtype)
    unw[rng.uniform(size=unw.shape) < 0.08] = np.nan
    w = rng.uniform(0.02, 2.0, unw.shape)
    w[rng.uniform(size=w.shape) < 0.05] = 0.0
    w[0, 7] = np.nan  # NaN weight = unused
    monkeypatch.setattr(sbas, "WLS_BLOCK", 64)  # several blocks
    res = invert_pixels(unw, w, net, gamma=gamma)
    ww = np.where(np.isfinite(w), w, 0.0)
    used = np.isfinite(unw) & (ww > 0)
    np.testing.assert_array_equal(res.n_pairs_used, used.sum(axis=0))
    # compare where the reference is well defined: connected networks without isolated epochs
    # (gamma = 0 solves each component on its own, checked in test_sbas) and redundancy for the std
    ok = (res.n_components == 1) & (res.component >= 0).all(axis=0) & (used.sum(axis=0) >= net.n_date)
    assert ok.sum() > 150
    ref = _reference(unw[:, ok].astype(np.float64), ww[:, ok], net, gamma)
    atol = ATOL if dtype == np.float64 else 1e-5 * np.abs(phi).max()  # float32 outputs
    rtol = RTOL if dtype == np.float64 else 1e-5
    for name, want in ref.items():
        got = getattr(res, name)[..., ok]
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=name)


def test_pixel_components_equal_epoch_components_per_pixel():
    rng = np.random.default_rng(22)
    net = _random_network(rng, 15)
    used = rng.uniform(size=(net.n_pair, 400)) < rng.uniform(0.2, 1.0, 400)
    heads = pixel_components(net.primary_idx, net.secondary_idx, used, net.n_date)
    for j in range(used.shape[1]):
        _, lab = epoch_components(net, used[:, j])
        np.testing.assert_array_equal(heads[:, j], np.unique(lab, return_index=True)[1][lab])
    assert len({tuple(c) for c in heads.T}) > 50  # many distinct partitions were checked
