"""insarcloud.core.phase: both wrapping conventions against np.angle and their laws."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from insarcloud.core.phase import wrap, wrap_angle


def test_known_values() -> None:
    x = np.array([0.0, np.pi, -np.pi, 3 * np.pi, 2 * np.pi, -0.5, np.nan])
    np.testing.assert_array_equal(wrap(x)[:-1], [0.0, -np.pi, -np.pi, -np.pi, 0.0, -0.5])
    np.testing.assert_array_equal(wrap_angle(x)[:-1], [0.0, np.pi, np.pi, np.pi, 0.0, -0.5])
    assert np.isnan(wrap(x)[-1]) and np.isnan(wrap_angle(x)[-1])


def test_float32_stays_float32() -> None:
    x = np.linspace(-20, 20, 101, dtype=np.float32)
    assert wrap(x).dtype == np.float32 and wrap_angle(x).dtype == np.float32


@settings(max_examples=80, deadline=None)
@given(arrays(np.float64, 16, elements=st.floats(-1e4, 1e4)))
def test_wrap_matches_np_angle_and_is_congruent(x: np.ndarray) -> None:
    w, a = wrap(x), wrap_angle(x)
    assert np.all((w >= -np.pi) & (w < np.pi)) and np.all((a > -np.pi) & (a <= np.pi))
    ref = np.angle(np.exp(1j * x))
    tol = 1e-9 * np.maximum(1.0, np.abs(x))  # the remainder of a large number loses its last bits
    np.testing.assert_array_less(np.abs(np.angle(np.exp(1j * (a - ref)))), tol + 1e-12)
    # an integer number of cycles apart from the input
    k = (x - w) / (2 * np.pi)
    np.testing.assert_allclose(k, np.round(k), atol=1e-6)
