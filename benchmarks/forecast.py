"""Table IV of Huo et al. (2024) on simulated permafrost regions: GLER-BiGRUnet, its nine baselines and a
per-pixel harmonic regression (trend + annual + semi-annual, optionally + lagged LST).

For each region (different lag, creep, noise, seed) and repeat: factors (8-day LST, 16-day NDVI, monthly
precipitation on a coarse grid) and the permafrost LOS series they drive are simulated, resampled to the
12-day InSAR dates (eq. 2, monthly filling) and the frame grid; the history is followed by 72 "future"
dates (2 years) kept as truth. Scores (RMSE, MAE, R^2, SMAPE) on:
  * test_one_step: the 10 held-out steps, one-step predictions from true inputs (as Table IV);
  * test_cyclic:   the 10 held-out steps, predicted cyclically from before the test set;
  * horizon_2yr:   72 cyclic steps beyond the history against the simulated truth.
Timings: training seconds per model, and seconds to forecast a megapixel 72 steps (GLER and harmonic).

    python benchmarks/forecast.py --json bench-output/forecast.json          # default (~10 min, 2 cores)
    python benchmarks/forecast.py --quick --json /tmp/f.json                  # smoke run (~1-2 min)
    python benchmarks/forecast.py --gpu-full --json out.json                  # larger run on a GPU
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from insarcloud.forecast.dataset import prepare  # noqa: E402
from insarcloud.forecast.harmonic import fit_harmonic, predict_harmonic  # noqa: E402
from insarcloud.forecast.metrics import scores  # noqa: E402
from insarcloud.forecast.models import EF_MODELS, MODEL_NAMES, PAPER_NAMES, ModelConfig, build_model  # noqa: E402
from insarcloud.forecast.predict import cyclic_forecast, cyclic_predict, one_step_test  # noqa: E402
from insarcloud.forecast.resample import interp_time, monthly_fill, regrid_bilinear  # noqa: E402
from insarcloud.forecast.train import TrainConfig, resolve_device, train_model  # noqa: E402
from insarcloud.simulate.factors import simulate_region  # noqa: E402

log = logging.getLogger("benchmarks.forecast")

# four regions, like the paper's A-D: different thermal lag, creep, noise and ice content
REGIONS = {
    "A": {"lag_days": 20.0, "trend_mm_yr": (-15.0, -5.0), "noise_mm": 1.0},
    "B": {"lag_days": 30.0, "trend_mm_yr": (-8.0, 0.0), "noise_mm": 0.7},
    "C": {"lag_days": 40.0, "trend_mm_yr": (-20.0, -10.0), "noise_mm": 1.2},
    "D": {"lag_days": 25.0, "trend_mm_yr": (-4.0, 4.0), "noise_mm": 0.5},
}
HORIZON = 72


def simulate(region: str, side: int, n_hist: int, seed: int):
    r = simulate_region(side, side, n_dates=n_hist + HORIZON, rng=np.random.default_rng(seed), **REGIONS[region])
    f, dates = r.factors, r.dates
    lst = regrid_bilinear(interp_time(f.lst, f.lst_time, dates), f.y, f.x, r.y, r.x)
    ndvi = regrid_bilinear(interp_time(f.ndvi, f.ndvi_time, dates), f.y, f.x, r.y, r.x)
    pr = regrid_bilinear(monthly_fill(f.precip, f.precip_time, dates), f.y, f.x, r.y, r.x)
    n = side * side
    d = r.ts.displacement.reshape(len(dates), n)
    fac = np.stack([lst, ndvi, pr]).reshape(3, len(dates), n)
    return dates, d, fac


def run_case(region, seed, args, models, device, result_rows, timings):
    dates, d, fac = simulate(region, args.side, args.history, seed)
    T = args.history
    dh, fh = d[:T], fac[:, :T]
    prep = prepare(dh, fh, window=args.window, n_test=10, rng=np.random.default_rng(seed),
                   max_samples=args.max_samples)
    truth_test = dh[-10:]
    truth_future = d[T:]
    rows = {}
    # harmonic baselines: fit before the test set for the test scores, on the whole history for 2 years
    for name, use_lst in (("harmonic", False), ("harmonic_lst", True)):
        t0 = time.perf_counter()
        fit = fit_harmonic(dates[: T - 10], dh[:-10], lst=fh[0, :-10] if use_lst else None)
        p_test = predict_harmonic(fit, dates[T - 10 : T])
        fit2 = fit_harmonic(dates[:T], dh, lst=fh[0] if use_lst else None)
        p_fut = predict_harmonic(fit2, dates[T:])
        sec = time.perf_counter() - t0
        s = scores(truth_test, p_test)._asdict()
        rows[name] = {"test_one_step": s, "test_cyclic": s, "horizon_2yr": scores(truth_future, p_fut)._asdict(),
                      "train_seconds": sec}
    mcfg = ModelConfig(width=args.width, rnn_layers=args.rnn_layers)
    for name in models:
        torch.manual_seed(seed)
        model = build_model(name, prep.window, mcfg)
        cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, early_stop=args.early_stop,
                          max_seconds=args.max_train_seconds, device=device, seed=seed)
        res = train_model(model, prep.x_train, prep.y_train, prep.x_val, prep.y_val, cfg)
        one = one_step_test(res.model, prep, dh)
        cyc = cyclic_forecast(res.model, prep, dh, -10, 10).displacement
        fut = cyclic_forecast(res.model, prep, dh, prep.series.shape[1], HORIZON).displacement
        rows[name] = {"test_one_step": scores(truth_test, one)._asdict(),
                      "test_cyclic": scores(truth_test, cyc)._asdict(),
                      "horizon_2yr": scores(truth_future, fut)._asdict(),
                      "train_seconds": res.seconds, "epochs": res.epochs,
                      "best_val_loss": float(min(res.history["val_loss"])),
                      "n_params": int(sum(p.numel() for p in res.model.parameters()))}
        log.info("%s seed %d %-18s one-step RMSE %.3f  cyclic10 %.3f  2yr %.3f  (%.1f s, %d ep)", region, seed,
                 name, rows[name]["test_one_step"]["rmse"], rows[name]["test_cyclic"]["rmse"],
                 rows[name]["horizon_2yr"]["rmse"], res.seconds, res.epochs)
        if name == "gler" and "megapixel" not in timings:
            timings["megapixel"] = time_megapixel(res.model, prep, args.mp_pixels)
    result_rows.append({"region": region, "seed": seed, "window": prep.window, "n_train": len(prep.x_train),
                        "n_val": len(prep.x_val), "models": rows})


def time_megapixel(model, prep, n_pix):
    """Seconds for a 72-step cyclic forecast of n_pix pixels, scaled to 1e6 pixels."""
    rng = np.random.default_rng(0)
    win = np.transpose(prep.series[:, -prep.window :], (2, 1, 0))
    win = win[rng.integers(0, win.shape[0], n_pix)]
    cyclic_predict(model, win[:256], 2)  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    cyclic_predict(model, win, HORIZON, batch=65536 if torch.cuda.is_available() else 8192)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    sec = time.perf_counter() - t0
    # harmonic: fit (least squares on 110 dates) + 72-step prediction for the same number of pixels
    t = np.arange(110 + HORIZON) * 12 / 365.25
    dmat = np.stack([np.ones_like(t), t, np.cos(2 * np.pi * t), np.sin(2 * np.pi * t),
                     np.cos(4 * np.pi * t), np.sin(4 * np.pi * t)], 1)
    obs = rng.normal(size=(110, n_pix))
    fit_t0 = time.perf_counter()
    coef = np.linalg.lstsq(dmat[:110], obs, rcond=None)[0]
    _ = dmat[110:] @ coef
    hsec = time.perf_counter() - fit_t0
    return {"pixels_timed": n_pix, "gler_seconds_per_megapixel": sec * 1e6 / n_pix,
            "harmonic_seconds_per_megapixel": hsec * 1e6 / n_pix}


def summarize(rows):
    names = list(rows[0]["models"].keys())
    out = {}
    for scope in ("test_one_step", "test_cyclic", "horizon_2yr"):
        out[scope] = {}
        for region in sorted({r["region"] for r in rows}):
            rr = [r for r in rows if r["region"] == region]
            out[scope][region] = {}
            for n in names:
                vals = {k: [r["models"][n][scope][k] for r in rr] for k in ("rmse", "mae", "r2", "smape")}
                out[scope][region][n] = {k: float(np.mean(v)) for k, v in vals.items()}
                out[scope][region][n]["rmse_std"] = float(np.std(vals["rmse"]))
        # mean RMSE over regions and rank
        mean_rmse = {n: float(np.mean([out[scope][g][n]["rmse"] for g in out[scope]])) for n in names}
        out[scope]["mean_rmse"] = mean_rmse
        out[scope]["ranking"] = sorted(mean_rmse, key=mean_rmse.get)
    out["train_seconds"] = {n: float(np.mean([r["models"][n]["train_seconds"] for r in rows])) for n in names}
    return out


def print_table(summary):
    names = list(summary["train_seconds"].keys())
    for scope in ("test_one_step", "test_cyclic", "horizon_2yr"):
        print(f"\n== {scope}: RMSE (mm) per region, mean over repeats ==")
        regions = [g for g in summary[scope] if g not in ("mean_rmse", "ranking")]
        print(f"{'model':20s}" + "".join(f"{g:>9s}" for g in regions) + f"{'mean':>9s}{'R2(mean)':>10s}{'SMAPE':>8s}")
        for n in names:
            r2 = np.mean([summary[scope][g][n]["r2"] for g in regions])
            sm = np.mean([summary[scope][g][n]["smape"] for g in regions])
            label = PAPER_NAMES.get(n, n)
            print(f"{label:20s}" + "".join(f"{summary[scope][g][n]['rmse']:9.3f}" for g in regions)
                  + f"{summary[scope]['mean_rmse'][n]:9.3f}{r2:10.3f}{sm:8.1f}")
        print("ranking:", ", ".join(summary[scope]["ranking"]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 region, 1 repeat, few epochs")
    ap.add_argument("--gpu-full", action="store_true", help="larger settings for a GPU")
    ap.add_argument("--regions", default=None, help="comma list among A,B,C,D")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--models", default=",".join(MODEL_NAMES))
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--max-train-seconds", type=float, default=None, help="wall budget per training")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--side", type=int, default=None, help="pixels per region = side^2")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on shared cores)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    # defaults sized for 2 shared CPU cores (~10 min)
    cfg = dict(regions="A,B", repeats=2, side=20, history=110, window=None, max_samples=3000, epochs=10,
               batch_size=128, lr=2e-3, early_stop=6, max_train_seconds=30.0, width=16, rnn_layers=2,
               mp_pixels=2000)
    if args.quick:
        cfg.update(regions="A", repeats=1, side=8, max_samples=600, epochs=2, max_train_seconds=10.0,
                   width=8, rnn_layers=1, mp_pixels=2000)
    if args.gpu_full:
        cfg.update(regions="A,B,C,D", repeats=2, side=40, max_samples=40000, epochs=60, batch_size=512,
                   lr=1e-3, early_stop=10, max_train_seconds=40.0, width=32, rnn_layers=3, mp_pixels=1_000_000)
    if args.regions:
        cfg["regions"] = args.regions
    if args.repeats:
        cfg["repeats"] = args.repeats
    for k in ("max_train_seconds", "epochs", "side"):
        if getattr(args, k) is not None:
            cfg[k] = getattr(args, k)
    ns = argparse.Namespace(**cfg)
    device = str(resolve_device(args.device))
    models = [m for m in args.models.split(",") if m]
    unknown = set(models) - set(MODEL_NAMES)
    if unknown:
        ap.error(f"unknown models {sorted(unknown)}")
    rows, timings = [], {}
    t0 = time.perf_counter()
    for region in cfg["regions"].split(","):
        for rep in range(cfg["repeats"]):
            run_case(region, 1000 * (ord(region) - 64) + rep, ns, models, device, rows, timings)
    summary = summarize(rows)
    print_table(summary)
    if "megapixel" in timings:
        mp = timings["megapixel"]
        print(f"\nforecast 72 steps of a megapixel: GLER {mp['gler_seconds_per_megapixel']:.1f} s "
              f"(timed on {mp['pixels_timed']} pixels), harmonic {mp['harmonic_seconds_per_megapixel']:.3f} s; "
              f"ratio {mp['gler_seconds_per_megapixel'] / max(mp['harmonic_seconds_per_megapixel'], 1e-9):.0f}x")
    print("train seconds:", {k: round(v, 1) for k, v in summary["train_seconds"].items()})
    out = {"config": cfg, "device": device, "torch": torch.__version__, "host": platform.node(),
           "cpu_count": os.cpu_count(), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
           "ef_models": list(EF_MODELS), "timings": timings, "summary": summary, "rows": rows,
           "wall_seconds": time.perf_counter() - t0}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
        print("wrote", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
