"""Inside the built CPU image (podman): every sub-command answers --help, the lock file, the tested venv
and the image agree on every pinned version, the image runs as the chart's non-root uid.

These need an image: `make image-test` builds one and runs this file with INSARCLOUD_TEST_IMAGE=<tag>. Without
it they are skipped, and say so (-ra). The lock-vs-venv half of the version check runs always
(test_lock_matches_the_venv)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "deploy"))
import lock  # noqa: E402

IMAGE = os.environ.get("INSARCLOUD_TEST_IMAGE", "")
needs_image = pytest.mark.skipif(
    not IMAGE or not shutil.which("podman"),
    reason="no image: `make image-test` builds one and sets INSARCLOUD_TEST_IMAGE (needs podman)",
)


def podman_run(*cmd: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", "run", "--rm", "--network", "none", IMAGE, *cmd],
                          capture_output=True, text=True, timeout=timeout)


def host_subcommands() -> list[str]:
    """The sub-commands this checkout's CLI registers (the image must have every one)."""
    from insarcloud.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return sorted(sub.choices)


def test_lock_matches_the_venv():
    pins = lock.read_lock(lock.LOCK.read_text())
    installed = {lock.canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    assert lock.disagreements(pins, installed) == []
    # and the lock is complete: nothing insarcloud[ml,test] pulls in is unpinned
    assert set(lock.closure()) == set(pins)
    assert pins["scikit-image"] and pins["jinja2"] and pins["torch"] == "2.13.0"


def test_lock_check_reports_a_disagreement(tmp_path):
    pins = {"dask": "2026.7.1", "torch": "2.13.0", "ray": "2.60.0"}
    assert lock.disagreements(pins, {"dask": "2026.8.0", "torch": "2.13.0+cpu"}) == [
        "dask: pinned 2026.7.1, installed 2026.8.0",
        "ray: pinned 2.60.0, not installed",
    ]
    freeze = tmp_path / "freeze.txt"
    freeze.write_text("dask==2026.8.0\ntorch==2.13.0+cpu\n-e git+https://x#egg=y\n")
    assert lock.read_freeze(freeze.read_text()) == {"dask": "2026.8.0", "torch": "2.13.0+cpu"}
    with pytest.raises(ValueError, match="not an exact pin"):
        lock.read_lock("dask>=2026\n")


@needs_image
def test_every_subcommand_helps_inside_the_image():
    names = host_subcommands()
    assert "run" in names and "noise" in names  # the two the old image lacked
    script = "set -e; " + "; ".join(f"insarcloud {n} --help >/dev/null && echo ok {n}" for n in names)
    out = podman_run("sh", "-c", "insarcloud --version 2>/dev/null || insarcloud --help >/dev/null && echo top; "
                     + script)
    assert out.returncode == 0, out.stderr[-3000:]
    assert [ln.split()[1] for ln in out.stdout.splitlines() if ln.startswith("ok ")] == names


@needs_image
def test_lock_venv_and_image_agree():
    freeze = podman_run("pip", "freeze", "--all")
    assert freeze.returncode == 0, freeze.stderr
    pins = lock.read_lock(lock.LOCK.read_text())
    image = lock.read_freeze(freeze.stdout)
    # the image holds insarcloud[ml] (runtime + models), not the test tools: that part of the lock, all of it
    runtime = lock.closure(extras=("ml",))
    assert len(runtime) > 100 and {"dask", "distributed", "ray", "scikit-image", "torch"} <= set(runtime)
    assert lock.disagreements({k: pins[k] for k in runtime}, image) == []
    assert set(image) - set(pins) <= {"pip", "setuptools", "wheel"}, "an unpinned package in the image"
    venv = {lock.canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    # every pinned package of the image has one version in all three (torch's +cpu label aside)
    for name in runtime:
        assert lock.pin(image[name]) == lock.pin(venv[name]) == pins[name], name


@needs_image
def test_image_runs_as_the_charts_uid_with_its_scripts():
    out = podman_run("sh", "-c", "id -u; ls /opt/insarcloud; python -c 'import insarcloud.pipelines.area_job'")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert lines[0] == "10001" and {"run_area_job.py", "wait_for_clusters.py"} <= set(lines[1:])
