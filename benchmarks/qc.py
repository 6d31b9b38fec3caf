"""QC part 1 benchmark: throughput of loop closure + statistics, and rule-label precision / recall.

Throughput is pixel-pairs per second per core (one process, one thread: ``OMP_NUM_THREADS=1`` is set
before numpy loads) of

- ``closure``: our closure kernels (raw closure, chunk-summable loop partials, per-pixel loop counts) next
  to the anchor, a LiCSBAS-style loop (per triplet: loop phase, ``nanmedian`` 2 pi k, RMS, ``|c| > pi``
  counts, as ``LiCSBAS12_loop_closure.py`` does it) on the same stack -> ratio;
- ``full``: the whole per-block chain (unwrapped + wrapped closure, windowed phase std / coherence,
  labels) -> ratio to the anchor;
- ``dask``: the Dask path (``qc_dataset`` computed with the synchronous scheduler) -> ratio to ``full``.

Label quality: precision / recall of ``label == bad`` against the truth (``unw_error | coherence_true <
0.2``) on stacks the thresholds were not tuned on (synthetic seeds 20-22; ``insarcloud.simulate``
frames, seeds 11-12, when that package is present), next to a coherence-threshold baseline
(``coh < 0.2`` bad).

Usage: ``python benchmarks/qc.py --json OUT [--size 512 --epochs 12 --repeat 3]``
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from insarcloud.qc import closure, labels, products, stats, synthetic  # noqa: E402
from insarcloud.qc.network import find_triplets  # noqa: E402


def licsbas_style(unw: np.ndarray, trip: Any) -> tuple[np.ndarray, np.ndarray]:
    """The anchor: LiCSBAS step 12's per-loop arithmetic (a Python loop over triplets)."""
    n_err = np.zeros(unw.shape[1:], np.int16)
    rms = np.zeros(trip.n_triplets)
    for i in range(trip.n_triplets):
        loop = unw[trip.ij[i]] + unw[trip.jk[i]] - unw[trip.ik[i]]
        loop = loop - np.round(np.nanmedian(loop) / (2 * np.pi)) * 2 * np.pi
        rms[i] = np.sqrt(np.nanmean(loop**2))
        n_err += np.abs(loop) > np.pi
    return n_err, rms


def ours_closure(unw: np.ndarray, trip: Any) -> tuple[np.ndarray, np.ndarray]:
    raw = closure.raw_closure(unw, trip)
    st = closure.finalize_partials(closure.closure_partials(raw))
    c = closure.correct_closure(raw, st.offset_k)
    cnt = closure.pixel_loop_counts(c, trip)
    return cnt.n_loop_err, st.rms


