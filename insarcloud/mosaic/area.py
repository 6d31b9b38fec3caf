"""The mosaic stage: frame cubes' velocity maps -> one area cube on a common grid.

Reads each frame's ``ts_<weights>`` group (velocity, velocity_std) and LOS unit vectors, places frames on
the area grid, ties frames of one pass direction by least squares over their overlaps, ties directions to
GNSS (when a CSV is given) or to a common reference area, combines overlapping frames by inverse variance,
and decomposes ascending + descending into east and up. Writes ``areas/{name}.zarr`` through
``insarcloud.io`` with its parameters and per-frame corrections in attributes.
"""

from __future__ import annotations

import csv
import io as _io
import json
import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

from insarcloud.errors import CubeError, NetworkError
from insarcloud.io import (
    mark_stage_complete,
    open_cube,
    read_marker,
)
from insarcloud.io.root import plan_root_output, replace_root
from insarcloud.io.storage import read_bytes
from insarcloud.mosaic.kernels import (
    Grid,
    area_grid,
    combine,
    correction_map,
    decompose_east_up,
    frame_offsets,
    gnss_tie,
    place,
    reference_offset,
)

log = logging.getLogger(__name__)


class FrameMaps(NamedTuple):
    frame: str
    direction: str
    velocity: np.ndarray
    velocity_std: np.ndarray
    los_e: np.ndarray
    los_n: np.ndarray
    los_u: np.ndarray


def _los_fallback(ds: xr.Dataset, name: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """LOS components when the frame lacks E/N/U files: from heading and incidence (LiCSAR metadata);
    a ``shape`` array (default: the frame's)."""
    heading = np.deg2rad(float(ds.attrs.get("heading_deg", np.nan)))
    inc = np.deg2rad(float(ds.attrs.get("incidence_deg", np.nan)))
    look = heading + np.pi / 2  # Sentinel-1 looks right of the flight direction
    comp = {"los_e": -np.sin(inc) * np.sin(look), "los_n": -np.sin(inc) * np.cos(look), "los_u": np.cos(inc)}[name]
    return np.full(shape or (ds.sizes["y"], ds.sizes["x"]), comp, dtype="float32")


def load_frame(cube_url: str, ts_group: str | None, storage_options: dict[str, Any] | None = None,
               precision_group: str | None = "noise") -> tuple[FrameMaps, np.ndarray, np.ndarray]:
    """Velocity, its std and LOS vectors of one frame (numpy), with its lat/lon.

    When the frame's ``precision_group`` (the noise stage's output) is complete, its velocity and
    ``velocity_std`` are used where finite: the GLS velocity under the estimated temporal and spatial noise
    model and its honest precision. The ts group's ``velocity_std`` assumes white noise scaled by the residual
    variance, which is several times too small for atmospheric noise (issue 7; the demo's truth shows it), and
    every downstream weight and east/up precision inherits it.
    """
    from insarcloud.io import stages

    # the invert and noise stages' current groups (docs/STAGES.md); a name picks that kind's current output
    ts_group = stages.input_group(cube_url, "invert", ts_group, storage_options)
    precision_group = precision_group and stages.optional_input_group(cube_url, "noise", precision_group,
                                                                      storage_options)
    root = open_cube(cube_url, storage_options)
    ts = open_cube(cube_url, storage_options, group=ts_group)
    los = {n: (root[n].values if n in root else _los_fallback(root, n)) for n in ("los_e", "los_n", "los_u")}
    frame = str(root.attrs.get("frame"))
    vel = ts["velocity"].values.astype("float32")
    std = ts["velocity_std"].values.astype("float32")
    if precision_group and (read_marker(cube_url, precision_group, storage_options) or {}).get("complete"):
        pg = open_cube(cube_url, storage_options, group=precision_group)
        if {"velocity", "velocity_std"} <= set(pg.data_vars):
            pv, ps = pg["velocity"].values.astype("float32"), pg["velocity_std"].values.astype("float32")
            ok = np.isfinite(pv) & np.isfinite(ps) & (ps > 0)
            vel, std = np.where(ok, pv, vel), np.where(ok, ps, std)
            log.info("%s: velocity and precision from %s at %.0f%% of pixels", frame, precision_group,
                     100 * ok.mean())
    return (FrameMaps(frame, frame[3:4], vel, std, los["los_e"], los["los_n"], los["los_u"]),
            root["y"].values, root["x"].values)


def read_gnss_csv(url: str, storage_options: dict[str, Any] | None = None) -> list[dict[str, float]]:
    """GNSS velocities: columns station, lon, lat, ve, vn, vu and optional sigma_e, sigma_n, sigma_u (mm/yr)."""
    text = read_bytes(url, storage_options).decode()
    rows = []
    for n, row in enumerate(csv.DictReader(_io.StringIO(text)), 2):
        try:
            rec = {k: float(row[k]) for k in ("lon", "lat", "ve", "vn", "vu")}
        except (KeyError, ValueError) as exc:
            raise CubeError(f"{url} line {n}: needs numeric lon, lat, ve, vn, vu ({exc})") from exc
        for k in ("sigma_e", "sigma_n", "sigma_u"):
            if row.get(k):
                rec[k] = float(row[k])
        rec["station"] = row.get("station", f"st{n}")  # type: ignore[assignment]
        rows.append(rec)
    return rows


def _nanmean0(a: np.ndarray) -> np.ndarray:
    """Mean over axis 0 ignoring NaN; NaN (without a warning) where every value is NaN."""
    n = np.isfinite(a).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.nansum(a, 0) / np.maximum(n, 1), np.nan)


