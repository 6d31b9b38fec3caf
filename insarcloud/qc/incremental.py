"""Incremental qc: after ingest appended pairs, compute only what the new pairs change (issue 18).

The decision and its figures: docs/scale.md, "Incremental qc after new epochs".

What a qc product depends on decides how an update gets it (the result equals a full run on the whole
network; ``tests/qc/test_incremental.py`` checks every variable):

- Per-loop pass-1 results (integer cycles ``2 pi k``, RMS, valid pixels; wrapped RMS) are per-loop
  quantities of the loop's three pairs only: an *old* loop (all three pairs old) keeps the values of the
  previous group; only *new* loops (containing a new pair) are reduced over the frame (pass 1).
- Per-pixel sums over loops (``n_loops``, ``n_loop_err``) are exact integer counts: stored value + the new
  loops' counts.
- Per-pair per-pixel products of an *old pair that is in no new loop* (``phase_std``, ``coh_mean``,
  ``pair_closure*``, ``label``, ``reason``) depend on that pair and its loops only: copied from the previous
  group (the per-ifg label counts are reductions of the merged label array, as in a full run).
- New pairs, and old pairs that gained a loop (*affected*: their per-pair closure means and labels change),
  are computed: windowed statistics, and the per-pixel closure of every loop containing them (new loops,
  and the few old loops of the affected pairs, re-evaluated per pixel with their stored ``k``: pass 1 is
  not repeated for them). Storing per-pair per-pixel partial sums instead (two float32 sums of |closure| and
  three counts: ~11 bytes per pair-pixel, as much as the cube's phase+coh+unw at 12) would break the
  "qc group no larger than the cube" bound (issue 20); after +1 epoch the affected old pairs are the few
  pairs among the new epoch's neighbours.
- Frame-wide quantities are recomputed from small stored state: LiCSBAS step 11's valid area depends on the
  epoch count and on every pair's data, so it is derived from the stored per-pixel count of valid pairs
  (``state_n_valid``, int16 (y, x)) plus the new pairs'; where the area is unchanged the old pairs'
  ``coverage``, ``coh_avg`` and ``step11_bad`` hold and are copied, otherwise step 11 is recomputed over all
  pairs (one light read of the valid mask and coherence; logged). Step 12 (per-ifg loop verdicts),
  ``triplet_bad`` and the per-ifg labels are recomputed for every pair from the per-loop RMS
  (``triplet_rms*``, stored float64 for this) and the label counts: no pixel read. Thresholds are parameters:
  a change of any forces a full run.

A full recompute (with a one-line reason) when: no previous group, it lacks the state (written before
``qc_state_version``), the parameters or the unw / landmask inputs changed, or pairs were removed.
Stored state (:func:`insarcloud.qc.dask_ops.assemble`): ``state_n_valid``, 2 bytes per pixel (a cube holds
>= 12 bytes per pixel and pair), and the per-loop RMS in float64 (8 bytes per loop more than float32).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, NamedTuple

import dask
import dask.array as da
import numpy as np
import xarray as xr

from insarcloud.errors import CubeError
from insarcloud.qc import closure, labels, stats
from insarcloud.qc.config import QCParams
from insarcloud.qc.dask_ops import (
    STATE_VERSION,
    LoopPieces,
    PartialsLayout,
    PixelPieces,
    _has_unw,
    assemble,
    check_cube,
    choose_block,
    pass1_partials,
    prepare_inputs,
    reuse_inputs,
    window_arrays,
)
from insarcloud.qc.network import Triplets, epochs, find_triplets

log = logging.getLogger(__name__)

#: Variables the previous group must hold for an update (besides the products it copies).
STATE_VARS = ("state_n_valid", "n_loop_err", "n_loops", "phase_std", "coh_mean", "label", "reason", "coverage",
              "coh_avg", "step11_bad")


class Delta(NamedTuple):
    """What a grown network changes, as masks over the new network (P pairs, T loops).

    trip : the new network's loops. old_pair : (P,) int64 index of each pair in the previous group, -1 new.
    old_loop : (T,) int64 index of each loop in the previous group, -1 new. new_loop : (T,) bool.
    work : (P,) bool pairs whose per-pixel products are computed (new ones and old ones in a new loop).
    pix_loop : (T,) bool loops evaluated per pixel (those containing a work pair).
    read : (P,) bool pairs read from the cube (work pairs and the pairs of their loops).
    """

    trip: Triplets
    old_pair: np.ndarray
    old_loop: np.ndarray
    new_loop: np.ndarray
    work: np.ndarray
    pix_loop: np.ndarray
    read: np.ndarray


class UpdateStats(NamedTuple):
    """What an update computed (also stored as the group attribute ``qc_update``, JSON)."""

    mode: str
    reason: str
    n_pairs: int
    n_pairs_new: int
    n_pairs_affected: int
    n_pairs_read: int
    n_loops: int
    n_loops_new: int
    n_loops_revisited: int
    step11: str

    def as_json(self) -> str:
        return json.dumps(self._asdict())


def plan_delta(old_pairs: list[str], old_triplets: list[str], pairs: list[str]) -> Delta | str:
    """The :class:`Delta` from the previous group's pairs and loops to ``pairs``, or why there is none."""
    old_at = {p: i for i, p in enumerate(old_pairs)}
    removed = [p for p in old_pairs if p not in set(pairs)]
    if removed:
        return f"pairs removed since the previous qc ({len(removed)}: {', '.join(removed[:3])})"
    old_pair = np.array([old_at.get(p, -1) for p in pairs], np.int64)
    if not (old_pair < 0).any():
        return "no new pair"
    trip = find_triplets(pairs)
    new_p = old_pair < 0
    new_loop = new_p[trip.ij] | new_p[trip.jk] | new_p[trip.ik]
    loop_at = {n: i for i, n in enumerate(old_triplets)}
    old_loop = np.array([-1 if nl else loop_at.get(n, -2) for n, nl in zip(trip.names, new_loop, strict=True)],
                        np.int64)
    if (old_loop == -2).any():
        return "a loop of old pairs is missing from the previous group"
    work = new_p.copy()
    for a in (trip.ij, trip.jk, trip.ik):
        work[a[new_loop]] = True
    pix_loop = work[trip.ij] | work[trip.jk] | work[trip.ik]
    read = work.copy()
    for a in (trip.ij, trip.jk, trip.ik):
        read[a[pix_loop]] = True
    return Delta(trip, old_pair, old_loop, new_loop, work, pix_loop, read)


