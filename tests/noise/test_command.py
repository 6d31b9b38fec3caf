from __future__ import annotations

import argparse

import pytest

from insarcloud.errors import ConfigError
from insarcloud.noise.command import add_parser, run_noise


def _parse(*argv: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    add_parser(ap.add_subparsers())
    return ap.parse_args(["noise", *argv])


def test_parser_defaults_and_options() -> None:
    a = _parse("s3://b/cubes/F.zarr")
    # no --ts: the invert stage's current output (its pointer in the cube, docs/STAGES.md)
    assert (a.ts, a.class_size, a.classes, a.scheduler, a.func) == (None, 1000, "tiles", None, run_noise)
    a = _parse("s3://b/c.zarr", "--ts", "ts_none", "--class-size", "400", "--classes", "segments",
               "--scheduler", "tcp://h:8786", "--flicker", "flicker_powerlaw")
    assert (a.ts, a.class_size, a.classes, a.scheduler, a.flicker) == ("ts_none", 400, "segments", "tcp://h:8786",
                                                                       "flicker_powerlaw")
    assert (a.selection, a.level) == ("lrt", 0.05)
    a = _parse("s3://b/c.zarr", "--selection", "aic", "--level", "0.1")
    assert (a.selection, a.level) == ("aic", 0.1)
    with pytest.raises(SystemExit):
        _parse("x", "--classes", "hexagons")


def test_bad_class_size_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="class-size"):
        run_noise(_parse("s3://b/c.zarr", "--class-size", "2"))
    with pytest.raises(ConfigError, match="level"):
        run_noise(_parse("s3://b/c.zarr", "--level", "1.5"))