def mosaic_arrays(frames: Sequence[tuple[FrameMaps, np.ndarray, np.ndarray]], *, bbox: Sequence[float] | None = None,
                  ramp: bool = False, min_overlap: int = 100, gnss: list[dict] | None = None,
                  reference_box: Sequence[float] | None = None) -> tuple[xr.Dataset, dict[str, Any]]:
    """Mosaic frames (numpy in, xarray out). Returns the area dataset and a JSON-able summary.

    The whole-array reference: every frame placed on the whole area grid in memory (~335 B per area pixel +
    ~25 B per frame x area pixel). ``run_mosaic`` uses the chunked path (:mod:`insarcloud.mosaic.chunked`),
    which gives the same numbers with the memory of a few area chunks; this stays for small areas and tests.
    """
    extents = [(lon.min(), lat.min(), lon.max(), lat.max()) for _, lat, lon in frames]
    grid = area_grid(extents, bbox=tuple(bbox) if bbox is not None else None)
    placed = [(f, place(grid, lat, lon, np.stack([f.velocity, f.velocity_std, f.los_e, f.los_n, f.los_u])))
              for f, lat, lon in frames]
    summary: dict[str, Any] = {"frames": {}, "directions": {}}
    data: dict[str, Any] = {}
    by_dir: dict[str, list[tuple[FrameMaps, np.ndarray]]] = {}
    for f, arr in placed:
        by_dir.setdefault(f.direction, []).append((f, arr))
    dir_maps: dict[str, dict[str, np.ndarray]] = {}
    for d, items in sorted(by_dir.items()):
        maps = [a[0] for _, a in items]
        sol = frame_offsets(maps, grid, ramp=ramp, min_overlap=min_overlap)
        corrected = [m - correction_map(sol, k, grid) for k, m in enumerate(maps)]
        vel, std, count = combine(corrected, [a[1] for _, a in items])
        # float32 here (what the area cube stores): the GNSS tie reads the same numbers in both paths
        los = {c: _nanmean0(np.stack([a[i] for _, a in items])).astype("float32") for i, c in
               ((2, "los_e"), (3, "los_n"), (4, "los_u"))}
        dir_maps[d] = {"velocity": vel, "velocity_std": std, "count": count, **los}
        for k, (f, _) in enumerate(items):
            summary["frames"][f.frame] = {"direction": d, "offset_mm_yr": float(sol.offsets[k]),
                                          "offset_std_mm_yr": float(sol.offsets_std[k]),
                                          "ramp_mm_yr_per_deg": [float(v) for v in sol.ramps[k]]}
        summary["directions"][d] = {"frames": [f.frame for f, _ in items], "overlap_rms_before": sol.overlap_rms_before,
                                    "overlap_rms_after": sol.overlap_rms_after, "edges": sol.edges}
    # Datum: GNSS when given, else a common reference area seen by every direction.
    if gnss:
        for d, m in dir_maps.items():
            tie = gnss_tie(m["velocity"], grid, gnss, m["los_e"], m["los_n"], m["los_u"])
            m["velocity"] = m["velocity"] - tie.offset
            summary["directions"][d]["datum"] = {"gnss": tie._asdict()}
    else:
        region = _reference_region(grid, dir_maps, reference_box)
        for d, m in dir_maps.items():
            off = reference_offset(m["velocity"], region)
            m["velocity"] = m["velocity"] - off
            summary["directions"][d]["datum"] = {"reference_area_median_removed": off}
        ys, xs = np.nonzero(region)
        summary["reference_area"] = [float(grid.lon[xs.min()]), float(grid.lat[ys.max()]),
                                     float(grid.lon[xs.max()]), float(grid.lat[ys.min()])]
    for d, m in dir_maps.items():
        data[f"velocity_{d}"] = m["velocity"]
        data[f"velocity_std_{d}"] = m["velocity_std"]
        data[f"frame_count_{d}"] = m["count"]
        for c in ("los_e", "los_n", "los_u"):
            data[f"{c}_{d}"] = m[c].astype("float32")
    if len(dir_maps) >= 2:
        dec = decompose_east_up([m["velocity"] for m in dir_maps.values()],
                                [m["velocity_std"] for m in dir_maps.values()],
                                [m["los_e"] for m in dir_maps.values()], [m["los_u"] for m in dir_maps.values()])
        data.update(velocity_east=dec.east, velocity_up=dec.up, velocity_east_std=dec.east_std,
                    velocity_up_std=dec.up_std)
    ds = xr.Dataset({k: (("y", "x"), v) for k, v in data.items()},
                    coords={"y": grid.lat, "x": grid.lon, "lat": ("y", grid.lat), "lon": ("x", grid.lon)})
    units = {"velocity": "mm/yr", "frame_count": "1", "los": "1"}
    for name in ds.data_vars:
        ds[name].attrs["units"] = next((u for k, u in units.items() if name.startswith(k)), "mm/yr")
        if name.startswith("velocity_") and name[-2:] in ("_A", "_D"):
            ds[name].attrs["long_name"] = f"LOS velocity, {'ascending' if name.endswith('A') else 'descending'}"
    for name in ("velocity_east", "velocity_up"):
        if name in ds:
            ds[name].attrs["long_name"] = f"{name.split('_')[1]} velocity (north neglected)"
    ds.attrs["los_sign_convention"] = "LOS velocity positive toward the satellite; up positive upward"
    ds.attrs["mosaic"] = json.dumps(summary, default=float)
    return ds, summary


