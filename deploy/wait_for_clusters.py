"""Wait until the area job's engines answer, before the driver starts (the chart's init container).

Usage::

    python wait_for_clusters.py --timeout 900 --tcp sched:8786 --tcp ray-head-svc:10001 \
        [--resource kubernetes.dask.org/v1/daskclusters/NAME] [--resource ray.io/v1/rayclusters/NAME]

``--tcp`` targets must accept a TCP connection. ``--resource`` names a custom resource in the pod's own
namespace whose ``status`` is logged while waiting (read with the pod's ServiceAccount token: the chart's
Role allows ``get`` on exactly these names). Standard library only, so it runs in any Python image.
Exit 0 when every TCP target answered, 1 on timeout.
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import sys
import time
import urllib.request
from pathlib import Path

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def parse_target(text: str) -> tuple[str, int]:
    """'host:port' -> (host, port); raises ValueError naming the bad target."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--tcp target must be host:port, got {text!r}")
    return host, int(port)


def tcp_ready(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when a TCP connection to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def resource_status(path: str, sa_dir: Path = SA_DIR, api: str = "https://kubernetes.default.svc") -> str:
    """The ``status`` of a namespaced custom resource 'group/version/plural/name', as short JSON text.

    Best effort: any failure returns a one-line reason (it only feeds the log, never the decision).
    """
    try:
        group, version, plural, name = path.split("/")
        token = (sa_dir / "token").read_text().strip()
        namespace = (sa_dir / "namespace").read_text().strip()
        ctx = ssl.create_default_context(cafile=str(sa_dir / "ca.crt"))
        url = f"{api}/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}"
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=5, context=ctx) as resp:
            status = json.load(resp).get("status", {})
        return json.dumps(status, sort_keys=True)[:300]
    except Exception as exc:  # noqa: BLE001 - logging aid only
        return f"unavailable ({type(exc).__name__})"


def wait(targets: list[tuple[str, int]], resources: list[str], timeout: float, interval: float = 5.0) -> bool:
    """Poll until every TCP target answers (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    pending = list(targets)
    while True:
        pending = [t for t in pending if not tcp_ready(*t)]
        if not pending:
            print("all engines answer: " + ", ".join(f"{h}:{p}" for h, p in targets), flush=True)
            return True
        if time.monotonic() >= deadline:
            print("timed out waiting for: " + ", ".join(f"{h}:{p}" for h, p in pending), file=sys.stderr, flush=True)
            return False
        for res in resources:
            print(f"waiting; {res} status: {resource_status(res)}", flush=True)
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tcp", action="append", default=[], help="host:port that must accept connections")
    ap.add_argument("--resource", action="append", default=[], help="group/version/plural/name to log")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds before giving up")
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between polls")
    args = ap.parse_args(argv)
    try:
        targets = [parse_target(t) for t in args.tcp]
    except ValueError as exc:
        ap.error(str(exc))
    return 0 if wait(targets, args.resource, args.timeout, args.interval) else 1


if __name__ == "__main__":
    sys.exit(main())
