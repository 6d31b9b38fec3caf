"""The chunked mosaic (insarcloud.mosaic.chunked) against the whole-array path, and its memory against the area.

Equality is bit for bit (``np.array_equal`` with NaN equal, and the same summary numbers): every per-pixel
kernel is the whole-array one applied to a window, the overlap samples are the same pixels drawn by the same
random stream, and a frame left out of a window adds exact zeros to the whole-array path's weighted sums.
Only the normal-equation solve of the offsets (large frame graphs) differs by rounding: checked at 1e-9.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import xarray as xr

from insarcloud.io import make_frame_dataset, write_new_cube, write_stage_output
from insarcloud.mosaic.area import load_frame, mosaic_arrays, run_mosaic
from insarcloud.mosaic.kernels import area_grid, frame_offsets, overlaps_of, solve_offsets

VEC = {"A": (-0.62, 0.76, -0.13), "D": (0.60, 0.77, -0.12)}


def _frame(url, frame, lat, lon, offset, rng, *, holes=0.05, noise_group=False, los_files=True):
    e, u, n = VEC[frame[3]]
    yy, xx = np.meshgrid(lat, lon, indexing="ij")
    east = 4 * np.tanh((xx - xx.mean()) / 0.03)
    up = -6 * np.exp(-((xx - xx.mean()) ** 2 + (yy - yy.mean()) ** 2) / 0.002)
    shape = (lat.size, lon.size)
    v = (e * east + u * up + offset + rng.normal(0, 0.3, shape)).astype("float32")
    v[rng.random(shape) < holes] = np.nan
    statics = {"los_e": np.full(shape, e) + rng.normal(0, 0.01, shape), "los_n": np.full(shape, n),
               "los_u": np.full(shape, u) + rng.normal(0, 0.01, shape)} if los_files else {}
    ds = make_frame_dataset(frame=frame, pairs=["20200101_20200113"], lat=lat, lon=lon,
                            phase=np.zeros((1, *shape), "float32"), coh=np.ones((1, *shape), "float32"),
                            statics=statics)
    if not los_files:
        ds.attrs.update(heading_deg=-10.0 if frame[3] == "A" else -170.0, incidence_deg=39.0)
    write_new_cube(ds, url)
    std = rng.uniform(0.2, 0.6, shape).astype("float32")
    ts = xr.Dataset({"velocity": (("y", "x"), v), "velocity_std": (("y", "x"), std)}, coords={"y": lat, "x": lon})
    write_stage_output(ts, url, "ts_quality", stage="invert", params={"weights": "quality"})
    if noise_group:  # the GLS velocity and precision where the noise stage has them (half the frame)
        nv = np.where(np.arange(shape[0])[:, None] < shape[0] // 2, v + 0.1, np.nan).astype("float32")
        nz = xr.Dataset({"velocity": (("y", "x"), nv), "velocity_std": (("y", "x"), std * 2)},
                        coords={"y": lat, "x": lon})
        write_stage_output(nz, url, "noise", stage="noise", params={"p": 1})
    return url


def _axis(start, n, step):
    return np.round(start + step * np.arange(n), 3)


def _frames(root, rng):
    """Two ascending frames (overlapping, one with a noise group), two descending (one without LOS files)."""
    spec = [("012A_05443_131313", 31.6, 90.0, 0.0, True, True),
            ("012A_05441_131313", 31.66, 90.02, 3.0, False, True),
            ("121D_05442_131313", 31.64, 90.04, -2.0, False, True),
            ("121D_05440_131313", 31.57, 90.07, 1.5, False, False)]
    urls = []
    for frame, lat0, lon0, off, noise, los in spec:
        urls.append(_frame(f"file://{root}/{frame}.zarr", frame, _axis(lat0, 90, -0.001), _axis(lon0, 110, 0.001),
                           off, rng, noise_group=noise, los_files=los))
    return urls


def _assert_same(ds_w, summary_w, area_url, summary_c):
    ds_c = xr.open_zarr(area_url, consolidated=False)
    assert set(ds_w.data_vars) <= set(ds_c.data_vars)
    np.testing.assert_array_equal(ds_w["y"].values, ds_c["y"].values)
    np.testing.assert_array_equal(ds_w["x"].values, ds_c["x"].values)
    for name in ds_w.data_vars:
        a, b = ds_w[name].values, ds_c[name].values
        assert a.dtype == b.dtype, name
        assert np.array_equal(a, b, equal_nan=True), (name, np.nanmax(np.abs(a - b)))
    assert {k: v for k, v in summary_c.items() if k not in ("chunks", "group")} == summary_w


@pytest.mark.parametrize(("chunk", "ramp", "datum"), [(32, False, "auto"), (48, True, "box"), (64, False, "gnss")])
def test_chunked_mosaic_equals_the_whole_array_kernels(tmp_path, chunk, ramp, datum):
    rng = np.random.default_rng(3)
    urls = _frames(tmp_path, rng)
    gnss_csv, gnss, box = None, None, None
    if datum == "gnss":
        gnss_csv = tmp_path / "gnss.csv"
        gnss_csv.write_text("station,lon,lat,ve,vn,vu\nS1,90.05,31.58,1.0,0.5,-2.0\nS2,90.09,31.55,0.0,0.0,1.0\n")
        from insarcloud.mosaic.area import read_gnss_csv

        gnss_csv = f"file://{gnss_csv}"
        gnss = read_gnss_csv(gnss_csv)
    elif datum == "box":
        box = (90.06, 31.54, 90.09, 31.57)
    frames = [load_frame(u, "ts_quality") for u in urls]
    ds_w, summary_w = mosaic_arrays(frames, ramp=ramp, min_overlap=100, gnss=gnss, reference_box=box)
    area = f"file://{tmp_path}/area.zarr"
    summary_c = run_mosaic(urls, area, ts_group="ts_quality", ramp=ramp, gnss_csv=gnss_csv, reference_box=box,
                           series=False, chunk=chunk, memory_budget=8 * 2**20)
    assert summary_c["chunks"]["chunk"] == chunk
    _assert_same(ds_w, summary_w, area, summary_c)
    ds_c = xr.open_zarr(area, consolidated=False)
    assert ds_c["velocity_up"].encoding["chunks"] == (chunk, chunk)
    assert np.isfinite(ds_c["velocity_up"].values).sum() > 1000  # the comparison is not of empty maps


def _frame_offsets_before(maps, grid, *, ramp=False, fixed=0, min_overlap=50, max_samples=20000, rng=None):
    """The offsets solver as it was before the overlaps were gathered by windows (commit f66583a), verbatim
    but for the gauge check: the reference that the refactored one must reproduce bit for bit."""
    rng = rng or np.random.default_rng(0)
    n = len(maps)
    npar = 3 if ramp else 1
    yy, xx = np.meshgrid(grid.lat - grid.lat.mean(), grid.lon - grid.lon.mean(), indexing="ij")
    rows, rhs, before = [], [], []
    for i in range(n):
        for j in range(i + 1, n):
            both = np.isfinite(maps[i]) & np.isfinite(maps[j])
            if int(both.sum()) < min_overlap:
                continue
            idx = np.flatnonzero(both)
            if idx.size > max_samples:
                idx = rng.choice(idx, max_samples, replace=False)
            d = (maps[i].ravel()[idx] - maps[j].ravel()[idx]).astype(float)
            before.append(d)
            a = np.zeros((idx.size, n * npar))
            basis = [np.ones(idx.size)] + ([xx.ravel()[idx], yy.ravel()[idx]] if ramp else [])
            for q, b in enumerate(basis):
                a[:, i * npar + q] = b
                a[:, j * npar + q] = -b
            rows.append(a)
            rhs.append(d)
    a, d = np.vstack(rows), np.concatenate(rhs)
    keep = [c for c in range(n * npar) if c // npar != fixed]
    sol, *_ = np.linalg.lstsq(a[:, keep], d, rcond=None)
    params = np.zeros(n * npar)
    params[keep] = sol
    return params.reshape(n, npar), float(np.sqrt(np.mean((d - a @ params) ** 2)))


@pytest.mark.parametrize("ramp", [False, True])
def test_offsets_same_draws_and_solution_as_before(ramp):
    rng = np.random.default_rng(5)
    grid = area_grid([(90.0, 31.0, 90.299, 31.199)])
    maps = []
    for r0, r1, c0, c1, off in [(0, 120, 0, 130, 0.0), (0, 120, 100, 230, 4.0), (90, 200, 60, 300, -2.5)]:
        m = np.full((grid.lat.size, grid.lon.size), np.nan, "float32")
        m[r0:r1, c0:c1] = off + rng.normal(0, 0.3, (r1 - r0, c1 - c0))
        maps.append(m)
    # max_samples under the overlaps' sizes: the random draws are exercised
    p_before, rms_before = _frame_offsets_before(maps, grid, ramp=ramp, max_samples=700)
    sol = frame_offsets(maps, grid, ramp=ramp, max_samples=700)
    assert np.array_equal(sol.offsets, p_before[:, 0])
    if ramp:
        assert np.array_equal(sol.ramps, p_before[:, 1:3])
    assert sol.overlap_rms_after == rms_before
    # normal equations (what a large frame graph uses) agree within rounding
    normal = solve_offsets(overlaps_of(maps), 3, grid, ramp=ramp, max_samples=700, dense_limit=0)
    np.testing.assert_allclose(normal.offsets, sol.offsets, rtol=0, atol=1e-9)
    np.testing.assert_allclose(normal.ramps, sol.ramps, rtol=0, atol=1e-7)
    np.testing.assert_allclose(normal.offsets_std, sol.offsets_std, rtol=1e-6)
    assert normal.overlap_rms_after == pytest.approx(sol.overlap_rms_after, rel=1e-9)


def _big_frames(root, n, rng):
    """Two ascending n x n frames side by side (64 columns in common) and a descending one over the first."""
    urls = []
    for frame, lon0, off in (("012A_05443_131313", 90.0, 0.0), ("012A_05441_131313", 90.0 + 0.001 * (n - 64), 2.0),
                             ("121D_05442_131313", 90.0, -1.0)):
        urls.append(_frame(f"file://{root}/{frame}.zarr", frame, _axis(31.6, n, -0.001), _axis(lon0, n, 0.001),
                           off, rng, holes=0.0))
    return urls


def _traced_peak(urls, area):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        run_mosaic(urls, area, ts_group="ts_quality", series=False, chunk=128, memory_budget=16 * 2**20,
                   precision_group=None)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_driver_memory_does_not_grow_with_the_area(tmp_path):
    """Traced Python/numpy allocations of the driver (tracemalloc): a 4.4x larger area adds a small fraction of
    what the whole-array path needs for it (~335 B per area pixel, issue 20), and the peak stays far under one
    whole-area placement of the frames. Measured here: 6.0 MB at 0.11 Mpx, 6.9 MB at 0.49 Mpx."""
    rng = np.random.default_rng(0)
    peaks, pixels = {}, {}
    for n in (256, 512):
        (tmp_path / str(n)).mkdir()
        urls = _big_frames(tmp_path / str(n), n, rng)
        peaks[n] = _traced_peak(urls, f"file://{tmp_path}/{n}/area.zarr")
        pixels[n] = n * (2 * n - 64)
        ds = xr.open_zarr(f"file://{tmp_path}/{n}/area.zarr", consolidated=False)
        assert ds.sizes["y"] * ds.sizes["x"] == pixels[n]
        assert np.isfinite(ds["velocity_up"].values).sum() > 0.4 * pixels[n]
    whole_growth = 335 * (pixels[512] - pixels[256])  # what the whole-array path adds: 127 MB
    assert peaks[512] - peaks[256] < 0.05 * whole_growth, peaks
    assert peaks[512] < 3 * 5 * 4 * pixels[512] / 2, peaks  # half of kernels.place of 3 frames x 5 maps: 15 MB
