"""Spatial part of the multivariate noise model: Sigma (r x r), its Gaussian covariance function (eq. 16),
correlations and their precision (eqs. 9-10), per-series standard deviations (eq. 11).

Scale convention used throughout insarcloud.noise: ``D(vec Y) = Sigma (x) sum_k sigma_k Q_k`` is fixed only up
to a common factor; we NORMALISE SIGMA to unit mean diagonal over the class (``mean(diag Sigma) = 1``), so
Sigma is dimensionless and the variance components sigma_k carry mm^2 (they describe the class-average
pixel). ``Sigma_ii`` is the relative noise level of pixel i and ``Sigma_ij / sqrt(Sigma_ii Sigma_jj)`` the
spatial correlation.

Why a parametric Sigma: the unstructured estimator of eq. 8 has rank <= m - n, so for the paper's classes
(r ~ 1000 series of m < 100 epochs) it is singular and the multivariate LS-VCE/likelihood degenerate
(the temporal components are no longer identifiable). The ``gaussian`` Sigma model keeps eq. 8 for the
per-pixel variances and the empirical covariances, fits eq. 16 to the latter and uses
``Sigma = D^1/2 (rho0 exp(-r^2/d^2) + (1 - rho0) I) D^1/2`` (SPD for 0 <= rho0 < 1) in the iteration.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from insarcloud.errors import InputArrayError

from .kron import GridIndex, KronGaussian, grid_index, kron_gaussian

EARTH_RADIUS_M = 6_371_000.0

#: How Sigma is modelled in the multivariate iteration: ``full`` = unstructured eq. 8 (needs r < m - n),
#: ``gaussian`` = per-pixel variances + fitted eq. 16 correlation, ``diagonal`` = no spatial correlation,
#: ``identity`` = Sigma fixed to I (pooled univariate; absolute sigma_k, no normalisation).
SigmaModel = Literal["full", "gaussian", "diagonal", "identity"]


def lonlat_to_local_m(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Local equirectangular coordinates (metres) about the mean latitude; fine for class-sized areas.

    Parameters
    ----------
    lon, lat : (r,) float64 degrees

    Returns
    -------
    (r, 2) float64 metres (east, north).
    """
    lat0 = np.deg2rad(np.mean(lat))
    e = np.deg2rad(np.asarray(lon, dtype=np.float64)) * np.cos(lat0) * EARTH_RADIUS_M
    n = np.deg2rad(np.asarray(lat, dtype=np.float64)) * EARTH_RADIUS_M
    return np.column_stack([e, n])


def gaussian_covariance(dist: np.ndarray, c0: float, d: float) -> np.ndarray:
    """Eq. 16: ``C0 exp(-r^2 / d^2)``; dist and d in the same unit (m)."""
    return c0 * np.exp(-(np.asarray(dist, dtype=np.float64) / d) ** 2)


class PairBins(NamedTuple):
    """Distance binning of all pixel pairs i < j of a class, computed once per class.

    Attributes
    ----------
    iu, ju : (r(r-1)/2,) int64 pair indices
    bin_index : (r(r-1)/2,) int64 distance bin of each pair
    centers : (nbins,) float64 mean distance of the pairs in each bin (m)
    counts : (nbins,) int64 pairs per bin
    flat : (r(r-1)/2,) int64  ``iu * r + ju``: one gather of the pairs from a C-ordered (r, r) array
    grid : GridIndex or None  the pixels' grid when Sigma is applied through its Kronecker structure
        (:mod:`.kron`); None = dense Sigma
    d2 : (r, r) float64 or None  squared distances (m^2) for the dense Gaussian Sigma (None with a grid)
    cache : dict or None  :func:`pair_bin_products` of the last Y
    """

    iu: np.ndarray
    ju: np.ndarray
    bin_index: np.ndarray
    centers: np.ndarray
    counts: np.ndarray
    flat: np.ndarray | None = None
    grid: GridIndex | None = None
    d2: np.ndarray | None = None
    cache: dict | None = None


def _sq_dist(coords_m: np.ndarray) -> np.ndarray:
    diff = coords_m[:, None, :] - coords_m[None, :, :]
    return np.einsum("ijk,ijk->ij", diff, diff)


