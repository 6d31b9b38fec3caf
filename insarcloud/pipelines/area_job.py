"""The area job: every stage for every frame of a bounding box, then the mosaic and the report.

    python -m insarcloud.pipelines.area_job CONFIG.yaml        # same as: insarcloud run CONFIG.yaml

Stages run per frame in the fixed order ingest -> qc -> quality -> unwrap -> invert -> noise -> forecast,
frames in parallel on one Dask cluster and one Ray cluster (threads of this driver submit the frames'
graphs; no array passes through the driver). Each stage is one entry point, ``run_stage(cube_url, params,
ctx) -> StageResult`` (insarcloud/core/contract.py), registered in :data:`STAGES` and given the config's
``params.<stage>``, which is the stage's own Params model. Every stage skips when a complete output with its
input fingerprint exists, so a killed job re-run continues where it stopped and a re-run after new
acquisitions recomputes what they changed (docs/STAGES.md). A failing frame is reported and the others finish.
The order of stages is ``insarcloud.core.options.STAGE_ORDER``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from insarcloud import faultpoints
from insarcloud.config import AreaJobConfig, frames_intersecting, load_config, parse_poly_txt
from insarcloud.core.contract import StageContext, StageResult
from insarcloud.core.options import ts_group
from insarcloud.errors import ConfigError, InsarcloudError
from insarcloud.forecast import stage as forecast_stage
from insarcloud.invert import stage as invert_stage
from insarcloud.io import stage_ingest
from insarcloud.io.storage import get_fs, join, write_bytes_atomic
from insarcloud.noise import stage as noise_stage
from insarcloud.qc import quality_stage
from insarcloud.qc import stage as qc_stage
from insarcloud.unwrap import stage as unwrap_stage

log = logging.getLogger("insarcloud.area_job")


@dataclass
class FrameResult:
    frame: str
    ok: bool = True
    error: str | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    #: stage -> what it did and why, one line ("recomputed ts_quality_1a2b3c4d: inputs changed (...)")
    decisions: dict[str, str] = field(default_factory=dict)


@dataclass
class AreaResult:
    area: str
    area_url: str
    report_url: str | None
    frames: dict[str, FrameResult]
    mosaic: dict[str, Any] | None
    seconds: dict[str, float]
    log_url: str | None = None
    truth: dict[str, Any] | None = None

    @property
    def failed(self) -> list[str]:
        return [f for f, r in self.frames.items() if not r.ok]

    def to_dict(self) -> dict[str, Any]:
        return {"area": self.area, "area_url": self.area_url, "report_url": self.report_url,
                "log_url": self.log_url, "failed_frames": self.failed, "seconds": self.seconds,
                "mosaic": self.mosaic, "truth": self.truth,
                "frames": {f: r.__dict__ for f, r in self.frames.items()}}


# ----------------------------------------------------------------------------------------------------
# The stages: one entry point each, one shape (insarcloud.core.contract; docs/STAGES.md "Adding a stage")


def _ts_group(cfg: AreaJobConfig) -> str:
    return ts_group(cfg.params.invert.weights)


#: stage name -> its ``run_stage(cube_url, params, ctx) -> StageResult``; the stage's parameters are the config's
#: ``params.<stage>`` (the stage's own Params model). The mosaic runs once over all frames (run_area).
STAGES: dict[str, Callable[[str, Any, StageContext], StageResult]] = {
    stage_ingest.NAME: stage_ingest.run_stage,
    qc_stage.NAME: qc_stage.run_stage,
    quality_stage.NAME: quality_stage.run_stage,
    unwrap_stage.NAME: unwrap_stage.run_stage,
    invert_stage.NAME: invert_stage.run_stage,
    noise_stage.NAME: noise_stage.run_stage,
    forecast_stage.NAME: forecast_stage.run_stage,
}


def stage_context(cfg: AreaJobConfig, frame: str, *, client: Any = None, ray: bool = False,
                  upstream: Mapping[str, StageResult] | None = None) -> StageContext:
    """The :class:`StageContext` of ``frame``'s stages in the job ``cfg`` (``upstream``: results so far)."""
    return StageContext(storage_options=cfg.output_storage_options(), client=client, ray=ray, frame=frame,
                        source_url=cfg.source_url, output_url=cfg.output_url, ts_group=_ts_group(cfg),
                        upstream=dict(upstream or {}))


def run_frame_stage(cfg: AreaJobConfig, frame: str, stage: str, ctx: StageContext) -> StageResult:
    """``stage`` on ``frame``'s cube with the config's parameters for it (``STAGES[stage]``)."""
    return STAGES[stage](cfg.cube_url(frame), getattr(cfg.params, stage), ctx)


