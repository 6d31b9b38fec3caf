"""Multiscale unwrapping (issue 21): known truth, regions, bad options, and semi-real cases from the LiCSAR crop.

Semi-real = a known signal + the real noise and the real no-data/water mask of an interferogram of the
crop in tests/data/licsar (see insarcloud/unwrap/semireal.py for why that noise).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pytest

from insarcloud.errors import ConfigError
from insarcloud.unwrap import unwrap, unwrap_result, wrap
from insarcloud.unwrap.multiscale import bridge_regions, multilook
from insarcloud.unwrap.semireal import SIGNALS, centre_of, cycle_score, known_signal, real_noise

CROP = Path(__file__).resolve().parents[1] / "data" / "licsar" / "106" / "106A_09048_000909"
PAIR = "20240106_20240211"


def gentle_truth(ny: int = 96, nx: int = 128) -> np.ndarray:
    """Smooth many-fringe phase within multiscale's reach at 4 looks (max gradient ~0.45 rad/px)."""
    y, x = np.mgrid[:ny, :nx].astype(float)
    return 0.15 * x - 0.1 * y + 12.0 * np.exp(-((x - 60) ** 2 + (y - 45) ** 2) / (2 * 20.0**2))


def one_offset(out: np.ndarray, truth: np.ndarray) -> np.ndarray:
    d = (out - truth)[np.isfinite(out)]
    return d - 2 * np.pi * np.round(np.median(d) / (2 * np.pi))


@pytest.mark.parametrize("coarse", ["snaphu", "ls"])
def test_exact_recovery_without_noise(coarse: str) -> None:
    truth = gentle_truth()
    out = unwrap(wrap(truth), "multiscale", congruent=True, coarse=coarse)
    np.testing.assert_allclose(one_offset(out, truth), 0.0, atol=1e-9)


def test_holes_and_dtype() -> None:
    truth = gentle_truth()
    psi = wrap(truth).astype(np.float32)
    psi[30:55, 40:70] = np.nan
    psi[:, -5:] = np.nan
    out = unwrap(psi, "multiscale", congruent=True)
    assert out.dtype == np.float32
    assert np.array_equal(np.isnan(out), np.isnan(psi))
    np.testing.assert_allclose(one_offset(out.astype(float), truth), 0.0, atol=1e-4)


def test_separate_regions_are_bridged_onto_one_signal() -> None:
    # Three islands on one ramp + bowl, split by water strips wider than a block: their relative
    # constants are not in the data; bridging continues the local slope across the gaps.
    truth = gentle_truth(96, 160)
    psi = wrap(truth)
    psi[:, 50:62] = np.nan
    psi[60:70, :] = np.nan
    res = unwrap_result(psi, "multiscale", congruent=True)
    assert res.iterations == 4  # regions found on the coarse grid
    assert cycle_score(res.phase, truth, np.isfinite(psi)).off_frac == 0.0
    none = unwrap(psi, "multiscale", congruent=True, regions="none")
    assert cycle_score(none, truth, np.isfinite(psi)).off_frac > 0.05  # without referencing: wrong cycles


def test_bridge_regions_moves_only_constants() -> None:
    y, x = np.mgrid[:40, :60].astype(float)
    truth = 0.3 * x + 0.1 * y
    ok = np.ones(truth.shape, bool)
    ok[:, 28:34] = False
    phi = np.where(x > 30, truth + 5.0, truth)  # right island off by an arbitrary constant
    out, n = bridge_regions(phi, ok)
    assert n == 2
    np.testing.assert_allclose(out[ok] - truth[ok], (out[ok] - truth[ok])[0], atol=1e-9)


def test_multilook_block_phase_and_validity() -> None:
    psi = np.full((8, 8), 1.0)
    valid = np.ones((8, 8), bool)
    valid[:4, :4] = False
    valid[4, 4] = False
    ph, coh, ok = multilook(psi, valid, None, 4, 0.5)
    assert ph.shape == (2, 2) and not ok[0, 0] and ok[1, 1]
    np.testing.assert_allclose(ph[ok], 1.0)
    np.testing.assert_allclose(coh[ok], 1.0)


def test_bad_options() -> None:
    psi = wrap(gentle_truth(32, 32))
    for kw in ({"coarse": "mcf"}, {"regions": "x"}, {"looks": 0}, {"looks": 2.5}, {"min_valid": 0.0},
               {"refine": 0}, {"nope": 1}):
        with pytest.raises(ConfigError):
            unwrap(psi, "multiscale", **kw)


def _crop_case(signal: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rasterio = pytest.importorskip("rasterio")
    with rasterio.open(next((CROP / "metadata").glob("*.geo.landmask.tif"))) as ds:
        land = ds.read(1) != 0
    base = CROP / "interferograms" / PAIR / PAIR
    with rasterio.open(f"{base}.geo.diff_pha.tif") as ds:
        a = ds.read(1).astype(np.float64)
    with rasterio.open(f"{base}.geo.cc.tif") as ds:
        coh = ds.read(1).astype(np.float64) / 255.0
    valid = (a != 0) & (coh != 0) & land
    a[~valid] = np.nan
    truth = known_signal(signal, a.shape, centre_of(valid)) + real_noise(a)
    return np.where(valid, wrap(truth), np.nan), np.where(valid, coh, 0.0), truth, valid


@pytest.mark.parametrize("signal", SIGNALS)
def test_semireal_crop_cycle_errors(signal: str) -> None:
    # Measured on this crop and pair (insarcloud unwrap, 2026-12-06): multiscale 0.73-0.78 % of pixels
    # off by > pi, snaphu 1.27-1.28 %, ls 1.10-2.85 %, skimage 4.1-4.3 %. The threshold sits between.
    psi, coh, truth, valid = _crop_case(signal)
    ms = cycle_score(unwrap(psi, "multiscale", coh, congruent=True), truth, valid)
    ls = cycle_score(unwrap(psi, "ls", congruent=True), truth, valid)
    assert ms.off_frac < 0.01
    assert ms.off_frac < ls.off_frac
    if signal == "bowl":
        assert ls.off_frac > 0.02  # the old LS method fails the same threshold
    skimage = pytest.importorskip("skimage.restoration")
    bad = ~valid
    sk = skimage.unwrap_phase(np.ma.array(np.where(bad, 0.0, psi), mask=bad)).filled(np.nan)
    assert ms.off_frac < cycle_score(sk, truth, valid).off_frac


def test_semireal_crop_not_worse_than_snaphu() -> None:
    pytest.importorskip("snaphu")
    psi, coh, truth, valid = _crop_case("bowl")
    fd = os.dup(1)  # snaphu's C log
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        try:
            sn = cycle_score(unwrap(psi, "snaphu", coh), truth, valid)
        finally:
            os.dup2(fd, 1)
            os.close(fd)
    ms = cycle_score(unwrap(psi, "multiscale", coh, congruent=True), truth, valid)
    assert ms.off_frac <= sn.off_frac


def test_cli_default_method_is_multiscale() -> None:
    from insarcloud.unwrap.command import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    assert parser.parse_args(["unwrap", "s3://b/c.zarr"]).method == "multiscale"
    assert parser.parse_args(["unwrap", "s3://b/c.zarr", "--method", "chebyshev"]).method == "chebyshev"
