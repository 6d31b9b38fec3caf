"""What the quality stage's actors are given: job shape and order, and which pairs an update must infer.

Job shape (issue 20, "read proportional to what is used"). The qc group stores ``pair_closure`` with all
(or thousands of) pairs per Zarr chunk over a small spatial block (``qc.dask_ops``: (pairs, b, b), b = 32
on a real frame), while the cube stores ``phase``/``coh`` one pair per 512 x 512 chunk. A job of one pair
and one window decodes every pair of every closure chunk under the window to use one of them (676x on a
real frame). So an actor *call* is one window x as many of its pairs as the actor's memory bound allows
(:func:`pairs_per_call`; all of them on a real frame): the closure channel of those pairs is read in one
orthogonal selection, each stored chunk decoded once per call, and the call then runs its pairs through
the model in sub-batches (:func:`pairs_per_step`) so that only one sub-batch's inputs and tiles are held
at a time. The result of each pair is the one a single-pair job gives (the tile grid is global).

Updates (issue 18, "quality only for pairs whose inputs changed"): :func:`reuse_plan`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

log = logging.getLogger(__name__)

#: Default memory bound of one actor's reads and working arrays (MB); the model itself comes on top
#: (the packaged atto export: ~15 MB of weights, ~0.3 GB of activations per 4 tiles of 256 px).
ACTOR_MEM_MB = 2048
#: Bytes per window pixel and pair of one inference sub-batch: phase, coh, unw, closure float32 reads,
#: the (channel, y, x) float32 input stack (<= 6 channels) and the float64 blend accumulator.
STEP_BYTES_PER_PX = 4 * (4 + 6) + 8


class ChunkJob(NamedTuple):
    """One unit of work: pair ``pair`` (index ``pair_index`` in the output) over y/x ``[start, stop)``.

    ``source`` >= 0: the pair's quality is unchanged since the previous group (:func:`reuse_plan`) and is
    copied from that group's pair ``source`` instead of inferred."""

    pair: str
    pair_index: int
    y: tuple[int, int]
    x: tuple[int, int]
    source: int = -1

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.pair_index, self.y[0], self.x[0])


def plan_jobs(pairs: list[str], shape: tuple[int, int], chunk: tuple[int, int],
              source: Mapping[str, int] | None = None) -> list[ChunkJob]:
    """Every (pair, y chunk, x chunk) of a (pair, y, x) output, window-major (all pairs of a window together,
    the order that lets one call read a window's closure chunks once)."""
    ny, nx = shape
    cy, cx = chunk
    src = source or {}
    return [ChunkJob(p, i, (y0, min(ny, y0 + cy)), (x0, min(nx, x0 + cx)), src.get(p, -1))
            for y0 in range(0, ny, cy) for x0 in range(0, nx, cx) for i, p in enumerate(pairs)]


def window_px(shape: tuple[int, int], chunk: tuple[int, int], tile: int, overlap: int) -> int:
    """Pixels of the largest read window of a chunk-sized region (the region plus its tiles' halo)."""
    from insarcloud.qc.tiling import tile_starts_global

    out = 1
    for n, c in zip(shape, chunk, strict=True):
        starts = tile_starts_global(n, tile, overlap)
        best = 0
        for r0 in range(0, n, c):
            r1 = min(n, r0 + c)
            s = starts[(starts < r1) & (starts + tile > r0)]
            best = max(best, min(n, int(s[-1]) + tile) - int(s[0]))
        out *= best
    return out


