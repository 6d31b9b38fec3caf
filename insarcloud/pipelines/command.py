"""CLI sub-command ``insarcloud run CONFIG.yaml``.

The same as ``python -m insarcloud.pipelines.area_job CONFIG.yaml``.
"""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run an area job: every stage for every frame, the mosaic and the report")
    p.add_argument("config", help="CONFIG.yaml (local path or URL)")
    p.add_argument("--json", default=None, help="write the run summary (JSON) here")
    p.add_argument("--update", action="store_true",
                   help="bring existing outputs up to date with new LiCSAR products. Every run does this (a stage "
                   "recomputes when its inputs' fingerprint changed, docs/STAGES.md); either way the run prints "
                   "per frame and stage what it recomputed and why")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from insarcloud.pipelines.area_job import run_from_path

    return run_from_path(args.config, args.json)