# ----------------------------------------------------------------------------------------------------
# Pre-flight, frames, engines


def find_frames(cfg: AreaJobConfig) -> list[str]:
    """Frames listed in the config, or those whose LiCSAR ``-poly.txt`` polygon intersects the bbox."""
    if cfg.frames:
        return list(cfg.frames)
    so = cfg.source_storage_options()
    fs, root = get_fs(cfg.frame_index_url or cfg.source_url, so)
    polys = {}
    for path in fs.glob(f"{root.rstrip('/')}/**/metadata/*-poly.txt"):
        frame = path.rsplit("/", 1)[-1].removesuffix("-poly.txt")
        with fs.open(path, "rt") as f:
            polys[frame] = parse_poly_txt(f.read(), source=path)
    frames = sorted(frames_intersecting(polys, cfg.area.bbox))
    if not frames:
        raise ConfigError(f"no frame polygon under {cfg.frame_index_url} intersects bbox {cfg.area.bbox}")
    return frames


def preflight(cfg: AreaJobConfig) -> None:
    """Checks that touch storage, before any work starts: the source is listable, the output writable."""
    so_src, so_out = cfg.source_storage_options(), cfg.output_storage_options()
    fs, path = get_fs(cfg.source_url, so_src)
    if not fs.exists(path):
        raise ConfigError(f"source_url {cfg.source_url} does not exist or is not readable")
    probe = join(cfg.output_url, f".insarcloud-write-probe-{uuid.uuid4().hex[:8]}")
    try:
        write_bytes_atomic(probe, b"ok", so_out)
        fs_out, p = get_fs(probe, so_out)
        fs_out.rm(p)
    except OSError as exc:
        raise ConfigError(f"output_url {cfg.output_url} is not writable: {exc}") from exc


@contextlib.contextmanager
def engines(cfg: AreaJobConfig, need_ray: bool) -> Iterator[Any]:
    from insarcloud.engines import dask_client, init_ray, shutdown_ray

    e = cfg.engines
    with dask_client(e.resolved_dask_scheduler(), n_workers=e.local_workers,
                     threads_per_worker=e.local_threads_per_worker, memory_limit=e.local_memory_limit,
                     malloc_threshold=e.local_malloc_threshold) as client:
        ray = init_ray(e.resolved_ray_address(), num_cpus=e.local_ray_cpus) if need_ray else None
        try:
            yield client
        finally:
            if ray is not None:
                shutdown_ray()  # an error here is a warning: the outputs are written


@contextlib.contextmanager
def _run_log(cfg: AreaJobConfig, run_id: str) -> Iterator[tuple[Path, str]]:
    """A log file for this run, uploaded to ``{output_url}/logs/{area}/{run_id}.log`` at the end."""
    tmp = Path(tempfile.mkdtemp()) / "run.log"
    handler = logging.FileHandler(tmp)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger("insarcloud")
    old_level = root.level
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    url = join(cfg.output_url, "logs", cfg.area.name, f"{run_id}.log")
    try:
        yield tmp, url
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
        try:
            write_bytes_atomic(url, tmp.read_bytes(), cfg.output_storage_options())
        except OSError as exc:
            log.warning("could not upload the run log to %s: %s", url, exc)


def run_frame(cfg: AreaJobConfig, frame: str, ctx: StageContext, progress: Callable[[str, str], None]
              ) -> FrameResult:
    res = FrameResult(frame)
    done: dict[str, StageResult] = {}
    for stage in cfg.ordered_stages():
        if stage == "mosaic":
            continue
        t0 = time.perf_counter()
        progress(frame, stage)
        try:
            result = run_frame_stage(cfg, frame, stage, replace(ctx, frame=frame, upstream=dict(done)))
        except Exception as exc:  # a failing frame must not stop the area: report it and go on
            res.ok = False
            res.error = f"{stage}: {type(exc).__name__}: {exc}"
            log.error("frame %s failed in %s: %s\n%s", frame, stage, exc, traceback.format_exc())
            break
        finally:
            res.stage_seconds[stage] = round(time.perf_counter() - t0, 2)
        done[stage] = result
        res.outputs[stage] = result.as_dict()
        res.decisions[stage] = _decision(result)
        log.info("frame %s: %s done in %.1fs: %s", frame, stage, res.stage_seconds[stage], res.decisions[stage])
        faultpoints.reached(f"stage:{stage}")  # kill-and-resume tests stop the job here ($INSARCLOUD_EXIT_AT)
    return res


