"""Thin Dask layer: one task per block of classes (a write chunk), the whole plateau one ``map_blocks``.

The displacement (date, y, x) of a ``ts_<weights>`` group is rechunked so that one block holds all dates
of one write chunk (``task_side``); a task walks the class blocks inside it: tiles (tiles mode: one class)
or processing blocks (segments mode: the segments inside each), so the graph grows with the write chunks,
not with the classes (docs/noise.md "One task per write chunk"). Each block returns a stack of per-pixel
fields, and class-level numbers are broadcast over the class's pixels. In tiles mode the class table
(class_y, class_x) is a strided view of the same blocks, so one compute writes both.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from insarcloud.core.allocator import heap_task
from insarcloud.errors import CubeError
from insarcloud.io import open_cube, write_stage_output

from .borrow import BORROW_DEFAULT, BorrowFit, Donor, borrow_class, donor_of
from .classes import ClassKind, segment_velocity, tile_side
from .cofactors import epochs_to_days
from .estimate import MODEL_NAMES, SLOTS, estimate_class
from .spatial import lonlat_to_local_m

log = logging.getLogger(__name__)

PIXEL_FIELDS = ("velocity", "velocity_std", "velocity_std_white", "series_std", "series_std_std", "class_id",
                "model_source")
CLASS_FIELDS = (("model", "sigma_white", "sigma_ar1", "sigma_flicker", "sigma_white_std", "sigma_ar1_std",
                 "sigma_flicker_std", "negative_white", "negative_ar1", "negative_flicker", "alpha", "alpha_std",
                 "lrt_p_white", "lrt_p_ar1", "lrt_p_flicker", "c0", "c0_mm2", "d", "n_iter", "converged", "n_valid",
                 "n_epochs")
                + tuple(f"loglik_{k}" for k in range(len(MODEL_NAMES)))
                + tuple(f"reml_{k}" for k in range(len(MODEL_NAMES))))
FIELDS = PIXEL_FIELDS + CLASS_FIELDS
MODEL_CODES = {name: i for i, name in enumerate(MODEL_NAMES)}  # -1 = "none"
#: What a class lends of its model (:class:`.borrow.Donor`), read from the class fields of the sampled classes
REC_FIELDS = ("class_id", "model", "sigma_white", "sigma_ar1", "sigma_flicker", "sigma_white_std", "sigma_ar1_std",
              "sigma_flicker_std", "alpha", "alpha_std", "c0", "d", "n_valid")


def _class_values(c: Any) -> list[float]:
    return ([float(MODEL_CODES.get(c.model, -1))] + list(c.sigma) + list(c.sigma_std)
            + [float(x) for x in c.negative] + [c.alpha, c.alpha_std, *c.lrt_p, c.c0, c.c0_mm2, c.d, float(c.n_iter),
                                                 float(c.converged), float(c.n_valid), float(c.n_epochs)]
            + list(c.loglik) + list(c.reml))


def sampled(n: int, stride: int) -> np.ndarray:
    """Which of n classes along one axis of the tile grid run the full model search: every ``stride``-th,
    starting at ``stride // 2`` so that every other class is at most ``stride // 2`` classes from one (the
    middle one when n is too small for that)."""
    i = np.arange(n)
    off = min(stride // 2, (n - 1) // 2)
    return (i >= off) & ((i - off) % stride == 0)


def _put(out: np.ndarray, idx: np.ndarray, nx: int, c: Any, cid: int, src: int) -> None:
    iy, ix = np.divmod(idx, nx)
    for j, arr in enumerate((c.velocity, c.velocity_std, c.velocity_std_white, c.series_std, c.series_std_std)):
        out[j, iy, ix] = arr
    out[5, iy, ix] = cid
    out[6, iy, ix] = src
    out[len(PIXEL_FIELDS):, iy, ix] = np.asarray(_class_values(c))[:, None]


Loc = tuple[int, int, int, int, int, int]  # a class block: y0, x0 (pixels), by, bx, nby, nbx (the class-block grid)


def _where(block: np.ndarray, lat: np.ndarray, lon: np.ndarray, loc: Loc) -> tuple[np.ndarray, np.ndarray]:
    """A class block's pixels (date, r) as float64 and their local coordinates (m, about the class block's own
    mean latitude, as when a class block was a Dask block: the same values bit for bit)."""
    m, ny, nx = block.shape
    y0, x0 = loc[:2]
    la, lo = np.meshgrid(lat[y0:y0 + ny], lon[x0:x0 + nx], indexing="ij")
    return block.reshape(m, -1).astype(np.float64), lonlat_to_local_m(lo.ravel(), la.ravel())


def _class_blocks(block: np.ndarray, side: int, block_info: dict | None) -> Iterator[tuple[slice, slice, Loc]]:
    """The class blocks (tiles: one class; segments: one processing block) of side ``side`` inside one Dask
    block whose origin is a multiple of ``side``: the block's slices and each class block's location."""
    _, ny, nx = block.shape
    if block_info is not None:
        (y0, _), (x0, _) = block_info[0]["array-location"][1:]
        Y, X = block_info[0]["shape"][1:]
    else:
        y0, x0, Y, X = 0, 0, ny, nx
    nby, nbx = -(-Y // side), -(-X // side)
    for i in range(0, ny, side):
        for j in range(0, nx, side):
            yield (slice(i, i + side), slice(j, j + side),
                   (y0 + i, x0 + j, (y0 + i) // side, (x0 + j) // side, nby, nbx))


@heap_task  # docs/scale.md "Worker processes and glibc's allocator": per task, not per worker
def noise_block(block: np.ndarray, vel: np.ndarray, *, days: np.ndarray, lat: np.ndarray, lon: np.ndarray,
                classes: ClassKind, class_size: int, opts: dict, side: int, stride: int = 1,
                fit: BorrowFit = BORROW_DEFAULT, sampled_only: bool = False,
                block_info: dict | None = None) -> np.ndarray:
    """One Dask block (a block of classes, by default one write chunk): estimate every class inside it.

    Parameters
    ----------
    block : (date, y, x) float32 mm ;  vel : (1, y, x) float32 mm/yr (for segments)
    days : (date,) float64 ; lat : (Y,) ; lon : (X,)  the full coordinate vectors (degrees)
    side : int  the class blocks' side (tiles: one class; segments: the processing block the segments are cut
        in); the block's origin is a multiple of it
    stride : int  ``model_stride``. Tiles: with ``sampled_only`` a class off the :func:`sampled` lattice
        is left NaN (it is done by :func:`borrow_block`). Segments: the segments of a processing block whose
        label is a multiple of stride^2 run the full model search, every other segment borrows the model of
        the nearest of them by centroid (:func:`.borrow.borrow_class` with ``fit``)

    Returns
    -------
    (field, y, x) float64 in the order of :data:`FIELDS`.
    """
    out = np.full((len(FIELDS),) + block.shape[1:], np.nan)
    for ys, xs, loc in _class_blocks(block, side, block_info):
        _estimate_classes(block[:, ys, xs], vel[:, ys, xs], out[:, ys, xs], loc, days=days, lat=lat, lon=lon,
                          classes=classes, class_size=class_size, opts=opts, stride=stride, fit=fit,
                          sampled_only=sampled_only)
    return out


def _estimate_classes(block: np.ndarray, vel: np.ndarray, out: np.ndarray, loc: Loc, *, days: np.ndarray,
                      lat: np.ndarray, lon: np.ndarray, classes: ClassKind, class_size: int, opts: dict,
                      stride: int, fit: BorrowFit, sampled_only: bool) -> None:
    """The classes of one class block into ``out`` (a (field, y, x) view of the Dask block's output)."""
    m, ny, nx = block.shape
    _, _, by, bx, nby, nbx = loc
    if sampled_only and not (sampled(nby, stride)[by] and sampled(nbx, stride)[bx]):
        return
    Y, xy = _where(block, lat, lon, loc)
    if classes == "tiles":
        labels = np.zeros(ny * nx, np.int64)
    else:
        labels = segment_velocity(vel[0], class_size).ravel()
    base = (by * nbx + bx) * 65536
    ks = np.unique(labels[labels >= 0])
    every = stride * stride if classes == "segments" else 1
    donors: list[tuple[np.ndarray, Any]] = []
    for k in ks[ks % every == 0]:
        idx = np.flatnonzero(labels == k)
        c = estimate_class(Y[:, idx], days, xy[idx], **opts)
        _put(out, idx, nx, c, base + k, base + k)
        if c.model != "none":
            donors.append((xy[idx].mean(axis=0), donor_of(c, base + k)))
        log.debug("class %d: %s, %d/%d pixels", base + k, c.model, c.n_valid, idx.size)
    for k in ks[ks % every != 0]:
        idx = np.flatnonzero(labels == k)
        if donors:
            dist = [float(np.sum((xy[idx].mean(axis=0) - cen) ** 2)) for cen, _ in donors]
            dn = donors[int(np.argmin(dist))][1]
            c = borrow_class(Y[:, idx], days, xy[idx], dn, fit=fit, **opts)
            _put(out, idx, nx, c, base + k, dn.class_id)
        else:
            _put(out, idx, nx, estimate_class(Y[:, idx], days, xy[idx], **opts), base + k, base + k)


@heap_task
def borrow_block(block: np.ndarray, vel: np.ndarray, first: np.ndarray, rec: np.ndarray, *, days: np.ndarray,
                 lat: np.ndarray, lon: np.ndarray, opts: dict, side: int, stride: int, fit: BorrowFit,
                 block_info: dict | None = None) -> np.ndarray:
    """One Dask block of the tiles mode with ``model_stride`` > 1: a sampled class keeps its full estimate
    (``first``, the same block from :func:`noise_block` with ``sampled_only``), every other class borrows the
    model of the nearest sampled class that has one (``rec``: :data:`REC_FIELDS` x class rows x class
    columns, NaN off the lattice) and estimates its own amplitudes, velocities and precisions
    (:func:`.borrow.borrow_class`); a class with no sampled class to borrow from runs the full search itself.
    """
    out = first.copy()  # ``first`` is an input of other tasks too (the donor table): never written in place
    f = {name: rec[i] for i, name in enumerate(REC_FIELDS)}
    ok = np.argwhere(f["model"] >= 0)  # NaN (off the lattice) compares False
    for ys, xs, loc in _class_blocks(block, side, block_info):
        _borrow_tile(block[:, ys, xs], out[:, ys, xs], loc, f, ok, days=days, lat=lat, lon=lon, opts=opts,
                     stride=stride, fit=fit)
    return out


def _borrow_tile(block: np.ndarray, out: np.ndarray, loc: Loc, f: dict[str, np.ndarray], ok: np.ndarray, *,
                 days: np.ndarray, lat: np.ndarray, lon: np.ndarray, opts: dict, stride: int,
                 fit: BorrowFit) -> None:
    """One tile of :func:`borrow_block` into ``out`` (a (field, y, x) view of the Dask block's output)."""
    m, ny, nx = block.shape
    _, _, by, bx, nby, nbx = loc
    if sampled(nby, stride)[by] and sampled(nbx, stride)[bx]:
        return
    Y, xy = _where(block, lat, lon, loc)
    idx = np.arange(ny * nx)
    cid = (by * nbx + bx) * 65536
    if ok.size == 0:
        _put(out, idx, nx, estimate_class(Y, days, xy, **opts), cid, cid)
        return
    dy, dx = ok[int(np.argmin((ok[:, 0] - by) ** 2 + (ok[:, 1] - bx) ** 2))]
    g = {k: v[dy, dx] for k, v in f.items()}
    dn = Donor(MODEL_NAMES[int(g["model"])], np.array([g["sigma_white"], g["sigma_ar1"], g["sigma_flicker"]]),
               np.array([g["sigma_white_std"], g["sigma_ar1_std"], g["sigma_flicker_std"]]), float(g["alpha"]),
               float(g["alpha_std"]), float(g["c0"]), float(g["d"]), int(g["n_valid"]), int(g["class_id"]))
    _put(out, idx, nx, borrow_class(Y, days, xy, dn, fit=fit, **opts), cid, dn.class_id)


def noise_dataset(ts: xr.Dataset, *, classes: ClassKind = "tiles", class_size: int = 1000,
                  opts: dict | None = None, model_stride: int = 1,
                  borrow: BorrowFit = BORROW_DEFAULT, task_side: int | None = None) -> xr.Dataset:
    """Lazy ``noise`` dataset of a ts group (Dask-backed; nothing is computed here).

    Parameters
    ----------
    ts : xarray.Dataset  a ``ts_<weights>`` group: ``displacement`` (date, y, x) mm, ``velocity`` (y, x)
    classes : "tiles" or "segments" ; class_size : int  pixels per class
    opts : dict  keyword arguments of :func:`insarcloud.noise.estimate.estimate_class`
    model_stride : int  the full model search on every stride-th class along each axis of the tile grid
        (:func:`sampled`; segments: every stride^2-th segment of a block), the other classes borrow the
        nearest one's model (``NoiseParams.model_stride``, docs/noise.md); 1 = every class
    borrow : what a borrowing class estimates itself (:func:`.borrow.borrow_class`'s ``fit``)
    task_side : int, optional  pixels per side of one task's block of classes, a multiple of the class
        block's side (default: the write chunk, so the graph grows with the write chunks, not with the
        classes; docs/noise.md "One task per write chunk"); the class block's side gives one task per class
    """
    if model_stride < 1:
        raise CubeError(f"model_stride must be >= 1, got {model_stride}")
    if "displacement" not in ts:
        raise CubeError(f"ts group has no 'displacement' variable (has {sorted(ts.data_vars)})")
    disp = ts["displacement"].transpose("date", "y", "x")
    days = epochs_to_days(ts["date"].values)
    side = tile_side(class_size) if classes == "tiles" else tile_side(4 * class_size)
    wchunk = side * max(1, 512 // side)
    task_side = wchunk if task_side is None else int(task_side)
    if task_side < side or task_side % side:
        raise CubeError(f"task_side must be a multiple of the class block's side {side}, got {task_side}")
    d = disp.data if isinstance(disp.data, da.Array) else da.from_array(disp.data)
    d = d.rechunk({0: -1, 1: task_side, 2: task_side})
    if "velocity" in ts:
        v = ts["velocity"].data
        v = (v if isinstance(v, da.Array) else da.from_array(v))[None].rechunk({0: 1, 1: d.chunks[1], 2: d.chunks[2]})
    else:
        v = da.full((1,) + d.shape[1:], np.nan, chunks=((1,),) + d.chunks[1:])
    lat = np.asarray(ts["y"].values, dtype=np.float64)
    lon = np.asarray(ts["x"].values, dtype=np.float64)
    kw = dict(days=days, lat=lat, lon=lon, opts=dict(opts or {}), side=side, chunks=((len(FIELDS),),) + d.chunks[1:],
              dtype=np.float64, meta=np.empty((0, 0, 0), np.float64))
    if classes == "tiles" and model_stride > 1:
        # pass 1: the full search on the sampled lattice (other blocks: NaN); pass 2: every other block borrows
        # from the nearest sampled class, whose model fields (a small table, one row per tile) every pass-2
        # task receives whole (a Delayed: pass 2 starts once pass 1 is done)
        first = da.map_blocks(noise_block, d, v, classes=classes, class_size=class_size, stride=model_stride,
                              sampled_only=True, **kw)
        rec = first[[FIELDS.index(n) for n in REC_FIELDS]][:, ::side, ::side].rechunk(-1)
        # optimize_graph=False: an optimised Delayed would fuse (and so recompute) the sampled blocks' estimates
        table = rec.to_delayed(optimize_graph=False).ravel()[0]
        out = da.map_blocks(borrow_block, d, v, first, table, stride=model_stride, fit=borrow, **kw)
    else:
        out = da.map_blocks(noise_block, d, v, classes=classes, class_size=class_size, stride=model_stride,
                            fit=borrow, **kw)
    coords = {"y": ts["y"], "x": ts["x"]}
    if "spatial_ref" in ts.coords:
        coords["spatial_ref"] = ts["spatial_ref"]
    # One task per block of classes (a write chunk by default) and every field a slice of those blocks: one
    # task per class made ~57,700 tasks and a 1.1 GB driver for a real frame's ~6,800 classes (docs/scale.md
    # "Full frame"; docs/noise.md "One task per write chunk"). A smaller task_side: merged into write chunks.
    stacked = out if task_side == wchunk else out.rechunk((len(FIELDS), wchunk, wchunk))

    def field(name: str, dtype: Any = np.float32) -> xr.DataArray:
        a = stacked[FIELDS.index(name)].astype(dtype)
        return xr.DataArray(a, dims=("y", "x"), coords=coords)

    units = {"velocity": "mm/yr", "velocity_std": "mm/yr", "velocity_std_white": "mm/yr", "series_std": "mm",
             "series_std_std": "mm", "sigma_white": "mm2", "sigma_ar1": "mm2", "sigma_flicker": "mm2",
             "sigma_white_std": "mm2", "sigma_ar1_std": "mm2", "sigma_flicker_std": "mm2", "alpha": "1/day",
             "alpha_std": "1/day", "c0": "1", "c0_mm2": "mm2", "d": "m"}
    desc = {
        "velocity": "GLS LOS velocity with the chosen noise model (positive toward the satellite)",
        "velocity_std": "velocity std from Sigma_ii (A^T Q^-1 A)^-1 (eq. 12) with the estimated noise model",
        "velocity_std_white": "velocity std of ordinary LS assuming white noise only (no noise model)",
        "series_std": "per-series noise std sqrt(Sigma_ii mean(diag Q)) (eq. 11)",
        "series_std_std": "precision of series_std (eq. 11)",
        "class_id": "class of the pixel (block index * 65536 + class within block); -1 none",
        "model_source": ("class_id of the class whose noise model (components, alpha) was used: the pixel's own "
                         "class_id where the full model search ran on it, a sampled class's where the model was "
                         "borrowed and only the amplitudes re-fitted (attrs model_stride); -1 none"),
        "model": "chosen noise model: index into attrs model_names; -1 = not estimated",
        "alpha": "AR(1) time-scale, exp(-alpha tau) with tau in days",
        "alpha_std": "std of alpha from the joint REML Fisher information (NaN: not fitted by likelihood)",
        "lrt_p_white": "p-value of removing white from the 3-component model (boundary LR test); NaN untested",
        "lrt_p_ar1": "p-value of removing AR(1) (and its alpha) from the 3-component model; NaN untested",
        "lrt_p_flicker": "p-value of removing flicker from the 3-component model; NaN untested",
        "c0": "Gaussian spatial covariance C0 in Sigma units (Sigma has unit mean diagonal per class)",
        "c0_mm2": "C0 times the class-mean epoch variance mean(diag Q)",
        "d": "Gaussian correlation distance of C0 exp(-r^2/d^2)",
    }
    data: dict[str, xr.DataArray] = {}
    for name in PIXEL_FIELDS + CLASS_FIELDS[:18]:
        dt = np.int32 if name in ("class_id", "model_source", "n_iter", "n_valid", "n_epochs") else (
            np.int8 if name in ("model", "converged", "negative_white", "negative_ar1", "negative_flicker")
            else np.float32)
        arr = field(name, np.float64)
        if dt is not np.float32:
            arr = arr.fillna(-1).astype(dt)
        else:
            arr = arr.astype(dt)
        arr.attrs = {k: v for k, v in (("units", units.get(name)), ("long_name", desc.get(name))) if v}
        data[name] = arr
    ds = xr.Dataset(data)
    if classes == "tiles":
        # one row per tile: the values at each tile's first pixel (all class fields are constant in a tile)
        # one small task gathers the table (all fields x classes) instead of one task per class and field
        table = out[:, ::side, ::side].rechunk(-1)
        sl = table[len(PIXEL_FIELDS):]
        cy = np.asarray(ts["y"].values[::side], dtype=np.float64)
        cx = np.asarray(ts["x"].values[::side], dtype=np.float64)
        # model names live in attrs["model_names"]: zarr v3 has no stable string dtype yet
        ccoords = {"class_y": cy, "class_x": cx, "model_index": np.arange(len(MODEL_NAMES), dtype=np.int8)}
        k0 = CLASS_FIELDS.index("loglik_0")
        nm = len(MODEL_NAMES)
        for j, name in enumerate(CLASS_FIELDS[:18]):
            ds[f"class_{name}"] = xr.DataArray(sl[j], dims=("class_y", "class_x"),
                                               coords={"class_y": cy, "class_x": cx},
                                               attrs={"units": units[name]} if name in units else {})
        src = xr.DataArray(table[FIELDS.index("model_source")], dims=("class_y", "class_x"),
                           coords={"class_y": cy, "class_x": cx}, attrs={"long_name": desc["model_source"]})
        ds["class_model_source"] = src.fillna(-1).astype(np.int32)
        ds["class_model_source"].attrs = dict(src.attrs)
        ds["class_loglik"] = xr.DataArray(sl[k0:k0 + nm].transpose(1, 2, 0), dims=("class_y", "class_x", "model_index"),
                                          coords=ccoords, attrs={"long_name": "log-likelihood eq. 7 (Table 2)"})
        ds["class_reml"] = xr.DataArray(sl[k0 + nm:k0 + 2 * nm].transpose(1, 2, 0),
                                        dims=("class_y", "class_x", "model_index"), coords=ccoords,
                                        attrs={"long_name": "restricted log-likelihood used to choose the model"})
        ds["class_y"].attrs = {"long_name": "latitude of the first pixel row of the tile", "units": "degrees_north"}
        ds["class_x"].attrs = {"long_name": "longitude of the first pixel column of the tile", "units": "degrees_east"}
    ds.attrs.update({
        "model_names": list(MODEL_NAMES), "component_slots": list(SLOTS),
        "sigma_normalisation": "Sigma (r x r) has unit mean diagonal per class; sigma_k carry mm^2",
        "classes": classes, "class_size": int(class_size), "tile_side_px": int(side),
        "model_stride": int(model_stride),
        "model_sampling": ("full noise-model search on every model_stride-th class along each axis of the tile grid "
                           "(segments: every model_stride^2-th segment of a block); the other classes use the "
                           "nearest such class's model (which components, alpha) with their own amplitudes "
                           + {"scale": "rescaled by their own variance factor",
                              "model": "re-fitted by one LS-VCE fit of that model",
                              "all": "re-fitted by one LS-VCE fit of all three components",
                              "subset": "re-fitted by one LS-VCE fit of all three components on a 200-pixel subset, "
                                        "then rescaled by their own variance factor"}[borrow]
                           + "; see model_source") if model_stride > 1 else "full noise-model search on every class",
        "los_sign_convention": ts.attrs.get("los_sign_convention", "LOS positive toward the satellite"),
        "cofactor_lag_unit": "day", "functional_model": "y0 + v t + annual + semi-annual (eq. 13), t in years",
    })
    return ds


def noise_cube(url: str, *, ts_group: str | None = None, group: str = "noise", classes: ClassKind = "tiles",
               class_size: int = 1000, opts: dict | None = None, model_stride: int = 1,
               storage_options: dict | None = None) -> tuple[str, bool]:
    """Run the noise stage on a cube (needs an active distributed Client for a cluster run).

    Returns
    -------
    (group written or found, skipped) : skipped is True when the same parameters were already complete.
    """
    from insarcloud.io import stages

    # ts_group None: the invert stage's current output; a name: its current output of that kind (docs/STAGES.md)
    ts_group = stages.input_group(url, "invert", ts_group, storage_options)
    params = {"classes": classes, "class_size": int(class_size), "model_stride": int(model_stride),
              **{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in (opts or {}).items()}}
    plan = stages.plan_stage(url, "noise", group, params,
                             upstream={"invert": stages.group_fingerprint(url, ts_group, storage_options)},
                             storage_options=storage_options)
    if plan.done:
        stages.finish_stage(url, plan, storage_options, base=group)
        return plan.group, True
    ts = open_cube(url, storage_options, group=ts_group)
    ds = noise_dataset(ts, classes=classes, class_size=class_size, opts=opts, model_stride=model_stride)
    ds.attrs["source_group"] = ts_group
    write_stage_output(ds, url, plan.group, stage="noise", params=plan.identity, storage_options=storage_options)
    from insarcloud.plot import stage_quicklooks  # noise model maps beside the group

    stage_quicklooks(url, plan.group, storage_options)
    stages.finish_stage(url, plan, storage_options, base=group)
    return plan.group, False
