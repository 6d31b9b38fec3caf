"""The viewer's local web server: ``insarcloud view CUBE_OR_AREA_URL`` (LiCSBAS_plot_ts.py / MintPy tsview.py).

stdlib ``http.server``, bound to 127.0.0.1 by default, a random free port unless given. Read-only:

- ``GET /`` the page; ``GET /static/app.js`` and ``/static/style.css`` (a fixed list: no path is ever joined
  onto a directory, so nothing outside the three files can be served);
- ``GET /api/meta`` grid, layers, reference point, which optional groups exist;
- ``GET /api/map.png?layer=L`` the map, strided to <= 1024 px a side (masked pixels grey) and
  ``GET /api/scale?layer=L`` its colour scale (for the colour bar);
- ``GET /api/pixel?y=IY&x=IX`` one pixel's series (full-resolution indices), read chunk by chunk.

Every request's ``Host`` must name this server (127.0.0.1 / localhost / [::1] and its port): a page on another
site cannot reach it through DNS rebinding. Any method but GET/HEAD is refused (405) after the Host and
``Origin`` checks (403 when they fail); there is nothing to write.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from insarcloud.errors import InputArrayError, InsarcloudError

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
# route -> (file, content type); the only files served
_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
_LOCAL_NAMES = ("127.0.0.1", "localhost", "[::1]")


def allowed_hosts(host: str, port: int) -> set[str]:
    """Host header values this server answers to."""
    names = set(_LOCAL_NAMES) | ({host} if host not in ("0.0.0.0", "::") else set())
    return {f"{n}:{port}" for n in names}


def make_handler(view: Any, hosts: set[str]) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()  # one chunk read at a time: xarray's lazy arrays are not thread-safe on every store

    class Handler(BaseHTTPRequestHandler):
        server_version = "insarcloud-view"

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), fmt % args)

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy",
                             "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, code: int, obj: Any) -> None:
            self._send(code, json.dumps(obj, allow_nan=False).encode(), "application/json")

        def _host_ok(self) -> bool:
            if self.headers.get("Host", "") not in hosts:
                self._json(403, {"error": "unexpected Host header"})
                return False
            return True

        def _refuse(self) -> None:
            if not self._host_ok():
                return
            origin = self.headers.get("Origin")
            if origin is not None and urlsplit(origin).netloc not in hosts:
                self._json(403, {"error": "cross-origin request refused"})
                return
            self._json(405, {"error": f"{self.command} is not allowed: the viewer is read-only"})

        do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse  # noqa: N815 (http.server's naming)

        def do_HEAD(self) -> None:  # noqa: N802
            self.do_GET()

        def do_GET(self) -> None:  # noqa: N802
            if not self._host_ok():
                return
            parts = urlsplit(self.path)
            path, query = parts.path, parse_qs(parts.query)
            try:
                if path in _FILES:
                    name, ctype = _FILES[path]
                    self._send(200, (STATIC / name).read_bytes(), ctype)
                elif path == "/api/meta":
                    self._json(200, view.meta())
                elif path == "/api/scale":
                    with lock:
                        values = view.layer_values(_one(query, "layer"))
                        self._json(200, view.colour_scale(_one(query, "layer"), values))
                elif path == "/api/map.png":
                    with lock:
                        png, _ = view.map_png(_one(query, "layer"))
                    self._send(200, png, "image/png")
                elif path == "/api/pixel":
                    iy, ix = _int(query, "y"), _int(query, "x")
                    with lock:
                        self._json(200, view.pixel(iy, ix))
                else:
                    self._json(404, {"error": f"no route {path}"})
            except InputArrayError as exc:
                self._json(400, {"error": str(exc)})
            except (InsarcloudError, OSError) as exc:
                log.exception("view GET %s failed", path)
                self._json(500, {"error": str(exc)})

    return Handler


def _one(query: dict[str, list[str]], key: str) -> str:
    vals = query.get(key)
    if not vals or len(vals) != 1:
        raise InputArrayError(f"query parameter {key!r} is required once")
    return vals[0]


def _int(query: dict[str, list[str]], key: str) -> int:
    v = _one(query, key)
    if not v.isdigit() or len(v) > 9:
        raise InputArrayError(f"query parameter {key}={v!r} is not a pixel index")
    return int(v)


def make_server(url: str, group: str | None = None, host: str = "127.0.0.1", port: int = 0,
                storage_options: dict[str, Any] | None = None) -> tuple[ThreadingHTTPServer, Any]:
    """Open the cube and create (not start) the server; ``port=0`` picks a free port."""
    from insarcloud.view.data import CubeView

    view = CubeView(url, group, storage_options)
    server = ThreadingHTTPServer((host, port), BaseHTTPRequestHandler)
    h, p = server.server_address[:2]
    server.RequestHandlerClass = make_handler(view, allowed_hosts(str(h), int(p)))
    server.daemon_threads = True
    return server, view


def serve(url: str, group: str | None = None, host: str = "127.0.0.1", port: int = 0,
          storage_options: dict[str, Any] | None = None, open_browser: bool = False) -> int:
    """Serve until interrupted; prints ``serving http://HOST:PORT/`` (flushed) once listening."""
    server, view = make_server(url, group, host, port, storage_options)
    h, p = server.server_address[:2]
    address = f"http://{'127.0.0.1' if h in ('0.0.0.0', '::') else h}:{p}/"
    print(f"serving {address} ({view.kind} cube {url}{' group ' + view.group if view.group else ''}; "
          "Ctrl-C stops)", flush=True)
    if open_browser:
        import webbrowser

        webbrowser.open(address)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m insarcloud.view.server URL [--group G] [--host H] [--port P]``."""
    ap = argparse.ArgumentParser(prog="insarcloud view", description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("--group", default=None)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return serve(a.url, a.group, a.host, a.port)
    except InsarcloudError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