def _decision(result: StageResult) -> str:
    """One line: what a stage did for a frame and why (its plan, docs/STAGES.md), with the counts that say how
    much of it an update touched (quality's inferred/copied pairs, qc's new loops)."""
    plan, s = result.plan, result.summary
    if result.stage == "ingest":
        return plan.reason
    line = f"kept {plan.group}: {plan.reason}" if plan.done else f"recomputed {plan.group}: {plan.reason}"
    if result.stage == "quality" and not plan.done:
        line += f" ({s.get('inferred_pairs', 0)} pair(s) inferred, {s.get('copied_pairs', 0)} copied)"
    elif result.stage == "qc" and not plan.done and "loops_new" in s:
        line += f" ({s.get('mode')}: {s['loops_new']} new loop(s) of {s.get('loops', '?')})"
    return line


def _truth(cfg: AreaJobConfig, good: list[str], mosaic: dict[str, Any] | None) -> dict[str, Any] | None:
    """Velocity RMSE against the simulator's truth (``report.truth_url``); a failure here only warns."""
    from insarcloud.pipelines.truth import compare_to_truth

    pattern = cfg.report.truth_url or ""
    urls = {f: pattern.format(frame=f, output_url=cfg.output_url.rstrip("/")) for f in good}
    area = cfg.area_url() if mosaic is not None and "error" not in mosaic else None
    try:
        truth = compare_to_truth(urls, {f: (cfg.cube_url(f), _ts_group(cfg)) for f in good}, area,
                                 cfg.output_storage_options(), precision_group=cfg.params.mosaic.precision_group)
    except (OSError, KeyError, ValueError) as exc:
        log.warning("could not compare with the truth at %s: %s", pattern, exc)
        return None
    log.info("against the truth: %s", json.dumps(truth))
    return truth


@contextlib.contextmanager
def _run_id_env(run_id: str) -> Iterator[None]:
    """Stage markers written during the run record its id (insarcloud.io.cube.RUN_ID_ENV): the report names
    the run that made each output, even after a resumed run that skipped them all."""
    from insarcloud.io.cube import RUN_ID_ENV

    old = os.environ.get(RUN_ID_ENV)
    os.environ[RUN_ID_ENV] = run_id
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(RUN_ID_ENV, None)
        else:
            os.environ[RUN_ID_ENV] = old


#: Cluster memory one frame in flight is given: the frame stages' largest summed peak RSS of the Dask workers
#: on a full real-size frame (QC's, 2.7 GB over two workers), rounded up (docs/scale.md "Full frame"). Frames
#: beyond what the workers' summed ``memory_limit`` holds wait for a slot instead of piling intermediate chunks
#: onto the same workers.
FRAME_CLUSTER_MEMORY = 3 * 2**30


