"""Cofactor matrices of the temporal noise and the functional model of a displacement series.

Conventions (Babaee et al. 2022, eqs. 3-6 and 13):

* epochs are given as ``datetime64`` or as days since an arbitrary origin (float64);
* the functional model (eq. 13) uses ``t`` in **years** (days / 365.25) counted from the first epoch;
* the cofactors use the lag ``tau = |t_k - t_l|`` in **days**; the AR(1) time-scale ``alpha`` is therefore
  in **1/day** (the paper's "most probable value of ~0.05" is per day: exp(-0.05 * 12 d) = 0.55);
* every cofactor is dimensionless; the variance component that multiplies it carries mm^2.

Every function returns a symmetric ``(date, date)`` float64 array.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
from scipy.linalg import toeplitz
from scipy.special import gammaln

from insarcloud.errors import InputArrayError

DAYS_PER_YEAR = 365.25

#: Built-in temporal noise components. ``flicker`` is eq. 6 (Zhang et al. 1997, as used by the paper);
#: ``flicker_powerlaw`` is the standard GNSS power-law form (Williams 2003, spectral index -1).
Component = Literal["white", "ar1", "flicker", "flicker_powerlaw"]


def epochs_to_days(dates: np.ndarray) -> np.ndarray:
    """Days since the first epoch.

    Parameters
    ----------
    dates : (date,) datetime64 or float
        Acquisition epochs; floats are taken as days already.

    Returns
    -------
    (date,) float64 days, first epoch = 0.
    """
    d = np.asarray(dates)
    if np.issubdtype(d.dtype, np.datetime64):
        days = (d - d[0]).astype("timedelta64[s]").astype(np.float64) / 86400.0
    else:
        days = d.astype(np.float64) - float(d[0])
    if days.ndim != 1 or days.size < 2:
        raise InputArrayError(f"need a 1-D array of at least 2 epochs, got shape {d.shape}")
    if np.any(np.diff(days) <= 0):
        raise InputArrayError("epochs must be strictly increasing")
    return days


def design_matrix(days: np.ndarray, model: Literal["linear", "seasonal"] = "seasonal") -> np.ndarray:
    """Functional model of eq. 13: ``y0 + v t + sum_k a_k cos(w_k t) + b_k sin(w_k t)``.

    Parameters
    ----------
    days : (date,) float64
        Days since the first epoch.
    model : {"seasonal", "linear"}
        ``seasonal`` = eq. 13 with annual and semi-annual terms (n = 6); ``linear`` = y0 + v t (n = 2).

    Returns
    -------
    A : (date, n) float64
        Columns ``[1, t, cos 2pi t, sin 2pi t, cos 4pi t, sin 4pi t]`` with t in years; column 1 is the
        velocity (mm/yr when y is mm).
    """
    t = np.asarray(days, dtype=np.float64) / DAYS_PER_YEAR
    cols = [np.ones_like(t), t]
    if model == "seasonal":
        for k in (1, 2):
            w = 2.0 * np.pi * k
            cols += [np.cos(w * t), np.sin(w * t)]
    elif model != "linear":
        raise InputArrayError(f"unknown functional model {model!r}; expected 'seasonal' or 'linear'")
    return np.column_stack(cols)


def _lags(days: np.ndarray) -> np.ndarray:
    d = np.asarray(days, dtype=np.float64)
    return np.abs(d[:, None] - d[None, :])


def white_cofactor(days: np.ndarray) -> np.ndarray:
    """Eq. 3: identity (1 at tau = 0, 0 elsewhere)."""
    return np.eye(np.asarray(days).size)


def ar1_cofactor(days: np.ndarray, alpha: float) -> np.ndarray:
    """Eq. 4: ``exp(-alpha tau)`` with tau in days and alpha in 1/day (> 0)."""
    if not alpha > 0:
        raise InputArrayError(f"AR(1) alpha must be > 0 (1/day), got {alpha}")
    return np.exp(-alpha * _lags(days))


def ar1_cofactor_dlogalpha(days: np.ndarray, alpha: float) -> np.ndarray:
    """Derivative of eq. 4 with respect to ln(alpha): ``-alpha tau exp(-alpha tau)`` (tau in days).

    Used to propagate alpha's uncertainty into the components' precision (joint Fisher information).
    """
    if not alpha > 0:
        raise InputArrayError(f"AR(1) alpha must be > 0 (1/day), got {alpha}")
    at = alpha * _lags(days)
    return -at * np.exp(-at)


def flicker_cofactor(days: np.ndarray) -> np.ndarray:
    """Eq. 6 (Zhang et al. 1997): 9/8 at tau = 0, ``9/8 (1 - (log2(tau) + 2) / 24)`` otherwise (tau in days).

    Lags below one day (sub-daily epochs) are clipped to one day so the logarithm stays finite.
    """
    tau = _lags(days)
    off = 9.0 / 8.0 * (1.0 - (np.log2(np.maximum(tau, 1.0)) + 2.0) / 24.0)
    return np.where(tau == 0, 9.0 / 8.0, off)


def powerlaw_cofactor(days: np.ndarray, kappa: float = -1.0, grid_days: float | None = None) -> np.ndarray:
    """Power-law noise cofactor by fractional integration (Hosking 1981; Williams 2003), GNSS standard form.

    ``Q = dT^(-kappa/2) T T^T`` where T is the lower-triangular Toeplitz matrix of
    ``psi_0 = 1, psi_k = psi_(k-1) (k - 1 - kappa/2) / k`` on a regular grid of step dT (years); rows and
    columns of the observed epochs are kept (irregular sampling = the process sampled at those epochs).

    Parameters
    ----------
    days : (date,) float64
    kappa : float
        Spectral index; -1 = flicker, -2 = random walk, 0 = white.
    grid_days : float, optional
        Grid step in days; default the greatest common divisor of the epoch offsets (>= 1 day), coarsened
        so that the grid has at most 4096 nodes (epochs then snap to the nearest node).
    """
    d = np.asarray(days, dtype=np.float64) - float(days[0])
    span = float(d[-1])
    if grid_days is None:
        g = float(np.gcd.reduce(np.round(d).astype(np.int64)))
        grid_days = max(g, 1.0, span / 4095.0)
    idx = np.round(d / grid_days).astype(np.int64)
    if np.unique(idx).size != idx.size:
        raise InputArrayError(f"grid step {grid_days} d merges distinct epochs; pass a smaller grid_days")
    n = int(idx[-1]) + 1
    k = np.arange(n, dtype=np.float64)
    # psi_k = Gamma(k - kappa/2) / (k! Gamma(-kappa/2)) via log-gamma (sign is + for -2 < kappa < 0)
    if kappa == 0:
        psi = np.zeros(n)
        psi[0] = 1.0
    else:
        psi = np.exp(gammaln(k - kappa / 2.0) - gammaln(k + 1.0) - gammaln(-kappa / 2.0))
    T = toeplitz(psi, np.zeros(n))[idx]
    scale = (grid_days / DAYS_PER_YEAR) ** (-kappa / 2.0)
    return scale * (T @ T.T)


class CofactorSet(NamedTuple):
    """Named temporal cofactors for one class.

    Attributes
    ----------
    names : tuple of str
        Component names, e.g. ("white", "flicker").
    Q : (p, date, date) float64
        The cofactor matrices, same order as ``names``.
    """

    names: tuple[str, ...]
    Q: np.ndarray


def build_cofactors(days: np.ndarray, components: tuple[str, ...], alpha: float | None = None,
                    user: dict[str, np.ndarray] | None = None) -> CofactorSet:
    """Stack the cofactors named in ``components``.

    Parameters
    ----------
    days : (date,) float64
    components : tuple of str
        Built-in names (:data:`Component`) or keys of ``user``.
    alpha : float, optional
        AR(1) time-scale in 1/day; required when "ar1" is in ``components``.
    user : dict of str -> (date, date) float64, optional
        User-supplied cofactors (symmetric, same epochs).
    """
    m = np.asarray(days).size
    mats = []
    for name in components:
        if user is not None and name in user:
            q = np.asarray(user[name], dtype=np.float64)
            if q.shape != (m, m) or not np.allclose(q, q.T):
                raise InputArrayError(f"user cofactor {name!r} must be symmetric ({m}, {m}), got {q.shape}")
        elif name == "white":
            q = white_cofactor(days)
        elif name == "ar1":
            if alpha is None:
                raise InputArrayError("component 'ar1' needs alpha (1/day)")
            q = ar1_cofactor(days, alpha)
        elif name == "flicker":
            q = flicker_cofactor(days)
        elif name == "flicker_powerlaw":
            q = powerlaw_cofactor(days, -1.0)
        else:
            raise InputArrayError(f"unknown noise component {name!r}")
        mats.append(q)
    return CofactorSet(tuple(components), np.stack(mats))
