"""The manual verification page, driven in headless Chromium (Debian's package; never a downloaded browser),
and its refusal of cross-site writes (raw HTTP requests as a hostile page or a DNS-rebinding name would send).

The server runs as its own process (``python -m insarcloud.qc.review``), reads the dataset from the local
S3 endpoint and writes each verdict there; the tests check the bucket after every request or key press.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from insarcloud import io
from insarcloud.pipelines.local_s3 import stop_process
from insarcloud.qc import dataset, labels
from insarcloud.qc.review import allowed_hosts, write_refusal

from .conftest import synthetic_cube

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not installed at /usr/bin/chromium "
           "(apt-get install -y chromium chromium-driver); the review page test needs a real browser",
)


def _wait_for(predicate, timeout: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")


@pytest.fixture()
def review_dataset(bucket: str, storage_options: dict) -> str:
    _, ds = synthetic_cube(4, shape=(96, 96))
    cube = f"{bucket}/cubes/012A_05850_131313.zarr"
    io.write_new_cube(ds, cube, storage_options)
    out = f"{bucket}/datasets/qc_tiles.zarr"
    dataset.build_dataset([cube], out, tile=48, storage_options=storage_options)
    return out


@pytest.fixture()
def review_server(review_dataset: str, s3_endpoint: str):  # type: ignore[no-untyped-def]
    env = dict(os.environ)  # AWS_* point at the local endpoint (set by the s3_endpoint fixture)
    proc = subprocess.Popen(
        [sys.executable, "-m", "insarcloud.qc.review", review_dataset, "--port", "0", "--reviewer", "pytest"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        line = proc.stdout.readline()  # "serving http://127.0.0.1:PORT/ (...)", printed once listening
        if not line.startswith("serving "):
            proc.kill()
            raise RuntimeError(f"review server did not start: {line!r} {proc.stderr.read()[-2000:]}")
        yield line.split()[1], review_dataset
    finally:
        stop_process(proc)


@pytest.mark.slow
@needs_chromium
def test_review_page_writes_each_verdict_at_once(review_server, storage_options: dict) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    url, ds_url = review_server
    d = dataset.open_dataset(ds_url, storage_options)
    uncertain = [int(t) for t in d["tile"].values[d["tile_label"].values == labels.UNCERTAIN]]
    assert len(uncertain) >= 3, "the synthetic dataset should have uncertain tiles to review"
    ts = int(d.sizes["ty"])

    def verdicts() -> dict:
        return dataset.load_verdicts(ds_url, storage_options)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']", timeout=30000)
            assert f"tile {uncertain[0]} " in page.inner_text("#meta")
            # the three panels and the overlay load as real PNGs
            for k in ("phase", "coh", "closure", "label"):
                page.wait_for_function(f"document.getElementById('img-{k}').naturalWidth === {ts}")

            page.keyboard.press("a")
            v = _wait_for(lambda: verdicts().get(uncertain[0]), what="the accept verdict in the bucket")
            assert v["verdict"] == "accept" and v["reviewer"] == "pytest"
            page.wait_for_function(f"document.getElementById('meta').textContent.includes('tile {uncertain[1]} ')")

            page.keyboard.press("r")
            v = _wait_for(lambda: verdicts().get(uncertain[1]), what="the reject verdict in the bucket")
            assert v["verdict"] == "reject"
            page.wait_for_function(f"document.getElementById('meta').textContent.includes('tile {uncertain[2]} ')")

            # bad areas: b, drag a box over the top-left quarter of the phase panel, Enter
            page.keyboard.press("b")
            box = page.locator("#draw").bounding_box()
            page.mouse.move(box["x"] + 1, box["y"] + 1)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] / 4, box["y"] + box["height"] / 2, steps=5)
            page.mouse.up()
            page.keyboard.press("Enter")
            v = _wait_for(lambda: verdicts().get(uncertain[2]), what="the bad_areas verdict in the bucket")
            assert v["verdict"] == "bad_areas" and len(v["bad_mask"]) == 1
            y0, x0, y1, x1 = v["bad_mask"][0]
            assert y0 <= 1 and x0 <= 1 and abs(y1 - ts / 2) <= 2 and abs(x1 - ts / 4) <= 2
            status = page.inner_text("#status")
            assert "saved" in status and "NOT" not in status
        finally:
            browser.close()

    # the browser is gone: everything is in the bucket, one object per tile, and merges into the labels
    fs, path = __import__("insarcloud.io.storage", fromlist=["get_fs"]).get_fs(f"{ds_url}/verdicts", storage_options)
    names = sorted(n.rsplit("/", 1)[-1] for n in fs.ls(path, detail=False))
    assert names == sorted(f"{t}.json" for t in uncertain[:3])
    raw = json.loads(fs.cat_file(f"{path}/{uncertain[1]}.json"))
    assert set(raw) >= {"tile", "verdict", "reviewer", "at"}
    merged = dataset.apply_verdicts(d, verdicts())
    i = list(d["tile"].values).index(uncertain[1])
    lab = merged["label"].values[i]
    assert (lab[d["label"].values[i] != 255] == labels.BAD).all()
    assert not np.array_equal(merged["label"].values[i], d["label"].values[i])


def _post(url: str, body: bytes, headers: dict[str, str], path: str = "/api/verdict",
          method: str = "POST") -> tuple[int, dict]:
    """One raw request to the review server (``Host`` as given, else the server's own host:port)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        headers = {"Host": parts.netloc, **headers}
        for k, v in {**headers, "Content-Length": str(len(body))}.items():
            conn.putheader(k, v)
        conn.endheaders(body)
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    finally:
        conn.close()


@pytest.mark.slow
def test_review_server_refuses_cross_site_writes(review_server, storage_options: dict) -> None:  # type: ignore[no-untyped-def]
    url, ds_url = review_server
    own = urlsplit(url).netloc  # 127.0.0.1:PORT
    d = dataset.open_dataset(ds_url, storage_options)
    uncertain = [int(t) for t in d["tile"].values[d["tile_label"].values == labels.UNCERTAIN]]
    tile = uncertain[0]
    body = json.dumps({"tile": tile, "verdict": "reject"}).encode()
    refused = [
        # what a hostile page can send without a CORS preflight: text/plain and form posts, from its origin
        ({"Origin": "http://evil.example", "Content-Type": "text/plain"}, 403, "cross-site"),
        ({"Origin": "http://evil.example", "Content-Type": "application/x-www-form-urlencoded"}, 403, "cross-site"),
        # a JSON post from another origin (would need a preflight; refused anyway), and a look-alike port
        ({"Origin": "http://evil.example", "Content-Type": "application/json"}, 403, "cross-site"),
        ({"Origin": f"http://{own.split(':')[0]}:1", "Content-Type": "application/json"}, 403, "cross-site"),
        ({"Referer": "http://evil.example/page.html", "Content-Type": "application/json"}, 403, "Referer"),
        ({"Origin": "null", "Content-Type": "application/json"}, 403, "no Origin"),
        ({"Content-Type": "application/json"}, 403, "no Origin"),
        # DNS rebinding: evil.example resolved to 127.0.0.1, so Host and Origin agree but name another site
        ({"Host": "evil.example:80", "Origin": "http://evil.example:80", "Content-Type": "application/json"}, 403,
         "Host"),
        # same origin, but not JSON
        ({"Origin": f"http://{own}", "Content-Type": "text/plain"}, 415, "application/json"),
        ({"Origin": f"http://{own}", "Content-Type": "multipart/form-data; boundary=x"}, 415, "application/json"),
    ]
    for headers, status, words in refused:
        code, out = _post(url, body, headers)
        assert (code, out.get("ok")) == (status, False), (headers, code, out)
        assert words in out["error"], (headers, out)
    code, _ = _post(url, b"", {"Origin": "http://evil.example"}, method="DELETE")
    assert code == 403
    code, _ = _post(url, b"", {"Host": "evil.example"}, path="/api/tiles", method="GET")
    assert code == 403  # a rebound name cannot read the tiles either
    assert dataset.load_verdicts(ds_url, storage_options) == {}, "a refused request wrote a verdict"

    # the page's own request (same origin, JSON) is accepted and written; so is one carrying only a Referer
    code, out = _post(url, body, {"Origin": f"http://{own}", "Content-Type": "application/json; charset=utf-8"})
    assert code == 200 and out["ok"] and out["verdict"]["verdict"] == "reject"
    assert dataset.load_verdicts(ds_url, storage_options)[tile]["verdict"] == "reject"
    body2 = json.dumps({"tile": uncertain[1], "verdict": "accept"}).encode()
    code, out = _post(url, body2, {"Referer": f"http://{own}/", "Content-Type": "application/json"})
    assert code == 200 and dataset.load_verdicts(ds_url, storage_options)[uncertain[1]]["verdict"] == "accept"
    code, out = _post(url, b"{}", {"Origin": f"http://{own}", "Content-Type": "application/json"}, method="PUT")
    assert code == 405


def test_write_refusal_rules() -> None:
    hosts = allowed_hosts("127.0.0.1")
    assert {"127.0.0.1", "localhost", "::1"} <= hosts and "evil.example" not in hosts
    ok = {"Host": "localhost:8000", "Origin": "http://localhost:8000", "Content-Type": "application/json"}
    assert write_refusal("POST", ok, hosts) is None
    assert write_refusal("GET", {"Host": "127.0.0.1:8000"}, hosts) is None
    assert write_refusal("GET", {"Host": "[::1]:8000"}, hosts) is None
    # an SSH tunnel (-L 9000:127.0.0.1:8000): the browser's Host and Origin agree on the tunnel's port
    assert write_refusal("POST", {**ok, "Host": "localhost:9000", "Origin": "http://localhost:9000"}, hosts) is None
    assert write_refusal("POST", {**ok, "Origin": "http://localhost:8001"}, hosts)[0] == 403
    assert write_refusal("POST", {**ok, "Origin": "file://"}, hosts)[0] == 403
    assert write_refusal("POST", {**ok, "Host": ""}, hosts)[0] == 403
    assert write_refusal("GET", {}, hosts)[0] == 403
    assert write_refusal("POST", {**ok, "Content-Type": "text/plain;charset=UTF-8"}, hosts)[0] == 415
    assert write_refusal("POST", {**ok, "Content-Type": "APPLICATION/JSON"}, hosts) is None
    # bound to another address: only that name (and, for all interfaces, this machine's names)
    assert write_refusal("POST", {**ok, "Host": "10.0.0.5:8000", "Origin": "http://10.0.0.5:8000"},
                         allowed_hosts("10.0.0.5")) is None
    assert write_refusal("POST", ok, allowed_hosts("10.0.0.5"))[0] == 403
    assert "localhost" in allowed_hosts("0.0.0.0")
