"""Multiscale (coarse-to-fine) unwrapping with per-region referencing, built for real masked frames (issue 21).

The idea is tophu's (Fattahi, Lien et al., JPL ``tophu``: unwrap a multilooked copy, then use it to
unwrap the full-resolution residual); the pieces here are ours:

1. **Multilook.** The unit phasor ``exp(i psi)`` (times the pixel weights, e.g. coherence) is summed over
   ``looks`` x ``looks`` blocks of valid pixels only. A block is valid when at least ``min_valid`` of its
   pixels are. Averaging ``looks**2`` phasors removes most of the decorrelation noise and with it most of
   the residues that make least squares smear; the block's phasor coherence ``|mean phasor|`` measures
   what is left.
2. **Coarse unwrap** of the block phase on a grid ``looks**2`` times smaller: SNAPHU
   (``coarse="snaphu"``, the default: its statistical cost with the block coherence is what holds on
   real noise, and on the coarse grid it costs ~1 CPU-s for a whole LiCSAR frame), or weighted least
   squares (``coarse="ls"``: PCG, weights = squared block coherence, zero across no-data, then
   ``passes`` residual passes of LS on the wrapped gradients of ``wrap(psi_c - phi)``). Coarse
   grids smaller than 4 x 4 always use LS.
3. **Regions.** Separate valid regions (islands, land cut by no-data) have unobservable relative
   constants; they are referenced to each other (``regions``): ``"bridge"`` (default, see
   :func:`bridge_regions`): each region continues its nearest neighbour's local plane across the gap,
   along a minimum spanning tree of gap lengths; ``"trend"`` (:func:`reference_regions`): all
   regions on one quadratic trend; ``"none"``: constants as the solver left them. The assumption is
   that the signal is continuous across the gap.
4. **Back to full resolution.** The coarse solution is interpolated (bilinear at block centres;
   blocks without data take the nearest valid block, so slivers and tiny islands thinner than a block
   are unwrapped against their neighbourhood). The smooth estimate is
   ``phi = up + angle(box_refine * exp(i (psi - up)))``: the residual to the coarse solution is small,
   so its low-pass phasor has no wraps and carries the detail the blocks lost (a fault step, a lobe's
   crest). ``congruent=True`` returns ``phi + wrap(psi - phi)``.

There is no full-resolution solve at all, which is what makes a whole LiCSAR frame cheap: the only
iterative solver runs on the coarse grid. The cost: a signal whose gradient approaches
``pi / looks`` rad/px aliases in the blocks; use a smaller ``looks`` for steep deformation.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from insarcloud.errors import ConfigError
from insarcloud.unwrap._common import UnwrapResult, check_wrapped, finish
from insarcloud.unwrap.ls import edge_weights, integrate_gradients, wrap, wrapped_gradients

__all__ = ["bridge_regions", "multilook", "reference_regions", "unwrap_multiscale"]

log = logging.getLogger(__name__)

COARSE_SOLVERS = ("ls", "snaphu")
REGION_MODES = ("bridge", "trend", "none")


def multilook(psi: np.ndarray, valid: np.ndarray, w: np.ndarray | None, looks: int, min_valid: float
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Block-average the unit phasor over ``looks`` x ``looks`` blocks of valid pixels.

    Parameters
    ----------
    psi : ndarray (y, x) float64, rad (NaN allowed outside ``valid``)
    valid : ndarray (y, x) bool
    w : ndarray (y, x) float64 >= 0 or None
        Pixel weights of the phasor sum (coherence); None = 1.
    looks : int >= 1
    min_valid : float in (0, 1]
        Share of valid pixels a block needs to be valid.

    Returns
    -------
    phase : ndarray (ceil(y/looks), ceil(x/looks)) float64, rad; NaN where the block is not valid
    coherence : ndarray like phase, float64 in [0, 1]: |weighted mean phasor| (0 where not valid)
    block_valid : ndarray like phase, bool
    """
    ny, nx = psi.shape
    cy, cx = -(-ny // looks), -(-nx // looks)
    pad = ((0, cy * looks - ny), (0, cx * looks - nx))
    wt = valid.astype(np.float64) if w is None else np.where(valid, w, 0.0)
    z = np.where(valid, np.exp(1j * np.where(valid, psi, 0.0)), 0.0) * wt
    z = np.pad(z, pad).reshape(cy, looks, cx, looks).sum(axis=(1, 3))
    n = np.pad(valid, pad).reshape(cy, looks, cx, looks).sum(axis=(1, 3))
    ws = np.pad(wt, pad).reshape(cy, looks, cx, looks).sum(axis=(1, 3))
    ok = (n >= max(1.0, min_valid * looks * looks)) & (ws > 0)
    coh = np.where(ok, np.abs(z) / np.maximum(ws, 1e-300), 0.0)
    return np.where(ok, np.angle(z), np.nan), np.clip(coh, 0.0, 1.0), ok


def _coarse_ls(psi_c: np.ndarray, ok: np.ndarray, coh: np.ndarray, passes: int, ls_tol: float
               ) -> np.ndarray:
    q = np.where(ok, np.maximum(coh, 0.05) ** 2, 0.0)
    wx, wy = edge_weights(q)
    zero = np.where(ok, psi_c, 0.0)
    gx, gy = wrapped_gradients(zero)
    phi = integrate_gradients(gx, gy, wx, wy, tol=ls_tol).phase
    # Residual passes, unweighted on valid edges: weighted LS flattens slopes where residues cluster;
    # the wrapped residual then still holds that slope and its LS adds it back.
    ux, uy = edge_weights(ok.astype(np.float64))
    for _ in range(passes):
        r = np.where(ok, wrap(psi_c - phi), 0.0)
        rx, ry = wrapped_gradients(r)
        d = integrate_gradients(rx, ry, ux, uy, tol=ls_tol).phase
        phi = phi + d
        if float(np.sqrt(np.mean(d[ok] ** 2))) < 0.05:
            break
    return phi


def _coarse_snaphu(psi_c: np.ndarray, ok: np.ndarray, coh: np.ndarray, looks: int) -> np.ndarray:
    from insarcloud.unwrap.snaphu_unwrap import unwrap_snaphu

    res = unwrap_snaphu(np.where(ok, psi_c, np.nan), np.where(ok, coh, 0.0),
                        nlooks=float(max(1, looks * looks)), congruent=True)
    return np.where(ok, res.phase.astype(np.float64), 0.0)


def reference_regions(phi: np.ndarray, ok: np.ndarray, weight: np.ndarray | None = None,
                      degree: int = 2) -> tuple[np.ndarray, int]:
    """Shift each 4-connected valid region of ``phi`` onto one polynomial trend.

    Fits ``phi ~ poly(y, x; degree) + c_region`` by weighted least squares over all valid pixels and
    subtracts ``c_region - c_largest`` from each region, so regions separated by no-data continue the
    shared trend instead of keeping arbitrary constants.

    Parameters
    ----------
    phi : ndarray (y, x) float64, rad (values outside ``ok`` ignored)
    ok : ndarray (y, x) bool
    weight : ndarray (y, x) float >= 0, optional (default 1)
    degree : int, polynomial degree of the shared trend (0 = constants only: aligns region means)

    Returns
    -------
    phi : ndarray (y, x) float64, regions shifted (unchanged outside ``ok``)
    n_regions : int
    """
    lab, n = ndimage.label(ok)
    if n <= 1:
        return phi, n
    ny, nx = phi.shape
    yy, xx = np.nonzero(ok)
    labels = lab[yy, xx] - 1
    # Subsample big regions: a few thousand pixels fix a quadratic and a constant.
    step = max(1, len(yy) // 20000)
    keep = np.zeros(len(yy), bool)
    keep[::step] = True
    keep |= np.bincount(labels, minlength=n)[labels] < 200  # every small region keeps all its pixels
    yy, xx, labels = yy[keep], xx[keep], labels[keep]
    v = phi[yy, xx]
    wv = np.ones(len(v)) if weight is None else np.sqrt(np.maximum(weight[yy, xx], 1e-6))
    ys, xs = yy / max(ny - 1, 1) - 0.5, xx / max(nx - 1, 1) - 0.5
    cols = [ys**i * xs**j for i in range(degree + 1) for j in range(degree + 1 - i) if i + j > 0]
    trend = np.stack(cols, axis=1) if cols else np.zeros((len(v), 0))
    onehot = np.zeros((len(v), n))
    onehot[np.arange(len(v)), labels] = 1.0
    a = np.hstack([trend, onehot]) * wv[:, None]
    coef, *_ = np.linalg.lstsq(a, v * wv, rcond=None)
    consts = coef[trend.shape[1]:]
    largest = int(np.argmax(np.bincount(lab[ok] - 1, minlength=n)))
    shift = np.concatenate([[0.0], consts - consts[largest]])
    return phi - shift[lab], n


def _plane_at(phi: np.ndarray, yy: np.ndarray, xx: np.ndarray, p: np.ndarray, q: np.ndarray,
              radius: float) -> float:
    # Value at point q of a plane fitted to the region's pixels within ``radius`` of point p.
    near = (yy - p[0]) ** 2 + (xx - p[1]) ** 2 <= radius**2
    if near.sum() < 3:
        near = np.argsort((yy - p[0]) ** 2 + (xx - p[1]) ** 2)[:3]
    ys, xs = yy[near] - p[0], xx[near] - p[1]
    v = phi[yy[near], xx[near]]
    a = np.stack([np.ones(len(ys)), ys, xs], axis=1)
    coef, *_ = np.linalg.lstsq(a, v, rcond=None)
    if len(ys) < 6:  # too few pixels for a slope: the local mean
        return float(np.median(v))
    return float(coef[0] + coef[1] * (q[0] - p[0]) + coef[2] * (q[1] - p[1]))


def bridge_regions(phi: np.ndarray, ok: np.ndarray, radius: float = 4.0) -> tuple[np.ndarray, int]:
    """Shift each 4-connected valid region of ``phi`` to continue its nearest neighbour across the gap.

    MintPy's "bridging" idea (Yunjun et al. 2019), with the slope carried over: regions are joined by a
    minimum spanning tree of their closest-point distances (candidate bridges from the Voronoi partition
    of the gaps); regions the tree cannot reach keep their constants; across each bridge both ends fit a local
    plane (pixels within ``radius``) and extrapolate it to the bridge's midpoint; the child region is
    shifted so the two extrapolations agree. The largest region keeps its constant.

    Parameters
    ----------
    phi : ndarray (y, x) float64, rad (values outside ``ok`` ignored)
    ok : ndarray (y, x) bool
    radius : float, pixels of the local plane fit at each bridge end

    Returns
    -------
    phi : ndarray (y, x) float64, regions shifted (unchanged outside ``ok``)
    n_regions : int
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import breadth_first_order, minimum_spanning_tree

    lab, n = ndimage.label(ok)
    if n <= 1:
        return phi, n
    # Candidate bridges from the Voronoi partition of the gaps (O(pixels), not O(regions^2)): every
    # pixel knows its nearest valid pixel; two neighbouring pixels whose nearest regions differ give a
    # bridge between those two nearest pixels, of length dist_a + dist_b + 1.
    dist, idx = ndimage.distance_transform_edt(~ok, return_indices=True)
    near = lab[idx[0], idx[1]] - 1
    la, lb, cost, ea, eb = [], [], [], [], []
    for sl_a, sl_b in (((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
                       ((slice(None, -1), slice(None)), (slice(1, None), slice(None)))):
        diff = near[sl_a] != near[sl_b]
        la.append(near[sl_a][diff])
        lb.append(near[sl_b][diff])
        cost.append(dist[sl_a][diff] + dist[sl_b][diff] + 1.0)
        ea.append(np.stack([idx[0][sl_a][diff], idx[1][sl_a][diff]], axis=1))
        eb.append(np.stack([idx[0][sl_b][diff], idx[1][sl_b][diff]], axis=1))
    la_a, lb_a, c_a = np.concatenate(la), np.concatenate(lb), np.concatenate(cost)
    ea_a, eb_a = np.concatenate(ea).astype(float), np.concatenate(eb).astype(float)
    lo, hi = np.minimum(la_a, lb_a), np.maximum(la_a, lb_a)
    order = np.lexsort((c_a, hi, lo))  # per region pair, the shortest bridge first
    key = lo[order] * n + hi[order]
    first = order[np.r_[True, key[1:] != key[:-1]]]
    link: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    for e in first:
        a, b = int(la_a[e]), int(lb_a[e])
        link[(a, b)] = (ea_a[e], eb_a[e])
        link[(b, a)] = (eb_a[e], ea_a[e])
    graph = coo_matrix((c_a[first], (lo[first], hi[first])), shape=(n, n)).tocsr()
    mst = minimum_spanning_tree(graph)
    mst = mst + mst.T
    sizes = np.bincount(lab[ok] - 1, minlength=n)
    root = int(np.argmax(sizes))
    bfs, pred = breadth_first_order(mst, root, directed=False)
    objs = ndimage.find_objects(lab)
    coords = []
    for r, sl in enumerate(objs):
        yy, xx = np.nonzero(lab[sl] == r + 1)
        coords.append((yy + sl[0].start, xx + sl[1].start))
    shift = np.zeros(n)
    for child in bfs[1:]:
        parent = int(pred[child])
        p_par, p_chi = link[(parent, int(child))]
        mid = (p_par + p_chi) / 2
        v_par = _plane_at(phi, *coords[parent], p_par, mid, radius) - shift[parent]
        v_chi = _plane_at(phi, *coords[child], p_chi, mid, radius)
        shift[child] = v_chi - v_par
    return phi - np.concatenate([[0.0], shift])[lab], n


def _upsample(phi_c: np.ndarray, ok: np.ndarray, looks: int, shape: tuple[int, int]) -> np.ndarray:
    # Fill blocks without data by their nearest valid block, then bilinear at block centres.
    if not ok.all():
        idx = ndimage.distance_transform_edt(~ok, return_distances=False, return_indices=True)
        phi_c = phi_c[tuple(idx)]
    ny, nx = shape
    cy = (np.arange(ny) - (looks - 1) / 2) / looks
    cx = (np.arange(nx) - (looks - 1) / 2) / looks
    coords = np.meshgrid(cy, cx, indexing="ij")
    return ndimage.map_coordinates(phi_c, coords, order=1, mode="nearest")


def unwrap_multiscale(
    wrapped: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    looks: int = 4,
    min_valid: float = 0.25,
    coarse: str = "snaphu",
    passes: int = 3,
    refine: int = 5,
    regions: str = "bridge",
    bridge_radius: float = 4.0,
    trend_degree: int = 2,
    ls_tol: float = 1e-4,
    congruent: bool = False,
) -> UnwrapResult:
    """Coarse-to-fine unwrapping: multilooked LS (or SNAPHU), region referencing, full-res refinement.

    Parameters
    ----------
    wrapped : ndarray (y, x) float, rad; NaN = no data (NaN out)
    weights : ndarray (y, x) float >= 0, optional
        Pixel weights (coherence) of the multilook phasor sum; None = equal.
    looks : int, default 4
        Block side of the coarse grid; signals steeper than ~``pi / (2 looks)`` rad/px alias.
    min_valid : float, default 0.25
        Share of valid pixels a block needs.
    coarse : {"ls", "snaphu"}, default "snaphu"
        Coarse-grid unwrapper.
    passes : int, default 3
        Residual LS passes after the weighted coarse LS (``coarse="ls"``).
    refine : int, default 5
        Box side (pixels) of the full-resolution residual phasor low-pass; 1 = none.
    regions : {"bridge", "trend", "none"}, default "bridge"
        How separate valid regions are referenced to each other (module docstring, step 3).
    bridge_radius : float, default 4
        Radius (coarse pixels) of the local planes fitted at each bridge end (``regions="bridge"``).
    trend_degree : int, default 2
        Degree of the shared trend when ``regions="trend"``.
    ls_tol : float, default 1e-4
        PCG relative residual of the coarse solves.
    congruent : bool, default False
        Return ``phi + wrap(psi - phi)`` instead of the smooth estimate.

    Returns
    -------
    UnwrapResult
        ``iterations`` = number of separate valid regions on the coarse grid; ``converged`` True.
    """
    if coarse not in COARSE_SOLVERS:
        raise ConfigError(f"multiscale: coarse must be one of {', '.join(COARSE_SOLVERS)}, got {coarse!r}")
    if regions not in REGION_MODES:
        raise ConfigError(f"multiscale: regions must be one of {', '.join(REGION_MODES)}, got {regions!r}")
    if int(looks) != looks or looks < 1:
        raise ConfigError(f"multiscale: looks must be a positive integer, got {looks!r}")
    if not 0 < min_valid <= 1:
        raise ConfigError(f"multiscale: min_valid must be in (0, 1], got {min_valid!r}")
    if int(refine) != refine or refine < 1:
        raise ConfigError(f"multiscale: refine must be a positive integer, got {refine!r}")
    looks, refine = int(looks), int(refine)
    dtype = np.asarray(wrapped).dtype
    psi, valid, w = check_wrapped(wrapped, weights)
    psi_c, coh, ok = multilook(psi, valid, w, looks, min_valid)
    if not ok.any():  # too little data for one block: fall back to pixel blocks
        looks = 1
        psi_c, coh, ok = multilook(psi, valid, w, 1, 1.0)
    if ok.sum() < 2:
        phi_c = np.zeros(ok.shape)
    elif coarse == "snaphu" and min(ok.shape) >= 4:
        phi_c = _coarse_snaphu(psi_c, ok, coh, looks)
    else:
        phi_c = _coarse_ls(psi_c, ok, coh, passes, ls_tol)
    n_regions = 1
    if regions == "bridge":
        phi_c, n_regions = bridge_regions(phi_c, ok, bridge_radius)
    elif regions == "trend":
        phi_c, n_regions = reference_regions(phi_c, ok, coh**2, trend_degree)
    up = _upsample(phi_c, ok, looks, psi.shape)
    phi = up
    if refine > 1:
        m = valid.astype(np.float64)
        z = np.where(valid, np.exp(1j * np.where(valid, psi - up, 0.0)), 0.0)
        re = ndimage.uniform_filter(z.real, refine, mode="nearest")
        im = ndimage.uniform_filter(z.imag, refine, mode="nearest")
        den = ndimage.uniform_filter(m, refine, mode="nearest")
        phi = up + np.where(den > 0, np.angle(re + 1j * im), 0.0)
    return UnwrapResult(finish(phi, psi, valid, dtype, congruent=congruent), n_regions, True)