def frames_in_flight(client: Any, n_frames: int, configured: int | None = None) -> int:
    """How many frames run at once: ``configured`` (``engines.max_parallel_frames``) if set, else each worker's
    ``memory_limit`` in whole :data:`FRAME_CLUSTER_MEMORY`s, summed over the workers (a worker with less, or
    with no limit, counts as one frame); never more than ``n_frames``."""
    if configured:
        return max(1, min(configured, n_frames))
    limits = [w.get("memory_limit") or 0 for w in client.scheduler_info().get("workers", {}).values()]
    slots = sum(max(1, int(m) // FRAME_CLUSTER_MEMORY) for m in limits)
    return max(1, min(slots, n_frames))


def run_area(cfg: AreaJobConfig, *, max_parallel_frames: int | None = None) -> AreaResult:
    """Run the whole area job described by ``cfg``."""
    from insarcloud.pipelines.checks import check_area
    from insarcloud.progress import Reporter

    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    seconds: dict[str, float] = {}
    with _run_log(cfg, run_id) as (_, log_url), _run_id_env(run_id):
        t0 = time.perf_counter()
        preflight(cfg)
        frames = find_frames(cfg)
        check_area(cfg, frames)  # stack length, stage inputs: before any engine starts
        log.info("area %s: %d frames: %s", cfg.area.name, len(frames), ", ".join(frames))
        need_ray = any(s in cfg.stages for s in ("quality", "forecast"))
        results: dict[str, FrameResult] = {}
        order = [s for s in cfg.ordered_stages() if s != "mosaic"]
        with engines(cfg, need_ray) as client, Reporter(f"area {cfg.area.name}", len(frames), "frames") as bar:
            ctx = stage_context(cfg, "", client=client, ray=need_ray)

            def progress(frame: str, stage: str) -> None:  # one line per frame and stage (kubectl logs)
                bar.note(f"{frame}: {stage} started (stage {order.index(stage) + 1}/{len(order)})")

            cap = max_parallel_frames or cfg.engines.max_parallel_frames
            n_flight = frames_in_flight(client, len(frames), cap)
            log.info("area %s: %d of %d frames at a time (%s)", cfg.area.name, n_flight, len(frames),
                     "engines.max_parallel_frames" if cap else "the Dask workers' memory")
            with ThreadPoolExecutor(max_workers=n_flight) as pool:
                futs = {pool.submit(run_frame, cfg, f, ctx, progress): f for f in frames}
                for fut in as_completed(futs):
                    res = results[futs[fut]] = fut.result()
                    bar.note(f"{res.frame}: {'done' if res.ok else 'FAILED (' + str(res.error) + ')'} "
                             f"({sum(res.stage_seconds.values()):.0f}s)")
                    bar.update(1)
            seconds["frames"] = round(time.perf_counter() - t0, 2)
            mosaic = None
            good = [f for f in frames if results[f].ok]
            if "mosaic" in cfg.stages and good:
                t1 = time.perf_counter()
                from insarcloud.mosaic.area import run_mosaic

                mp = cfg.params.mosaic
                try:
                    mosaic = run_mosaic([cfg.cube_url(f) for f in good], cfg.area_url(), ts_group=_ts_group(cfg),
                                        bbox=cfg.area.bbox, ramp=mp.ramp != "none",
                                        min_overlap=mp.min_overlap_pixels, gnss_csv=mp.gnss_csv,
                                        reference_box=mp.reference_box, precision_group=mp.precision_group,
                                        memory_budget=mp.memory_budget_mb * 2**20, storage_options=ctx.storage_options)
                except InsarcloudError as exc:
                    log.error("mosaic failed: %s", exc)
                    mosaic = {"error": str(exc)}
                seconds["mosaic"] = round(time.perf_counter() - t1, 2)
        truth = _truth(cfg, good, mosaic) if cfg.report.truth_url else None
        report_url = None
        if cfg.report.enabled:
            t2 = time.perf_counter()
            from insarcloud.report import write_report

            report_url = write_report(
                cfg.area_url(), join(cfg.output_url, "reports", cfg.area.name), area_name=cfg.area.name,
                cubes={f: cfg.cube_url(f) for f in good}, ts_group=_ts_group(cfg),
                points=[p.model_dump() for p in cfg.report.points],
                forecast_group="forecast" if "forecast" in cfg.stages else None,
                run_summary={"run_id": run_id, "area": cfg.area.name, "stages": cfg.ordered_stages(),
                             "frames": {f: r.__dict__ for f, r in results.items()}, "mosaic": mosaic,
                             "seconds": dict(seconds), "truth": truth},
                truth=truth, storage_options=ctx.storage_options, dpi=cfg.report.dpi, job_seconds=dict(seconds))
            seconds["report"] = round(time.perf_counter() - t2, 2)
        seconds["total"] = round(time.perf_counter() - t0, 2)
        result = AreaResult(cfg.area.name, cfg.area_url(), report_url, results, mosaic, seconds, log_url, truth)
        for f in result.failed:
            log.error("frame %s FAILED: %s", f, results[f].error)
        log.info("area %s done in %.1fs; %d/%d frames ok", cfg.area.name, seconds["total"],
                 len(frames) - len(result.failed), len(frames))
    if cfg.max_failed_frames is not None and len(result.failed) > cfg.max_failed_frames:
        raise InsarcloudError(f"{len(result.failed)} frames failed (max_failed_frames={cfg.max_failed_frames}): "
                              f"{result.failed}")
    return result


def decision_lines(result: AreaResult) -> list[str]:
    """``frame stage: what it did and why`` for every frame and stage, then the mosaic."""
    lines = [f"{f} {stage}: {why}" for f, r in result.frames.items() for stage, why in r.decisions.items()]
    if result.mosaic is not None:
        m = result.mosaic
        what = f"error: {m['error']}" if "error" in m else "kept" if m.get("skipped") else "recomputed"
        lines.append(f"mosaic: {what} {m.get('group', '')}".rstrip())
    return lines


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="run an insarcloud area job")
    ap.add_argument("config", help="CONFIG.yaml (local path or URL)")
    ap.add_argument("--json", default=None, help="write the run summary here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_from_path(args.config, args.json)


def run_from_path(config: str, json_out: str | None = None) -> int:
    cfg = load_config(config)
    result = run_area(cfg)
    summary = result.to_dict()
    if json_out:
        Path(json_out).write_text(json.dumps(summary, indent=1, default=str))
    for line in decision_lines(result):  # what each stage recomputed and why (every run is an update)
        print(line)
    print(f"area cube: {result.area_url}")
    print(f"report:    {result.report_url}")
    print(f"log:       {result.log_url}")
    if result.failed:
        print(f"FAILED frames: {', '.join(result.failed)}", file=sys.stderr)
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
