"""QC by stored tile (insarcloud.qc.tiles) against the block path it replaces in ``run_qc``: the same group."""

from __future__ import annotations

import logging
import shutil

import dask
import numpy as np
import pytest
import xarray as xr

from insarcloud import io
from insarcloud.io.cube import COH_SCALE, cube_encoding
from insarcloud.qc import dask_ops, tile_run, tiles
from insarcloud.qc.config import QCParams

from .conftest import synthetic_cube

#: float64 sums whose order differs (per tile, then a tree over tiles, against a tree over blocks): last bits only.
SUM_ORDER = ("triplet_rms", "triplet_rms_wrapped")


def _write(ds: xr.Dataset, url: str, chunk: int, coh_uint8: bool) -> None:
    ds.to_zarr(url, mode="w", zarr_format=3, consolidated=False,
               encoding=cube_encoding(ds, chunk, coh_uint8=coh_uint8))


def _both(ds: xr.Dataset, tmp_path, chunk: int, p: QCParams, *, coh_uint8: bool = True,
          caplog: pytest.LogCaptureFixture) -> tuple[xr.Dataset, xr.Dataset]:
    """The qc group of the same cube by tile and by block (``run_tiled`` declined), synchronous scheduler."""
    a, b = str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr")
    _write(ds, a, chunk, coh_uint8)
    shutil.copytree(a, b)
    with dask.config.set(scheduler="synchronous"), caplog.at_level(logging.INFO, logger="insarcloud.qc"):
        ga = dask_ops.run_qc(a, p)
        assert "qc by stored tile" in caplog.text, caplog.text
        caplog.clear()
        orig = tile_run.run_tiled
        try:
            tile_run.run_tiled = lambda *args, **kw: False  # type: ignore[assignment]
            gb = dask_ops.run_qc(b, p)
        finally:
            tile_run.run_tiled = orig  # type: ignore[assignment]
        assert "qc by stored tile" not in caplog.text
    return (xr.open_zarr(a, group=ga, consolidated=False).load(), xr.open_zarr(b, group=gb, consolidated=False).load())


def _assert_same_group(qa: xr.Dataset, qb: xr.Dataset) -> None:
    assert sorted(qa.variables) == sorted(qb.variables)
    for name in qb.variables:
        x, y = qa[name], qb[name]
        assert x.dtype == y.dtype and x.dims == y.dims, name
        assert x.attrs == y.attrs, name
        if name in SUM_ORDER:
            np.testing.assert_allclose(x.values, y.values, rtol=1e-12, err_msg=name)
        else:
            np.testing.assert_array_equal(x.values, y.values, err_msg=name)
        if x.ndim >= 2:
            assert x.encoding["chunks"] == y.encoding["chunks"], name
    skip = {"insarcloud", "source_url"}
    assert {k: v for k, v in qa.attrs.items() if k not in skip} == {k: v for k, v in qb.attrs.items() if k not in skip}


