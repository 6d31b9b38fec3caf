"""Numeric options are checked before any cluster starts: each bad value ends the command with exit status 2
and a message naming the option, while every engine entry point is replaced by one that fails the test."""

from __future__ import annotations

import argparse

import pytest

from insarcloud import cli, cliargs
from insarcloud.config import QualityParams, UnwrapParams
from insarcloud.errors import ConfigError

CUBE = "s3://bucket/cubes/106A_09048_000909.zarr"

# (argv, words the message must hold)
BAD = [
    # ingest's --chunk is h17ingest's; the stages:
    (["qc", CUBE, "--window", "4"], "--window"),
    (["qc", CUBE, "--window", "0"], "--window"),
    (["qc", CUBE, "--loop-thre", "-1"], "--loop-thre"),
    (["qc", CUBE, "--loop-thre", "nan"], "--loop-thre"),
    (["qc", CUBE, "--block", "0"], "--block"),
    (["qc-dataset", "s3://b/d.zarr", CUBE, "--tile", "0"], "--tile"),
    (["review", "s3://b/d.zarr", "--port", "70000"], "--port"),
    (["quality", CUBE, "--tile", "0"], "--tile"),
    (["quality", CUBE, "--overlap", "-8"], "--overlap"),
    (["quality", CUBE, "--actors", "0"], "--actors"),
    (["quality", CUBE, "--threads", "0"], "--threads"),
    (["quality", CUBE, "--batch-size", "-4"], "--batch-size"),
    (["qc-train", "s3://b/d.zarr", "--out", "m.pt", "--epochs", "0"], "--epochs"),
    (["qc-train", "s3://b/d.zarr", "--out", "m.pt", "--lr", "0"], "--lr"),
    (["qc-train", "s3://b/d.zarr", "--out", "m.pt", "--crop", "-1"], "--crop"),
    (["qc-train", "s3://b/d.zarr", "--out", "m.pt", "--stages", "7"], "--stages"),
    (["qc-eval", "s3://b/d.zarr", "--max-tiles", "0"], "--max-tiles"),
    (["unwrap", CUBE, "--tile", "-512"], "--tile"),
    (["unwrap", CUBE, "--overlap", "0"], "--overlap"),
    (["invert", CUBE, "--chunk", "0"], "--chunk"),
    (["invert", CUBE, "--chunk", "-512"], "--chunk"),
    (["invert", CUBE, "--ref-y", "-3", "--ref-x", "4"], "--ref-y"),
    (["invert", CUBE, "--ref-lat", "91", "--ref-lon", "4"], "--ref-lat"),
    (["invert", CUBE, "--workers", "0"], "--workers"),
    (["noise", CUBE, "--workers", "0"], "--workers"),
    (["forecast", CUBE, "--factors", "f.zarr", "--steps", "0"], "--steps"),
    (["forecast", CUBE, "--factors", "f.zarr", "--train-pixels", "5"], "--train-pixels"),
    (["forecast", CUBE, "--factors", "f.zarr", "--epochs", "-1"], "--epochs"),
    (["forecast", CUBE, "--factors", "f.zarr", "--lr", "inf"], "--lr"),
    (["forecast", CUBE, "--factors", "f.zarr", "--actors", "0"], "--actors"),
    (["forecast", CUBE, "--factors", "f.zarr", "--num-cpus", "0"], "--num-cpus"),
    (["forecast", CUBE, "--factors", "f.zarr", "--seed", "-1"], "--seed"),
    (["simulate-factors", "f.zarr", "--bbox", "90", "31", "91", "32", "--start", "2020-01-01", "--end",
      "2020-12-31", "--spacing", "0"], "--spacing"),
    (["simulate", "frame", "--out", "o", "--truth", "t", "--epochs", "1"], "--epochs"),
    (["simulate", "frame", "--out", "o", "--truth", "t", "--seed", "-5"], "--seed"),
    (["simulate", "frame", "--out", "o", "--truth", "t", "--unw-error-fraction", "1.2"], "--unw-error-fraction"),
    (["simulate", "frame", "--out", "o", "--truth", "t", "--looks", "0"], "--looks"),
    (["simulate", "frame", "--out", "o", "--truth", "t", "--scene-lat", "100"], "--scene-lat"),
    (["simulate", "frame", "--out", "o", "--truth", "t", "--size", "0x0"], "--size"),
]

