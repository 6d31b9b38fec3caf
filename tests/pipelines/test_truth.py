"""insarcloud.pipelines.truth: RMSE after the datum, and the area-grid placement of frame truths."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from insarcloud.pipelines.truth import compare_to_truth, rmse_after_datum


def test_rmse_after_datum_removes_the_offset_only():
    rng = np.random.default_rng(0)
    truth = rng.normal(0, 10, 5000)
    noise = rng.normal(0, 2, 5000)
    est = truth + 7.0 + noise
    est[:100] = np.nan
    st = rmse_after_datum(est, truth)
    assert st["n"] == 4900
    assert st["datum_mm_yr"] == pytest.approx(7.0, abs=0.1)
    assert st["rmse_mm_yr"] == pytest.approx(np.std(noise[100:]), rel=0.02)
    assert st["truth_spread_mm_yr"] == pytest.approx(10.0, rel=0.05)
    assert rmse_after_datum(np.full(5, 1.0), np.zeros(5)) == {"n": 5}
    # honest 1-sigma: ~95% of errors within 1.96 sigma; a 3x optimistic one: far fewer
    assert rmse_after_datum(est, truth, np.full(5000, 2.0))["frac_within_1.96_sigma"] == pytest.approx(0.95, abs=0.015)
    assert rmse_after_datum(est, truth, np.full(5000, 2.0 / 3))["frac_within_1.96_sigma"] < 0.6


def _grid(y0: float, x0: float, n: int, values: np.ndarray, names: tuple[str, ...]) -> xr.Dataset:
    y = np.round(y0 - 0.001 * np.arange(n), 6)
    x = np.round(x0 + 0.001 * np.arange(n), 6)
    return xr.Dataset({k: (("y", "x"), values) for k in names}, coords={"y": y, "x": x})


def test_compare_to_truth_places_frames_on_the_area_grid(tmp_path):
    rng = np.random.default_rng(1)
    field = rng.normal(0, 5, (30, 30))  # one truth over the area; frame A covers its top-left 20x20
    area = _grid(31.5, 90.0, 30, field + 3.0, ("velocity_A", "velocity_up"))
    area["velocity_A"][:, 25:] = np.nan
    area.to_zarr(tmp_path / "area.zarr")
    _grid(31.5, 90.0, 20, field[:20, :20], ("velocity", "velocity_up")).to_zarr(tmp_path / "t.zarr")
    ts = _grid(31.5, 90.0, 20, field[:20, :20] - 1.0, ("velocity",))
    ts["velocity_std"] = ts.velocity * 0 + 0.5
    ts.to_zarr(tmp_path / "cube.zarr", group="ts_none")
    out = compare_to_truth({"012A_00001_000001": str(tmp_path / "t.zarr")},
                           {"012A_00001_000001": (str(tmp_path / "cube.zarr"), "ts_none")}, str(tmp_path / "area.zarr"))
    fr = out["frames"]["012A_00001_000001"]
    assert fr["rmse_mm_yr"] == pytest.approx(0.0, abs=1e-5) and fr["datum_mm_yr"] == pytest.approx(-1.0, abs=1e-5)
    assert fr["frac_within_1.96_sigma"] == 1.0 and fr["median_std_mm_yr"] == 0.5
    whole = out["mosaic"]["velocity_A"]["whole"]
    # only the 20x20 the frame's truth covers is compared, exactly offset by the datum
    assert whole["n"] == 400 and whole["rmse_mm_yr"] == pytest.approx(0.0, abs=1e-5)
    assert whole["datum_mm_yr"] == pytest.approx(3.0, abs=1e-5)
    assert out["mosaic"]["velocity_A"]["overlaps"] == {"n": 0}
    assert out["mosaic"]["velocity_up"]["n"] == 400


def test_compare_to_truth_scores_the_noise_group_only_when_complete(tmp_path):
    field = np.random.default_rng(2).normal(0, 5, (20, 20))
    _grid(31.5, 90.0, 20, field, ("velocity",)).to_zarr(tmp_path / "t.zarr")
    ts = _grid(31.5, 90.0, 20, field + 1.0, ("velocity",))
    ts["velocity_std"] = ts.velocity * 0 + 0.1
    ts.to_zarr(tmp_path / "cube.zarr", group="ts_quality")
    gls = _grid(31.5, 90.0, 20, field + np.random.default_rng(3).normal(0, 1.0, (20, 20)), ("velocity",))
    gls["velocity_std"] = gls.velocity * 0 + 1.0
    gls.attrs["insarcloud"] = {"stage": "noise", "complete": False}
    gls.to_zarr(tmp_path / "cube.zarr", group="noise")
    args = ({"012A_00001_000001": str(tmp_path / "t.zarr")},
            {"012A_00001_000001": (str(tmp_path / "cube.zarr"), "ts_quality")}, None)
    assert "frames_noise" not in compare_to_truth(*args, precision_group="noise")  # unfinished: not scored

    gls.attrs["insarcloud"] = {"stage": "noise", "complete": True}
    gls.to_zarr(tmp_path / "cube.zarr", group="noise", mode="w")
    out = compare_to_truth(*args, precision_group="noise")
    white, noise = out["frames"]["012A_00001_000001"], out["frames_noise"]["012A_00001_000001"]
    assert white["rmse_mm_yr"] == pytest.approx(0.0, abs=1e-5) and white["median_std_mm_yr"] == 0.1
    # unit-variance errors against a reported sigma of 1: about 95% within 1.96 sigma
    assert 0.88 < noise["frac_within_1.96_sigma"] < 0.99 and noise["median_std_mm_yr"] == 1.0
    assert "frames_noise" not in compare_to_truth(*args)  # no precision group asked for
