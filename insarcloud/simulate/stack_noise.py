"""Interferogram noise from one simulated SLC stack: pairs that share an epoch share its noise (numpy).

Drawing each pair's noise independently (``decorrelation.draw_phase_noise``) gets every marginal pdf
right but not the joint one: real interferograms are made from common SLCs, so the closure phase
psi_12 + psi_23 - psi_13 of a triplet is small -- nonzero only through multilooking -- while three
independent draws give a closure as noisy as three interferograms. Here each pixel's L looks of every
epoch are drawn as a sum of circular-Gaussian scattering components, and the interferograms are the
L-look sums of s_j conj(s_i):

    s_k = sqrt(THERMAL) * (a_k g_k + b_k c_k) + sqrt(1 - THERMAL) * e_k           (E|s_k|^2 = 1)
    g_k = sqrt(gamma_inf) P + sqrt(gamma_0 - gamma_inf) U_k + sqrt(1 - gamma_0) E_k   (the ground)

P is a persistent scatterer (same every epoch), U an AR(1) process with corr(U_i, U_j) = exp(-I(t_i, t_j)),
I the integrated decorrelation rate of ``decorrelation`` (winter/summer tau per land-cover class), E and
e independent per epoch. On snow-covered dates a_k = SNOW_ONE (0.2) and b_k = sqrt(1 - a_k^2): the
signal is mostly the snow pack c_k, an AR(1) with an 11-day memory inside one snow episode and a fresh
draw at the next. The true coherence of pair (i, j) is then
exactly

    gamma_ij = THERMAL * (a_i a_j [gamma_inf + (gamma_0 - gamma_inf) exp(-I_ij)] + b_i b_j rho_snow_ij),

the same temporal and snow model as the pairwise path (one snowy epoch keeps 20 %), and every single
pair's phase still follows the exact L-look pdf of its gamma_ij. Baseline decorrelation (< 4 % for
|B_perp| < 200 m) is left out of this path.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from insarcloud.errors import ConfigError

from .decorrelation import CLASS_PARAMS, SNOW_ONE, THERMAL, interval_weights

__all__ = ["SNOW_MEMORY_DAYS", "StackNoise", "stack_noise"]

SNOW_MEMORY_DAYS = 11.0


class StackNoise(NamedTuple):
    """Noise of every pair of a stack.

    Fields
    ------
    phase : ndarray (pair, y, x), float32, rad, noise phase angle(sum_l s_j conj(s_i))
    coherence_est : ndarray (pair, y, x), float32, L-look sample coherence
    coherence : ndarray (pair, y, x), float32, true coherence gamma_ij of the model
    """

    phase: np.ndarray
    coherence_est: np.ndarray
    coherence: np.ndarray


def _cn(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Circular complex Gaussian CN(0, 1), complex64."""
    z = rng.standard_normal((*shape, 2), dtype=np.float32)
    z *= np.float32(np.sqrt(0.5))
    return z.view(np.complex64)[..., 0]  # (re, im) pairs reinterpreted in place: no complex128 detour


