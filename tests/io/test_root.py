"""A cube whose root is a stage's output (insarcloud.io.root): the root becomes the staged group, on a local
directory and on the real local S3 endpoint; child groups and foreign objects stay; a foreign root is refused;
a swap stopped half-way is finished by the next call."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from insarcloud import io
from insarcloud.errors import StageOutputError
from insarcloud.io.cube import MARKER, params_hash, read_marker, write_stage_output
from insarcloud.io.root import plan_root_output, replace_root


def _mosaic(n_dates: int, ny: int, extra: str | None) -> xr.Dataset:
    rng = np.random.default_rng(n_dates)
    lat = np.round(np.arange(31.6, 31.6 - ny * 0.001, -0.001), 3)[:ny]
    lon = np.round(np.arange(90.0, 90.012, 0.001), 3)[:12]
    ds = xr.Dataset({"velocity_A": (("y", "x"), rng.standard_normal((ny, 12)).astype("float32"), {"units": "mm/yr"}),
                     "displacement_A": (("date", "y", "x"), rng.standard_normal((n_dates, ny, 12)).astype("float32"),
                                        {"units": "mm"})},
                    coords={"date": pd.date_range("2020-01-01", periods=n_dates, freq="12D").values,
                            "y": lat, "x": lon}, attrs={"mosaic": json.dumps({"run": n_dates})})
    if extra:
        ds[extra] = (("y", "x"), np.full((ny, 12), float(n_dates), "float32"), {"units": "mm/yr"})
    return ds


def _write(url: str, ds: xr.Dataset, params: dict, so: dict | None) -> None:
    """What the mosaic does: plan, stage into a group, replace the root."""
    plan = plan_root_output(url, "mosaic", params, so)
    assert not plan.done and plan.group == f"mosaic_{params_hash(params)[:8]}"
    write_stage_output(ds, url, plan.group, stage="mosaic", params=params, storage_options=so)
    replace_root(url, plan.group, so)


def _equal(got: xr.Dataset, want: xr.Dataset) -> None:
    assert set(got.data_vars) == set(want.data_vars) and dict(got.sizes) == dict(want.sizes)
    for name in [*want.data_vars, *want.coords]:  # (spatial_ref and CF coordinate attributes are added)
        np.testing.assert_array_equal(got[name].values, want[name].values, err_msg=name)
        if name in want.data_vars:
            assert got[name].attrs.get("units") == want[name].attrs["units"], name


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path):  # type: ignore[no-untyped-def]
    if request.param == "file":
        return f"file://{tmp_path}/area.zarr", None
    bucket, so = request.getfixturevalue("bucket"), request.getfixturevalue("storage_options")
    return f"{bucket}/areas/area.zarr", so


# zarr warns when its listing meets an object that is not a Zarr node: the foreign object this test puts there
@pytest.mark.filterwarnings("ignore:Object at logs is not recognized:UserWarning")
def test_root_becomes_the_new_output_and_children_stay(store):
    url, so = store
    first = _mosaic(4, 10, "velocity_east")
    _write(url, first, {"run": 1}, so)
    _equal(xr.open_zarr(url, storage_options=so), first)
    # children the program and others put into the cube: a stage pointer, a foreign group, a foreign object
    io.write_stage_output(first[["velocity_A"]], url, "notes", stage="user", params={}, storage_options=so)
    fs, path = io.get_fs(url, so)
    fs.pipe_file(f"{path}/logs/run.txt", b"kept")
    from insarcloud.io.storage import write_bytes_atomic

    write_bytes_atomic(io.join(url, "stages", "zarr.json"),
                       json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {"p": 1}}).encode(), so)

    second = _mosaic(7, 14, None)  # more dates, another grid, one variable fewer
    assert plan_root_output(url, "mosaic", {"run": 1}, so) == ("", True)  # current: nothing to do
    _write(url, second, {"run": 2}, so)
    got = xr.open_zarr(url, storage_options=so)  # consolidated metadata: no warning (filterwarnings=error)
    _equal(got, second)
    assert json.loads(got.attrs["mosaic"]) == {"run": 7}
    marker = read_marker(url, "", so)
    assert marker["complete"] and marker["params_hash"] == params_hash({"run": 2}) and marker["stage"] == "mosaic"
    groups = sorted(n for n, _ in io.cube.open_zarr_group(url, None, so).groups())
    assert groups == ["notes", "stages"]  # the staging groups are gone, the children stay
    assert fs.cat_file(f"{path}/logs/run.txt") == b"kept"
    assert io.open_cube(url, so, group="notes")["velocity_A"].shape == (10, 12)
    assert plan_root_output(url, "mosaic", {"run": 2}, so) == ("", True)


def test_a_root_written_by_something_else_is_refused(tmp_path):
    url = f"file://{tmp_path}/foreign.zarr"
    _mosaic(3, 5, None).to_zarr(tmp_path / "foreign.zarr", zarr_format=3, consolidated=False)  # no marker
    write_stage_output(_mosaic(4, 5, None), url, "mosaic_x", stage="mosaic", params={"a": 1})
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    with pytest.raises(StageOutputError, match="did not write"):
        replace_root(url, "mosaic_x")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == before
    with pytest.raises(StageOutputError, match="not complete"):
        io.cube.open_zarr_group(url, "mosaic_x", mode="r+").attrs[MARKER] = {"stage": "mosaic", "complete": False}
        replace_root(url, "mosaic_x")


def test_a_swap_stopped_half_way_is_finished_by_the_next_run(tmp_path, monkeypatch):
    import insarcloud.io.root as root

    url = f"file://{tmp_path}/area.zarr"
    _write(url, _mosaic(4, 10, "velocity_east"), {"run": 1}, None)
    new, params = _mosaic(6, 10, None), {"run": 2}
    plan = plan_root_output(url, "mosaic", params)
    write_stage_output(new, url, plan.group, stage="mosaic", params=params)
    real, calls = root.with_retries, []

    def dying(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(fn)
        if len(calls) == 5:  # in the middle of the array copies
            raise OSError("killed")
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(root, "with_retries", dying)
    with pytest.raises(OSError, match="killed"):
        replace_root(url, plan.group)
    monkeypatch.setattr(root, "with_retries", real)
    assert read_marker(url, "")["complete"] is False  # no run trusts the half-swapped root
    again = plan_root_output(url, "mosaic", params)
    assert again == (plan.group, True)  # the staged output is complete: only the swap is left
    replace_root(url, again.group)
    got = xr.open_zarr(url)
    assert set(got.data_vars) == {"velocity_A", "displacement_A"} and got.sizes["date"] == 6
    np.testing.assert_array_equal(got["displacement_A"].values, new["displacement_A"].values)
