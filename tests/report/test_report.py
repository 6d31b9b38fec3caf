"""The area report: truth verdict first, summary table, maps in a grid, the producing run from the markers,
the run record linked (not dumped), rendered by a real headless chromium."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from insarcloud import io
from insarcloud.report.html import truth_headline, versus_zeros, write_report

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOT = Path("/tmp/insarcloud-report-screenshot.png")
FRAME = "012A_05850_131313"
TRUTH = {"frames": {FRAME: {"rmse_mm_yr": 2.1, "truth_spread_mm_yr": 5.0, "rmse_over_spread": 0.42,
                            "datum_mm_yr": 0.3, "median_std_mm_yr": 1.1, "frac_within_1.96_sigma": 0.81, "n": 900}}}


def _stages(url: str, run_id: str, monkeypatch) -> str:
    import dask

    from insarcloud.invert.dask_ops import invert_cube
    from insarcloud.qc.dask_ops import run_qc

    monkeypatch.setenv("INSARCLOUD_RUN_ID", run_id)  # what the area job sets for its run
    with dask.config.set(scheduler="synchronous"):
        run_qc(url)
        group, _ = invert_cube(url, weights="coherence")
    return group


@pytest.fixture()
def cube(tmp_path) -> str:
    from insarcloud.simulate import simulate_frame

    sim = simulate_frame(shape=(32, 32), n_epochs=8, seed=2, min_neighbours=3, max_neighbours=3)
    ds = io.make_frame_dataset(frame=FRAME, pairs=sim.pairs, lat=sim.lat, lon=sim.lon, phase=sim.phase,
                               coh=sim.coherence_est, unw=sim.unw)
    ds["bperp"] = ("date", np.asarray(sim.network.bperp, dtype="float32"))
    url = str(tmp_path / "cubes" / f"{FRAME}.zarr")
    io.write_new_cube(ds, url, chunk=16)
    return url


def _report(cube: str, out: Path, run_id: str, stage_seconds: dict, truth=None) -> str:
    summary = {"run_id": run_id, "frames": {FRAME: {"ok": True, "error": None, "stage_seconds": stage_seconds}}}
    return write_report(str(out / "area.zarr"), str(out / "report"), area_name="test", cubes={FRAME: cube},
                        ts_group="ts_coherence", run_summary=summary, truth=truth, dpi=60)


def test_resumed_run_names_the_run_that_made_the_results(cube, tmp_path, monkeypatch):
    _stages(cube, "run-A", monkeypatch)
    _report(cube, tmp_path, "run-A", {"qc": 12.5, "invert": 30.1})
    # the resumed run: every stage finds its output complete, nothing is rewritten
    _stages(cube, "run-B", monkeypatch)
    assert io.read_marker(cube, "ts_coherence")["run_id"] == "run-A"
    page = Path(_report(cube, tmp_path, "run-B", {"qc": 0.4, "invert": 0.3}))
    html = page.read_text()
    prov = html[html.index('id="provenance-table"'):html.index("</table>", html.index('id="provenance-table"'))]
    rows = {g: r for g, r in re.findall(r"<td>([a-z_]+)</td><td>[a-z]+</td><td>[^<]*</td>\s*<td>(.*?)</td>", prov)}
    assert '<a href="runs/run-A.json">run-A</a>' in rows["qc"] and "run-A" in rows["ts_coherence"]
    assert "run-B" not in prov  # the resumed run made nothing
    assert "written by run" in html and "run-B" in html[html.index('id="provenance-table"'):]
    # the run record is linked and written beside the page, never dumped into it
    assert '<a href="run.json">run.json</a>' in html and "<pre" not in html and '"run_id"' not in html
    assert json.loads((page.parent / "run.json").read_text())["run_id"] == "run-B"
    assert json.loads((page.parent / "runs" / "run-A.json").read_text())["run_id"] == "run-A"
    # the frame's network and the stages' quicklooks, copied from the cube
    for name in (f"network_{FRAME}.png", f"quicklooks/{FRAME}_ts_coherence_velocity.png",
                 f"quicklooks/{FRAME}_qc_coherence_matrix.png"):
        assert f'src="{name}"' in html and (page.parent / name).read_bytes()[:4] == b"\x89PNG"
    assert "area cube" in html and "Not available" in html  # no mosaic ran: said, not failed


def test_truth_verdict_opens_the_page_and_escapes(cube, tmp_path, monkeypatch):
    _stages(cube, "run-A", monkeypatch)
    truth = {**TRUTH, "mosaic": {"velocity_<b>": {"rmse_mm_yr": 9.0, "truth_spread_mm_yr": 6.0,
                                                   "rmse_over_spread": 1.5, "n": 50}},
             "forecast": {FRAME: {"forecast_rmse_mm": 6.0, "harmonic_rmse_mm": 5.0, "truth_spread_mm": 12.0,
                                  "horizon_days": 732, "n": 40}}}
    html = Path(_report(cube, tmp_path, "run-A", {"qc": 1.0}, truth)).read_text()
    body = html[html.index("<body>"):]
    assert body.index('id="truth"') < body.index('id="summary"') < body.index('id="provenance"')
    assert "is 0.42 of the truth&#39;s spread" in body and "58% better than a map of zeros" in body
    assert "50% worse than a map of zeros" in body
    assert "velocity_&lt;b&gt;" in body and "velocity_<b>" not in body  # autoescape on
    # the forecast's 2-year score sits in the truth section, against the harmonic baseline, in words
    fc = body[body.index('id="forecast-truth-table"'):body.index('id="summary"')]
    assert "2.0" in fc and "20% above the harmonic baseline" in fc


def test_headline_words():
    assert versus_zeros(0.42) == "58% better than a map of zeros"
    assert versus_zeros(1.25) == "25% worse than a map of zeros"
    head = truth_headline({"frames": {"f": {"rmse_mm_yr": 1.0, "truth_spread_mm_yr": 4.0}},
                           "mosaic": {"velocity_A": {"whole": {"rmse_mm_yr": 3.0, "truth_spread_mm_yr": 6.0,
                                                                "rmse_over_spread": 0.5},
                                                      "overlaps": {"n": 3}}}})
    assert head["beats"] and "mosaic velocity_A, whole area" in head["sentence"] and "50% better" in head["sentence"]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not at /usr/bin/chromium "
                    "(apt-get install -y chromium); the report test needs a real browser")
def test_report_renders_in_headless_chromium(cube, tmp_path, monkeypatch):
    from playwright.sync_api import sync_playwright

    _stages(cube, "run-A", monkeypatch)
    page_path = Path(_report(cube, tmp_path, "run-A", {"qc": 3.2, "invert": 7.9}, TRUTH))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(page_path.as_uri())
            page.wait_for_load_state("load")
            first = page.locator("section").first
            assert first.get_attribute("id") == "truth"
            assert "58% better than a map of zeros" in page.locator("#verdict").inner_text()
            assert page.locator("#summary-table tr").count() == 2  # header + the frame
            imgs = page.locator("img")
            assert imgs.count() >= 4
            widths = page.evaluate("[...document.images].map(i => i.naturalWidth)")
            assert all(w > 0 for w in widths)  # every picture loaded
            # maps sit side by side in the grid at this width
            grid = page.locator(".grid").last.locator("figure:not(.wide)")
            boxes = [grid.nth(i).bounding_box() for i in range(2)]
            assert boxes[0]["y"] == boxes[1]["y"] and boxes[1]["x"] > boxes[0]["x"]
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()
    assert SCREENSHOT.read_bytes()[:4] == b"\x89PNG"
