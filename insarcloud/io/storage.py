"""Object-store access: every URL goes through fsspec, with options from arguments or the environment.

The same code talks to AWS S3, an on-premises S3 (MinIO, Ceph), moto's server on loopback, local
files and ``https://`` directory listings (LiCSAR's own web tree). The endpoint is configuration:
``AWS_ENDPOINT_URL`` (the variable botocore itself honours) or ``storage_options={"endpoint_url": ...}``.
Credentials come from the usual AWS chain (environment, profile, IRSA) and are never logged.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import fsspec
from fsspec.core import url_to_fs

from insarcloud.errors import StorageError

log = logging.getLogger(__name__)
T = TypeVar("T")

# Errors worth retrying on object stores; anything else (404, corrupt data) fails at once.
_TRANSIENT = (TimeoutError, ConnectionError)


def protocol_of(url: str) -> str:
    """Return the fsspec protocol of ``url`` (``"file"`` for plain paths)."""
    if "://" not in url:
        return "file"
    return url.split("://", 1)[0]


def storage_options_for(url: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Storage options for ``url``: environment defaults, then ``overrides`` on top.

    For ``s3://`` the endpoint comes from ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` when set, so
    that an on-premises or loopback S3 is one environment variable away.
    """
    opts: dict[str, Any] = {}
    if protocol_of(url) in ("s3", "s3a"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            opts["endpoint_url"] = endpoint
        # Small objects dominate Zarr metadata; s3fs' listings cache would hide other writers' keys.
        opts["use_listings_cache"] = False
    if protocol_of(url) == "file" and "://" in url:
        opts["auto_mkdir"] = True  # zarr writes chunk files under folders that may not exist yet
    if overrides:
        opts.update(overrides)
    return opts


def get_fs(url: str, storage_options: dict[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return ``(filesystem, path)`` for ``url`` with :func:`storage_options_for` applied."""
    try:
        return url_to_fs(url, **storage_options_for(url, storage_options))
    except (ImportError, ValueError) as exc:
        raise StorageError(f"cannot open a filesystem for {url!r}: {exc}") from exc


def join(url: str, *parts: str) -> str:
    """Join URL path parts with '/' (fsspec URLs use '/' on every platform)."""
    out = url.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def with_retries(fn: Callable[..., T], *args: Any, retries: int = 5, base_delay: float = 0.2, **kwargs: Any) -> T:
    """Call ``fn`` with randomised exponential backoff on transient errors (xarray's robust_getitem)."""
    for attempt in range(retries + 1):
        try:
            return fn(*args, **kwargs)
        except _TRANSIENT as exc:
            if attempt == retries:
                raise
            delay = base_delay * 2**attempt * (0.5 + random.random())
            log.debug("transient error %s; retry %d in %.2fs", type(exc).__name__, attempt + 1, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def read_bytes(url: str, storage_options: dict[str, Any] | None = None) -> bytes:
    fs, path = get_fs(url, storage_options)
    return with_retries(fs.cat_file, path)


def write_bytes_atomic(url: str, data: bytes, storage_options: dict[str, Any] | None = None) -> None:
    """Write one object. On object stores a PUT is atomic; on files write a temporary then rename."""
    fs, path = get_fs(url, storage_options)
    if protocol_of(url) == "file":
        fs.makedirs(fs._parent(path), exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}-{random.randrange(1 << 30)}"
        with fs.open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    else:
        with_retries(fs.pipe_file, path, data)


def exists(url: str, storage_options: dict[str, Any] | None = None) -> bool:
    fs, path = get_fs(url, storage_options)
    return bool(with_retries(fs.exists, path))
