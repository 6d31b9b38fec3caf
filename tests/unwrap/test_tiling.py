"""Tiled unwrapping equals whole-image unwrapping up to one global constant (numpy and Dask)."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from insarcloud.simulate.peaks import make_peaks_case
from insarcloud.unwrap import unwrap
from insarcloud.unwrap.tiling import PairOffset, plan_tiles, solve_tile_offsets, unwrap_tiled


def _case() -> tuple[np.ndarray, np.ndarray]:
    c = make_peaks_case(150, 3.0, 0.3, np.random.default_rng(7))
    psi = c.wrapped.copy()
    psi[60:80, 20:110] = np.nan  # no-data across tile borders
    psi[:5, :] = np.nan
    return psi, c.truth


def _kernel(a: np.ndarray, w: np.ndarray | None, method: str) -> np.ndarray:
    return unwrap(a, method, w, congruent=True)  # type: ignore[arg-type]


def assert_equal_up_to_one_cycle_constant(tiled: np.ndarray, whole: np.ndarray, truth: np.ndarray) -> None:
    e = whole - truth
    e -= np.nanmedian(e)
    right = np.abs(e) < np.pi  # "wherever the whole-image result is right"
    assert right.sum() > 0.9 * np.isfinite(whole).sum()
    d = (tiled - whole)[right]
    k = np.round(d / (2 * np.pi))
    assert np.all(k == k[0])
    np.testing.assert_allclose(d, 2 * np.pi * k[0], atol=1e-6)
    assert np.array_equal(np.isnan(tiled), np.isnan(whole))


@pytest.mark.parametrize("method", ["ls", "chebyshev"])
def test_numpy_tiled_equals_whole(method: str) -> None:
    psi, truth = _case()
    whole = unwrap(psi, method, congruent=True)
    tiled = unwrap_tiled(psi, partial(_kernel, method=method), tile=64, overlap=16, congruent=True)
    assert_equal_up_to_one_cycle_constant(tiled, whole, truth)


def test_tile_offsets_prefer_strong_links() -> None:
    # 3 tiles: 0-1 strong (+2pi), 1-2 strong (-4pi), 0-2 weak and wrong: the tree ignores the weak one.
    tau = 2 * np.pi
    links = [PairOffset(0, 1, tau, 900), PairOffset(1, 2, -2 * tau, 800), PairOffset(0, 2, 5 * tau, 3)]
    off = solve_tile_offsets(3, links, np.array([100, 50, 50]))
    # u_a + o_a == u_b + o_b with u_a - u_b = offset  ->  o_b - o_a = offset
    assert off[0] == 0.0
    assert off[1] - off[0] == pytest.approx(tau)
    assert off[2] - off[1] == pytest.approx(-2 * tau)
    # Tiles with no usable link keep their own constant (a separate component).
    off = solve_tile_offsets(3, [PairOffset(0, 1, tau, 10), PairOffset(1, 2, tau, 0)], np.array([1, 1, 9]))
    assert off[2] == 0.0 and off[1] - off[0] == pytest.approx(tau)


def test_plan_tiles_matches_dask_map_overlap_blocks() -> None:
    da = pytest.importorskip("dask.array")
    x = da.arange(100 * 70, dtype=float).reshape(100, 70).rechunk((40, 30))  # every chunk >= depth, as dask_ops ensures
    ext = da.overlap.overlap(x, depth=8, boundary="none")
    full = x.compute()
    for t in plan_tiles(x.chunks[0], x.chunks[1], 8):
        blk = ext.blocks[t.index]
        assert blk.shape == (t.outer[0].stop - t.outer[0].start, t.outer[1].stop - t.outer[1].start)
        np.testing.assert_array_equal(blk.compute(), full[t.outer])


@pytest.mark.slow
def test_dask_tiled_equals_whole(dask_client: object) -> None:
    da = pytest.importorskip("dask.array")
    from insarcloud.unwrap.dask_ops import unwrap_tiled_dask

    psi, truth = _case()
    # The numpy test covers chebyshev; here the Dask plumbing is under test, with the quick LS kernel.
    whole = unwrap(psi, "ls", congruent=True)
    arr = da.from_array(psi, chunks=(64, 64))
    tiled = unwrap_tiled_dask(arr, "ls", {"congruent": True}, overlap=16).compute()
    assert tiled.dtype == np.float32
    assert_equal_up_to_one_cycle_constant(tiled.astype(np.float64), whole, truth)
