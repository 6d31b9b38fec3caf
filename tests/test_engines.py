"""Engine helpers on a real local Ray."""

from __future__ import annotations

import os

import numpy as np

from insarcloud.engines import started_actors


class _Holder:
    def ready(self) -> bool:
        return True


def test_started_actors_drops_the_ones_waiting_for_a_cpu(ray_local) -> None:
    ray = ray_local
    cls = ray.remote(num_cpus=1)(_Holder)
    other_pool = cls.remote()  # another frame's actor holds one of the session Ray's 2 CPUs
    ray.get(other_pool.ready.remote())
    try:
        mine = [cls.remote(), cls.remote()]  # one can start, the other waits for the held CPU
        kept = started_actors(mine, "ready", grace_s=2.0, label="test")
        assert len(kept) == 1 and ray.get(kept[0].ready.remote())
        # the dropped actor was killed, so its CPU reservation is gone: a new actor starts at once
        ray.kill(kept[0])
        again = cls.remote()
        ready, _ = ray.wait([again.ready.remote()], timeout=30)
        assert ready, "the CPU freed by the kept actor was not available"
        ray.kill(again)
    finally:
        ray.kill(other_pool)
    assert started_actors([], "ready") == []


def test_local_cluster_teardown_error_is_a_warning(monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    """A LocalCluster whose close() times out after the work is done: the run's result stands, one warning.

    The cluster and its worker processes are real; only the outcome of close() is forced: the real close runs
    (so no process is left), then a TimeoutError is raised, as close() does on a loaded machine.
    """
    import logging

    from distributed import LocalCluster

    from insarcloud import engines

    real_close = LocalCluster.close
    calls = []

    def close_then_time_out(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs.get("timeout"))
        real_close(self, *args, **kwargs)
        raise TimeoutError("Timed out waiting for workers to close")

    monkeypatch.setattr(LocalCluster, "close", close_then_time_out)
    caplog.set_level(logging.WARNING, logger="insarcloud.engines")
    with engines.dask_client(n_workers=1, memory_limit="1GiB") as client:
        result = client.submit(sum, [1, 2, 3]).result()
        scheduler = client.cluster.scheduler_address
    assert result == 6
    assert calls == [engines.CLOSE_TIMEOUT_S]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "LocalCluster" in r.getMessage()]
    assert len(warnings) == 1 and "TimeoutError" in warnings[0].getMessage()
    assert scheduler.startswith("tcp://")