def stack_noise(
    landcover: np.ndarray, snow: np.ndarray, dates: np.ndarray, primary: np.ndarray, secondary: np.ndarray,
    looks: int, rng: np.random.Generator, texture: np.ndarray | None = None, row_block: int = 32,
) -> StackNoise:
    """Draw the SLC stack looks block by block and form every pair's noise and coherence.

    Parameters
    ----------
    landcover : ndarray (y, x), uint8, classes of dem.LANDCOVER_CLASSES
    snow : ndarray (date, y, x), bool
    dates : ndarray (date,), datetime64[D]
    primary, secondary : ndarray (pair,), int, epoch indices
    looks : int >= 2, independent looks per pixel
    rng : numpy.random.Generator
    texture : ndarray (y, x), optional multiplier of gamma_0 and gamma_inf (static coherence texture)
    row_block : int, rows per block (memory ~ date * looks * row_block * x * 8 bytes)

    Returns
    -------
    StackNoise
    """
    looks = int(round(looks))
    if looks < 2:
        raise ConfigError(f"looks must be >= 2, got {looks}")
    nd, ny, nx = snow.shape
    if landcover.shape != (ny, nx) or len(dates) != nd:
        raise ConfigError(f"landcover {landcover.shape}, snow {snow.shape} and {len(dates)} dates disagree")
    npair = len(primary)
    classes = sorted(CLASS_PARAMS)
    g0_c = np.array([CLASS_PARAMS[c].gamma0 for c in classes])
    gi_c = np.array([CLASS_PARAMS[c].gamma_inf for c in classes])
    # integrated decorrelation I (per class) from the first date to each date
    integ = np.zeros((nd, len(classes)))
    for k in range(1, nd):
        ws, ww = interval_weights(dates[k - 1], dates[k])
        integ[k] = integ[k - 1] + [ws / CLASS_PARAMS[c].tau_summer_d + ww / CLASS_PARAMS[c].tau_winter_d
                                   for c in classes]
    days = (np.asarray(dates, dtype="datetime64[D]") - np.datetime64(dates[0], "D")).astype(np.float64)

    out_ph = np.empty((npair, ny, nx), np.float32)
    out_ce = np.empty((npair, ny, nx), np.float32)
    out_g = np.empty((npair, ny, nx), np.float32)
    sq_t = np.float32(np.sqrt(THERMAL))
    for r0 in range(0, ny, row_block):
        r1 = min(ny, r0 + row_block)
        lc = landcover[r0:r1].ravel()
        npx = lc.size
        tex = np.ones(npx) if texture is None else texture[r0:r1].ravel().astype(np.float64)
        g0 = np.clip(g0_c[lc] * tex, 0.0, 0.97)
        gi = np.minimum(np.clip(gi_c[lc] * tex, 0.0, 0.97), g0)
        sn = snow[:, r0:r1].reshape(nd, npx)
        a = np.where(sn, SNOW_ONE, 1.0)  # (date, px)
        b = np.sqrt(1.0 - a**2)
        ip = integ[:, lc]  # (date, px)
        # snow episode id: increments whenever snow appears after a snow-free date
        start = sn & np.vstack([np.ones((1, npx), bool), ~sn[:-1]])
        episode = np.cumsum(start, axis=0)

        pers = _cn(rng, (looks, npx)) * np.sqrt(gi).astype(np.float32)
        w_u = np.sqrt(g0 - gi).astype(np.float32)
        slc = np.empty((nd, looks, npx), np.complex64)
        u = _cn(rng, (looks, npx))
        c = np.zeros((looks, npx), np.complex64)
        for k in range(nd):
            if k > 0:
                rho = np.exp(-(ip[k] - ip[k - 1])).astype(np.float32)
                u = rho * u + np.sqrt(1.0 - rho**2) * _cn(rng, (looks, npx))
            if sn[k].any():  # the snow pack only matters where there is snow
                fresh = _cn(rng, (looks, npx))
                if k > 0:
                    rs = np.float32(np.exp(-(days[k] - days[k - 1]) / SNOW_MEMORY_DAYS))
                    c = np.where(sn[k - 1] & sn[k], rs * c + np.sqrt(1.0 - rs**2) * fresh, fresh)
                else:
                    c = fresh
            ak = a[k].astype(np.float32)
            # ground's own per-epoch part sqrt(1 - g0) E and the thermal part e are independent: one draw
            w_ind = np.sqrt(THERMAL * ak**2 * (1.0 - g0) + (1.0 - THERMAL)).astype(np.float32)
            slc[k] = sq_t * (ak * (pers + w_u * u) + b[k].astype(np.float32) * c) + w_ind * _cn(rng, (looks, npx))
        power = np.sum(np.abs(slc) ** 2, axis=1)  # (date, px)
        for p, (i, j) in enumerate(zip(primary, secondary, strict=True)):
            z = np.sum(slc[j] * np.conj(slc[i]), axis=0)
            out_ph[p, r0:r1] = np.angle(z).reshape(r1 - r0, nx)
            out_ce[p, r0:r1] = (np.abs(z) / np.sqrt(power[i] * power[j])).reshape(r1 - r0, nx)
            same = sn[i] & sn[j] & (episode[i] == episode[j])
            rho_s = np.where(same, np.exp(-(days[j] - days[i]) / SNOW_MEMORY_DAYS), 0.0)
            g = THERMAL * (a[i] * a[j] * (gi + (g0 - gi) * np.exp(-(ip[j] - ip[i]))) + b[i] * b[j] * rho_s)
            out_g[p, r0:r1] = g.reshape(r1 - r0, nx)
    return StackNoise(out_ph, out_ce, out_g)