def state_problem(prev: xr.Dataset, ds: xr.Dataset) -> str | None:
    """Why the previous group cannot be updated (its state, or inputs that are not the same kind), or None."""
    if prev.attrs.get("qc_state_version") != STATE_VERSION:
        return f"previous group has no update state (qc_state_version {prev.attrs.get('qc_state_version')})"
    missing = [v for v in STATE_VARS if v not in prev.variables]
    if int(prev.attrs.get("n_triplets", 0)):
        missing += [v for v in ("triplet_rms_wrapped", "pair_closure_wrapped") if v not in prev.variables]
        if _has_unw(ds):
            missing += [v for v in ("triplet_rms", "triplet_offset_k", "triplet_n_valid", "pair_closure")
                        if v not in prev.variables]
    if missing:
        return "previous group lacks " + ", ".join(missing)
    if int(prev.attrs.get("has_unw", -1)) != int(_has_unw(ds)):
        return "unw presence changed"
    has_lm = "landmask" in ds.data_vars and ds["landmask"].dims == ("y", "x")
    if int(prev.attrs.get("landmask_applied", -1)) != int(has_lm):
        return "landmask presence changed"
    return None


def sub_triplets(trip: Triplets, loops: np.ndarray, pos: np.ndarray, n: int) -> Triplets:
    """The loops ``loops`` (indices) of ``trip`` with pair indices mapped through ``pos`` into a subset of ``n``."""
    return Triplets(pos[trip.ij[loops]], pos[trip.jk[loops]], pos[trip.ik[loops]],
                    [trip.names[i] for i in loops], n)


