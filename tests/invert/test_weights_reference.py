from __future__ import annotations

import numpy as np
import pytest

from insarcloud.errors import InputArrayError
from insarcloud.invert.reference import choose_reference
from insarcloud.invert.weights import coherence_weights, quality_weights, variable_weights


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
