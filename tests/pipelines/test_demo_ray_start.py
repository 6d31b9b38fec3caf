"""The demo's local-Ray start: a try that fails stops the processes it started (issue 23: at load 37-40 two
timed-out tries left their GCS, dashboard and log monitor running for the rest of the demo)."""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest


def test_a_failed_try_stops_what_it_started_and_the_last_error_is_raised(monkeypatch):
    import insarcloud.engines as engines
    from insarcloud.pipelines import demo

    keep = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # started before: kept
    started: list[subprocess.Popen] = []

    def failing_init_ray(*args, **kwargs):
        # what ray.init leaves when its node times out: a child process running, then the exception
        started.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
        raise Exception(f"The current node timed out during startup (try {len(started)})")

    monkeypatch.setattr(engines, "init_ray", failing_init_ray)
    monkeypatch.setattr(engines, "ray_address", lambda address: None)
    try:
        with pytest.raises(Exception, match=r"timed out during startup \(try 2\)"):
            demo.start_local_ray(tries=2)
        assert len(started) == 2
        for proc in started:
            assert proc.wait(timeout=15) is not None  # stopped (and reaped here)
        assert psutil.pid_exists(keep.pid) and keep.poll() is None
    finally:
        keep.kill()
        keep.wait()
        for proc in started:
            if proc.poll() is None:
                proc.kill()
