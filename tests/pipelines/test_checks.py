"""Up-front checks: the forecast window bound is the one forecast/dataset.py uses; stage inputs and short
stacks are refused before any engine starts, all at once, each with its fix."""

from __future__ import annotations

import numpy as np
import pytest

from insarcloud import io
from insarcloud.config import parse_config
from insarcloud.errors import ConfigError
from insarcloud.forecast.dataset import fft_window, prepare
from insarcloud.pipelines.checks import check_area, forecast_fits, min_forecast_epochs, worst_case_window

FRAME = "012A_05850_131313"


@pytest.mark.parametrize("n", range(12, 60))
def test_worst_case_window_bounds_fft_window(n):
    rng = np.random.default_rng(n)
    for _ in range(20):  # fft_window picks by the data's phase spectrum; the bound holds for any data
        series = np.cumsum(rng.normal(size=(n, 3)), axis=0) + rng.normal() * np.sin(np.arange(n)[:, None] / 3)
        assert fft_window(series) <= worst_case_window(n)


@pytest.mark.parametrize("target", ["increments", "harmonic_residual"])
def test_stacks_that_fit_prepare_and_the_shortest_that_does_not(target):
    rng = np.random.default_rng(0)
    need = min_forecast_epochs(target)
    for n in (need, need + 7):
        assert forecast_fits(n, target)
        d = np.cumsum(rng.normal(size=(n, 4)), axis=0).astype(np.float32)
        f = rng.normal(size=(3, n, 4)).astype(np.float32)
        prepare(d, f, n_test=10, differenced=target == "increments")  # does not raise
    short = need - 1
    d = np.cumsum(rng.normal(size=(short, 4)), axis=0).astype(np.float32)
    with pytest.raises(ValueError, match="too few"):
        prepare(d, rng.normal(size=(3, short, 4)).astype(np.float32), n_test=10,
                window=worst_case_window(short), differenced=target == "increments")


def test_demo_refuses_a_short_stack_while_parsing(capsys):
    from insarcloud.pipelines.demo import main

    with pytest.raises(SystemExit) as exc:
        main(["--epochs", "24"])  # returns before any S3 endpoint, cluster or simulation starts
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--epochs has 24 epochs" in err and "use --epochs 25 or more" in err


def _config(tmp_path, stages, weights="quality_closure"):
    return parse_config({"area": {"name": "t", "bbox": [89.9, 31.4, 90.2, 31.7]}, "frames": [FRAME],
                         "source_url": str(tmp_path / "licsar"), "output_url": str(tmp_path / "out"),
                         "stages": stages, "params": {"invert": {"weights": weights}}})


def test_missing_inputs_and_short_stack_are_reported_together(tmp_path):
    from insarcloud.simulate import simulate_frame

    cfg = _config(tmp_path, ["invert", "noise", "forecast"])
    sim = simulate_frame(shape=(16, 16), n_epochs=12, seed=0, min_neighbours=2, max_neighbours=2)
    io.write_new_cube(io.make_frame_dataset(frame=FRAME, pairs=sim.pairs, lat=sim.lat, lon=sim.lon,
                                            phase=sim.phase, coh=sim.coherence_est, unw=sim.unw), cfg.cube_url(FRAME))
    with pytest.raises(ConfigError) as exc:
        check_area(cfg, [FRAME])
    msg = str(exc.value)
    assert "'quality' group" in msg and "add 'quality' to stages" in msg
    assert f"frame {FRAME} has 12 epochs, too few for the forecast stage" in msg
    assert msg.count("\n  - ") == 2
    check_area(_config(tmp_path, ["qc", "quality", "invert", "noise"]), [FRAME])  # all inputs made: passes


def test_noise_without_invert_needs_a_ts_group(tmp_path):
    with pytest.raises(ConfigError, match=r"noise reads the 'ts_coherence' group.*add 'invert' to stages"):
        check_area(_config(tmp_path, ["noise"], weights="coherence"), [FRAME])


def test_stage_commands_check_their_input_group_before_a_cluster_starts(tmp_path, capsys):
    from insarcloud.cli import main
    from insarcloud.simulate import simulate_frame

    sim = simulate_frame(shape=(16, 16), n_epochs=6, seed=0, min_neighbours=2, max_neighbours=2)
    url = str(tmp_path / "cube.zarr")
    io.write_new_cube(io.make_frame_dataset(frame=FRAME, pairs=sim.pairs, lat=sim.lat, lon=sim.lon,
                                            phase=sim.phase, coh=sim.coherence_est, unw=sim.unw), url)
    # a scheduler address nobody listens on: reaching it would fail otherwise (and slowly)
    for argv, fix in ((["invert", url, "--source", "unw_snaphu"], "then pass --source unw_M"),
                      (["invert", url, "--weights", "quality"], "run insarcloud quality CUBE first"),
                      (["noise", url, "--ts", "ts_quality"], "run insarcloud invert CUBE --weights W first")):
        assert main([*argv, "--scheduler", "tcp://127.0.0.1:9"]) == 2
        err = capsys.readouterr().err
        assert "does not exist in" in err and "(groups: none)" in err and fix in err, err
