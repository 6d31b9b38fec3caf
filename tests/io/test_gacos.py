"""GACOS (issue 21): LiCSAR-layout sltd epochs -> the cube's gacos group -> the inversion's correction."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from insarcloud.errors import ConfigError, GridMismatchError
from insarcloud.invert.dask_ops import invert_dataset
from insarcloud.io import open_cube
from insarcloud.io.gacos import GacosStack, gacos_dataset, ingest_gacos, pair_delay_indices, read_gacos
from insarcloud.io.ingest import ingest_frame
from insarcloud.simulate.frame import simulate_frame
from insarcloud.simulate.gacos import atmosphere_sltd, gacos_model, write_gacos_epochs
from insarcloud.simulate.writer import write_licsar_frame

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def sim_cube(tmp_path_factory):
    """A small simulated frame without noise or unwrapping errors (the atmosphere is the only error),
    written as a LiCSAR tree with GACOS epochs (one epoch left out) and ingested into a local cube."""
    root = tmp_path_factory.mktemp("gacos")
    sim = simulate_frame(shape=(48, 48), n_epochs=8, seed=3, noise=False, unw_error_pair_fraction=0.0,
                         missing_epoch_fraction=0.0, missing_pair_fraction=0.0)
    src = str(root / "licsar")
    write_licsar_frame(sim, src)
    model = gacos_model(sim, seed=1)
    skipped = str(np.datetime64(sim.dates[3], "D")).replace("-", "")
    write_gacos_epochs(sim, src, model, skip_dates=[skipped])
    cube = str(root / "cube.zarr")
    ingest_frame(src, sim.frame_id, cube, chunk=16)
    return sim, src, cube, model, skipped


def _rmse_vs_truth(ts, sim) -> float:
    """Displacement RMSE (mm) against the simulated deformation, both relative to the reference pixel."""
    ry, rx = int(ts.attrs["ref_y"]), int(ts.attrs["ref_x"])
    d = ts["displacement"].values.astype(np.float64)
    t = sim.displacement.astype(np.float64)
    t = t - t[:, ry:ry + 1, rx:rx + 1]
    t = t - t[:1]
    ok = np.isfinite(d) & np.isfinite(t)
    return float(np.sqrt(np.mean((d[ok] - t[ok]) ** 2)))


def test_sltd_convention_matches_the_simulated_interferograms(sim_cube):
    """sltd[secondary] - sltd[primary] is the tropospheric part of unw_true (the stated sign convention)."""
    sim = sim_cube[0]
    sltd = atmosphere_sltd(sim)
    dates = [np.datetime64(d, "D") for d in sim.dates]
    for p, name in enumerate(sim.pairs[:5]):
        a, b = (np.datetime64(f"{s[:4]}-{s[4:6]}-{s[6:]}") for s in name.split("_"))
        i, j = dates.index(a), dates.index(b)
        from insarcloud.io import mm_to_phase

        defo = mm_to_phase(sim.displacement[j] - sim.displacement[i])
        resid = sim.unw_true[p] - defo - (sltd[j] - sltd[i])
        v = sim.valid
        assert np.nanmax(np.abs(resid[v])) < 1e-3


def test_ingest_gacos_group_and_missing_epoch_by_date(sim_cube, caplog):
    sim, src, cube, model, skipped = sim_cube
    with caplog.at_level(logging.WARNING, logger="insarcloud.io.gacos"):
        st = ingest_gacos(src, sim.frame_id, cube)
    assert st is not None and st.missing == [skipped]
    assert skipped in caplog.text
    g = open_cube(cube, group="gacos")
    assert g["gacos"].dims == ("date", "y", "x") and g["gacos"].dtype == np.float32
    assert g["gacos"].attrs["units"] == "rad" and "positive = more delay" in g["gacos"].attrs["sign_convention"]
    assert list(g.attrs["missing_dates"]) == [skipped]
    assert g.sizes["date"] == len(sim.dates) - 1
    k = [str(np.datetime64(d, "D")).replace("-", "") for d in sim.dates].index(skipped)
    want = np.delete(model, k, axis=0)
    got = g["gacos"].values
    v = sim.valid
    np.testing.assert_allclose(got[:, v], want[:, v], atol=1e-6)
    assert np.isnan(got[:, ~v]).all()  # outside the footprint: LiCSAR's 0 = no data


def test_gacos_reduces_residual_atmosphere_by_a_measured_factor(sim_cube):
    """With GACOS for every epoch the displacement error against the truth (atmosphere only here) falls."""
    sim, _, cube, model, _ = sim_cube
    root = open_cube(cube)
    y, x = root["y"].values, root["x"].values
    full = gacos_dataset(GacosStack(np.asarray(sim.dates, "datetime64[ns]"), model, [], []), y, x, sim.dates)
    ts0, _ = invert_dataset(root, ref_yx=(24, 24))
    ts1, _ = invert_dataset(root, ref_yx=(24, 24), gacos_ds=full, gacos_missing="keep")
    r0, r1 = _rmse_vs_truth(ts0.compute(), sim), _rmse_vs_truth(ts1.compute(), sim)
    print(f"displacement RMSE vs truth: without GACOS {r0:.2f} mm, with {r1:.2f} mm, factor {r0 / r1:.1f}")
    assert r1 < r0 / 2.0
    assert ts1.attrs["gacos"] == 1 and list(ts1.attrs["gacos_missing_dates"]) == []


def test_missing_epoch_keep_or_drop_is_explicit(sim_cube, caplog):
    sim, src, cube, _, skipped = sim_cube
    ingest_gacos(src, sim.frame_id, cube)
    root = open_cube(cube)
    g = open_cube(cube, group="gacos")
    touching = [p for p in root["pair"].values if skipped in str(p)]
    assert touching
    with caplog.at_level(logging.WARNING, logger="insarcloud.invert.dask_ops"):
        keep, _ = invert_dataset(root, ref_yx=(24, 24), gacos_ds=g, gacos_missing="keep")
    assert skipped in caplog.text and "kept uncorrected" in caplog.text
    assert keep.attrs["gacos_missing"] == "keep"
    assert list(keep.attrs["gacos_missing_dates"]) == [skipped]
    assert sorted(keep.attrs["gacos_uncorrected_pairs"]) == sorted(map(str, touching))
    drop, _ = invert_dataset(root, ref_yx=(24, 24), gacos_ds=g, gacos_missing="drop")
    assert drop.attrs["gacos_missing"] == "drop"
    n_keep = int(keep["n_pairs_used"].max().compute())
    n_drop = int(drop["n_pairs_used"].max().compute())
    assert n_keep - n_drop == len(touching)
    with pytest.raises(ConfigError, match="gacos_missing"):
        invert_dataset(root, gacos_ds=g, gacos_missing="maybe")


def test_pair_indices_and_grid_mismatch(sim_cube, tmp_path):
    sim, src, *_ = sim_cube
    d = np.array(["2020-01-01", "2020-01-13"], "datetime64[ns]")
    ip, is_, cov = pair_delay_indices(d, np.array(["2020-01-01", "2020-01-13"], "datetime64[ns]"),
                                      np.array(["2020-01-13", "2020-01-25"], "datetime64[ns]"))
    assert ip.tolist() == [0, 1] and is_.tolist() == [1, -1] and cov.tolist() == [True, False]
    from insarcloud.io.licsar import frame_url

    fdir = frame_url(src, sim.frame_id)
    with pytest.raises(GridMismatchError, match="sltd.geo.tif"):
        read_gacos(fdir, sim.dates[:1], (10, 10), tuple(sim.grid.transform)[:6])


def test_ingest_command_reads_gacos_after_the_pairs(sim_cube, tmp_path, dask_client, capsys):
    """``insarcloud ingest`` (the command path) writes the gacos group after the pair ingest."""
    from insarcloud.cli import build_parser
    from insarcloud.io.command import run_ingest

    sim, src, _, model, skipped = sim_cube
    cube = str(tmp_path / "cli.zarr")
    args = build_parser().parse_args(["ingest", src, "--frame", sim.frame_id, "--cube", cube, "--chunk", "16",
                                      "--scheduler", dask_client.scheduler.address])
    assert run_ingest(args) == 0
    g = open_cube(cube, group="gacos")
    assert list(g.attrs["missing_dates"]) == [skipped] and g.sizes["date"] == len(sim.dates) - 1
