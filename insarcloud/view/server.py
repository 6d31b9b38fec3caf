"""The viewer's local web server: ``insarcloud view CUBE_OR_AREA_URL`` (LiCSBAS_plot_ts.py / MintPy tsview.py).

stdlib ``http.server``, bound to 127.0.0.1 by default, a random free port unless given. Read-only:

- ``GET /`` the page; ``GET /static/app.js`` and ``/static/style.css`` (a fixed list: no path is ever joined
  onto a directory, so nothing outside the three files can be served);
- ``GET /api/meta`` grid, layers, reference point, which optional groups exist;
- ``GET /api/map.png?layer=L`` the map, strided to <= 1024 px a side (masked pixels grey) and
  ``GET /api/scale?layer=L`` its colour scale (for the colour bar);
- ``GET /api/pixel?y=IY&x=IX`` one pixel's series (full-resolution indices), read chunk by chunk.

Requests are checked as :mod:`insarcloud.httpsafety` says (``Host`` names this server, an ``Origin`` is its own;
403 otherwise). Any method but GET/HEAD is then refused (405): there is nothing to write.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from insarcloud.errors import InputArrayError, InsarcloudError
from insarcloud.httpsafety import LocalHandler, browser_address, make_local_server, serve_until_interrupted

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
# route -> (file, content type); the only files served
_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}


def make_handler(view: Any) -> type[LocalHandler]:
    """The request handler class for ``view`` (a fresh class per server: its ``hosts`` are set on binding)."""
    lock = threading.Lock()  # one chunk read at a time: xarray's lazy arrays are not thread-safe on every store

    class Handler(LocalHandler):
        server_version = "insarcloud-view"
        server_name_text = "this viewer"
        accepts_writes = False  # every method is checked as a read, then refused with 405
        security_headers = {
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy":
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'",
        }

        def _read_only(self) -> None:
            if not self.refused():
                self.send_json(405, {"error": f"{self.command} is not allowed: the viewer is read-only"})

        do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _read_only  # noqa: N815 (http.server's naming)

        def do_HEAD(self) -> None:  # noqa: N802
            self.do_GET()

        def do_GET(self) -> None:  # noqa: N802
            if self.refused():
                return
            parts = urlsplit(self.path)
            path, query = parts.path, parse_qs(parts.query)
            try:
                if path in _FILES:
                    name, ctype = _FILES[path]
                    self.send_body(200, (STATIC / name).read_bytes(), ctype)
                elif path == "/api/meta":
                    self.send_json(200, view.meta())
                elif path == "/api/scale":
                    with lock:
                        values = view.layer_values(_one(query, "layer"))
                        self.send_json(200, view.colour_scale(_one(query, "layer"), values))
                elif path == "/api/map.png":
                    with lock:
                        png, _ = view.map_png(_one(query, "layer"))
                    self.send_body(200, png, "image/png")
                elif path == "/api/pixel":
                    iy, ix = _int(query, "y"), _int(query, "x")
                    with lock:
                        self.send_json(200, view.pixel(iy, ix))
                else:
                    self.send_json(404, {"error": f"no route {path}"})
            except InputArrayError as exc:
                self.send_json(400, {"error": str(exc)})
            except (InsarcloudError, OSError) as exc:
                log.exception("view GET %s failed", path)
                self.send_json(500, {"error": str(exc)})

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
    return make_local_server(make_handler(view), host, port), view


def serve(url: str, group: str | None = None, host: str = "127.0.0.1", port: int = 0,
          storage_options: dict[str, Any] | None = None, open_browser: bool = False) -> int:
    """Serve until interrupted; prints ``serving http://HOST:PORT/`` (flushed) once listening."""
    server, view = make_server(url, group, host, port, storage_options)
    address = browser_address(server)
    if open_browser:
        import webbrowser

        webbrowser.open(address)
    return serve_until_interrupted(server, f"serving {address} ({view.kind} cube {url}"
                                   f"{' group ' + view.group if view.group else ''}; Ctrl-C stops)")


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
