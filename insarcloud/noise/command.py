"""``insarcloud noise``: noise and spatial covariance of a ts group by multivariate LS-VCE."""

from __future__ import annotations

import argparse
import json
import logging

from insarcloud.cliargs import positive_int
from insarcloud.errors import ConfigError

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "noise", help="noise model and spatial covariance of a ts group (multivariate LS-VCE)",
        description="Estimate per class the temporal noise (white, AR(1), flicker by LS-VCE, model chosen "
                    "by likelihood), Sigma and its Gaussian covariance C0 exp(-r^2/d^2), and per pixel the "
                    "velocity precision with and without the noise model; writes the `noise` group.")
    p.add_argument("cube_url", metavar="CUBE_URL")
    p.add_argument("--ts", default=None, help="input ts group (default: the invert stage's current output)")
    p.add_argument("--class-size", type=int, default=1000, help="pixels per class (default 1000)")
    p.add_argument("--classes", choices=("tiles", "segments"), default="tiles",
                   help="spatial tiles (default) or segments of the velocity map")
    p.add_argument("--sigma-model", choices=("gaussian", "full", "diagonal"), default="gaussian",
                   help="Sigma in the iteration: gaussian (default; any r), full (eq. 8; needs r < m - n)")
    p.add_argument("--flicker", choices=("flicker", "flicker_powerlaw"), default="flicker",
                   help="flicker cofactor: eq. 6 (default) or the GNSS power law")
    p.add_argument("--alpha-method", choices=("likelihood", "wtest"), default="likelihood",
                   help="AR(1) alpha by restricted likelihood (default) or by the w-test of eq. 5")
    p.add_argument("--selection", choices=("lrt", "aic"), default="lrt",
                   help="model choice: boundary likelihood-ratio tests from the 3-component model (default) "
                        "or Akaike's penalty")
    p.add_argument("--level", type=float, default=0.05,
                   help="test level of --selection lrt (default 0.05: chance of keeping an absent component)")
    p.add_argument("--functional", choices=("seasonal", "linear"), default="seasonal",
                   help="functional model: eq. 13 (default) or offset + rate")
    p.add_argument("--group", default="noise", help="output group (default noise)")
    p.add_argument("--scheduler", default=None,
                   help="Dask scheduler address (default $INSARCLOUD_DASK_SCHEDULER, else a LocalCluster)")
    p.add_argument("--workers", type=positive_int, default=None, help="LocalCluster worker processes")
    p.set_defaults(func=run_noise)


def run_noise(args: argparse.Namespace) -> int:
    from insarcloud.engines import dask_client
    from insarcloud.noise.dask_ops import noise_cube

    if args.class_size < 4:
        raise ConfigError(f"--class-size must be >= 4, got {args.class_size}")
    if not 0.0 < args.level < 1.0:
        raise ConfigError(f"--level must be in (0, 1), got {args.level}")
    opts = {"sigma_model": args.sigma_model, "flicker": args.flicker, "alpha_method": args.alpha_method,
            "functional": args.functional, "selection": args.selection, "level": args.level}
    from insarcloud.io.cube import require_input  # the input, before the cluster starts

    require_input(args.cube_url, args.ts, fix="run insarcloud invert CUBE --weights W first (it writes ts_W), "
                  "or pass --ts with one of the cube's ts_* groups")
    with dask_client(args.scheduler, n_workers=args.workers):
        group, skipped = noise_cube(args.cube_url, ts_group=args.ts, group=args.group, classes=args.classes,
                                    class_size=args.class_size, opts=opts)
    print(json.dumps({"group": group, "skipped": skipped}))
    return 0
