"""Region writes into a stage template (the Ray writers' path): direct zarr writes and xarray's encoded path."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from insarcloud.errors import StageOutputError
from insarcloud.io.cube import create_stage_template, mark_stage_complete, write_stage_region


def _template() -> xr.Dataset:
    y = np.arange(8.0)
    x = np.arange(6.0)
    q = da.zeros((3, 8, 6), chunks=(1, 4, 3), dtype=np.float32)
    n = da.zeros((8, 6), chunks=(4, 3), dtype=np.int16)
    s = da.zeros((8, 6), chunks=(4, 3), dtype=np.float32)
    ds = xr.Dataset({"quality": (("pair", "y", "x"), q), "count": (("y", "x"), n), "scaled": (("y", "x"), s)},
                    coords={"pair": np.array(["a", "b", "c"], dtype=object), "y": y, "x": x})
    ds["quality"].attrs["units"] = "1"
    return ds


def test_region_writes_read_back_exactly(tmp_path, monkeypatch):
    calls = []
    real_to_zarr = xr.Dataset.to_zarr
    monkeypatch.setattr(xr.Dataset, "to_zarr", lambda self, *a, **k: calls.append(k) or real_to_zarr(self, *a, **k))
    url = f"file://{tmp_path}/cube.zarr"
    enc = {"scaled": {"dtype": "int16", "scale_factor": 0.5, "_FillValue": -1}}
    create_stage_template(_template(), url, "g", stage="t", params={"p": 1}, encoding=enc)
    rng = np.random.default_rng(0)
    q = rng.random((3, 8, 6)).astype(np.float32)
    q[1, 0, 0] = np.nan
    n = rng.integers(0, 100, (8, 6)).astype(np.int16)
    s = rng.integers(0, 50, (8, 6)) * 0.5
    for i in range(3):
        for y0 in (0, 4):
            for x0 in (0, 3):
                sl = {"pair": slice(i, i + 1), "y": slice(y0, y0 + 4), "x": slice(x0, x0 + 3)}
                part = xr.Dataset({"quality": (("pair", "y", "x"), q[sl["pair"], sl["y"], sl["x"]])})
                write_stage_region(part, url, "g", sl)
    for y0 in (0, 4):
        sl = {"y": slice(y0, y0 + 4)}
        # count goes the direct way; scaled needs CF encoding (scale_factor) and goes through xarray
        write_stage_region(xr.Dataset({"count": (("y", "x"), n[y0:y0 + 4])}), url, "g", sl)
        write_stage_region(xr.Dataset({"scaled": (("y", "x"), s[y0:y0 + 4])}), url, "g", sl)
    # only the two CF-encoded writes take xarray's path (the template itself is one more to_zarr call)
    assert sum("region" in k for k in calls) == 2
    mark_stage_complete(url, "g")
    out = xr.open_zarr(url, group="g").load()
    np.testing.assert_array_equal(out.quality.values, q)  # NaN where NaN was written
    np.testing.assert_array_equal(out["count"].values, n)
    np.testing.assert_allclose(out.scaled.values, s)
    assert out.quality.attrs["units"] == "1"


def test_unaligned_region_is_refused(tmp_path):
    url = f"file://{tmp_path}/cube.zarr"
    create_stage_template(_template(), url, "g", stage="t", params={"p": 1})
    part = xr.Dataset({"count": (("y", "x"), np.ones((3, 6), np.int16))})
    with pytest.raises(StageOutputError, match="not aligned"):
        write_stage_region(part, url, "g", {"y": slice(1, 4)})
    with pytest.raises(StageOutputError, match="nope"):
        write_stage_region(xr.Dataset({"nope": (("y", "x"), np.ones((4, 6)))}), url, "g", {"y": slice(0, 4)})