def pairs_per_call(n_pairs: int, win_px: int, closure_itemsize: int, mem_mb: int = ACTOR_MEM_MB) -> int:
    """Pairs of one window per actor call: all of them when their closure over the window fits half the
    bound (kept in its stored dtype for the call), else as many as fit (each extra call decodes the window's
    closure chunks once more: the read amplification is then ``n_pairs / pairs_per_call``)."""
    if closure_itemsize <= 0:
        return n_pairs
    return int(max(1, min(n_pairs, (mem_mb * 2**20 // 2) // max(1, win_px * closure_itemsize))))


def pairs_per_step(win_px: int, mem_mb: int = ACTOR_MEM_MB) -> int:
    """Pairs per inference sub-batch inside a call (reads of phase/coh/unw, input stack, blend): a quarter of
    the bound."""
    return int(max(1, (mem_mb * 2**20 // 4) // max(1, win_px * STEP_BYTES_PER_PX)))


def calls(jobs: Sequence[ChunkJob], per_call: int) -> list[list[ChunkJob]]:
    """Jobs grouped into actor calls: one window each, at most ``per_call`` jobs, copies apart from inference
    (a copy reads the previous group's chunk, not the inputs); window-major order."""
    order = sorted(jobs, key=lambda j: (j.y, j.x, j.source >= 0, j.pair_index))
    out: list[list[ChunkJob]] = []
    for j in order:
        last = out[-1] if out else None
        if (last is not None and len(last) < per_call and (last[0].y, last[0].x) == (j.y, j.x)
                and (last[0].source >= 0) == (j.source >= 0)):
            last.append(j)
        else:
            out.append([j])
    return out


# ---------------------------------------------------------------------------------------------------------
# Updates: which pairs need inference


def loops_of(pairs: Sequence[str]) -> dict[str, frozenset[tuple[str, str, str]]]:
    """pair -> the closed loops (triplets of pair names) it belongs to (``insarcloud.core.pairs``)."""
    from insarcloud.core.pairs import closed_triplets, split_pair

    names = [str(p) for p in pairs]
    keys = [split_pair(p) for p in names]
    trip = closed_triplets([a for a, _ in keys], [b for _, b in keys])
    out: dict[str, set[tuple[str, str, str]]] = {p: set() for p in names}
    for row in trip.tolist():
        loop = tuple(names[i] for i in row)
        for i in row:
            out[names[i]].add(loop)  # type: ignore[arg-type]
    return {p: frozenset(v) for p, v in out.items()}


def pairs_to_infer(old_pairs: Sequence[str], new_pairs: Sequence[str], uses_closure: bool) -> list[str]:
    """The pairs of ``new_pairs`` whose quality inputs may differ from the previous run's.

    Rule: a pair's model inputs are its own cube planes (phase, coh, unw: written once by ingest and never
    changed by an append) and, with the closure channel, the qc group's ``pair_closure``: the mean |closure|
    over the loops that contain the pair, each loop's closure depending only on its own three pairs
    (``qc.closure.pixel_loop_counts``; per-loop integer offsets from that loop's own sums). So a pair's inputs
    change exactly when it is new, or (closure channel) when the set of loops containing it changed: an old
    pair closing a loop with a new pair gets a new mean, every other old pair keeps its value bit for bit.
    """
    old = set(map(str, old_pairs))
    new = [str(p) for p in new_pairs]
    if not uses_closure:
        return [p for p in new if p not in old]
    before, after = loops_of([str(p) for p in old_pairs]), loops_of(new)
    return [p for p in new if p not in old or before[p] != after[p]]


class Reuse(NamedTuple):
    """source: new pair name -> index in ``group`` whose quality is copied; reason: one line."""

    group: str | None
    source: dict[str, int]
    reason: str


def _qc_group_with(url: str, fingerprint: str, storage_options: dict[str, Any] | None) -> str | None:
    from insarcloud.errors import CubeError
    from insarcloud.io.cube import open_zarr_group, read_marker

    try:
        root = open_zarr_group(url, None, storage_options)
    except CubeError:
        return None
    for name, _ in root.groups():
        if name.startswith("qc") and (read_marker(url, name, storage_options) or {}).get("params_hash") == fingerprint:
            return str(name)
    return None


def reuse_plan(url: str, prev: str | None, identity: Mapping[str, Any], pairs: Sequence[str],
               shape: tuple[int, int], storage_options: dict[str, Any] | None = None) -> Reuse:
    """Which pairs' quality the stage may copy from ``prev`` (the stage's current group before this run).

    Copies only when everything but the pair list and the qc group's pairs is the same as when ``prev`` was
    written: same parameters (tile, overlap, numerics, chunk), same checkpoint content, same grid, and (when a
    qc group is an input) a qc group of the same qc parameters; otherwise a full recompute, with the reason.
    Among the pairs, :func:`pairs_to_infer` decides (the closure channel is assumed used whenever a qc group is
    an input: the driver does not load the model, and a wasted inference is only slower, never wrong).
    """
    from insarcloud.io.cube import open_zarr_group, read_marker

    def full(why: str) -> Reuse:
        return Reuse(None, {}, f"full recompute: {why}")

    if prev is None:
        return full("no previous quality group")
    marker = read_marker(url, prev, storage_options) or {}
    if not marker.get("complete") or "inputs" not in marker:
        return full(f"previous group {prev} is incomplete or has no input fingerprint")
    if marker.get("params") != identity.get("params"):
        return full(f"parameters changed since {prev}")
    oi, ni = marker["inputs"], identity.get("inputs", {})
    if oi.get("files") != ni.get("files"):
        return full(f"model checkpoint changed since {prev}")
    try:
        g = open_zarr_group(url, prev, storage_options)
        old_pairs = [str(v) for v in g["pair"][:]]
        if tuple(g["quality"].shape[1:]) != tuple(shape):
            return full(f"grid changed since {prev}")
    except (KeyError, ValueError) as exc:
        return full(f"previous group {prev} is unreadable ({exc})")
    old_qc, new_qc = oi.get("upstream", {}).get("qc"), ni.get("upstream", {}).get("qc")
    if (old_qc is None) != (new_qc is None):
        return full("the qc input " + ("appeared" if new_qc else "disappeared") + f" since {prev}")
    if new_qc is not None and new_qc != old_qc:
        old_group = _qc_group_with(url, old_qc, storage_options)
        new_group = _qc_group_with(url, new_qc, storage_options)
        if old_group is None or new_group is None:
            return full(f"the qc group {prev} read is gone: cannot tell which closure values changed")
        op = (read_marker(url, old_group, storage_options) or {}).get("params")
        if op != (read_marker(url, new_group, storage_options) or {}).get("params"):
            return full(f"qc parameters changed ({old_group} -> {new_group})")
    infer = set(pairs_to_infer(old_pairs, pairs, uses_closure=new_qc is not None))
    index = {p: i for i, p in enumerate(old_pairs)}
    source = {str(p): index[str(p)] for p in pairs if str(p) not in infer}
    return Reuse(prev, source, f"{len(pairs) - len(source)} of {len(pairs)} pairs inferred (new, or in a new "
                               f"loop), {len(source)} copied from {prev}")


def closure_itemsize(url: str, qc_group: str | None, storage_options: dict[str, Any] | None = None) -> int:
    """Stored bytes per value of the qc group's ``pair_closure`` (0 without one)."""
    if qc_group is None:
        return 0
    from insarcloud.io.cube import open_zarr_group

    try:
        return int(np.dtype(open_zarr_group(url, qc_group, storage_options)["pair_closure"].dtype).itemsize)
    except (KeyError, ValueError, TypeError):
        return 0


__all__ = ["ACTOR_MEM_MB", "ChunkJob", "Reuse", "calls", "closure_itemsize", "loops_of", "pairs_per_call",
           "pairs_per_step", "pairs_to_infer", "plan_jobs", "reuse_plan", "window_px"]
