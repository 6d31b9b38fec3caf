"""Thin Dask layer: the SBAS/NSBAS kernels mapped over spatial chunks of a frame cube.

Every task holds all pairs of its pixels (``pair`` rechunked to one chunk; the cube's spatial chunks are
kept, so the rechunk only concatenates along ``pair`` inside one tile and never shuffles across workers).
One ``map_blocks`` call returns a stacked float32 block (displacement, component labels and the (y, x)
maps); the variables are slices of it, so one task per tile computes everything once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, NamedTuple

import dask.array as da
import numpy as np
import xarray as xr

from insarcloud.core.allocator import heap_task
from insarcloud.core.options import DEFAULT_INVERT_WEIGHTS
from insarcloud.errors import ConfigError, CubeError
from insarcloud.invert.closure import CLOSURE_HALO, CLOSURE_THRESHOLD, CLOSURE_WINDOW, closure_weights, loop_triplets
from insarcloud.invert.correct import CORRECTION_HALO, CORRECTION_METHODS, CORRECTION_WINDOW, correction_block
from insarcloud.invert.network import analyse_network, build_network
from insarcloud.invert.reference import ReferencePoint, choose_reference, temporal_mean, valid_count
from insarcloud.invert.sbas import DEFAULT_GAMMA, invert_pixels
from insarcloud.invert.weights import QUALITY_FLOOR, coherence_weights, quality_weights, variable_weights
from insarcloud.io import LOS_SIGN_CONVENTION, WAVELENGTH_M, phase_to_mm

log = logging.getLogger(__name__)

N_MAPS = 5  # velocity, velocity_std, residual_rms, n_pairs_used, n_components


class InversionPlan(NamedTuple):
    """What :func:`invert_dataset` decided before computing anything."""

    reference: ReferencePoint
    network_summary: str
    n_components: int
    pairs_dropped_by_reference: list[str]


#: Memory one inversion task may take (MiB): half of a 4 GiB worker thread's share at 2 threads per worker.
TASK_MEM_MB = 1024
#: Peak bytes per pixel-pair of one task (inputs, weights, the kernel's float64 temporaries); issue 20 measured
#: 4.9 GB for 676 pairs x 512 x 512 pixels, i.e. ~28 B.
TASK_BYTES_PER_PIXEL_PAIR = 28


def task_side(native: int, n_pairs: int, mem_mb: int = TASK_MEM_MB) -> int:
    """Spatial side of an inversion task: the source chunk ``native`` halved until a task of ``n_pairs``
    fits ``mem_mb`` (at least 32 px). A halving splits source chunks, never merges them: no shuffle."""
    side = max(1, native)
    while side > 32 and TASK_BYTES_PER_PIXEL_PAIR * n_pairs * side * side > mem_mb * 2**20:
        side = -(-side // 2)
    return side


@heap_task  # docs/scale.md "Worker processes and glibc's allocator": per task, not per worker
def _block_kernel(unw: np.ndarray, wts: np.ndarray | None, *, net: Any, gamma: float,
                  wavelength_m: float) -> np.ndarray:
    """(pair, y, x) block and its final weights (or None) -> (2*date + N_MAPS, y, x) float32 stack."""
    npair, ny, nx = unw.shape
    flat = unw.reshape(npair, ny * nx)
    w = None if wts is None else wts.reshape(npair, -1)
    res = invert_pixels(flat, w, net, gamma=gamma)
    nd = net.n_date
    out = np.empty((2 * nd + N_MAPS, ny * nx), np.float32)
    out[:nd] = phase_to_mm(res.displacement, wavelength_m)
    out[nd: 2 * nd] = res.component
    scale = abs(phase_to_mm(1.0, wavelength_m))
    out[2 * nd] = phase_to_mm(res.velocity, wavelength_m)
    out[2 * nd + 1] = res.velocity_std * scale
    out[2 * nd + 2] = res.residual_rms * scale
    out[2 * nd + 3] = res.n_pairs_used
    out[2 * nd + 4] = res.n_components
    return out.reshape(-1, ny, nx)


def _variable_block(v: np.ndarray, *, var: str) -> np.ndarray:
    # map_blocks takes name= as the dask key name, so the variable's name travels as var=
    return variable_weights(v, var)


def resolve_quality_floor(floor: float | None, weight_attrs: Mapping[str, Any]) -> float:
    """The quality -> weight floor: the one given, else by the export that wrote the quality map.

    A map of unwrapping errors alone (the quality group's ``quality_target`` attribute is ``unw_error``)
    is used linearly (floor 0): its low values are errors, which should lose their weight. Any other map
    (the paper's "usable pixel-pair", where decorrelation is part of "bad") gets :data:`QUALITY_FLOOR`, so
    clean decorrelated pairs keep a fifth of the weight (notes/invert.md, sessions 3-5).
    """
    if floor is not None:
        return float(floor)
    return 0.0 if str(weight_attrs.get("quality_target", "")) == "unw_error" else QUALITY_FLOOR


def weight_variable(mode: str) -> str | None:
    """The cube variable (root or group of that name) a weight mode reads; None: the unwrapped stack only."""
    return {"none": None, "closure": None, "coherence": "coh", "quality_closure": "quality"}.get(mode, mode)


def _weights_array(mode: str, root: xr.Dataset, extra: xr.Dataset | None, pairs: np.ndarray
                   ) -> xr.DataArray | None:
    name = weight_variable(mode)
    if name is None:
        return None
    src = extra if mode != "coherence" and extra is not None and name in extra else root
    if name not in src:
        raise CubeError(f"weight variable {name!r} is in neither the cube root nor its group {name!r}")
    var = src[name]
    if var.dims != ("pair", "y", "x"):
        raise CubeError(f"weight variable {name!r} must have dims (pair, y, x), has {var.dims}")
    missing = np.setdiff1d(pairs, var["pair"].values)
    if missing.size:
        raise CubeError(f"weight variable {name!r} lacks {missing.size} pair(s), e.g. {missing[0]}")
    return var.sel(pair=pairs)


def _blocks(a: Any, spatial: tuple[tuple[int, ...], ...] | None = None) -> da.Array:
    """A (pair, y, x) array as Dask blocks of every pair, on the given spatial chunks or (None) its own (a
    (y, x) array gets a leading axis of 1)."""
    d = a if isinstance(a, da.Array) else da.from_array(np.asarray(a), chunks=-1)
    d = d[None] if d.ndim == 2 else d
    return d.rechunk({0: -1} if spatial is None else {0: -1, 1: spatial[0], 2: spatial[1]})


def _count_task(unw: np.ndarray, *land: np.ndarray) -> np.ndarray:
    return valid_count(unw, land[0][0] if land else None)[None]


def _mean_task(coh: np.ndarray) -> np.ndarray:
    return temporal_mean(coh)[None]


def select_reference(unw: xr.DataArray, coh: xr.DataArray | None, *, land: xr.DataArray | None = None,
                     n_valid: xr.DataArray | None = None) -> ReferencePoint:
    """LiCSBAS/MintPy-style automatic reference from (y, x) summaries (:func:`choose_reference`).

    One task per spatial block and variable reads every pair once and returns its (y, x) summary
    (:func:`insarcloud.invert.reference.valid_count`, :func:`~insarcloud.invert.reference.temporal_mean`);
    only those maps reach the driver, in one compute. The variables stay in separate tasks so that a task's
    peak is one variable's block (coherence decodes through float64), as before.

    Parameters
    ----------
    unw : (pair, y, x) the unwrapped phase the inversion uses (NaN = not valid), Dask- or numpy-backed.
    coh : (pair, y, x) coherence of the same pairs, or None (then the valid count ranks the pixels).
    land : (y, x) bool, optional: False (water) pixels count no valid pair (``unw`` is then the unmasked
        stack: the mask is applied to the count, not by a masked copy of every block).
    n_valid : (y, x) valid count already known for these pairs (the qc group's, :func:`qc_valid_count`):
        ``unw`` is then not read, only ``coh``.
    """
    spatial = unw.data.chunks[1:] if isinstance(unw.data, da.Array) else tuple((n,) for n in unw.shape[1:])
    out_chunks = ((1,), *spatial)
    if n_valid is None:
        args = [_blocks(unw.data, spatial)] + ([_blocks(land.data, spatial)] if land is not None else [])
        count = da.map_blocks(_count_task, *args, dtype=np.int32, chunks=out_chunks)[0]
    else:
        count = n_valid.data if isinstance(n_valid.data, da.Array) else da.from_array(np.asarray(n_valid.values))
    cb = None if coh is None else _blocks(coh.data)  # on its own chunks: the mean needs no alignment with unw
    mean = None if cb is None else da.map_blocks(_mean_task, cb, dtype=np.float32, chunks=((1,), *cb.chunks[1:]))[0]
    nv, mean_coh = da.compute(count, count if mean is None else mean)
    nv = np.asarray(nv).astype(np.int64)
    return choose_reference(nv, nv.astype(np.float32) if mean is None else np.asarray(mean_coh))


#: The qc group's stored valid count and the version of its meaning (:mod:`insarcloud.qc.incremental`'s state:
#: pairs whose unw is finite, water (landmask 0) none; a new meaning bumps ``qc_state_version``).
QC_VALID_COUNT, QC_STATE_VERSION = "state_n_valid", 1


def qc_valid_count(qc: xr.Dataset | None, pairs: np.ndarray, shape: tuple[int, int], *, water_masked: bool
                   ) -> tuple[xr.DataArray | None, str]:
    """The qc group's per-pixel valid count when it counted exactly what the reference needs, else None; and
    why (one phrase for the log).

    It must have counted the root ``unw`` (``has_unw``) of the same pairs in the same order, on the same
    grid, with water masked as this inversion masks it. (Infinite unw values, which no LiCSAR product has,
    count as valid here and not in qc.)
    """
    if qc is None:
        return None, "no qc group"
    a = qc.attrs
    if QC_VALID_COUNT not in qc.data_vars or qc[QC_VALID_COUNT].dims != ("y", "x"):
        return None, f"the qc group has no (y, x) {QC_VALID_COUNT}"
    if int(a.get("qc_state_version", -1)) != QC_STATE_VERSION or not int(a.get("has_unw", 0)):
        return None, "the qc group did not count unw (or counts another way)"
    if int(a.get("landmask_applied", 0)) != int(water_masked):
        return None, "the qc group masked water differently"
    if tuple(qc[QC_VALID_COUNT].shape) != tuple(shape):
        return None, "the qc group is on another grid"
    if "pair" not in qc.coords or [str(p) for p in qc["pair"].values] != [str(p) for p in pairs]:
        return None, "the qc group has other pairs"
    return qc[QC_VALID_COUNT], "qc counted the same pairs"


def invert_dataset(root: xr.Dataset, *, weights: str = "none", source: str = "unw",
                   source_ds: xr.Dataset | None = None, weight_ds: xr.Dataset | None = None,
                   gamma: float = DEFAULT_GAMMA, ref_yx: tuple[int, int] | None = None,
                   ref_latlon: tuple[float, float] | None = None, chunk: int | None = None,
                   quality_floor: float | None = None, mask_water: bool = True, correct_unwrap: str = "none",
                   gacos_ds: xr.Dataset | None = None, gacos_missing: str = "keep", qc_ds: xr.Dataset | None = None
                   ) -> tuple[xr.Dataset, InversionPlan]:
    """Lazy ``ts_<weights>`` dataset from an opened cube.

    Parameters
    ----------
    root : the cube's root dataset (``insarcloud.io.open_cube``).
    weights : "none", "coherence", "quality", "closure", "quality_closure" or a (pair, y, x) variable
        name (root or group). "closure" weighs each pixel-pair by its loop closures
        (:mod:`insarcloud.invert.closure`); "quality_closure" multiplies that by the quality weight.
    source : "unw" (root) or "unw_<method>" (read from ``source_ds``, that group).
    source_ds, weight_ds : the opened groups for ``source`` and for ``weights`` when they are groups.
    gamma : NSBAS constraint (0 = per-component SBAS).
    ref_yx, ref_latlon : reference pixel (indices) or location; automatic when both are None.
    chunk : spatial chunk (pixels) of the tasks; default the source's own chunks.
    quality_floor : smallest weight of a positive quality ("quality", "quality_closure"); None: by the
        quality map's export (:func:`resolve_quality_floor`).
    mask_water : water pixels of the cube's ``landmask`` (0) are NaN, not fitted (no effect without one).
    correct_unwrap : "none" or "phase_closure" (:mod:`insarcloud.invert.correct`): integer cycles found by
        loop closure are removed before the inversion (and before referencing); they are written as
        ``unw_correction`` (pair, y, x) int8, ``corrected = unw - 2 pi unw_correction``.
    gacos_ds : the cube's ``gacos`` group (:mod:`insarcloud.io.gacos`); when given, each pair is corrected
        by ``gacos[secondary] - gacos[primary]`` (LiCSBAS step 03).
    gacos_missing : "keep" (pairs touching an epoch without GACOS stay uncorrected) or "drop" (they are
        not used); either way the epochs are logged by date and recorded in the attributes.
    qc_ds : the cube's current qc group, optional: the automatic reference takes its per-pixel valid count
        from it when it counted the same pairs of the root ``unw`` (:func:`qc_valid_count`), so only the
        coherence is read for the reference; else it counts them in the same pass. Same pixel either way.
    """
    if correct_unwrap not in CORRECTION_METHODS:
        raise ConfigError(f"correct_unwrap must be one of {', '.join(CORRECTION_METHODS)}, got {correct_unwrap!r}")
    if gacos_missing not in ("keep", "drop"):
        raise ConfigError(f"gacos_missing must be 'keep' or 'drop', got {gacos_missing!r}")
    src = source_ds if source_ds is not None else root
    if source not in src:
        raise CubeError(f"source variable {source!r} not found (have {sorted(src.data_vars)})")
    unw = src[source]
    if unw.dims != ("pair", "y", "x"):
        raise CubeError(f"source {source!r} must have dims (pair, y, x), has {unw.dims}")
    water_masked = mask_water and "landmask" in root.data_vars
    raw, land = unw, (root["landmask"] != 0 if water_masked else None)
    if water_masked:
        # LiCSAR landmask (1 land, 0 water): water pixels are not fitted (NaN out) and never the reference
        unw = unw.where(root["landmask"] != 0)
    pairs = unw["pair"].values
    prim = src["primary"].values if "primary" in src.coords else root["primary"].sel(pair=pairs).values
    sec = src["secondary"].values if "secondary" in src.coords else root["secondary"].sel(pair=pairs).values
    net = build_network(prim, sec)
    report = analyse_network(net)
    if report.n_components > 1:
        log.warning("%s", report.summary())
    else:
        log.info("%s", report.summary())
    wl = float(root.attrs.get("wavelength_m", WAVELENGTH_M))
    warr = _weights_array(weights, root, weight_ds, pairs)

    # reference: given (indices or lat/lon) or automatic
    if ref_latlon is not None:
        iy = int(np.abs(unw["y"].values - ref_latlon[0]).argmin())
        ix = int(np.abs(unw["x"].values - ref_latlon[1]).argmin())
        ref_yx = (iy, ix)
    gacos_info: dict[str, Any] = {}
    if gacos_ds is not None:
        unw, gacos_info = _apply_gacos(unw, gacos_ds, prim, sec, gacos_missing)
    if ref_yx is not None:
        iy, ix = ref_yx
        if not (0 <= iy < unw.sizes["y"] and 0 <= ix < unw.sizes["x"]):
            raise CubeError(f"reference pixel (y={iy}, x={ix}) is outside the frame {unw.sizes['y']}x{unw.sizes['x']}")
        ref = ReferencePoint(iy, ix, -1, float("nan"))  # its valid count comes with its series, below
    else:
        coh = root["coh"].sel(pair=pairs) if "coh" in root else None
        counted, why = (None, "this inversion's own pass (GACOS or another source)")
        if gacos_ds is None and src is root:
            counted, why = qc_valid_count(qc_ds, pairs, (unw.sizes["y"], unw.sizes["x"]), water_masked=water_masked)
            why = "the qc group" if counted is not None else f"this inversion's own pass ({why})"
        log.info("reference: valid pairs per pixel from %s", why)
        # without GACOS the unmasked stack and the land mask: the count masks water itself (no masked copy)
        ref = select_reference(raw if gacos_ds is None else unw, coh, n_valid=counted,
                               land=land if gacos_ds is None else None)
    cy = chunk or task_side(unw.chunks[1][0] if unw.chunks else 512, len(pairs))
    cx = chunk or task_side(unw.chunks[2][0] if unw.chunks else 512, len(pairs))
    unw_d = unw.data if isinstance(unw.data, da.Array) else da.from_array(unw.values)
    unw_d = unw_d.rechunk({0: -1, 1: cy, 2: cx})
    cycles = None
    if correct_unwrap == "phase_closure":
        # MintPy runs the correction between network modification and inversion; here before referencing,
        # so an error at the reference pixel is fixed there instead of being spread over the frame
        cycles = da.map_overlap(correction_block, unw_d, depth={0: 0, 1: CORRECTION_HALO, 2: CORRECTION_HALO},
                                boundary="none", dtype=np.int8, trip=loop_triplets(net), window=CORRECTION_WINDOW)
        unw_d = unw_d - np.float32(2 * np.pi) * cycles.astype(np.float32)
    if ref_yx is None and ref.n_valid == len(pairs):
        # every pair has data at the automatic reference: nothing is dropped, and its series is a task of this
        # graph (the reference's block is read once, by the inversion, instead of once more here)
        ref_d = unw_d[:, ref.y, ref.x].astype(np.float32)
        dropped: list[str] = []
    else:
        ref_series = np.asarray(unw_d[:, ref.y, ref.x].compute(), np.float32)
        ref_d = da.from_array(ref_series, chunks=-1)
        dropped = [str(p) for p in pairs[~np.isfinite(ref_series)]]
        if ref_yx is not None:
            ref = ref._replace(n_valid=int((~np.isnan(ref_series)).sum()))
    if dropped:
        log.warning("reference pixel has no data in %d pair(s); they are unusable: %s", len(dropped),
                    ", ".join(dropped[:5]))
    # LiCSBAS/MintPy reference every interferogram to the reference pixel before the inversion
    unw_d = unw_d - ref_d[:, None, None]
    nd = net.n_date
    floor = resolve_quality_floor(quality_floor, weight_ds.attrs if weight_ds is not None else {})
    w_d = None
    if warr is not None:
        raw = warr.data if isinstance(warr.data, da.Array) else da.from_array(warr.values)
        raw = raw.rechunk(unw_d.chunks)
        if weights == "coherence":
            w_d = da.map_blocks(coherence_weights, raw, dtype=np.float32)
        elif weights in ("quality", "quality_closure"):
            w_d = da.map_blocks(quality_weights, raw, floor=floor, dtype=np.float32)
        else:
            w_d = da.map_blocks(_variable_block, raw, var=weights, dtype=np.float32)
    if weights in ("closure", "quality_closure"):
        # the majority box needs CLOSURE_HALO pixels of the neighbouring chunks: with them (and no padding
        # at the frame's edges, where the filter reflects) every chunk equals the whole-frame computation
        cw = da.map_overlap(closure_weights, unw_d, depth={0: 0, 1: CLOSURE_HALO, 2: CLOSURE_HALO},
                            boundary="none", dtype=np.float32, trip=loop_triplets(net))
        w_d = cw if w_d is None else w_d * cw
    kw = dict(net=net, gamma=float(gamma), wavelength_m=wl)
    out_chunks = ((2 * nd + N_MAPS,), unw_d.chunks[1], unw_d.chunks[2])
    if w_d is None:
        stack = da.map_blocks(_kernel_none, unw_d, dtype=np.float32, chunks=out_chunks, **kw)
    else:
        stack = da.map_blocks(_block_kernel, unw_d, w_d, dtype=np.float32, chunks=out_chunks, **kw)

    coords = {"date": net.dates, "y": unw["y"].values, "x": unw["x"].values}
    for name in ("lat", "lon"):
        if name in root.coords:
            coords[name] = (root[name].dims, root[name].values)
    disp_attrs = {"long_name": "LOS displacement relative to the reference point and first date",
                  "units": "mm", "los_sign_convention": LOS_SIGN_CONVENTION, "positive": "toward satellite"}
    ds = xr.Dataset(
        {
            "displacement": (("date", "y", "x"), stack[:nd], disp_attrs),
            "component": (("date", "y", "x"), stack[nd: 2 * nd].astype(np.int16),
                          {"long_name": "network component of each epoch at each pixel (0 = the first "
                                        "date's; -1 = epoch in no used pair)", "units": "1"}),
            "velocity": (("y", "x"), stack[2 * nd],
                         {"long_name": "LOS velocity (LS slope of displacement)", "units": "mm/yr",
                          "positive": "toward satellite"}),
            "velocity_std": (("y", "x"), stack[2 * nd + 1],
                             {"long_name": "velocity standard deviation from the weighted-LS covariance "
                                           "scaled by the a-posteriori variance of unit weight",
                              "units": "mm/yr"}),
            "residual_rms": (("y", "x"), stack[2 * nd + 2],
                             {"long_name": "RMS of interferogram residuals after the inversion", "units": "mm"}),
            "n_pairs_used": (("y", "x"), stack[2 * nd + 3].astype(np.int32),
                             {"long_name": "interferograms used (finite, weight > 0)", "units": "1"}),
            "n_components": (("y", "x"), stack[2 * nd + 4].astype(np.int16),
                             {"long_name": "connected components of the pixel's network", "units": "1"}),
        },
        coords=coords,
    )
    if cycles is not None:
        ds["unw_correction"] = xr.Variable(
            ("pair", "y", "x"), cycles,
            {"long_name": "integer cycles removed by phase-closure correction (corrected = unw - 2 pi "
                          "unw_correction)", "units": "1", "method": "phase_closure (insarcloud.invert.correct)"})
        ds = ds.assign_coords(pair=("pair", np.array([str(p) for p in pairs], dtype=object)))
    ds["date"].attrs["long_name"] = "acquisition date"
    if "spatial_ref" in root.coords:
        ds = ds.assign_coords(spatial_ref=root["spatial_ref"])
        for name in ds.data_vars:
            ds[name].attrs["grid_mapping"] = "spatial_ref"
    ds.attrs.update({
        "weights": weights, "source": source, "gamma": float(gamma),
        **({"quality_weight": f"max(quality, {floor:g}) where quality > 0, else 0", "quality_floor": floor}
           if weights in ("quality", "quality_closure") else {}),
        **({"closure_weight": f"1 - share of the pair's loops with |closure| > {CLOSURE_THRESHOLD:.4f} rad over "
                              f"most of a {CLOSURE_WINDOW}x{CLOSURE_WINDOW} box (insarcloud.invert.closure)"}
           if weights in ("closure", "quality_closure") else {}),
        "method": "NSBAS (LiCSBAS step 13 constraint)" if gamma > 0 else "SBAS, per-component",
        "ref_y": ref.y, "ref_x": ref.x,
        "ref_lat": float(unw["y"].values[ref.y]), "ref_lon": float(unw["x"].values[ref.x]),
        "reference_method": "given" if ref_yx is not None else
        "auto: most valid pairs, then highest 5x5 mean coherence (LiCSBAS/MintPy style)",
        "los_sign_convention": LOS_SIGN_CONVENTION, "wavelength_m": wl,
        "network_components": report.n_components,
        "pairs_dropped_by_reference": len(dropped),
        "water_masked": int(water_masked),
        "correct_unwrap": correct_unwrap,
        **({"correct_unwrap_window": CORRECTION_WINDOW} if correct_unwrap != "none" else {}),
        "gacos": int(gacos_ds is not None),
        **gacos_info,
        "Conventions": "CF-1.10",
    })
    return ds, InversionPlan(ref, report.summary(), report.n_components, dropped)


def _apply_gacos(unw: xr.DataArray, gacos_ds: xr.Dataset, prim: np.ndarray, sec: np.ndarray, missing: str
                 ) -> tuple[xr.DataArray, dict[str, Any]]:
    """Subtract ``gacos[secondary] - gacos[primary]`` from each pair (insarcloud.io.gacos convention);
    pairs touching an epoch without GACOS are kept uncorrected or dropped (NaN), never silently."""
    from insarcloud.io.gacos import VAR, pair_delay_indices

    if VAR not in gacos_ds or gacos_ds[VAR].dims != ("date", "y", "x"):
        raise CubeError(f"the gacos group has no {VAR!r} (date, y, x) variable")
    g = gacos_ds[VAR]
    ip, is_, covered = pair_delay_indices(g["date"].values, prim, sec)
    cube_dates = np.unique(np.concatenate([np.asarray(prim), np.asarray(sec)]).astype("datetime64[D]"))
    have = set(np.asarray(g["date"].values).astype("datetime64[D]").tolist())
    miss_dates = [str(d).replace("-", "") for d in cube_dates.tolist() if d not in have]
    unc = [str(p) for p in unw["pair"].values[~covered]]
    if miss_dates:
        log.warning("GACOS: %d epoch(s) without GACOS: %s; %d pair(s) touch them and are %s "
                    "(--gacos-missing %s)", len(miss_dates), ", ".join(miss_dates), len(unc),
                    "dropped" if missing == "drop" else "kept uncorrected", missing)
    else:
        log.info("GACOS: every epoch has a GACOS delay (--gacos-missing %s not needed)", missing)
    gd = g.data if isinstance(g.data, da.Array) else da.from_array(np.asarray(g.values))
    nd = gd.shape[0]
    zero = da.zeros((1, *gd.shape[1:]), dtype=np.float32, chunks=(1, *gd.chunksize[1:]))
    gz = da.concatenate([gd.astype(np.float32), zero], axis=0)  # index nd = "no GACOS": zero delay
    dp = gz[np.where(covered, is_, nd)] - gz[np.where(covered, ip, nd)]
    corr = xr.DataArray(dp, dims=("pair", "y", "x"), coords={"pair": unw["pair"].values})
    out = unw - corr.assign_coords(y=unw["y"].values, x=unw["x"].values)
    if missing == "drop" and unc:
        out = out.where(xr.DataArray(covered, dims=("pair",), coords={"pair": unw["pair"].values}))
    out.attrs = unw.attrs
    info = {"gacos_missing": missing, "gacos_missing_dates": miss_dates, "gacos_uncorrected_pairs": unc,
            "gacos_convention": "unw - (gacos[secondary] - gacos[primary]), rad (insarcloud.io.gacos)"}
    return out, info


@heap_task
def _kernel_none(unw: np.ndarray, **kw: Any) -> np.ndarray:
    return _block_kernel(unw, None, **kw)


def stage_params(weights: str, source: str, gamma: float, ref: Mapping[str, Any] | None,
                 quality_floor: float = QUALITY_FLOOR, correct_unwrap: str = "none", gacos: bool = False,
                 gacos_missing: str = "keep") -> dict[str, Any]:
    """The parameters that identify an inversion output (for ``resolve_output``)."""
    out: dict[str, Any] = {"weights": weights, "source": source, "gamma": float(gamma),
                           "reference": dict(ref or {"auto": True})}
    # new options enter the marker only when used, so outputs written before them stay "done"
    if correct_unwrap != "none":
        out["correct_unwrap"] = {"method": correct_unwrap, "window": CORRECTION_WINDOW}
    if gacos:
        out["gacos"] = {"missing": gacos_missing}
    if weights in ("quality", "quality_closure"):
        # the quality -> weight mapping is part of the result: a cube inverted with another floor is redone
        out["quality_floor"] = float(quality_floor)
    if weights in ("closure", "quality_closure"):
        out["closure"] = {"threshold_rad": float(CLOSURE_THRESHOLD), "window": CLOSURE_WINDOW}
    return out


def _decode_codes(codes: np.ndarray, *, table: np.ndarray) -> np.ndarray:
    return table[codes]


def coherence_by_table(root: xr.Dataset, url: str, storage_options: dict[str, Any] | None = None) -> xr.Dataset:
    """``root`` with its ``coh`` decoded from the stored unsigned integer codes through a table: the same bits.

    ``open_cube`` decodes uint8-packed coherence as xarray does: a float64 copy, the fill value masked, the
    scale applied, then a float32 cast, 30-50 ns per pixel-pair; the automatic reference reads the whole stack
    once, so that was ~10 % of the stage's CPU (docs/invert.md). The same elementwise decoding (xarray's
    ``decode_cf_variable`` on the stored attributes, then the cast) applied once to every possible code gives a
    table, and ``table[codes]`` is what the full decode gives, bit for bit. Any other storage: ``root`` as is.
    """
    if "coh" not in root or root["coh"].dtype != np.float32 or not isinstance(root["coh"].data, da.Array):
        return root
    from insarcloud.io.storage import storage_options_for

    chunks = dict(zip(root["coh"].dims, root["coh"].data.chunks, strict=True))
    raw = xr.open_zarr(url, consolidated=False, mask_and_scale=False, decode_times=False,
                       chunks={"pair": -1},  # y, x as stored; then the chunks of root's coh, below
                       storage_options=storage_options_for(url, storage_options) if "://" in url else None)["coh"]
    dt = raw.dtype
    if dt.kind != "u" or dt.itemsize > 2 or raw.dims != root["coh"].dims:
        return root
    if raw.sizes["pair"] != root.sizes["pair"] or not np.array_equal(raw["pair"].values, root["pair"].values):
        raw = raw.sel(pair=root["pair"].values)
    raw = raw.chunk(chunks)
    codes = np.arange(np.iinfo(dt).max + 1, dtype=dt)
    table = xr.conventions.decode_cf_variable("coh", xr.Variable(("code",), codes, attrs=dict(raw.attrs)))
    table = np.asarray(table.values).astype(np.float32)
    data = da.map_blocks(_decode_codes, raw.data, table=table, dtype=np.float32)
    return root.assign(coh=root["coh"].copy(data=data))


def invert_cube(url: str, *, weights: str = DEFAULT_INVERT_WEIGHTS, source: str = "unw", gamma: float = DEFAULT_GAMMA,
                ref_yx: tuple[int, int] | None = None, ref_latlon: tuple[float, float] | None = None,
                chunk: int | None = None, storage_options: dict[str, Any] | None = None,
                group: str | None = None, quality_floor: float | None = None, correct_unwrap: str = "none",
                gacos: bool = False, gacos_missing: str = "keep", mask_water: bool = True
                ) -> tuple[str, InversionPlan | None]:
    """Invert a frame cube into its ``ts_<weights>`` group (workers write the chunks).

    Returns the group written (or found complete with the same parameters, then the plan is None).
    Runs under the active ``distributed.Client`` if there is one.
    """
    from insarcloud.io import open_cube, stages, write_stage_output

    ref = {"y": ref_yx[0], "x": ref_yx[1]} if ref_yx else (
        {"lat": ref_latlon[0], "lon": ref_latlon[1]} if ref_latlon else None)
    # every task holds all pairs of its pixels (invert_dataset's rechunk): read them so, one Dask task per
    # variable and spatial chunk instead of one per pair (a 400-pair 64 px frame made ~1200 read tasks)
    pairs_whole = {"pair": -1}
    root = open_cube(url, storage_options, chunks=pairs_whole)
    if ref is None or weights == "coherence":  # the coherence is read: the same values for less CPU
        root = coherence_by_table(root, url, storage_options)
    var = weight_variable(weights)
    weight_ds = None
    upstream: dict[str, str] = {}  # the fingerprints of the groups read (docs/STAGES.md)
    if var is not None and var not in root:
        var = stages.input_group(url, "quality" if var == "quality" else var, var, storage_options)
        weight_ds = open_cube(url, storage_options, group=var, chunks=pairs_whole)
        upstream["weights"] = stages.group_fingerprint(url, var, storage_options)
    floor = resolve_quality_floor(quality_floor, weight_ds.attrs if weight_ds is not None else {})
    params = stage_params(weights, source, gamma, ref, floor, correct_unwrap, gacos, gacos_missing)
    gacos_ds = None
    if gacos:
        from insarcloud.io.gacos import GROUP as GACOS_GROUP

        gacos_ds = open_cube(url, storage_options, group=GACOS_GROUP)  # CubeError naming the group if absent
        upstream["gacos"] = str(gacos_ds.attrs.get("insarcloud", {}).get("params_hash", ""))
    if source != "unw":
        source = stages.input_group(url, "unwrap", source, storage_options)
        upstream["source"] = stages.group_fingerprint(url, source, storage_options)
    target = group or f"ts_{weights}"
    plan = stages.plan_stage(url, "invert", target, params, pairs=[str(p) for p in root["pair"].values],
                             upstream=upstream, storage_options=storage_options)
    if plan.done:
        stages.finish_stage(url, plan, storage_options, base=target)
        return plan.group, None
    source_ds = None if source == "unw" else open_cube(url, storage_options, group=source, chunks=pairs_whole)
    qc_ds = None
    if ref is None and source == "unw" and not gacos:
        # the automatic reference's valid count, when qc already counted it (qc_valid_count checks that it did);
        # not an input of the result (the count is the same either way), so not in the fingerprint
        qc_group = stages.current_group(url, "qc", storage_options)
        qc_ds = open_cube(url, storage_options, group=qc_group) if qc_group else None
    ds, info = invert_dataset(root, weights=weights, source=source, source_ds=source_ds, weight_ds=weight_ds,
                              gamma=gamma, ref_yx=ref_yx, ref_latlon=ref_latlon, chunk=chunk, quality_floor=floor,
                              mask_water=mask_water, correct_unwrap=correct_unwrap, gacos_ds=gacos_ds,
                              gacos_missing=gacos_missing, qc_ds=qc_ds)
    log.info("inverting %s (%d pairs, %d dates, %s) into %s", url, root.sizes.get("pair", 0),
             ds.sizes["date"], weights, plan.group)
    write_stage_output(ds, url, plan.group, stage="invert", params=plan.identity, storage_options=storage_options)
    from insarcloud.plot import stage_quicklooks  # velocity (reference point, mask) and precision PNGs

    stage_quicklooks(url, plan.group, storage_options)
    stages.finish_stage(url, plan, storage_options, base=target)  # noise, forecast, mosaic now read this group
    return plan.group, info
