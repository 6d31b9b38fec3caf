"""Serving ConvNeXt-InSAR over frame cubes with a pool of Ray actors (the thin engine layer).

Each actor loads the model once (``num_gpus=1`` when the Ray cluster has GPUs, CPU otherwise), then for
every chunk job it is given (a pair and a y/x chunk of the cube) it reads the chunk plus the halo its
tiles need straight from Zarr on the bucket (``insarcloud.io.open_cube``), runs the tiles of the global
tile grid that touch the chunk, blends them (sin^2 tapers, a partition of unity) and writes the
``quality`` chunk back with ``insarcloud.io.write_stage_region``. Only job descriptions (strings and
ints) and small summaries pass through the driver and Ray's object store.

Because the tile grid is global (it depends on the image size, the tile and the overlap only), a chunk's
result equals the same pixels of a whole-image inference: there are no seams at chunk borders by
construction, and ``tests/qc/test_serve.py`` checks it.

Robustness: actors are created with ``max_restarts``; a job whose actor crashed is queued again (up to
``max_retries`` times); chunks already in the store (from an interrupted run with the same parameters)
are skipped; the group's completion marker is flipped only when every chunk is written.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from insarcloud.engines import started_actors
from insarcloud.errors import CubeError

log = logging.getLogger(__name__)

STAGE = "quality"
GROUP = "quality"
DEFAULT_CHECKPOINT = Path(__file__).parent / "checkpoints" / "convnext_insar_atto.pt"
# Packaged exports by name (checkpoints/README.md): "default" maps P(unwrapping error or decorrelation), the
# quality map of the paper; "unw_error" maps P(unwrapping error) alone, the better inversion weight
# (notes/invert.md: +16% velocity RMSE vs unweighted on the report frames against +6% for "default").
PACKAGED_CHECKPOINTS = {"default": DEFAULT_CHECKPOINT,
                        "unw_error": DEFAULT_CHECKPOINT.with_name("convnext_insar_atto_unw.pt")}
# What "bad" means to each packaged export, written as the quality group's ``quality_target`` attribute so
# that consumers (the inversion's quality -> weight floor) know the map's meaning without reading the model.
PACKAGED_TARGETS = {"default": "unw_error_or_decorrelation", "unw_error": "unw_error"}


def checkpoint_target(sha256: str) -> str:
    """The target of a packaged export with this file hash; "unknown" for any other checkpoint."""
    for name, path in PACKAGED_CHECKPOINTS.items():
        if path.exists() and file_sha256(str(path)) == sha256:
            return PACKAGED_TARGETS[name]
    return "unknown"


class ServeParams(BaseModel):
    """Inference parameters (their hash names the output; a change writes a new group)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    checkpoint: str = Field(str(DEFAULT_CHECKPOINT), description="checkpoint URL or path, or a packaged "
                            "export's name: 'default' or 'unw_error'")
    tile: int = Field(256, ge=32, le=4096, description="model tile side, pixels")
    overlap: int = Field(64, ge=0, le=2048, description="tile overlap blended with sin^2 tapers, pixels")
    batch_size: int = Field(4, ge=1, le=256, description="tiles per forward pass")
    bf16: bool | None = Field(None, description="bfloat16 autocast; None: on GPU, or CPU with AMX/AVX512-BF16")
    channels_last: bool = Field(True, description="NHWC tensors (faster oneDNN convolutions on CPU)")
    threads: int = Field(1, ge=1, le=256, description="torch threads (and Ray CPUs) per actor")
    chunk: int | None = Field(None, ge=32, description="output chunk side; None: the cube's chunks")

    @field_validator("checkpoint")
    @classmethod
    def _packaged(cls, v: str) -> str:
        return str(PACKAGED_CHECKPOINTS[v]) if v in PACKAGED_CHECKPOINTS else v

    def model_post_init(self, __context: object) -> None:
        from insarcloud.core.options import tile_overlap_error  # the project's one tile/overlap rule

        if why := tile_overlap_error(self.tile, self.overlap):
            raise ValueError(why)


