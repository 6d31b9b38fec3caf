"""Shared fixtures: a real S3 HTTP server (moto) on loopback, real Dask worker processes, local Ray.

Every fixture starts real processes and stops them; servers are awaited by polling, never by sleeping
a fixed time.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 HTTP endpoint: moto's server in its own process on 127.0.0.1 (the demo's own, so the suite
    tests the endpoint users get).

    Sets the standard AWS variables so that s3fs, GDAL-less code, Dask workers and Ray workers started
    afterwards all talk to it exactly as they would to AWS.
    """
    from insarcloud.pipelines.local_s3 import local_s3

    with local_s3(key="testing", secret="testing") as endpoint:
        yield endpoint


@pytest.fixture()
def storage_options(s3_endpoint: str) -> dict:
    return {"endpoint_url": s3_endpoint, "key": "testing", "secret": "testing", "use_listings_cache": False}


@pytest.fixture()
def bucket(s3_endpoint: str, storage_options: dict) -> str:
    """A fresh, empty bucket on the local S3 endpoint; returns ``s3://<name>``."""
    import s3fs

    name = f"test-{uuid.uuid4().hex[:12]}"
    fs = s3fs.S3FileSystem(**storage_options)
    fs.mkdir(name)
    return f"s3://{name}"


@pytest.fixture(scope="session")
def dask_client(s3_endpoint: str) -> Iterator[object]:
    """A distributed Client on a LocalCluster of two worker processes (not threads)."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                           memory_limit="3GiB")
    client = Client(cluster)
    try:
        yield client
    finally:
        # generous timeouts: on a saturated 2-core box the workers' shutdown can take longer than the default
        client.close(timeout=60)
        cluster.close(timeout=120)


@pytest.fixture(scope="session")
def ray_local(s3_endpoint: str) -> Iterator[object]:
    """A real local Ray (its own raylet and worker processes), started after the S3 variables are set."""
    import ray

    ray.init(address="local", num_cpus=2, object_store_memory=200 * 1024**2, include_dashboard=False,
             log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def licsar_frame_dir() -> Path:
    """A small crop of a real COMET-LiCSAR frame (106A_09048_000909) in LiCSAR's own layout."""
    path = DATA / "licsar" / "106" / "106A_09048_000909"
    if not path.exists():
        raise FileNotFoundError(f"test data missing: {path}")
    return path
