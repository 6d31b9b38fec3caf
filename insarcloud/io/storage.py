"""Object-store access: every URL goes through fsspec, with options from arguments or the environment.

The same code talks to AWS S3, an on-premises S3 (MinIO, Ceph), moto's server on loopback, local
files and ``https://`` directory listings (LiCSAR's own web tree). The endpoint is configuration:
``AWS_ENDPOINT_URL`` (the variable botocore itself honours) or ``storage_options={"endpoint_url": ...}``.
Credentials come from the usual AWS chain (environment, profile, IRSA) and are never logged.

One exception, for CPU: tasks that move thousands of chunks (QC's tile tasks) take their Zarr store from
:mod:`insarcloud.io.chunk_store` (obstore) when these options translate to it exactly; retries and errors stay
this module's (:func:`with_retries`, :func:`is_transient`).
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

import fsspec
from fsspec.core import url_to_fs

from insarcloud.errors import StorageError, StorageUnavailableError

log = logging.getLogger(__name__)
T = TypeVar("T")

# Errors worth retrying on object stores; anything else (404, 403, corrupt data) fails at once. What really
# comes out of s3fs against a stopped endpoint (measured, docs/ingest.md): botocore's
# EndpointConnectionError caused by aiohttp's ClientConnectorError caused by ConnectionRefusedError, after
# s3fs' own ~5-9 s of retries; throttling and 5xx come as botocore ClientError, or as the OSError s3fs
# translates them into (the code in its message).
_RETRY_CODES = ("SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
                "InternalError", "ServiceUnavailable", "RequestLimitExceeded", "TooManyRequests",
                "503 Service", "500 Internal", "502 Bad Gateway", "504 Gateway")
# What GDAL/CURL say when the endpoint, not the file, is at fault (/vsis3/, /vsicurl/ readers).
_CURL_MARKERS = ("couldn't connect", "could not connect", "connection refused", "connection reset",
                 "failed to connect", "timed out", "timeout was reached", "couldn't resolve", "could not resolve",
                 "empty reply from server", "recv failure", "send failure", "ssl connect error",
                 "http response code: 500", "http response code: 502", "http response code: 503",
                 "http response code: 504", "http response code: 429", "curl error", "server disconnected")


# obstore (io.chunk_store) raises one GenericError type for everything; its text carries the object_store
# crate's HttpError kind (a refused or reset connection, a timeout) or the HTTP status (measured: a refused
# endpoint reads "HTTP error: error sending request ... kind: Connect").
_OBSTORE_TRANSIENT = re.compile(r"kind: (Connect|Request|Timeout|Interrupted)\b|status: (5\d\d|429)\b|"
                                r"error sending request|Service Unavailable|SlowDown|connection (closed|reset)",
                                re.IGNORECASE)


def _transient_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [TimeoutError, ConnectionError]
    try:
        from botocore import exceptions as bx

        types += [bx.HTTPClientError, bx.ConnectionError]  # EndpointConnection, ConnectTimeout, ReadTimeout,
    except ImportError:  # ConnectionClosed, ProxyConnection: all subclass these two
        pass
    try:
        import aiohttp

        types += [aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, aiohttp.ServerTimeoutError]
    except ImportError:
        pass
    return tuple(types)


_TRANSIENT = _transient_types()


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out and len(out) < 16:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it wraps) says the store is unreachable, slow or overloaded.

    Walks the exception chain: s3fs and zarr re-raise botocore/aiohttp errors as OSError or inside their
    own. A 404/403 or a corrupt object is not transient. GDAL errors are judged by CURL's text
    (:func:`is_transient_message`)."""
    if isinstance(exc, StorageUnavailableError):
        return False  # the budget is already spent
    for e in _chain(exc):
        if isinstance(e, _TRANSIENT):
            return True
        code = _client_error_code(e)
        if code is not None:
            status = int(getattr(e, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if status >= 500 or status == 429 or code in _RETRY_CODES:
                return True
        if isinstance(e, OSError) and any(c in str(e) for c in _RETRY_CODES):
            return True
        if type(e).__module__.startswith("rasterio") and is_transient_message(str(e)):
            return True
        if type(e).__module__.startswith("obstore") and _OBSTORE_TRANSIENT.search(str(e)):
            return True
    return False


def _client_error_code(e: BaseException) -> str | None:
    response = getattr(e, "response", None)
    if isinstance(response, dict) and "Error" in response:
        return str(response["Error"].get("Code", ""))
    return None


def is_transient_message(text: str) -> bool:
    """Whether a GDAL/CURL error text blames the connection or the server (not the file)."""
    low = text.lower()
    return any(m in low for m in _CURL_MARKERS)


def retry_budget() -> tuple[int, float]:
    """(most tries, most seconds) of :func:`with_retries`: ``INSARCLOUD_STORAGE_RETRIES`` (default 8) and
    ``INSARCLOUD_STORAGE_RETRY_SECONDS`` (default 60: an endpoint down for 20-30 s is ridden out)."""
    tries = int(os.environ.get("INSARCLOUD_STORAGE_RETRIES", "8"))
    seconds = float(os.environ.get("INSARCLOUD_STORAGE_RETRY_SECONDS", "60"))
    return max(tries, 1), max(seconds, 0.0)


def endpoint_for(url: str, storage_options: dict[str, Any] | None = None) -> str:
    """The endpoint ``url`` is read from with ``storage_options``: an S3 endpoint URL, or the protocol."""
    if protocol_of(url) in ("s3", "s3a"):
        so = storage_options_for(url, storage_options)
        return str(so.get("endpoint_url") or (so.get("client_kwargs") or {}).get("endpoint_url") or "AWS S3")
    return protocol_of(url)


def endpoint_of(obj: Any, storage_options: dict[str, Any] | None = None) -> str:
    """A printable name of the store behind a filesystem (or bound method / URL): the S3 endpoint URL, or
    the protocol. Never credentials."""
    if callable(obj) and not hasattr(obj, "__self__") and hasattr(obj, "__wrapped__"):
        obj = obj.__wrapped__  # fsspec's sync wrappers (fs.pipe, fs.cat_file...) wrap the bound async method
    fs = getattr(obj, "__self__", obj)
    if isinstance(fs, str):
        return endpoint_for(fs, storage_options)
    endpoint = getattr(fs, "endpoint_url", None) or (getattr(fs, "client_kwargs", None) or {}).get("endpoint_url")
    if endpoint:
        return str(endpoint)
    proto = getattr(fs, "protocol", None)
    if isinstance(proto, (tuple, list)):
        proto = proto[0]
    return "AWS S3" if proto in ("s3", "s3a") else str(proto or type(fs).__name__)


# Observers called as ``observer(attempt, exc)`` before each retry sleep (fault-injection tests restart a
# stopped endpoint from here instead of after N seconds).
RETRY_OBSERVERS: list[Callable[[int, BaseException], None]] = []


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


def with_retries(fn: Callable[..., T], *args: Any, retries: int | None = None, base_delay: float = 0.2,
                 budget_s: float | None = None, endpoint: str | None = None, **kwargs: Any) -> T:
    """Call ``fn`` with randomised exponential backoff on transient errors (xarray's robust_getitem).

    Transient: :func:`is_transient` (connection, timeout, throttling, 5xx, wrapped or not). Tries stop at
    ``retries`` + 1 calls or once ``budget_s`` seconds have passed (defaults: :func:`retry_budget`); then
    :class:`StorageUnavailableError` names the endpoint (``endpoint``, else the one ``fn`` is bound to),
    the tries and the seconds. Any other error propagates at once, unchanged.
    """
    max_tries, budget = retry_budget()
    if retries is not None:
        max_tries = retries + 1
    if budget_s is not None:
        budget = budget_s
    t0 = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not is_transient(exc):
                raise
            spent = time.monotonic() - t0
            if attempt >= max_tries or spent >= budget:
                name = endpoint or endpoint_of(fn)
                raise StorageUnavailableError(
                    f"storage unreachable: {name} after {attempt} tries over {spent:.1f} s "
                    f"({type(exc).__name__}: {str(exc)[:200]})") from exc
            delay = min(base_delay * 2 ** (attempt - 1), 8.0) * (0.5 + random.random())
            delay = max(min(delay, budget - spent), 0.0)
            log.warning("storage %s: %s; retry %d in %.1f s", endpoint or endpoint_of(fn), type(exc).__name__,
                        attempt, delay)
            for observer in list(RETRY_OBSERVERS):
                observer(attempt, exc)
            time.sleep(delay)


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
