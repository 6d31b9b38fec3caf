"""Container images, checked statically (the Dockerfiles are parsed and their rules asserted: pinned bases,
non-root user, no secrets, the right torch, every package from the lock file). `make image-test`
(deploy/image_test.py) builds the CPU image for real with podman and runs the chart's pods from it. The
scripts the images carry (wait_for_clusters.py, run_area_job.py) are exercised here for real."""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
sys.path.insert(0, str(DEPLOY))
import wait_for_clusters  # noqa: E402


def parse_dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        buf += (" " if buf else "") + line.rstrip("\\").strip()
        if not line.endswith("\\"):
            instr, _, args = buf.partition(" ")
            out.append((instr.upper(), args.strip()))
            buf = ""
    assert not buf, f"{path}: dangling line continuation"
    return out


def stages(instrs: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for ins in instrs:
        if ins[0] == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


IMAGES = {"cpu": DEPLOY / "Dockerfile.cpu", "gpu": DEPLOY / "Dockerfile.gpu"}
PINNED = re.compile(r"^[a-z0-9./_-]+(:[A-Za-z0-9._-]*\d+\.\d+\.\d+[A-Za-z0-9._-]*)?(@sha256:[a-f0-9]{64})?$")
SECRETY = re.compile(r"(SECRET|PASSWORD|TOKEN|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL)", re.IGNORECASE)


@pytest.mark.parametrize("kind", list(IMAGES))
def test_dockerfile_rules(kind):
    instrs = parse_dockerfile(IMAGES[kind])
    st = stages(instrs)
    assert len(st) >= 2, "build stage(s) and a slim runtime stage"
    # FROM ${BASE_IMAGE}: the public default is the ARG before the first FROM (a local test may override it)
    base_args = dict(a.split("=", 1) for i, a in instrs[: instrs.index(st[0][0])] if i == "ARG" and "=" in a)
    assert set(base_args) == {"BASE_IMAGE"}, base_args
    aliases: set[str] = set()
    for stage in st:
        words = stage[0][1].split()
        image = words[0]
        if image not in aliases:  # a stage built on an earlier one inherits its base
            assert image == "${BASE_IMAGE}", f"{kind}: every stage starts FROM ${{BASE_IMAGE}} or an earlier stage"
            image = base_args["BASE_IMAGE"]
            assert PINNED.match(image) and ("@sha256:" in image or re.search(r":\S*\d+\.\d+\.\d+", image)), (
                f"{kind}: base image {image!r} is not pinned to an exact version or digest"
            )
            assert not image.endswith(":latest")
        if len(words) == 3 and words[1].upper() == "AS":
            aliases.add(words[2])
    runtime = st[-1]
    users = [a for i, a in runtime if i == "USER"]
    assert users, f"{kind}: the runtime stage sets no USER (it would run as root)"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{kind}: USER {users[-1]!r} must be a numeric non-root uid"
    # the chart's runAsUser is the same uid, so runAsNonRoot can be verified by the kubelet
    values = yaml.safe_load((REPO / "helm/insarcloud/values.yaml").read_text())
    assert int(uid) == values["podSecurityContext"]["runAsUser"]
    # the last USER comes after every RUN of the runtime stage (nothing runs as root afterwards)
    last_user = max(n for n, (i, _) in enumerate(runtime) if i == "USER")
    assert all(n < last_user for n, (i, _) in enumerate(runtime) if i == "RUN")

    for instr, args in instrs:
        if instr in ("ENV", "ARG", "LABEL"):
            for token in shlex.split(args):
                key = token.split("=", 1)[0]
                assert not SECRETY.search(key), f"{kind}: {instr} {key} looks like a credential"
        if instr in ("COPY", "ADD"):
            srcs = [a for a in shlex.split(args) if not a.startswith("--")][:-1]
            for src in srcs:
                assert not re.search(r"(\.env$|\.aws|credentials|\.pem$|\.key$|id_rsa)", src), (kind, src)
                assert src != ".", f"{kind}: COPY . would send the whole context (and any secret in it)"
        if instr == "RUN":
            assert "AWS_SECRET" not in args and "--password" not in args

    text = " ".join(a for i, a in instrs if i == "RUN")
    assert '--index-url "$TORCH_INDEX_URL" torch' in text, f"{kind}: torch must come from the PyTorch wheel index"
    index = re.search(r"ARG TORCH_INDEX_URL=(\S+)", IMAGES[kind].read_text())
    if kind == "cpu":
        assert index and index.group(1) == "https://download.pytorch.org/whl/cpu"
    else:
        assert index and index.group(1) == "https://download.pytorch.org/whl/${TORCH_CUDA}"
        cuda = re.search(r"ARG TORCH_CUDA=(cu\d+)", IMAGES[kind].read_text())
        assert cuda, "gpu: TORCH_CUDA must default to a pinned CUDA variant"
        assert "torch.version.cuda" in text  # the build fails if the wheel is a CPU one
    assert "torch.__version__.startswith('2.13.0')" in text
    # every pip install that resolves dependencies is constrained by the one lock file
    installs = re.findall(r"pip install ([^&]+)", text)
    assert len(installs) == 4 and len(st) == 3, installs
    for args in installs:
        assert "-c constraints.txt" in args or args.strip().startswith("--no-deps"), args
    # the runtime stage adds only the package's own wheel to the locked dependencies: nothing resolved there
    assert [a for i, a in runtime if i == "RUN" and "pip install" in a][0].count("--no-deps --no-index") == 1
    assert ("COPY", "constraints.txt pyproject.toml ./") in st[0]
    # runtime + ml requirements come from pyproject itself (no second list to drift), the package with its driver
    assert "p['dependencies'] + p['optional-dependencies']['ml']" in text
    # the package is a wheel of its own stage: a code change does not rebuild the dependency layers
    assert ("COPY", "insarcloud ./insarcloud") in st[1] and st[1][0][1] == "build AS wheel" and "pip check" in text
    # the scripts the chart runs are in the image where the chart calls them
    assert ("COPY", "deploy/wait_for_clusters.py deploy/run_area_job.py /opt/insarcloud/") in runtime


@pytest.mark.parametrize("kind", list(IMAGES))
def test_dockerignore_sends_only_what_the_image_needs(kind):
    lines = [ln.strip() for ln in (DEPLOY / f"Dockerfile.{kind}.dockerignore").read_text().splitlines()]
    rules = [ln for ln in lines if ln and not ln.startswith("#")]
    assert rules[0] == "*", "deny everything first"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    copied = set()
    for instr, args in parse_dockerfile(IMAGES[kind]):
        if instr == "COPY" and "--from" not in args:
            copied |= {s.rstrip("/") for s in shlex.split(args)[:-1]}
    assert copied <= allowed, copied - allowed
    assert {"**/.env", "**/*.pem", "**/*.key"} <= set(rules)


def test_dockerfile_parser_catches_violations(tmp_path):
    bad = tmp_path / "Dockerfile.cpu"
    bad.write_text("ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE} AS build\nRUN true\nFROM ${BASE_IMAGE}\n")
    IMAGES_BAD = {"cpu": bad}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys.modules[__name__], "IMAGES", IMAGES_BAD)
        with pytest.raises(AssertionError, match="not pinned"):
            test_dockerfile_rules("cpu")
        bad.write_text("ARG BASE_IMAGE=python:3.11.13-slim\nFROM ${BASE_IMAGE} AS build\nFROM python:3.11.13-slim\n")
        with pytest.raises(AssertionError, match="BASE_IMAGE"):
            test_dockerfile_rules("cpu")
        bad.write_text(
            "ARG BASE_IMAGE=python:3.11.13-slim\nFROM ${BASE_IMAGE} AS build\nFROM ${BASE_IMAGE}\nRUN true\n"
        )
        with pytest.raises(AssertionError, match="sets no USER"):
            test_dockerfile_rules("cpu")
        bad.write_text(
            "ARG BASE_IMAGE=python:3.11.13-slim\nFROM ${BASE_IMAGE} AS b\nFROM ${BASE_IMAGE}\nUSER 10001\n"
            "ENV DB_PASSWORD=x\n"
        )
        with pytest.raises(AssertionError, match="looks like a credential"):
            test_dockerfile_rules("cpu")


