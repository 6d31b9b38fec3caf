"""Shared fixtures: a real S3 HTTP server (moto) on loopback, real Dask worker processes, local Ray.

Every fixture starts real processes and stops them; servers are awaited by polling, never by sleeping
a fixed time.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parent / "data"
log = logging.getLogger(__name__)

# How long a shared cluster may take to run one trivial task before it counts as dead or stuck. Generous: on
# the shared 2-core machine at load average 30+ a Ray task that needs a fresh worker process took minutes,
# and a needless restart costs more than the wait (a dead cluster fails at once, not after this).
HEALTH_TIMEOUT_S = 180.0

# Per-test time limits (pytest-timeout; the default is in pyproject's [tool.pytest.ini_options]) for files
# whose tests run whole jobs: about 3x their time on a loaded 2-core machine. A test's own
# @pytest.mark.timeout(N) wins.
LONG_TIMEOUTS_S = {
    "tests/pipelines/test_area_job.py": 2400,  # the kill-and-resume test: 678 s at load average ~20
    "tests/deploy/test_deploy_local_stack.py": 1800,
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(str(config.rootpath))
    for item in items:
        if item.get_closest_marker("timeout") is not None:
            continue
        try:
            rel = Path(str(item.path)).resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            continue
        if rel in LONG_TIMEOUTS_S:
            item.add_marker(pytest.mark.timeout(LONG_TIMEOUTS_S[rel]))


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


class _DaskSession:
    """The session's LocalCluster, recreated when a test left it dead (a killed scheduler or workers)."""

    def __init__(self) -> None:
        self.cluster: Any = None
        self.client: Any = None
        self.restarts = 0

    def start(self) -> Any:
        from distributed import Client, LocalCluster

        self.cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                    memory_limit="3GiB")
        self.client = Client(self.cluster)
        return self.client

    def healthy(self, timeout: float = HEALTH_TIMEOUT_S) -> bool:
        """The client is connected and a worker runs a task within ``timeout`` seconds."""
        if self.client is None or self.client.status != "running":
            return False
        try:
            # a lambda travels by value: the workers need not import this file
            return self.client.submit(lambda: "pong", pure=False).result(timeout=timeout) == "pong"
        except Exception:  # noqa: BLE001 (any failure means: start a fresh cluster)
            return False

    def close(self) -> None:
        from insarcloud.engines import close_quietly

        # generous timeouts: on a saturated 2-core box the workers' shutdown can take longer than the default
        if self.client is not None:
            close_quietly("the test Dask client", self.client.close, timeout=60)
        if self.cluster is not None:
            close_quietly("the test LocalCluster", self.cluster.close, timeout=120)
        self.client = self.cluster = None

    def get(self) -> Any:
        if self.client is None:
            return self.start()
        if not self.healthy():
            log.warning("the session's Dask cluster is dead or stuck: starting a fresh one")
            self.close()
            self.restarts += 1
            return self.start()
        return self.client


@pytest.fixture(scope="session")
def _dask_session(s3_endpoint: str) -> Iterator[_DaskSession]:
    session = _DaskSession()
    try:
        yield session
    finally:
        session.close()


@pytest.fixture()
def dask_client(_dask_session: _DaskSession) -> object:
    """A distributed Client on a LocalCluster of two worker processes (not threads), shared by the session.

    Checked before each test (a task must run within HEALTH_TIMEOUT_S): if an earlier test left the scheduler
    or the workers dead, this test gets a fresh cluster instead of waiting on the dead one forever.
    """
    return _dask_session.get()


class _RaySession:
    """The session's local Ray, restarted when a test left it dead."""

    def __init__(self) -> None:
        self.started = False
        self.restarts = 0

    @staticmethod
    def start() -> Any:
        import ray

        from insarcloud.engines import local_ray_at_normal_priority

        local_ray_at_normal_priority()
        ray.init(address="local", num_cpus=2, object_store_memory=200 * 1024**2, include_dashboard=False,
                 log_to_driver=False)
        return ray

    @staticmethod
    def healthy(timeout: float = HEALTH_TIMEOUT_S) -> bool:
        """Ray is initialised and a zero-CPU task (no wait for CPUs that actors hold) answers in time."""
        import ray

        if not ray.is_initialized():
            return False
        try:
            return ray.get(ray.remote(num_cpus=0)(lambda: "pong").remote(), timeout=timeout) == "pong"
        except Exception:  # noqa: BLE001 (any failure means: start a fresh Ray)
            return False

    def get(self) -> Any:
        import ray

        if not self.started:
            self.started = True
            return self.start()
        if not self.healthy():
            log.warning("the session's Ray is dead or stuck: starting a fresh one")
            from insarcloud.engines import shutdown_ray

            shutdown_ray()
            self.restarts += 1
            return self.start()
        return ray


@pytest.fixture(scope="session")
def _ray_session(s3_endpoint: str) -> Iterator[_RaySession]:
    session = _RaySession()
    try:
        yield session
    finally:
        if session.started:
            from insarcloud.engines import shutdown_ray

            shutdown_ray()


@pytest.fixture()
def ray_local(_ray_session: _RaySession) -> object:
    """A real local Ray (its own raylet and worker processes), started after the S3 variables are set, shared
    by the session and restarted before a test when an earlier one left it dead."""
    return _ray_session.get()


@pytest.fixture(scope="session")
def licsar_frame_dir() -> Path:
    """A small crop of a real COMET-LiCSAR frame (106A_09048_000909) in LiCSAR's own layout."""
    path = DATA / "licsar" / "106" / "106A_09048_000909"
    if not path.exists():
        raise FileNotFoundError(f"test data missing: {path}")
    return path