def make_pair_bins(coords_m: np.ndarray, n_bins: int = 30, kron: bool = True) -> PairBins:
    """Bin the pairwise distances of a class (equal-count bins, so short lags are well resolved).

    Computed once per class, with what every iteration of the Gaussian Sigma reuses: the flat pair index,
    and the pixels' grid (``kron=True`` and the pixels lie on a grid, :func:`.kron.grid_index`) or else the
    squared distances of the dense Sigma.
    """
    r = coords_m.shape[0]
    iu, ju = np.triu_indices(r, k=1)
    dist = np.hypot(*(coords_m[iu] - coords_m[ju]).T)
    nb = max(1, min(n_bins, dist.size // 20))
    edges = np.unique(np.quantile(dist, np.linspace(0, 1, nb + 1)))
    b = np.clip(np.searchsorted(edges, dist, side="right") - 1, 0, edges.size - 2)
    counts = np.bincount(b, minlength=edges.size - 1)
    centers = np.bincount(b, weights=dist, minlength=edges.size - 1) / np.maximum(counts, 1)
    keep = counts > 0
    remap = np.cumsum(keep) - 1
    grid = grid_index(coords_m) if kron else None
    return PairBins(iu, ju, remap[b], centers[keep], counts[keep], iu * r + ju, grid,
                    None if grid is not None else _sq_dist(coords_m), {})


class GaussianFit(NamedTuple):
    """Fit of eq. 16 to the empirical covariances of a class.

    Attributes
    ----------
    c0 : float  covariance at zero distance, in Sigma units (fraction of the class-mean variance)
    d : float   correlation distance (m)
    centers, means : (nbins,) binned distance (m) and mean covariance (Sigma units)
    """

    c0: float
    d: float
    centers: np.ndarray
    means: np.ndarray


def pair_bin_products(Y: np.ndarray, bins: PairBins) -> np.ndarray:
    """``C_b = Y B_b^T Y^T`` (nbins, m, m), B_b the r x r indicator of the pairs (i < j) of distance bin b, so
    that the sum of ``S = Y^T W Y`` over the pairs of bin b is ``<W, C_b>`` for any symmetric W (m x m).

    Costs ~2 nbins m^2 r + r^2 m / 2 flops once; kept in ``bins.cache`` for the same Y (the fits of every
    candidate model and alpha of a class reuse it).
    """
    cache = bins.cache
    if cache is not None and cache.get("Y") is Y:
        return cache["C"]
    from scipy.sparse import csr_matrix

    m, r = Y.shape
    nb = bins.counts.size
    B = csr_matrix((np.ones(bins.iu.size), (bins.iu, bins.bin_index * r + bins.ju)), shape=(r, nb * r))
    T = np.asarray(B.T @ Y.T).reshape(nb, r, m)  # T_b = B_b^T Y^T
    C = np.matmul(Y, T)
    if cache is not None:
        cache.clear()
        cache.update(Y=Y, C=C)
    return C


def fit_gaussian(S: np.ndarray | None, bins: PairBins, c0_max: float = 0.99, n_grid: int = 64,
                 means: np.ndarray | None = None) -> GaussianFit:
    """Weighted least-squares fit of ``C0 exp(-r^2/d^2)`` to the binned off-diagonal entries of S.

    For a given d the best C0 is linear (closed form), so d is profiled over a log grid spanning
    0.1 x the shortest to 10 x the longest binned distance, then refined by a parabola in log d. Weights are
    the pair counts of the bins. Deterministic and ~100x cheaper than a generic non-linear solver.

    Parameters
    ----------
    S : (r, r) float64
        Empirical Sigma (eq. 8), normalised to unit mean diagonal.
    bins : PairBins
    c0_max : float
        Upper bound of C0 (keeps the correlation model positive definite).
    means : (nbins,) float64, optional  the binned means of S's off-diagonal entries when already known
        (then S is not read)
    """
    if means is None:
        vals = S[bins.iu, bins.ju] if bins.flat is None else np.take(S, bins.flat)
        means = np.bincount(bins.bin_index, weights=vals, minlength=bins.counts.size) / bins.counts
    x, w = bins.centers, bins.counts.astype(np.float64)
    if x.size < 2 or not np.any(means > 0):
        return GaussianFit(0.0, float(max(x.max(), 1.0)) if x.size else 1.0, x, means)
    lo, hi = np.log(max(float(x[x > 0].min()) if np.any(x > 0) else 1.0, 1e-6) * 0.1), np.log(float(x.max()) * 10)
    logd = np.linspace(lo, hi, n_grid)

    def sse(ld: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = np.exp(-(x[None, :] / np.exp(ld)[:, None]) ** 2)  # (grid, bins)
        c = np.clip((g * w * means).sum(1) / np.maximum((g * g * w).sum(1), 1e-300), 0.0, c0_max)
        return ((means - c[:, None] * g) ** 2 * w).sum(1), c

    e, c = sse(logd)
    k = int(np.argmin(e))
    ld = logd[k]
    if 0 < k < n_grid - 1:
        # parabolic refinement through the three grid points around the minimum
        y0, y1, y2 = e[k - 1], e[k], e[k + 1]
        den = y0 - 2 * y1 + y2
        if den > 0:
            ld = logd[k] + 0.5 * (logd[1] - logd[0]) * (y0 - y2) / den
    e1, c1 = sse(np.array([ld]))
    if e1[0] > e[k]:
        ld, c1 = logd[k], c[k:k + 1]
    return GaussianFit(float(c1[0]), float(np.exp(ld)), x, means)


class SigmaFactor(NamedTuple):
    """Sigma as used by the iteration, with what is needed to apply its inverse.

    Attributes
    ----------
    diag : (r,) float64 diagonal of Sigma
    chol : tuple or None  scipy cho_factor of Sigma (None when Sigma is diagonal or on the Kronecker path)
    logdet : float  ln det Sigma
    fit : GaussianFit or None
    kron : KronGaussian or None  the Gaussian Sigma of a grid class applied through its Kronecker structure
    """

    diag: np.ndarray
    chol: tuple | None
    logdet: float
    fit: GaussianFit | None
    kron: KronGaussian | None = None

    def solve(self, B: np.ndarray) -> np.ndarray:
        """``Sigma^-1 B`` for B of shape (r, k)."""
        if self.kron is not None:
            return self.kron.solve(B)
        if self.chol is None:
            return B / self.diag[:, None]
        return cho_solve(self.chol, B)


def gaussian_sigma(diag: np.ndarray, coords_m: np.ndarray, c0: float, d: float,
                   d2: np.ndarray | None = None) -> np.ndarray:
    """``D^1/2 (rho0 exp(-r^2/d^2) + (1 - rho0) I) D^1/2`` with rho0 = c0 / mean(diag); ``d2`` = the
    squared distances of ``coords_m`` when already computed (:class:`PairBins`)."""
    rho0 = c0 / float(np.mean(diag))
    R = rho0 * np.exp(-(_sq_dist(coords_m) if d2 is None else d2) / d**2)
    R[np.diag_indices_from(R)] = 1.0
    s = np.sqrt(diag)
    return R * s[:, None] * s[None, :]


def factor_sigma(S: np.ndarray | None, mode: SigmaModel, coords_m: np.ndarray | None = None,
                 bins: PairBins | None = None, *, diag: np.ndarray | None = None,
                 pair_means: np.ndarray | None = None) -> SigmaFactor:
    """Turn the empirical Sigma (eq. 8, normalised) into the Sigma used by the iteration.

    With ``mode="gaussian"`` S may be None when its diagonal ``diag`` and the binned means of its
    off-diagonal entries ``pair_means`` are given (all that the Gaussian model uses of it).

    Raises
    ------
    numpy.linalg.LinAlgError when ``mode="full"`` and S is singular (r >= m - n).
    """
    if S is None and (mode != "gaussian" or diag is None or pair_means is None):
        raise InputArrayError("factor_sigma needs S, or diag and pair_means with the gaussian model")
    r = S.shape[0] if S is not None else diag.size
    if mode == "identity":
        return SigmaFactor(np.ones(r), None, 0.0, None)
    diag = np.clip((np.diag(S) if S is not None else diag).copy(), 1e-12, None)
    if mode == "diagonal" or r == 1:
        return SigmaFactor(diag, None, float(np.sum(np.log(diag))), None)
    if mode == "full":
        c = cho_factor(S, lower=True)
        return SigmaFactor(diag, c, 2.0 * float(np.sum(np.log(np.diag(c[0])))), None)
    if mode == "gaussian":
        if coords_m is None or bins is None:
            raise InputArrayError("sigma model 'gaussian' needs pixel coordinates")
        fit = fit_gaussian(S, bins, means=pair_means if S is None else None)
        if bins.grid is not None and bins.grid.flat.size == r:
            kg = kron_gaussian(diag, bins.grid, fit.c0, fit.d)
            return SigmaFactor(diag, None, kg.logdet, fit, kg)
        M = gaussian_sigma(diag, coords_m, fit.c0, fit.d, bins.d2 if bins.iu.size == r * (r - 1) // 2 else None)
        c = cho_factor(M, lower=True)
        return SigmaFactor(diag, c, 2.0 * float(np.sum(np.log(np.diag(c[0])))), fit)
    raise InputArrayError(f"unknown sigma model {mode!r}")


class Correlations(NamedTuple):
    """Eqs. 9-11 for a class.

    Attributes
    ----------
    rho : (r, r) float64 correlation coefficients (eq. 9)
    rho_std : (r, r) float64 their standard deviation, ``(1 - rho^2) / sqrt(m - n)`` (eq. 10)
    std : (r,) float64 per-series noise std (eq. 11), in the unit of sqrt(scale) (mm when scale is mm^2)
    std_std : (r,) float64 its precision, ``std / sqrt(2 (m - n))`` (from var(Sigma_ii) = 2 Sigma_ii^2/(m-n))
    """

    rho: np.ndarray
    rho_std: np.ndarray
    std: np.ndarray
    std_std: np.ndarray


def correlations(S: np.ndarray, dof: int, scale: float = 1.0) -> Correlations:
    """Correlations and per-series std from Sigma-hat (eqs. 9-11).

    Parameters
    ----------
    S : (r, r) float64 Sigma-hat
    dof : int  m - n
    scale : float  multiplies Sigma_ii to give a physical variance (e.g. mean diag of Q in mm^2)
    """
    s = np.sqrt(np.clip(np.diag(S), 0, None))
    rho = S / np.outer(s, s)
    std = s * np.sqrt(scale)
    return Correlations(rho, (1.0 - rho**2) / np.sqrt(dof), std, std / np.sqrt(2.0 * dof))


def predict_covariance(coords_a: np.ndarray, coords_b: np.ndarray, c0_a: float, d_a: float,
                       c0_b: float | None = None, d_b: float | None = None) -> np.ndarray:
    """Covariance predicted by eq. 16 between pixels a_i and b_j, also across classes.

    Within one class pass only (c0_a, d_a). Across two classes we use the geometric mean of the two C0 and
    the root-mean-square of the two d: for Gaussian kernels ``sqrt(C0a C0b) exp(-r^2 / ((da^2 + db^2)/2))``
    is the (Paciorek-Schervish) non-stationary kernel's leading term, symmetric and equal to eq. 16 when
    both classes agree.

    Parameters
    ----------
    coords_a : (na, 2) float64 m;  coords_b : (nb, 2) float64 m (same local frame)

    Returns
    -------
    (na, nb) float64 in the unit of C0.
    """
    c0_b = c0_a if c0_b is None else c0_b
    d_b = d_a if d_b is None else d_b
    dist = np.hypot(*(coords_a[:, None, :] - coords_b[None, :, :]).transpose(2, 0, 1))
    d2 = 0.5 * (d_a**2 + d_b**2)
    pref = (2.0 * d_a * d_b / (d_a**2 + d_b**2))  # Paciorek-Schervish normalisation in 2-D
    return np.sqrt(c0_a * c0_b) * pref * np.exp(-(dist**2) / d2)


def scale_variance(sf: SigmaFactor, coords_m: np.ndarray | None, dof: int) -> float:
    """Extra variance of ln(scale) of the components from Sigma's normalisation, beyond LS-VCE's N^-1.

    The common scale of ``Sigma (x) Q`` is fixed by ``mean(diag Sigma-hat) = 1``, a plain mean of the
    pixels' quadratic forms ``e_i^T W e_i / (m - n)``; spatially correlated pixels make that mean noisier
    than the Sigma-whitened estimate that N^-1 assumes: ``var = 2 ||R||_F^2 / (r^2 (m - n))`` against
    ``2 / (r (m - n))`` (R = Sigma's correlation matrix). The difference multiplies ``sigma sigma^T``.
    Measured need: white component of white+flicker classes (rho0 = 0.5, d = 300 m on a 100 m grid,
    r = 100) gives ||R||_F^2 / r = 3.5, i.e. a scale std of 2.7 % instead of 1.5 %.

    Parameters
    ----------
    sf : SigmaFactor  the Sigma of the fit ;  coords_m : (r, 2) float64 m (needed for the Gaussian model)
    dof : int  m - n

    Returns
    -------
    float  additional variance of ln(scale); 0 for diagonal/identity Sigma
    """
    r = sf.diag.size
    if (sf.chol is None and sf.kron is None) or r < 2:
        return 0.0
    if sf.kron is not None and coords_m is None:
        g = sf.kron.grid
        coords_m = np.column_stack([g.xs[g.flat % g.xs.size], g.ys[g.flat // g.xs.size]])
    if sf.fit is not None and coords_m is not None:
        rho0 = sf.fit.c0 / float(np.mean(sf.diag))
        sq = np.einsum("ij,ij->i", coords_m, coords_m)
        d2 = np.clip(sq[:, None] + sq[None, :] - 2.0 * coords_m @ coords_m.T, 0.0, None)
        off = rho0**2 * (float(np.sum(np.exp(-2.0 * d2 / sf.fit.d**2))) - r)
    else:
        L = np.tril(sf.chol[0]) if sf.chol[1] else np.triu(sf.chol[0]).T
        M = L @ L.T
        s = np.sqrt(np.diag(M))
        off = float(np.sum((M / np.outer(s, s)) ** 2)) - r
    return max(2.0 * off / (r**2 * dof), 0.0)
