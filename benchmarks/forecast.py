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
from _common import write_json  # noqa: E402

from insarcloud.forecast.dataset import prepare, transform_for_inference  # noqa: E402
from insarcloud.forecast.harmonic import (  # noqa: E402
    factor_climatology,
    fit_harmonic,
    harmonic_residual,
    predict_harmonic,
)
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
    design = design_inputs(dates, dh, fh, args.target, args.factor_future, args.rollout, args, seed)
    runs = [(name, name, design) for name in models]
    if args.paper_gler and (args.target, args.factor_future, args.rollout) != ("increments", "predicted", 1):
        # the same GLER trained and run exactly as the paper (and session 1): the design's effect, same case
        runs.append(("gler_paper", "gler", design_inputs(dates, dh, fh, "increments", "predicted", 1, args, seed)))
    mcfg = ModelConfig(width=args.width, rnn_layers=args.rnn_layers)
    for label, name, dz in runs:
        prep = dz["prep"]
        torch.manual_seed(seed)
        model = build_model(name, prep.window, mcfg)
        # models without factors never read the factor channels: p = 0 keeps them bit for bit as before
        p_clim = args.train_factor_climatology if name in EF_MODELS else 0.0
        cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, early_stop=args.early_stop,
                          max_seconds=args.max_train_seconds, max_cpu_seconds=args.max_train_cpu_seconds,
                          device=device, seed=seed, factor_climatology_prob=p_clim)
        c0 = time.process_time()
        res = train_model(model, prep.x_train, prep.y_train, prep.x_val, prep.y_val, cfg,
                          climatology=prep.climatology)
        train_cpu = time.process_time() - c0
        one = one_step_test(res.model, prep, dz["s_test"]) + dz["base_test"]
        cyc = cyclic_forecast(res.model, prep, dz["s_test"], -10, 10,
                              factor_future=dz["ff_test"]).displacement + dz["base_test"]
        pf = dz["prep_full"]
        fut = cyclic_forecast(res.model, pf, dz["s_full"], pf.series.shape[1], HORIZON,
                              factor_future=dz["ff_future"]).displacement + dz["base_future"]
        rows[label] = {"test_one_step": scores(truth_test, one)._asdict(),
                       "test_cyclic": scores(truth_test, cyc)._asdict(),
                       "horizon_2yr": scores(truth_future, fut)._asdict(),
                       "train_seconds": res.seconds, "train_cpu_seconds": train_cpu, "epochs": res.epochs,
                       "best_val_loss": float(min(res.history["val_loss"])),
                       "n_params": int(sum(p.numel() for p in res.model.parameters()))}
        log.info("%s seed %d %-18s one-step RMSE %.3f  cyclic10 %.3f  2yr %.3f  (%.1f s, %.1f CPU s, %d ep)",
                 region, seed, label, rows[label]["test_one_step"]["rmse"], rows[label]["test_cyclic"]["rmse"],
                 rows[label]["horizon_2yr"]["rmse"], res.seconds, train_cpu, res.epochs)
        if label == "gler" and "megapixel" not in timings:
            timings["megapixel"] = time_megapixel(res.model, prep, args.mp_pixels)
    prep = design["prep"]
    result_rows.append({"region": region, "seed": seed, "window": prep.window, "n_train": len(prep.x_train),
                        "n_val": len(prep.x_val), "models": rows})


def design_inputs(dates, dh, fh, target, factor_future, rollout, args, seed):
    """Model-space series, prepared windows, deterministic parts and factor futures of one design."""
    T = dh.shape[0]
    # what the networks model: the paper's 12-day increments, or the residual about a per-pixel harmonic fit
    # (fitted before the test set for the test scores, on the whole history for the 2-year horizon)
    if target == "harmonic_residual":
        hr_test, hr_full = harmonic_residual(dates[:T], dh, n_fit=T - 10), harmonic_residual(dates[:T], dh)
        s_test, base_test = hr_test.residual, predict_harmonic(hr_test.fit, dates[T - 10 : T])
        s_full, base_future = hr_full.residual, predict_harmonic(hr_full.fit, dates[T : T + HORIZON])
    else:
        s_test = s_full = dh
        base_test = base_future = np.float32(0)
    differenced = target == "increments"
    # "train as you forecast": the training windows' factor climatology, fitted like ff_test (before the test
    # dates) and evaluated on the history dates
    fc_train = None
    if args.train_factor_climatology > 0:
        fc_train = factor_climatology(dates[: T - 10], fh[:, : T - 10], dates[:T])
    prep = prepare(s_test, fh, window=args.window, n_test=10, differenced=differenced,
                   rng=np.random.default_rng(seed), max_samples=args.max_samples, horizon=rollout,
                   factor_climatology=fc_train)
    prep_full = prep if s_full is s_test else transform_for_inference(s_full, fh, prep.scaler, prep.window,
                                                                      differenced, 10)
    # future of the factors in the cyclic loop: the model's own predictions (paper) or their climatology
    ff_test = ff_future = None
    if factor_future == "climatology":
        ff_test = factor_climatology(dates[: T - 10], fh[:, : T - 10], dates[T - 10 : T])
        ff_future = factor_climatology(dates[:T], fh, dates[T : T + HORIZON])
    return {"prep": prep, "prep_full": prep_full, "s_test": s_test, "s_full": s_full, "base_test": base_test,
            "base_future": base_future, "ff_test": ff_test, "ff_future": ff_future}