def _reference_region(grid: Grid, dir_maps: dict[str, dict[str, np.ndarray]],
                      box: Sequence[float] | None) -> np.ndarray:
    if box is not None:
        lon_ok = (grid.lon >= box[0]) & (grid.lon <= box[2])
        lat_ok = (grid.lat >= box[1]) & (grid.lat <= box[3])
        return lat_ok[:, None] & lon_ok[None, :]
    seen = np.all([np.isfinite(m["velocity"]) for m in dir_maps.values()], axis=0)
    if not seen.any():
        raise NetworkError("no pixel is seen by every pass direction: give a reference_box or GNSS")
    # The most precise 51 x 51 window seen by every direction: a small area, as LiCSBAS' reference.
    std = np.max(np.stack([np.where(seen, m["velocity_std"], np.inf) for m in dir_maps.values()]), axis=0)
    std = np.where(np.isfinite(std), std, np.nan)
    ys, xs = np.nonzero(seen)
    cy, cx = int(np.median(ys)), int(np.median(xs))
    best, score = (cy, cx), np.inf
    for y in range(ys.min(), ys.max() + 1, 10):
        for x in range(xs.min(), xs.max() + 1, 10):
            win = std[max(0, y - 25):y + 26, max(0, x - 25):x + 26]
            if np.isfinite(win).mean() < 0.8:
                continue
            s = float(np.median(win[np.isfinite(win)]))
            if s < score:
                best, score = (y, x), s
    region = np.zeros(seen.shape, bool)
    region[max(0, best[0] - 25):best[0] + 26, max(0, best[1] - 25):best[1] + 26] = True
    return region & seen


