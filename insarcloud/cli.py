"""``insarcloud`` command line: thin — parse, call one stage function, report.

Each stage registers its own sub-commands from ``insarcloud/<stage>/command.py`` (``add_parser``), so the
stages stay independent and this file only lists them.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import warnings

# Sub-command modules in pipeline order; a missing one is an installation error, reported by name.
COMMAND_MODULES = (
    "insarcloud.simulate.command",
    "insarcloud.io.command",
    "insarcloud.qc.command",
    "insarcloud.qc.command_model",
    "insarcloud.unwrap.command",
    "insarcloud.invert.command",
    "insarcloud.noise.command",
    "insarcloud.forecast.command",
    "insarcloud.pipelines.command",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="insarcloud", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="-v info, -vv debug")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            if importlib.util.find_spec(name) is None:
                continue
        except ModuleNotFoundError:
            continue
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from insarcloud.logs import ENV_LEVEL, configure_logging

    configure_logging(args.verbose, os.environ.get(ENV_LEVEL))  # $INSARCLOUD_LOG_LEVEL: set by the helm chart
    if args.verbose == 0:
        warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        return int(args.func(args) or 0)
    except Exception as exc:  # the CLI's job is a clear one-line message; -vv shows the traceback
        from insarcloud.errors import InsarcloudError

        if isinstance(exc, InsarcloudError) and args.verbose < 2:
            print(f"insarcloud {args.command}: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