def best_time(fn: Any, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def throughput(size: int, epochs: int, repeat: int) -> dict[str, Any]:
    s = synthetic.make_stack(np.random.default_rng(100), shape=(size, size), n_epochs=epochs, max_span=3)
    trip = find_triplets(s.pairs)
    px_pairs = len(s.pairs) * size * size
    a_err, a_rms = licsbas_style(s.unw, trip)
    o_err, o_rms = ours_closure(s.unw, trip)
    agree = bool(np.array_equal(a_err, o_err)) and bool(np.allclose(a_rms, o_rms, rtol=1e-4))
    t_anchor = best_time(lambda: licsbas_style(s.unw, trip), repeat)
    t_closure = best_time(lambda: ours_closure(s.unw, trip), repeat)
    t_full = best_time(lambda: products.frame_qc(s.pairs, s.phase, s.coh, s.unw), repeat)
    t_stats = best_time(lambda: stats.window_stats(s.phase, s.coh, 5), repeat)

    import xarray  # noqa: F401  (import cost outside the timing)

    from insarcloud import io
    from insarcloud.qc.config import QCParams
    from insarcloud.qc.dask_ops import qc_dataset

    lat = 30.0 - np.arange(size) * 0.001
    lon = 90.0 + np.arange(size) * 0.001
    ds = io.make_frame_dataset(frame="012A_05850_131313", pairs=s.pairs, lat=lat, lon=lon, phase=s.phase,
                               coh=s.coh, unw=s.unw)
    blk = max(64, size // 2)
    t_dask = best_time(lambda: qc_dataset(ds, QCParams(block=blk)).compute(scheduler="synchronous"), repeat)
    rate = lambda t: px_pairs / t  # noqa: E731
    return {
        "stack": {"pairs": len(s.pairs), "triplets": trip.n_triplets, "y": size, "x": size,
                  "pixel_pairs": px_pairs},
        "anchor_licsbas_loop_s": t_anchor,
        "closure_s": t_closure,
        "window_stats_s": t_stats,
        "full_chain_s": t_full,
        "dask_sync_s": t_dask,
        "dask_block": blk,
        "pixel_pairs_per_s_per_core": {
            "anchor_licsbas_loop": rate(t_anchor), "closure": rate(t_closure), "window_stats": rate(t_stats),
            "full_chain": rate(t_full), "dask_sync": rate(t_dask),
        },
        "ratio_closure_vs_anchor": t_anchor / t_closure,
        "ratio_full_chain_vs_anchor": t_anchor / t_full,
        "ratio_dask_vs_full_chain": t_full / t_dask,
        "closure_matches_anchor": agree,
    }


def _score(label: np.ndarray, truth: np.ndarray, unw_error: np.ndarray, coh: np.ndarray) -> dict[str, Any]:
    sc = labels.score_labels(label, truth)
    base = np.where(np.isfinite(coh), (coh < 0.2).astype(np.uint8), labels.NODATA).astype(np.uint8)
    bs = labels.score_labels(base, truth)
    caught = float(((label == labels.BAD) & unw_error).sum() / max(1, unw_error.sum()))
    base_caught = float(((base == labels.BAD) & unw_error).sum() / max(1, unw_error.sum()))
    return {
        "rules": {k: (float(v) if isinstance(v, float | np.floating) else v) for k, v in sc._asdict().items()},
        "coherence_threshold_0.2": {"precision": bs.precision, "recall": bs.recall, "f1": bs.f1},
        "unw_error_recall_rules": caught,
        "unw_error_recall_coherence_threshold": base_caught,
        "truth_bad_fraction": float((truth == 1).sum() / max(1, (truth != 255).sum())),
    }


def label_quality() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for seed in (20, 21, 22):
        s = synthetic.make_stack(np.random.default_rng(seed), shape=(128, 128), n_epochs=8)
        for mode, unw in (("unw", s.unw), ("wrapped_only", None)):
            q = products.frame_qc(s.pairs, s.phase, s.coh, unw)
            out[f"synthetic_seed{seed}_{mode}"] = _score(q.pixels.label, s.truth, s.unw_error, s.coh)
    try:
        from insarcloud.qc.dataset import truth_mask
        from insarcloud.simulate.frame import simulate_frame
    except ImportError as exc:  # the simulator is another stage; report plainly when absent
        out["simulate"] = f"insarcloud.simulate not available: {exc}"
        return out
    for seed in (11, 12):
        f = simulate_frame(shape=(192, 192), n_epochs=10, seed=seed)
        truth = truth_mask(f.phase, f.unw_error, f.coherence)
        for mode, unw in (("unw", f.unw), ("wrapped_only", None)):
            q = products.frame_qc(f.pairs, f.phase, f.coherence_est, unw)
            out[f"simulate_seed{seed}_{mode}"] = _score(q.pixels.label, truth, f.unw_error, f.coherence_est)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", required=True, help="output JSON path")
    ap.add_argument("--size", type=int, default=512, help="stack side, pixels")
    ap.add_argument("--epochs", type=int, default=12, help="epochs (pairs: each to its next 3)")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    res: dict[str, Any] = {
        "benchmark": "qc",
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                    "cores_used": 1, "load_avg_1min": os.getloadavg()[0], "numpy": np.__version__},
        "throughput": throughput(a.size, a.epochs, a.repeat),
        "label_quality": label_quality(),
    }
    res["elapsed_s"] = time.perf_counter() - t0
    with open(a.json, "w") as f:
        json.dump(res, f, indent=1)
    tp = res["throughput"]
    print(f"stack {tp['stack']}")
    for k, v in tp["pixel_pairs_per_s_per_core"].items():
        print(f"  {k:>22}: {v / 1e6:8.2f} M pixel-pairs/s/core")
    print(f"  closure vs LiCSBAS-style loop: x{tp['ratio_closure_vs_anchor']:.2f} "
          f"(same numbers: {tp['closure_matches_anchor']}); dask/sync vs numpy chain: "
          f"x{tp['ratio_dask_vs_full_chain']:.2f}")
    for k, v in res["label_quality"].items():
        if isinstance(v, str):
            print(f"  {k}: {v}")
            continue
        r, b = v["rules"], v["coherence_threshold_0.2"]
        print(f"  {k:>32}: rules P={r['precision']:.3f} R={r['recall']:.3f} uncertain={r['uncertain_fraction']:.2f}"
              f" unw-err R={v['unw_error_recall_rules']:.3f} | coh<0.2 P={b['precision']:.3f} R={b['recall']:.3f}"
              f" unw-err R={v['unw_error_recall_coherence_threshold']:.3f}")
    print(f"wrote {a.json} ({res['elapsed_s']:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
