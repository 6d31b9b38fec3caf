"""CLI sub-commands of the forecast stage: ``forecast`` and ``simulate-factors``."""

from __future__ import annotations

import argparse
import json

from insarcloud.cliargs import (
    add_model_options,
    check_bbox,
    nonnegative_int,
    params_from_args,
    positive_float,
    positive_int,
)
from insarcloud.config import ForecastParams

#: ForecastParams field -> CLI flag (and the namespace name where it differs)
FLAGS = {"model": "--model", "horizon": ("--steps", "steps"), "train_pixels": "--train-pixels", "epochs": "--epochs",
         "early_stop": "--early-stop", "max_train_seconds": "--max-train-seconds", "num_actors": ("--actors", "actors"),
         "target": "--target", "factor_future": "--factor-future", "seed": "--seed",
         "warm_start_epochs": "--warm-start-epochs"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("forecast", help="train a deformation forecaster with environmental factors and "
                       "write the cube's forecast group (Ray actors)")
    p.add_argument("cube_url", help="frame cube URL with a ts_* group")
    p.add_argument("--factors", required=True, help="LST/NDVI/precipitation source: Zarr, .nc, or a prefix "
                   "with lst.tif, ndvi.tif, precip.tif time stacks")
    p.add_argument("--ts", default=None, help="ts group to forecast (default: the invert stage's current output)")
    p.add_argument("--group", default="forecast", help="output group (default forecast)")
    p.add_argument("--ray-address", default=None, help="Ray address (default: $INSARCLOUD_RAY_ADDRESS or local)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="batch size (Table III: 64)")
    p.add_argument("--lr", type=positive_float, default=1e-4, help="Nadam learning rate (Table III: 1e-4)")
    p.add_argument("--num-cpus", type=positive_int, default=None, help="CPUs for a local Ray")
    p.add_argument("--rollout", type=positive_int, default=1, help="train on K free-running steps (1 = paper)")
    # the area config's params.forecast, one definition (the Table III training options above stay CLI-only)
    add_model_options(p, ForecastParams, FLAGS, bounds_at_parse=True)
    p.set_defaults(func=run_forecast_cmd)

    s = sub.add_parser("simulate-factors", help="simulate LST/NDVI/precipitation for a region and write them")
    s.add_argument("url", help="output: .zarr store, .nc file, or a prefix for GeoTIFF stacks")
    s.add_argument("--format", default="zarr", choices=["zarr", "netcdf", "geotiff"])
    s.add_argument("--bbox", type=float, nargs=4, metavar=("W", "S", "E", "N"), required=True)
    s.add_argument("--spacing", type=positive_float, default=0.01, help="grid spacing in degrees (default 0.01)")
    s.add_argument("--start", required=True, help="first date, YYYY-MM-DD")
    s.add_argument("--end", required=True, help="last date, YYYY-MM-DD")
    s.add_argument("--seed", type=nonnegative_int, default=0)
    s.set_defaults(func=run_simulate_factors)


def run_forecast_cmd(args: argparse.Namespace) -> int:
    from insarcloud.engines import init_ray
    from insarcloud.forecast.serve import run_forecast
    from insarcloud.io.cube import require_input

    require_input(args.cube_url, args.ts, fix="run insarcloud invert CUBE --weights W first (it writes ts_W), "
                  "or pass --ts with one of the cube's ts_* groups")  # before Ray starts
    init_ray(args.ray_address, num_cpus=args.num_cpus)
    p = params_from_args(ForecastParams, args, FLAGS)
    s = run_forecast(
        args.cube_url, args.factors, model=p.model, ts_group=args.ts, out_group=args.group,
        train_pixels=p.train_pixels, n_steps=p.horizon, n_actors=p.num_actors, seed=p.seed,
        target=p.target, factor_future=p.factor_future, rollout=args.rollout, warm_start_epochs=p.warm_start_epochs,
        train_cfg={"epochs": p.epochs, "batch_size": args.batch_size, "lr": args.lr,
                   "early_stop": p.early_stop, "max_seconds": p.max_train_seconds},
    )
    if s.skipped:
        print(f"group {s.group} is already complete with these parameters; nothing to do")
        return 0
    print(f"{s.model}: window {s.window}, trained on {s.train.get('n_train')} windows in "
          f"{s.train.get('seconds', 0):.1f} s ({s.train.get('device')})")
    print("held-out one-step (sampled pixels):", json.dumps(s.train.get("one_step")))
    print(f"forecast {s.n_steps} steps for {s.n_pixels} pixels in {s.seconds:.1f} s; "
          f"one-step test RMSE over the cube {s.test['rmse']:.3f} mm")
    print(f"group: {args.cube_url} / {s.group}")
    return 0


def run_simulate_factors(args: argparse.Namespace) -> int:
    import numpy as np

    from insarcloud.simulate.factors import simulate_factors, write_factor_stack

    check_bbox(args.bbox)
    w, s_, e, n = args.bbox
    y = np.arange(n - args.spacing / 2, s_, -args.spacing)
    x = np.arange(w + args.spacing / 2, e, args.spacing)
    f = simulate_factors(args.start, args.end, y, x, rng=np.random.default_rng(args.seed))
    urls = write_factor_stack(f, args.url, args.format)
    print("wrote", ", ".join(urls))
    return 0
