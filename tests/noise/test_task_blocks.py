"""One task per block of classes (docs/noise.md "One task per write chunk"): the same values as one task per
class, bit for bit, and a graph whose size follows the write chunks, not the number of classes."""

from __future__ import annotations

import numpy as np
import pytest

from insarcloud.errors import CubeError
from insarcloud.noise.dask_ops import noise_dataset
from insarcloud.noise.synth import regular_days, simulate_tiles

SIDE, TILES, M = 6, (4, 4), 30
OPTS = {"alpha_method": "wtest", "models": ("white+ar1", "white+flicker")}


@pytest.fixture(scope="module")
def ts():
    sim = simulate_tiles(np.random.default_rng(8), TILES, SIDE, regular_days(M), {"white": 2.0, "ar1": 4.0},
                         alpha=0.05, gradient=0.3)
    t = sim.ts
    t["displacement"][:, 0, 0] = 0.0  # the reference pixel
    t["displacement"][4, 7, 9] = np.nan  # an incomplete series
    return t.chunk({"date": 10, "y": 9, "x": 24})  # input chunks that match neither the classes nor the tasks


def _run(ts, **kw):
    return noise_dataset(ts, class_size=SIDE * SIDE, opts=OPTS, **kw).compute(scheduler="synchronous")


def _assert_identical(a, b) -> None:
    assert sorted(a.data_vars) == sorted(b.data_vars)
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)  # NaN == NaN here
    assert a.attrs == b.attrs


@pytest.mark.parametrize("stride", [1, 2])
def test_blocks_of_classes_equal_one_task_per_class(ts, stride: int) -> None:
    """Tiles: one task per class (task_side = the tile: the graph before), 2 x 2 tasks of 2 x 2 classes, and
    the default (one write chunk: the whole cube here); the borrow path (stride 2) included."""
    per_class = _run(ts, model_stride=stride, task_side=SIDE)
    blocks = _run(ts, model_stride=stride, task_side=2 * SIDE)
    default = _run(ts, model_stride=stride)
    assert np.isfinite(per_class["velocity_std"].values).sum() == ts["displacement"][0].size - 2
    if stride > 1:  # the borrow path really ran: donors differ from the classes off the lattice
        assert (per_class["class_model_source"].values != per_class["class_id"].values[::SIDE, ::SIDE]).sum() == 12
    _assert_identical(blocks, per_class)
    _assert_identical(default, per_class)


def test_segment_blocks_equal_one_task_per_processing_block(ts) -> None:
    """Segments: the processing block (tile_side(4 class_size) = 12 px) per task against 2 x 2 of them."""
    one = noise_dataset(ts, classes="segments", class_size=36, opts=OPTS, model_stride=2, task_side=12)
    two = noise_dataset(ts, classes="segments", class_size=36, opts=OPTS, model_stride=2, task_side=24)
    one, two = one.compute(scheduler="synchronous"), two.compute(scheduler="synchronous")
    ids = one["class_id"].values
    assert len(np.unique(ids[ids >= 0])) >= 8 and (one["model_source"].values != ids).any()
    _assert_identical(two, one)


def _tasks(ts, class_size: int, task_side: int | None, stride: int) -> int:
    ds = noise_dataset(ts, class_size=class_size, opts=OPTS, model_stride=stride, task_side=task_side)
    return len(ds.__dask_graph__())


@pytest.mark.parametrize("stride", [1, 6])
def test_graph_grows_with_the_task_blocks_not_with_the_classes(stride: int) -> None:
    """A 48 x 48 px cube with fixed input chunks: 16 to 144 classes (class sides 12, 6, 4) at 2 x 2 tasks of
    24 px give the same graph; one task per class grows with the classes; the graph depends on the task blocks
    only."""
    sim = simulate_tiles(np.random.default_rng(1), (4, 4), 12, regular_days(12), {"white": 1.0})
    t = sim.ts.chunk({"date": -1, "y": 16, "x": 16})
    fixed = {side: _tasks(t, side * side, 24, stride) for side in (12, 6, 4)}
    assert len(set(fixed.values())) == 1, fixed
    per_class = {side: _tasks(t, side * side, side, stride) for side in (12, 6, 4)}
    # > 4 tasks per added class (measured ~5.7 at stride 1), the per-class graph 6x the blocks' at 144 classes
    assert per_class[4] - per_class[12] > 4 * (144 - 16) and per_class[4] > 5 * fixed[4], (per_class, fixed)
    finer = _tasks(t, 16, 12, stride)  # 144 classes in 4 x 4 tasks: the graph of 16 classes in 16 tasks
    assert finer == per_class[12] > fixed[4], (finer, per_class, fixed)


def test_task_side_must_hold_whole_class_blocks(ts) -> None:
    with pytest.raises(CubeError, match="task_side"):
        noise_dataset(ts, class_size=SIDE * SIDE, task_side=SIDE + 3)
