"""Chunk requests through obstore (insarcloud.io.chunk_store): what translates from the project's storage options,
and the same bytes as fsspec on a real S3 endpoint (moto's server), QC's tile tasks included."""

from __future__ import annotations

import logging
import shutil

import dask
import numpy as np
import pytest
import s3fs
import xarray as xr
import zarr

from insarcloud.io.chunk_store import chunk_store, obstore_config
from insarcloud.io.cube import cube_encoding, open_zarr_group
from insarcloud.qc import dask_ops
from insarcloud.qc.config import QCParams

from ..qc.conftest import synthetic_cube
from ..qc.test_tiles import _assert_same_group


def test_config_from_the_projects_options(monkeypatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-2")
    monkeypatch.delenv("AWS_REGION", raising=False)
    cfg = obstore_config("s3://bkt/frames/f1/cube.zarr", {"key": "k", "secret": "s"})
    assert cfg is not None
    assert cfg["bucket"] == "bkt" and cfg["prefix"] == "frames/f1/cube.zarr"
    assert cfg["endpoint"] == "http://127.0.0.1:9000" and cfg["client_options"] == {"allow_http": True}
    assert cfg["access_key_id"] == "k" and cfg["secret_access_key"] == "s" and cfg["region"] == "eu-west-2"
    assert cfg["retry_config"]["max_retries"] == 0  # by default the caller's io.with_retries retries
    # an HTTPS endpoint from the options, a region from client_kwargs, anonymous reads
    cfg = obstore_config("s3://bkt", {"client_kwargs": {"endpoint_url": "https://minio.example",
                                                        "region_name": "us-west-2"}, "anon": True})
    assert cfg is not None and cfg["prefix"] is None and cfg["client_options"] == {"allow_http": False}
    assert cfg["region"] == "us-west-2" and cfg["skip_signature"] is True and "access_key_id" not in cfg


@pytest.mark.parametrize(("url", "so"), [
    ("/data/cube.zarr", None),
    ("file:///data/cube.zarr", None),
    ("gs://bkt/cube.zarr", None),
    ("s3://bkt/cube.zarr", {"profile": "research"}),  # an AWS profile: botocore's config files, not obstore's
    ("s3://bkt/cube.zarr", {"client_kwargs": {"verify": False}}),
])
def test_options_without_an_equivalent_keep_fsspec(url: str, so: dict | None) -> None:
    assert obstore_config(url, so) is None and chunk_store(url, so) is None


def _record_stores(monkeypatch) -> list[str]:  # type: ignore[no-untyped-def]
    """The type name of every store ``io.chunk_store.chunk_store`` returns from now on (``NoneType``: fsspec)."""
    from insarcloud.io import chunk_store as cs

    made: list[str] = []
    orig = cs.chunk_store

    def recorded(*args, **kw):  # type: ignore[no-untyped-def]
        store = orig(*args, **kw)
        made.append(type(store).__name__)
        return store

    monkeypatch.setattr(cs, "chunk_store", recorded)
    return made


@pytest.mark.slow
def test_same_bytes_as_fsspec_both_ways(bucket: str, storage_options: dict) -> None:
    """An array written through s3fs reads back bit for bit through obstore, and the other way round; the group
    opened with ``chunk_io`` is an obstore store, and a read-only open refuses writes."""
    url = f"{bucket}/cube.zarr"
    g = zarr.open_group(url, mode="w", storage_options=storage_options, zarr_format=3)
    rng = np.random.default_rng(3)
    a = rng.normal(size=(5, 40, 30)).astype(np.float32)
    g.create_array("a", shape=a.shape, chunks=(1, 16, 16), dtype="float32")[:] = a

    fast = open_zarr_group(url, None, storage_options, mode="r+", chunk_io=True)
    assert type(fast.store).__name__ == "ObjectStore"
    np.testing.assert_array_equal(fast["a"][:], a)
    b = rng.integers(0, 255, (40, 30), dtype=np.uint8)
    fast.create_array("b", shape=b.shape, chunks=(16, 16), dtype="uint8")[:] = b
    np.testing.assert_array_equal(open_zarr_group(url, None, storage_options)["b"][:], b)

    ro = open_zarr_group(url, None, storage_options, chunk_io=True)
    with pytest.raises(ValueError, match="read-only"):
        ro["a"][0, :2, :2] = 0


@pytest.mark.slow
def test_qc_on_s3_equals_qc_on_disk(tmp_path, bucket: str, storage_options: dict, caplog, monkeypatch) -> None:
    """The tile tasks read and write through obstore on S3: the group equals the same cube's on local disk."""
    made = _record_stores(monkeypatch)
    shape = (70, 70)
    _s, ds = synthetic_cube(4, shape=shape)
    lm = np.ones(shape, np.float32)
    lm[:20, :15] = 0
    ds["landmask"] = (("y", "x"), lm)
    enc = cube_encoding(ds, 32, coh_uint8=True)
    disk = str(tmp_path / "cube.zarr")
    ds.to_zarr(disk, mode="w", zarr_format=3, consolidated=False, encoding=enc)
    url = f"{bucket}/cube.zarr"
    fs = s3fs.S3FileSystem(**storage_options)
    fs.put(disk, url.removeprefix("s3://"), recursive=True)
    local = tmp_path / "copy.zarr"
    shutil.copytree(disk, local)
    p = QCParams(block=16)
    with dask.config.set(scheduler="synchronous"), caplog.at_level(logging.INFO, logger="insarcloud.qc"):
        g_s3 = dask_ops.run_qc(url, p, storage_options)
        assert "qc by stored tile" in caplog.text, caplog.text
        g_disk = dask_ops.run_qc(str(local), p)
    q_s3 = xr.open_zarr(url, group=g_s3, consolidated=False, storage_options=storage_options).load()
    q_disk = xr.open_zarr(str(local), group=g_disk, consolidated=False).load()
    _assert_same_group(q_s3, q_disk)
    # both passes of every tile on S3 through obstore (reads of the cube, pass 2's writes); none on disk
    assert made.count("ObjectStore") >= 3 and "NoneType" in made, made


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_refused_endpoint_is_retried_then_named(monkeypatch) -> None:
    """obstore does not retry; the project's retry helper does, with its budget, and then names the endpoint
    (as for s3fs: tests/io/test_ingest_storage.py)."""
    from insarcloud.errors import StorageUnavailableError
    from insarcloud.io import storage
    from insarcloud.qc.tiles import TileSource, read_tile

    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("INSARCLOUD_STORAGE_RETRIES", "2")
    monkeypatch.setenv("INSARCLOUD_STORAGE_RETRY_SECONDS", "30")
    seen: list[str] = []
    monkeypatch.setattr(storage, "RETRY_OBSERVERS", [lambda attempt, exc: seen.append(type(exc).__module__)])
    src = TileSource("s3://bkt/cube.zarr", {"endpoint_url": endpoint, "key": "k", "secret": "s"}, None,
                     has_unw=False, has_landmask=False)
    with pytest.raises(StorageUnavailableError, match=f"storage unreachable: {endpoint} after 2 tries"):
        read_tile(src, (0, 16), (0, 16), n_pairs=2)
    assert seen == ["obstore.exceptions"]  # one retry between the two tries, of obstore's error


@pytest.mark.slow
def test_missing_object_is_not_transient(bucket: str, storage_options: dict) -> None:
    """A 404 through obstore fails at once (not retried as an outage)."""
    import obstore

    from insarcloud.io.storage import is_transient

    store = chunk_store(f"{bucket}/cube.zarr", storage_options)
    with pytest.raises(FileNotFoundError) as info:
        obstore.get(store.store, "no/such/key")
    assert not is_transient(info.value)


def test_stage_reads_retry_within_the_projects_budget(monkeypatch) -> None:
    """A store whose calls no ``with_retries`` wraps (reads inside a Dask graph) retries in obstore, with the
    project's tries and seconds; the wrapped ones do not retry twice."""
    monkeypatch.setenv("INSARCLOUD_STORAGE_RETRIES", "5")
    monkeypatch.setenv("INSARCLOUD_STORAGE_RETRY_SECONDS", "12")
    own = obstore_config("s3://bkt/cube.zarr", {"endpoint_url": "http://127.0.0.1:9"}, retry=True)
    assert own is not None and own["retry_config"]["max_retries"] == 4
    assert own["retry_config"]["retry_timeout"].total_seconds() == 12
    wrapped = obstore_config("s3://bkt/cube.zarr", {"endpoint_url": "http://127.0.0.1:9"})
    assert wrapped is not None and wrapped["retry_config"]["max_retries"] == 0


@pytest.mark.slow
def test_open_cube_reads_through_obstore(bucket: str, storage_options: dict, monkeypatch) -> None:
    """``open_cube`` on S3 reads through obstore: the same values as the same cube on fsspec, the store travels
    pickled in the Dask graph (as to a worker), and a refused endpoint is retried with the project's budget and
    then named by its URL."""
    import pickle

    import dask.array as da

    from insarcloud.io.cube import open_cube

    made = _record_stores(monkeypatch)
    _s, ds = synthetic_cube(3, shape=(40, 40))
    url = f"{bucket}/cube.zarr"
    ds.to_zarr(url, mode="w", zarr_format=3, consolidated=False, storage_options=storage_options,
               encoding=cube_encoding(ds, 16, coh_uint8=True))
    fast = open_cube(url, storage_options)
    slow = xr.open_zarr(url, consolidated=False, storage_options=storage_options)
    assert made == ["ObjectStore"]
    with dask.config.set(scheduler="synchronous"):
        again = pickle.loads(pickle.dumps(fast["phase"].data))
        assert isinstance(again, da.Array)
        np.testing.assert_array_equal(again.compute(), slow["phase"].values)
        np.testing.assert_array_equal(fast["coh"].values, slow["coh"].values.astype(np.float32))


def test_open_cube_on_a_refused_endpoint_names_it_after_its_retries(monkeypatch) -> None:
    import obstore

    from insarcloud.errors import StorageUnavailableError
    from insarcloud.io.cube import open_cube

    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("INSARCLOUD_STORAGE_RETRIES", "3")
    so = {"endpoint_url": endpoint, "key": "k", "secret": "s"}
    with pytest.raises(StorageUnavailableError, match=f"storage unreachable: {endpoint} .*s3://bkt/cube.zarr") as info:
        open_cube("s3://bkt/cube.zarr", so)
    assert isinstance(info.value.__cause__, obstore.exceptions.GenericError)
    assert "after 2 retries" in str(info.value), info.value  # INSARCLOUD_STORAGE_RETRIES tries, in obstore


@pytest.mark.slow
def test_ingest_writes_through_obstore(bucket: str, storage_options: dict, s3_endpoint: str) -> None:
    """Ingest's cube arrays write whole objects through obstore on S3 (its writes are wrapped in
    ``with_retries``, whose message names the endpoint), and the bytes read back through s3fs."""
    import json

    from insarcloud.io.ingest_tasks import _cube_array, _setitem, _store_name

    url = f"{bucket}/cube.zarr"
    g = zarr.open_group(url, mode="w", storage_options=storage_options, zarr_format=3)
    g.create_array("a", shape=(2, 32, 32), chunks=(1, 16, 16), shards=(1, 32, 32), dtype="float32")
    arr = _cube_array(url, json.dumps(storage_options), "a", "run-1")
    assert type(arr.store._store).__name__ == "ObjectStore" and _store_name(arr) == s3_endpoint
    block = np.arange(32 * 32, dtype=np.float32).reshape(32, 32)
    _setitem(arr, (1, slice(0, 32), slice(None)), block)
    np.testing.assert_array_equal(zarr.open_group(url, mode="r", storage_options=storage_options)["a"][1], block)