@pytest.mark.parametrize(("shape", "chunk", "block"), [((100, 90), 32, 16), ((65, 50), 32, 32), ((70, 70), 64, 32)])
def test_tile_path_equals_block_path(tmp_path, caplog, shape: tuple[int, int], chunk: int, block: int) -> None:
    """Several tiles with their halos (a 65 px frame: the last 1 px tile joins the one before), water from a
    landmask, uint8 coherence: every variable of the group as the block path writes it."""
    s, ds = synthetic_cube(4, shape=shape)
    lm = np.ones(shape, np.float32)
    lm[: shape[0] // 3, : shape[1] // 4] = 0  # a lake across tile borders
    ds["landmask"] = (("y", "x"), lm)
    qa, qb = _both(ds, tmp_path, chunk, QCParams(block=block), caplog=caplog)
    _assert_same_group(qa, qb)
    assert qa.attrs["landmask_applied"] == 1 and np.all(qa["label"].values[:, lm == 0] == 255)


def test_tile_path_subset_of_pairs_no_unw_float_coh(tmp_path, caplog) -> None:
    """Pairs not ingested are skipped (their stored indices), no unw, coherence stored as float32."""
    _, ds = synthetic_cube(5, shape=(64, 60), unw=False)
    ingested = np.ones(ds.sizes["pair"], bool)
    ingested[[1, 4]] = False
    ds["ingested"] = ("pair", ingested)
    qa, qb = _both(ds, tmp_path, 32, QCParams(block=16), coh_uint8=False, caplog=caplog)
    assert qa.sizes["pair"] == ds.sizes["pair"] - 2 and qa.attrs["has_unw"] == 0
    _assert_same_group(qa, qb)


def test_tiles_halved_to_fit_the_budget(tmp_path, caplog, monkeypatch) -> None:
    """A stored chunk whose stack exceeds the tile budget is read in bands (tiles of half a chunk): same group."""
    _, ds = synthetic_cube(6, shape=(64, 64))
    n = ds.sizes["pair"]
    budget = 36 * 68 * n * 9 / 2**20  # half a chunk (32 rows) with its halo
    monkeypatch.setattr(tiles, "TILE_MEM_MB", budget)
    plan = tiles.plan_tiles((n, 64, 64), (64, 64), 16, 2, has_unw=True, coh_itemsize=1)
    assert plan == tiles.TilePlan((0, 32, 64), (0, 64)), plan
    qa, qb = _both(ds, tmp_path, 64, QCParams(block=16), caplog=caplog)
    _assert_same_group(qa, qb)


def test_each_tile_read_once_per_pass(tmp_path, monkeypatch) -> None:
    """Pass 1's partials and strips come from one task per tile (a graph optimised per collection type ran
    every tile twice), pass 2 one per tile."""
    _, ds = synthetic_cube(7, shape=(64, 64))
    url = str(tmp_path / "c.zarr")
    _write(ds, url, 32, True)
    calls: list[tuple[str, tuple]] = []
    for name in ("tile_pass1", "tile_pass2"):
        real = getattr(tile_run, name)

        def counted(*args, _real=real, _name=name, **kw):  # type: ignore[no-untyped-def]
            calls.append((_name, tuple(args[1])))
            return _real(*args, **kw)

        monkeypatch.setattr(tile_run, name, counted)
    with dask.config.set(scheduler="synchronous"):
        dask_ops.run_qc(url, QCParams(block=16))
    assert sorted(calls) == sorted([(f"tile_pass{k}", (y0, y0 + 32)) for k in (1, 2) for y0 in (0, 32)
                                    for _ in range(2)]), calls


def test_plan_says_why_not() -> None:
    assert "not a multiple" in tiles.plan_tiles((10, 100, 100), (48, 48), 32, 2, has_unw=True, coh_itemsize=1)
    assert "exceeds" in tiles.plan_tiles((10_000, 512, 512), (512, 512), 512, 2, has_unw=True, coh_itemsize=1)
    plan = tiles.plan_tiles((700, 2500, 2800), (512, 512), 32, 2, has_unw=True, coh_itemsize=1)
    assert plan.y_edges[-2:] == (2048, 2500) and plan.x_edges[-2:] == (2560, 2800)  # one tile per stored chunk


def test_decode_coh_is_xarrays(tmp_path) -> None:
    """Every stored code decodes to the float32 ``open_cube`` gives (CF scale and fill, then the cast)."""
    codes = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    ds = io.make_frame_dataset(frame="012A_05850_131313", pairs=["20240101_20240113"], lat=np.arange(16.0),
                               lon=np.arange(16.0), phase=np.zeros((1, 16, 16), np.float32),
                               coh=(codes * COH_SCALE).astype(np.float32))
    url = str(tmp_path / "c.zarr")
    _write(ds, url, 16, True)
    src = tile_run.tile_source(url, None, io.open_cube(url))
    raw = io.cube.open_zarr_group(url)["coh"][:]
    assert raw.dtype == np.uint8 and src.coh_attrs
    np.testing.assert_array_equal(tiles.decode_coh(raw, src.coh_attrs), io.open_cube(url)["coh"].values)


def test_tile_path_peak_memory_flat_as_frame_grows(tmp_path) -> None:
    """Issue 20: QC's traced peak stays nearly flat when the frame grows 4x at a fixed stored chunk (its tasks hold
    one tile; the tiles' border strips and the graph grow with the frame). Measured 12.1 -> 15.4 MB (1.27x) for
    128 -> 256 px; the block path it replaced on the same cubes: 16.3 -> 52.8 MB (3.2x)."""
    import tracemalloc

    peaks = []
    for n in (64, 128, 256):  # 64: a warm-up (first imports and caches are not the stage's)
        _, ds = synthetic_cube(8, shape=(n, n))
        url = str(tmp_path / f"c{n}.zarr")
        _write(ds, url, 32, True)
        del ds
        tracemalloc.start()
        try:
            with dask.config.set(scheduler="synchronous"):
                dask_ops.run_qc(url, QCParams(block=16))
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert peaks[2] < 1.6 * peaks[1], [p / 1e6 for p in peaks]