def _reference_cyclic(model, win, n_steps, batch=32768):
    """Session 1's serving loop as it was (batches of 32768 pixels, one forward pass per step and batch)."""
    outs = list(model.outputs)
    fwd = model
    with torch.no_grad():
        for i in range(0, win.shape[0], batch):
            w = torch.as_tensor(win[i : i + batch])
            for _ in range(n_steps):
                nxt = torch.zeros((w.shape[0], 4))
                nxt[:, outs] = fwd(w)
                w = torch.cat([w[:, 1:], nxt[:, None]], dim=1)


def _clock(fn):
    """(wall s, CPU s of this process) of fn()."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - w0, time.process_time() - c0


def time_megapixel(model, prep, n_pix, n_steps=HORIZON):
    """Seconds for a 72-step cyclic forecast of n_pix pixels, scaled to 1e6 pixels: the serving path now,
    session 1's loop (anchor, same run, same pixels; wall and CPU seconds, the CPU ones are what a busy
    shared machine does not inflate), and the harmonic fit + forecast."""
    rng = np.random.default_rng(0)
    win = np.transpose(prep.series[:, -prep.window :], (2, 1, 0))
    win = np.ascontiguousarray(win[rng.integers(0, win.shape[0], n_pix)])
    cyclic_predict(model, win[:256], 2)  # warm-up
    new_w, new_c = _clock(lambda: cyclic_predict(model, win, n_steps))
    old_w, old_c = _clock(lambda: _reference_cyclic(model, win, n_steps))
    # harmonic: fit (least squares on 110 dates) + 72-step prediction for the same number of pixels
    t = np.arange(110 + HORIZON) * 12 / 365.25
    dmat = np.stack([np.ones_like(t), t, np.cos(2 * np.pi * t), np.sin(2 * np.pi * t),
                     np.cos(4 * np.pi * t), np.sin(4 * np.pi * t)], 1)
    obs = rng.normal(size=(110, n_pix))
    fit_t0 = time.perf_counter()
    coef = np.linalg.lstsq(dmat[:110], obs, rcond=None)[0]
    _ = dmat[110:] @ coef
    hsec = time.perf_counter() - fit_t0
    scale = 1e6 / n_pix * HORIZON / n_steps
    return {"pixels_timed": n_pix, "steps_timed": n_steps, "window": prep.window,
            "gler_seconds_per_megapixel": new_w * scale, "gler_cpu_seconds_per_megapixel": new_c * scale,
            "session1_seconds_per_megapixel": old_w * scale, "session1_cpu_seconds_per_megapixel": old_c * scale,
            "speedup_cpu": old_c / max(new_c, 1e-9), "speedup_wall": old_w / max(new_w, 1e-9),
            "gler_us_per_pixel_step_cpu": new_c / (n_pix * n_steps) * 1e6,
            "harmonic_seconds_per_megapixel": hsec * 1e6 / n_pix, "load_average": os.getloadavg()}


def demo_stage(seed=0, side=96, train_pixels=1000, max_seconds=60.0):
    """The demo's forecast stage without Ray/S3: a 96 x 96 frame of 36 dates; training as the demo's
    config (1000 pixels, 20 epochs, early stop 5, 60 s wall budget, Table III batch 64 / Nadam 1e-4, width 16,
    3 (Bi)GRU layers), then the 30-step cyclic forecast and the 10 one-step test predictions of all 9,216
    pixels (what the actors do), with the serving path now and session 1's loop (cyclic part)."""
    from insarcloud.forecast.dataset import transform_for_inference as tfi

    dates, d, fac = simulate_frame_like(side, 36, seed)
    n = d.shape[1]
    pick = np.sort(np.random.default_rng(seed).choice(n, min(train_pixels, n), replace=False))
    out = {"pixels": n, "dates": len(dates), "horizon": 30, "load_average_start": os.getloadavg()}
    c0, w0 = time.process_time(), time.perf_counter()
    prep = prepare(d[:, pick], fac[:, :, pick], n_test=10, rng=np.random.default_rng(seed))
    model = build_model("gler", prep.window, ModelConfig())
    res = train_model(model, prep.x_train, prep.y_train, prep.x_val, prep.y_val,
                      TrainConfig(epochs=20, max_seconds=max_seconds, early_stop=5, seed=seed))
    out["train"] = {"wall": time.perf_counter() - w0, "cpu": time.process_time() - c0, "epochs": res.epochs,
                    "n_train_windows": len(prep.x_train), "window": prep.window}
    p = tfi(d, fac, prep.scaler, prep.window, True, 10)
    win = np.ascontiguousarray(np.transpose(p.series[:, -p.window :], (2, 1, 0)))
    w, c = _clock(lambda: cyclic_forecast(res.model, p, d, p.series.shape[1], 30))
    w1, c1 = _clock(lambda: one_step_test(res.model, p, d))
    out["forecast_new"] = {"wall": w + w1, "cpu": c + c1, "cyclic_cpu": c, "one_step_cpu": c1}
    w, c = _clock(lambda: _reference_cyclic(res.model, win, 30))
    out["forecast_session1_cyclic_only"] = {"wall": w, "cpu": c}
    out["load_average_end"] = os.getloadavg()
    return out


