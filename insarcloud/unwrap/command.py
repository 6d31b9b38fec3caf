"""CLI: ``insarcloud unwrap CUBE_URL --method METHOD [--source phase] [--scheduler ADDR]``."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from insarcloud.cliargs import add_model_options, check_tile_overlap, params_from_args
from insarcloud.config import UnwrapParams
from insarcloud.errors import InsarcloudError

log = logging.getLogger(__name__)

#: UnwrapParams field -> CLI flag (the area config's params.unwrap: one definition of choices, bounds, defaults)
FLAGS = {"method": "--method", "tile": "--tile", "overlap": "--overlap"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("unwrap", help="unwrap every pair of a frame cube into its unw_<method> group")
    p.add_argument("cube_url", help="frame cube, e.g. s3://bucket/cubes/106A_09048_000909.zarr")
    p.add_argument("--source", default="phase", help="wrapped-phase variable (pair, y, x); default phase")
    p.add_argument("--weights", choices=("coh", "none"), default=None,
                   help="LS weights (default: coh for wls/snaphu/multiscale, none otherwise)")
    p.add_argument("--smooth", action="store_true",
                   help="write the method's smooth estimate instead of the congruent result "
                        "(wrap(unw) == phase by default)")
    add_model_options(p, UnwrapParams, FLAGS, bounds_at_parse=True)  # --method, --tile, --overlap
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="kernel parameter, e.g. --param min_cutoff=0.05 (JSON value)")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address (default: "
                   "$INSARCLOUD_DASK_SCHEDULER or a LocalCluster)")
    p.set_defaults(func=run_unwrap)


def _parse_params(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InsarcloudError(f"--param expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def run_unwrap(args: argparse.Namespace) -> int:
    from insarcloud.engines import dask_client
    from insarcloud.unwrap.dask_ops import unwrap_cube

    try:
        check_tile_overlap(args.tile, args.overlap, "--overlap")  # before any cluster starts
        up = params_from_args(UnwrapParams, args, FLAGS)
        params = _parse_params(args.param)
        params.setdefault("congruent", not args.smooth)
        from insarcloud.io.cube import require_input  # the input, before the cluster starts

        require_input(args.cube_url, args.source, root_ok=True,
                      fix="pass --source phase (the wrapped phase that insarcloud ingest writes)")
        with dask_client(args.scheduler):
            res = unwrap_cube(args.cube_url, up.method, source=args.source, weights=args.weights,
                              params=params, tile=up.tile, overlap=up.overlap)
    except InsarcloudError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    state = "already complete (no-op)" if res.skipped else "written"
    print(f"{args.cube_url} group {res.group}: {state}")
    return 0
