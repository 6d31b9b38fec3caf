"""Cost of updating an area with new acquisitions vs a full re-run (issue 18; docs/STAGES.md).

    python benchmarks/update.py --json bench-output/update.json [--size 32] [--epochs 46] [--stages ...]

One simulated frame on the embedded default (moto S3 on loopback, the job's Dask LocalCluster, local Ray).
For k in (1, 5): the area job runs on the frame's first ``epochs - k`` epochs, LiCSAR "adds" the last k,
and the same job is re-run (the update, timed). The anchor is a from-scratch run on all ``epochs`` epochs
(timed). Reported per stage: wall seconds (the job's own per-stage timing), and per run the CPU seconds of
this process plus its reaped child processes (the job's Dask workers and Ray processes, which exit when the
run ends). Goal of issue 18: the +1-epoch update costs <= 15% of the full run.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from insarcloud.pipelines.local_s3 import local_s3  # noqa: E402

BUCKET = "s3://bench-update"
FRAME = "012A_05443_131313"


def _cpu() -> float:
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _write_source(sim, root: str, so: dict, first: int | None) -> None:  # type: ignore[no-untyped-def]
    """The frame's LiCSAR tree under ``root``: its first ``first`` epochs, or (None) every epoch, adding only
    the files not there yet (as LiCSAR does: a rewritten old product would be re-ingested as changed)."""
    from insarcloud import io
    from insarcloud.simulate import write_licsar_frame

    stage = f"{root}_staging"
    url = write_licsar_frame(sim, stage, so)
    fs, path = io.get_fs(url, so)
    _, dest_root = io.get_fs(root, so)
    _, stage_root = io.get_fs(stage, so)
    for src in fs.find(path):
        dst = dest_root.rstrip("/") + src[len(stage_root.rstrip("/")):]
        if not fs.exists(dst):
            fs.copy(src, dst)
    fs.rm(stage_root, recursive=True)
    if first is None:
        return
    _, path = io.get_fs(io.join(root, url[len(stage):].lstrip("/")), so)
    cut = np.datetime_as_string(sim.dates[first - 1], unit="D").replace("-", "")
    for p in map(str, sim.pairs):
        if p.split("_")[1] > cut:
            fs.rm(f"{path.rstrip('/')}/interferograms/{p}", recursive=True)
    for d in sim.dates[first:]:
        fs.rm(f"{path.rstrip('/')}/epochs/{np.datetime_as_string(d, unit='D').replace('-', '')}", recursive=True)


def _config(source: str, output: str, endpoint: str, stages: list[str]) -> dict:
    return {
        "area": {"name": "update-bench", "bbox": [89.9, 31.4, 90.2, 31.7]},
        "frames": [FRAME], "source_url": source, "output_url": output,
        "storage": {"endpoint_url": endpoint}, "stages": stages,
        "params": {"forecast": {"factors_url": f"{BUCKET}/factors/{{frame}}.zarr", "horizon": 6,
                                "train_pixels": 300, "epochs": 3, "max_train_seconds": 20},
                   "quality": {"num_actors": 1}, "noise": {"class_size": 256},
                   # without the quality stage, invert weights by coherence (the default reads quality)
                   **({} if "quality" in stages else {"invert": {"weights": "coherence"}})},
        "report": {"enabled": False},
    }


def _timed(cfg_dict: dict) -> dict:
    from insarcloud.config import parse_config
    from insarcloud.pipelines.area_job import run_area

    c0, t0 = _cpu(), time.perf_counter()
    result = run_area(parse_config(cfg_dict, source="benchmark"))
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    fr = result.frames[FRAME]
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "failed": result.failed,
            "stage_wall_s": {**fr.stage_seconds, **({"mosaic": result.seconds["mosaic"]}
                                                    if "mosaic" in result.seconds else {})},
            "decisions": fr.decisions}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=46, help="all epochs (the +5 base needs >= 28 for forecast)")
    ap.add_argument("--stages", nargs="*", default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stages = args.stages or ["ingest", "qc", "quality", "invert", "noise", "forecast", "mosaic"]
    out: dict = {"size": args.size, "epochs": args.epochs, "stages": stages,
                 "note": "cpu_s: this process + reaped children (Dask workers, Ray); measured on whatever load "
                         "the machine had: compare ratios within one run"}
    with local_s3() as endpoint:
        import s3fs

        from insarcloud.simulate import simulate_frame
        from insarcloud.simulate.factors import simulate_factors, write_factor_stack

        so = {"endpoint_url": endpoint}
        s3fs.S3FileSystem(**so).mkdir(BUCKET.removeprefix("s3://"))
        sim = simulate_frame(frame_id=FRAME, shape=(args.size, args.size), n_epochs=args.epochs, seed=1,
                             scene_seed=7, lon0=90.0, lat0=31.5, min_neighbours=3, max_neighbours=3,
                             missing_epoch_fraction=0.0, missing_pair_fraction=0.0)
        f = simulate_factors(sim.dates[0], sim.dates[-1], sim.lat[::8], sim.lon[::8], rng=np.random.default_rng(1))
        write_factor_stack(f, f"{BUCKET}/factors/{FRAME}.zarr", "zarr", so)
        _write_source(sim, f"{BUCKET}/src_full", so, None)
        out["full"] = _timed(_config(f"{BUCKET}/src_full", f"{BUCKET}/full", endpoint, stages))
        for k in (1, 5):
            src = f"{BUCKET}/src_plus{k}"
            _write_source(sim, src, so, args.epochs - k)
            base = _timed(_config(src, f"{BUCKET}/plus{k}", endpoint, stages))
            _write_source(sim, src, so, None)
            upd = _timed(_config(src, f"{BUCKET}/plus{k}", endpoint, stages))
            upd["base_wall_s"] = base["wall_s"]
            upd["ratio_wall_vs_full"] = round(upd["wall_s"] / max(out["full"]["wall_s"], 1e-9), 3)
            upd["ratio_cpu_vs_full"] = round(upd["cpu_s"] / max(out["full"]["cpu_s"], 1e-9), 3)
            upd["stage_ratio_wall"] = {s: round(v / max(out["full"]["stage_wall_s"].get(s, 0), 1e-9), 3)
                                       for s, v in upd["stage_wall_s"].items()}
            out[f"plus{k}"] = upd
    out["goal_plus1_le_15pct"] = out["plus1"]["ratio_wall_vs_full"] <= 0.15
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
