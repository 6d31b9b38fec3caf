"""Reproduce issue 19's image bugs on the OLD Dockerfile (before the fix), with podman.

    python deploy/old_image_bugs.py [--rev ac454f9] [--base IMAGE] [--json OUT]

Builds ``REV:deploy/Dockerfile.cpu`` from ``git archive REV`` (its own .dockerignore) exactly as written, with
two substitutions this machine needs and that change nothing the bugs depend on: the FROM image (a Debian
bookworm Python 3.11 base made with mmdebstrap, as `make image-test` does) and the torch index (the machine's
CPU wheel through find-links). Then it runs, inside the old image:

1. ``insarcloud run --help``: the chart's Job command; expected "invalid choice: 'run'" (the driver's
   top-level ``pipelines/`` was not in the build context, and cli.py dropped the sub-command silently);
2. ``insarcloud noise --help`` and ``import insarcloud.noise``: expected "invalid choice" and
   ``No module named 'skimage'`` (scikit-image lived in the test extra only);
3. ``pip freeze`` against constraints.txt: every version the old image got differently from the tested venv.

Exit 0 when both bugs reproduce; every image it made is removed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lock  # noqa: E402
from image_test import CONF, REPO, ImageTest, log, pip_build_config, podman, sh  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", default="ac454f9", help="a commit with the old Dockerfile and top-level pipelines/")
    ap.add_argument("--base", help="an existing base image (default: make one with mmdebstrap, removed after)")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    os.environ.setdefault("CONTAINERS_CONF", str(CONF))
    it = ImageTest(argparse.Namespace(base=a.base, keep_images=False, keep_logs=False, job_timeout=0, json=None))
    it.tag = f"localhost/insarcloud-old:{a.rev}-{os.getpid()}"
    result: dict = {"rev": a.rev}
    t0 = time.monotonic()
    try:
        it.preflight()
        it.make_base()
        ctx = Path(tempfile.mkdtemp(prefix="insarcloud-old-image-"))
        sh(["sh", "-c", f"git -C {REPO} archive {a.rev} | tar -x -C {ctx}"])
        dockerfile = (ctx / "deploy" / "Dockerfile.cpu").read_text()
        dockerfile = re.sub(r"^FROM python:3\.11\.13-slim-bookworm", f"FROM {it.base}", dockerfile, flags=re.M)
        mounts, local_torch = pip_build_config(it.tmp)
        if local_torch:
            dockerfile = dockerfile.replace("--index-url https://download.pytorch.org/whl/cpu",
                                            "--index-url https://pypi.org/simple")
        (ctx / "deploy" / "Dockerfile.cpu.local").write_text(dockerfile)
        cmd = ["podman", "build", "-f", "deploy/Dockerfile.cpu.local", "--ignorefile",
               "deploy/Dockerfile.cpu.dockerignore", "--network", "host", *mounts, "-t", it.tag, str(ctx)]
        log("building the old Dockerfile: " + " ".join(cmd[:6]) + " ...")
        with (it.tmp / "build.log").open("w") as f:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ctx, timeout=3600).returncode
        it.note_build(it.tmp / "build.log")
        result["build_seconds"] = round(time.monotonic() - t0, 1)
        if rc != 0:
            raise RuntimeError("old image build failed:\n" + (it.tmp / "build.log").read_text()[-3000:])

        def inside(*c: str) -> subprocess.CompletedProcess:
            return podman("run", "--rm", "--network", "none", it.tag, *c, check=False, quiet=True)

        run = inside("insarcloud", "run", "--help")
        noise = inside("insarcloud", "noise", "--help")
        imp = inside("python", "-c", "import insarcloud.noise")
        result["run_help"] = {"rc": run.returncode, "stderr": run.stderr.strip().splitlines()[-1:]}
        result["noise_help"] = {"rc": noise.returncode, "stderr": noise.stderr.strip().splitlines()[-1:]}
        result["import_noise"] = {"rc": imp.returncode, "stderr": imp.stderr.strip().splitlines()[-1:]}
        result["bug_run_missing"] = run.returncode != 0 and "invalid choice: 'run'" in run.stderr
        result["bug_noise_missing"] = (noise.returncode != 0 and "invalid choice: 'noise'" in noise.stderr
                                       and "No module named 'skimage'" in imp.stderr)
        freeze = lock.read_freeze(inside("pip", "freeze").stdout)
        pins = lock.read_lock(lock.LOCK.read_text())
        result["versions_differing_from_the_lock"] = sorted(
            f"{n}: image {freeze[n]}, lock {v}" for n, v in pins.items() if n in freeze and lock.pin(freeze[n]) != v
        )
        log(json.dumps(result, indent=2))
        ok = result["bug_run_missing"] and result["bug_noise_missing"]
        log("both bugs REPRODUCED on the old Dockerfile" if ok else "NOT reproduced")
        return 0 if ok else 1
    finally:
        it.cleanup()
        result["seconds"] = round(time.monotonic() - t0, 1)
        if a.json:
            Path(a.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())
