"""Progress lines: captured from a non-TTY run of a stage command (a real subprocess, real Dask workers)."""

from __future__ import annotations

import io as _io
import os
import re
import subprocess
import sys
from pathlib import Path

from insarcloud import io
from insarcloud.progress import Reporter, format_line

REPO = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^insarcloud progress: (?P<label>.+?): (?P<done>\d+)/(?P<total>\d+) (?P<unit>\w+) \((?P<pct>\d+)%\)")


def _lines(text: str) -> list[re.Match]:
    return [m for m in (LINE.match(ln) for ln in text.splitlines()) if m]


def test_stage_command_prints_progress_lines_when_not_a_tty(tmp_path):
    from insarcloud.simulate import simulate_frame

    sim = simulate_frame(shape=(32, 32), n_epochs=8, seed=3, min_neighbours=3, max_neighbours=3)
    url = str(tmp_path / "cube.zarr")
    io.write_new_cube(io.make_frame_dataset(frame=sim.frame_id, pairs=sim.pairs, lat=sim.lat, lon=sim.lon,
                                            phase=sim.phase, coh=sim.coherence_est, unw=sim.unw), url, chunk=8)
    env = {**os.environ, "PYTHONPATH": str(REPO), "INSARCLOUD_PROGRESS_SECONDS": "0"}
    env.pop("INSARCLOUD_DASK_SCHEDULER", None)
    out = subprocess.run([sys.executable, "-m", "insarcloud.cli", "invert", url, "--weights", "coherence",
                          "--workers", "1"], capture_output=True, text=True, env=env, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [m for m in _lines(out.stderr) if m["label"].startswith("invert ")]
    assert len(lines) >= 2, out.stderr[-3000:]
    assert lines[0]["label"] == "invert cube ts_coherence" and lines[0]["unit"] == "tasks"
    done = [int(m["done"]) for m in lines]
    total = int(lines[-1]["total"])
    assert done == sorted(done) and done[0] < total and done[-1] == total and total > 16  # 16 chunks at least
    assert lines[-1]["pct"] == "100"
    assert "insarcloud progress" not in out.stdout  # stdout keeps the command's result only


def test_reporter_cadence_and_counts():
    buf = _io.StringIO()
    with Reporter("qc F", 10, "blocks", stream=buf, interval=3600.0, tty=False) as r:
        for _ in range(10):
            r.update(1)
    got = [(int(m["done"]), int(m["total"])) for m in _lines(buf.getvalue())]
    assert got == [(0, 10), (10, 10)]  # 0% and 100%, nothing between within the interval
    buf = _io.StringIO()
    with Reporter("qc F", 4, "blocks", stream=buf, interval=0.0, tty=False) as r:
        for _ in range(4):
            r.update(1)
        r.note("a frame finished")
    assert [int(m["done"]) for m in _lines(buf.getvalue())] == [0, 1, 2, 3, 4]
    assert "insarcloud progress: qc F: a frame finished" in buf.getvalue()
    buf = _io.StringIO()
    with Reporter("stopped", 5, stream=buf, interval=3600.0, tty=False) as r:
        r.update(2)  # an error stops the work here: the last line says where
    assert [int(m["done"]) for m in _lines(buf.getvalue())] == [0, 2]


def test_local_scheduler_counts_tasks(capsys, monkeypatch):
    import dask
    import dask.array as da

    from insarcloud.progress import compute

    monkeypatch.setenv("INSARCLOUD_PROGRESS_SECONDS", "0")
    x = da.ones((8, 8), chunks=2).sum()
    with dask.config.set(scheduler="threads"):  # the local path, even when another test's Client is the default
        assert compute(x, "sum") == 64
    lines = _lines(capsys.readouterr().err)
    done = [int(m["done"]) for m in lines]
    assert done[0] == 0 and done[-1] == int(lines[-1]["total"]) >= 16 and done == sorted(done)


def test_format_line_rate_and_eta():
    line = format_line("unwrap F", 30, 120, "pairs", 60.0)
    assert line == "insarcloud progress: unwrap F: 30/120 pairs (25%), 0.5 pairs/s, ETA 3m00s, elapsed 1m00s"
