"""CLI: ``insarcloud plot CUBE_URL --stage S [--group G] [--out DIR]`` (re)makes a stage's quicklook PNGs."""

from __future__ import annotations

import argparse
import sys

from insarcloud.errors import InsarcloudError

STAGES = ("qc", "quality", "invert", "ts", "noise")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="(re)make a stage's quicklook PNGs beside its group (or into --out)",
                       description="Draw the quicklooks of one stage's group: qc (network by coherence and by "
                       "QC label, coherence matrix, loop closure), quality (mean quality), invert/ts (velocity "
                       "with reference point and mask, precision), noise (noise model maps). They are written "
                       "to {cube}/{group}/quicklooks/ and listed in the group's 'quicklooks' attribute.")
    p.add_argument("cube_url", help="frame cube URL")
    p.add_argument("--stage", required=True, choices=STAGES, help="stage whose group to draw (ts = invert)")
    p.add_argument("--group", default=None, help="group (default: the stage's group, e.g. qc, the first ts_*)")
    p.add_argument("--out", default=None, help="local folder to write the PNGs to instead of beside the group")
    p.add_argument("--dpi", type=int, default=100, help="PNG resolution (default 100)")
    p.set_defaults(func=run_plot)


def run_plot(args: argparse.Namespace) -> int:
    from insarcloud.plot.quicklooks import default_group, write_quicklooks

    try:
        group = args.group or default_group(args.cube_url, args.stage)
        paths = write_quicklooks(args.cube_url, group, args.stage, out_dir=args.out, dpi=args.dpi)
    except InsarcloudError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    where = args.out or f"{args.cube_url.rstrip('/')}/{group}"
    for p in paths:
        print(p if args.out else f"{where}/{p}")
    return 0
