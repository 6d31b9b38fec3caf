"""Ingest of real LiCSAR products: local S3 endpoint, Dask worker processes, real GeoTIFFs, real Zarr."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import s3fs
import xarray as xr
import zarr

from insarcloud.io import open_cube
from insarcloud.io.ingest import ingest_frame
from insarcloud.io.licsar import coherence_to_uint8, discover_frame, read_rows, to_cube_values
from insarcloud.pipelines.local_s3 import free_port

FRAME = "106A_09048_000909"
PAIRS = ["20240106_20240118", "20240106_20240130", "20240106_20240211",
         "20240118_20240130", "20240118_20240211", "20240130_20240211"]


def _upload(frame_dir: Path, bucket: str, storage_options: dict, skip: tuple[str, ...] = ()) -> str:
    fs = s3fs.S3FileSystem(**storage_options)
    root = f"{bucket}/licsar"
    for path in frame_dir.rglob("*"):
        if path.is_file() and not any(s in str(path) for s in skip):
            fs.put_file(str(path), f"{root}/106/{FRAME}/{path.relative_to(frame_dir)}")
    return root


def _truth(frame_dir: Path, pair: str, kind: str) -> np.ndarray:
    with rasterio.open(frame_dir / "interferograms" / pair / f"{pair}.geo.{kind}.tif") as ds:
        raw = ds.read(1)
    out = raw.astype("float32")
    if kind == "cc":
        return np.where(raw == 0, np.nan, out / 255.0).astype("float32")
    out[raw == 0] = np.nan
    return out


def test_discover_reports_missing(licsar_frame_dir):
    products = discover_frame(str(licsar_frame_dir.parent.parent), FRAME)
    assert sorted(products.pairs) == PAIRS
    assert all(set(refs) == {"diff_pha", "cc"} for refs in products.pairs.values())
    assert f"metadata/{FRAME}.geo.hgt.tif" in products.missing
    assert sum("unw.tif" in m for m in products.missing) == 6
    assert products.metadata["heading"] == "-12.019061"
    assert products.baselines["20240118"] == 37.0
    assert len(products.polygon) >= 4


def test_ingest_s3_real_frame(licsar_frame_dir, bucket, storage_options, dask_client):
    src = _upload(licsar_frame_dir, bucket, storage_options)
    cube = f"{bucket}/cubes/{FRAME}.zarr"
    report = ingest_frame(src, FRAME, cube, storage_options=storage_options, chunk=128, client=dask_client)
    assert sorted(report.completed) == PAIRS and not report.failed
    assert report.bytes_read > 0

    ds = xr.open_zarr(cube, storage_options=storage_options)  # what any user does
    assert ds.rio.crs.to_epsg() == 4326
    assert list(ds.pair.values) == PAIRS
    assert ds.primary.dtype.kind == "M" and ds.date.size == 4
    np.testing.assert_array_equal(ds.phase.sel(pair=PAIRS[2]).values, _truth(licsar_frame_dir, PAIRS[2], "diff_pha"))
    # coherence is stored as LiCSAR stores it (uint8 k, 0 = no data), losslessly; CF decoding gives k/255
    coh_truth = _truth(licsar_frame_dir, PAIRS[4], "cc")
    np.testing.assert_allclose(ds.coh.sel(pair=PAIRS[4]).values, coh_truth, rtol=1e-7)
    assert ds.coh.encoding["dtype"] == np.uint8 and ds.coh.encoding["scale_factor"] == pytest.approx(1 / 255)
    with rasterio.open(licsar_frame_dir / "interferograms" / PAIRS[4] / f"{PAIRS[4]}.geo.cc.tif") as src_cc:
        np.testing.assert_array_equal(zarr.open_array(cube, path="coh", storage_options=storage_options)[4],
                                      src_cc.read(1))
    cube_ds = open_cube(cube, storage_options)  # the contract's float32, equal to the product's cc / 255
    assert cube_ds.coh.dtype == np.float32
    np.testing.assert_array_equal(cube_ds.coh.sel(pair=PAIRS[4]).values, coh_truth)
    # one object per pair and variable (shards of 128 x 128 chunks), not one per chunk
    assert ds.phase.encoding["chunks"] == (1, 128, 128) and ds.phase.encoding["shards"] == (1, 384, 384)
    fs = s3fs.S3FileSystem(**storage_options)
    assert len(fs.find(f"{cube}/phase/c")) == len(PAIRS)
    assert "unw" not in ds and "hgt" not in ds  # the real frame has neither; reported, not invented
    assert ds.attrs["heading_deg"] == pytest.approx(-12.019061)
    assert ds.phase.attrs["units"] == "rad"
    assert any("geo.E.tif" in m for m in ds.attrs["ingest"]["missing_products"])

    again = ingest_frame(src, FRAME, cube, storage_options=storage_options, chunk=128, client=dask_client)
    assert again.completed == [] and sorted(again.skipped) == PAIRS


def test_append_new_pair_and_bad_products(licsar_frame_dir, tmp_path, bucket, storage_options, dask_client):
    """New products append; a corrupt and a mis-gridded product fail alone, named in the log."""
    work = tmp_path / "licsar" / "106" / FRAME
    shutil.copytree(licsar_frame_dir, work)
    held_back = work / "interferograms" / PAIRS[5]
    shutil.move(held_back, tmp_path / "held")
    src = f"{bucket}/src"
    fs = s3fs.S3FileSystem(**storage_options)
    fs.put(str(tmp_path / "licsar") + "/", src + "/", recursive=True)
    cube = f"{bucket}/cubes/{FRAME}.zarr"
    first = ingest_frame(src, FRAME, cube, storage_options=storage_options, chunk=128, client=dask_client)
    assert sorted(first.completed) == PAIRS[:5]

    # the held-back pair arrives, plus a truncated file and one on a shifted grid
    fs.put(str(tmp_path / "held") + "/", f"{src}/106/{FRAME}/interferograms/{PAIRS[5]}/", recursive=True)
    good = work / "interferograms" / PAIRS[0] / f"{PAIRS[0]}.geo.diff_pha.tif"
    fs.pipe_file(f"{src}/106/{FRAME}/interferograms/20240211_20240223/20240211_20240223.geo.diff_pha.tif",
                 good.read_bytes()[:4000])
    with rasterio.open(good) as ds:
        profile, data = ds.profile.copy(), ds.read(1)
    profile["transform"] = ds.transform @ ds.transform.translation(5, 0)
    shifted = tmp_path / "shifted.tif"
    with rasterio.open(shifted, "w", **profile) as out:
        out.write(data, 1)
    fs.put_file(str(shifted), f"{src}/106/{FRAME}/interferograms/20240118_20240223/20240118_20240223.geo.diff_pha.tif")

    second = ingest_frame(src, FRAME, cube, storage_options=storage_options, chunk=128, client=dask_client)
    assert second.completed == [PAIRS[5]]
    assert "20240211_20240223" in second.failed and "20240211_20240223.geo.diff_pha.tif" in second.failed[
        "20240211_20240223"]
    assert "geotransform" in second.failed["20240118_20240223"]
    ds = open_cube(cube, storage_options)
    assert list(ds.pair.values) == PAIRS[:5] + [PAIRS[5]]
    np.testing.assert_array_equal(ds.phase.sel(pair=PAIRS[5]).values, _truth(licsar_frame_dir, PAIRS[5], "diff_pha"))
    np.testing.assert_array_equal(ds.phase.sel(pair=PAIRS[1]).values, _truth(licsar_frame_dir, PAIRS[1], "diff_pha"))
    errors = xr.open_zarr(cube, storage_options=storage_options).attrs["ingest"]["errors"]
    assert set(errors) == {"20240211_20240223", "20240118_20240223"}


def test_http_directory_listing(licsar_frame_dir):
    """LiCSAR's own web tree is an HTTP directory listing: discovery and reads work over it."""
    root = licsar_frame_dir.parent.parent
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                             "--directory", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port)
        url = f"http://127.0.0.1:{port}"
        products = discover_frame(url, FRAME)
        assert sorted(products.pairs) == PAIRS
        ref = products.pairs[PAIRS[0]]["cc"]
        rows = read_rows(ref.url, 10, 20, "cc")
        np.testing.assert_array_equal(rows, _truth(licsar_frame_dir, PAIRS[0], "cc")[10:20])
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_kill_mid_ingest_then_resume(licsar_frame_dir, tmp_path):
    """SIGKILL the CLI and its Dask workers mid-write: the cube still opens; the next run completes it.

    The kill comes at a recorded point, not after a time: the first worker process to have written 3
    shard-row blocks kills the process group (ingest's INSARCLOUD_FAULT_KILL_AFTER_WRITES hook), while
    the frame needs 65 such blocks at --chunk 16."""
    cube = tmp_path / "cube.zarr"
    src = str(licsar_frame_dir.parent.parent)
    cmd = [sys.executable, "-m", "insarcloud.cli", "ingest", src, "--frame", FRAME, "--cube", str(cube),
           "--chunk", "16"]
    env = os.environ | {"INSARCLOUD_FAULT_KILL_AFTER_WRITES": "3"}
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env)
    try:
        rc = proc.wait(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert rc == -signal.SIGKILL, rc

    ds = xr.open_zarr(cube)  # opens, at the last consolidated state
    assert "phase" in ds
    assert open_cube(str(cube)).sizes["pair"] < len(PAIRS)
    assert any((cube / "phase" / "c").rglob("*")), "the kill came before any data object landed"

    report = ingest_frame(src, FRAME, str(cube), chunk=16)
    assert sorted(report.completed) == PAIRS
    ds = open_cube(str(cube))
    assert ds.sizes["pair"] == 6 and bool(ds.ingested.all())
    for pair in PAIRS:
        np.testing.assert_array_equal(ds.phase.sel(pair=pair).values, _truth(licsar_frame_dir, pair, "diff_pha"))


def _wait_port(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(port)


def test_coherence_to_uint8_is_licsar_steps():
    """Float coherence is stored in LiCSAR's 1/255 steps; uint8 passes through; no valid value becomes 0."""
    raw = np.array([[np.nan, 0.0, -0.1, 1e-4, 0.5, 1.0, 1.7]], dtype=np.float32)
    np.testing.assert_array_equal(coherence_to_uint8(raw), [[0, 0, 0, 1, 128, 255, 255]])
    u8 = np.arange(256, dtype=np.uint8)[None]
    assert coherence_to_uint8(u8) is u8
    # what open_cube gives back for every stored k is exactly float32(k / 255), as read_rows returns it
    decoded = (u8.astype(np.float64) * (1 / 255)).astype(np.float32)
    np.testing.assert_array_equal(decoded[:, 1:], to_cube_values(u8, "cc", None)[:, 1:])


def test_whole_object_writer_replaces_shards(tmp_path):
    """Ingest's writer never reads the shard it replaces: a re-write (a resumed run) leaves exactly the
    new data, including inner chunks that are now empty (all NaN) and held data before."""
    from insarcloud.io.ingest import _cube_array

    arr = zarr.create_array(str(tmp_path / "c.zarr"), name="phase", shape=(2, 40, 24), chunks=(1, 8, 8),
                            shards=(1, 16, 16), dtype="float32", fill_value=np.nan, zarr_format=3)
    rng = np.random.default_rng(0)
    first = rng.normal(size=(40, 24)).astype(np.float32)
    second = rng.normal(size=(40, 24)).astype(np.float32)
    second[:8, :8] = np.nan  # an inner chunk that had data and now has none
    second[16:32] = np.nan  # a whole shard row that had data and now has none
    for run, data in (("a", first), ("b", second)):
        w = _cube_array(str(tmp_path / "c.zarr"), "{}", "phase", run)
        for r0 in range(0, 40, 16):
            w[1, r0:r0 + 16, :] = data[r0:r0 + 16]
    np.testing.assert_array_equal(arr[1], second)
    assert np.isnan(arr[0]).all()