def test_errors_of_the_work_still_propagate_through_a_failing_teardown(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import pytest
    from distributed import LocalCluster

    from insarcloud import engines

    real_close = LocalCluster.close

    def close_then_fail(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        real_close(self, *args, **kwargs)
        raise OSError("stream closed")

    monkeypatch.setattr(LocalCluster, "close", close_then_fail)
    with pytest.raises(ZeroDivisionError), engines.dask_client(n_workers=1, memory_limit="1GiB"):
        raise ZeroDivisionError("the work failed")  # the teardown's error does not replace it


def test_ray_shutdown_error_is_a_warning(ray_local, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    """engines.shutdown_ray on the real session Ray whose shutdown raises: a warning and False, no error.
    (The session's Ray stays up: shutdown is replaced, not called.)"""
    import logging

    from insarcloud import engines

    def broken_shutdown() -> None:
        raise RuntimeError("raylet did not answer")

    monkeypatch.setattr(ray_local, "shutdown", broken_shutdown)
    caplog.set_level(logging.WARNING, logger="insarcloud.engines")
    assert engines.shutdown_ray() is False
    assert any("Ray did not shut down cleanly" in r.getMessage() for r in caplog.records)
    assert ray_local.is_initialized()
    monkeypatch.undo()
    assert engines.close_quietly("nothing", lambda: None) is True


def test_area_config_sizes_the_local_dask_cluster() -> None:
    """engines.local_workers / local_threads_per_worker / local_memory_limit reach the LocalCluster of an area
    job (real processes)."""
    from insarcloud.config import parse_config
    from insarcloud.pipelines.area_job import engines

    cfg = parse_config({"area": {"name": "a", "bbox": [0.0, 0.0, 1.0, 1.0]}, "frames": ["106A_09048_000909"],
                        "source_url": "s3://src", "output_url": "s3://out",
                        "engines": {"local_workers": 1, "local_threads_per_worker": 2,
                                    "local_memory_limit": "640MiB"}})
    with engines(cfg, need_ray=False) as client:
        workers = client.scheduler_info()["workers"].values()
        assert [w["nthreads"] for w in workers] == [2]
        assert [w["memory_limit"] for w in workers] == [640 * 2**20]


def test_local_worker_memory_limit_is_fixed_not_machine_dependent() -> None:
    from insarcloud import engines

    gib = 2**30
    # the default is the stages' budget whatever the machine, while the machine has it
    assert engines.local_memory_limit(None, 2, total=64 * gib) == 4 * gib
    assert engines.local_memory_limit(None, 4, total=256 * gib) == 4 * gib
    # never more than the machine's share (a laptop), and explicit values are honoured below that
    assert engines.local_memory_limit(None, 4, total=8 * gib) == 2 * gib
    assert engines.local_memory_limit("1GiB", 2, total=64 * gib) == gib
    assert engines.local_memory_limit("64GiB", 2, total=64 * gib) == 32 * gib
    assert engines.local_memory_limit("auto", 2, total=64 * gib) == 32 * gib


def _page_faults_per_array() -> float:
    """Minor page faults per 2 MiB NumPy array allocated and freed in a loop (this process, this thread)."""
    import resource

    for _ in range(3):
        a = np.ones(2**18)
        del a
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        a = np.ones(2**18)
        del a
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 50


def test_local_cluster_workers_get_the_limit_and_the_malloc_thresholds_asked_for() -> None:
    """The memory_limit asked for; by default Dask's worker environment (its 64 KiB trim threshold: every page of a
    freed 2 MiB array is faulted in again), and with ``malloc_threshold`` glibc's thresholds set before the
    workers start, so a freed block-sized array is reused (engines.MALLOC_THRESHOLD, docs/scale.md)."""
    from insarcloud import engines

    with engines.dask_client(n_workers=1, memory_limit="768MiB") as client:
        limits = [w["memory_limit"] for w in client.scheduler_info()["workers"].values()]
        default = client.submit(_page_faults_per_array, pure=False).result()
    assert limits == [768 * 2**20]
    assert default > 400, default  # 512 pages of 4 KiB per array
    with engines.dask_client(n_workers=1, memory_limit="768MiB",
                             malloc_threshold=engines.MALLOC_THRESHOLD) as client:
        env = client.run(lambda: os.environ.get("MALLOC_MMAP_THRESHOLD_"))
        raised = client.submit(_page_faults_per_array, pure=False).result()
    assert list(env.values()) == [str(engines.MALLOC_THRESHOLD)]
    # reused: far below the 512 of a fresh mapping; not ~0, for the worker's other threads (heartbeats, the
    # event loop) fault pages of their own meanwhile: 11.3 per array measured in a full-suite run (session 13)
    assert raised < 64, f"{raised} page faults per 2 MiB array in a worker task"


def _faults_inside_and_after_task_heap() -> tuple[bool, float, float, float]:
    from insarcloud.core.allocator import task_heap

    with task_heap() as changed:
        inside = _page_faults_per_array()
    from insarcloud.core.allocator import _start_environ

    trim = float(_start_environ().get("MALLOC_TRIM_THRESHOLD_", "-1"))
    return changed, inside, _page_faults_per_array(), trim


def test_task_heap_in_a_dask_worker_and_restored_after() -> None:
    """``core.allocator.task_heap``: inside, a worker of Dask's default environment reuses a freed 2 MiB array from
    the heap; after it, Dask's thresholds are back (every array faulted in again); in this process (no variable
    set: glibc's dynamic thresholds) it changes nothing."""
    from insarcloud import engines
    from insarcloud.core.allocator import task_heap

    with engines.dask_client(n_workers=1, memory_limit="768MiB") as client:
        changed, inside, after, trim = client.submit(_faults_inside_and_after_task_heap, pure=False).result()
    assert changed and trim == 65536, (changed, trim)
    # 512 pages per array without it; the worker's other threads fault a few pages too (11 per array measured in
    # a full-suite run, < 1 alone)
    assert inside < 64, f"{inside} page faults per 2 MiB array inside task_heap"
    assert after > 400, f"{after} page faults per 2 MiB array after task_heap: Dask's setting not restored"
    from insarcloud.core.allocator import _start_environ

    if not {"MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"} & set(_start_environ()):
        with task_heap() as here:  # this process: the nanny wrote the variable into os.environ, glibc never read it
            assert not here


def test_malloc_environ() -> None:
    from insarcloud import engines

    assert engines.malloc_environ(None) == engines.malloc_environ(0) == {}
    assert engines.malloc_environ(2**22) == {"MALLOC_TRIM_THRESHOLD_": "4194304", "MALLOC_MMAP_THRESHOLD_": "4194304"}


def test_area_config_memory_limit_is_validated() -> None:
    import pytest

    from insarcloud.config import EnginesConfig
    from insarcloud.errors import ConfigError

    assert EnginesConfig(local_memory_limit="3GiB").local_memory_limit == "3GiB"
    with pytest.raises((ConfigError, ValueError), match="local_memory_limit"):
        EnginesConfig(local_memory_limit="plenty")


def test_frames_in_flight_are_set_by_worker_memory_not_frame_count(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Issue 20: the area job runs as many frames at once as the workers' memory gives room for."""
    from insarcloud.config import parse_config
    from insarcloud.pipelines import area_job
    from insarcloud.pipelines.area_job import engines, frames_in_flight

    monkeypatch.setattr(area_job, "FRAME_CLUSTER_MEMORY", 256 * 2**20)  # real workers small enough for any CI box
    cfg = parse_config({"area": {"name": "a", "bbox": [0.0, 0.0, 1.0, 1.0]}, "frames": ["106A_09048_000909"],
                        "source_url": "s3://src", "output_url": "s3://out",
                        "engines": {"local_workers": 2, "local_memory_limit": "640MiB"}})
    with engines(cfg, need_ray=False) as client:
        assert frames_in_flight(client, 241) == 4  # 2 workers x 2 frames' room, not 241 threads
        assert frames_in_flight(client, 3) == 3
        assert frames_in_flight(client, 241, configured=7) == 7
    small = parse_config({**cfg.model_dump(mode="json", exclude_none=True),
                          "engines": {"local_workers": 1, "local_memory_limit": "200MiB"}})
    with engines(small, need_ray=False) as client:
        assert frames_in_flight(client, 241) == 1  # less than one frame's room still runs, one at a time
