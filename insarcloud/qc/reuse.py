"""QC's rechunked inputs kept between pass 1 and pass 2, on the scheduler that will run both (docs/qc.md,
"On a cluster").

Pass 1 and pass 2 read the same (pair=all, y=b, x=b) blocks; computed twice they cost two reads of the cube and
two rechunks (on a distributed cluster also two shuffles of every block between the workers). Kept once they
fit, they are read and rechunked once.

Where they are kept follows the scheduler Dask would use now (:func:`dask.base.get_scheduler`), not whether a
``distributed`` client merely exists: a client's persisted blocks are futures in the returned graph, which only
that client can compute. Deciding by ``get_client()`` is what made persisted keys go missing in the test suite
("Missing dependency rechunk-merge-..."): a session client existed, the test computed the QC dataset with
``scheduler="synchronous"``, and the synchronous scheduler cannot resolve the cluster's futures (the same
failure as dask/distributed's ``persist`` followed by ``da.store(..., scheduler="threads")``). So a QC dataset
must be computed on the scheduler that was active when it was built.
"""

from __future__ import annotations

import logging
from typing import Any

import dask
import dask.array as da
from dask.base import get_scheduler

log = logging.getLogger(__name__)

#: Without a distributed client, rechunked inputs up to this size are kept in memory between the passes.
LOCAL_REUSE_MB = 512
#: With a client, the share of the workers' summed ``memory_limit`` the rechunked inputs may take to be kept.
CLUSTER_REUSE_FRACTION = 0.3


def active_client() -> Any | None:
    """The ``distributed.Client`` whose scheduler a ``compute()`` without arguments would use now, else None.

    None under ``dask.config.set(scheduler="synchronous" | "threads" | ...)`` even when a client exists."""
    try:
        from distributed import Client
    except ImportError:
        return None
    owner = getattr(get_scheduler(), "__self__", None)
    return owner if isinstance(owner, Client) else None


def cluster_memory(client: Any) -> int:
    """Summed ``memory_limit`` of the client's workers in bytes (0 when any worker has none: unbounded)."""
    limits = [w.get("memory_limit") or 0 for w in client.scheduler_info(n_workers=-1).get("workers", {}).values()]
    return sum(limits) if limits and all(limits) else 0


def reuse_inputs(arrays: list[da.Array]) -> tuple[list[da.Array], str]:
    """The rechunked (and water-masked) inputs computed once and kept for both passes, when they fit.

    Kept in the workers' memory when the active scheduler is a distributed client (at most
    ``CLUSTER_REUSE_FRACTION`` of the workers' summed ``memory_limit``, so the rest of the graph and the spill
    thresholds keep their room), in this process otherwise (up to ``LOCAL_REUSE_MB``). Larger inputs are
    recomputed by each pass (bounded memory wins over the second read). The kept arrays' futures live as long
    as the arrays (and every array derived from them) do. Returns the arrays and how they were kept
    (``"cluster"``, ``"local"`` or ``"recompute"``).
    """
    nbytes = sum(a.nbytes for a in arrays)
    client = active_client()
    if client is not None:
        mem = cluster_memory(client)
        if mem and nbytes <= CLUSTER_REUSE_FRACTION * mem:
            return list(client.persist(arrays)), "cluster"
    elif nbytes <= LOCAL_REUSE_MB * 2**20:
        return list(dask.persist(*arrays)), "local"
    log.info("qc inputs (%.0f MB rechunked) are not kept between the passes: each pass reads the cube",
             nbytes / 2**20)
    return arrays, "recompute"


__all__ = ["CLUSTER_REUSE_FRACTION", "LOCAL_REUSE_MB", "active_client", "reuse_inputs"]
