from __future__ import annotations

import numpy as np
import pytest

from insarcloud.noise.cofactors import (
    ar1_cofactor,
    build_cofactors,
    design_matrix,
    epochs_to_days,
    flicker_cofactor,
    powerlaw_cofactor,
    white_cofactor,
)

DAYS = np.array([0.0, 12.0, 36.0])


def test_white_is_identity() -> None:
    np.testing.assert_array_equal(white_cofactor(DAYS), np.eye(3))


def test_ar1_hand_values() -> None:
    q = ar1_cofactor(DAYS, 0.05)
    # exp(-0.05*12), exp(-0.05*36), exp(-0.05*24) by hand
    np.testing.assert_allclose(q[0, 1], 0.548811636, rtol=1e-8)
    np.testing.assert_allclose(q[0, 2], 0.165298888, rtol=1e-8)
    np.testing.assert_allclose(q[1, 2], 0.301194212, rtol=1e-8)
    np.testing.assert_allclose(np.diag(q), 1.0)


def test_flicker_eq6_hand_values() -> None:
    q = flicker_cofactor(DAYS)
    # 9/8 (1 - (log2(tau) + 2)/24): tau=12 -> 1.125*(1-5.5849625/24); tau=36 -> 1.125*(1-7.169925/24)
    np.testing.assert_allclose(np.diag(q), 1.125)
    np.testing.assert_allclose(q[0, 1], 0.863204, atol=1e-6)
    np.testing.assert_allclose(q[0, 2], 0.788910, atol=1e-6)
    np.testing.assert_allclose(q[1, 2], 1.125 * (1 - (np.log2(24) + 2) / 24), rtol=1e-12)


def test_powerlaw_hand_values() -> None:
    d = np.array([0.0, 12.0, 24.0])
    q = powerlaw_cofactor(d, -1.0)
    # psi = 1, 1/2, 3/8 -> T T^T by hand, times (12 d in years)^(1/2)
    tt = np.array([[1.0, 0.5, 0.375], [0.5, 1.25, 0.6875], [0.375, 0.6875, 1.390625]])
    np.testing.assert_allclose(q, tt * np.sqrt(12 / 365.25), rtol=1e-12)
    # random walk (kappa=-2): min(i,j)+1 on the grid, times (dT)^1
    rw = powerlaw_cofactor(d, -2.0)
    np.testing.assert_allclose(rw, (np.minimum.outer(np.arange(3), np.arange(3)) + 1) * 12 / 365.25, rtol=1e-12)
    # irregular epochs sample the regular-grid process
    q_irr = powerlaw_cofactor(np.array([0.0, 24.0]), -1.0, grid_days=12.0)
    np.testing.assert_allclose(q_irr, q[np.ix_([0, 2], [0, 2])], rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cofactors_spd_on_irregular_epochs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    d = np.cumsum(np.r_[0, rng.choice([6, 12, 24, 36, 48], size=80)]).astype(float)
    for q in (white_cofactor(d), ar1_cofactor(d, 0.05), ar1_cofactor(d, 0.005), flicker_cofactor(d),
              powerlaw_cofactor(d)):
        np.testing.assert_allclose(q, q.T)
        assert np.linalg.eigvalsh(q).min() > 1e-6


def test_design_matrix_eq13() -> None:
    d = np.array([0.0, 365.25 / 4, 365.25 / 2])
    a = design_matrix(d)
    np.testing.assert_allclose(a[1], [1, 0.25, 0, 1, -1, 0], atol=1e-12)
    assert design_matrix(d, "linear").shape == (3, 2)


def test_epochs_and_user_cofactor_errors() -> None:
    dates = np.array(["2020-01-01", "2020-01-13"], dtype="datetime64[ns]")
    np.testing.assert_allclose(epochs_to_days(dates), [0, 12])
    with pytest.raises(ValueError, match="strictly increasing"):
        epochs_to_days(np.array([0.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="user cofactor 'bad'"):
        build_cofactors(DAYS, ("bad",), user={"bad": np.ones((2, 2))})
    with pytest.raises(ValueError, match="alpha"):
        build_cofactors(DAYS, ("ar1",))
    cs = build_cofactors(DAYS, ("white", "mine"), user={"mine": np.eye(3) * 2})
    assert cs.names == ("white", "mine") and cs.Q.shape == (2, 3, 3)
