"""CLI sub-command ``gc``: remove a cube's stage outputs that no stage pointer references (docs/STAGES.md)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gc", help="remove stage groups of a cube that no stage pointer references (older outputs)",
                       description="Removes only groups written by an insarcloud stage (completion marker present) "
                       "that are not any stage's current output; everything else is kept.")
    p.add_argument("cube_url", help="frame cube URL, e.g. s3://bucket/cubes/106A_09048_000909.zarr")
    p.add_argument("--dry-run", action="store_true", help="print what would be removed; remove nothing")
    p.set_defaults(func=run_gc)


def run_gc(args: argparse.Namespace) -> int:
    from insarcloud.io.stages import gc

    plan = gc(args.cube_url, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for name in plan.remove:
        print(f"{verb} {name}")
    for name, why in plan.keep.items():
        print(f"kept {name}: {why}")
    if not plan.remove:
        print("nothing to remove")
    return 0
