"""Mosaic kernels against known truth: offsets/ramps from overlaps, east/up decomposition, GNSS tie."""

from __future__ import annotations

import numpy as np
import pytest

from insarcloud.errors import NetworkError
from insarcloud.mosaic.kernels import (
    area_grid,
    combine,
    correction_map,
    decompose_east_up,
    frame_offsets,
    gnss_tie,
    place,
)


def _truth(grid):
    yy, xx = np.meshgrid(grid.lat, grid.lon, indexing="ij")
    return (5 * np.sin(xx * 40) + 3 * np.cos(yy * 30)).astype("float32")


def _frames(grid, truth, boxes, offsets, rng, noise=0.3):
    maps = []
    for (r0, r1, c0, c1), off in zip(boxes, offsets, strict=True):
        m = np.full(truth.shape, np.nan, "float32")
        m[r0:r1, c0:c1] = truth[r0:r1, c0:c1] + off + rng.normal(0, noise, (r1 - r0, c1 - c0))
        maps.append(m)
    return maps


def test_area_grid_and_place_roundtrip():
    grid = area_grid([(90.0, 31.0, 90.099, 31.099), (90.05, 31.05, 90.2, 31.15)])
    assert grid.lon[0] == pytest.approx(90.0) and grid.lon[-1] == pytest.approx(90.2)
    assert grid.lat[0] == pytest.approx(31.15) and np.all(np.diff(grid.lat) < 0)
    lat = np.round(np.arange(31.099, 31.0495, -0.001), 3)
    lon = np.round(np.arange(90.05, 90.1005, 0.001), 3)
    vals = np.arange(lat.size * lon.size, dtype="float32").reshape(lat.size, lon.size)
    out = place(grid, lat, lon, vals)
    iy = int(round((grid.lat[0] - lat[3]) / 0.001))
    ix = int(round((lon[7] - grid.lon[0]) / 0.001))
    assert out[iy, ix] == vals[3, 7]
    assert np.isfinite(out).sum() == vals.size


def test_offsets_recovered_from_overlaps():
    rng = np.random.default_rng(1)
    grid = area_grid([(90.0, 31.0, 90.299, 31.199)])
    truth = _truth(grid)
    boxes = [(0, 120, 0, 130), (0, 120, 100, 230), (90, 200, 60, 300)]
    true_off = np.array([0.0, 4.0, -2.5])
    maps = _frames(grid, truth, boxes, true_off, rng)
    sol = frame_offsets(maps, grid)
    np.testing.assert_allclose(sol.offsets, true_off, atol=0.05)
    assert sol.overlap_rms_after < 0.5 < sol.overlap_rms_before
    assert np.all(sol.offsets_std[1:] > 0) and np.all(sol.offsets_std < 0.05)
    fixed = [m - correction_map(sol, k, grid) for k, m in enumerate(maps)]
    val, std, count = combine(fixed, [np.where(np.isfinite(m), 0.3, np.nan) for m in fixed])
    ok = np.isfinite(val)
    assert np.sqrt(np.mean((val[ok] - truth[ok]) ** 2)) < 0.35
    assert count.max() == 3  # the three boxes share a corner


def test_ramps_recovered():
    rng = np.random.default_rng(2)
    grid = area_grid([(90.0, 31.0, 90.299, 31.199)])
    truth = _truth(grid)
    boxes = [(0, 200, 0, 170), (0, 200, 120, 300)]
    maps = _frames(grid, truth, boxes, [0.0, 1.0], rng, noise=0.1)
    yy, xx = np.meshgrid(grid.lat - grid.lat.mean(), grid.lon - grid.lon.mean(), indexing="ij")
    maps[1] = maps[1] + 20 * xx - 10 * yy
    sol = frame_offsets(maps, grid, ramp=True)
    np.testing.assert_allclose(sol.ramps[1], [20, -10], atol=0.5)
    assert sol.offsets[1] == pytest.approx(1.0, abs=0.05)


def test_isolated_frame_is_named():
    grid = area_grid([(90.0, 31.0, 90.299, 31.199)])
    truth = _truth(grid)
    maps = _frames(grid, truth, [(0, 50, 0, 50), (100, 150, 200, 250)], [0, 1], np.random.default_rng(0))
    with pytest.raises(NetworkError, match=r"\[1\]"):
        frame_offsets(maps, grid)


def test_decomposition_exact_and_precision():
    rng = np.random.default_rng(3)
    e_true = rng.normal(0, 5, (20, 30))
    u_true = rng.normal(0, 5, (20, 30))
    asc = (-0.62, 0.75)  # (east, up) of an ascending ground-to-satellite vector
    dsc = (0.62, 0.75)
    los = [asc[0] * e_true + asc[1] * u_true, dsc[0] * e_true + dsc[1] * u_true]
    d = decompose_east_up(los, [np.ones_like(e_true)] * 2, [np.full_like(e_true, asc[0]), np.full_like(e_true, dsc[0])],
                          [np.full_like(e_true, asc[1]), np.full_like(e_true, dsc[1])])
    np.testing.assert_allclose(d.east, e_true, atol=1e-4)
    np.testing.assert_allclose(d.up, u_true, atol=1e-4)
    # Monte Carlo check of the stated precision
    sims = []
    for _ in range(400):
        noisy = [los[0] + rng.normal(0, 1, e_true.shape), los[1] + rng.normal(0, 1, e_true.shape)]
        sims.append(decompose_east_up(noisy, [np.ones_like(e_true)] * 2,
                                      [np.full_like(e_true, asc[0]), np.full_like(e_true, dsc[0])],
                                      [np.full_like(e_true, asc[1]), np.full_like(e_true, dsc[1])]).east)
    emp = np.std(np.stack(sims), axis=0).mean()
    assert emp == pytest.approx(float(d.east_std.mean()), rel=0.1)
    one = decompose_east_up(los[:1], [np.ones_like(e_true)], [np.full_like(e_true, asc[0])],
                            [np.full_like(e_true, asc[1])])
    assert np.isnan(one.east).all()


def test_gnss_tie_recovers_offset():
    grid = area_grid([(90.0, 31.0, 90.099, 31.099)])
    e, n, u = np.full((100, 100), -0.6), np.full((100, 100), -0.1), np.full((100, 100), 0.78)
    rng = np.random.default_rng(4)
    stations = [{"lon": 90.0 + rng.uniform(0.01, 0.09), "lat": 31.0 + rng.uniform(0.01, 0.09),
                 "ve": rng.normal(0, 3), "vn": rng.normal(0, 3), "vu": rng.normal(0, 3)} for _ in range(6)]
    v = np.zeros((100, 100), "float32")
    for st in stations:
        ix = int(round((st["lon"] - grid.lon[0]) / 0.001))
        iy = int(round((grid.lat[0] - st["lat"]) / 0.001))
        v[max(0, iy - 2):iy + 3, max(0, ix - 2):ix + 3] = -0.6 * st["ve"] - 0.1 * st["vn"] + 0.78 * st["vu"] + 7.0
    tie = gnss_tie(v, grid, stations, e, n, u)
    assert tie.offset == pytest.approx(7.0, abs=1e-3) and tie.n_stations == 6