def run_mosaic(cube_urls: Sequence[str], area_url: str, *, ts_group: str | None = None,
               bbox: Sequence[float] | None = None, ramp: bool = False, min_overlap: int = 100,
               gnss_csv: str | None = None, reference_box: Sequence[float] | None = None,
               precision_group: str | None = "noise", storage_options: dict[str, Any] | None = None,
               series: bool = True, series_tile: int | None = None, memory_budget: int | None = None,
               chunk: int | None = None) -> dict[str, Any]:
    """Mosaic the frames' ``ts_group`` velocities into ``area_url``'s root; skip when done.

    ``precision_group``: take velocity and precision from this group where a frame has it complete (see
    :func:`load_frame`); None uses the ts group's white-noise precision only.
    ``series``: also write the area displacement series (``displacement_A/D``, ``displacement_east/up`` on
    common dates, :mod:`insarcloud.mosaic.series`) when every frame's ts group has a ``displacement``;
    computed and written one ``series_tile`` area tile at a time (default: from the number of dates,
    :func:`insarcloud.mosaic.area_series.series_tile_for`).
    ``memory_budget`` (bytes, default :data:`insarcloud.mosaic.chunked.DEFAULT_MEMORY_BUDGET`) sets the area
    chunk and how many chunks run at once; ``chunk`` forces the chunk side (:mod:`insarcloud.mosaic.chunked`).
    Neither changes the numbers, so neither is a parameter of the output.
    """
    from insarcloud.io import stages

    # the fingerprints of the exact groups read: a frame whose invert or noise output changed redoes the mosaic
    inputs = [(read_marker(u, stages.input_group(u, "invert", ts_group, storage_options), storage_options)
               or {}).get("params_hash") for u in cube_urls]
    if precision_group:
        inputs += [(read_marker(u, g, storage_options) or {}).get("params_hash") if g else None for u in cube_urls
                   for g in [stages.optional_input_group(u, "noise", precision_group, storage_options)]]
    params = {"cubes": list(cube_urls), "ts_group": ts_group, "bbox": list(bbox) if bbox else None, "ramp": ramp,
              "min_overlap": min_overlap, "gnss_csv": gnss_csv, "reference_box": reference_box,
              "precision_group": precision_group, "inputs": inputs}
    if series:
        params["series"] = True
    # One writer per area cube: a second area job waits (INSARCLOUD_LEASE_WAIT_S) or is refused naming the
    # owner; after waiting, the plan below sees the first job's mosaic and skips.
    from insarcloud.io.lease import hold
    from insarcloud.mosaic.chunked import DEFAULT_MEMORY_BUDGET

    with hold(area_url, "root", storage_options, job="mosaic"):
        return _run_mosaic(cube_urls, area_url, params, ts_group=ts_group, bbox=bbox, ramp=ramp,
                           min_overlap=min_overlap, gnss_csv=gnss_csv, reference_box=reference_box,
                           precision_group=precision_group, storage_options=storage_options, series=series,
                           series_tile=series_tile, memory_budget=memory_budget or DEFAULT_MEMORY_BUDGET,
                           chunk=chunk)