class ChunkJob(NamedTuple):
    """One unit of work: pair ``pair`` (index ``pair_index`` in the output) over y/x ``[start, stop)``."""

    pair: str
    pair_index: int
    y: tuple[int, int]
    x: tuple[int, int]

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.pair_index, self.y[0], self.x[0])


class QualityRun(NamedTuple):
    """Summary of :func:`run_quality`."""

    group: str
    chunks: int
    skipped: int
    retried: int
    seconds: float
    device: str


def plan_jobs(pairs: list[str], shape: tuple[int, int], chunk: tuple[int, int]) -> list[ChunkJob]:
    """Every (pair, y chunk, x chunk) of a (pair, y, x) output, in store order."""
    ny, nx = shape
    cy, cx = chunk
    return [ChunkJob(p, i, (y0, min(ny, y0 + cy)), (x0, min(nx, x0 + cx)))
            for i, p in enumerate(pairs) for y0 in range(0, ny, cy) for x0 in range(0, nx, cx)]


def file_sha256(url: str, storage_options: dict[str, Any] | None = None) -> str:
    from insarcloud.io.storage import read_bytes

    return hashlib.sha256(read_bytes(url, storage_options)).hexdigest()


def chunks_written(url: str, group: str, var: str, chunk: tuple[int, int],
                   storage_options: dict[str, Any] | None = None) -> set[tuple[int, int, int]]:
    """(pair index, y0, x0) of the chunks of ``group/var`` present in the store.

    A Zarr chunk is one object written in one PUT, so its presence means the chunk was written in full
    (``quality`` is never all fill value where there is land: invalid pixels are 0, not NaN; water pixels
    (landmask 0) are NaN, so a chunk that is all water may be absent and is simply recomputed on a resume).
    """
    from insarcloud.io.storage import get_fs, join

    fs, root = get_fs(join(url, group, var, "c"), storage_options)
    try:
        keys = fs.find(root)
    except FileNotFoundError:
        return set()
    out = set()
    for k in keys:
        parts = str(k)[len(root.rstrip("/")) + 1 :].split("/")
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            p, iy, ix = (int(v) for v in parts)
            out.add((p, iy * chunk[0], ix * chunk[1]))
    return out


