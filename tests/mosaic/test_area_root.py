"""The area cube's root follows an update (issue 18, insarcloud.io.root): frames whose invert stage gained dates
give an area root equal to a from-scratch mosaic of the same frames, and no-op re-runs leave the root
``zarr.json`` byte-identical."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from insarcloud import io
from insarcloud.io import make_frame_dataset, stages, write_new_cube, write_stage_output
from insarcloud.mosaic.area import run_mosaic

LAT = np.round(np.arange(31.6, 31.56, -0.001), 3)  # 40 px
LON = np.round(np.arange(90.0, 90.05, 0.001), 3)  # 50 px
REF_BOX = (90.0, 31.561, 90.01, 31.6)
FRAMES = {"012A_05443_131313": (-0.62, -0.13, 0.76), "121D_05442_131313": (0.60, -0.12, 0.77)}


def _series(frame: str, n_dates: int, shift: int) -> xr.Dataset:
    """A frame's ts group: ``n_dates`` dates from 2020-01-01 + ``shift`` days, linear LOS motion."""
    dates = pd.date_range("2020-01-01", periods=n_dates, freq="12D").values + np.timedelta64(shift, "D")
    t = (dates - dates[0]) / np.timedelta64(1, "D") / 365.25
    rate = np.linspace(-5, 5, LON.size)[None, :] * np.ones((LAT.size, 1)) * (1 if frame[3] == "A" else -0.5)
    disp = (rate[None] * t[:, None, None]).astype("float32")
    shape = rate.shape
    return xr.Dataset({"displacement": (("date", "y", "x"), disp, {"units": "mm"}),
                       "velocity": (("y", "x"), rate.astype("float32")),
                       "velocity_std": (("y", "x"), np.full(shape, 0.3, "float32")),
                       "residual_rms": (("y", "x"), np.full(shape, 1.0, "float32"))},
                      coords={"date": dates, "y": LAT, "x": LON}, attrs={"ref_y": 5, "ref_x": 3})


def _frames(bucket: str, so: dict, n_dates: int) -> list[str]:
    urls = []
    for frame, (e, n, u) in FRAMES.items():
        url = f"{bucket}/cubes/{frame}.zarr"
        shape = (LAT.size, LON.size)
        root = make_frame_dataset(frame=frame, pairs=["20200101_20200113"], lat=LAT, lon=LON,
                                  phase=np.zeros((1, *shape)), coh=np.ones((1, *shape)),
                                  statics={"los_e": np.full(shape, e), "los_n": np.full(shape, n),
                                           "los_u": np.full(shape, u)})
        write_new_cube(root, url, so)
        _invert(url, frame, n_dates, so)
        urls.append(url)
    return urls


def _invert(url: str, frame: str, n_dates: int, so: dict) -> None:
    """What the invert stage does after new epochs: a new ts group, then the stage pointer names it."""
    group = "ts_quality" if stages.read_pointer(url, "invert", so) is None else f"ts_quality_{n_dates}"
    write_stage_output(_series(frame, n_dates, 6 if frame[3] == "D" else 0), url, group, stage="invert",
                       params={"weights": "quality", "dates": n_dates}, storage_options=so)
    stages.set_current(url, "invert", group, so, base="ts_quality")


def _mosaic(urls: list[str], area: str, so: dict) -> dict:
    return run_mosaic(urls, area, ts_group="ts_quality", reference_box=REF_BOX, precision_group=None,
                      storage_options=so, series_tile=32)


def _root_json(area: str, so: dict) -> bytes:
    fs, path = io.get_fs(io.join(area, "zarr.json"), so)
    return fs.cat_file(path)


def test_area_root_after_an_update_equals_a_fresh_mosaic_and_noop_runs_write_nothing(bucket, storage_options):
    so = storage_options
    urls = _frames(bucket, so, 10)
    area = f"{bucket}/areas/updated.zarr"
    _mosaic(urls, area, so)
    assert xr.open_zarr(area, storage_options=so).sizes["date"] == 2 * (10 - 1)  # A and D dates in the common span

    for url, frame in zip(urls, FRAMES, strict=True):  # LiCSAR added epochs: the invert stage's new output
        _invert(url, frame, 14, so)
    out = _mosaic(urls, area, so)
    assert out["group"] == "" and "skipped" not in out
    fresh = f"{bucket}/areas/fresh.zarr"
    _mosaic(urls, fresh, so)
    a, b = xr.open_zarr(area, storage_options=so), xr.open_zarr(fresh, storage_options=so)
    assert set(a.data_vars) == set(b.data_vars) and dict(a.sizes) == dict(b.sizes)
    assert a.sizes["date"] == 2 * (14 - 1)  # the new dates are in the root
    for name in [*b.data_vars, *b.coords]:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    ma, mb = a.attrs.pop("insarcloud"), b.attrs.pop("insarcloud")
    assert ma["complete"] and ma["params_hash"] == mb["params_hash"]  # the marker: same fingerprint
    assert a.attrs == b.attrs  # the mosaic summary
    assert [g for g, _ in io.cube.open_zarr_group(area, None, so).groups()] == []  # no staging group left

    before = _root_json(area, so)
    for _ in range(10):
        assert _mosaic(urls, area, so)["skipped"] is True
    assert _root_json(area, so) == before
