"""Benchmark of the SBAS/NSBAS inversion (issue 6): accuracy, agreement with MintPy, throughput, memory.

    python benchmarks/invert.py --json OUT.json [--quick] [--parts accuracy speed memory]

Parts (all in one run, each against its anchor):
1. accuracy on a simulated frame with unwrapping errors (``insarcloud.simulate.simulate_frame``):
   velocity RMSE against the truth for weights none / coherence / quality maps, and for dropping the bad
   interferograms as LiCSBAS steps 11-12 do. Quality maps: (a) derived from loop closures of the data
   (no truth), (b) an ORACLE built from the simulator's unwrapping-error truth (an upper bound, not a
   result), (c) the real ConvNeXt model when its checkpoint exists, called as the quality stage calls it,
   under every quality -> weight mapping tried (the product's default ``quality_weights`` marked), with
   diagnostics of its map against the truth's unwrapping-error mask (ROC AUCs per pixel-pair, per pair,
   within a pixel, among decorrelated pixel-pairs; ``convnext_quality_diagnostics``).
   ``--parts accuracy`` runs this part alone.
2. agreement with MintPy's inversion core (``mintpy.ifgram_inversion.estimate_timeseries``, driven per
   pixel exactly as its ``run_ifgram_inversion_patch`` does) on the same stack: max |difference| of the
   time series, unweighted and coherence-weighted (the same weights given to both).
3. throughput in pixel-pairs per second per core (single-threaded BLAS, CPU time of this process, so
   other users of a shared machine do not count): insarcloud weighted / unweighted / with missing data,
   MintPy, and a bare batched pseudo-inverse (the floor).
4. peak memory of one task against its chunk size (fresh subprocess per size).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"  # per-core figures: one BLAS thread everywhere (set before numpy loads)

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from insarcloud.invert.closure import closure_weights, loop_triplets  # noqa: E402
from insarcloud.invert.correct import phase_closure_correction, score_correction  # noqa: E402
from insarcloud.invert.dask_ops import resolve_quality_floor  # noqa: E402
from insarcloud.invert.network import Network, build_network  # noqa: E402
from insarcloud.invert.reference import choose_reference  # noqa: E402
from insarcloud.invert.sbas import invert_pixels  # noqa: E402
from insarcloud.invert.weights import QUALITY_FLOOR, coherence_weights, quality_weights  # noqa: E402
from insarcloud.io import parse_pair, phase_to_mm  # noqa: E402

log = logging.getLogger("benchmarks.invert")


def cpu_time(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Best CPU time (s) of ``repeat`` calls and the last result."""
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t0)
    return best, out


# ------------------------------------------------------------------------------------------------
# 1. accuracy on a simulated frame
# ------------------------------------------------------------------------------------------------


