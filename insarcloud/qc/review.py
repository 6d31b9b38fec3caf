"""Manual verification page: ``insarcloud review DATASET_URL`` (the last stage of the multi-stage labels).

A small local web server (stdlib ``http.server``; bound to 127.0.0.1 by default) shows each tile whose
rule verdict is *uncertain*: wrapped phase, coherence, closure and the rule labels as an overlay. Keyboard:
``a`` accept, ``r`` reject, ``b`` start/stop drawing bad-area boxes on the phase (drag with the mouse),
``Enter`` save the boxes as ``bad_areas``, ``u`` undo the last box, ``n``/``p`` (or the arrow keys) next /
previous tile. Each verdict is written to ``DATASET_URL/verdicts/<tile>.json`` by the POST that carries it,
before the page moves on, so nothing is lost if the browser closes.

Routes: ``GET /`` (page), ``GET /static/<file>``, ``GET /api/tiles``, ``GET /api/tile/<i>/<kind>.png``
(kind: phase, coh, closure, label), ``POST /api/verdict`` (JSON verdict, see :mod:`insarcloud.qc.dataset`).

Cross-site writes are refused (403): any page the reviewer's browser opens could otherwise POST a verdict to
127.0.0.1 (a ``text/plain`` or form POST needs no CORS preflight). The rules (``Host``, ``Origin``/``Referer``,
``Content-Type: application/json``; 403/415) are :mod:`insarcloud.httpsafety`'s, shared with ``insarcloud view``.
"""

from __future__ import annotations

import argparse
import getpass
import io as _io
import json
import logging
import re
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from insarcloud.errors import InputArrayError, InsarcloudError
from insarcloud.httpsafety import (  # noqa: F401 (allowed_hosts is part of this module's API)
    LocalHandler,
    allowed_hosts,
    make_local_server,
    refusal,
    serve_until_interrupted,
)
from insarcloud.qc import dataset as qcds
from insarcloud.qc import labels

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "review_static"
KINDS = ("phase", "coh", "closure", "label")
_TILE_PNG = re.compile(r"^/api/tile/(\d+)/(phase|coh|closure|label)\.png$")
# label overlay colours (RGBA): good green, bad red, uncertain amber, no data transparent
_LABEL_RGBA = {labels.GOOD: (0, 170, 0, 110), labels.BAD: (220, 0, 0, 150),
               labels.UNCERTAIN: (255, 190, 0, 120), labels.NODATA: (0, 0, 0, 0)}


def _png(rgba: np.ndarray) -> bytes:
    """Encode an (h, w, 4) uint8 image as PNG (matplotlib's Agg writer, no pyplot state)."""
    from matplotlib.image import imsave

    buf = _io.BytesIO()
    imsave(buf, rgba, format="png")
    return buf.getvalue()


def _colour(a: np.ndarray, cmap: str, vmin: float, vmax: float) -> np.ndarray:
    from matplotlib import colormaps

    x = np.clip((a - vmin) / (vmax - vmin), 0.0, 1.0)
    rgba = (colormaps[cmap](np.nan_to_num(x)) * 255).astype(np.uint8)
    rgba[~np.isfinite(a)] = (40, 40, 40, 255)
    return rgba


