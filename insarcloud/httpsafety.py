"""What insarcloud's two local web servers (``insarcloud view``, ``insarcloud review``) share: which requests
they answer, the headers they send, and how they run.

Both bind to 127.0.0.1 by default, and a browser runs every other site's script beside them. The rules, after
the OWASP CSRF prevention cheat sheet ("Verifying Origin With Standard Headers") and its DNS-rebinding note:

- every request's ``Host`` must name this server (a loopback name, the bound address, or this machine's name
  when bound to all interfaces), so a page on a DNS-rebound ``evil.example`` cannot read or write;
- a request that carries an ``Origin`` must come from this server's own origin (host:port equal to ``Host``;
  an SSH tunnel keeps the two equal);
- a write (POST/PUT/PATCH/DELETE) must carry an ``Origin`` (else a ``Referer``) and a
  ``Content-Type: application/json`` body, which a cross-site page can only send after a CORS preflight these
  servers never grant (a ``text/plain`` or form POST needs none).

The port is not part of the ``Host`` check: the hostname is what a rebinding attack changes, and a tunnel
forwards another port.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_ANY = ("", "0.0.0.0", "::")


def allowed_hosts(bind_host: str) -> frozenset[str]:
    """Host names (no port) a request to a server bound to ``bind_host`` may carry in its ``Host`` header."""
    names = {bind_host.lower().strip("[]")}
    if bind_host in _ANY or bind_host.lower() in LOOPBACK_NAMES or bind_host.startswith("127."):
        names |= {n.strip("[]") for n in LOOPBACK_NAMES}
    if bind_host in _ANY:
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        try:
            names |= {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None)}
        except OSError:
            pass
    return frozenset(names - {""})


def hostname(netloc: str) -> str:
    """``netloc`` (``host``, ``host:port``, ``[v6]:port``) without the port, lower-case, no brackets."""
    try:
        return (urlsplit(f"//{netloc}").hostname or "").lower()
    except ValueError:
        return ""


def refusal(method: str, headers: Mapping[str, str] | Any, hosts: frozenset[str],
            *, server: str = "this server", writes: bool = True) -> tuple[int, str] | None:
    """Why a request must be refused, as (HTTP status, message), or None when it may proceed.

    ``headers``: the request's headers (``.get``); ``hosts``: :func:`allowed_hosts`. Every method is checked
    for ``Host`` and, when present, ``Origin``; writes also need an ``Origin``/``Referer`` and JSON. A
    read-only server (``writes=False``) checks every method as a read and then answers 405 itself.
    """
    host = (headers.get("Host") or "").strip().lower()
    if not host or hostname(host) not in hosts:
        return 403, f"refused: Host {host or '(none)'!r} is not {server}"
    origin = (headers.get("Origin") or "").strip()
    write = writes and method in WRITE_METHODS
    if not write and not origin:
        return None
    source = origin or (headers.get("Referer") or "").strip()
    if not source or source == "null":
        return 403, f"refused: a write must come from {server}'s page (no Origin or Referer header)"
    parts = urlsplit(source)
    if parts.scheme not in ("http", "https") or parts.netloc.lower() != host:
        what = "Origin" if origin else "Referer"
        return 403, f"refused: cross-site request ({what} {source!r} is not {server} {host!r})"
    if not write:
        return None
    ctype = (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if ctype != "application/json":
        return 415, f"refused: a write must be application/json, not {ctype or '(no Content-Type)'!r}"
    return None


class LocalHandler(BaseHTTPRequestHandler):
    """Base request handler: access log to ``logging`` (not stderr), no caching, the class's security headers,
    JSON answers, and :meth:`refused` to apply :func:`refusal` (set ``hosts`` and ``server_name_text``)."""

    hosts: frozenset[str] = frozenset()
    server_name_text = "this server"
    security_headers: Mapping[str, str] = {"X-Content-Type-Options": "nosniff"}
    json_allow_nan = False
    accepts_writes = True

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), fmt % args)

    def send_body(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in self.security_headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, code: int, obj: Any) -> None:
        self.send_body(code, json.dumps(obj, allow_nan=self.json_allow_nan).encode(), "application/json")

    def refused(self) -> bool:
        """Answer and return True when the request must be refused (:func:`refusal`)."""
        why = refusal(self.command, self.headers, self.hosts, server=self.server_name_text,
                      writes=self.accepts_writes)
        if why is None:
            return False
        log.warning("%s: %s %s from %s %s", self.server_version, self.command, self.path,
                    self.address_string(), why[1])
        self.close_connection = True  # the body (if any) is not read: the connection cannot be reused
        self.send_json(why[0], {"ok": False, "error": why[1]})
        return True


def make_local_server(handler: type[LocalHandler], host: str, port: int) -> ThreadingHTTPServer:
    """A threading server for ``handler`` whose allowed hosts follow the address it is bound to."""
    server = ThreadingHTTPServer((host, port), handler)
    handler.hosts = allowed_hosts(host)
    server.daemon_threads = True
    return server


def serve_until_interrupted(server: ThreadingHTTPServer, banner: str) -> int:
    """Print ``banner`` (flushed: tests and scripts wait for it), serve until Ctrl-C, close; returns 0."""
    print(banner, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def browser_address(server: ThreadingHTTPServer) -> str:
    """``http://HOST:PORT/`` a browser on this machine can open (loopback when bound to all interfaces)."""
    h, p = server.server_address[:2]
    return f"http://{'127.0.0.1' if h in _ANY else h}:{p}/"
