"""A Zarr store for chunk-heavy tasks on S3: obstore's Rust client instead of s3fs/botocore (docs/scale.md,
"Chunk requests through obstore").

A QC tile task makes ~4,000 GETs and ~2,300 PUTs per 512 x 512 px tile of ~700 pairs (a stored chunk per pair and
variable, a written chunk per 32 px block). Through s3fs each request costs ~5 ms of the worker's CPU in
botocore's request machinery (endpoint rules, hooks, signing, user agent) on top of the codec; obstore
(zarr-python's ``ObjectStore``, the ``object_store`` crate) does the same request in ~2 ms
(``benchmarks/chunk_store.py``). Only the chunk traffic of those tasks goes through here: metadata, markers,
leases and consolidation stay on fsspec, the project's storage layer (``io.storage``), so there is one place that
decides what a URL and its options mean, and this module translates that decision.

Where a translation is not exact (an s3fs option obstore has no equivalent for, a non-S3 URL, obstore not
installed) :func:`chunk_store` returns ``None`` and the caller keeps fsspec: never a silently different store.
"""

from __future__ import annotations

import datetime
import logging
import os
from typing import Any

from insarcloud.io.storage import protocol_of, retry_budget, storage_options_for

log = logging.getLogger(__name__)

#: s3fs options this module translates; any other option keeps the fsspec store.
_KNOWN = frozenset({"endpoint_url", "key", "secret", "token", "anon", "client_kwargs", "use_listings_cache"})
_KNOWN_CLIENT_KWARGS = frozenset({"endpoint_url", "region_name"})


def obstore_config(url: str, storage_options: dict[str, Any] | None = None, *,
                   retry: bool = False) -> dict[str, Any] | None:
    """The ``obstore.store.S3Store`` arguments (bucket, prefix and keywords) for an ``s3://`` URL and the
    options :func:`io.storage.storage_options_for` resolves for it, or ``None`` where they do not translate.

    Credentials not in the options come from the same environment chain botocore reads (``AWS_*`` variables,
    web identity in a pod); obstore reads it itself. Requests are path-style (what MinIO and moto serve; AWS
    accepts both), plain HTTP only for an ``http://`` endpoint. ``retry``: obstore retries transient errors
    itself, within the project's budget (below); else never.
    """
    if protocol_of(url) not in ("s3", "s3a"):
        return None
    so = storage_options_for(url, storage_options)
    unknown = set(so) - _KNOWN
    ck = dict(so.get("client_kwargs") or {})
    unknown |= {f"client_kwargs.{k}" for k in set(ck) - _KNOWN_CLIENT_KWARGS}
    if unknown:
        log.debug("chunk store: %s keeps s3fs (options without an obstore equivalent: %s)", url, sorted(unknown))
        return None
    path = url.split("://", 1)[1].strip("/")
    bucket, _, prefix = path.partition("/")
    kw: dict[str, Any] = {}
    endpoint = ck.get("endpoint_url") or so.get("endpoint_url")  # s3fs lets client_kwargs win, as here
    if endpoint:
        kw["endpoint"] = str(endpoint)
        kw["client_options"] = {"allow_http": str(endpoint).startswith("http://")}
    region = ck.get("region_name") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        kw["region"] = region
    if so.get("anon"):
        kw["skip_signature"] = True
    if so.get("key") is not None:
        kw["access_key_id"] = so["key"]
    if so.get("secret") is not None:
        kw["secret_access_key"] = so["secret"]
    if so.get("token") is not None:
        kw["session_token"] = so["token"]
    kw["retry_config"] = _retry_config(retry)
    return {"bucket": bucket, "prefix": prefix or None, **kw}


def _retry_config(retry: bool) -> dict[str, Any]:
    """obstore's retries. Where the caller wraps every call in ``io.with_retries`` (the tile tasks, ingest's
    writes: its budget, its observers, a StorageUnavailableError naming the endpoint, obstore's errors judged by
    ``io.storage.is_transient``) obstore does not retry, so that there is one policy. Where nothing wraps the
    calls (chunk reads inside a Dask graph built by ``xarray.open_zarr``: s3fs retried those itself) obstore
    retries with the same budget as ``with_retries``: ``io.storage.retry_budget``'s tries and seconds, backoff
    from 0.2 s doubling to at most 8 s. The object_store crate's ``RetryExt`` retries transport errors (a refused or
    reset connection, a timeout) and server errors, never a 404 or 403 (tests/io/test_chunk_store.py: a refused
    endpoint retried, a 404 answered at once)."""
    tries, seconds = retry_budget()
    timeout = datetime.timedelta(seconds=seconds)
    if not retry:
        return {"max_retries": 0, "retry_timeout": timeout}
    return {"max_retries": tries - 1, "retry_timeout": timeout,
            "backoff": {"init_backoff": datetime.timedelta(seconds=0.2), "max_backoff": datetime.timedelta(seconds=8),
                        "base": 2.0}}


def chunk_store(url: str, storage_options: dict[str, Any] | None = None, *, read_only: bool = True,
                retry: bool = False) -> Any | None:
    """A zarr ``ObjectStore`` on obstore for ``url`` (see :func:`obstore_config`), or ``None`` (use fsspec).

    ``retry``: obstore retries transient errors itself (for stores whose calls no ``io.with_retries`` wraps);
    the store pickles (a Dask graph carries it to the workers)."""
    cfg = obstore_config(url, storage_options, retry=retry)
    if cfg is None:
        return None
    try:
        from obstore.store import S3Store
        from zarr.storage import ObjectStore
    except ImportError:
        return None
    bucket = cfg.pop("bucket")
    return ObjectStore(S3Store(bucket, **cfg), read_only=read_only)


def store_endpoint(store: Any) -> str | None:
    """The endpoint behind a zarr store made here (``ObjectStore``, or a ``WrapperStore`` around one), for the
    messages of ``io.with_retries``; ``None`` for any other store. Never credentials."""
    inner = getattr(getattr(store, "_store", store), "store", None)
    config = getattr(inner, "config", None)
    if not isinstance(config, dict):
        return None
    return str(config.get("endpoint") or "AWS S3")


__all__ = ["chunk_store", "obstore_config", "store_endpoint"]
