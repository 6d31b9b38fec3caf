"""One definition of each option: the tile/overlap rule against the quality blend it protects, and the default
weights/ts group that the inversion writes and its consumers read."""

from __future__ import annotations

import argparse
import inspect

import numpy as np
import pytest

from insarcloud.core.options import DEFAULT_INVERT_WEIGHTS, DEFAULT_TS_GROUP, tile_overlap_error, ts_group


def _blend_sum(n: int, tile: int, overlap: int) -> np.ndarray:
    """Sum over the global tile grid of one axis of the quality stage's taper (what infer_region divides by)."""
    from insarcloud.qc.model import blend_weights

    w = blend_weights(tile, overlap)[tile // 2]  # one row of the separable taper
    stride = tile - overlap
    total = np.zeros(n + tile)
    for s in range(0, max(n - overlap, 1), stride):
        total[s:s + tile] += w
    return total[:n]


@pytest.mark.parametrize(("tile", "overlap"), [(64, 0), (64, 16), (64, 31), (256, 64)])
def test_allowed_overlaps_blend_to_a_partition_of_unity(tile: int, overlap: int) -> None:
    assert tile_overlap_error(tile, overlap) is None
    s = _blend_sum(8 * tile, tile, overlap)
    inner = s[overlap:-tile]  # away from the image edges, where only one tile's outer taper lies
    np.testing.assert_allclose(inner, 1.0, atol=1e-6)


@pytest.mark.parametrize(("tile", "overlap"), [(64, 40), (64, 48), (256, 200)])
def test_refused_overlaps_break_the_blend(tile: int, overlap: int) -> None:
    # the rule the stage used before (overlap < tile) let these through: a tile's two tapers overwrite each
    # other and every pixel lies in 3+ tiles, so the weights no longer sum to one
    assert overlap < tile
    assert tile_overlap_error(tile, overlap) == f"overlap {overlap} must be less than half the tile {tile}"
    s = _blend_sum(8 * tile, tile, overlap)
    assert np.abs(s[overlap:-tile] - 1.0).max() > 0.1


def test_the_quality_kernel_applies_the_same_rule() -> None:
    from insarcloud.qc.model import tile_starts_global

    assert tile_starts_global(100, 64, 31).tolist() == [0, 33, 66]
    with pytest.raises(ValueError, match="overlap 40 must be less than half the tile 64"):
        tile_starts_global(100, 64, 40)
    with pytest.raises(ValueError, match="overlap -1 must be >= 0"):
        tile_starts_global(100, 64, -1)


def test_one_default_for_the_inversion_and_its_readers() -> None:
    from insarcloud import cli
    from insarcloud.config import InvertParams
    from insarcloud.forecast.serve import run_forecast
    from insarcloud.invert.dask_ops import invert_cube
    from insarcloud.mosaic.area import run_mosaic
    from insarcloud.noise.dask_ops import noise_cube

    assert DEFAULT_TS_GROUP == ts_group(DEFAULT_INVERT_WEIGHTS) == "ts_quality_closure"
    assert InvertParams().weights == DEFAULT_INVERT_WEIGHTS
    assert inspect.signature(invert_cube).parameters["weights"].default == DEFAULT_INVERT_WEIGHTS
    # the readers take the invert stage's current output (its pointer, docs/STAGES.md) unless told a group
    for reader in (noise_cube, run_forecast, run_mosaic):
        assert inspect.signature(reader).parameters["ts_group"].default is None, reader
    parser = cli.build_parser()
    cube = "s3://b/cubes/F.zarr"
    parsed: dict[str, argparse.Namespace] = {
        "invert": parser.parse_args(["invert", cube]),
        "noise": parser.parse_args(["noise", cube]),
        "forecast": parser.parse_args(["forecast", cube, "--factors", "f.zarr"]),
    }
    assert ts_group(parsed["invert"].weights) == DEFAULT_TS_GROUP
    assert parsed["noise"].ts is None and parsed["forecast"].ts is None