class ReviewState:
    """What the server holds: the dataset (lazy), the uncertain tiles, and the verdicts written so far."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None, reviewer: str | None = None,
                 include: str = "uncertain") -> None:
        self.url = url
        self.storage_options = storage_options
        self.reviewer = reviewer or getpass.getuser()
        self.ds = qcds.open_dataset(url, storage_options)
        self.tile_size = int(self.ds.sizes["ty"])
        self.channels = [str(c) for c in self.ds["channel"].values]
        tl = self.ds["tile_label"].values
        sel = np.flatnonzero(tl == labels.UNCERTAIN) if include == "uncertain" else np.flatnonzero(tl != labels.NODATA)
        self.positions = [int(i) for i in sel]
        tiles = self.ds["tile"].values
        self.index_of = {int(tiles[i]): i for i in range(tiles.size)}
        self.meta = [
            {"tile": int(tiles[i]), "frame": str(self.ds["frame"].values[i]), "pair": str(self.ds["pair"].values[i]),
             "y0": int(self.ds["y0"].values[i]), "x0": int(self.ds["x0"].values[i])}
            for i in self.positions
        ]
        self.verdicts = qcds.load_verdicts(url, storage_options)
        self.lock = threading.Lock()
        log.info("review %s: %d uncertain tile(s), %d verdict(s) already saved", url, len(self.positions),
                 len(self.verdicts))

    def tiles(self) -> dict[str, Any]:
        with self.lock:
            items = [{**m, "verdict": self.verdicts.get(m["tile"])} for m in self.meta]
        return {"dataset": self.url, "tile_size": self.tile_size, "channels": self.channels, "tiles": items,
                "reviewer": self.reviewer}

    def image(self, tile: int, kind: str) -> bytes:
        if tile not in self.index_of:
            raise KeyError(f"tile {tile} is not in the dataset")
        i = self.index_of[tile]
        if kind == "label":
            lab = self.ds["label"].isel(tile=i).values
            rgba = np.zeros(lab.shape + (4,), np.uint8)
            for v, c in _LABEL_RGBA.items():
                rgba[lab == v] = c
            return _png(rgba)
        inp = self.ds["inputs"].isel(tile=i)
        if kind == "phase":
            ph = np.arctan2(inp.sel(channel="sin_phase").values, inp.sel(channel="cos_phase").values)
            return _png(_colour(ph, "twilight", -np.pi, np.pi))
        if kind == "coh":
            return _png(_colour(inp.sel(channel="coh").values, "gray", 0.0, 1.0))
        if "closure" not in self.channels:
            return _png(_colour(np.full((self.tile_size, self.tile_size), np.nan), "magma", 0.0, np.pi))
        return _png(_colour(inp.sel(channel="closure").values, "magma", 0.0, np.pi))

    def save(self, body: dict[str, Any]) -> dict[str, Any]:
        body = dict(body)
        body.setdefault("reviewer", self.reviewer)
        if int(body.get("tile", -1)) not in self.index_of:
            raise InputArrayError(f"tile {body.get('tile')!r} is not in the dataset")
        v = qcds.save_verdict(self.url, body, self.storage_options, tile_size=self.tile_size)
        with self.lock:
            self.verdicts[v["tile"]] = v
        log.info("verdict saved: tile %d %s (%d box(es))", v["tile"], v["verdict"], len(v["bad_mask"]))
        return v


# the page is served from this server only, cannot be framed (key presses are verdicts), and posts only here
SECURITY_HEADERS = {
    "Content-Security-Policy": "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def write_refusal(method: str, headers: Any, hosts: frozenset[str]) -> tuple[int, str] | None:
    """Why a request to the review server must be refused, as (HTTP status, message), or None.

    The rules are :func:`insarcloud.httpsafety.refusal`'s: ``Host`` for every request; ``Origin``/``Referer``
    and ``Content-Type: application/json`` for writes.
    """
    return refusal(method, headers, hosts, server="this review server")


def make_handler(state: ReviewState, hosts: frozenset[str] | None = None) -> type[LocalHandler]:
    """The request handler; ``hosts``: allowed ``Host`` names (default: loopback, see :func:`allowed_hosts`)."""

    class Handler(LocalHandler):
        server_version = "insarcloud-review"
        server_name_text = "this review server"
        security_headers = SECURITY_HEADERS
        json_allow_nan = True

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_body(code, body, ctype)

        def _json(self, code: int, obj: Any) -> None:
            self.send_json(code, obj)

        def _refused(self) -> bool:
            return self.refused()

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self._refused():
                return
            path = self.path.split("?", 1)[0]
            try:
                if path in ("/", "/index.html"):
                    self._send(200, (STATIC / "index.html").read_bytes(), "text/html; charset=utf-8")
                elif path == "/static/app.js":
                    self._send(200, (STATIC / "app.js").read_bytes(), "text/javascript; charset=utf-8")
                elif path == "/api/tiles":
                    self._json(200, state.tiles())
                elif m := _TILE_PNG.match(path):
                    self._send(200, state.image(int(m.group(1)), m.group(2)), "image/png")
                else:
                    self._json(404, {"error": f"no route {path}"})
            except KeyError as exc:
                self._json(404, {"error": str(exc)})
            except (InsarcloudError, OSError) as exc:
                log.exception("review GET %s failed", path)
                self._json(500, {"error": str(exc)})

        def _no_write_route(self) -> None:
            if not self._refused():
                self.close_connection = True
                self._json(405, {"ok": False, "error": f"{self.command} is not supported"})

        do_PUT = do_PATCH = do_DELETE = _no_write_route  # noqa: N815 (refused like POST, then 405)

        def do_POST(self) -> None:  # noqa: N802
            if self._refused():
                return
            path = self.path.split("?", 1)[0]
            if path != "/api/verdict":
                self._json(404, {"error": f"no route {path}"})
                return
            try:
                n = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(n) or b"{}")
                self._json(200, {"ok": True, "verdict": state.save(body)})
            except (json.JSONDecodeError, InputArrayError) as exc:
                self._json(400, {"ok": False, "error": str(exc)})
            except OSError as exc:  # the store refused: the page keeps the verdict and shows the error
                log.exception("writing a verdict failed")
                self._json(502, {"ok": False, "error": f"could not write the verdict: {exc}"})

    Handler.hosts = allowed_hosts("127.0.0.1") if hosts is None else hosts
    return Handler


def make_server(url: str, host: str = "127.0.0.1", port: int = 0, storage_options: dict[str, Any] | None = None,
                reviewer: str | None = None) -> tuple[ThreadingHTTPServer, ReviewState]:
    """Create (not start) the review server; ``port=0`` picks a free port (``server.server_address``)."""
    state = ReviewState(url, storage_options, reviewer)
    return make_local_server(make_handler(state), host, port), state


def serve(url: str, host: str = "127.0.0.1", port: int = 0, storage_options: dict[str, Any] | None = None,
          reviewer: str | None = None) -> int:
    """Serve until interrupted; prints ``serving http://HOST:PORT/`` (flushed) once listening."""
    server, state = make_server(url, host, port, storage_options, reviewer)
    h, p = server.server_address[:2]
    return serve_until_interrupted(server, f"serving http://{h}:{p}/ ({len(state.positions)} uncertain tiles of {url})")


def main(argv: list[str] | None = None) -> int:
    """``python -m insarcloud.qc.review DATASET_URL [--host H] [--port P] [--reviewer NAME]``."""
    ap = argparse.ArgumentParser(prog="insarcloud review", description=__doc__.splitlines()[0])
    ap.add_argument("dataset_url")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--reviewer", default=None)
    a = ap.parse_args(argv)
    from insarcloud.logs import configure_logging

    configure_logging(1)
    try:
        return serve(a.dataset_url, a.host, a.port, reviewer=a.reviewer)
    except InsarcloudError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
