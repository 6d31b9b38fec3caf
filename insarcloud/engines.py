"""How a job gets its engines: a Dask client and a Ray connection.

Addresses come from arguments, then the environment the helm chart sets (``INSARCLOUD_DASK_SCHEDULER``,
``INSARCLOUD_RAY_ADDRESS``), and fall back to the embedded default: a Dask ``LocalCluster`` of worker
processes and a local Ray. The same code path runs on a laptop and on Kubernetes.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

DASK_ENV = "INSARCLOUD_DASK_SCHEDULER"
RAY_ENV = "INSARCLOUD_RAY_ADDRESS"


def dask_address(address: str | None = None) -> str | None:
    return address or os.environ.get(DASK_ENV) or None


def ray_address(address: str | None = None) -> str | None:
    return address or os.environ.get(RAY_ENV) or None


@contextlib.contextmanager
def dask_client(address: str | None = None, *, n_workers: int | None = None,
                threads_per_worker: int = 1, memory_limit: str | None = None) -> Iterator[Any]:
    """A ``distributed.Client``: to ``address`` (or $INSARCLOUD_DASK_SCHEDULER), else a LocalCluster.

    The LocalCluster uses worker processes, one thread each: the kernels are NumPy/GDAL code that holds
    the GIL in places, and processes make the local run behave like the Kubernetes one.
    """
    from distributed import Client, LocalCluster

    addr = dask_address(address)
    if addr:
        log.info("connecting to Dask scheduler %s", addr)
        client = Client(addr)
        try:
            yield client
        finally:
            client.close()
        return
    n = n_workers or max(1, min(4, os.cpu_count() or 1))
    log.info("starting a Dask LocalCluster of %d worker processes", n)
    cluster = LocalCluster(n_workers=n, threads_per_worker=threads_per_worker, processes=True,
                           dashboard_address=":0", memory_limit=memory_limit or "auto")
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def init_ray(address: str | None = None, *, num_cpus: int | None = None,
             object_store_memory: int = 256 * 1024**2) -> Any:
    """Connect to Ray at ``address`` (or $INSARCLOUD_RAY_ADDRESS, e.g. ``ray://head:10001``), else start
    a local Ray with a small object store (arrays travel through the bucket, not through Ray)."""
    import ray

    if ray.is_initialized():
        return ray
    addr = ray_address(address)
    if addr:
        log.info("connecting to Ray at %s", addr)
        ray.init(address=addr, log_to_driver=False)
    else:
        log.info("starting a local Ray")
        ray.init(address="local", num_cpus=num_cpus or max(1, os.cpu_count() or 1),
                 object_store_memory=object_store_memory, include_dashboard=False, log_to_driver=False)
    return ray


def started_actors(actors: list[Any], probe: str, *, grace_s: float = 10.0, label: str = "") -> list[Any]:
    """The actors of a pool that start; the others are killed.

    Frames run in parallel on one Ray cluster, so on a small cluster some of a pool's actors wait for a CPU
    (or GPU) that another frame's pool holds. A job handed to such a pending actor waits as long as the other
    pool, which may itself wait on its own pending actor while its started actors idle on their resources:
    the two pools deadlock (the demo did, with two actors per pool on two CPUs). So wait for one actor to
    answer ``probe`` (a no-argument method), give the others ``grace_s`` seconds, and drop the rest.
    """
    import ray

    if not actors:
        return []
    probes = {getattr(a, probe).remote(): a for a in actors}
    started, pending = ray.wait(list(probes), num_returns=1)
    if pending:
        more, pending = ray.wait(pending, num_returns=len(pending), timeout=grace_s)
        started += more
    for ref in pending:
        ray.kill(probes[ref])
    if pending:
        log.info("%s%d of %d actors started; the others wait for resources and are dropped",
                 f"{label}: " if label else "", len(started), len(probes))
    return [probes[ref] for ref in started]
