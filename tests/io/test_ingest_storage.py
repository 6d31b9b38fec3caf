"""Storage faults: the endpoint, not the file, is blamed; retries ride out an outage; the next run completes.

The endpoint goes down at a recorded point (after the Nth block ingest has written, from ingest's own
write hook), never after N seconds; it comes back from the retry helper's observer (on the first retry)
or after the run has given up. moto's server sits behind a stoppable TCP front (tests/io/endpoint_proxy.py:
stopping moto itself would wipe its in-memory buckets).
"""

from __future__ import annotations

import socket

import dask
import numpy as np
import pytest
import rasterio
import s3fs
from botocore.exceptions import ClientError, EndpointConnectionError

from insarcloud.errors import StorageUnavailableError
from insarcloud.io import ingest_tasks as ingest_mod
from insarcloud.io import open_cube, storage
from insarcloud.io.ingest import ingest_frame
from insarcloud.io.storage import is_transient, with_retries

from .endpoint_proxy import EndpointProxy

FRAME = "106A_09048_000909"
pytestmark = pytest.mark.timeout(400)  # a hang here fails with every thread's stack


def _truth(frame_dir, pair: str) -> np.ndarray:
    with rasterio.open(frame_dir / "interferograms" / pair / f"{pair}.geo.diff_pha.tif") as ds:
        raw = ds.read(1).astype("float32")
    raw[raw == 0] = np.nan
    return raw


@pytest.fixture(autouse=True)
def _threads():
    """The hooks live in this process: run the tasks on Dask's threads even when a session-wide
    distributed Client (another test's fixture) would otherwise be the default scheduler."""
    with dask.config.set(scheduler="threads"):
        yield


@pytest.fixture()
def proxy(s3_endpoint):
    px = EndpointProxy(s3_endpoint)
    px.start()
    yield px
    px.stop()


@pytest.fixture()
def proxied(proxy, bucket, licsar_frame_dir):
    """(source URL, storage options through the proxy): the real frame uploaded through it."""
    # botocore's own retries off: each refused call then fails in ~2 s (s3fs' retries) instead of ~5-9 s
    so = {"endpoint_url": proxy.endpoint, "key": "testing", "secret": "testing", "use_listings_cache": False,
          "config_kwargs": {"retries": {"max_attempts": 1}}}
    fs = s3fs.S3FileSystem(**so)
    fs.put(str(licsar_frame_dir) + "/", f"{bucket}/licsar/106/{FRAME}/", recursive=True)
    return f"{bucket}/licsar", so


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_retry_classifies_what_s3fs_really_raises(monkeypatch):
    """A refused endpoint (botocore EndpointConnectionError <- aiohttp <- ConnectionRefusedError, as s3fs
    raises it) is retried, then named; throttling and 5xx are transient; 404, 403 and plain errors are not."""
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    fs = s3fs.S3FileSystem(endpoint_url=endpoint, key="k", secret="s", config_kwargs={"retries": {"max_attempts": 1}})
    seen: list[int] = []
    monkeypatch.setattr(storage, "RETRY_OBSERVERS", [lambda attempt, exc: seen.append(attempt)])
    pattern = r"storage unreachable: http://127\.0\.0\.1:\d+ after 2 tries"
    with pytest.raises(StorageUnavailableError, match=pattern) as info:
        with_retries(fs.exists, "bucket1/x", retries=1, base_delay=0.01)
    assert endpoint in str(info.value) and seen == [1]
    assert isinstance(info.value.__cause__, EndpointConnectionError)

    def client_error(code: str, status: int) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": code},
                            "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")

    assert is_transient(client_error("SlowDown", 503)) and is_transient(client_error("InternalError", 500))
    assert is_transient(client_error("Throttling", 400)) and is_transient(client_error("RequestTimeout", 400))
    assert not is_transient(client_error("NoSuchKey", 404)) and not is_transient(client_error("AccessDenied", 403))
    wrapped = OSError("write failed")
    wrapped.__cause__ = client_error("SlowDown", 503)
    assert is_transient(wrapped) and not is_transient(FileNotFoundError("b/x")) and not is_transient(ValueError())
    calls = []

    def not_found() -> None:
        calls.append(1)
        raise FileNotFoundError("bucket1/x")

    with pytest.raises(FileNotFoundError):
        with_retries(not_found)
    assert calls == [1]  # never retried


def test_endpoint_down_mid_ingest_recovers_within_budget(proxied, proxy, bucket, licsar_frame_dir, monkeypatch):
    """Down after the 3rd written block, back on the first retry: the run completes, every pair exact."""
    src, so = proxied
    monkeypatch.setattr(ingest_mod, "WRITE_HOOKS", [lambda n: proxy.stop() if n == 3 else None])
    monkeypatch.setattr(storage, "RETRY_OBSERVERS", [lambda attempt, exc: proxy.running or proxy.start()])
    monkeypatch.setattr(ingest_mod, "_WRITES", [0])
    cube = f"{bucket}/cubes/{FRAME}.zarr"
    report = ingest_frame(src, FRAME, cube, storage_options=so, chunk=64)
    assert proxy.stops == 1 and proxy.running
    assert len(report.completed) == 6 and not report.failed
    ds = open_cube(cube, so)
    for pair in ds.pair.values:
        np.testing.assert_array_equal(ds.phase.sel(pair=pair).values, _truth(licsar_frame_dir, str(pair)))


def test_endpoint_down_past_budget_then_next_run_completes(proxied, proxy, bucket, licsar_frame_dir, monkeypatch):
    """Down after the 3rd written block and not back within the budget: StorageUnavailableError naming the
    endpoint (no file blamed); once it is back, the next run completes the cube exactly."""
    src, so = proxied
    monkeypatch.setenv("INSARCLOUD_STORAGE_RETRIES", "2")
    monkeypatch.setenv("INSARCLOUD_STORAGE_RETRY_SECONDS", "1")
    monkeypatch.setattr(ingest_mod, "WRITE_HOOKS", [lambda n: proxy.stop() if n == 3 else None])
    monkeypatch.setattr(ingest_mod, "_WRITES", [0])
    cube = f"{bucket}/cubes/{FRAME}.zarr"
    with pytest.raises(StorageUnavailableError, match="storage unreachable: " + proxy.endpoint) as info:
        ingest_frame(src, FRAME, cube, storage_options=so, chunk=64)
    assert "not a supported file format" not in str(info.value) and "not recognized" not in str(info.value)
    monkeypatch.setattr(ingest_mod, "WRITE_HOOKS", [])
    proxy.start()
    report = ingest_frame(src, FRAME, cube, storage_options=so, chunk=64)
    assert not report.failed and len(report.completed) + len(report.skipped) == 6
    ds = open_cube(cube, so)
    assert ds.sizes["pair"] == 6
    for pair in ds.pair.values:
        np.testing.assert_array_equal(ds.phase.sel(pair=pair).values, _truth(licsar_frame_dir, str(pair)))
