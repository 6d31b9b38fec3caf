"""``insarcloud`` command line: thin — parse, call one stage function, report.

Each stage registers its own sub-commands from ``insarcloud/<stage>/command.py`` (``add_parser``), so the
stages stay independent and this file only lists them. Building the parser imports only those command
modules, which import nothing heavy at module level (numpy, dask, xarray, zarr, torch, ray, matplotlib are
imported inside the ``run_*`` functions; the stage packages export their names lazily, insarcloud/_lazy.py):
``insarcloud --help`` costs a fraction of a CPU-second, and tests/test_cli.py checks the heavy libraries stay
out of ``sys.modules``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

# Sub-command modules in pipeline order; a missing or broken one is an installation error, reported by name.
COMMAND_MODULES = (
    "insarcloud.simulate.command",
    "insarcloud.io.command",
    "insarcloud.io.gc_command",
    "insarcloud.qc.command",
    "insarcloud.qc.command_model",
    "insarcloud.unwrap.command",
    "insarcloud.invert.command",
    "insarcloud.noise.command",
    "insarcloud.forecast.command",
    "insarcloud.pipelines.command",
    "insarcloud.plot.command",
    "insarcloud.export.command",
    "insarcloud.view.command",
    "insarcloud.config_command",
)


class CommandModuleError(ImportError):
    """A sub-command module could not be imported: the installation is broken (never skipped silently)."""


def package_version() -> str:
    """The installed distribution's version (``importlib.metadata``), else the source tree's ``__version__``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("insarcloud")
    except PackageNotFoundError:
        from insarcloud import __version__

        return __version__


class _VersionAction(argparse.Action):
    """``--version`` that reads the version only when asked (importlib.metadata costs a few ms)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest=dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the installed version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"insarcloud {package_version()}")  # stdout, as argparse's own "version" action does
        parser.exit()


def load_command_module(name: str):  # type: ignore[no-untyped-def]
    """Import one sub-command module; an ImportError becomes a CommandModuleError naming the module."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise CommandModuleError(f"insarcloud: cannot import the sub-command module {name}: "
                                 f"{type(exc).__name__}: {exc} (is the installation complete?)") from exc


def build_parser(modules: tuple[str, ...] = COMMAND_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="insarcloud", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="-v info, -vv debug")
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in modules:
        load_command_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
    except CommandModuleError as exc:
        print(exc, file=sys.stderr)
        return 3
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