class QualityWorker:
    """Holds one model; runs chunk jobs of one cube (wrapped with ``ray.remote`` by :func:`run_quality`).

    Parameters
    ----------
    cube_url, group : str
        The cube and the output group (its template must exist).
    params_json : str
        :class:`ServeParams` as JSON.
    storage_options : dict, optional
        fsspec options for the cube (and the checkpoint).
    fault_file : str, optional
        Test hook: when this local file exists at a job's start, the worker deletes it and kills its own
        process (a real crash, to exercise ``max_restarts`` and the retry of unfinished chunks).
    """

    def __init__(self, cube_url: str, group: str, params_json: str,
                 storage_options: dict[str, Any] | None = None, fault_file: str | None = None,
                 qc_group: str | None = None) -> None:
        import torch

        from insarcloud.qc.model import cpu_has_fast_bf16
        from insarcloud.qc.train import load_model

        self.p = ServeParams.model_validate_json(params_json)
        self.url, self.group, self.so, self.fault_file = cube_url, group, storage_options, fault_file
        self.qc_group = qc_group  # the qc stage's current group when the driver planned (its fingerprint is ours)
        torch.set_num_threads(self.p.threads)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model = load_model(self.p.checkpoint, storage_options).to(self.device)
        if self.p.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model.eval()
        if self.p.bf16 is None:
            self.bf16 = (torch.cuda.is_bf16_supported() if self.device.type == "cuda" else cpu_has_fast_bf16())
        else:
            self.bf16 = self.p.bf16
        self._ds: Any = None
        self._qc: Any = None
        # One Zarr chunk may hold many pairs (the qc group packs up to ~8 MB per chunk), while a job needs one
        # pair: keep the last block read per variable, so consecutive jobs (store order) read each object once
        # instead of once per pair.
        self._blocks: dict[tuple[int, str], tuple[tuple[int, int, tuple, tuple], np.ndarray]] = {}
        self._pair_index: dict[int, dict[str, int]] = {}
        self._masks: dict[tuple[int, tuple, tuple], np.ndarray] = {}

    def info(self) -> dict[str, Any]:
        return {"device": str(self.device), "bf16": self.bf16, "pid": os.getpid(),
                "channels": list(self.model.config.channels)}

    def _open(self) -> tuple[Any, Any]:
        from insarcloud import io

        if self._ds is None:
            self._ds = io.open_cube(self.url, self.so)
            if "closure" in self.model.config.channels:
                try:
                    if self.qc_group is None:
                        raise CubeError("no qc group")
                    self._qc = io.open_cube(self.url, self.so, group=self.qc_group)
                except CubeError:
                    log.warning("%s has no complete qc group: the closure channel is no data", self.url)
        return self._ds, self._qc

    def _pairs(self, d: Any) -> dict[str, int]:
        if id(d) not in self._pair_index:
            self._pair_index[id(d)] = {str(v): i for i, v in enumerate(d["pair"].values)}
        return self._pair_index[id(d)]

    def run(self, job: ChunkJob) -> dict[str, Any]:
        """Write the quality of one chunk job; returns its record (``key``, seconds read/infer/total, ...)."""
        return self.run_many([job])[0]

    def _landmask(self, ds: Any, ys: tuple[int, int], xs: tuple[int, int]) -> np.ndarray | None:
        """The cube's landmask over the window (static: read once per actor and window)."""
        from insarcloud import io

        if "landmask" not in ds.data_vars:
            return None
        key = (id(ds), ys, xs)
        if key not in self._masks:
            self._masks[key] = np.asarray(io.with_retries(
                lambda: ds["landmask"].isel(y=slice(*ys), x=slice(*xs)).values))
        return self._masks[key]

    def _read_pairs(self, d: Any, name: str, pairs: list[str], ys: tuple[int, int], xs: tuple[int, int]
                    ) -> np.ndarray:
        """``d[name]`` at ``pairs`` over the window, (pair, y, x) float32, reading each pair-chunk once.

        The pair-chunks that hold ``pairs`` are read in one call (the store fetches them concurrently) and
        kept until a job needs others, so consecutive jobs (store order) read each object once."""
        from insarcloud import io

        index = self._pairs(d)
        idx = np.array([index[p] for p in pairs])
        n = d.sizes["pair"]
        per = int((d[name].encoding.get("chunks") or (1,))[0])
        c0, c1 = (int(idx.min()) // per) * per, min(n, (int(idx.max()) // per + 1) * per)
        key = (c0, c1, ys, xs)
        cached = self._blocks.get((id(d), name))
        if cached is None or not (cached[0][0] <= c0 and c1 <= cached[0][1] and cached[0][2:] == (ys, xs)):
            block = io.with_retries(lambda: d[name].isel(pair=slice(c0, c1), y=slice(*ys), x=slice(*xs)).values)
            cached = (key, np.asarray(block, np.float32))
            self._blocks[(id(d), name)] = cached
        return cached[1][idx - cached[0][0]]

    def run_many(self, jobs: list[ChunkJob]) -> list[dict[str, Any]]:
        """Write the quality of several chunk jobs; one record per job, in order.

        Jobs over the same y/x chunk (consecutive pairs, as :func:`run_quality` sends them) share one read
        per variable, one forward pass over all their tiles (``batch_size`` tiles at a time) and one
        region write per run of consecutive pairs: the per-pair requests and the per-call overhead of a
        small tile are what a 64 px frame's quality costs otherwise. The result per pair is the one a
        single job gives (the tile grid is global)."""
        import xarray as xr

        from insarcloud import io
        from insarcloud.qc.model import cube_channels, plan_window

        if self.fault_file:  # fault injection for tests: the one actor whose remove succeeds dies (no race)
            try:
                os.remove(self.fault_file)
            except FileNotFoundError:
                pass
            else:
                os._exit(1)
        ds, qc = self._open()
        p = self.p
        ny, nx = ds.sizes["y"], ds.sizes["x"]
        chans = self.model.config.channels
        records: dict[tuple[int, int, int], dict[str, Any]] = {}
        windows: dict[tuple[tuple[int, int], tuple[int, int]], list[ChunkJob]] = {}
        for job in jobs:
            windows.setdefault((job.y, job.x), []).append(job)
        for (ys, xs), group in windows.items():
            t0 = time.perf_counter()
            plan = plan_window((ny, nx), ys, xs, p.tile, p.overlap)
            names = [j.pair for j in group]

            def read(d: Any, name: str, names: list[str] = names, plan: Any = plan) -> np.ndarray | None:
                if d is None or name not in d:
                    return None
                return self._read_pairs(d, name, names, plan.read_y, plan.read_x)

            phase, coh = read(ds, "phase"), read(ds, "coh")
            unw = read(ds, "unw") if "unw_grad" in chans else None
            amp = read(ds, "amp") if "amp" in chans else None
            closure = None
            # a cube without ``unw`` has a qc group without ``pair_closure``: no data, as in training
            # (qc/dataset.py), so the channel is NaN rather than a read of a missing variable
            if "closure" in chans and qc is not None and "pair_closure" in qc.data_vars:
                known = self._pairs(qc)
                have = [n for n in names if n in known]
                got = dict(zip(have, read(qc, "pair_closure", have), strict=True)) if have else {}
                closure = [got.get(n) for n in names]
            stack = np.stack([cube_channels(chans, phase[k], coh[k], unw=None if unw is None else unw[k],
                                            closure=None if closure is None else closure[k],
                                            amp=None if amp is None else amp[k]) for k in range(len(group))])
            t_read = time.perf_counter() - t0
            q = infer_regions(self.model, stack, plan, ys, xs, p.tile, p.overlap, batch_size=p.batch_size,
                              bf16=self.bf16, channels_last=p.channels_last)
            lm = self._landmask(ds, ys, xs)
            if lm is not None:  # LiCSAR landmask: water (0) has no quality (NaN), as no-data elsewhere
                q = np.where(lm[None] == 0, np.float32(np.nan), q).astype(np.float32)
            t_inf = time.perf_counter() - t0 - t_read
            # one region write per run of consecutive pair indices (each pair is its own output chunk)
            start = 0
            for k in range(1, len(group) + 1):
                if k == len(group) or group[k].pair_index != group[k - 1].pair_index + 1:
                    i0, i1 = group[start].pair_index, group[k - 1].pair_index + 1
                    part = xr.Dataset({"quality": (("pair", "y", "x"), q[start:k])})
                    region = {"pair": slice(i0, i1), "y": slice(*ys), "x": slice(*xs)}
                    io.with_retries(io.write_stage_region, part, self.url, self.group, region, self.so)
                    start = k
            dt = (time.perf_counter() - t0) / len(group)
            log.debug("%s %d pairs y%s x%s: read %.2fs infer %.2fs total %.2fs", self.url, len(group), ys, xs,
                      t_read, t_inf, dt * len(group))
            for job, qk in zip(group, q, strict=True):
                records[job.key] = {"key": job.key, "read_s": t_read / len(group), "infer_s": t_inf / len(group),
                                    "seconds": dt, "pid": os.getpid(), "pixels": int(qk.size),
                                    "tiles": len(plan.tiles)}
        return [records[j.key] for j in jobs]


def infer_regions(model: Any, windows: np.ndarray, plan: Any, region_y: tuple[int, int],
                  region_x: tuple[int, int], tile: int, overlap: int, *, batch_size: int = 4, bf16: bool = False,
                  channels_last: bool = False) -> np.ndarray:
    """``insarcloud.qc.model.infer_region`` for a stack of windows (pair, channel, wy, wx) over one plan.

    The tiles of every window go through ``predict_quality`` together (``batch_size`` per forward pass), so
    a small region's pairs fill the batches that one pair's single tile would leave nearly empty. Returns
    (pair, region y size, region x size) float32, each pair's blend exactly as ``infer_region`` makes it.
    """
    from insarcloud.qc.model import blend_weights, predict_quality

    k, c = windows.shape[:2]
    wy0, wx0 = plan.read_y[0], plan.read_x[0]
    nt = len(plan.tiles)
    x = np.full((k * nt, c, tile, tile), np.nan, np.float32)
    for j in range(k):
        for i, (ty, tx) in enumerate(plan.tiles):
            part = windows[j, :, ty - wy0 : ty - wy0 + tile, tx - wx0 : tx - wx0 + tile]
            x[j * nt + i, :, : part.shape[1], : part.shape[2]] = part
    q = predict_quality(model, x, bf16=bf16, channels_last=channels_last, batch_size=batch_size).quality
    weights = blend_weights(tile, overlap)
    hy, hx = region_y[1] - region_y[0], region_x[1] - region_x[0]
    out = np.zeros((k, hy, hx), np.float32)
    for j in range(k):
        acc = np.zeros((hy, hx), np.float64)
        wsum = np.zeros((hy, hx), np.float64)
        for i, (ty, tx) in enumerate(plan.tiles):
            # intersection of the tile with the region, in region and tile coordinates
            y0, y1 = max(ty, region_y[0]), min(ty + tile, region_y[1])
            x0, x1 = max(tx, region_x[0]), min(tx + tile, region_x[1])
            if y0 >= y1 or x0 >= x1:
                continue
            ts = (slice(y0 - ty, y1 - ty), slice(x0 - tx, x1 - tx))
            rs = (slice(y0 - region_y[0], y1 - region_y[0]), slice(x0 - region_x[0], x1 - region_x[0]))
            acc[rs] += q[j * nt + i][ts] * weights[ts]
            wsum[rs] += weights[ts]
        o = (acc / np.maximum(wsum, 1e-12)).astype(np.float32)
        win = windows[j, :3, region_y[0] - wy0 : region_y[1] - wy0, region_x[0] - wx0 : region_x[1] - wx0]
        o[~np.isfinite(win).all(0)] = 0.0
        out[j] = o
    return out

def _template(ds: Any, chunk: tuple[int, int], params: Mapping[str, Any]) -> Any:
    import dask.array as da
    import xarray as xr

    n, ny, nx = ds.sizes["pair"], ds.sizes["y"], ds.sizes["x"]
    q = da.zeros((n, ny, nx), chunks=(1, chunk[0], chunk[1]), dtype=np.float32)
    coords = {k: ds[k] for k in ("pair", "primary", "secondary", "y", "x", "lat", "lon") if k in ds.coords}
    out = xr.Dataset({"quality": (("pair", "y", "x"), q)}, coords=coords)
    out["quality"].attrs.update(
        long_name="pixel-wise interferogram quality (ConvNeXt-InSAR): 1 good, 0 bad or no data, NaN water "
                  "(landmask 0)",
        units="1", valid_min=0.0, valid_max=1.0,
    )
    out.attrs.update(source_url=str(ds.attrs.get("source_url", "")), frame=str(ds.attrs.get("frame", "")),
                     model_checkpoint=str(params["checkpoint"]), model_sha256=str(params["checkpoint_sha256"]),
                     quality_target=checkpoint_target(str(params["checkpoint_sha256"])))
    return out


def _requeue(job: ChunkJob, attempts: dict[tuple[int, int, int], int], todo: deque[ChunkJob], max_retries: int,
             cube_url: str) -> int:
    attempts[job.key] = attempts.get(job.key, 0) + 1
    if attempts[job.key] > max_retries:
        raise CubeError(f"chunk {job} of {cube_url} failed on {attempts[job.key]} actors: giving up")
    todo.append(job)
    return 1


def _connect_ray(address: str | None, n_cpus: int) -> bool:
    """Connect to Ray; start a local one (no dashboard) when no address is given. True if we started it."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        from insarcloud.engines import local_ray_at_normal_priority

        local_ray_at_normal_priority()
        ray.init(address="local", num_cpus=n_cpus, object_store_memory=200 * 1024**2,
                 include_dashboard=False, log_to_driver=False)
    return True


def run_quality(
    cube_url: str,
    params: ServeParams | None = None,
    *,
    storage_options: dict[str, Any] | None = None,
    ray_address: str | None = None,
    n_actors: int = 2,
    max_restarts: int = 2,
    max_retries: int = 3,
    progress: bool = True,
    fault_file: str | None = None,
) -> QualityRun:
    """Write the ``quality`` group (pair, y, x) of the cube at ``cube_url`` with a Ray actor pool.

    Parameters
    ----------
    cube_url : str
        Frame cube (Zarr v3) on any fsspec store.
    params : ServeParams
        Checkpoint, tiling and numerics.
    ray_address : str, optional
        ``ray://head:10001`` or ``auto``; None starts a local Ray (shut down again at the end).
    n_actors : int
        Actors in the pool (each ``params.threads`` CPUs, or one GPU when the cluster has GPUs).
    max_restarts, max_retries : int
        Ray restarts per actor; requeues per chunk job before giving up.

    Returns
    -------
    QualityRun
    """
    import ray
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

    from insarcloud import io

    p = params or ServeParams()
    t0 = time.perf_counter()
    ds = io.open_cube(cube_url, storage_options)
    for v in ("phase", "coh"):
        if v not in ds:
            raise CubeError(f"cube {cube_url} has no {v!r} variable: cannot infer quality")
    pairs = [str(v) for v in ds["pair"].values]
    if not pairs:
        raise CubeError(f"cube {cube_url} has no ingested pair")
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    if p.chunk is not None:
        chunk = (p.chunk, p.chunk)
    else:
        cs = ds["phase"].data.chunksize
        chunk = (int(cs[1]), int(cs[2]))
    from insarcloud.io import stages

    ckpt_sha = file_sha256(p.checkpoint, storage_options)
    # the checkpoint's identity is its content: the same model at another path (laptop, container) is the same
    ident = {k: v for k, v in p.model_dump().items() if k != "checkpoint"}
    qc_group = stages.current_group(cube_url, "qc", storage_options)
    upstream = {"qc": stages.group_fingerprint(cube_url, qc_group, storage_options)} if qc_group else {}
    plan = stages.plan_stage(cube_url, STAGE, GROUP, {**ident, "chunk": list(chunk)}, pairs=pairs,
                             upstream=upstream, files={"checkpoint": ckpt_sha}, storage_options=storage_options)
    marker = plan.identity
    if plan.done:
        stages.finish_stage(cube_url, plan, storage_options, base=GROUP)
        return QualityRun(plan.group, 0, 0, 0, time.perf_counter() - t0, "none")
    old = io.read_marker(cube_url, plan.group, storage_options)
    resuming = bool(old) and old.get("params_hash") == io.params_hash(marker)
    if not resuming:
        io.create_stage_template(_template(ds, chunk, {"checkpoint": p.checkpoint, "checkpoint_sha256": ckpt_sha}),
                                 cube_url, plan.group, stage=STAGE, params=marker,
                                 storage_options=storage_options)
    else:  # a resumed group is written under its lease too (create_stage_template takes it otherwise)
        from insarcloud.io.cube import hold_stage_lease

        hold_stage_lease(cube_url, plan.group, stage=STAGE, storage_options=storage_options)
    jobs = plan_jobs(pairs, (ny, nx), chunk)
    done = chunks_written(cube_url, plan.group, "quality", chunk, storage_options) if resuming else set()
    todo = deque(j for j in jobs if j.key not in done)
    skipped = len(jobs) - len(todo)
    # Chunk jobs per actor call: as many pairs of one chunk as fill a forward pass (``batch_size`` tiles).
    # Where one chunk already has that many tiles (the default 256 px tiles over 512 px chunks) it is one
    # job per call; a small frame's single-tile chunks go ``batch_size`` pairs at a time, window-major so
    # that a call's pairs share their reads (QualityWorker.run_many).
    # tiles of the global grid over the first chunk (qc.model.plan_window's count, without importing torch here)
    tiles = int(np.prod([np.count_nonzero(np.arange(0, max(n - p.overlap, 1), p.tile - p.overlap) < min(n, c))
                         for n, c in ((ny, chunk[0]), (nx, chunk[1]))]))
    per_call = max(1, p.batch_size // max(1, tiles))
    if per_call > 1:
        todo = deque(sorted(todo, key=lambda j: (j.y, j.x, j.pair_index)))
    if skipped:
        log.info("resuming %s/%s: %d of %d chunks already written", cube_url, plan.group, skipped, len(jobs))
    started = _connect_ray(ray_address, max(1, n_actors * p.threads))
    retried = 0
    device = "cpu"
    try:
        gpus = ray.cluster_resources().get("GPU", 0) > 0
        opts = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": p.threads}
        worker_cls = ray.remote(QualityWorker)

        actors: list[Any] = []

        def new_actor() -> Any:
            a = worker_cls.options(max_restarts=max_restarts, **opts).remote(
                cube_url, plan.group, p.model_dump_json(), storage_options, fault_file, qc_group)
            actors.append(a)
            return a

        for _ in range(max(1, min(n_actors, len(todo))) if todo else 0):
            new_actor()
        replaced = 0
        # a pending actor holding a job while this pool's started actors idle on their CPUs deadlocks frames
        # running in parallel on a small cluster (engines.started_actors); in place: new_actor appends to it
        actors[:] = started_actors(actors, "info", label="quality")
        if actors:
            device = ray.get(actors[0].info.remote())["device"]
            log.info("%d actor(s) on %s for %d chunk(s) of %s", len(actors), device, len(todo), cube_url)
        idle = deque(list(actors))
        # ref -> (actor, jobs); jobs None marks a probe of an actor that is restarting after a crash
        inflight: dict[Any, tuple[Any, list[ChunkJob] | None]] = {}
        attempts: dict[tuple[int, int, int], int] = {}
        bar = None
        if progress and todo:  # lines on stderr (kubectl logs), a bar on a terminal
            from insarcloud.progress import Reporter

            bar = Reporter(f"quality {Path(cube_url.rstrip('/')).name.removesuffix('.zarr')}", len(todo), "chunks")
        try:
            while todo or any(j is not None for _, j in inflight.values()):
                while idle and todo:
                    actor, batch = idle.popleft(), [todo.popleft()]
                    while todo and len(batch) < per_call and (todo[0].y, todo[0].x) == (batch[0].y, batch[0].x):
                        batch.append(todo.popleft())
                    inflight[actor.run_many.remote(batch)] = (actor, batch)
                ready, _ = ray.wait(list(inflight), num_returns=1)
                for ref in ready:
                    actor, batch = inflight.pop(ref)
                    try:
                        ray.get(ref)
                    except RayActorError as exc:
                        if batch is not None:  # crashed mid-call: queue its jobs again, then probe the actor
                            job = batch[0]
                            log.warning("actor crashed on %s y%s x%s (%s; %d job(s) in the call): retrying",
                                        job.pair, job.y, job.x, type(exc).__name__, len(batch))
                            for job in batch:
                                retried += _requeue(job, attempts, todo, max_retries, cube_url)
                        elif isinstance(exc, ActorDiedError) and not isinstance(exc, ActorUnavailableError):
                            replaced += 1  # restarts exhausted: replace it
                            if replaced > len(actors) * (max_restarts + 1):
                                raise CubeError(f"actors keep dying on {cube_url}: giving up") from exc
                            log.warning("actor died for good (%s): starting a new one", exc)
                            actor = new_actor()
                        else:  # still restarting
                            time.sleep(0.5)
                        inflight[actor.info.remote()] = (actor, None)
                        continue
                    if batch is not None and bar is not None:
                        bar.update(len(batch))
                    idle.append(actor)
        finally:
            if bar is not None:
                bar.close()
        for a in actors:
            ray.kill(a)
    finally:
        if started:
            ray.shutdown()
    io.mark_stage_complete(cube_url, plan.group, storage_options, stage=STAGE, params=marker)
    from insarcloud.plot import stage_quicklooks  # mean quality maps beside the group

    stage_quicklooks(cube_url, plan.group, storage_options)
    stages.finish_stage(cube_url, plan, storage_options, base=GROUP)  # consumers now read this group
    dt = time.perf_counter() - t0
    log.info("quality of %s -> %s: %d chunks (%d skipped, %d retried) in %.1fs", cube_url, plan.group,
             len(jobs), skipped, retried, dt)
    return QualityRun(plan.group, len(jobs), skipped, retried, dt, device)
