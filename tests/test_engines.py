"""Engine helpers on a real local Ray."""

from __future__ import annotations

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
