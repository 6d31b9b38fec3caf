"""What the forecast's warm start costs and gives on an update (docs/forecast.md, "Updates").

    python benchmarks/forecast_warm.py --json bench-output/forecast_warm.json [--dates 120] [--plus 1 5]
        [--epochs 32] [--warm-epochs 4] [--repeats 3]

A simulated permafrost region (``insarcloud.simulate.factors.simulate_region``, factors and LOS series with a
known generator). The base model is trained from scratch on the first ``dates - k`` epochs; the update then
trains on all ``dates`` epochs either from scratch (``--epochs``, the anchor) or from the base model's weights
(``--warm-epochs``). Per case: CPU seconds of the training (this process, one torch thread, as in the Ray
task), the one-step and the cyclic RMSE on the held-out last 10 dates (mm), for ``--repeats`` seeds.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import write_json  # noqa: E402

from insarcloud.forecast.serve import train_from_arrays  # noqa: E402
from insarcloud.forecast.sources import factors_on_grid, open_factors  # noqa: E402
from insarcloud.simulate.factors import simulate_region, write_factor_stack  # noqa: E402

MODEL_CFG: dict = {}  # the model's defaults


def _arrays(seed: int, n_dates: int, size: int) -> tuple:
    r = simulate_region(size, size, n_dates=n_dates, rng=np.random.default_rng(seed))
    with tempfile.TemporaryDirectory() as tmp:
        write_factor_stack(r.factors, f"{tmp}/f.zarr", "zarr", None)
        f = factors_on_grid(open_factors(f"{tmp}/f.zarr", None), r.dates, r.y, r.x)
    return r.ts.displacement.reshape(n_dates, -1), f.reshape(3, n_dates, -1), r.dates


def _train(d, f, dates, n, epochs, seed, init=None, init_epochs=None, window=None) -> tuple[dict, float]:
    c0 = time.process_time()
    out = train_from_arrays(d[:n], f[:, :n], "gler", {"epochs": epochs, "seed": seed}, MODEL_CFG, window, 10, seed,
                            dates[:n], init_state=init, init_epochs=init_epochs)
    return out, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--dates", type=int, default=120)
    ap.add_argument("--size", type=int, default=16, help="pixels per side of the region (all are trained on)")
    ap.add_argument("--plus", type=int, nargs="*", default=[1, 5])
    ap.add_argument("--epochs", type=int, default=32)
    ap.add_argument("--warm-epochs", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for seed in range(args.repeats):
        d, f, dates = _arrays(seed, args.dates, args.size)
        scratch, cs = _train(d, f, dates, args.dates, args.epochs, seed)
        for k in args.plus:
            base, cb = _train(d, f, dates, args.dates - k, args.epochs, seed)
            warm, cw = _train(d, f, dates, args.dates, args.epochs, seed, init=base["state"],
                              init_epochs=args.warm_epochs, window=base["window"])  # as run_forecast does
            row = {"seed": seed, "plus": k,
                   "scratch": {"cpu_s": round(cs, 2), "epochs": scratch["epochs"],
                               "one_step_rmse_mm": scratch["one_step"]["rmse"],
                               "cyclic_rmse_mm": scratch["cyclic"]["rmse"]},
                   "warm": {"cpu_s": round(cw, 2), "epochs": warm["epochs"], "warm_start": warm["warm_start"],
                            "one_step_rmse_mm": warm["one_step"]["rmse"], "cyclic_rmse_mm": warm["cyclic"]["rmse"]},
                   "base_cpu_s": round(cb, 2)}
            row["cpu_ratio_warm_vs_scratch"] = round(cw / max(cs, 1e-9), 3)
            rows.append(row)
            print(f"seed {seed} +{k}: scratch {cs:6.1f} CPU-s one-step {scratch['one_step']['rmse']:.3f} "
                  f"cyclic {scratch['cyclic']['rmse']:.3f} mm | warm {cw:6.1f} CPU-s one-step "
                  f"{warm['one_step']['rmse']:.3f} cyclic {warm['cyclic']['rmse']:.3f} mm "
                  f"(ratio {row['cpu_ratio_warm_vs_scratch']:.3f})", flush=True)

    def mean(side: str, key: str) -> float:
        return round(float(np.mean([r[side][key] for r in rows])), 4)

    summary = {"cpu_ratio_warm_vs_scratch": round(float(np.mean([r["cpu_ratio_warm_vs_scratch"] for r in rows])), 3),
               **{f"{s}_{k}": mean(s, k) for s in ("scratch", "warm") for k in ("one_step_rmse_mm", "cyclic_rmse_mm")}}
    out = {"benchmark": "forecast_warm", "args": vars(args), "rows": rows, "summary": summary,
           "load_avg_1m_at_end": round(os.getloadavg()[0], 1)}
    print(json.dumps(summary, indent=1))
    write_json(args.json, out)


if __name__ == "__main__":
    main()
