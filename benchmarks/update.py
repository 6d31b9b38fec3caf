"""Cost of updating an area with new acquisitions vs a full re-run, per stage (issue 18; docs/STAGES.md).

    python benchmarks/update.py --json bench-output/update.json [--size 32] [--epochs 46] [--plus 1 5] [--stages ...]

One simulated frame on the embedded default (moto S3 on loopback, the job's Dask LocalCluster, local Ray).
The anchor is a from-scratch run on all ``epochs`` epochs. For each k of ``--plus``: the area job runs on the
frame's first ``epochs - k`` epochs (the base), LiCSAR "adds" the last k (only the new files are written, the
old ones keep their ETags: ``write_licsar_frame(..., only_missing=True)``), and the same job is re-run (the
update). Per run and per stage: wall seconds and CPU seconds of every process (this driver, the Dask workers
and nannies, Ray's raylet/GCS/workers/actors; the S3 server apart), from a sampler of the whole process tree
(``benchmarks/_common.py``: a process that exits loses at most 0.2 s of CPU). Printed as a table and written
as JSON. Goal of issue 18: the +1-epoch update costs <= 15% of the full run; the table names the stages that
hold it above that and by how much.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import CpuMeter, cpu_delta, embedded_s3, per_stage_cpu, write_json  # noqa: E402

BUCKET = "s3://bench-update"
FRAME = "012A_05443_131313"
GOAL = 0.15


def _config(source: str, output: str, endpoint: str, stages: list[str], forecast_epochs: int = 3,
            warm_start_epochs: int | None = None) -> dict:
    return {
        "area": {"name": "update-bench", "bbox": [89.9, 31.4, 90.2, 31.7]},
        "frames": [FRAME], "source_url": source, "output_url": output,
        "storage": {"endpoint_url": endpoint}, "stages": stages,
        "params": {"forecast": {"factors_url": f"{BUCKET}/factors/{{frame}}.zarr", "horizon": 6,
                                "train_pixels": 300, "epochs": forecast_epochs,
                                # the production ratio of warm to full epochs is 16/128 (params.forecast)
                                "warm_start_epochs": warm_start_epochs or max(1, forecast_epochs // 8)},
                   "quality": {"num_actors": 1}, "noise": {"class_size": 256},
                   # without the quality stage, invert weights by coherence (the default reads quality)
                   **({} if "quality" in stages else {"invert": {"weights": "coherence"}})},
        "report": {"enabled": False},
    }


def _timed(cfg_dict: dict) -> dict[str, Any]:
    from insarcloud.config import parse_config
    from insarcloud.pipelines.area_job import run_area

    with CpuMeter() as meter, per_stage_cpu(meter) as stages:
        c0, t0 = meter.totals(), time.perf_counter()
        result = run_area(parse_config(cfg_dict, source="benchmark"))
        wall, cpu = time.perf_counter() - t0, cpu_delta(c0, meter.totals())
    fr = result.frames[FRAME]
    return {"wall_s": round(wall, 2), **cpu, "failed": result.failed, "error": fr.error, "stages": stages,
            "decisions": fr.decisions}


def _ratios(run: dict[str, Any], full: dict[str, Any]) -> dict[str, Any]:
    """Each stage's share of the full run's total (wall, CPU) in the update: what holds it above the goal."""
    out = {"wall_vs_full": round(run["wall_s"] / max(full["wall_s"], 1e-9), 3),
           "cpu_vs_full": round(run["cpu_s"] / max(full["cpu_s"], 1e-9), 3), "stages": {}}
    for s, m in run["stages"].items():
        f = full["stages"].get(s, {})
        out["stages"][s] = {
            "wall_vs_same_stage_full": round(m["wall_s"] / max(f.get("wall_s", 0.0), 1e-9), 3),
            "cpu_vs_same_stage_full": round(m["cpu_s"] / max(f.get("cpu_s", 0.0), 1e-9), 3),
            # the stage's contribution to the update/full ratio: these add up to (about) cpu_vs_full
            "cpu_share_of_full_run": round(m["cpu_s"] / max(full["cpu_s"], 1e-9), 3),
            "wall_share_of_full_run": round(m["wall_s"] / max(full["wall_s"], 1e-9), 3),
        }
    return out


def table(out: dict[str, Any]) -> str:
    """Per stage: wall and CPU seconds of the full run and of each update, and the update's share of the full
    run's total CPU (the shares add up to the update/full ratio)."""
    runs = [("full", out["full"])] + [(f"+{k}", out[f"plus{k}"]) for k in out["plus"]]
    stages = list(out["full"]["stages"])
    head = f"{'stage':10s}" + "".join(f" | {name:>6s} wall   cpu" for name, _ in runs)
    head += "".join(f" | +{k} cpu/full" for k in out["plus"])
    lines = [head, "-" * len(head)]
    for s in [*stages, "total"]:
        row = f"{s:10s}"
        for _, r in runs:
            m = r if s == "total" else r["stages"].get(s, {})
            row += f" | {m.get('wall_s', float('nan')):8.1f} {m.get('cpu_s', float('nan')):7.1f}"
        for k in out["plus"]:
            ratio = out[f"plus{k}"]["ratio"]
            share = ratio["cpu_vs_full"] if s == "total" else ratio["stages"].get(s, {}).get("cpu_share_of_full_run")
            row += f" | {share if share is not None else float('nan'):12.3f}"
        lines.append(row)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=46, help="all epochs (with forecast, epochs - max(plus) >= 28)")
    ap.add_argument("--plus", type=int, nargs="*", default=[1, 5], help="epochs LiCSAR adds before the update")
    ap.add_argument("--stages", nargs="*", default=None)
    ap.add_argument("--forecast-epochs", type=int, default=3,
                    help="forecast training epochs from scratch (the update trains epochs // 8 from the "
                    "previous weights, the production ratio 16/128)")
    args = ap.parse_args()
    stages = args.stages or ["ingest", "qc", "quality", "invert", "noise", "forecast", "mosaic"]
    out: dict[str, Any] = {
        "size": args.size, "epochs": args.epochs, "stages": stages, "plus": args.plus,
        "note": "CPU: every process of the job (driver, Dask workers, Ray), sampled; figures from whatever load "
                "the machine had (load_avg): compare ratios within one run"}
    t0 = time.perf_counter()
    with embedded_s3(BUCKET, job_log=False) as (endpoint, so):
        from insarcloud.simulate import simulate_frame, write_licsar_frame
        from insarcloud.simulate.factors import simulate_factors, write_factor_stack

        sim = simulate_frame(frame_id=FRAME, shape=(args.size, args.size), n_epochs=args.epochs, seed=1,
                             scene_seed=7, lon0=90.0, lat0=31.5, min_neighbours=3, max_neighbours=3,
                             missing_epoch_fraction=0.0, missing_pair_fraction=0.0)
        out["pairs"] = len(sim.pairs)
        f = simulate_factors(sim.dates[0], sim.dates[-1], sim.lat[::8], sim.lon[::8], rng=np.random.default_rng(1))
        write_factor_stack(f, f"{BUCKET}/factors/{FRAME}.zarr", "zarr", so)
        write_licsar_frame(sim, f"{BUCKET}/src_full", so)
        print(f"[update] full run: {args.epochs} epochs, {len(sim.pairs)} pairs", file=sys.stderr, flush=True)
        out["full"] = _timed(_config(f"{BUCKET}/src_full", f"{BUCKET}/full", endpoint, stages, args.forecast_epochs))
        for k in args.plus:
            src = f"{BUCKET}/src_plus{k}"
            write_licsar_frame(sim, src, so, epochs=args.epochs - k)
            print(f"[update] +{k}: base run on {args.epochs - k} epochs", file=sys.stderr, flush=True)
            base = _timed(_config(src, f"{BUCKET}/plus{k}", endpoint, stages, args.forecast_epochs))
            write_licsar_frame(sim, src, so, only_missing=True)  # LiCSAR adds the last k epochs
            print(f"[update] +{k}: update", file=sys.stderr, flush=True)
            upd = _timed(_config(src, f"{BUCKET}/plus{k}", endpoint, stages, args.forecast_epochs))
            upd["base"] = {"wall_s": base["wall_s"], "cpu_s": base["cpu_s"], "failed": base["failed"]}
            upd["ratio"] = _ratios(upd, out["full"])
            out[f"plus{k}"] = upd
    out["load_avg_1m_at_end"] = round(os.getloadavg()[0], 1)
    out["benchmark_wall_s"] = round(time.perf_counter() - t0, 1)
    if 1 in args.plus:
        r = out["plus1"]["ratio"]
        out["goal_plus1_le_15pct"] = {"cpu": r["cpu_vs_full"] <= GOAL, "wall": r["wall_vs_full"] <= GOAL}
        # the stages whose own share of the full run's CPU alone exceeds what the goal leaves per stage
        out["plus1_stages_by_cpu_share"] = sorted(
            ((s, m["cpu_share_of_full_run"]) for s, m in r["stages"].items()), key=lambda t: -t[1])
    print(table(out))
    print(json.dumps({k: v for k, v in out.items() if k.startswith(("goal", "plus1_stages", "load"))}, indent=1))
    write_json(args.json, out)


if __name__ == "__main__":
    main()
