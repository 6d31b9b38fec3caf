"""Stage CLI options generated from the stage's Params model: same names, defaults, choices and bounds as the
area config section (insarcloud.cliargs.add_model_options / params_from_args)."""

from __future__ import annotations

import argparse
import typing

import pytest

from insarcloud.cliargs import add_model_options, params_from_args
from insarcloud.config import NoiseParams, parse_config
from insarcloud.errors import ConfigError
from insarcloud.noise.command import FLAGS, noise_opts


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="t", exit_on_error=False)
    add_model_options(p, NoiseParams, FLAGS)
    return p


def test_options_carry_the_models_defaults_choices_and_descriptions() -> None:
    p = _parser()
    args = p.parse_args([])
    assert params_from_args(NoiseParams, args, FLAGS) == NoiseParams()
    actions = {a.dest: a for a in p._actions}
    assert set(FLAGS) <= set(actions)
    for name, field in NoiseParams.model_fields.items():
        a = actions[name]
        assert a.option_strings == [FLAGS[name]] and a.default == field.default
        assert field.description.rstrip(".") in a.help and f"(default {field.default})" in a.help
        kind = field.annotation
        if typing.get_origin(kind) is typing.Literal:
            assert tuple(a.choices) == typing.get_args(kind)


def test_cli_and_area_config_give_the_same_params() -> None:
    argv = ["--class-size", "400", "--classes", "segments", "--selection", "aic", "--level", "0.1"]
    from_cli = params_from_args(NoiseParams, _parser().parse_args(argv), FLAGS)
    cfg = parse_config({"area": {"name": "a", "bbox": [0.0, 0.0, 1.0, 1.0]}, "frames": ["106A_09048_000909"],
                        "source_url": "s3://src", "output_url": "s3://out",
                        "params": {"noise": {"class_size": 400, "classes": "segments", "selection": "aic",
                                             "level": 0.1}}})
    assert from_cli == cfg.params.noise
    assert noise_opts(from_cli) == {"sigma_model": "gaussian", "flicker": "flicker", "alpha_method": "likelihood",
                                    "functional": "seasonal", "selection": "aic", "level": 0.1}


@pytest.mark.parametrize(("argv", "message"), [
    (["--class-size", "2"], "--class-size must be >= 4"),
    (["--class-size", "20000000"], "--class-size must be in [4, 1e+07]"),
    (["--level", "1"], "--level must be in (0, 1)"),
    (["--level", "0"], "--level must be > 0"),
])
def test_out_of_bounds_values_name_the_flag(argv: list[str], message: str) -> None:
    args = _parser().parse_args(argv)
    with pytest.raises(ConfigError) as exc:
        params_from_args(NoiseParams, args, FLAGS)
    assert str(exc.value) == message


def test_non_numbers_and_bad_choices_are_refused_while_parsing() -> None:
    for argv in (["--class-size", "many"], ["--level", "nan"], ["--classes", "hexagons"]):
        with pytest.raises(argparse.ArgumentError):
            _parser().parse_args(argv)