# cross-option rules, and checks the stage commands make themselves before their engines (exit 2 through the
# CLI's one error line; tests/invert and tests/noise call these run functions directly)
BAD_TOGETHER = [
    (["invert", CUBE, "--gamma", "-0.5"], "--gamma must be >= 0"),
    (["invert", CUBE, "--quality-floor", "1.5"], "--quality-floor must be in [0, 1]"),
    (["noise", CUBE, "--class-size", "2"], "--class-size must be >= 4"),
    (["noise", CUBE, "--level", "1"], "--level must be in (0, 1)"),
    (["quality", CUBE, "--tile", "64", "--overlap", "32"], "overlap 32 must be less than half the tile 64"),
    (["unwrap", CUBE, "--tile", "128", "--overlap", "64"], "--overlap: overlap 64 must be less than half"),
    (["simulate-factors", "f.zarr", "--bbox", "91", "31", "90", "32", "--start", "2020-01-01", "--end",
      "2020-12-31"], "--bbox"),
]


@pytest.fixture()
def no_engines(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every way a command could start a cluster, a Ray or an actor pool now fails the test (and records it)."""
    import distributed
    import ray

    from insarcloud import engines

    started: list[str] = []

    def refuse(name: str):  # type: ignore[no-untyped-def]
        def f(*a, **k):  # type: ignore[no-untyped-def]
            started.append(name)
            raise AssertionError(f"{name} was called: an engine started before the arguments were checked")
        return f

    monkeypatch.setattr(engines, "dask_client", refuse("engines.dask_client"))
    monkeypatch.setattr(engines, "init_ray", refuse("engines.init_ray"))
    monkeypatch.setattr(distributed, "LocalCluster", refuse("distributed.LocalCluster"))
    monkeypatch.setattr(distributed, "Client", refuse("distributed.Client"))
    monkeypatch.setattr(ray, "init", refuse("ray.init"))
    return started


@pytest.mark.parametrize(("argv", "option"), BAD, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD])
def test_bad_numeric_option_exits_2_naming_it(argv: list[str], option: str, no_engines: list[str],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and "error:" in err, err
    assert no_engines == []


@pytest.mark.parametrize(("argv", "words"), BAD_TOGETHER, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD_TOGETHER])
def test_bad_option_combination_exits_2_before_engines(argv: list[str], words: str, no_engines: list[str],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    assert words in capsys.readouterr().err
    assert no_engines == []


def test_defaults_and_good_values_parse() -> None:
    parser = cli.build_parser()
    a = parser.parse_args(["quality", CUBE, "--tile", "128", "--overlap", "0", "--threads", "2"])
    assert (a.tile, a.overlap, a.threads) == (128, 0, 2)
    a = parser.parse_args(["qc", CUBE, "--window", "7", "--loop-thre", "2.5"])
    assert (a.window, a.loop_thre) == (7, 2.5)
    a = parser.parse_args(["invert", CUBE, "--chunk", "256", "--ref-lat", "-33.5", "--ref-lon", "151"])
    assert (a.chunk, a.ref_lat, a.ref_lon) == (256, -33.5, 151.0)
    a = parser.parse_args(["simulate", "frame", "--out", "o", "--truth", "t"])
    assert (a.epochs, a.seed, a.unw_error_fraction) == (30, 0, 0.2)
    a = parser.parse_args(["forecast", CUBE, "--factors", "f.zarr"])
    assert (a.steps, a.train_pixels, a.lr, a.early_stop) == (72, 2000, 1e-4, None)


def test_type_functions() -> None:
    assert cliargs.positive_int(" 3 ") == 3
    assert cliargs.nonnegative_int("0") == 0
    assert cliargs.probability("1") == 1.0 and cliargs.probability("0") == 0.0
    assert cliargs.odd_int(3, 31)("31") == 31
    assert cliargs.port("0") == 0
    for fn, text, words in [
        (cliargs.positive_int, "0", "positive integer"), (cliargs.positive_int, "2.5", "integer"),
        (cliargs.nonnegative_int, "-1", ">= 0"), (cliargs.probability, "-0.1", "from 0 to 1"),
        (cliargs.positive_float, "nan", "finite"), (cliargs.positive_float, "abc", "number"),
        (cliargs.nonnegative_float, "-1e-9", ">= 0"), (cliargs.odd_int(3, 31), "33", "from 3 to 31"),
        (cliargs.float_range(-90, 90), "-90.5", "from -90 to 90"),
    ]:
        with pytest.raises(argparse.ArgumentTypeError, match=words):
            fn(text)


def test_one_tile_overlap_rule_for_config_stage_and_cli() -> None:
    """The config models, the quality stage's own parameters and the commands share one rule."""
    from insarcloud.qc.serve import ServeParams

    assert cliargs.tile_overlap_error(64, 31) is None and cliargs.tile_overlap_error(None, 5) is None
    for tile, overlap in ((64, 32), (64, 48), (64, 64), (64, -1)):
        why = cliargs.tile_overlap_error(tile, overlap)
        assert why and f"overlap {overlap}" in why
        with pytest.raises(ValueError, match=f"overlap {overlap}"):
            ServeParams(tile=max(tile, 32), overlap=overlap) if overlap >= 0 else cliargs.check_tile_overlap(
                tile, overlap)
        if overlap >= 0:
            with pytest.raises(ValueError, match=f"overlap {overlap} must be less than half the tile {tile}"):
                QualityParams(tile=tile, overlap=overlap)
    with pytest.raises(ValueError, match="overlap 64 must be less than half the tile 128"):
        UnwrapParams(tile=128, overlap=64)
    with pytest.raises(ValueError, match="overlap"):
        UnwrapParams(overlap=0)  # the unwrapper's halo needs a pixel: refused by the config, not at run time
    assert QualityParams(tile=64, overlap=31).overlap == 31 and ServeParams(tile=64, overlap=31).overlap == 31
    with pytest.raises(ConfigError, match="--overlap: overlap 40"):
        cliargs.check_tile_overlap(64, 40, "--overlap")
    with pytest.raises(ConfigError, match="--bbox"):
        cliargs.check_bbox((0.0, 0.0, float("nan"), 1.0))


AREA = {"area": {"name": "galapagos", "bbox": [-92.5, -1.5, -90.5, 0.5]}, "frames": ["106A_09048_000909"],
        "source_url": "s3://licsar", "output_url": "s3://results/insar"}


@pytest.mark.parametrize(("params", "words"), [
    ({"ingest": {"chunk_yx": 0}}, "chunk_yx"),
    ({"ingest": {"chunk_yx": -512}}, "chunk_yx"),
    ({"qc": {"window": 4}}, "window"),
    ({"quality": {"tile": 128, "overlap": 64}}, "overlap 64 must be less than half the tile 128"),
    ({"quality": {"batch_size": 0}}, "batch_size"),
    ({"unwrap": {"tile": 256, "overlap": 0}}, "overlap"),
    ({"noise": {"class_size": 1}}, "class_size"),
    ({"forecast": {"num_actors": 0}}, "num_actors"),
    ({"mosaic": {"min_overlap_pixels": 0}}, "min_overlap_pixels"),
])
def test_area_config_numbers_refused_before_engines(params: dict, words: str, tmp_path, no_engines: list[str],
                                                    capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    import yaml

    path = tmp_path / "area.yaml"
    path.write_text(yaml.safe_dump({**AREA, "params": params}))
    assert cli.main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "insarcloud run: error:" in err and words in err, err
    assert no_engines == []
