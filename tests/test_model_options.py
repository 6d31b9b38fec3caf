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


@pytest.mark.parametrize(("command", "model", "section"), [("unwrap", "UnwrapParams", "unwrap"),
                                                            ("ingest", "IngestParams", "ingest")])
def test_unwrap_and_ingest_options_are_their_params_models(command: str, model: str, section: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """``insarcloud unwrap`` (--method, --tile, --overlap) and ``insarcloud ingest`` (--chunk) are generated from
    UnwrapParams and IngestParams: the area config's defaults, choices and bounds, one definition."""
    import insarcloud.config as config
    from insarcloud import cli
    from insarcloud.io.command import FLAGS as INGEST_FLAGS
    from insarcloud.unwrap.command import FLAGS as UNWRAP_FLAGS

    params = getattr(config, model)
    flags = UNWRAP_FLAGS if command == "unwrap" else INGEST_FLAGS
    parser = cli.build_parser()
    head = ["unwrap", "s3://b/c.zarr"] if command == "unwrap" else ["ingest", "s3://src", "--frame",
                                                                      "106A_09048_000909", "--cube", "s3://b/c.zarr"]
    assert params_from_args(params, parser.parse_args(head), flags) == params()  # the model's defaults
    if command == "unwrap":  # every method of the model's Literal, and only those
        for method in typing.get_args(params.model_fields["method"].annotation):
            assert parser.parse_args([*head, "--method", method]).method == method
        with pytest.raises(SystemExit):
            parser.parse_args([*head, "--method", "magic"])
    given = (["--method", "wls", "--tile", "256", "--overlap", "32"] if command == "unwrap" else ["--chunk", "16"])
    cfg = parse_config({"area": {"name": "a", "bbox": [0.0, 0.0, 1.0, 1.0]}, "frames": ["106A_09048_000909"],
                        "source_url": "s3://src", "output_url": "s3://out",
                        "params": {section: ({"method": "wls", "tile": 256, "overlap": 32} if command == "unwrap"
                                             else {"chunk_yx": 16})}})
    assert params_from_args(params, parser.parse_args(head + given), flags) == getattr(cfg.params, section)
    # a value the area config refuses, the command refuses while parsing (exit 2 naming the flag)
    for argv, flag in ((["--tile", "32"], "--tile"), (["--overlap", "0"], "--overlap")) if command == "unwrap" \
            else ((["--chunk", "8"], "--chunk"), (["--chunk", "20000"], "--chunk")):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(head + argv)
        assert exc.value.code == 2 and f"argument {flag}" in capsys.readouterr().err
        with pytest.raises(ConfigError):
            parse_config({"area": {"name": "a", "bbox": [0.0, 0.0, 1.0, 1.0]}, "frames": ["106A_09048_000909"],
                          "source_url": "s3://src", "output_url": "s3://out",
                          "params": {section: {next(n for n, f in flags.items()
                                                    if (f if isinstance(f, str) else f[0]) == flag): int(argv[1])}}})
