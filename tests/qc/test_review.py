"""The manual verification page, driven in headless Chromium (Debian's package; never a downloaded browser).

The server runs as its own process (``python -m insarcloud.qc.review``), reads the dataset from the local
S3 endpoint and writes each verdict there; the test checks the bucket after every key press.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from insarcloud import io
from insarcloud.pipelines.local_s3 import stop_process
from insarcloud.qc import dataset, labels

from .conftest import synthetic_cube

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(
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
