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



def local_ray_at_normal_priority() -> None:
    """Run the workers of a local Ray this process starts at the driver's priority.

    Ray starts its worker processes (our actors) at niceness 15 unless ``RAY_worker_niceness`` says otherwise
    (the raylet reads it from its environment). On a machine that also runs Dask workers or anything else at
    niceness 0 (the demo, a shared node, the test suite beside a CPU burner) the actors then get ~3 % of a core
    and a stage that runs on them crawls; measured here: a quality actor at 3.6 % CPU beside two burners.
    An explicit setting in the environment is kept.
    """
    os.environ.setdefault("RAY_worker_niceness", "0")

def dask_address(address: str | None = None) -> str | None:
    return address or os.environ.get(DASK_ENV) or None


def ray_address(address: str | None = None) -> str | None:
    return address or os.environ.get(RAY_ENV) or None


#: Each LocalCluster worker's ``memory_limit`` unless the caller sets one. The stages are built to run a real
#: LiCSAR frame within this per worker (issue 20's goal; measured in docs/scale.md "Full frame"); Dask's own
#: default, "auto" (system memory / workers), would make a worker's budget, and so its spill and pause
#: thresholds, depend on the machine the job happens to run on.
WORKER_MEMORY_LIMIT = "4GiB"


#: glibc's trim and mmap thresholds for Dask worker processes when asked for (``dask_client(malloc_threshold=)``,
#: ``engines.local_malloc_threshold`` in the area config, the chart's ``dask.worker.mallocThreshold``); off by
#: default. Dask's nanny sets ``MALLOC_TRIM_THRESHOLD_`` = 64 KiB, which also turns off glibc's dynamic mmap
#: threshold (glibc manual, "Malloc Tunable Parameters"): every NumPy array above 128 KiB is then a fresh mapping
#: whose pages the kernel faults in and zeroes for every task. Raising both saved ~20 % of the stages' worker CPU
#: but raised the inversion's worker peak at 670 pairs from 2.8 to 3.9 GB, at the edge of the 4 GiB budget (a
#: worker was restarted once): docs/scale.md "Worker processes and glibc's allocator". This value is the one
#: measured (the ceiling of glibc's own dynamic threshold on 64-bit).
MALLOC_THRESHOLD = 32 * 2**20


def malloc_environ(malloc_threshold: int | None) -> dict[str, str]:
    """The environment variables that set glibc's trim and mmap thresholds to ``malloc_threshold`` bytes (none for
    None or 0: Dask's own setting)."""
    if not malloc_threshold:
        return {}
    return {"MALLOC_TRIM_THRESHOLD_": str(int(malloc_threshold)), "MALLOC_MMAP_THRESHOLD_": str(int(malloc_threshold))}


@contextlib.contextmanager
def _spawn_environ(env: dict[str, str]) -> Iterator[None]:
    """``env`` in this process's environment while the workers are spawned, as the nannies read it: a variable
    already in the environment overrides Dask's ``pre-spawn-environ`` (``distributed.nanny._get_env_variables``),
    and an earlier LocalCluster's nannies leave Dask's ``MALLOC_TRIM_THRESHOLD_`` there. Restored afterwards."""
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def local_memory_limit(requested: str | int | None, n_workers: int, total: int | None = None) -> int:
    """Bytes of ``memory_limit`` for each of ``n_workers`` local workers: ``requested`` (default
    :data:`WORKER_MEMORY_LIMIT`; "auto" = Dask's system memory / workers), at most the machine's memory divided
    among the workers (a laptop with less than 4 GiB per core gets its share, with a log line)."""
    from dask.utils import format_bytes, parse_bytes

    total = total or _system_memory()
    share = total // max(1, n_workers)
    requested = WORKER_MEMORY_LIMIT if requested is None else requested
    want = share if requested == "auto" else parse_bytes(requested)
    if want > share:
        log.info("worker memory_limit %s capped to %s (%s of memory / %d workers)", format_bytes(want),
                 format_bytes(share), format_bytes(total), n_workers)
        want = share
    return int(want)


def _system_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


# How long a clean shutdown may take before it is given up (with a warning): a loaded 2-core machine needs
# more than distributed's defaults, and the work is already written when these run.
CLOSE_TIMEOUT_S = 60.0


