"""Leases (one writer per cube) on the real local S3 endpoint (moto's server) and on local files.

No test waits a guessed time: expiry is awaited by polling the lease record against the TTL the test set.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import s3fs

from insarcloud.errors import LeaseHeldError, LeaseLostError
from insarcloud.io import lease as L


def _wait_expired(lease_obj: L.Lease) -> None:
    info = lease_obj.backend.read()[0]
    while not L.is_expired(info):
        time.sleep(max(0.01, float(info["expires_at"]) - time.time()))


@pytest.fixture(params=["s3", "file"])
def target(request, tmp_path):
    """A cube URL on the real S3 endpoint or on the local filesystem, with its storage options."""
    if request.param == "s3":
        so = request.getfixturevalue("storage_options")
        return f"{request.getfixturevalue('bucket')}/cubes/F.zarr", so
    return str(tmp_path / "cubes" / "F.zarr"), None


def test_lease_object_sits_beside_the_cube():
    assert L.lease_url("s3://b/cubes/F.zarr/") == "s3://b/cubes/F.zarr.leases/root.json"
    assert L.lease_url("s3://b/areas/a.zarr", "group-ts_quality") == "s3://b/areas/a.zarr.leases/group-ts_quality.json"
    assert L.lease_url("s3://b") == "s3://b/.insarcloud-leases/root.json"
    assert L.lease_url("/data/F.zarr", "group-a/b") == "/data/F.zarr.leases/group-a~b.json"


def test_s3_conditional_create_replace_delete(bucket, storage_options):
    """The real server answers If-None-Match: * and If-Match with 412; the backend maps them."""
    fs = s3fs.S3FileSystem(**storage_options)
    path = f"{bucket[5:]}/x.leases/root.json"
    assert L._s3_honours_if_none_match(fs, path)
    b = L._S3Conditional(fs, path)
    assert b.read() is None
    v1 = b.create(b'{"token": "a"}')
    with pytest.raises(L._Exists):
        b.create(b'{"token": "b"}')
    assert b.read() == ({"token": "a"}, v1)
    with pytest.raises(L._Conflict):
        b.replace(b'{"token": "c"}', '"0123456789abcdef0123456789abcdef"')
    v2 = b.replace(b'{"token": "d"}', v1)
    with pytest.raises(L._Conflict):  # the old version can no longer be replaced or deleted
        b.replace(b'{"token": "e"}', v1)
    with pytest.raises(L._Conflict):
        b.delete(v1)
    assert b.read() == ({"token": "d"}, v2)
    b.delete(v2)
    assert b.read() is None
    assert not fs.exists(path)


def test_local_file_create_is_exclusive(tmp_path):
    b = L._LocalFile(str(tmp_path / "F.zarr.leases" / "root.json"))
    v1 = b.create(b'{"token": "a"}')
    with pytest.raises(L._Exists):
        b.create(b'{"token": "b"}')
    with pytest.raises(L._Conflict):
        b.replace(b'{"token": "c"}', "zz")
    v2 = b.replace(b'{"token": "d"}', v1)
    with pytest.raises(L._Conflict):
        b.delete(v1)
    b.delete(v2)
    assert b.read() is None
    assert not (tmp_path / "F.zarr.leases").exists()  # a released lease leaves nothing beside the cube


def test_local_race_has_one_winner(tmp_path):
    """Sixteen threads create the same lease at once: exactly one gets it."""
    path = str(tmp_path / "F.zarr.leases" / "root.json")
    barrier = threading.Barrier(16)
    wins: list[int] = []

    def racer(i: int) -> None:
        b = L._LocalFile(path)
        barrier.wait()
        try:
            b.create(json.dumps({"token": str(i)}).encode())
            wins.append(i)
        except L._Exists:
            pass

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    b = L._LocalFile(path)
    assert b.read()[0]["token"] == str(wins[0])
    b.delete(str(wins[0]))
    assert list(tmp_path.iterdir()) == []


def test_second_writer_refused_with_owner_named(target):
    url, so = target
    with L.hold(url, "root", so, job="ingest", ttl=60) as first:
        rec = L.read_lease(url, "root", so)
        assert rec["owner"] == first.owner and rec["job"] == "ingest" and rec["pid"] == os.getpid()
        assert rec["expires_at"] == pytest.approx(rec["heartbeat_at"] + 60)
        with pytest.raises(LeaseHeldError) as err:
            L.Lease(url, "root", so, job="other").acquire(wait=0)
        assert first.owner in str(err.value) and "expires at" in str(err.value) and url in str(err.value)
        with L.hold(url, "root", so) as nested:  # the same process re-enters its own lease
            assert nested is first
    assert L.read_lease(url, "root", so) is None


def test_released_on_exception(target):
    url, so = target
    with pytest.raises(ZeroDivisionError), L.hold(url, "group-qc", so):
        1 / 0  # noqa: B018
    assert L.read_lease(url, "group-qc", so) is None
    with L.hold(url, "group-qc", so, wait=0):
        pass


def test_waiter_gets_the_lease_after_release(target):
    url, so = target
    first = L.Lease(url, "root", so, ttl=60).acquire(wait=0)
    got = threading.Event()
    second = L.Lease(url, "root", so, ttl=60)

    def waiter() -> None:
        second.acquire(wait=120)
        got.set()

    t = threading.Thread(target=waiter)
    t.start()
    while second.waited_for is None:  # it has seen the lease held
        time.sleep(0.01)
    assert not got.is_set()
    first.release()
    t.join()
    assert got.is_set() and second.waited_for == first.owner
    assert L.read_lease(url, "root", so)["owner"] == second.owner
    second.release()


def test_heartbeat_renews(target):
    url, so = target
    with L.hold(url, "root", so, ttl=0.8):
        first = L.read_lease(url, "root", so)
        rec = first
        while rec["heartbeat_at"] == first["heartbeat_at"]:
            time.sleep(0.02)
            rec = L.read_lease(url, "root", so)
        assert rec["expires_at"] > first["expires_at"] and rec["acquired_at"] == first["acquired_at"]


def test_expired_lease_of_another_host_is_taken_over(target):
    """A crashed owner elsewhere stops renewing: after its TTL the lease is taken over (conditionally)."""
    url, so = target
    ghost = L.Lease(url, "root", so, ttl=1.0)
    ghost.host = "another-host"  # its pid means nothing here: only the expiry can free it
    ghost.acquire(wait=0)
    ghost._stop.set()  # the owner stops renewing (crashed)
    with pytest.raises(LeaseHeldError):
        L.Lease(url, "root", so).acquire(wait=0)
    _wait_expired(ghost)
    new = L.Lease(url, "root", so, ttl=60).acquire(wait=0)
    assert new.took_over is not None and new.took_over["host"] == "another-host"
    ghost.renew()  # the old owner wakes up: it must learn it lost the lease, and not delete the new one
    assert ghost.lost
    with pytest.raises(LeaseLostError):
        ghost.check()
    ghost.release()
    assert L.read_lease(url, "root", so)["owner"] == new.owner
    new.release()


def test_killed_owner_on_this_host_is_taken_over_at_once(target, tmp_path):
    """SIGKILL the owner after its lease object exists: the next writer sees the process is gone."""
    url, so = target
    code = ("import sys, time; from insarcloud.io.lease import Lease; "
            f"Lease({url!r}, 'root', {so!r}, ttl=600).acquire(0); print('held', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        rec = L.read_lease(url, "root", so)
        assert rec["pid"] == proc.pid and rec["host"] == socket.gethostname()
        with pytest.raises(LeaseHeldError):  # alive: refused even though on this host
            L.Lease(url, "root", so).acquire(wait=0)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    new = L.Lease(url, "root", so).acquire(wait=0)
    assert new.took_over["pid"] == proc.pid
    new.release()


def test_write_read_back_fallback(bucket, storage_options, monkeypatch):
    """The documented fallback (stores without conditional writes), exercised on the real endpoint."""
    monkeypatch.setenv("INSARCLOUD_LEASE_MODE", "fallback")
    monkeypatch.setenv("INSARCLOUD_LEASE_SETTLE_S", "0.05")
    url = f"{bucket}/cubes/F.zarr"
    with L.hold(url, "root", storage_options) as first:
        assert first.backend.kind == "write-read-back"
        with pytest.raises(LeaseHeldError):
            L.Lease(url, "root", storage_options).acquire(wait=0)
    assert L.read_lease(url, "root", storage_options) is None


def test_bad_settings_are_refused(tmp_path, monkeypatch):
    from insarcloud.errors import StorageError

    with pytest.raises(StorageError):
        L.Lease(str(tmp_path / "c.zarr"), ttl=0)
    with pytest.raises(StorageError):
        L.Lease(str(tmp_path / "c.zarr")).acquire(wait=-1)
    monkeypatch.setenv("INSARCLOUD_LEASE_TTL_S", "two minutes")
    with pytest.raises(StorageError):
        L.Lease(str(tmp_path / "c.zarr"))


def test_local_mutual_exclusion_under_contention(tmp_path):
    """Four writers take and release one lease 15 times each: never two inside at once, nothing left over
    (releases remove the lock file and folder while others wait on them)."""
    url = str(tmp_path / "F.zarr")
    inside, worst, rounds = [0], [0], []
    guard = threading.Lock()

    def writer() -> None:
        for _ in range(15):
            lease = L.Lease(url, "root", ttl=60).acquire(wait=120)
            with guard:
                inside[0] += 1
                worst[0] = max(worst[0], inside[0])
            time.sleep(0.001)
            with guard:
                inside[0] -= 1
                rounds.append(1)
            lease.release()

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert worst[0] == 1 and len(rounds) == 60
    assert list(tmp_path.iterdir()) == []


def test_memory_store_lease_is_exact_in_process():
    url = f"memory://leasetest-{os.getpid()}/F.zarr"
    with L.hold(url, "root") as first:
        assert first.backend.kind == "in-process"
        with pytest.raises(LeaseHeldError):
            L.Lease(url, "root").acquire(wait=0)
    assert L.read_lease(url, "root") is None


def _small(value: float):
    import numpy as np
    import xarray as xr

    return xr.Dataset({"v": (("y", "x"), np.full((4, 5), value, "float32"))},
                      coords={"y": 40.0 - np.arange(4) * 1e-3, "x": 10.0 + np.arange(5) * 1e-3})


def test_stage_group_writes_take_the_group_lease(target):
    from insarcloud.io import cube as cubemod

    url, so = target
    other = L.Lease(url, "group-qc", so, job="stage qc").acquire(wait=0)
    try:
        with pytest.raises(LeaseHeldError) as err:
            cubemod.write_stage_output(_small(1), url, "qc", stage="qc", params={"a": 1}, storage_options=so)
        assert other.owner in str(err.value)
        with pytest.raises(LeaseHeldError):
            cubemod.create_stage_template(_small(1).chunk(), url, "qc", stage="qc", params={}, storage_options=so)
        cubemod.write_stage_output(_small(2), url, "ts_none", stage="invert", params={}, storage_options=so)
    finally:
        other.release()
    # The Ray path: the template's creator holds the group's lease until it marks the group complete.
    cubemod.create_stage_template(_small(1).chunk(), url, "qc", stage="qc", params={"a": 1}, storage_options=so)
    assert L.read_lease(url, "group-qc", so)["job"] == "stage qc"
    with pytest.raises(LeaseHeldError):
        L.Lease(url, "group-qc", so).acquire(wait=0)
    cubemod.write_stage_region(_small(3), url, "qc", {"y": slice(0, 4), "x": slice(0, 5)}, storage_options=so)
    cubemod.mark_stage_complete(url, "qc", so, stage="qc", params={"a": 1})
    assert L.read_lease(url, "group-qc", so) is None
    # A driver holding a template's lease that then writes the group whole shares its own lease.
    cubemod.create_stage_template(_small(1).chunk(), url, "qc", stage="qc", params={"b": 1}, storage_options=so)
    cubemod.write_stage_output(_small(4), url, "qc", stage="qc", params={"b": 1}, storage_options=so)
    assert L.read_lease(url, "group-qc", so) is None and not cubemod._TEMPLATE_LEASES
    assert L.held_here(url, "group-qc") is None
    assert L.read_lease(url, "group-ts_none", so) is None


def test_writer_that_waited_skips_an_output_completed_meanwhile(target, monkeypatch, caplog):
    """The second writer of the same output (same parameters) waits, then finds it complete: no rewrite."""
    from insarcloud.io import cube as cubemod

    url, so = target
    monkeypatch.setenv("INSARCLOUD_LEASE_WAIT_S", "120")
    first = L.Lease(url, "group-noise", so).acquire(wait=0)
    # the first writer's work under its lease: the stage's own write, marker last
    ds = cubemod._prepare(_small(5))
    ds.attrs[cubemod.MARKER] = cubemod._marker("noise", {"k": 1}, complete=False)
    ds.to_zarr(url, group="noise", mode="w", zarr_format=3, consolidated=False,
               storage_options=cubemod.storage_options_for(url, so) if "://" in url else None)
    cubemod.mark_stage_complete(url, "noise", so, stage="noise", params={"k": 1})
    result: list[BaseException | None] = []

    def late_writer() -> None:
        try:
            cubemod.write_stage_output(_small(9), url, "noise", stage="noise", params={"k": 1}, storage_options=so)
            result.append(None)
        except BaseException as exc:  # noqa: BLE001 (reported by the assertion below)
            result.append(exc)

    t = threading.Thread(target=late_writer)
    t.start()
    while not any("waiting up to" in r.getMessage() for r in caplog.records) and t.is_alive():
        time.sleep(0.01)  # until the late writer has seen the lease held
    first.release()
    t.join()
    assert result == [None]
    assert float(cubemod.open_cube(url, so, group="noise")["v"].values.max()) == 5.0  # not rewritten with 9