# --------------------------------------------------------------------------------------------------
# deploy/wait_for_clusters.py (the job's init container)


def test_parse_target():
    assert wait_for_clusters.parse_target("demo-dask-scheduler:8786") == ("demo-dask-scheduler", 8786)
    for bad in ("nohost", ":8786", "host:", "host:99999", "host:port"):
        with pytest.raises(ValueError, match="host:port"):
            wait_for_clusters.parse_target(bad)


def test_wait_succeeds_when_a_server_starts_late_and_times_out_otherwise(capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def listen_later():
        time.sleep(0.5)
        server.bind(("127.0.0.1", port))
        server.listen()

    t = threading.Thread(target=listen_later)
    t.start()
    try:
        t0 = time.monotonic()
        assert wait_for_clusters.wait([("127.0.0.1", port)], [], timeout=20, interval=0.1)
        assert time.monotonic() - t0 >= 0.4
    finally:
        t.join()
        server.close()
    # the status line is best effort: outside a pod there is no token, and it says so instead of failing
    assert wait_for_clusters.resource_status("ray.io/v1/rayclusters/x", sa_dir=Path("/nonexistent")).startswith(
        "unavailable"
    )
    assert not wait_for_clusters.wait([("127.0.0.1", port)], ["ray.io/v1/rayclusters/x"], timeout=0.3, interval=0.1)
    assert "timed out waiting for: 127.0.0.1" in capsys.readouterr().err


def test_wait_script_cli_exit_codes():
    script = DEPLOY / "wait_for_clusters.py"
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        ok = subprocess.run(
            [sys.executable, str(script), "--tcp", f"127.0.0.1:{port}", "--timeout", "10"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([sys.executable, str(script), "--tcp", "nohost"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "host:port" in bad.stderr
    late = subprocess.run(
        [sys.executable, str(script), "--tcp", f"127.0.0.1:{port}", "--timeout", "0.2", "--interval", "0.1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert late.returncode == 1


def test_local_stack_never_stops_processes_by_name():
    # Several people share a machine: the script may only stop what it started, by PID.
    text = (DEPLOY / "local_stack.sh").read_text()
    code = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    for forbidden in ("pkill", "killall", "ray stop", "pgrep"):
        assert forbidden not in code, forbidden
    assert re.search(r"kill -TERM -- \"-\$pid\"", code) and "setsid" in code
    out = subprocess.run(["bash", "-n", str(DEPLOY / "local_stack.sh")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


# --------------------------------------------------------------------------------------------------
# deploy/run_area_job.py (the area job's entrypoint: wait, run, delete the job's Dask cluster)

import run_area_job  # noqa: E402


def test_run_area_job_passes_the_exit_status_and_cleans_up_even_on_failure(tmp_path):
    script = str(DEPLOY / "run_area_job.py")
    ok = subprocess.run([sys.executable, script, "--", sys.executable, "-c", "print('driver ran')"],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "driver ran" in ok.stdout, ok.stderr
    failed = subprocess.run(
        [sys.executable, script, "--delete", "kubernetes.dask.org/v1/daskclusters/demo-dask", "--",
         sys.executable, "-c", "raise SystemExit(3)"],
        capture_output=True, text=True, timeout=60,
    )
    # the driver's status wins; the delete was attempted (outside a pod there is no token: said so)
    assert failed.returncode == 3
    assert "could not delete kubernetes.dask.org/v1/daskclusters/demo-dask" in failed.stdout
    assert subprocess.run([sys.executable, script, "insarcloud"], capture_output=True, timeout=60).returncode == 2


def test_run_area_job_api_paths_and_a_real_delete_request():
    assert run_area_job.api_url("core/v1/services/s", "insar", "https://api") == (
        "https://api/api/v1/namespaces/insar/services/s"
    )
    assert run_area_job.api_url("apps/v1/deployments/d", "insar", "https://api") == (
        "https://api/apis/apps/v1/namespaces/insar/deployments/d"
    )
    # a real HTTPS-less request against a local server standing in for the API: method, path, token, body
    import http.server
    import json

    seen = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_DELETE(self):  # noqa: N802
            seen["path"], seen["auth"] = self.path, self.headers["Authorization"]
            seen["body"] = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.handle_request, daemon=True)
    t.start()
    try:
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            sa = Path(d)
            (sa / "token").write_text("tok\n")
            (sa / "namespace").write_text("insar")
            (sa / "ca.crt").write_text("")
            # ssl context creation with an empty CA file fails before any request: use plain HTTP by
            # patching the context factory for this call only
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(run_area_job.ssl, "create_default_context", lambda **_: None)
                line = run_area_job.delete("kubernetes.dask.org/v1/daskclusters/demo-dask", sa_dir=sa,
                                           api=f"http://127.0.0.1:{srv.server_port}")
        t.join(10)
    finally:
        srv.server_close()
    assert line == "deleted kubernetes.dask.org/v1/daskclusters/demo-dask (HTTP 200)", line
    assert seen["path"] == "/apis/kubernetes.dask.org/v1/namespaces/insar/daskclusters/demo-dask"
    assert seen["auth"] == "Bearer tok" and seen["body"]["propagationPolicy"] == "Background"
