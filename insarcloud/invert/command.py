"""``insarcloud invert``: weighted SBAS/NSBAS inversion of a frame cube into ``ts_<weights>``."""

from __future__ import annotations

import argparse
import json
import logging

from insarcloud.cliargs import add_model_options, float_range, nonnegative_int, params_from_args, positive_int
from insarcloud.config import InvertParams
from insarcloud.core.options import DEFAULT_INVERT_WEIGHTS
from insarcloud.errors import ConfigError

log = logging.getLogger(__name__)

#: InvertParams field -> CLI flag (and the namespace name where it differs); --weights also takes a variable
#: name, so it stays a plain option with the shared default
FLAGS = {"quality_floor": "--quality-floor", "nsbas_gamma": ("--gamma", "gamma"),
         "correct_unwrap": "--correct-unwrap", "gacos": "--gacos", "gacos_missing": "--gacos-missing"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "invert", help="quality-weighted SBAS/NSBAS time-series inversion of a frame cube",
        description="Invert the interferograms of CUBE_URL into a ts_<weights> group: displacement "
                    "(date, y, x) mm LOS positive toward the satellite, velocity, velocity_std, "
                    "residual_rms, n_pairs_used.")
    p.add_argument("cube_url", metavar="CUBE_URL")
    p.add_argument("--weights", default=DEFAULT_INVERT_WEIGHTS,
                   help="none | coherence | quality | closure | quality_closure | the name of any "
                        f"(pair, y, x) variable or group (default {DEFAULT_INVERT_WEIGHTS}, as in the area config; "
                        "it needs the quality group). closure: each pixel-pair weighed by its loop closures; "
                        "quality_closure: the quality weight times that")
    p.add_argument("--source", default="unw", help="unw (root) or unw_METHOD (an unwrap group)")
    p.add_argument("--ref-y", type=nonnegative_int, help="reference pixel row (with --ref-x)")
    p.add_argument("--ref-x", type=nonnegative_int, help="reference pixel column (with --ref-y)")
    p.add_argument("--ref-lat", type=float_range(-90.0, 90.0), help="reference latitude (with --ref-lon)")
    p.add_argument("--ref-lon", type=float_range(-180.0, 180.0), help="reference longitude (with --ref-lat)")
    add_model_options(p, InvertParams, FLAGS)  # the area config's params.invert, one definition
    p.add_argument("--chunk", type=positive_int, default=None, help="spatial chunk of a task (default: the cube's)")
    p.add_argument("--group", default=None, help="output group (default ts_<weights>)")
    p.add_argument("--scheduler", default=None,
                   help="Dask scheduler address (default $INSARCLOUD_DASK_SCHEDULER, else a LocalCluster)")
    p.add_argument("--workers", type=positive_int, default=None, help="LocalCluster worker processes")
    p.set_defaults(func=run_invert)


def _reference(args: argparse.Namespace) -> tuple[tuple[int, int] | None, tuple[float, float] | None]:
    yx = (args.ref_y, args.ref_x)
    ll = (args.ref_lat, args.ref_lon)
    if (yx[0] is None) != (yx[1] is None):
        raise ConfigError("--ref-y and --ref-x go together")
    if (ll[0] is None) != (ll[1] is None):
        raise ConfigError("--ref-lat and --ref-lon go together")
    if yx[0] is not None and ll[0] is not None:
        raise ConfigError("give the reference as --ref-y/--ref-x or as --ref-lat/--ref-lon, not both")
    return (yx if yx[0] is not None else None), (ll if ll[0] is not None else None)


def run_invert(args: argparse.Namespace) -> int:
    from insarcloud.engines import dask_client
    from insarcloud.invert.dask_ops import invert_cube

    params = params_from_args(InvertParams, args, FLAGS)
    ref_yx, ref_ll = _reference(args)
    from insarcloud.io.cube import require_input  # inputs, before the cluster starts

    require_input(args.cube_url, args.source, root_ok=True,
                  fix="unwrap first (insarcloud unwrap CUBE --method M writes unw_M), then pass --source unw_M")
    if args.weights in ("quality", "quality_closure"):
        require_input(args.cube_url, "quality", root_ok=True, fix="run insarcloud quality CUBE first, or choose "
                      "--weights none, coherence or closure")
    with dask_client(args.scheduler, n_workers=args.workers):
        group, plan = invert_cube(args.cube_url, weights=args.weights, source=args.source, gamma=params.nsbas_gamma,
                                  ref_yx=ref_yx, ref_latlon=ref_ll, chunk=args.chunk, group=args.group,
                                  quality_floor=params.quality_floor, correct_unwrap=params.correct_unwrap,
                                  gacos=params.gacos, gacos_missing=params.gacos_missing)
    report = {"group": group, "skipped": plan is None}
    if plan is not None:
        report.update({"reference": plan.reference._asdict(), "network_components": plan.n_components,
                       "pairs_dropped_by_reference": plan.pairs_dropped_by_reference})
        print(plan.network_summary)
    print(json.dumps(report, default=str))
    return 0
