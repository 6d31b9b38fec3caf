"""``insarcloud noise``: noise and spatial covariance of a ts group by multivariate LS-VCE."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from insarcloud.cliargs import add_model_options, params_from_args, positive_int
from insarcloud.config import NoiseParams
from insarcloud.core.options import NOISE_GROUP

log = logging.getLogger(__name__)

#: NoiseParams field -> CLI flag
FLAGS = {"class_size": "--class-size", "classes": "--classes", "sigma_model": "--sigma-model",
         "flicker": "--flicker", "alpha_method": "--alpha-method", "selection": "--selection", "level": "--level",
         "functional": "--functional", "model_stride": "--model-stride"}


def noise_opts(p: NoiseParams) -> dict[str, Any]:
    """The estimator options ``noise_cube`` takes (``opts``) from the stage's parameters; the CLI and the area
    job pass the same dict for the same parameters."""
    return {"sigma_model": p.sigma_model, "flicker": p.flicker, "alpha_method": p.alpha_method,
            "functional": p.functional, "selection": p.selection, "level": p.level}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "noise", help="noise model and spatial covariance of a ts group (multivariate LS-VCE)",
        description="Estimate per class the temporal noise (white, AR(1), flicker by LS-VCE, model chosen "
                    "by likelihood), Sigma and its Gaussian covariance C0 exp(-r^2/d^2), and per pixel the "
                    "velocity precision with and without the noise model; writes the `noise` group.")
    p.add_argument("cube_url", metavar="CUBE_URL")
    p.add_argument("--ts", default=None, help="input ts group (default: the invert stage's current output)")
    add_model_options(p, NoiseParams, FLAGS)  # the area config's params.noise, one definition
    p.add_argument("--group", default=NOISE_GROUP, help=f"output group (default {NOISE_GROUP})")
    p.add_argument("--scheduler", default=None,
                   help="Dask scheduler address (default $INSARCLOUD_DASK_SCHEDULER, else a LocalCluster)")
    p.add_argument("--workers", type=positive_int, default=None, help="LocalCluster worker processes")
    p.set_defaults(func=run_noise)


def run_noise(args: argparse.Namespace) -> int:
    from insarcloud.engines import dask_client
    from insarcloud.noise.dask_ops import noise_cube

    params = params_from_args(NoiseParams, args, FLAGS)
    opts = noise_opts(params)
    from insarcloud.io.cube import require_input  # the input, before the cluster starts

    require_input(args.cube_url, args.ts, fix="run insarcloud invert CUBE --weights W first (it writes ts_W), "
                  "or pass --ts with one of the cube's ts_* groups")
    with dask_client(args.scheduler, n_workers=args.workers):
        group, skipped = noise_cube(args.cube_url, ts_group=args.ts, group=args.group, classes=params.classes,
                                    class_size=params.class_size, opts=opts, model_stride=params.model_stride)
    print(json.dumps({"group": group, "skipped": skipped}))
    return 0