# ------------------------------------------------------------------------------------------------
# block functions


def _pass1_block(phase: np.ndarray, coh: np.ndarray, *rest: np.ndarray, sub_new: Triplets, new_in: np.ndarray,
                 need_old: int, need_new: int, layout: PartialsLayout) -> np.ndarray:
    """New loops' closure partials, new pairs' step-11 partials in the new valid area, and the number of
    pixels whose valid-area membership changed: one (1, 1, 1, L + 1) float64 block."""
    unw, count_old = (rest[0], rest[1]) if len(rest) == 2 else (None, rest[0])
    count_old = count_old[0].astype(np.int64)
    vsrc = unw if unw is not None else phase
    valid_new = np.isfinite(vsrc[new_in])
    count_new = count_old + valid_new.sum(axis=0)
    area_new = count_new >= need_new
    changed = np.count_nonzero(area_new != (count_old >= need_old))
    s11 = stats.step11_partials_in(valid_new, coh[new_in], area_new)
    pw = closure.closure_partials(closure.wrapped_closure(phase, sub_new))
    pu = closure.closure_partials(closure.raw_closure(unw, sub_new)) if layout.has_unw else None
    v = np.append(layout.pack(pu, pw, s11), float(changed))
    return v[None, None, None]


class _Rows:
    def __init__(self, n_work: int, loops: bool, unw_loops: bool) -> None:
        spec = [("pair_closure", n_work if unw_loops else 0), ("pair_closure_wrapped", n_work if loops else 0),
                ("label", n_work), ("reason", n_work), ("dn_loop_err", 1), ("dn_loops", 1)]
        self.rows: dict[str, tuple[int, int]] = {}
        pos = 0
        for name, k in spec:
            if k:
                self.rows[name] = (pos, pos + k)
                pos += k
        self.n = pos


def _pass2_block(phase: np.ndarray, coh: np.ndarray, *rest: np.ndarray, sub: Triplets, new_loop: np.ndarray,
                 work_in: np.ndarray, offset_k: np.ndarray | None, loops: bool, th: labels.RuleThresholds,
                 rows: _Rows) -> np.ndarray:
    """Per-pixel products of the work pairs (all their loops) and the new loops' per-pixel counts."""
    unw, std, cm = (rest[0], rest[1], rest[2]) if len(rest) == 3 else (None, rest[0], rest[1])
    wc = closure.wrapped_closure(phase, sub)
    wcnt = closure.pixel_loop_counts(wc, sub, th.loop_pixel_thre)
    n_bad = n_good = pc = None
    c = wc
    if unw is not None and loops:
        c = closure.correct_closure(closure.raw_closure(unw, sub), offset_k)  # type: ignore[arg-type]
        cnt = closure.pixel_loop_counts(c, sub, th.loop_pixel_thre)
        pc, n_bad, n_good = (cnt.pair_mean_abs[work_in], cnt.pair_n_bad[work_in], cnt.pair_n_good[work_in])
    pl = labels.pixel_labels(std, cm, pair_n_bad=n_bad, pair_n_good=n_good,
                             wrapped_mean_abs=wcnt.pair_mean_abs[work_in] if loops else None, thresholds=th)
    cn = c[new_loop]
    fin = np.isfinite(cn)
    parts = {"pair_closure": pc, "pair_closure_wrapped": wcnt.pair_mean_abs[work_in], "label": pl.label,
             "reason": pl.reason, "dn_loop_err": (fin & (np.abs(cn) > th.loop_pixel_thre)).sum(axis=0)[None],
             "dn_loops": fin.sum(axis=0)[None]}
    out = np.empty((rows.n,) + phase.shape[1:], np.float32)
    for name, (a, b) in rows.rows.items():
        out[a:b] = parts[name]
    return out


