"""The area job's entrypoint on the cluster (stdlib only; copied into both images).

    python /opt/insarcloud/run_area_job.py [--wait HOST:PORT ...] [--delete PATH ...] -- insarcloud run CONFIG

1. waits until each --wait address accepts TCP connections (the release's Dask scheduler);
2. runs the command, its output passed straight through (so `kubectl logs -f` follows it) and SIGTERM /
   SIGINT forwarded to it;
3. whatever the outcome, deletes each --delete object 'group/version/plural/name' of the pod's namespace
   (group "core" for /api/v1) through the Kubernetes API with the pod's own token. The chart names the
   release's Dask cluster here when `dask.lifecycle=job`, so its workers do not outlive the job (KubeRay
   tears the Ray cluster down itself: RayJob.shutdownAfterJobFinishes). The Role allows exactly these deletes.

Exits with the command's exit status (the delete's failures are logged, never hide the job's result).
"""

from __future__ import annotations

import argparse
import json
import signal
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wait_for_clusters import SA_DIR, parse_target, wait  # noqa: E402  (copied beside this file)


def api_url(path: str, namespace: str, api: str) -> str:
    group, version, plural, name = path.split("/")
    base = f"{api}/api/{version}" if group == "core" else f"{api}/apis/{group}/{version}"
    return f"{base}/namespaces/{namespace}/{plural}/{name}"


def delete(path: str, sa_dir: Path = SA_DIR, api: str = "https://kubernetes.default.svc") -> str:
    """DELETE one namespaced object (background propagation: its pods go with it). Returns a log line."""
    try:
        token = (sa_dir / "token").read_text().strip()
        namespace = (sa_dir / "namespace").read_text().strip()
        ctx = ssl.create_default_context(cafile=str(sa_dir / "ca.crt"))
        body = json.dumps({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})
        req = urllib.request.Request(api_url(path, namespace, api), data=body.encode(), method="DELETE",
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
            return f"deleted {path} (HTTP {resp.status})"
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return f"{path} already gone"
        return f"could not delete {path}: HTTP {exc.code}"
    except Exception as exc:  # noqa: BLE001 - cleanup is best effort; the job's status is what counts
        return f"could not delete {path}: {type(exc).__name__}: {exc}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        print("usage: run_area_job.py [--wait HOST:PORT] [--delete PATH] -- COMMAND ...", file=sys.stderr)
        return 2
    cut = argv.index("--")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wait", action="append", default=[], type=parse_target, metavar="HOST:PORT")
    ap.add_argument("--wait-timeout", type=float, default=900.0)
    ap.add_argument("--delete", action="append", default=[], metavar="GROUP/VERSION/PLURAL/NAME")
    a = ap.parse_args(argv[:cut])
    command = argv[cut + 1:]
    if not command:
        print("run_area_job.py: no command after --", file=sys.stderr)
        return 2
    rc = 1
    try:
        if a.wait and not wait(a.wait, [], a.wait_timeout):
            print(f"run_area_job: {a.wait} not reachable within {a.wait_timeout:.0f} s", file=sys.stderr)
            return 1
        proc = subprocess.Popen(command)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda s, _f: proc.send_signal(s))
        rc = proc.wait()
        print(f"run_area_job: {' '.join(command)} exited with {rc}", flush=True)
        return rc
    finally:
        for path in a.delete:
            print(f"run_area_job: {delete(path)}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
