"""``insarcloud config``: print the commented config template, or check a config file.

``insarcloud config --template > area.yaml`` writes every key of the area-job config with its default, unit,
bounds and allowed values (generated from the models, :mod:`insarcloud.config_template`);
``insarcloud config --check area.yaml`` validates a file and names every bad key at once.
"""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("config", help="print the commented config template (--template) or check a config",
                              description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--template", action="store_true", help="print a commented YAML with every key and its default")
    g.add_argument("--check", metavar="CONFIG", help="validate CONFIG (path or URL) and print the frames and stages")
    p.set_defaults(func=run_config)


def run_config(args: argparse.Namespace) -> int:
    if args.template:
        from insarcloud.config_template import template_yaml

        sys.stdout.write(template_yaml())
        return 0
    from insarcloud.config import load_config

    cfg = load_config(args.check)  # ConfigError -> the CLI prints every bad key
    frames = ", ".join(cfg.frames) if cfg.frames else f"from index {cfg.frame_index_url}"
    print(f"{args.check}: valid (area {cfg.area.name}; frames {frames}; stages {', '.join(cfg.ordered_stages())})")
    return 0
