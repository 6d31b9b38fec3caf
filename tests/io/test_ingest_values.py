"""Ingest's values, bit for bit: a cube written from S3 (products fetched in one GET and decoded from memory)
holds exactly the source GeoTIFFs' values as rasterio reads them, with LiCSAR's no-data as NaN, and equals
the cube written from the same files on local disk (GDAL reading in place: the other read path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import s3fs
import zarr

from insarcloud.io.ingest import ingest_frame

SHAPE = (80, 56)  # two shard rows at --chunk 16 (shards of 64 x 64): every product is written in two blocks


def _sim():  # type: ignore[no-untyped-def]
    from insarcloud.simulate import simulate_frame

    return simulate_frame(shape=SHAPE, n_epochs=5, seed=4, scene_seed=2, min_neighbours=2, max_neighbours=2,
                          missing_epoch_fraction=0.0, missing_pair_fraction=0.0)


def _expected(path: Path, kind: str) -> np.ndarray:
    """What the cube must hold, from rasterio directly: uint8 coherence as is; float products as float32
    with 0, the file's nodata and non-finite values as NaN; the landmask as is."""
    with rasterio.open(path) as ds:
        raw, nodata = ds.read(1), ds.nodata
    if kind == "cc":
        assert raw.dtype == np.uint8
        return raw
    out = raw.astype(np.float32)
    if kind == "landmask":
        return out
    bad = (raw == 0) | ~np.isfinite(out)
    if nodata is not None and not np.isnan(nodata):
        bad |= raw == nodata
    out[bad] = np.nan
    return out


def _bits(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    return a.view(np.uint32) if a.dtype == np.float32 else a


def test_s3_cube_bit_identical_to_rasterio_and_local_path(tmp_path, bucket, storage_options, dask_client):
    from insarcloud.simulate import write_licsar_frame

    sim = _sim()
    frame_dir = Path(write_licsar_frame(sim, str(tmp_path / "licsar")))
    fs = s3fs.S3FileSystem(**storage_options)
    fs.put(str(tmp_path / "licsar") + "/", f"{bucket}/licsar/", recursive=True)

    s3_cube = f"{bucket}/cubes/{sim.frame_id}.zarr"
    rep = ingest_frame(f"{bucket}/licsar", sim.frame_id, s3_cube, storage_options=storage_options, chunk=16,
                       client=dask_client)
    assert not rep.failed and len(rep.completed) == len(sim.pairs)
    local_cube = str(tmp_path / "local.zarr")
    rep_local = ingest_frame(str(tmp_path / "licsar"), sim.frame_id, local_cube, chunk=16, client=dask_client)
    assert sorted(rep_local.completed) == sorted(rep.completed)

    s3_root = zarr.open_group(zarr.storage.FsspecStore.from_url(s3_cube, storage_options=storage_options),
                              mode="r")
    local_root = zarr.open_group(local_cube, mode="r")
    pairs = [str(p) for p in s3_root["pair"][:]]
    assert pairs == [str(p) for p in local_root["pair"][:]]
    checked = 0
    for var, kind in (("phase", "diff_pha"), ("coh", "cc"), ("unw", "unw")):
        arr = s3_root[var]
        assert arr.shards == (1, 64, 64)
        for i, pair in enumerate(pairs):
            got = arr[i]
            want = _expected(frame_dir / "interferograms" / pair / f"{pair}.geo.{kind}.tif", kind)
            assert got.dtype == want.dtype, (var, got.dtype, want.dtype)
            np.testing.assert_array_equal(_bits(got), _bits(want), err_msg=f"{var} {pair}")
            np.testing.assert_array_equal(_bits(local_root[var][i]), _bits(got), err_msg=f"local {var} {pair}")
            checked += 1
    for var, kind in (("hgt", "hgt"), ("los_e", "E"), ("los_n", "N"), ("los_u", "U"), ("landmask", "landmask")):
        got = s3_root[var][:]
        want = _expected(frame_dir / "metadata" / f"{sim.frame_id}.geo.{kind}.tif", kind)
        np.testing.assert_array_equal(_bits(got), _bits(want), err_msg=var)
        np.testing.assert_array_equal(_bits(local_root[var][:]), _bits(got), err_msg=f"local {var}")
        checked += 1
    assert checked == 3 * len(pairs) + 5
    assert np.asarray(s3_root["ingested"][:]).all()