def _run_mosaic(cube_urls: Sequence[str], area_url: str, params: dict[str, Any], *, ts_group: str | None,
                bbox: Sequence[float] | None, ramp: bool, min_overlap: int, gnss_csv: str | None,
                reference_box: Sequence[float] | None, precision_group: str | None,
                storage_options: dict[str, Any] | None, series: bool,
                series_tile: int | None, memory_budget: int, chunk: int | None) -> dict[str, Any]:
    from insarcloud.mosaic.chunked import write_mosaic
    from insarcloud.mosaic.frames import LazyFrame

    # The mosaic is the area cube's root (what ``xr.open_zarr(area_url)`` shows): written complete into a
    # staging group ``mosaic_<hash>``, which then replaces the root (insarcloud.io.root): the root follows updates.
    plan = plan_root_output(area_url, "mosaic", params, storage_options)
    if plan.done and not plan.group:
        log.info("mosaic of %s already done", area_url)
        marker = read_marker(area_url, plan.group, storage_options) or {}
        return {"group": plan.group, "skipped": True, "params": marker.get("params")}
    if plan.done:  # a run stopped while replacing the root: its staged mosaic is complete
        summary = json.loads(open_cube(area_url, storage_options, group=plan.group).attrs.get("mosaic", "{}"))
        replace_root(area_url, plan.group, storage_options)
        return {**summary, "group": ""}
    # frames opened lazily: coordinates only; every map is read by windows of the area grid
    frames = [LazyFrame(u, ts_group, storage_options, precision_group) for u in cube_urls]
    grid = area_grid([f.extent for f in frames], bbox=tuple(bbox) if bbox is not None else None)
    for f in frames:
        f.on_grid(grid.lat, grid.lon)
    gnss = read_gnss_csv(gnss_csv, storage_options) if gnss_csv else None
    fs: list[Any] = []
    dates = np.zeros(0, "datetime64[ns]")
    extra = None
    if series and _all_have_series(cube_urls, ts_group, storage_options):
        from insarcloud.mosaic.area_series import FrameSeries, series_dates, series_template, series_tile_for

        fs = [FrameSeries(u, ts_group, f, f.lat, f.lon, grid.lat, grid.lon, storage_options, precision_group)
              for u, f in zip(cube_urls, frames, strict=True)]
        dates = series_dates(fs)
        series_tile = series_tile or series_tile_for(dates.size)
        directions = sorted({f.direction for f in frames})

        def extra(tmpl: xr.Dataset) -> xr.Dataset:
            return series_template(tmpl, dates, directions, series_tile)  # type: ignore[arg-type]

    summary, _ = write_mosaic(frames, grid, area_url, plan.group, params, ramp=ramp, min_overlap=min_overlap,
                              gnss=gnss, reference_box=reference_box, storage_options=storage_options,
                              memory_budget=memory_budget, chunk=chunk, extra_template=extra)
    if fs:
        from insarcloud.io.cube import open_zarr_group
        from insarcloud.mosaic.area_series import write_area_series

        area = open_cube(area_url, storage_options, group=plan.group or None, complete_only=False)
        summary["series"] = write_area_series(fs, area, summary, dates, area_url, plan.group, storage_options,
                                              series_tile)  # type: ignore[arg-type]
        open_zarr_group(area_url, plan.group or None, storage_options, mode="r+").attrs["mosaic"] = json.dumps(
            summary, default=float)
    mark_stage_complete(area_url, plan.group, storage_options, stage="mosaic", params=params)
    replace_root(area_url, plan.group, storage_options)
    summary["group"] = ""
    return summary


def _all_have_series(cube_urls: Sequence[str], ts_group: str | None, storage_options: dict[str, Any] | None
                     ) -> bool:
    from insarcloud.io import stages

    return all("displacement" in stages.open_stage(u, "invert", storage_options, requested=ts_group)
               for u in cube_urls)