def closure_quality(unw: np.ndarray, trip: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(pair, pix) loop-closure weights as ``insarcloud invert --weights closure`` computes them (the
    product's kernel, ``insarcloud.invert.closure``; sessions 2-4 of this benchmark had the same rule here)."""
    return closure_weights(unw.reshape(len(unw), *shape), trip).reshape(len(unw), -1)


def licsbas_drop(unw: np.ndarray, coh: np.ndarray, trip: np.ndarray, ref: int,
                 coh_thre: float = 0.05, unw_thre: float = 0.3, loop_thre: float = 1.5) -> np.ndarray:
    """(pair,) bool of interferograms LiCSBAS steps 11-12 keep (defaults of LiCSBAS 1.x).

    Step 11: drop pairs whose mean coherence < coh_thre or unwrapped coverage < unw_thre (relative to the
    best pair). Step 12: loop closure referenced to the reference pixel, RMS over the frame per loop; a
    loop is bad when RMS > loop_thre rad; a pair in a bad loop and in no good loop is dropped.
    Deviation: the RMS is taken of the 2 pi-rounded closure (its unwrapping-error part). The simulator
    draws phase noise independently per pair, so the raw closure RMS exceeds 1.5 rad in every loop of a
    decorrelated frame and the literal rule would drop every pair.
    """
    cov = np.isfinite(unw).mean(axis=1)
    keep = (np.nanmean(coh, axis=1) >= coh_thre) & (cov >= unw_thre * cov.max())
    clo = unw[trip[:, 0]] + unw[trip[:, 1]] - unw[trip[:, 2]]
    clo = clo - clo[:, [ref]]
    clo = 2 * np.pi * np.round(clo / (2 * np.pi))
    rms = np.sqrt(np.nanmean(clo**2, axis=1))
    good_loop = rms <= loop_thre
    in_bad = np.zeros(unw.shape[0], bool)
    in_good = np.zeros(unw.shape[0], bool)
    for c in range(3):
        in_bad[trip[~good_loop, c]] = True
        in_good[trip[good_loop, c]] = True
    return keep & ~(in_bad & ~in_good)


def checkpoint_target_of(checkpoint: str | None) -> str:
    """``quality_target`` the quality stage would write for this checkpoint (the product's floor reads it)."""
    from insarcloud.qc.serve import DEFAULT_CHECKPOINT, checkpoint_target, file_sha256

    return checkpoint_target(file_sha256(str(checkpoint or DEFAULT_CHECKPOINT)))


def model_quality(frame: Any, checkpoint: str | None = None) -> tuple[np.ndarray | None, str]:
    """The real ConvNeXt quality map (pair, y, x) as the quality stage computes it; else (None, reason).

    Same inputs as ``insarcloud.qc.serve.QualityWorker.run``: ``cube_channels`` of the cube's phase / coh /
    unw, the ``closure`` channel = the qc group's ``pair_closure`` (``qc.products.frame_qc``: mean
    |closure| with the frame-wide per-loop 2 pi k offsets removed), the stage's default tile and overlap
    (``ServeParams``), the whole frame as one region (chunked == whole-image inference by construction).
    """
    try:
        from insarcloud.qc.model import stack_quality
        from insarcloud.qc.products import frame_qc
        from insarcloud.qc.serve import DEFAULT_CHECKPOINT, ServeParams
        from insarcloud.qc.train import load_model
    except Exception as exc:  # the qc stage is optional here
        return None, f"qc model unavailable: {exc}"
    ckpt = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
    if not ckpt.exists():
        return None, f"no checkpoint at {ckpt}"
    try:
        model = load_model(str(ckpt)).eval()
        chans = tuple(model.config.channels)
        sp = ServeParams()
        closure = None
        if "closure" in chans:
            closure = frame_qc(frame.pairs, frame.phase.astype(np.float32), frame.coherence_est.astype(np.float32),
                               frame.unw.astype(np.float32)).pixels.pair_closure
        out = stack_quality(model, frame.phase, frame.coherence_est, frame.unw, closure, tile=sp.tile,
                            overlap=sp.overlap, batch_size=sp.batch_size)
        return out, (f"ConvNeXt checkpoint {ckpt}, channels {list(chans)}, tile {sp.tile}, "
                     f"overlap {sp.overlap}, closure = qc frame_qc pair_closure")
    except Exception as exc:
        return None, f"model inference failed: {type(exc).__name__}: {exc}"


def roc_auc(score: np.ndarray, label: np.ndarray) -> float:
    """ROC AUC of ``score`` (higher = bad) for boolean ``label`` over finite scores; NaN if one class."""
    from insarcloud.qc.train import roc_auc as auc  # only called when the qc model ran

    ok = np.isfinite(score)
    return auc(score[ok], label[ok])


def auc_within_pixel(score: np.ndarray, label: np.ndarray) -> tuple[float, int]:
    """Mean over pixels of the ROC AUC that ranks one pixel's pairs (score (pair, pix), NaN = no data).

    This is what a weighting uses: only the relative weights of a pixel's pairs change its solution.
    Pixels with at least one bad and one good pair count; returns (mean AUC, pixels)."""
    from scipy.stats import rankdata

    r = rankdata(score, axis=0, nan_policy="omit")
    pos = label & np.isfinite(score)
    neg = ~label & np.isfinite(score)
    npos, nneg = pos.sum(0), neg.sum(0)
    use = (npos > 0) & (nneg > 0)
    u = np.where(pos, r, 0.0).sum(0) - npos * (npos + 1) / 2
    return float(np.mean(u[use] / (npos[use] * nneg[use]))), int(use.sum())


def quality_diagnostics(q: np.ndarray, err: np.ndarray, valid: np.ndarray, coh_true: np.ndarray, coh: np.ndarray,
                        dt: np.ndarray, others: dict[str, np.ndarray]) -> dict[str, Any]:
    """How a (pair, pix) quality map relates to the truth's unwrapping-error mask ``err`` (numbers only).

    ROC AUCs of 1 - quality (per pixel-pair over the frame; per pair; within a pixel across its pairs;
    among decorrelated pixel-pairs, true coherence < 0.3, where the simulator puts every unwrapping
    error), share of the variance that is across pairs at a pixel (not a spatial map), within-pixel
    correlation with coherence and temporal baseline, mean quality on error / clean pixel-pairs, and the
    share of each pixel's total weight that lands on erroneous pixel-pairs. ``others``: score maps
    (higher = bad) compared the same way."""
    import warnings

    with warnings.catch_warnings():  # water / no-data pixels have no valid pair: their nanmean is NaN, as meant
        warnings.simplefilter("ignore", RuntimeWarning)
        return _quality_diagnostics(q, err, valid, coh_true, coh, dt, others)


def _quality_diagnostics(q: np.ndarray, err: np.ndarray, valid: np.ndarray, coh_true: np.ndarray, coh: np.ndarray,
                         dt: np.ndarray, others: dict[str, np.ndarray]) -> dict[str, Any]:
    decor = valid & (coh_true < 0.3)
    target = err | (valid & (coh_true < 0.2))  # the packaged checkpoint's training target

    def scores(s: np.ndarray) -> dict[str, Any]:
        s = np.where(valid, s, np.nan)
        within, npx = auc_within_pixel(s, err)
        per_pair = [roc_auc(s[i], err[i]) for i in range(len(s)) if err[i].sum() >= 20]
        dm = s - np.nanmean(s, axis=0, keepdims=True)
        return {"auc_unw_error": roc_auc(s[valid], err[valid]),
                "auc_training_target_unw_error_or_true_coh_lt_0.2": roc_auc(s[valid], target[valid]),
                "auc_within_pixel_unw_error": within, "pixels_with_both_classes": npx,
                "auc_unw_error_among_true_coh_lt_0.3": roc_auc(s[decor], err[decor]),
                "auc_per_pair_unw_error_median": float(np.median(per_pair)) if per_pair else None,
                "auc_per_pair_unw_error_p10_p90": ([float(np.percentile(per_pair, 10)),
                                                    float(np.percentile(per_pair, 90))] if per_pair else None),
                "pairs_with_>=20_error_pixels": len(per_pair),
                "share_of_variance_across_pairs_within_pixel": float(np.nanvar(dm) / np.nanvar(s))}

    qv = np.where(valid, q, np.nan)
    dq = qv - np.nanmean(qv, axis=0, keepdims=True)
    dc = np.where(valid, coh, np.nan) - np.nanmean(np.where(valid, coh, np.nan), axis=0, keepdims=True)
    dd = np.where(valid, dt, np.nan) - np.nanmean(np.where(valid, dt, np.nan), axis=0, keepdims=True)
    ok = np.isfinite(dq) & np.isfinite(dc)
    clean = valid & ~err
    wn = np.where(valid, q, 0.0)
    wn = wn / np.maximum(wn.sum(axis=0, keepdims=True), 1e-30)
    wu = valid / np.maximum(valid.sum(axis=0, keepdims=True), 1)
    return {
        "convnext": scores(1.0 - q), **{k: scores(v) for k, v in others.items()},
        "corr_within_pixel_q_vs_coherence": float(np.corrcoef(dq[ok], dc[ok])[0, 1]),
        "corr_within_pixel_q_vs_temporal_baseline": float(np.corrcoef(dq[ok], dd[ok])[0, 1]),
        "mean_q_on_unw_error": float(np.mean(q[err & valid])),
        "mean_q_clean_true_coh_lt_0.3": float(np.mean(q[clean & decor])),
        "mean_q_clean_true_coh_ge_0.3": float(np.mean(q[clean & ~decor])),
        "frac_q_lt_0.5_on_unw_error": float(np.mean(q[err & valid] < 0.5)),
        "frac_q_lt_0.5_on_clean": float(np.mean(q[clean] < 0.5)),
        "pct_of_weight_on_unw_error_linear_q": float(100 * wn[err & valid].sum() / q.shape[1]),
        "pct_of_weight_on_unw_error_unweighted": float(100 * wu[err & valid].sum() / q.shape[1]),
        "pct_pixel_pairs_true_coh_lt_0.3": float(100 * decor[valid].mean()),
        "pct_unw_errors_in_true_coh_lt_0.3": float(100 * (err & decor).sum() / max(1, (err & valid).sum())),
    }


def phase_variance_table(looks: float, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Variance (rad^2) of the multilook interferometric phase for coherence 0..0.99 (Lee et al. 1994
    pdf, the one MintPy's ``coherence2phase_variance`` integrates); checked against Monte Carlo to 1%."""
    from scipy.special import gammaln, hyp2f1

    grid = np.linspace(0.0, 0.99, n)
    phi = np.linspace(-np.pi, np.pi, 2001)
    var = np.empty(n)
    for k, g in enumerate(grid):
        b = g * np.cos(phi)
        pdf = (1 - g * g) ** looks / (2 * np.pi) * hyp2f1(looks, 1, 0.5, b * b) + np.exp(
            gammaln(looks + 0.5) - gammaln(looks)) * (1 - g * g) ** looks * b / (2 * np.sqrt(np.pi) * (1 - b * b) ** (
                looks + 0.5))
        var[k] = np.trapezoid(pdf * phi**2, phi) / np.trapezoid(pdf, phi)
    return grid, var


def irls(unw_ref: np.ndarray, w0: np.ndarray | None, net: Network, gamma: float, c: float = 2.0,
         n_iter: int = 3) -> Any:
    """Robust reweighting: w = w0 / (1 + (r / c)^2) (Cauchy) from the residuals of the previous solve."""
    w = np.ones(unw_ref.shape) if w0 is None else w0.astype(np.float64)
    res = invert_pixels(unw_ref, w, net, gamma=gamma)
    for _ in range(n_iter):
        phi = np.nan_to_num(res.displacement.astype(np.float64))
        r = unw_ref - (phi[net.secondary_idx] - phi[net.primary_idx])
        w = (1.0 if w0 is None else w0) / (1.0 + np.nan_to_num(r / c, nan=0.0) ** 2)
        res = invert_pixels(unw_ref, w, net, gamma=gamma)
    return res


def propagate_reference(w: np.ndarray, r: int) -> np.ndarray:
    """Weight of the referenced datum phi_p - phi_ref: 1 / (1/w_p + 1/w_ref) (0 where either is 0)."""
    wr = w[:, [r]]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((w > 0) & (wr > 0), w * wr / (w + wr), 0.0)


def accuracy(shape: int, n_epochs: int, seed: int, gamma: float, looks: float = 12.0,
             checkpoint: str | None = None, correct: bool = False) -> dict[str, Any]:
    from insarcloud.simulate.frame import simulate_frame

    t0 = time.time()
    fr = simulate_frame(shape=(shape, shape), n_epochs=n_epochs, seed=seed, unw_error_pair_fraction=0.3)
    sim_s = time.time() - t0
    prim, sec = zip(*(parse_pair(p) for p in fr.pairs), strict=True)
    net = build_network(np.array(prim, "datetime64[ns]"), np.array(sec, "datetime64[ns]"))
    if net.n_pair != fr.unw.shape[0]:
        raise RuntimeError("simulator pair list does not match its unw stack")
    npair = net.n_pair
    unw = fr.unw.reshape(npair, -1).astype(np.float64)
    coh = fr.coherence_est.reshape(npair, -1)
    cycles = fr.unw_cycles.reshape(npair, -1).astype(np.float64)
    err_mask = cycles != 0
    n_valid = np.isfinite(unw).sum(axis=0).reshape(fr.shape)
    ref = choose_reference(n_valid, np.nanmean(fr.coherence_est, axis=0))
    r = ref.y * fr.shape[1] + ref.x
    unw_ref = unw - unw[:, [r]]
    trip = loop_triplets(net)
    v_true = (fr.velocity - fr.velocity[ref.y, ref.x]).ravel()

    q_clo = closure_quality(unw_ref, trip, fr.shape).astype(np.float64)
    w_coh = coherence_weights(coh).astype(np.float64)
    grid, var = phase_variance_table(looks)
    w_pdf = np.where(np.isfinite(coh), 1.0 / np.interp(np.nan_to_num(coh), grid, var), 0.0)
    oracle = np.where(err_mask, 0.0, 1.0)
    inputs: dict[str, tuple[np.ndarray, np.ndarray | None]] = {
        "none": (unw_ref, None),
        "coherence (LiCSBAS/MintPy 1/var, var=(1-c^2)/(2c^2))": (unw_ref, w_coh),
        "coherence, reference-propagated 1/(1/w_p+1/w_ref)": (unw_ref, propagate_reference(w_coh, r)),
        f"coherence, multilook phase-pdf variance (L={looks:g})": (unw_ref, w_pdf),
        "[PRODUCT --weights closure] loop-closure weights (data-derived, no truth)": (unw_ref, q_clo),
        "quality_closure, reference-propagated (q as 1/var)": (unw_ref, propagate_reference(q_clo, r)),
        "quality_closure thresholded (w = q >= 0.5)": (unw_ref, (q_clo >= 0.5).astype(np.float64)),
        "quality_closure x phase-pdf variance": (unw_ref, q_clo * w_pdf),
        "quality_oracle (TRUTH unw_error mask; upper bound)": (unw_ref, oracle),
        # diagnostics of the error budget, all from the truth (not methods):
        "DIAG oracle, reference pixel's own errors removed": (unw_ref + 2 * np.pi * cycles[:, [r]], oracle),
        "DIAG no unwrapping errors at all (unw - 2 pi k), none": (unw_ref - 2 * np.pi * (cycles - cycles[:, [r]]),
                                                                  None),
        "DIAG no errors, no noise (truth phase), none": (
            np.where(np.isfinite(unw), fr.unw_true.reshape(npair, -1), np.nan)
            - fr.unw_true.reshape(npair, -1)[:, [r]], None),
    }
    corr_score: dict[str, Any] = {}
    if correct:
        # ``insarcloud invert --correct-unwrap phase_closure``: corrected before referencing (as the product)
        t1 = time.time()
        cor = phase_closure_correction(fr.unw, trip)
        unw_c = cor.corrected.reshape(npair, -1).astype(np.float64)
        unw_c_ref = unw_c - unw_c[:, [r]]
        corr_score = {**score_correction(cor.cycles.reshape(npair, -1), cycles, np.isfinite(unw)),
                      "patterns_solved": cor.n_patterns, "pixels_unresolved": cor.n_unresolved,
                      "seconds": time.time() - t1}
        log.info("seed %d correction: %s", seed, corr_score)
        q_clo_c = closure_quality(unw_c_ref, trip, fr.shape).astype(np.float64)
        inputs |= {
            "[PRODUCT --correct-unwrap phase_closure] none": (unw_c_ref, None),
            "[PRODUCT --correct-unwrap phase_closure --weights closure] (pre-registered, session 6)":
                (unw_c_ref, q_clo_c),
        }
    q_model, model_note = model_quality(fr, checkpoint)
    diag: dict[str, Any] = {}
    if q_model is not None:
        q = q_model.reshape(npair, -1).astype(np.float64)
        floor = resolve_quality_floor(None, {"quality_target": checkpoint_target_of(checkpoint)})
        valid_pp = np.isfinite(unw)
        dt = np.broadcast_to((net.t_years[net.secondary_idx] - net.t_years[net.primary_idx])[:, None], q.shape)
        diag = quality_diagnostics(q, err_mask & valid_pp, valid_pp, fr.coherence.reshape(npair, -1), coh, dt,
                                   {"coherence_est": 1.0 - coh, "quality_closure": 1.0 - q_clo})
        # how a ConvNeXt quality becomes a weight: every mapping tried (chosen on the design frames only)
        bins = np.clip((np.nan_to_num(coh) * 20).astype(int), 0, 19)
        med = np.array([np.median(q[valid_pp & (bins == b)]) if (valid_pp & (bins == b)).any() else 1.0
                        for b in range(20)])
        inputs |= {
            "quality_convnext linear (w = q; paper-literal, product before session 3)": (unw_ref, q),
            f"quality_convnext w = max(q, {QUALITY_FLOOR:g}) (the fixed floor of sessions 3-4)":
                (unw_ref, quality_weights(q).astype(np.float64)),
            **{f"quality_convnext w = max(q, {f:g})": (unw_ref, np.maximum(q, f)) for f in (0.05, 0.1, 0.3, 0.5)},
            **{f"quality_convnext w = q^{k:g}": (unw_ref, q**k) for k in (0.25, 0.5)},
            "quality_convnext thresholded (w = q >= 0.5)": (unw_ref, (q >= 0.5).astype(np.float64)),
            "quality_convnext / frame median q at the same coherence (clip 1)":
                (unw_ref, np.clip(q / np.maximum(med[bins], 1e-3), 0.0, 1.0)),
            "quality_convnext x quality_closure": (unw_ref, q * q_clo),
            f"[PRODUCT --weights quality] w = max(q, {floor:g}) (floor of this export)":
                (unw_ref, quality_weights(q, floor).astype(np.float64)),
            f"[PRODUCT --weights quality_closure] w = max(q, {floor:g}) x closure (floor of this export)":
                (unw_ref, quality_weights(q, floor).astype(np.float64) * q_clo),
            "DIAG convnext q on unw-error pixel-pairs only (1 elsewhere)": (unw_ref, np.where(err_mask, q, 1.0)),
            "DIAG convnext q on clean pixel-pairs only (1 on errors)": (unw_ref, np.where(err_mask, 1.0, q)),
            "DIAG oracle x convnext q": (unw_ref, oracle * q),
        }
        if correct:
            inputs[f"[PRODUCT --correct-unwrap phase_closure --weights quality_closure] floor {floor:g}"] = (
                unw_c_ref, quality_weights(q, floor).astype(np.float64) * q_clo_c)
    keep = licsbas_drop(unw_ref, coh, trip, r)
    keep_oracle = err_mask.mean(axis=1) <= 0.01
    inputs["drop_bad_ifgs (LiCSBAS 11-12)"] = (np.where(keep[:, None], unw_ref, np.nan), None)
    inputs["drop_bad_ifgs_oracle (TRUTH: pairs with errors at >1% of pixels)"] = (
        np.where(keep_oracle[:, None], unw_ref, np.nan), None)

    ests, series = {}, {}
    results_all = {name: invert_pixels(data, w, net, gamma=gamma) for name, (data, w) in inputs.items()}
    results_all["IRLS (Cauchy c=2 rad, 3 iterations), no prior"] = irls(unw_ref, None, net, gamma)
    results_all["quality_closure + IRLS (Cauchy c=2 rad)"] = irls(unw_ref, q_clo, net, gamma)
    for name, res in results_all.items():
        ests[name], series[name] = res.velocity, res.displacement
    valid = np.isfinite(v_true)
    for v in ests.values():
        if np.isfinite(v).any():  # a method that yields nothing (e.g. every pair dropped) scores NaN alone
            valid &= np.isfinite(v)
    # the time series too: truth = simulated LOS displacement (secular + seasonal; the atmosphere is in the
    # data for every method alike), relative to the reference pixel and the first date
    d_true = fr.displacement.reshape(net.n_date, -1).astype(np.float64)
    d_true = d_true - d_true[:, [r]] - (d_true[[0]] - d_true[0, r])
    results, ts_rmse = {}, {}
    for name, v in ests.items():
        vel_mm = phase_to_mm(v.astype(np.float64))
        results[name] = float(np.sqrt(np.mean((vel_mm[valid] - v_true[valid]) ** 2)))
        d_mm = phase_to_mm(series[name][:, valid].astype(np.float64))
        ts_rmse[name] = float(np.sqrt(np.nanmean((d_mm - d_true[:, valid]) ** 2)))
    base = results["none"]
    return {
        "frame": {"shape": [shape, shape], "n_epochs": int(net.n_date), "n_pairs": npair, "seed": seed,
                  "pairs_with_unw_errors": int(err_mask.any(axis=1).sum()),
                  "pixel_pairs_with_unw_errors_pct": float(100 * err_mask.mean()),
                  "reference_pixel_pairs_with_unw_errors": int(err_mask[:, r].sum()),
                  "reference_pixel_mean_coherence": float(np.nanmean(coh[:, r])),
                  "simulate_s": sim_s, "gamma": gamma, "reference": ref._asdict(),
                  "licsbas_dropped_pairs": int((~keep).sum()), "oracle_dropped_pairs": int((~keep_oracle).sum()),
                  "pixels_scored": int(valid.sum())},
        "velocity_rmse_mm_per_yr": results,
        "displacement_rmse_mm": ts_rmse,
        "rmse_reduction_vs_none_pct": {k: float(100 * (1 - v / base)) for k, v in results.items()},
        "model_quality": model_note,
        "unwrap_correction": corr_score,
        "convnext_quality_diagnostics": diag,
    }


def accuracy_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    names = list(runs[0]["velocity_rmse_mm_per_yr"])
    return {
        "seeds": [r["frame"]["seed"] for r in runs],
        "mean_velocity_rmse_mm_per_yr": {n: float(np.mean([r["velocity_rmse_mm_per_yr"][n] for r in runs]))
                                         for n in names},
        "mean_rmse_reduction_vs_none_pct": {n: float(np.mean([r["rmse_reduction_vs_none_pct"][n] for r in runs]))
                                            for n in names},
        "mean_displacement_rmse_mm": {n: float(np.mean([r["displacement_rmse_mm"][n] for r in runs]))
                                      for n in names},
        "convnext_quality_diagnostics_mean": _mean_tree([r.get("convnext_quality_diagnostics") or {} for r in runs]),
        "runs": runs,
    }


def _mean_tree(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean over frames of every numeric leaf of the per-frame diagnostics (lists: element-wise)."""
    if not items or not items[0]:
        return {}
    out: dict[str, Any] = {}
    for k, v in items[0].items():
        vals = [it.get(k) for it in items]
        if isinstance(v, dict):
            out[k] = _mean_tree(vals)
        elif all(isinstance(x, (int, float)) for x in vals):
            out[k] = float(np.mean(vals))
        elif all(isinstance(x, list) for x in vals):
            out[k] = np.mean(np.array(vals, float), axis=0).tolist()
    return out


# ------------------------------------------------------------------------------------------------
# 2-3. MintPy agreement and throughput
# ------------------------------------------------------------------------------------------------


def stack(n_pix: int, n_date: int, neighbours: int, seed: int) -> tuple[Network, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    dates = np.datetime64("2019-01-05", "ns") + np.arange(n_date) * np.timedelta64(12, "D")
    pairs = [(i, i + j) for i in range(n_date) for j in range(1, neighbours + 1) if i + j < n_date]
    p, s = np.array(pairs).T
    net = build_network(dates[p], dates[s])
    v = rng.normal(0, 5, n_pix)
    phi = v[None] * net.t_years[:, None] + rng.normal(0, 0.5, (n_date, n_pix))
    unw = (phi[s] - phi[p] + rng.normal(0, 0.3, (len(p), n_pix))).astype(np.float32)
    coh = rng.uniform(0.1, 0.95, unw.shape).astype(np.float32)
    return net, unw, coh


def mintpy_invert(net: Network, unw: np.ndarray, weight_sqrt: np.ndarray | None) -> np.ndarray:
    """MintPy's inversion of a patch, as ``run_ifgram_inversion_patch`` drives ``estimate_timeseries``:
    one call for all full-data pixels when unweighted, one call per pixel otherwise."""
    from mintpy.ifgram_inversion import estimate_timeseries
    from mintpy.objects import ifgramStack

    d = [np.datetime_as_string(x, unit="D").replace("-", "") for x in net.dates]
    date12 = [f"{d[p]}_{d[s]}" for p, s in zip(net.primary_idx, net.secondary_idx, strict=True)]
    a, b = ifgramStack.get_design_matrix4timeseries(date12)[:2]
    tbase = np.diff(net.t_years).reshape(-1, 1).astype(np.float32)
    ts = np.zeros((net.n_date, unw.shape[1]), np.float32)
    full = np.isfinite(unw).all(axis=0)
    if weight_sqrt is None and full.any():
        ts[:, full] = estimate_timeseries(a, b, unw[:, full], tbase, print_msg=False)[0]
    todo = np.flatnonzero(~full) if weight_sqrt is None else np.arange(unw.shape[1])
    for j in todo:
        ws = None if weight_sqrt is None else weight_sqrt[:, j:j + 1]
        ts[:, j] = estimate_timeseries(a, b, unw[:, j:j + 1], tbase, weight_sqrt=ws, print_msg=False)[0].ravel()
    return ts


def agreement_and_speed(n_pix: int, n_date: int, neighbours: int, n_mintpy_w: int, seed: int,
                        repeat: int) -> dict[str, Any]:
    net, unw, coh = stack(n_pix, n_date, neighbours, seed)
    npair = net.n_pair
    w = coherence_weights(coh)
    rng = np.random.default_rng(seed + 1)
    unw_miss = unw.copy()
    hit = rng.choice(n_pix, n_pix // 20, replace=False)  # 5% of pixels miss one pair
    unw_miss[rng.integers(0, npair, hit.size), hit] = np.nan
    out: dict[str, Any] = {"stack": {"pixels": n_pix, "pairs": npair, "dates": net.n_date,
                                     "half_bandwidth": net.bandwidth, "missing_case": "5% of pixels miss one pair"}}
    pp = n_pix * npair
    rate: dict[str, float] = {}

    # the floor: one pseudo-inverse applied to every pixel (float32 data, as stored)
    a = np.zeros((npair, net.n_date), np.float32)
    a[np.arange(npair), net.primary_idx] = -1
    a[np.arange(npair), net.secondary_idx] = 1
    pinv = np.linalg.pinv(a[:, 1:].astype(np.float64)).astype(np.float32)
    t, _ = cpu_time(lambda: pinv @ unw, repeat)
    rate["bare_pinv"] = pp / t
    for name, data, wts in (("insarcloud_unweighted_full", unw, None),
                            ("insarcloud_unweighted_5pct_missing", unw_miss, None),
                            ("insarcloud_coherence_weighted", unw, w),
                            ("insarcloud_coherence_weighted_5pct_missing", unw_miss, w)):
        for gamma in (0.0, 1e-4):
            t, _ = cpu_time(lambda d=data, ww=wts, g=gamma: invert_pixels(d, ww, net, gamma=g), repeat)
            rate[f"{name}_gamma{gamma:g}"] = pp / t

    # loop-closure weights (--weights closure / quality_closure) cost on top of the inversion
    side = int(np.sqrt(n_pix))
    trip = loop_triplets(net)
    t, _ = cpu_time(lambda: closure_weights(unw[:, : side * side].reshape(npair, side, side), trip), repeat)
    rate["insarcloud_closure_weights_only"] = side * side * npair / t

    try:
        import mintpy

        mp_version = mintpy.__version__
        t, ts_mp_full = cpu_time(lambda: mintpy_invert(net, unw, None), 1)
        rate["mintpy_unweighted_full"] = pp / t
        # the per-pixel paths of MintPy are timed on a subset (they scale linearly with pixels)
        sub = np.arange(min(n_mintpy_w, n_pix))
        miss_cols = np.concatenate([sub[np.isfinite(unw_miss[:, sub]).all(axis=0)][: int(0.95 * len(sub))],
                                    hit[: max(1, len(sub) // 20)]])
        t, ts_mp_miss = cpu_time(lambda: mintpy_invert(net, unw_miss[:, miss_cols], None), 1)
        rate["mintpy_unweighted_5pct_missing"] = len(miss_cols) * npair / t
        t, ts_mp_w = cpu_time(lambda: mintpy_invert(net, unw[:, sub], np.sqrt(w[:, sub])), 1)
        rate["mintpy_coherence_weighted"] = len(sub) * npair / t
        ours_full = invert_pixels(unw, None, net, gamma=0.0).displacement
        ours_miss = invert_pixels(unw_miss[:, miss_cols], None, net, gamma=0.0).displacement
        ours_w = invert_pixels(unw[:, sub], w[:, sub], net, gamma=0.0).displacement
        out["agreement_max_abs_diff_rad"] = {
            "unweighted_full": float(np.nanmax(np.abs(ours_full - ts_mp_full))),
            "unweighted_5pct_missing": float(np.nanmax(np.abs(ours_miss - ts_mp_miss))),
            "coherence_weighted": float(np.nanmax(np.abs(ours_w - ts_mp_w))),
            "series_max_abs_rad": float(np.abs(ts_mp_full).max()),
            "pixels_compared_weighted": int(len(sub)), "pixels_compared_missing": int(len(miss_cols)),
            "note": "insarcloud gamma=0 (plain SBAS) against MintPy estimate_timeseries (min-norm velocity, "
                    "its default); same weights (sqrt passed as weight_sqrt); MintPy returns float32",
        }
        out["mintpy"] = {"version": mp_version, "available": True}
    except ImportError as exc:
        out["mintpy"] = {"available": False, "reason": str(exc)}
    out["pixel_pairs_per_s_per_core"] = rate
    ratios = {"closure_weighted_vs_coherence_weighted (cost of --weights closure)":
              1.0 / (1.0 / rate["insarcloud_coherence_weighted_gamma0.0001"]
                     + 1.0 / rate["insarcloud_closure_weights_only"])
              / rate["insarcloud_coherence_weighted_gamma0.0001"],
              "unweighted_full_vs_bare_pinv (goal >= 0.5)":
              rate["insarcloud_unweighted_full_gamma0.0001"] / rate["bare_pinv"],
              "missing_vs_full_unweighted (goal >= 0.5)":
              rate["insarcloud_unweighted_5pct_missing_gamma0.0001"] / rate["insarcloud_unweighted_full_gamma0.0001"],
              "missing_vs_full_weighted (goal >= 0.5)":
              rate["insarcloud_coherence_weighted_5pct_missing_gamma0.0001"]
              / rate["insarcloud_coherence_weighted_gamma0.0001"]}
    if "mintpy_coherence_weighted" in rate:
        ratios["weighted_vs_mintpy_weighted (goal >= 50)"] = (
            rate["insarcloud_coherence_weighted_gamma0.0001"] / rate["mintpy_coherence_weighted"])
        ratios["unweighted_vs_mintpy_unweighted_full"] = (
            rate["insarcloud_unweighted_full_gamma0.0001"] / rate["mintpy_unweighted_full"])
        ratios["missing_vs_mintpy_missing"] = (
            rate["insarcloud_unweighted_5pct_missing_gamma0.0001"] / rate["mintpy_unweighted_5pct_missing"])
    out["ratios"] = ratios
    return out


# ------------------------------------------------------------------------------------------------
# 4. memory per task against chunk size
# ------------------------------------------------------------------------------------------------

_MEM_CHILD = r"""
import os, resource, sys
os.environ["OMP_NUM_THREADS"] = "1"
import numpy as np
from insarcloud.invert.dask_ops import _block_kernel
from insarcloud.invert.weights import coherence_weights
from insarcloud.invert.network import build_network
side, n_date, nb = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
dates = np.datetime64("2019-01-05", "ns") + np.arange(n_date) * np.timedelta64(12, "D")
pairs = [(i, i + j) for i in range(n_date) for j in range(1, nb + 1) if i + j < n_date]
p, s = np.array(pairs).T
net = build_network(dates[p], dates[s])
rng = np.random.default_rng(0)
unw = rng.normal(0, 1, (len(p), side, side)).astype(np.float32)
coh = rng.uniform(0.1, 0.9, unw.shape).astype(np.float32)
import tracemalloc
tracemalloc.start()
_block_kernel(unw, coherence_weights(coh), net=net, gamma=1e-4, wavelength_m=0.05546576)
_, peak = tracemalloc.get_traced_memory()
print(peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, unw.nbytes + coh.nbytes)
"""


def memory(sides: list[int], n_date: int, neighbours: int) -> dict[str, Any]:
    out = {}
    for side in sides:
        res = subprocess.run([sys.executable, "-c", _MEM_CHILD, str(side), str(n_date), str(neighbours)],
                             capture_output=True, text=True, check=True)
        peak, rss, inputs = (int(x) for x in res.stdout.split())
        out[str(side)] = {"task_inputs_mb": inputs / 2**20, "kernel_peak_alloc_mb": peak / 2**20,
                          "process_peak_rss_mb": rss / 1024,
                          "note": "numpy allocations traced by tracemalloc during one task; RSS includes imports"}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", required=True, help="output JSON path")
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument("--checkpoint", default=None, help="ConvNeXt export to score (default: the shipped one)")
    ap.add_argument("--sim-shape", type=int, default=128)
    ap.add_argument("--sim-epochs", type=int, default=40)
    ap.add_argument("--sim-seeds", type=int, default=3, help="report frames (seeds seed..seed+n-1)")
    ap.add_argument("--design-seeds", type=int, nargs="*", default=[10, 11],
                    help="design frames (choices were made on these; reported apart); none: skip")
    ap.add_argument("--pixels", type=int, default=250_000, help="pixels of the speed stack (500 x 500)")
    ap.add_argument("--dates", type=int, default=60)
    ap.add_argument("--neighbours", type=int, default=4, help="pairs per epoch (60 dates x 4 -> 230 pairs)")
    ap.add_argument("--mintpy-pixels", type=int, default=2000, help="pixels for MintPy's per-pixel paths")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--correct-unwrap", action="store_true",
                    help="also score the phase-closure unwrapping-error correction (insarcloud.invert.correct)")
    ap.add_argument("--parts", nargs="+", choices=("accuracy", "speed", "memory"),
                    default=["accuracy", "speed", "memory"],
                    help="parts to run (default all); e.g. --parts accuracy")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.quick:
        args.sim_shape, args.sim_epochs, args.pixels, args.mintpy_pixels, args.repeat = 64, 24, 20_000, 200, 1
        args.sim_seeds, args.design_seeds = 1, [10]
    report: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                    "cores_visible": os.cpu_count(), "load_avg_1m_at_start": os.getloadavg()[0],
                    "timing": "CPU time of this process, BLAS single-threaded"},
    }
    t0 = time.time()
    if "accuracy" in args.parts:
        log.info("accuracy on simulated frames ...")
        # design frames (seeds 10, 11): where the weight mappings were chosen; report frames: seed .. seed+n-1
        if args.design_seeds:
            report["accuracy_design_frames"] = accuracy_summary(
                [accuracy(args.sim_shape, args.sim_epochs, s, gamma=1e-4, checkpoint=args.checkpoint,
                          correct=args.correct_unwrap)
                 for s in args.design_seeds])
        report["accuracy"] = accuracy_summary(
            [accuracy(args.sim_shape, args.sim_epochs, args.seed + k, gamma=1e-4, checkpoint=args.checkpoint,
                      correct=args.correct_unwrap)
             for k in range(args.sim_seeds)])
        log.info("%s", json.dumps(report["accuracy"]["mean_rmse_reduction_vs_none_pct"], indent=1))
    if "speed" in args.parts:
        log.info("agreement with MintPy and throughput ...")
        report["speed"] = agreement_and_speed(args.pixels, args.dates, args.neighbours, args.mintpy_pixels,
                                              args.seed, args.repeat)
        log.info("%s", json.dumps(report["speed"]["ratios"], indent=1))
    if "memory" in args.parts:
        log.info("memory per task ...")
        report["memory_per_task"] = memory([128, 256] if args.quick else [128, 256, 512], args.dates,
                                           args.neighbours)
    report["wall_s"] = time.time() - t0
    text = json.dumps(report, indent=2, default=str)
    print(text)
    with open(args.json, "w") as f:
        f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
