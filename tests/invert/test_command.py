from __future__ import annotations

import argparse

import pytest

from insarcloud.errors import ConfigError
from insarcloud.invert.command import _reference, add_parser, run_invert


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["invert", *argv])


def test_parser_defaults_and_reference_forms():
    args = _parse(["s3://b/cubes/f.zarr"])
    assert args.weights == "quality_closure" and args.source == "unw" and args.gamma == 1e-4 and args.func is run_invert
    assert _reference(args) == (None, None)
    args = _parse(["s3://b/c.zarr", "--weights", "quality", "--ref-y", "3", "--ref-x", "4", "--gamma", "0"])
    assert _reference(args) == ((3, 4), None) and args.weights == "quality" and args.gamma == 0
    args = _parse(["c.zarr", "--ref-lat", "31.5", "--ref-lon", "90.1", "--source", "unw_snaphu"])
    assert _reference(args) == (None, (31.5, 90.1)) and args.source == "unw_snaphu"


@pytest.mark.parametrize("argv, msg", [
    (["--ref-y", "3"], "--ref-y and --ref-x"),
    (["--ref-lat", "3"], "--ref-lat and --ref-lon"),
    (["--ref-y", "1", "--ref-x", "2", "--ref-lat", "3", "--ref-lon", "4"], "not both"),
])
def test_reference_argument_errors(argv, msg):
    with pytest.raises(ConfigError, match=msg):
        _reference(_parse(["c.zarr", *argv]))


def test_negative_gamma_is_refused_before_any_cluster_starts():
    with pytest.raises(ConfigError, match="gamma"):
        run_invert(_parse(["c.zarr", "--gamma", "-1"]))