def simulate_frame_like(side, n_dates, seed):
    r = simulate_region(side, side, n_dates=n_dates, rng=np.random.default_rng(seed))
    f, dates = r.factors, r.dates
    lst = regrid_bilinear(interp_time(f.lst, f.lst_time, dates), f.y, f.x, r.y, r.x)
    ndvi = regrid_bilinear(interp_time(f.ndvi, f.ndvi_time, dates), f.y, f.x, r.y, r.x)
    pr = regrid_bilinear(monthly_fill(f.precip, f.precip_time, dates), f.y, f.x, r.y, r.x)
    n = side * side
    return dates, r.ts.displacement.reshape(len(dates), n), np.stack([lst, ndvi, pr]).reshape(3, len(dates), n)


def merge(paths, out_path):
    """Combine runs split over processes (e.g. one per region, run side by side on a shared machine)."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    base = next((r for r in runs if r.get("rows")), runs[0])
    rows = [row for r in runs for row in (r.get("rows") or [])]
    out = dict(base)
    out["rows"] = rows
    out["summary"] = summarize(rows)
    out["timings"] = {k: v for r in runs for k, v in (r.get("timings") or {}).items()}
    out["demo_stage"] = next((r["demo_stage"] for r in runs if r.get("demo_stage")), None)
    out["merged_from"] = [str(p) for p in paths]
    out["wall_seconds"] = max(r.get("wall_seconds", 0) for r in runs)
    for r in runs:
        if r.get("rows") and r.get("config") != base.get("config"):
            cfg_a = {k: v for k, v in r["config"].items() if k not in ("regions", "repeats")}
            cfg_b = {k: v for k, v in base["config"].items() if k not in ("regions", "repeats")}
            if cfg_a != cfg_b:
                raise SystemExit(f"runs differ in config: {cfg_a} vs {cfg_b}")
    out["config"] = dict(base["config"], regions=",".join(sorted({row["region"] for row in rows})))
    print_table(out["summary"])
    write_json(out_path, out)
    return 0


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
    ap.add_argument("--first-repeat", type=int, default=0,
                    help="seeds are 1000 * region + repeat; repeats 0-1 of A and B were used to choose the design, "
                         "so 2 (or regions C, D) give cases never looked at")
    ap.add_argument("--models", default=",".join(MODEL_NAMES))
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--max-train-seconds", type=float, default=None, help="wall budget per training")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--side", type=int, default=None, help="pixels per region = side^2")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on shared cores)")
    ap.add_argument("--target", default=None, choices=["increments", "harmonic_residual"],
                    help="what the networks model: 12-day increments (paper) or the residual about a per-pixel "
                    "trend + annual + semi-annual fit")
    ap.add_argument("--factor-future", default=None, choices=["predicted", "climatology"],
                    help="factors fed back in the cyclic loop: the model's predictions (paper) or their climatology")
    ap.add_argument("--max-train-cpu-seconds", type=float, default=None, help="CPU budget per training")
    ap.add_argument("--mp-pixels", type=int, default=None, help="pixels timed for the per-megapixel cost")
    ap.add_argument("--rollout", type=int, default=None, help="K free-running steps in the training loss (1 = paper)")
    ap.add_argument("--max-samples", type=int, default=None, help="training + validation windows per case")
    ap.add_argument("--lr", type=float, default=None, help="Nadam learning rate")
    ap.add_argument("--train-factor-climatology", type=float, default=None, metavar="P",
                    help="train as you forecast: share of training windows of the factor models whose factors are "
                    "replaced by their climatology (0 = paper)")
    ap.add_argument("--merge", type=Path, nargs="+", default=None,
                    help="merge the rows (and timings / demo stage) of runs with the same config into --json")
    ap.add_argument("--paper-gler", action="store_true", help="add GLER trained and run as the paper (gler_paper)")
    ap.add_argument("--with-demo-stage", action="store_true", help="also time the demo's forecast stage kernels")
    ap.add_argument("--demo-stage", action="store_true", help="only time the demo's forecast stage kernels")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    if args.merge:
        return merge(args.merge, args.json)
    if args.demo_stage:
        kw = {"side": 16, "train_pixels": 100, "max_seconds": 5.0} if args.quick else {}
        out = {"demo_stage": demo_stage(**kw), "torch": torch.__version__, "cpu_count": os.cpu_count()}
        print(json.dumps(out, indent=1))
        write_json(args.json, out)
        return 0
    # defaults sized for 2 shared CPU cores: training budgets in CPU seconds, so that a busy machine changes
    # the wall time but not the results
    cfg = dict(regions="A,B", repeats=2, side=20, history=110, window=None, max_samples=3000, epochs=10,
               batch_size=128, lr=2e-3, early_stop=6, max_train_seconds=None, max_train_cpu_seconds=12.0,
               width=16, rnn_layers=2, mp_pixels=1000, target="increments", factor_future="predicted", rollout=1,
               train_factor_climatology=0.0)
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
    for k in ("max_train_seconds", "epochs", "side", "target", "factor_future", "max_train_cpu_seconds",
              "mp_pixels", "rollout", "max_samples", "lr", "train_factor_climatology"):
        if getattr(args, k) is not None:
            cfg[k] = getattr(args, k)
    cfg["paper_gler"] = args.paper_gler
    cfg["first_repeat"] = args.first_repeat
    ns = argparse.Namespace(**cfg)
    device = str(resolve_device(args.device))
    models = [m for m in args.models.split(",") if m]
    unknown = set(models) - set(MODEL_NAMES)
    if unknown:
        ap.error(f"unknown models {sorted(unknown)}")
    rows, timings = [], {}
    t0 = time.perf_counter()
    for region in cfg["regions"].split(","):
        for rep in range(args.first_repeat, args.first_repeat + cfg["repeats"]):
            run_case(region, 1000 * (ord(region) - 64) + rep, ns, models, device, rows, timings)
    summary = summarize(rows)
    print_table(summary)
    if "megapixel" in timings:
        mp = timings["megapixel"]
        print(f"\nforecast 72 steps of a megapixel (timed on {mp['pixels_timed']} pixels): GLER "
              f"{mp['gler_cpu_seconds_per_megapixel']:.0f} CPU s ({mp['gler_seconds_per_megapixel']:.0f} s wall), "
              f"session-1 loop {mp['session1_cpu_seconds_per_megapixel']:.0f} CPU s "
              f"({mp['session1_seconds_per_megapixel']:.0f} s wall): {mp['speedup_cpu']:.2f}x CPU; "
              f"harmonic {mp['harmonic_seconds_per_megapixel']:.3f} s; load average {mp['load_average']}")
    print("train seconds:", {k: round(v, 1) for k, v in summary["train_seconds"].items()})
    demo = None
    if args.with_demo_stage:
        demo = demo_stage()
        print("demo stage:", json.dumps(demo))
    out = {"demo_stage": demo, "config": cfg, "device": device, "torch": torch.__version__, "host": platform.node(),
           "cpu_count": os.cpu_count(), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
           "ef_models": list(EF_MODELS), "timings": timings, "summary": summary, "rows": rows,
           "wall_seconds": time.perf_counter() - t0}
    write_json(args.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