# ------------------------------------------------------------------------------------------------
# the update


def _merge(prev_var: da.Array, computed: da.Array, keep_old: np.ndarray, perm: np.ndarray, dtype: Any) -> da.Array:
    """(P, y, x): the previous group's ``prev_var`` at ``keep_old`` (its indices) and ``computed`` (the work
    pairs), in the new pair order (``perm`` indexes the concatenation [kept, work])."""
    old = prev_var[keep_old].astype(dtype).rechunk({1: computed.chunks[1], 2: computed.chunks[2]})
    return da.concatenate([old, computed.astype(dtype)], axis=0)[perm]


def update_dataset(ds: xr.Dataset, prev: xr.Dataset, delta: Delta, params: QCParams | None = None, *,
                   per_pair: xr.Dataset | None = None) -> tuple[xr.Dataset, UpdateStats]:
    """The qc dataset of ``ds`` (lazy, like :func:`insarcloud.qc.dask_ops.qc_dataset`) from the previous
    group ``prev`` (opened lazily) and the new pairs and loops of ``delta`` (module docstring).

    ``per_pair``: the same cube opened with one pair per Dask chunk (its stored chunks), from which the pairs
    this update needs are read; ``ds`` itself may be chunked many pairs per task (``read_chunks``), where
    selecting a few pairs would read every chunk holding one of them, i.e. the whole cube.
    """
    t0 = time.perf_counter()
    p = params or QCParams()
    th = p.rules.thresholds()
    pairs = check_cube(ds)
    trip = delta.trip
    has_unw = _has_unw(ds)
    T, P = trip.n_triplets, len(pairs)
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    unw_loops = has_unw and T > 0
    R, W = np.flatnonzero(delta.read), np.flatnonzero(delta.work)
    L, NL = np.flatnonzero(delta.pix_loop), np.flatnonzero(delta.new_loop)
    new_p = np.flatnonzero(delta.old_pair < 0)
    pos = np.full(P, -1, np.int64)
    pos[R] = np.arange(R.size)
    sub_pix, sub_new = sub_triplets(trip, L, pos, R.size), sub_triplets(trip, NL, pos, R.size)
    # the block a full run on the whole network takes (its working set bounds this run's, which holds fewer
    # pairs and loops): the same blocks give the new pairs' windowed statistics and the new loops' sums bit
    # for bit as a full run
    b = p.block or choose_block(P, T, ny, nx, p.block_mem_mb)
    src = ds if per_pair is None else per_pair
    if [str(v) for v in src["pair"].values] != pairs:
        raise CubeError("the per-pair view of the cube lists other pairs than the cube")
    inp = prepare_inputs(src.isel(pair=R), b)
    kept, how = reuse_inputs([inp.phase, inp.coh] + ([inp.unw] if inp.unw is not None else []))
    phase, coh = kept[0], kept[1]
    unw = kept[2] if inp.unw is not None else None

    # ---- pass 1: new loops' per-loop partials and the new pairs' step-11 partials (valid area from the counts)
    old_pairs = [str(v) for v in prev["pair"].values]
    need_old = min(len(epochs(old_pairs)), len(old_pairs))
    need_new = min(len(epochs(pairs)), P)
    layout = PartialsLayout(new_p.size, NL.size, unw_loops)
    count_old = prev["state_n_valid"].data.rechunk((b, b))
    args = [phase, coh] + ([unw] if unw is not None else []) + [count_old[None]]
    per_block = da.map_blocks(_pass1_block, *args, new_axis=[3], chunks=(1, 1, 1, layout.n + 1), dtype=np.float64,
                              sub_new=sub_new, new_in=pos[new_p], need_old=need_old, need_new=need_new,
                              layout=layout)
    (vec,) = dask.compute(per_block.sum(axis=(0, 1, 2), split_every=8))
    vec = np.asarray(vec)
    pu, pw, s11_new = layout.unpack(vec[:-1])
    changed = int(round(vec[-1]))

    # per-loop results of the whole network: old loops from the previous group, new ones from pass 1
    lw_new = closure.finalize_partials(pw)
    old_l = delta.old_loop[~delta.new_loop]
    rms_w = np.empty(T)
    rms_w[NL] = lw_new.rms
    if T:
        rms_w[~delta.new_loop] = prev["triplet_rms_wrapped"].values.astype(np.float64)[old_l]
    loops_w = closure.LoopStats(np.zeros(T, np.int64), rms_w, np.zeros(T, np.int64))  # only rms is used
    loops = None
    if unw_loops:
        lu_new = closure.finalize_partials(pu)  # type: ignore[arg-type]
        k, rms, nv = np.empty(T, np.int64), np.empty(T), np.empty(T, np.int64)
        k[NL], rms[NL], nv[NL] = lu_new.offset_k, lu_new.rms, lu_new.n_valid
        k[~delta.new_loop] = prev["triplet_offset_k"].values[old_l]
        rms[~delta.new_loop] = prev["triplet_rms"].values.astype(np.float64)[old_l]
        nv[~delta.new_loop] = prev["triplet_n_valid"].values[old_l]
        loops = closure.LoopStats(k, rms, nv)

    # step 11: an old pair's coverage, mean coherence and verdict hold while the valid area is the same
    if changed == 0:
        s11n = stats.finalize_step11(s11_new, p.cov_thre, p.coh_thre)
        is_old = delta.old_pair >= 0
        old_idx = delta.old_pair[is_old]
        s11 = stats.IfgStats(np.empty(P), np.empty(P), np.empty(P, bool))
        for name, src in (("coverage", "coverage"), ("coh_avg", "coh_avg"), ("bad", "step11_bad")):
            arr = getattr(s11, name)
            arr[new_p] = getattr(s11n, name)
            arr[is_old] = prev[src].values[old_idx]
        s11_how = "reused (valid area unchanged)"
    else:
        full = prepare_inputs(ds, p.block or choose_block(P, 0, ny, nx, p.block_mem_mb))
        empty = Triplets(*(np.zeros(0, np.int64) for _ in range(3)), [], P)
        _, _, s11p = pass1_partials(full.phase, full.coh, full.unw, empty, len(epochs(pairs)))
        s11 = stats.finalize_step11(s11p, p.cov_thre, p.coh_thre)
        s11_how = f"recomputed over all pairs ({changed} pixels changed valid-area membership)"
        log.info("qc update: step 11 %s", s11_how)

    # ---- pass 2 (lazy): per-pixel products of the work pairs, new loops' per-pixel counts
    work_in = pos[W]
    std, cm = window_arrays(phase[work_in], coh[work_in], p.window)
    rows = _Rows(W.size, T > 0, unw_loops)
    out_chunks = ((rows.n,), phase.chunks[1], phase.chunks[2])
    offs = None if loops is None else loops.offset_k[L]
    args2 = [phase, coh] + ([unw] if unw is not None else []) + [std, cm]
    pack = da.map_blocks(_pass2_block, *args2, dtype=np.float32, chunks=out_chunks, sub=sub_pix,
                         new_loop=delta.new_loop[L], work_in=work_in, offset_k=offs, loops=T > 0, th=th, rows=rows)

    def row(name: str) -> da.Array | None:
        if name not in rows.rows:
            return None
        a, bb = rows.rows[name]
        return pack[a:bb]

    keep = np.flatnonzero(~delta.work)  # old pairs in no new loop: copied
    perm = np.argsort(np.concatenate([keep, W]), kind="stable")
    keep_old = delta.old_pair[keep]
    # the windowed statistics of every old pair (affected ones too: they depend on the pair alone) are copied;
    # the affected pairs' float32 values computed above serve their labels only
    old_all = np.flatnonzero(delta.old_pair >= 0)
    perm_new = np.argsort(np.concatenate([old_all, new_p]), kind="stable")
    new_in_w = np.searchsorted(W, new_p)

    def merged(name: str, computed: da.Array | None, dtype: Any) -> da.Array | None:
        return None if computed is None else _merge(prev[name].data, computed, keep_old, perm, dtype)

    def merged_new(name: str, computed: da.Array) -> da.Array:
        return _merge(prev[name].data, computed[new_in_w], delta.old_pair[old_all], perm_new, np.float32)

    label_w = row("label").astype(np.uint8)  # type: ignore[union-attr]
    label = merged("label", label_w, np.uint8)
    spatial = {0: b, 1: b}

    def plane(name: str, d: da.Array) -> da.Array:
        return (prev[name].data.rechunk(spatial).astype(np.int32) + d[0].astype(np.int32)).astype(np.int16)

    vsrc = unw if unw is not None else phase
    n_valid = (prev["state_n_valid"].data.rechunk(spatial).astype(np.int32)
               + da.isfinite(vsrc[pos[new_p]]).sum(axis=0).astype(np.int32)).astype(np.int16)
    px = PixelPieces(merged_new("phase_std", std), merged_new("coh_mean", cm), label,  # type: ignore[arg-type]
                     merged("reason", row("reason"), np.uint8),
                     merged("pair_closure_wrapped", row("pair_closure_wrapped"), np.float32),
                     merged("pair_closure", row("pair_closure"), np.float32),
                     plane("n_loop_err", row("dn_loop_err")), plane("n_loops", row("dn_loops")),  # type: ignore[arg-type]
                     n_valid)
    lp = LoopPieces(loops, loops_w, s11)
    res = assemble(ds, p, pairs, trip, px, lp, block=b, has_landmask=inp.has_landmask, n_land=inp.n_land)
    st = UpdateStats("incremental", f"+{new_p.size} pairs", P, int(new_p.size), int(W.size - new_p.size),
                     int(R.size), T, int(NL.size), int(L.size - NL.size), s11_how)
    log.info("qc update: %d new of %d pairs, %d new of %d loops computed (pass 1), %d old loops re-evaluated per "
             "pixel for %d affected old pairs, %d pairs read; pass 1 %.1fs, inputs %s", st.n_pairs_new, P,
             st.n_loops_new, T, st.n_loops_revisited, st.n_pairs_affected, st.n_pairs_read,
             time.perf_counter() - t0, how)
    return res, st


