from __future__ import annotations

import numpy as np
import pytest

from insarcloud.errors import InputArrayError
from insarcloud.invert.reference import choose_reference
from insarcloud.invert.weights import QUALITY_FLOOR, coherence_weights, quality_weights, variable_weights


def test_coherence_weights_match_licsbas_variance():
    coh = np.array([0.0, 0.01, 0.5, 0.99, 1.0, np.nan])
    w = coherence_weights(coh)
    c = np.clip(coh[:5], 0.01, 0.99)
    np.testing.assert_allclose(w[:5], 1 / ((1 - c**2) / (2 * c**2)), rtol=1e-5)
    assert w[5] == 0 and w[0] == w[1] and w[4] == w[3]
    assert w[2] == pytest.approx(2 * 0.25 / 0.75, rel=1e-6)


def test_quality_and_variable_weights():
    np.testing.assert_array_equal(quality_weights(np.array([-1, 0.5, 2, np.nan])), [0, 0.5, 1, 0])
    np.testing.assert_array_equal(variable_weights(np.array([0, 3.0, np.nan])), [0, 3, 0])
    with pytest.raises(InputArrayError, match="'myw'"):
        variable_weights(np.array([1.0, -2.0]), "myw")


def test_quality_weights_floor():
    q = np.array([[0.0, 1e-3, 0.1, 0.2, 0.7, 1.0, np.nan, -0.5]], np.float32)
    # default: a positive quality keeps at least QUALITY_FLOOR; 0 (no data in the qc stage), NaN, < 0 -> 0
    f = QUALITY_FLOOR
    np.testing.assert_allclose(quality_weights(q), [[0, f, max(0.1, f), max(0.2, f), 0.7, 1, 0, 0]], rtol=1e-6)
    # floor 0 = the linear (paper-literal) mapping; floor 1 = every usable pixel-pair equal
    np.testing.assert_allclose(quality_weights(q, floor=0.0), [[0, 1e-3, 0.1, 0.2, 0.7, 1, 0, 0]], rtol=1e-6)
    np.testing.assert_array_equal(quality_weights(q, floor=1.0), [[0, 1, 1, 1, 1, 1, 0, 0]])
    assert quality_weights(q).dtype == np.float32 and quality_weights(q).shape == q.shape
    with pytest.raises(InputArrayError, match="floor"):
        quality_weights(q, floor=1.5)


def test_quality_floor_bounds_downweighting_of_clean_pairs():
    """Known truth: a pixel's clean long pairs have a low (decorrelation) quality, and one pair has a
    2 pi unwrapping error with the same low quality (what the packaged ConvNeXt gives there). The floor
    keeps the clean long pairs in the solve, so the velocity error is smaller than with linear weights."""
    from insarcloud.invert.network import build_network
    from insarcloud.invert.sbas import invert_pixels

    rng = np.random.default_rng(3)
    n_date = 16
    dates = np.datetime64("2020-01-01", "ns") + np.arange(n_date) * np.timedelta64(12, "D")
    pairs = [(i, i + j) for i in range(n_date) for j in (1, 2, 3, 4) if i + j < n_date]
    p, s = np.array(pairs).T
    net = build_network(dates[p], dates[s])
    v = 20.0  # rad/yr
    n_pix = 400
    # noise: short pairs noisy (atmosphere-like, per pair), long pairs as noisy: the long pairs carry the rate
    unw = v * (net.t_years[s] - net.t_years[p])[:, None] + rng.normal(0, 0.8, (len(p), n_pix))
    span = (s - p)[:, None] * np.ones((1, n_pix))
    q = np.where(span >= 3, 0.05, 0.9)  # long pairs decorrelated -> low quality, yet clean
    bad = rng.integers(0, len(p), n_pix)
    unw[bad, np.arange(n_pix)] += 2 * np.pi
    q[bad, np.arange(n_pix)] = 0.05
    err = {}
    for name, w in (("linear", quality_weights(q, floor=0.0)), ("floor", quality_weights(q))):
        vel = invert_pixels(unw, w, net, gamma=1e-4).velocity
        err[name] = float(np.sqrt(np.mean((vel - v) ** 2)))
    assert err["floor"] < 0.9 * err["linear"], err


def test_reference_prefers_complete_high_coherence_area():
    n_valid = np.full((20, 20), 10)
    coh = np.full((20, 20), 0.3)
    coh[2:7, 2:7] = 0.8           # a coherent area ...
    coh[15, 15] = 0.99            # ... beats an isolated bright pixel
    ref = choose_reference(n_valid, coh)
    assert (2 <= ref.y <= 6) and (2 <= ref.x <= 6) and ref.n_valid == 10
    n_valid[2:7, 2:7] = 9         # but only pixels with every pair qualify
    ref = choose_reference(n_valid, coh)
    assert not ((2 <= ref.y <= 6) and (2 <= ref.x <= 6))
    with pytest.raises(InputArrayError):
        choose_reference(np.zeros((3, 3), int), coh[:3, :3])
