"""One writer per cube, end to end: real `insarcloud ingest` processes on the real frame crop, a real local S3
endpoint (moto's server) and real Dask worker processes (the session's cluster, shared by the CLIs through
``--scheduler`` so that a killed CLI leaves no workers behind).

Processes are stopped at a recorded point (``INSARCLOUD_FAULT_STOP_AT=lease-acquired``: the process stops
itself right after its lease object exists), never after a guessed number of seconds; the only waits are
for a TTL the test sets itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from insarcloud.io import open_cube
from insarcloud.io.ingest import ingest_frame
from insarcloud.io.ingest_log import read_runs
from insarcloud.io.lease import read_lease

FRAME = "106A_09048_000909"
REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _cmd(src: str, cube: str, scheduler: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "insarcloud.cli", "ingest", src, "--frame", FRAME, "--cube", cube,
            "--chunk", "128", "--scheduler", scheduler, *extra]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def _stopped_at_lease(cmd: list[str], **env: str) -> subprocess.Popen:
    """Start ``cmd`` and return once it has stopped itself with its lease held."""
    proc = subprocess.Popen(cmd, env=_env(INSARCLOUD_FAULT_STOP_AT="lease-acquired", **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if line.startswith("insarcloud-fault-point lease-acquired"):
            return proc
    proc.wait()
    raise AssertionError(f"the ingest exited ({proc.returncode}) before taking its lease")


@pytest.fixture()
def reference(licsar_frame_dir, bucket, storage_options, dask_client):
    """The cube one undisturbed run makes."""
    src = str(licsar_frame_dir.parent.parent)
    url = f"{bucket}/reference/{FRAME}.zarr"
    ingest_frame(src, FRAME, url, storage_options=storage_options, chunk=128, client=dask_client)
    return src, open_cube(url, storage_options)


def _assert_same_cube(url: str, storage_options: dict, ref) -> None:
    ds = open_cube(url, storage_options)
    assert [str(p) for p in ds.pair.values] == [str(p) for p in ref.pair.values]
    np.testing.assert_array_equal(ds.primary.values, ref.primary.values)
    np.testing.assert_array_equal(ds.secondary.values, ref.secondary.values)
    np.testing.assert_array_equal(ds.date.values, ref.date.values)
    assert bool(ds.ingested.all()) and ds.sizes == ref.sizes
    for name in ("phase", "coh", "hgt", "los_u"):
        if name in ref:
            np.testing.assert_array_equal(ds[name].values, ref[name].values)
    full = open_cube(url, storage_options, complete_only=False)
    assert full.sizes["pair"] == ref.sizes["pair"]  # no duplicated or half-appended pair


def test_two_ingests_started_together_leave_one_runs_cube(reference, bucket, storage_options, dask_client):
    """Both wait for the lease: one writes, the other then finds every pair done; the cube equals one run."""
    src, ref = reference
    cube = f"{bucket}/cubes/{FRAME}.zarr"
    cmd = _cmd(src, cube, dask_client.scheduler.address, "--wait-lease", "300")
    procs = [subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=400) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    _assert_same_cube(cube, storage_options, ref)
    runs = read_runs(cube, storage_options)  # one record per run: the writer's and the one that waited
    assert len(runs) == 2, runs
    assert read_lease(cube, "root", storage_options) is None


def test_second_ingest_refused_naming_the_owner(reference, bucket, storage_options, dask_client):
    src, ref = reference
    cube = f"{bucket}/cubes/{FRAME}.zarr"
    first = _stopped_at_lease(_cmd(src, cube, dask_client.scheduler.address), INSARCLOUD_LEASE_TTL_S="600")
    try:
        owner = read_lease(cube, "root", storage_options)["owner"]
        assert f"/{first.pid}/" in owner
        second = subprocess.run(_cmd(src, cube, dask_client.scheduler.address), env=_env(), capture_output=True,
                                text=True, timeout=300)
        assert second.returncode != 0
        assert owner in second.stderr and "expires at" in second.stderr and cube in second.stderr
        assert read_lease(cube, "root", storage_options)["owner"] == owner  # the loser took nothing
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    _assert_same_cube(cube, storage_options, ref)
    assert read_lease(cube, "root", storage_options) is None


def test_killed_owner_then_resume(reference, bucket, storage_options, dask_client):
    """SIGKILL while holding the lease: the next run sees the owner process gone and completes at once."""
    src, ref = reference
    cube = f"{bucket}/cubes/{FRAME}.zarr"
    first = _stopped_at_lease(_cmd(src, cube, dask_client.scheduler.address), INSARCLOUD_LEASE_TTL_S="600")
    os.kill(first.pid, signal.SIGKILL)
    first.communicate()
    assert read_lease(cube, "root", storage_options)["pid"] == first.pid  # the crash left its lease behind
    second = subprocess.run(_cmd(src, cube, dask_client.scheduler.address), env=_env(), capture_output=True,
                            text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "took over the lease" in second.stderr
    _assert_same_cube(cube, storage_options, ref)


def test_hung_owner_lease_expires_then_resume(reference, bucket, storage_options, dask_client):
    """An owner that stops renewing (process frozen, still alive) loses its lease after its TTL (2 s here);
    a run that waits takes it over then and completes."""
    src, ref = reference
    cube = f"{bucket}/cubes/{FRAME}.zarr"
    first = _stopped_at_lease(_cmd(src, cube, dask_client.scheduler.address), INSARCLOUD_LEASE_TTL_S="2")
    try:
        second = subprocess.run(_cmd(src, cube, dask_client.scheduler.address, "--wait-lease", "120"), env=_env(),
                                capture_output=True, text=True, timeout=300)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.communicate()
    assert second.returncode == 0, second.stderr
    assert "took over the lease" in second.stderr and "expired" in second.stderr
    _assert_same_cube(cube, storage_options, ref)
    assert read_lease(cube, "root", storage_options) is None
