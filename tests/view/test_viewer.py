"""The viewer in a real headless browser (Debian's chromium via playwright): click a pixel, the plotted series
is the cube's at that pixel. Plus the server's HTTP rules (Host/Origin, read-only, no path traversal)."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from insarcloud.io import make_frame_dataset, write_new_cube, write_stage_output
from insarcloud.view.server import make_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
FRAME = "012A_05443_131313"
SCREENSHOT_DIR = Path("/tmp/insarcloud-view")
NY, NX, ND = 60, 80, 14


def _frame_cube(url: str, storage_options: dict | None) -> dict[str, xr.Dataset]:
    rng = np.random.default_rng(7)
    lat = np.round(31.6 - 0.001 * np.arange(NY), 3)
    lon = np.round(90.0 + 0.001 * np.arange(NX), 3)
    dates = pd.date_range("2020-01-03", periods=ND, freq="12D").values
    pairs = [f"{pd.Timestamp(a):%Y%m%d}_{pd.Timestamp(b):%Y%m%d}" for a, b in zip(dates[:-1], dates[1:], strict=True)]
    pairs += [f"{pd.Timestamp(a):%Y%m%d}_{pd.Timestamp(b):%Y%m%d}" for a, b in zip(dates[:-2], dates[2:], strict=True)]
    npair = len(pairs)
    root = make_frame_dataset(frame=FRAME, pairs=pairs, lat=lat, lon=lon, phase=np.zeros((npair, NY, NX)),
                              coh=np.ones((npair, NY, NX)))
    write_new_cube(root, url, storage_options)
    t = (dates - dates[0]) / np.timedelta64(1, "D") / 365.25
    yy, xx = np.meshgrid(np.arange(NY), np.arange(NX), indexing="ij")
    vel = (0.2 * (xx - 40) - 0.1 * (yy - 30)).astype("float32")
    disp = (vel[None] * t[:, None, None] + 3 * np.sin(2 * np.pi * t)[:, None, None]
            + rng.normal(0, 0.5, (ND, NY, NX))).astype("float32")
    disp[:, 5:15, 5:20] = np.nan  # a masked patch
    vel[5:15, 5:20] = np.nan
    ts = xr.Dataset({"displacement": (("date", "y", "x"), disp, {"units": "mm"}),
                     "velocity": (("y", "x"), vel, {"units": "mm/yr", "long_name": "LOS velocity"}),
                     "velocity_std": (("y", "x"), np.full((NY, NX), 0.4, "float32"), {"units": "mm/yr"}),
                     "residual_rms": (("y", "x"), rng.uniform(0.5, 2, (NY, NX)).astype("float32"), {"units": "mm"}),
                     "n_pairs_used": (("y", "x"), np.full((NY, NX), npair, "int32"))},
                    coords={"date": dates, "y": lat, "x": lon},
                    attrs={"ref_y": 40, "ref_x": 50, "ref_lat": float(lat[40]), "ref_lon": float(lon[50])})
    write_stage_output(ts, url, "ts_quality_closure", stage="invert", params={"w": "qc"},
                       storage_options=storage_options)
    quality = xr.Dataset({"quality": (("pair", "y", "x"), rng.uniform(0, 1, (npair, NY, NX)).astype("float32"))},
                         coords={"pair": np.array(pairs, dtype=object), "y": lat, "x": lon})
    write_stage_output(quality, url, "quality", stage="quality", params={}, storage_options=storage_options)
    noise = xr.Dataset({"series_std": (("y", "x"), rng.uniform(1, 3, (NY, NX)).astype("float32"), {"units": "mm"})},
                       coords={"y": lat, "x": lon})
    write_stage_output(noise, url, "noise", stage="noise", params={}, storage_options=storage_options)
    fdates = pd.date_range(pd.Timestamp(dates[-1]) + pd.Timedelta(days=12), periods=6, freq="12D").values
    fc = xr.Dataset({"displacement": (("forecast_date", "y", "x"),
                                      rng.normal(0, 3, (6, NY, NX)).astype("float32"), {"units": "mm"})},
                    coords={"forecast_date": fdates, "y": lat, "x": lon}, attrs={"model": "gler"})
    write_stage_output(fc, url, "forecast", stage="forecast", params={}, storage_options=storage_options)
    return {"ts": ts, "quality": quality, "noise": noise, "forecast": fc}


def _area_cube(url: str) -> xr.Dataset:
    rng = np.random.default_rng(1)
    lat = np.round(31.6 - 0.001 * np.arange(40), 3)
    lon = np.round(90.0 + 0.001 * np.arange(50), 3)
    dates = pd.date_range("2021-01-01", periods=9, freq="6D").values
    data = {}
    for name in ("velocity_A", "velocity_D", "velocity_east", "velocity_up", "velocity_std_A", "velocity_std_D",
                 "velocity_east_std", "velocity_up_std"):
        data[name] = (("y", "x"), rng.normal(0, 2, (40, 50)).astype("float32"), {"units": "mm/yr"})
    for name in ("displacement_A", "displacement_D", "displacement_east", "displacement_up"):
        data[name] = (("date", "y", "x"), rng.normal(0, 4, (9, 40, 50)).astype("float32"), {"units": "mm"})
    for name in ("displacement_east_std", "displacement_up_std"):
        data[name] = (("y", "x"), rng.uniform(1, 2, (40, 50)).astype("float32"), {"units": "mm"})
    area = xr.Dataset(data, coords={"date": dates, "y": lat, "x": lon},
                      attrs={"mosaic": json.dumps({"reference_area": [90.01, 31.58, 90.02, 31.59]})})
    write_stage_output(area, url, "", stage="mosaic", params={})
    return area


@pytest.fixture()
def frame_server(tmp_path: Path) -> Iterator[tuple[str, dict[str, xr.Dataset]]]:
    url = str(tmp_path / f"{FRAME}.zarr")
    data = _frame_cube(url, None)
    server, _ = make_server(url)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", data
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _request(base: str, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    host, port = base.split("//")[1].strip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest(method, path, skip_host=bool(headers and "Host" in headers))
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_server_rules(frame_server) -> None:  # type: ignore[no-untyped-def]
    base, data = frame_server
    assert _request(base, "GET", "/")[0] == 200
    assert _request(base, "GET", "/static/app.js")[0] == 200
    for bad in ("/static/../server.py", "/static/..%2fserver.py", "/../../etc/passwd", "/static/data.py",
                "/static//etc/passwd"):
        assert _request(base, "GET", bad)[0] == 404, bad
    # a foreign Host (DNS rebinding) is refused on every method; non-GET methods are refused
    assert _request(base, "GET", "/api/meta", {"Host": "evil.example:80"})[0] == 403
    assert _request(base, "POST", "/api/pixel?y=1&x=1", {"Origin": "http://evil.example"})[0] == 403
    assert _request(base, "POST", "/api/pixel?y=1&x=1")[0] == 405
    assert _request(base, "DELETE", "/")[0] == 405
    # bad pixel indices are a 400 naming the problem
    code, body = _request(base, "GET", f"/api/pixel?y={NY}&x=0")
    assert code == 400 and b"outside" in body
    assert _request(base, "GET", "/api/pixel?y=-1&x=0")[0] == 400
    assert _request(base, "GET", "/api/map.png?layer=phase")[0] == 400
    code, body = _request(base, "GET", "/api/pixel?y=20&x=30")
    p = json.loads(body)
    np.testing.assert_allclose(np.array(p["series"][0]["values"], float),
                               data["ts"]["displacement"].values[:, 20, 30], atol=1e-4)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium")
def test_click_a_pixel_plots_its_series(frame_server) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    base, data = frame_server
    ts = data["ts"]
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(base)
            page.wait_for_selector("body[data-ready='1']", timeout=30000)
            # the map is a real PNG at the cube's size (no stride here), the reference point is marked
            assert page.evaluate("document.getElementById('map').naturalWidth") == NX
            ref = page.locator("#refmark")
            assert ref.get_attribute("data-y") == "40" and ref.get_attribute("data-x") == "50"
            assert float(page.get_attribute("#colorbar", "data-vmax")) > 0
            assert "masked 3%" in page.text_content("#colorbar")  # the 10 x 15 NaN patch of 60 x 80: 3.1%

            # click at the centre of pixel (y=22, x=61) of the map
            box = page.locator("#overlay").bounding_box()
            iy, ix = 22, 61
            page.mouse.click(box["x"] + (ix + 0.5) * box["width"] / NX, box["y"] + (iy + 0.5) * box["height"] / NY)
            page.wait_for_selector(f"body[data-pixel='{iy},{ix}']", timeout=30000)
            # the plotted points (SVG data attributes) are the cube's values at that pixel
            pts = page.eval_on_selector_all(
                "#chart circle[data-series='LOS']", "els => els.map(e => [e.dataset.date, +e.dataset.value])")
            want = ts["displacement"].values[:, iy, ix]
            assert [d for d, _ in pts] == [str(np.datetime64(d, "D")) for d in ts["date"].values]
            np.testing.assert_allclose([v for _, v in pts], want, atol=1e-4)
            # precision bars from the noise group, the fitted rate = the ts velocity
            stds = page.eval_on_selector_all("#chart line.err", "els => els.map(e => +e.dataset.std)")
            np.testing.assert_allclose(stds, data["noise"]["series_std"].values[iy, ix], atol=1e-4)
            rate = float(page.get_attribute("#chart line.fit", "data-rate"))
            assert rate == pytest.approx(float(ts["velocity"].values[iy, ix]), abs=1e-3)
            values_js = "els => els.map(e => +e.dataset.value)"
            fc = page.eval_on_selector_all("#chart circle[data-series='forecast']", values_js)
            np.testing.assert_allclose(fc, data["forecast"]["displacement"].values[:, iy, ix], atol=1e-4)
            q = page.eval_on_selector_all("#pairs line.pair",
                                          "els => els.map(e => [e.dataset.pair, +e.dataset.quality])")
            assert [n for n, _ in q] == list(data["quality"]["pair"].values)
            np.testing.assert_allclose([v for _, v in q], data["quality"]["quality"].values[:, iy, ix], atol=1e-4)
            page.screenshot(path=str(SCREENSHOT_DIR / "viewer-frame.png"), full_page=True)

            # a masked pixel: no points, the map says masked, nothing breaks
            page.evaluate("window.viewer.loadPixel(8, 10)")
            page.wait_for_selector("body[data-pixel='8,10']", timeout=30000)
            assert page.locator("#chart circle[data-series='LOS']").count() == 0
            assert "velocity n/a" in page.inner_text("#info")
            # another layer redraws the map and keeps working
            page.select_option("#layer", "velocity_std")
            page.wait_for_selector("#colorbar[data-layer='velocity_std']", timeout=30000)
            assert errors == []
        finally:
            browser.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium")
def test_area_cube_shows_los_up_east(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    url = str(tmp_path / "areas" / "t.zarr")
    area = _area_cube(url)
    server, view = make_server(url)
    assert view.kind == "area"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1300, "height": 900})
                page.goto(base)
                page.wait_for_selector("body[data-ready='1']", timeout=30000)
                assert page.locator("#refbox").count() == 1
                box = page.locator("#overlay").bounding_box()
                iy, ix = 12, 33
                page.mouse.click(box["x"] + (ix + 0.5) * box["width"] / 50, box["y"] + (iy + 0.5) * box["height"] / 40)
                page.wait_for_selector(f"body[data-pixel='{iy},{ix}']", timeout=30000)
                for label, var in (("LOS ascending", "displacement_A"), ("LOS descending", "displacement_D"),
                                   ("up", "displacement_up"), ("east", "displacement_east")):
                    got = page.eval_on_selector_all(f"#chart circle[data-series='{label}']",
                                                    "els => els.map(e => +e.dataset.value)")
                    np.testing.assert_allclose(got, area[var].values[:, iy, ix], atol=1e-4, err_msg=label)
                stds = page.eval_on_selector_all("#chart g[data-name='up'] line.err",
                                                 "els => els.map(e => +e.dataset.std)")
                np.testing.assert_allclose(stds, area["displacement_up_std"].values[iy, ix], atol=1e-4)
                page.screenshot(path=str(SCREENSHOT_DIR / "viewer-area.png"), full_page=True)
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium")
def test_viewer_on_a_mosaicked_area(tmp_path: Path) -> None:
    """The mosaic's own area cube (A + D frames of a known east/up motion): the viewer plots its up series."""
    from playwright.sync_api import sync_playwright

    from insarcloud.mosaic.area import run_mosaic
    from tests.mosaic.test_series import E_A, E_D, LON, N_A, N_D, REF_BOX, U_A, U_D, _frame, _truth

    dates = pd.date_range("2020-01-01", periods=30, freq="12D").values
    urls = [str(tmp_path / f"{f}.zarr") for f in ("012A_05443_131313", "121D_05442_131313")]
    _frame(urls[0], "012A_05443_131313", LON, dates, (E_A, N_A, U_A), True, None)
    _frame(urls[1], "121D_05442_131313", LON, dates + np.timedelta64(6, "D"), (E_D, N_D, U_D), True, None)
    area = str(tmp_path / "areas" / "demo.zarr")
    run_mosaic(urls, area, ts_group="ts_quality", reference_box=REF_BOX, precision_group=None)
    ds = xr.open_zarr(area)
    server, view = make_server(area)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1300, "height": 900})
                page.goto(base)
                page.wait_for_selector("body[data-ready='1']", timeout=30000)
                box = page.locator("#overlay").bounding_box()
                iy, ix = 30, 80  # in the subsiding, east-moving patch
                ny, nx = ds.sizes["y"], ds.sizes["x"]
                page.mouse.click(box["x"] + (ix + 0.5) * box["width"] / nx, box["y"] + (iy + 0.5) * box["height"] / ny)
                page.wait_for_selector(f"body[data-pixel='{iy},{ix}']", timeout=30000)
                got = page.eval_on_selector_all("#chart circle[data-series='up']",
                                                "els => els.map(e => +e.dataset.value)")
                np.testing.assert_allclose(got, ds["displacement_up"].values[:, iy, ix], atol=1e-4)
                # and that is the truth resampled to the common dates (the seasonal term makes the
                # 6-day interpolation inexact by < 0.1 mm here)
                _, up = _truth(ds["date"].values, ds.y.values, ds.x.values, True)
                up = up - up[:1]
                assert np.max(np.abs(np.array(got) - up[:, iy, ix])) < 0.15
                page.screenshot(path=str(SCREENSHOT_DIR / "viewer-mosaic.png"), full_page=True)
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
