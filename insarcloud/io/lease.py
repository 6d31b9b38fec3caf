"""One writer per cube: leases (lock objects with an owner, a heartbeat and an expiry) on any fsspec store.

A lease is a small JSON object beside what it guards -- ``{cube}.leases/{scope}.json`` (``scope`` is
``root`` for a frame cube's ingest or an area cube's root, ``group-<name>`` for a stage group) -- so the
cube itself stays a pure Zarr hierarchy and a lease never makes a URL look like "something that is not a
cube". It records::

    {"owner": "host/pid/run/job", "host", "pid", "pid_start", "run_id", "job", "token",
     "acquired_at", "heartbeat_at", "expires_at", "ttl_s"}     (times: UTC seconds since the epoch)

How a lease is taken, per store (docs/reliability.md gives the reasons and what each does not guarantee):

- S3 with conditional writes (AWS since 2024, MinIO, moto's server): create with ``PUT If-None-Match: *``
  (412 when it exists); renew and take over an expired lease with ``PUT If-Match: <ETag read>``; release
  with ``DELETE If-Match: <our ETag>``. Exactly one of several racers wins each step.
- Local files: create with ``os.link`` of a complete temporary file (fails when the name exists, like
  ``O_EXCL``, and a reader never sees half a lease); renew/take over/release under ``fcntl.flock`` of a
  sibling ``.lock`` file.
- Any other store (or an S3 endpoint that ignores ``If-None-Match``, found by a one-time probe): write, wait
  a settle delay, read back and keep the lease only when the token read back is ours.

A heartbeat thread renews the lease every ``ttl/4``. A lease whose ``expires_at`` has passed, or whose owner
is a process on this host that no longer exists, may be taken over; a renewal that finds another owner marks
the lease lost (the holder's exit then raises :class:`~insarcloud.errors.LeaseLostError`). A second writer
waits up to ``wait`` seconds (``--wait-lease``, ``INSARCLOUD_LEASE_WAIT_S``) or gets
:class:`~insarcloud.errors.LeaseHeldError` naming the owner and the expiry.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from insarcloud.errors import LeaseHeldError, LeaseLostError, StorageError
from insarcloud.io.storage import get_fs, protocol_of

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 120.0
DEFAULT_SETTLE_S = 2.0
RUN_ID = uuid.uuid4().hex[:12]  # one per process: the owner id's run part unless a caller names its run


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw else default
    except ValueError as exc:
        raise StorageError(f"{name}={raw!r} is not a number of seconds") from exc


def default_ttl() -> float:
    """Lease time-to-live in seconds: ``INSARCLOUD_LEASE_TTL_S`` or 120."""
    return _env_float("INSARCLOUD_LEASE_TTL_S", DEFAULT_TTL_S)


def default_wait() -> float:
    """How long a second writer waits for a held lease: ``INSARCLOUD_LEASE_WAIT_S`` or 0 (refuse at once)."""
    return _env_float("INSARCLOUD_LEASE_WAIT_S", 0.0)


def lease_url(target_url: str, scope: str = "root") -> str:
    """Where the lease of ``scope`` on ``target_url`` lives: beside the target, never inside it."""
    base = target_url.rstrip("/")
    safe = scope.replace("/", "~") or "root"
    if protocol_of(base) != "file" and "/" not in base.split("://", 1)[1]:
        return f"{base}/.insarcloud-leases/{safe}.json"  # a bucket root has no "beside"
    return f"{base}.leases/{safe}.json"


def _now() -> float:
    return time.time()


def _iso(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.UTC).isoformat(timespec="seconds")


def _pid_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, /proc) to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def owner_is_dead(info: dict[str, Any]) -> bool:
    """True when the lease's owner was a process on this host that no longer runs (a crashed owner)."""
    if info.get("host") != socket.gethostname() or not isinstance(info.get("pid"), int):
        return False
    pid = info["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    start = _pid_start(pid)
    return start is not None and info.get("pid_start") not in (None, start)


def _own_unreleased(info: dict[str, Any], url: str) -> bool:
    """True when the lease record is one this process wrote and then failed to delete (the store was
    unreachable at its release): waiting for its TTL would only block this process's own next run (a
    resumed ingest after an outage). Only such records, identified by their token, are taken over."""
    with _HELD_LOCK:
        return info.get("token") in _UNRELEASED.get(url, set()) and url not in _HELD


_UNRELEASED: dict[str, set[str]] = {}  # lease URL -> tokens this process could not delete at release


def is_expired(info: dict[str, Any], now: float | None = None) -> bool:
    return float(info.get("expires_at", 0)) <= (now if now is not None else _now())


def _fault_point(name: str) -> None:
    """Test hook: ``INSARCLOUD_FAULT_STOP_AT=<name>`` stops this process (SIGSTOP) at a recorded point so a
    test can kill it exactly there, never after a guessed number of seconds."""
    if os.environ.get("INSARCLOUD_FAULT_STOP_AT") == name:
        print(f"insarcloud-fault-point {name} pid={os.getpid()}", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)


# ---------------------------------------------------------------------------------------------------
# Backends: read / create / replace / delete one small object, each step conditional where possible


class _Exists(Exception):
    """The lease object exists (create lost the race)."""


class _Conflict(Exception):
    """The lease object is not the version we read (someone else renewed, took over or released it)."""


def _precondition_failed(exc: BaseException) -> bool:
    cause = exc.__cause__ or exc.__context__
    resp = getattr(cause, "response", None) or getattr(exc, "response", None) or {}
    code = str(resp.get("Error", {}).get("Code", ""))
    status = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("PreconditionFailed", "412", "ConditionalRequestConflict") or status in (409, 412)


class _S3Conditional:
    """S3 conditional writes: version = ETag."""

    kind = "s3-conditional"

    def __init__(self, fs: Any, path: str) -> None:
        self.fs, self.path = fs, path
        self.bucket, self.key, _ = fs.split_path(path)

    def read(self) -> tuple[dict[str, Any], str] | None:
        from fsspec.asyn import sync

        async def _get() -> tuple[bytes, str]:  # body and ETag of one GET: the version is the one read
            resp = await self.fs._call_s3("get_object", Bucket=self.bucket, Key=self.key)
            async with resp["Body"] as stream:
                return await stream.read(), str(resp["ETag"])

        try:
            data, etag = sync(self.fs.loop, _get)
        except FileNotFoundError:
            return None
        return _parse(data, self.path), etag

    def create(self, body: bytes) -> str:
        try:
            resp = self.fs.call_s3("put_object", Bucket=self.bucket, Key=self.key, Body=body, IfNoneMatch="*")
        except FileExistsError as exc:
            raise _Exists from exc
        except OSError as exc:
            if _precondition_failed(exc):
                raise _Exists from exc
            raise
        return str(resp["ETag"])

    def replace(self, body: bytes, version: str) -> str:
        try:
            resp = self.fs.call_s3("put_object", Bucket=self.bucket, Key=self.key, Body=body, IfMatch=version)
        except FileNotFoundError as exc:
            raise _Conflict from exc
        except OSError as exc:
            if _precondition_failed(exc):
                raise _Conflict from exc
            raise
        return str(resp["ETag"])

    def delete(self, version: str) -> None:
        try:
            self.fs.call_s3("delete_object", Bucket=self.bucket, Key=self.key, IfMatch=version)
        except FileNotFoundError:
            return
        except OSError as exc:
            if _precondition_failed(exc):
                raise _Conflict from exc
            raise


def _parse(data: bytes, where: str) -> dict[str, Any]:
    try:
        info = json.loads(data.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StorageError(f"lease object {where} is not a lease (not JSON): {exc}") from exc
    if not isinstance(info, dict) or "token" not in info:
        raise StorageError(f"lease object {where} is not a lease (no token)")
    return info


class _LocalFile:
    """Local files: ``os.link`` creates exclusively; ``flock`` on a sibling file serialises the rest.
    version = the lease's token."""

    kind = "local-file"

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock_path = f"{path}.lock"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        import fcntl

        while True:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:  # the folder was removed by a release in between
                continue
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:  # else a release unlinked the lock file while we waited for it: lock the new one
                break
            os.close(fd)
        try:
            yield
        finally:
            os.close(fd)  # closing drops the flock

    def _tidy(self) -> None:
        """After a release (lock held): remove the lock file and the folder when empty -- the only things a
        lease leaves beside a cube on local disk."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.lock_path)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(self.path))

    def _read(self) -> tuple[dict[str, Any], str] | None:
        try:
            with open(self.path, "rb") as f:
                info = _parse(f.read(), self.path)
        except FileNotFoundError:
            return None
        return info, str(info["token"])

    def read(self) -> tuple[dict[str, Any], str] | None:
        return self._read()

    def _tmp(self, body: bytes) -> str:
        tmp = f"{self.path}.tmp-{os.getpid()}-{random.randrange(1 << 30)}"
        while True:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            try:
                with open(tmp, "wb") as f:
                    f.write(body)
                    f.flush()
                    os.fsync(f.fileno())
                return tmp
            except FileNotFoundError:  # the folder was removed by a release in between
                continue

    def create(self, body: bytes) -> str:
        tmp = self._tmp(body)
        try:
            with self._locked():
                os.link(tmp, self.path)  # EEXIST when a lease is there: the O_EXCL of a whole file
        except FileExistsError as exc:
            raise _Exists from exc
        finally:
            os.unlink(tmp)
        return str(json.loads(body)["token"])

    def replace(self, body: bytes, version: str) -> str:
        tmp = self._tmp(body)
        try:
            with self._locked():
                cur = self._read()
                if cur is None or cur[1] != version:
                    raise _Conflict
                os.replace(tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return str(json.loads(body)["token"])

    def delete(self, version: str) -> None:
        with self._locked():
            cur = self._read()
            if cur is None:
                return
            if cur[1] != version:
                raise _Conflict
            os.unlink(self.path)
            self._tidy()


class _WriteReadBack:
    """Stores without conditional writes: write, wait ``settle`` seconds, read back, keep only our token.
    version = the lease's token. See docs/reliability.md for what this cannot guarantee."""

    kind = "write-read-back"

    def __init__(self, fs: Any, path: str, settle: float) -> None:
        self.fs, self.path, self.settle = fs, path, settle

    def read(self) -> tuple[dict[str, Any], str] | None:
        try:
            data = self.fs.cat_file(self.path)
        except FileNotFoundError:
            return None
        info = _parse(data, self.path)
        return info, str(info["token"])

    def _write_and_check(self, body: bytes) -> str:
        token = str(json.loads(body)["token"])
        self.fs.pipe_file(self.path, body)
        time.sleep(self.settle)
        cur = self.read()
        if cur is None or cur[1] != token:
            raise _Exists
        return token

    def create(self, body: bytes) -> str:
        if self.read() is not None:
            raise _Exists
        return self._write_and_check(body)

    def replace(self, body: bytes, version: str) -> str:
        cur = self.read()
        if cur is None or cur[1] != version:
            raise _Conflict
        try:
            return self._write_and_check(body)
        except _Exists as exc:
            raise _Conflict from exc

    def delete(self, version: str) -> None:
        cur = self.read()
        if cur is None:
            return
        if cur[1] != version:
            raise _Conflict
        self.fs.rm_file(self.path)


class _InProcess(_WriteReadBack):
    """``memory://`` is one process's dictionary: a process-wide lock makes each step exact (no settle)."""

    kind = "in-process"
    _lock = threading.RLock()

    def __init__(self, fs: Any, path: str) -> None:
        super().__init__(fs, path, 0.0)

    def create(self, body: bytes) -> str:
        with self._lock:
            return super().create(body)

    def replace(self, body: bytes, version: str) -> str:
        with self._lock:
            return super().replace(body, version)

    def delete(self, version: str) -> None:
        with self._lock:
            super().delete(version)


_PROBED: dict[tuple[str, str], bool] = {}
_PROBE_LOCK = threading.Lock()


def _s3_honours_if_none_match(fs: Any, path: str) -> bool:
    """Whether this endpoint refuses a second ``PUT If-None-Match: *`` (once per endpoint and bucket)."""
    bucket, _, _ = fs.split_path(path)
    key = (str(getattr(fs, "endpoint_url", None) or fs.client_kwargs.get("endpoint_url", "")), bucket)
    with _PROBE_LOCK:
        if key in _PROBED:
            return _PROBED[key]
        probe = _S3Conditional(fs, f"{path.rsplit('/', 1)[0]}/.probe-{uuid.uuid4().hex}")
        ok = False
        try:
            probe.create(b'{"token": "probe"}')
            try:
                probe.create(b'{"token": "probe2"}')
            except _Exists:
                ok = True
        except OSError as exc:  # e.g. 501 NotImplemented for the header
            log.warning("S3 endpoint %s refuses conditional writes (%s): leases fall back to write-read-back",
                        key[0], exc)
        finally:
            with contextlib.suppress(OSError):
                fs.rm_file(probe.path)
        if not ok:
            log.warning("S3 endpoint %s ignores If-None-Match: leases fall back to write-read-back", key[0])
        _PROBED[key] = ok
        return ok


def _backend(url: str, storage_options: dict[str, Any] | None) -> Any:
    mode = os.environ.get("INSARCLOUD_LEASE_MODE", "auto")
    settle = _env_float("INSARCLOUD_LEASE_SETTLE_S", DEFAULT_SETTLE_S)
    fs, path = get_fs(url, storage_options)
    proto = protocol_of(url)
    if mode == "fallback":
        return _WriteReadBack(fs, path, settle)
    if proto == "file":
        return _LocalFile(path)
    if proto == "memory":
        return _InProcess(fs, path)
    if proto in ("s3", "s3a") and (mode == "conditional" or _s3_honours_if_none_match(fs, path)):
        return _S3Conditional(fs, path)
    return _WriteReadBack(fs, path, settle)


# ---------------------------------------------------------------------------------------------------
# The lease


_HELD: dict[str, tuple[Lease, int]] = {}  # lease URL -> (lease, depth): re-entrant within one process
_HELD_LOCK = threading.Lock()


class Lease:
    """A lease on ``target_url`` (scope ``scope``); use :func:`hold` for the usual context manager.

    Parameters
    ----------
    target_url : the cube (or area cube) URL the lease guards.
    scope : ``"root"`` or ``"group-<name>"``.
    ttl : seconds after the last heartbeat at which the lease expires (default :func:`default_ttl`).
    job : what the owner does (``"ingest"``, ``"stage:quality"``, ``"mosaic"``), part of the owner id.
    """

    def __init__(self, target_url: str, scope: str = "root", storage_options: dict[str, Any] | None = None, *,
                 ttl: float | None = None, job: str = "", run_id: str | None = None) -> None:
        self.target_url = target_url
        self.scope = scope
        self.url = lease_url(target_url, scope)
        self.ttl = float(ttl if ttl is not None else default_ttl())
        if not self.ttl > 0:
            raise StorageError(f"lease TTL must be > 0 seconds, got {self.ttl}")
        self.job = job
        self.run_id = run_id or RUN_ID
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.owner = f"{self.host}/{self.pid}/{self.run_id}/{job}"
        self.token = uuid.uuid4().hex
        self.backend = _backend(self.url, storage_options)
        self.version: str | None = None
        self.acquired_at = 0.0
        self.waited_for: str | None = None  # the owner this lease waited for, if any
        self.took_over: dict[str, Any] | None = None  # the expired/dead lease it replaced, if any
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _body(self, now: float) -> bytes:
        return json.dumps({
            "owner": self.owner, "host": self.host, "pid": self.pid, "pid_start": _pid_start(self.pid),
            "run_id": self.run_id, "job": self.job, "token": self.token, "target": self.target_url,
            "scope": self.scope, "acquired_at": self.acquired_at or now, "heartbeat_at": now,
            "expires_at": now + self.ttl, "ttl_s": self.ttl, "backend": self.backend.kind,
        }, sort_keys=True).encode()

    def _try(self) -> dict[str, Any] | None:
        """One attempt; returns None when acquired, else the current holder's record."""
        now = _now()
        try:
            self.acquired_at = now
            self.version = self.backend.create(self._body(now))
            return None
        except _Exists:
            pass
        cur = self.backend.read()
        if cur is None:
            return {"owner": "(released while we looked)", "expires_at": now}
        info, version = cur
        if info.get("token") == self.token:  # write-read-back: our own write, read late
            self.version = version
            return None
        stale_own = _own_unreleased(info, self.url)
        if is_expired(info, now) or owner_is_dead(info) or stale_own:
            why = ("expired" if is_expired(info, now) else
                   "this process's own lease, left when its release failed" if stale_own else "owner process is gone")
            try:
                self.version = self.backend.replace(self._body(now), version)
            except _Conflict:
                return info  # another writer renewed or took it first
            log.warning("took over the lease %s from %s (%s, expired at %s)", self.url, info.get("owner"), why,
                        _iso(float(info.get("expires_at", 0))))
            self.took_over = info
            return None
        return info

    def acquire(self, wait: float | None = None) -> Lease:
        """Take the lease, waiting up to ``wait`` seconds (default :func:`default_wait`) while another owner
        holds it; raise :class:`LeaseHeldError` naming the owner and expiry when it is still held."""
        wait = default_wait() if wait is None else float(wait)
        if wait < 0:
            raise StorageError(f"lease wait must be >= 0 seconds, got {wait}")
        deadline = time.monotonic() + wait
        delay = 0.2
        while True:
            holder = self._try()
            if holder is None:
                break
            if time.monotonic() >= deadline:
                raise LeaseHeldError(
                    f"{self.target_url} is being written by {holder.get('owner')} (job "
                    f"{holder.get('job') or '?'}, since {_iso(float(holder.get('acquired_at', 0)))}); its lease "
                    f"{self.url} expires at {_iso(float(holder.get('expires_at', 0)))} unless renewed. Wait for it "
                    f"(--wait-lease SECONDS) or, if that owner is gone, retry after the expiry")
            if self.waited_for is None:
                log.warning("%s is held by %s until %s; waiting up to %.0fs", self.url, holder.get("owner"),
                            _iso(float(holder.get("expires_at", 0))), wait)
            self.waited_for = str(holder.get("owner"))
            remaining = deadline - time.monotonic()
            until_expiry = float(holder.get("expires_at", 0)) - _now()
            time.sleep(max(0.05, min(delay * (0.5 + random.random()), remaining, max(until_expiry, 0.05))))
            delay = min(delay * 2, max(self.ttl / 4, 0.2))
        log.info("lease %s acquired by %s (%s, ttl %.0fs)", self.url, self.owner, self.backend.kind, self.ttl)
        self._thread = threading.Thread(target=self._heartbeat, name=f"lease-heartbeat {self.url}", daemon=True)
        self._thread.start()
        _fault_point("lease-acquired")
        return self

    def renew(self) -> None:
        """Extend the expiry (what the heartbeat does); marks the lease lost when another owner has it."""
        with self._lock:
            if self.version is None or self.lost:
                return
            try:
                self.version = self.backend.replace(self._body(_now()), self.version)
            except _Conflict:
                self.lost = True
                log.error("lease %s was taken over by another writer: this run (%s) no longer owns %s",
                          self.url, self.owner, self.target_url)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                self.renew()
            except Exception as exc:  # noqa: BLE001 -- a storage hiccup (botocore's errors are not all
                # OSError): the next beat retries; expiry is ttl away
                log.warning("lease %s heartbeat failed: %s", self.url, exc)
            if self.lost:
                return

    def check(self) -> None:
        """Raise :class:`LeaseLostError` when another writer took this lease over."""
        if self.lost:
            raise LeaseLostError(f"the lease on {self.target_url} ({self.url}) was taken over while {self.owner} "
                                 "held it (a pause longer than its TTL?): this run's writes may be overwritten")

    def release(self) -> None:
        """Stop the heartbeat and delete the lease object if it is still ours."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        with self._lock:
            if self.version is None or self.lost:
                return
            try:
                self.backend.delete(self.version)
            except _Conflict:
                self.lost = True
            except Exception as exc:  # noqa: BLE001 -- botocore's connection errors are not OSError; an
                # unreachable store must not turn a finished (or already failing) run into this error: the
                # lease expires by itself after its TTL
                log.warning("could not release the lease %s (it expires in %.0fs): %s", self.url, self.ttl, exc)
                with _HELD_LOCK:
                    _UNRELEASED.setdefault(self.url, set()).add(self.token)
            self.version = None
        log.info("lease %s released", self.url)


@contextlib.contextmanager
def hold(target_url: str, scope: str = "root", storage_options: dict[str, Any] | None = None, *,
         wait: float | None = None, ttl: float | None = None, job: str = "") -> Iterator[Lease]:
    """Hold the lease of ``scope`` on ``target_url`` for the ``with`` block; released on exit and on
    exceptions. Re-entrant within a process (a nested ``hold`` of the same lease shares it)."""
    url = lease_url(target_url, scope)
    with _HELD_LOCK:
        held = _HELD.get(url)
        if held is not None:
            _HELD[url] = (held[0], held[1] + 1)
    if held is not None:
        try:
            yield held[0]
        finally:
            with _HELD_LOCK:
                cur = _HELD.get(url)
                if cur is not None and cur[0] is held[0]:  # (a template lease may be released inside)
                    _HELD[url] = (cur[0], cur[1] - 1)
        return
    lease = Lease(target_url, scope, storage_options, ttl=ttl, job=job).acquire(wait)
    with _HELD_LOCK:
        _HELD[url] = (lease, 1)
    try:
        yield lease
        lease.check()
    finally:
        with _HELD_LOCK:
            _HELD.pop(url, None)
        lease.release()


def held_here(target_url: str, scope: str = "root") -> Lease | None:
    """The lease of ``scope`` on ``target_url`` if this process holds it (through :func:`hold` or
    :func:`adopt`)."""
    with _HELD_LOCK:
        held = _HELD.get(lease_url(target_url, scope))
    return held[0] if held is not None else None


def adopt(lease: Lease) -> None:
    """Register an acquired lease that outlives a ``with`` block (a Ray stage's driver) so that nested
    :func:`hold` calls in this process share it instead of waiting for themselves."""
    with _HELD_LOCK:
        _HELD.setdefault(lease.url, (lease, 1))


def disown(lease: Lease) -> None:
    with _HELD_LOCK:
        cur = _HELD.get(lease.url)
        if cur is not None and cur[0] is lease:
            del _HELD[lease.url]


def read_lease(target_url: str, scope: str = "root", storage_options: dict[str, Any] | None = None
               ) -> dict[str, Any] | None:
    """The current lease record of ``scope`` on ``target_url`` (None when free)."""
    cur = _backend(lease_url(target_url, scope), storage_options).read()
    return cur[0] if cur is not None else None
