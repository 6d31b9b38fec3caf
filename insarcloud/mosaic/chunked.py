"""The mosaic by chunks of the area grid: windowed reads of the frames, windowed writes of the area cube.

The whole-array path (:func:`insarcloud.mosaic.area.mosaic_arrays`) places every frame on the whole area
grid: ~335 B per area pixel + ~25 B per (frame x area pixel) in the driver (issue 20). Here the same kernels
run on one ``chunk`` x ``chunk`` window of the area at a time, reading from each frame only the rows and
columns that fall in the window (:class:`insarcloud.mosaic.frames.LazyFrame`), and each window's results go
straight into the area group (``write_stage_region``). Four passes:

1. offsets: per direction, every pair of frames' overlap is gathered in row bands of the overlap only
   (flat area indices and differences, 12 B per overlap pixel), then :func:`kernels.solve_offsets`;
2. maps: per chunk, frames placed, corrected, combined (:func:`kernels.combine`) and LOS vectors averaged;
   the directions' velocities are written before the datum, with per-row and per-column counts of the pixels
   every direction sees (what the automatic reference area needs);
3. datum: GNSS (5 x 5 windows at the stations) or the reference area (the explicit box, or the same
   51 x 51-window scan as the whole-array path, run over tiles of scan points with a 25-pixel halo);
4. datum applied and east/up decomposed per chunk.

Chunks run in a thread pool whose size is the memory budget over one chunk's working set (an upper estimate
from the number of frames that cover any chunk), so the driver's memory is set by ``memory_budget``, not by
the area's size or its number of frames. Every per-pixel kernel is the whole-array one, so the results are the
same numbers (tests/mosaic/test_chunked.py checks equality on small areas).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

from insarcloud.errors import NetworkError
from insarcloud.mosaic.frames import LazyFrame, _values
from insarcloud.mosaic.kernels import (
    Grid,
    OffsetSolution,
    Overlap,
    combine,
    correction_map,
    decompose_east_up,
    gnss_tie,
    reference_offset,
    solve_offsets,
)

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 512
DEFAULT_MEMORY_BUDGET = 512 * 2**20  # bytes of chunk working sets in flight at once
#: upper estimates of one chunk's working set (bytes per chunk pixel): outputs and decomposition temporaries
#: per area pixel, plus a frame's read window, placed maps and combine's float64 temporaries per covering frame
BYTES_PER_AREA_PX = 400
BYTES_PER_FRAME_PX = 120
REF_HALF = 25  # the reference window is 51 x 51 pixels, scanned every 10 (as the whole-array path)
REF_STEP = 10


class ChunkPlan(NamedTuple):
    chunk: int  # area chunk side (pixels); also the Zarr chunk of the area maps
    workers: int  # chunks in flight at once
    frames_per_chunk: int  # most frames covering one chunk
    chunk_bytes: int  # estimated working set of one chunk


def plan_chunks(frames: Sequence[LazyFrame], shape: tuple[int, int], memory_budget: int,
                chunk: int | None = None) -> ChunkPlan:
    """Chunk side and concurrency from the memory budget: the largest side (512..64) whose working set fits,
    and as many chunks at once as the budget holds (at most the CPU count)."""
    sides = [chunk] if chunk else [512, 256, 128, 64]
    for side in sides:
        k = max(_covering(frames, shape, side), 1)
        nbytes = side * side * (BYTES_PER_AREA_PX + k * BYTES_PER_FRAME_PX)
        if nbytes <= memory_budget or side == sides[-1]:
            workers = int(max(1, min(os.cpu_count() or 1, memory_budget // nbytes)))
            if nbytes > memory_budget:
                log.warning("one %d px chunk of the mosaic needs ~%d MB, over the budget of %d MB", side,
                            nbytes >> 20, memory_budget >> 20)
            return ChunkPlan(side, workers, k, nbytes)
    raise AssertionError("unreachable")


def _covering(frames: Sequence[LazyFrame], shape: tuple[int, int], side: int) -> int:
    """The most frames whose footprint meets one chunk of ``side`` (from each frame's index range)."""
    ny, nx = shape
    cy, cx = -(-ny // side), -(-nx // side)
    count = np.zeros((cy, cx), int)
    for f in frames:
        ys = np.clip(f.iy, 0, ny - 1) // side
        xs = np.clip(f.ix, 0, nx - 1) // side
        count[ys.min():ys.max() + 1, xs.min():xs.max() + 1] += 1
    return int(count.max(initial=0))


def chunks_of(shape: tuple[int, int], side: int) -> list[tuple[int, int, int, int]]:
    ny, nx = shape
    return [(y0, min(ny, y0 + side), x0, min(nx, x0 + side)) for y0 in range(0, ny, side)
            for x0 in range(0, nx, side)]


def run_chunks(fn: Callable[[tuple[int, int, int, int]], Any], windows: Sequence[tuple[int, int, int, int]],
               workers: int) -> list[Any]:
    """``fn`` over the windows, at most ``workers`` at once; results in window order."""
    if workers <= 1:
        return [fn(w) for w in windows]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mosaic") as pool:
        return list(pool.map(fn, windows))


def place_window(f: LazyFrame, y0: int, y1: int, x0: int, x1: int,
                 names: tuple[str, ...]) -> np.ndarray | None:
    """(len(names), y1 - y0, x1 - x0) float32 of frame ``f`` on an area window (NaN elsewhere), or None when
    the frame does not meet it: ``kernels.place`` of the window, reading only the frame's rows and columns in it."""
    rc = f.rows_cols(y0, y1, x0, x1)
    if rc is None:
        return None
    ry, rx = rc
    vals = f.read(ry, rx, names)
    out = np.full((len(names), y1 - y0, x1 - x0), np.nan, dtype="float32")
    iy, ix = f.iy[ry] - y0, f.ix[rx] - x0
    for k, n in enumerate(names):
        out[k, iy[:, None], ix[None, :]] = vals[n]
    return out


# ----------------------------------------------------------------------------------------------------
# Pass 1: offsets from overlaps gathered by windows


def overlaps_by_window(frames: Sequence[LazyFrame], grid: Grid, band_pixels: int) -> list[Overlap]:
    """Every pair (i < j) of ``frames`` (one direction) with their common pixels, read in row bands of the
    pair's common window (``band_pixels`` area pixels per band): the same indices and differences as
    :func:`kernels.overlaps_of` on whole maps, never a whole-area or whole-frame array."""
    nx = grid.lon.size
    out = []
    for i in range(len(frames)):
        for j in range(i + 1, len(frames)):
            fi, fj = frames[i], frames[j]
            y0, y1 = max(fi.iy.min(), fj.iy.min(), 0), min(fi.iy.max(), fj.iy.max(), grid.lat.size - 1) + 1
            x0, x1 = max(fi.ix.min(), fj.ix.min(), 0), min(fi.ix.max(), fj.ix.max(), nx - 1) + 1
            idx_parts, d_parts = [], []
            if y1 > y0 and x1 > x0:
                rows = max(1, band_pixels // (x1 - x0))
                for b0 in range(int(y0), int(y1), rows):  # full-width bands keep the indices ascending
                    b1 = min(int(y1), b0 + rows)
                    vi = place_window(fi, b0, b1, int(x0), int(x1), ("velocity",))
                    vj = place_window(fj, b0, b1, int(x0), int(x1), ("velocity",))
                    if vi is None or vj is None:
                        continue
                    loc = np.flatnonzero(np.isfinite(vi[0]) & np.isfinite(vj[0]))
                    r, c = np.divmod(loc, x1 - x0)
                    idx_parts.append((r + b0) * nx + (c + x0))
                    d_parts.append(vi[0].ravel()[loc] - vj[0].ravel()[loc])
            idx = np.concatenate(idx_parts) if idx_parts else np.zeros(0, np.int64)
            diff = np.concatenate(d_parts) if d_parts else np.zeros(0, np.float32)
            out.append(Overlap(i, j, idx.astype(np.int64), diff.astype(np.float32)))
    return out


# ----------------------------------------------------------------------------------------------------
# Pass 2: the directions' maps, chunk by chunk


def _nanmean0(a: np.ndarray) -> np.ndarray:
    n = np.isfinite(a).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.nansum(a, 0) / np.maximum(n, 1), np.nan)


def direction_maps_window(frames: Sequence[LazyFrame], sol: OffsetSolution, grid: Grid, y0: int, y1: int, x0: int,
                          x1: int) -> dict[str, np.ndarray]:
    """One direction's velocity (before the datum), std, frame count and LOS vectors on an area window.

    Frames that do not meet the window are left out of the stacks; in the whole-array path they add exact
    zeros to the weighted sums (weight 0), so the numbers are the same."""
    rows, cols = slice(y0, y1), slice(x0, x1)
    shape = (y1 - y0, x1 - x0)
    corrected, stds, los = [], [], []
    for k, f in enumerate(frames):
        arr = place_window(f, y0, y1, x0, x1, ("velocity", "velocity_std", "los_e", "los_n", "los_u"))
        if arr is None:
            continue
        corrected.append(arr[0] - correction_map(sol, k, grid, rows, cols))
        stds.append(arr[1])
        los.append(arr[2:])
    if not corrected:
        nan = np.full(shape, np.nan, "float32")
        return {"velocity": nan, "velocity_std": nan.copy(), "count": np.zeros(shape, "int16"),
                **{c: nan.copy() for c in ("los_e", "los_n", "los_u")}}
    vel, std, count = combine(corrected, stds)
    stack = np.stack(los)  # (frame, 3, y, x)
    out = {"velocity": vel, "velocity_std": std, "count": count}
    for i, c in enumerate(("los_e", "los_n", "los_u")):
        out[c] = _nanmean0(stack[:, i]).astype("float32")
    return out


def _median_from_counts(counts: np.ndarray) -> int:
    """``int(np.median(v))`` of the multiset holding ``counts[i]`` copies of ``i``."""
    cum = np.cumsum(counts)
    n = int(cum[-1])
    lo = int(np.searchsorted(cum, (n - 1) // 2, side="right"))
    hi = int(np.searchsorted(cum, n // 2, side="right"))
    return int((lo + hi) / 2)


# ----------------------------------------------------------------------------------------------------
# Pass 3: the reference area (the whole-array path's scan, by tiles of scan points)


class _Reader:
    """``reader[rows, cols]`` -> numpy window of a lazily opened area variable (what ``gnss_tie`` indexes)."""

    def __init__(self, da: xr.DataArray) -> None:
        self.da = da

    def __getitem__(self, win: tuple[slice, slice]) -> np.ndarray:
        return _values(self.da.isel(y=win[0], x=win[1]))


def _seen_std(area: xr.Dataset, dirs: Sequence[str], rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray]:
    vel = [_values(area[f"velocity_{d}"].isel(y=rows, x=cols)) for d in dirs]
    seen = np.all([np.isfinite(v) for v in vel], axis=0)
    std = np.max(np.stack([np.where(seen, _values(area[f"velocity_std_{d}"].isel(y=rows, x=cols)), np.inf)
                           for d in dirs]), axis=0)
    return seen, np.where(np.isfinite(std), std, np.nan)


def auto_reference(area: xr.Dataset, dirs: Sequence[str], row_counts: np.ndarray, col_counts: np.ndarray,
                   tile_points: int, workers: int) -> tuple[slice, slice, np.ndarray]:
    """The most precise 51 x 51 window seen by every direction (``_reference_region`` of the whole-array path):
    (rows, cols, region mask on that window)."""
    if not row_counts.any():
        raise NetworkError("no pixel is seen by every pass direction: give a reference_box or GNSS")
    ny, nx = row_counts.size, col_counts.size
    ys_any, xs_any = np.flatnonzero(row_counts), np.flatnonzero(col_counts)
    ymin, ymax, xmin, xmax = ys_any[0], ys_any[-1], xs_any[0], xs_any[-1]
    best0 = (_median_from_counts(row_counts), _median_from_counts(col_counts))
    pys = np.arange(ymin, ymax + 1, REF_STEP)
    pxs = np.arange(xmin, xmax + 1, REF_STEP)
    tiles = [(a, min(pys.size, a + tile_points), b, min(pxs.size, b + tile_points))
             for a in range(0, pys.size, tile_points) for b in range(0, pxs.size, tile_points)]

    def scan(t: tuple[int, int, int, int]) -> tuple[float, int, int]:
        ty = pys[t[0]:t[1]]
        tx = pxs[t[2]:t[3]]
        r0, c0 = max(0, int(ty[0]) - REF_HALF), max(0, int(tx[0]) - REF_HALF)
        rows, cols = slice(r0, min(ny, int(ty[-1]) + REF_HALF + 1)), slice(c0, min(nx, int(tx[-1]) + REF_HALF + 1))
        _, std = _seen_std(area, dirs, rows, cols)
        best = (np.inf, -1, -1)
        for y in ty:
            for x in tx:
                win = std[max(0, y - REF_HALF) - r0:y + REF_HALF + 1 - r0, max(0, x - REF_HALF) - c0:
                          x + REF_HALF + 1 - c0]
                if np.isfinite(win).mean() < 0.8:
                    continue
                s = float(np.median(win[np.isfinite(win)]))
                if s < best[0]:
                    best = (s, int(y), int(x))
        return best

    # the whole-array scan keeps the first strict minimum in row-major order: the least (score, y, x)
    score, by, bx = min(run_chunks(scan, tiles, workers))
    cy, cx = (by, bx) if np.isfinite(score) else best0
    rows = slice(max(0, cy - REF_HALF), min(ny, cy + REF_HALF + 1))
    cols = slice(max(0, cx - REF_HALF), min(nx, cx + REF_HALF + 1))
    seen, _ = _seen_std(area, dirs, rows, cols)
    return rows, cols, seen


def box_reference(grid: Grid, box: Sequence[float]) -> tuple[slice, slice, np.ndarray]:
    """The explicit reference box as a window of the grid (the whole-array path's region)."""
    ys = np.flatnonzero((grid.lat >= box[1]) & (grid.lat <= box[3]))
    xs = np.flatnonzero((grid.lon >= box[0]) & (grid.lon <= box[2]))
    if ys.size == 0 or xs.size == 0:
        raise NetworkError(f"the reference box {list(box)} holds no pixel of the area grid")
    rows, cols = slice(int(ys[0]), int(ys[-1]) + 1), slice(int(xs[0]), int(xs[-1]) + 1)
    return rows, cols, np.ones((ys.size, xs.size), bool)


def datum(area: xr.Dataset, grid: Grid, dirs: Sequence[str], summary: dict[str, Any], *,
          gnss: list[dict] | None, reference_box: Sequence[float] | None, row_counts: np.ndarray,
          col_counts: np.ndarray, tile_points: int, workers: int) -> dict[str, float]:
    """Each direction's datum offset (mm/yr), recorded in ``summary`` as the whole-array path does."""
    offsets = {}
    if gnss:
        for d in dirs:
            tie = gnss_tie(_Reader(area[f"velocity_{d}"]), grid, gnss, _Reader(area[f"los_e_{d}"]),  # type: ignore[arg-type]
                           _Reader(area[f"los_n_{d}"]), _Reader(area[f"los_u_{d}"]))  # type: ignore[arg-type]
            offsets[d] = tie.offset
            summary["directions"][d]["datum"] = {"gnss": tie._asdict()}
        return offsets
    if reference_box is not None:
        rows, cols, region = box_reference(grid, reference_box)
    else:
        rows, cols, region = auto_reference(area, dirs, row_counts, col_counts, tile_points, workers)
    for d in dirs:
        off = reference_offset(_values(area[f"velocity_{d}"].isel(y=rows, x=cols)), region)
        offsets[d] = off
        summary["directions"][d]["datum"] = {"reference_area_median_removed": off}
    ys, xs = np.nonzero(region)
    ys, xs = ys + rows.start, xs + cols.start
    summary["reference_area"] = [float(grid.lon[xs.min()]), float(grid.lat[ys.max()]),
                                 float(grid.lon[xs.max()]), float(grid.lat[ys.min()])]
    return offsets


# ----------------------------------------------------------------------------------------------------
# Pass 4: datum applied, east/up


def final_window(area: xr.Dataset, dirs: Sequence[str], offsets: dict[str, float], y0: int, y1: int, x0: int,
                 x1: int) -> dict[str, np.ndarray]:
    """The directions' velocities after the datum and, with two or more directions, east and up."""
    rows, cols = slice(y0, y1), slice(x0, x1)
    out = {}
    for d in dirs:
        out[f"velocity_{d}"] = _values(area[f"velocity_{d}"].isel(y=rows, x=cols)) - offsets[d]
    if len(dirs) >= 2:
        get = {n: [_values(area[f"{n}_{d}"].isel(y=rows, x=cols)) for d in dirs]
               for n in ("velocity_std", "los_e", "los_u")}
        dec = decompose_east_up([out[f"velocity_{d}"] for d in dirs], get["velocity_std"], get["los_e"],
                                get["los_u"])
        out.update(velocity_east=dec.east, velocity_up=dec.up, velocity_east_std=dec.east_std,
                   velocity_up_std=dec.up_std)
    return out


# ----------------------------------------------------------------------------------------------------
# The area group's template


def map_template(grid: Grid, dirs: Sequence[str], chunk: int) -> xr.Dataset:
    """Dask placeholders of the mosaic's maps (the whole-array path's variables, names and attributes)."""
    import dask.array as da

    shape = (grid.lat.size, grid.lon.size)
    names: list[tuple[str, str]] = []
    for d in dirs:
        names += [(f"velocity_{d}", "float32"), (f"velocity_std_{d}", "float32"), (f"frame_count_{d}", "int16")]
        names += [(f"{c}_{d}", "float32") for c in ("los_e", "los_n", "los_u")]
    if len(dirs) >= 2:
        names += [(n, "float32") for n in ("velocity_east", "velocity_up", "velocity_east_std", "velocity_up_std")]
    ds = xr.Dataset({n: (("y", "x"), da.zeros(shape, dtype=t, chunks=(chunk, chunk))) for n, t in names},
                    coords={"y": grid.lat, "x": grid.lon, "lat": ("y", grid.lat), "lon": ("x", grid.lon)})
    units = {"velocity": "mm/yr", "frame_count": "1", "los": "1"}
    for name in ds.data_vars:
        ds[name].attrs["units"] = next((u for k, u in units.items() if str(name).startswith(k)), "mm/yr")
        if str(name).startswith("velocity_") and str(name)[-2:] in ("_A", "_D"):
            ds[name].attrs["long_name"] = f"LOS velocity, {'ascending' if str(name).endswith('A') else 'descending'}"
    for name in ("velocity_east", "velocity_up"):
        if name in ds:
            ds[name].attrs["long_name"] = f"{name.split('_')[1]} velocity (north neglected)"
    ds.attrs["los_sign_convention"] = "LOS velocity positive toward the satellite; up positive upward"
    return ds


# ----------------------------------------------------------------------------------------------------
# The four passes


def write_mosaic(frames: Sequence[LazyFrame], grid: Grid, area_url: str, group: str, params: dict[str, Any], *,
                 ramp: bool, min_overlap: int, gnss: list[dict] | None, reference_box: Sequence[float] | None,
                 storage_options: dict[str, Any] | None, memory_budget: int = DEFAULT_MEMORY_BUDGET,
                 chunk: int | None = None, extra_template: Callable[[xr.Dataset], xr.Dataset] | None = None
                 ) -> tuple[dict[str, Any], ChunkPlan]:
    """Create the area group (the maps, plus ``extra_template``'s variables), write the maps chunk by chunk and
    return the summary; the caller marks the group complete (after the series, when there are any)."""
    from insarcloud.io import create_stage_template, write_stage_region
    from insarcloud.io.cube import open_zarr_group

    shape = (grid.lat.size, grid.lon.size)
    plan = plan_chunks(frames, shape, memory_budget, chunk)
    windows = chunks_of(shape, plan.chunk)
    log.info("mosaic of %d frames on %d x %d px: %d chunks of %d px, %d at once (~%d MB each, budget %d MB)",
             len(frames), *shape, len(windows), plan.chunk, plan.workers, plan.chunk_bytes >> 20,
             memory_budget >> 20)
    by_dir: dict[str, list[LazyFrame]] = {}
    for f in frames:
        by_dir.setdefault(f.direction, []).append(f)
    dirs = sorted(by_dir)
    summary: dict[str, Any] = {"frames": {}, "directions": {}}
    sols: dict[str, OffsetSolution] = {}
    for d in dirs:  # pass 1
        items = by_dir[d]
        sol = solve_offsets(overlaps_by_window(items, grid, plan.chunk * plan.chunk), len(items), grid, ramp=ramp,
                            min_overlap=min_overlap)
        sols[d] = sol
        for k, f in enumerate(items):
            summary["frames"][f.frame] = {"direction": d, "offset_mm_yr": float(sol.offsets[k]),
                                          "offset_std_mm_yr": float(sol.offsets_std[k]),
                                          "ramp_mm_yr_per_deg": [float(v) for v in sol.ramps[k]]}
        summary["directions"][d] = {"frames": [f.frame for f in items], "overlap_rms_before": sol.overlap_rms_before,
                                    "overlap_rms_after": sol.overlap_rms_after, "edges": sol.edges}
    tmpl = map_template(grid, dirs, plan.chunk)
    if extra_template is not None:
        tmpl = tmpl.merge(extra_template(tmpl))
        tmpl.attrs["los_sign_convention"] = "LOS velocity positive toward the satellite; up positive upward"
    create_stage_template(tmpl, area_url, group or None, stage="mosaic", params=params,  # type: ignore[arg-type]
                          storage_options=storage_options)

    def maps(w: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:  # pass 2
        y0, y1, x0, x1 = w
        part: dict[str, Any] = {}
        seen = np.ones((y1 - y0, x1 - x0), bool)
        for d in dirs:
            m = direction_maps_window(by_dir[d], sols[d], grid, y0, y1, x0, x1)
            seen &= np.isfinite(m["velocity"])
            part.update({f"velocity_{d}": m["velocity"], f"velocity_std_{d}": m["velocity_std"],
                         f"frame_count_{d}": m["count"], **{f"{c}_{d}": m[c] for c in ("los_e", "los_n", "los_u")}})
        write_stage_region(xr.Dataset({k: (("y", "x"), v) for k, v in part.items()}), area_url, group,
                           {"y": slice(y0, y1), "x": slice(x0, x1)}, storage_options)
        return seen.sum(1), seen.sum(0)

    counts = run_chunks(maps, windows, plan.workers)
    row_counts, col_counts = np.zeros(shape[0], np.int64), np.zeros(shape[1], np.int64)
    for (y0, y1, x0, x1), (rc, cc) in zip(windows, counts, strict=True):
        row_counts[y0:y1] += rc
        col_counts[x0:x1] += cc
    from insarcloud.io import open_cube

    area = open_cube(area_url, storage_options, group=group or None, complete_only=False)
    offsets = datum(area, grid, dirs, summary, gnss=gnss, reference_box=reference_box,  # pass 3
                    row_counts=row_counts, col_counts=col_counts, tile_points=max(1, plan.chunk // REF_STEP),
                    workers=plan.workers)

    def final(w: tuple[int, int, int, int]) -> None:  # pass 4
        y0, y1, x0, x1 = w
        out = final_window(area, dirs, offsets, y0, y1, x0, x1)
        write_stage_region(xr.Dataset({k: (("y", "x"), v) for k, v in out.items()}), area_url, group,
                           {"y": slice(y0, y1), "x": slice(x0, x1)}, storage_options)

    run_chunks(final, windows, plan.workers)
    summary["chunks"] = {"chunk": plan.chunk, "workers": plan.workers, "frames_per_chunk": plan.frames_per_chunk,
                         "memory_budget_mb": memory_budget >> 20}
    import json

    open_zarr_group(area_url, group or None, storage_options, mode="r+").attrs["mosaic"] = json.dumps(
        summary, default=float)
    return summary, plan
