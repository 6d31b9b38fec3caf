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
from insarcloud.qc.serve_plan import (
    ACTOR_MEM_MB,
    ChunkJob,
    calls,
    closure_itemsize,
    pairs_per_call,
    plan_jobs,
    reuse_plan,
    window_px,
)

__all__ = ["ChunkJob", "QualityRun", "QualityWorker", "ServeParams", "chunks_written", "file_sha256",
           "infer_regions", "plan_jobs", "run_quality"]

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


class QualityRun(NamedTuple):
    """Summary of :func:`run_quality`."""

    group: str
    chunks: int
    skipped: int
    retried: int
    seconds: float
    device: str
    inferred_pairs: int = 0
    copied_pairs: int = 0
    reuse: str = ""


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
    qc_group : str, optional
        The qc stage's current group when the driver planned (its fingerprint is part of ours).
    prev_group : str, optional
        The previous quality group that jobs with ``source >= 0`` copy from (an update).
    mem_mb : int
        Memory bound of one call's reads and working arrays (``serve_plan``): a call's pairs go through the
        model ``serve_plan.pairs_per_step`` at a time.
    """

    def __init__(self, cube_url: str, group: str, params_json: str,
                 storage_options: dict[str, Any] | None = None, fault_file: str | None = None,
                 qc_group: str | None = None, prev_group: str | None = None, mem_mb: int = ACTOR_MEM_MB) -> None:
        import torch

        from insarcloud.qc.model import cpu_has_fast_bf16
        from insarcloud.qc.train import load_model

        self.p = ServeParams.model_validate_json(params_json)
        self.url, self.group, self.so, self.fault_file = cube_url, group, storage_options, fault_file
        self.qc_group, self.prev_group, self.mem_mb = qc_group, prev_group, mem_mb
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
        self._prev: Any = None
        self._pair_index: dict[int, dict[str, int]] = {}
        self._masks: dict[tuple[int, tuple, tuple], np.ndarray] = {}

    def info(self) -> dict[str, Any]:
        return {"device": str(self.device), "bf16": self.bf16, "pid": os.getpid(),
                "channels": list(self.model.config.channels)}

    def _open(self) -> tuple[Any, Any]:
        from insarcloud import io

        if self._ds is None:
            # without Dask: each call reads its window; a Dask-backed dataset's graph spans the whole frame
            self._ds = io.open_cube(self.url, self.so, dask=False)
            if "closure" in self.model.config.channels:
                try:
                    if self.qc_group is None:
                        raise CubeError("no qc group")
                    self._qc = io.open_cube(self.url, self.so, group=self.qc_group, dask=False)
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

    @staticmethod
    def _read(d: Any, name: str, idx: list[int], ys: tuple[int, int], xs: tuple[int, int]) -> np.ndarray:
        """``d[name]`` at pair indices ``idx`` over the window, (pair, y, x) in the stored dtype: one orthogonal
        selection, so each stored chunk under it is decoded once however many of ``idx`` it holds."""
        from insarcloud import io

        order = np.argsort(idx, kind="stable")
        srt = [int(idx[k]) for k in order]
        block = np.asarray(io.with_retries(lambda: d[name].isel(pair=srt, y=slice(*ys), x=slice(*xs)).values))
        out = np.empty_like(block)
        out[order] = block
        return out

    def _write(self, group: list[ChunkJob], q: np.ndarray, ys: tuple[int, int], xs: tuple[int, int]) -> None:
        """One region write per run of consecutive pair indices (each pair is its own output chunk)."""
        import xarray as xr

        from insarcloud import io

        start = 0
        for k in range(1, len(group) + 1):
            if k == len(group) or group[k].pair_index != group[k - 1].pair_index + 1:
                i0, i1 = group[start].pair_index, group[k - 1].pair_index + 1
                part = xr.Dataset({"quality": (("pair", "y", "x"), q[start:k])})
                region = {"pair": slice(i0, i1), "y": slice(*ys), "x": slice(*xs)}
                io.with_retries(io.write_stage_region, part, self.url, self.group, region, self.so)
                start = k

    def _copy(self, group: list[ChunkJob], ys: tuple[int, int], xs: tuple[int, int]) -> np.ndarray:
        """The previous group's quality of ``group``'s source pairs over the region (an update's unchanged pairs)."""
        from insarcloud import io

        if self._prev is None:
            if self.prev_group is None:
                raise CubeError(f"copy jobs for {self.url} but no previous quality group was given")
            self._prev = io.open_cube(self.url, self.so, group=self.prev_group, dask=False)
        return self._read(self._prev, "quality", [j.source for j in group], ys, xs).astype(np.float32)

    def run_many(self, jobs: list[ChunkJob]) -> list[dict[str, Any]]:
        """Write the quality of several chunk jobs; one record per job, in order.

        Jobs over the same window (``serve_plan.calls``: one window per call, its pairs together) share one
        read per variable: the qc group's closure chunks hold many pairs each, so they are decoded once per
        call, not once per pair. The call's pairs then go through the model ``pairs_per_step`` at a time
        (bounded memory), ``batch_size`` tiles per forward pass, and are written one region per run of
        consecutive pairs. The result per pair is the one a single job gives (the tile grid is global).
        Jobs with ``source >= 0`` are copied from the previous group instead."""
        from insarcloud.qc.model import cube_channels, infer_regions, plan_window
        from insarcloud.qc.serve_plan import pairs_per_step

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
        windows: dict[tuple[tuple[int, int], tuple[int, int], bool], list[ChunkJob]] = {}
        for job in jobs:
            windows.setdefault((job.y, job.x, job.source >= 0), []).append(job)
        for (ys, xs, copy), group in windows.items():
            t0 = time.perf_counter()
            if copy:
                self._write(group, self._copy(group, ys, xs), ys, xs)
                dt = time.perf_counter() - t0
                for job in group:
                    records[job.key] = {"key": job.key, "read_s": dt / len(group), "infer_s": 0.0,
                                        "seconds": dt / len(group), "pid": os.getpid(), "pixels": 0, "tiles": 0,
                                        "copied": True}
                continue
            plan = plan_window((ny, nx), ys, xs, p.tile, p.overlap)
            ry, rx = plan.read_y, plan.read_x
            names = [j.pair for j in group]
            closure: list[np.ndarray | None] | None = None
            if "closure" in chans and qc is not None:  # all of the call's pairs at once (module docstring)
                known = self._pairs(qc)
                have = [n for n in names if n in known]
                got = (dict(zip(have, self._read(qc, "pair_closure", [known[n] for n in have], ry, rx), strict=True))
                       if have and "pair_closure" in qc else {})
                closure = [got.get(n) for n in names]
            t_read = time.perf_counter() - t0
            t_inf = 0.0
            lm = self._landmask(ds, ys, xs)
            index = self._pairs(ds)
            step = pairs_per_step((ry[1] - ry[0]) * (rx[1] - rx[0]), self.mem_mb)
            for s0 in range(0, len(group), step):
                t1 = time.perf_counter()
                sub = group[s0 : s0 + step]
                idx = [index[j.pair] for j in sub]

                def read(name: str, idx: list[int] = idx, ry: tuple = ry, rx: tuple = rx) -> np.ndarray | None:
                    return self._read(ds, name, idx, ry, rx).astype(np.float32) if name in ds else None

                phase, coh = read("phase"), read("coh")
                unw = read("unw") if "unw_grad" in chans else None
                amp = read("amp") if "amp" in chans else None
                cl = None if closure is None else closure[s0 : s0 + step]
                stack = np.stack([cube_channels(chans, phase[k], coh[k], unw=None if unw is None else unw[k],
                                                closure=None if cl is None or cl[k] is None
                                                else np.asarray(cl[k], np.float32),
                                                amp=None if amp is None else amp[k]) for k in range(len(sub))])
                del phase, coh, unw, amp
                t2 = time.perf_counter()
                q = infer_regions(self.model, stack, plan, ys, xs, p.tile, p.overlap, batch_size=p.batch_size,
                                  bf16=self.bf16, channels_last=p.channels_last)
                del stack
                if lm is not None:  # LiCSAR landmask: water (0) has no quality (NaN), as no-data elsewhere
                    q = np.where(lm[None] == 0, np.float32(np.nan), q).astype(np.float32)
                t_inf += time.perf_counter() - t2
                t_read += t2 - t1
                self._write(sub, q, ys, xs)
            dt = (time.perf_counter() - t0) / len(group)
            log.debug("%s %d pairs y%s x%s: read %.2fs infer %.2fs total %.2fs", self.url, len(group), ys, xs,
                      t_read, t_inf, dt * len(group))
            for job in group:
                records[job.key] = {"key": job.key, "read_s": t_read / len(group), "infer_s": t_inf / len(group),
                                    "seconds": dt, "pid": os.getpid(), "pixels": (ys[1] - ys[0]) * (xs[1] - xs[0]),
                                    "tiles": len(plan.tiles), "copied": False}
        return [records[j.key] for j in jobs]


def infer_regions(*args: Any, **kwargs: Any) -> np.ndarray:
    """``insarcloud.qc.model.infer_regions`` (imported on call: the driver never imports torch)."""
    from insarcloud.qc.model import infer_regions as _infer

    return _infer(*args, **kwargs)


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


def _requeue(batch: list[ChunkJob], attempts: dict[tuple[int, int, int], int], todo: deque[list[ChunkJob]],
             max_retries: int, cube_url: str) -> int:
    """Queue a crashed call's jobs again (the whole call: region writes are idempotent); the jobs requeued."""
    for job in batch:
        attempts[job.key] = attempts.get(job.key, 0) + 1
        if attempts[job.key] > max_retries:
            raise CubeError(f"chunk {job} of {cube_url} failed on {attempts[job.key]} actors: giving up")
    todo.append(batch)
    return len(batch)


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
    actor_mem_mb: int = ACTOR_MEM_MB,
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
    actor_mem_mb : int
        Memory bound of one actor's reads and working arrays (``insarcloud.qc.serve_plan``; the model's own
        weights and activations come on top). Not part of the output's identity: it changes how the work
        is cut, never a value.

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
        return QualityRun(plan.group, 0, 0, 0, time.perf_counter() - t0, "none", 0, 0, plan.reason)
    old = io.read_marker(cube_url, plan.group, storage_options)
    resuming = bool(old) and old.get("params_hash") == io.params_hash(marker)
    if not resuming:
        io.create_stage_template(_template(ds, chunk, {"checkpoint": p.checkpoint, "checkpoint_sha256": ckpt_sha}),
                                 cube_url, plan.group, stage=STAGE, params=marker,
                                 storage_options=storage_options)
    else:  # a resumed group is written under its lease too (create_stage_template takes it otherwise)
        from insarcloud.io.cube import hold_stage_lease

        hold_stage_lease(cube_url, plan.group, stage=STAGE, storage_options=storage_options)
    # an update copies the quality of pairs whose inputs did not change from the stage's previous group
    prev = stages.current_group(cube_url, STAGE, storage_options)
    reuse = reuse_plan(cube_url, None if prev == plan.group else prev, marker, pairs, (ny, nx), storage_options)
    log.info("quality of %s: %s", cube_url, reuse.reason)
    jobs = plan_jobs(pairs, (ny, nx), chunk, reuse.source)
    done = chunks_written(cube_url, plan.group, "quality", chunk, storage_options) if resuming else set()
    left = [j for j in jobs if j.key not in done]
    skipped = len(jobs) - len(left)
    # One call = one window x as many of its pairs as the actor's memory bound allows (serve_plan: the
    # closure chunks under a window are then decoded once per call), but at least one call per actor (a small
    # frame of one window would otherwise keep all but one actor idle).
    n_windows = max(1, len({(j.y, j.x) for j in left}))
    win = window_px((ny, nx), chunk, p.tile, p.overlap)
    per_call = min(pairs_per_call(len(pairs), win, closure_itemsize(cube_url, qc_group, storage_options), actor_mem_mb),
                   max(1, -(-len(left) // max(1, n_actors))) if n_windows < n_actors else len(pairs))
    todo: deque[list[ChunkJob]] = deque(calls(left, per_call))
    n_todo = len(left)
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
                cube_url, plan.group, p.model_dump_json(), storage_options, fault_file, qc_group, reuse.group,
                actor_mem_mb)
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
            log.info("%d actor(s) on %s for %d chunk(s) of %s in %d call(s)", len(actors), device, n_todo, cube_url,
                     len(todo))
        idle = deque(list(actors))
        # ref -> (actor, jobs); jobs None marks a probe of an actor that is restarting after a crash
        inflight: dict[Any, tuple[Any, list[ChunkJob] | None]] = {}
        attempts: dict[tuple[int, int, int], int] = {}
        bar = None
        if progress and todo:  # lines on stderr (kubectl logs), a bar on a terminal
            from insarcloud.progress import Reporter

            bar = Reporter(f"quality {Path(cube_url.rstrip('/')).name.removesuffix('.zarr')}", n_todo, "chunks")
        try:
            while todo or any(j is not None for _, j in inflight.values()):
                while idle and todo:
                    actor, batch = idle.popleft(), todo.popleft()
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
                            retried += _requeue(batch, attempts, todo, max_retries, cube_url)
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
    n_copied = len(reuse.source)
    log.info("quality of %s -> %s: %d chunks (%d skipped, %d retried), %d pairs inferred, %d copied, in %.1fs",
             cube_url, plan.group, len(jobs), skipped, retried, len(pairs) - n_copied, n_copied, dt)
    return QualityRun(plan.group, len(jobs), skipped, retried, dt, device, len(pairs) - n_copied, n_copied,
                      reuse.reason)
