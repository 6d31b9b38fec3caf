"""The viewer reads one pixel from the one chunk that holds it (every other chunk is corrupted here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from insarcloud.errors import InputArrayError
from insarcloud.io import make_frame_dataset, write_new_cube, write_stage_output
from insarcloud.view.data import CubeView, fit_line


def test_pixel_reads_only_its_chunk(tmp_path: Path) -> None:
    ny, nx, nd = 48, 64, 9
    lat = np.round(31.6 - 0.001 * np.arange(ny), 3)
    lon = np.round(90.0 + 0.001 * np.arange(nx), 3)
    url = str(tmp_path / "012A_05443_131313.zarr")
    write_new_cube(make_frame_dataset(frame="012A_05443_131313", pairs=["20200101_20200113"], lat=lat, lon=lon,
                                      phase=np.zeros((1, ny, nx)), coh=np.ones((1, ny, nx))), url)
    dates = pd.date_range("2020-01-01", periods=nd, freq="12D").values
    disp = np.random.default_rng(0).normal(0, 3, (nd, ny, nx)).astype("float32")
    ts = xr.Dataset({"displacement": (("date", "y", "x"), disp), "velocity": (("y", "x"), disp[-1] * 2)},
                    coords={"date": dates, "y": lat, "x": lon})
    write_stage_output(ts, url, "ts_quality_closure", stage="invert", params={},
                       encoding={"displacement": {"chunks": (nd, 16, 16)}})
    view = CubeView(url)
    iy, ix = 20, 37  # chunk (0, 1, 2)
    chunk_dir = Path(url) / "ts_quality_closure" / "displacement" / "c"
    files = [p for p in chunk_dir.rglob("*") if p.is_file()]
    assert len(files) == 3 * 4
    keep = chunk_dir / "0" / "1" / "2"
    for p in files:
        if p != keep:
            p.write_bytes(b"not a chunk")
    got = view.pixel(iy, ix)
    np.testing.assert_allclose(got["series"][0]["values"], disp[:, iy, ix], atol=1e-4)
    with pytest.raises(Exception):  # noqa: B017,PT011 (the codec's own error): a read of another chunk fails
        view.pixel(0, 0)
    with pytest.raises(InputArrayError, match="outside"):
        view.pixel(ny, 0)


def test_fit_line_goes_through_a_linear_series() -> None:
    dates = pd.date_range("2020-01-01", periods=30, freq="12D").values
    t = (dates - dates[0]) / np.timedelta64(1, "D") / 365.25
    fit = fit_line(dates, 4.0 + 12.5 * t, 12.5)
    assert fit["value_start"] == pytest.approx(4.0, abs=1e-3)
    assert fit["value_end"] == pytest.approx(4.0 + 12.5 * t[-1], abs=1e-3)


def test_missing_group_names_the_ones_there(tmp_path: Path) -> None:
    from insarcloud.errors import CubeError

    url = str(tmp_path / "012A_05443_131313.zarr")
    lat, lon = np.array([31.6, 31.599]), np.array([90.0, 90.001])
    write_new_cube(make_frame_dataset(frame="012A_05443_131313", pairs=["20200101_20200113"], lat=lat, lon=lon,
                                      phase=np.zeros((1, 2, 2)), coh=np.ones((1, 2, 2))), url)
    ts = xr.Dataset({"velocity": (("y", "x"), np.zeros((2, 2), "float32"))}, coords={"y": lat, "x": lon})
    write_stage_output(ts, url, "ts_none", stage="invert", params={})
    with pytest.raises(CubeError, match=r"no group 'ts_quality_closure'.*ts_none"):
        CubeView(url)
    assert CubeView(url, "ts_none").layers == ["velocity"]


def test_server_process_serves_a_cube(tmp_path: Path) -> None:
    """``python -m insarcloud.view.server URL`` (what ``insarcloud view`` runs) listens on 127.0.0.1 and answers."""
    import json
    import subprocess
    import sys
    import urllib.request

    from insarcloud.pipelines.local_s3 import stop_process

    url = str(tmp_path / "012A_05443_131313.zarr")
    lat, lon = np.array([31.6, 31.599]), np.array([90.0, 90.001])
    write_new_cube(make_frame_dataset(frame="012A_05443_131313", pairs=["20200101_20200113"], lat=lat, lon=lon,
                                      phase=np.zeros((1, 2, 2)), coh=np.ones((1, 2, 2))), url)
    ts = xr.Dataset({"velocity": (("y", "x"), np.ones((2, 2), "float32"))}, coords={"y": lat, "x": lon})
    write_stage_output(ts, url, "ts_quality_closure", stage="invert", params={})
    proc = subprocess.Popen([sys.executable, "-m", "insarcloud.view.server", url, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving http://127.0.0.1:"), (line, proc.stderr.read()[-2000:] if proc.poll() else "")
        base = line.split()[1]
        with urllib.request.urlopen(base + "api/meta", timeout=30) as r:
            meta = json.loads(r.read())
        assert meta["kind"] == "frame" and meta["group"] == "ts_quality_closure" and meta["layers"] == ["velocity"]
    finally:
        stop_process(proc)