def try_update(url: str, ds: xr.Dataset, params: QCParams, marker_params: dict[str, Any], prev_group: str | None,
               target: str, storage_options: dict[str, Any] | None = None) -> tuple[xr.Dataset | None, str]:
    """The updated qc dataset from the stage's previous group, or (None, why a full recompute is needed)."""
    from insarcloud.io.cube import open_cube, read_marker

    if prev_group is None:
        return None, "no previous qc output"
    if prev_group == target:
        return None, f"the previous group {prev_group!r} is the one being rewritten"
    marker = read_marker(url, prev_group, storage_options) or {}
    if marker.get("params") != marker_params:
        return None, "qc parameters changed since the previous output"
    prev = open_cube(url, storage_options, group=prev_group)
    why = state_problem(prev, ds)
    if why:
        return None, why
    pairs = check_cube(ds)
    if not int(prev.attrs.get("n_triplets", 0)) and find_triplets(pairs).n_triplets:
        return None, "the previous network had no closed loop"
    old_trip = [str(v) for v in prev["triplet"].values] if "triplet" in prev.coords else []
    delta = plan_delta([str(v) for v in prev["pair"].values], old_trip, pairs)
    if isinstance(delta, str):
        return None, delta
    res, st = update_dataset(ds, prev, delta, params, per_pair=open_cube(url, storage_options))
    res.attrs["qc_update"] = st._replace(reason=f"updated from {prev_group}: +{st.n_pairs_new} pairs").as_json()
    return res, ""


__all__ = ["Delta", "UpdateStats", "plan_delta", "state_problem", "try_update", "update_dataset"]