def close_quietly(what: str, close: Any, *args: Any, **kwargs: Any) -> bool:
    """Call ``close(*args, **kwargs)``; an error is logged as a warning and ``False`` returned, never raised.

    Teardown runs after the results are written (or while another error propagates): a LocalCluster whose
    workers take too long to stop on a loaded machine must not turn a complete run into a failure, nor hide
    the error that is already on its way out.
    """
    try:
        close(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 (any teardown error is only worth a warning)
        log.warning("%s did not shut down cleanly (%s: %s); the results already written are not affected",
                    what, type(exc).__name__, exc or "no message")
        return False
    return True


@contextlib.contextmanager
def dask_client(address: str | None = None, *, n_workers: int | None = None,
                threads_per_worker: int = 1, memory_limit: str | int | None = None,
                malloc_threshold: int | None = None) -> Iterator[Any]:
    """A ``distributed.Client``: to ``address`` (or $INSARCLOUD_DASK_SCHEDULER), else a LocalCluster.

    The LocalCluster uses worker processes, one thread each: the kernels are NumPy/GDAL code that holds
    the GIL in places, and processes make the local run behave like the Kubernetes one. Each worker's
    ``memory_limit`` is fixed (:func:`local_memory_limit`), not Dask's machine-dependent "auto"; with
    ``malloc_threshold`` (bytes) glibc's allocator thresholds are set before they start
    (:func:`malloc_environ`, :data:`MALLOC_THRESHOLD`). Its workers get
    the log redaction of :mod:`insarcloud.logs`. Errors while closing the client or the cluster are
    warnings (:func:`close_quietly`).
    """
    import dask
    from distributed import Client, LocalCluster

    addr = dask_address(address)
    if addr:
        log.info("connecting to Dask scheduler %s", addr)
        client = Client(addr)
        try:
            yield client
        finally:
            close_quietly("the Dask client", client.close, timeout=CLOSE_TIMEOUT_S)
        return
    n = n_workers or max(1, min(4, os.cpu_count() or 1))
    limit = local_memory_limit(memory_limit, n)
    log.info("starting a Dask LocalCluster of %d worker processes, memory_limit %.1f GiB each", n, limit / 2**30)
    # the nannies read their pre-spawn environment when they are made, i.e. inside LocalCluster(); in Dask's
    # configuration too, so a worker the nanny restarts later gets it as well
    env = malloc_environ(malloc_threshold)
    pre_spawn = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **env}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": pre_spawn}), _spawn_environ(env):
        cluster = LocalCluster(n_workers=n, threads_per_worker=threads_per_worker, processes=True,
                               dashboard_address=":0", memory_limit=limit)
    try:
        client = Client(cluster)
    except BaseException:
        close_quietly("the Dask LocalCluster", cluster.close, timeout=CLOSE_TIMEOUT_S)
        raise
    try:
        from insarcloud.logs import worker_plugin

        client.register_plugin(worker_plugin())
        yield client
    finally:
        close_quietly("the Dask client", client.close, timeout=CLOSE_TIMEOUT_S)
        close_quietly("the Dask LocalCluster", cluster.close, timeout=CLOSE_TIMEOUT_S)


def init_ray(address: str | None = None, *, num_cpus: int | None = None,
             object_store_memory: int = 256 * 1024**2) -> Any:
    """Connect to Ray at ``address`` (or $INSARCLOUD_RAY_ADDRESS, e.g. ``ray://head:10001``), else start
    a local Ray with a small object store (arrays travel through the bucket, not through Ray). The local
    Ray's worker processes run :func:`insarcloud.logs.setup_worker_logging` first (levels, redaction)."""
    import ray

    if ray.is_initialized():
        return ray
    addr = ray_address(address)
    if addr:
        log.info("connecting to Ray at %s", addr)
        ray.init(address=addr, log_to_driver=False)
    else:
        log.info("starting a local Ray")
        local_ray_at_normal_priority()
        ray.init(address="local", num_cpus=num_cpus or max(1, os.cpu_count() or 1),
                 object_store_memory=object_store_memory, include_dashboard=False, log_to_driver=False,
                 runtime_env={"worker_process_setup_hook": "insarcloud.logs.setup_worker_logging"})
    return ray


def shutdown_ray() -> bool:
    """``ray.shutdown()``, with an error logged as a warning (see :func:`close_quietly`); False on error."""
    import ray

    return close_quietly("Ray", ray.shutdown)


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
