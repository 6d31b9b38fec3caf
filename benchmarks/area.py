"""The area job against the simulator's truth: mosaic velocity RMSE and wall time per stage and frame.

    python benchmarks/area.py --json bench-output/area.json [--size 64] [--epochs 122] [--stages ...]

Runs the demo's area (two ascending frames and one descending frame over the central-southern Tibetan
Plateau, one shared ground truth: the simulator's ``tibet_basin`` preset; size and epochs default to the
demo's) on the embedded default (moto S3 on loopback, Dask LocalCluster, local Ray), and reports the job's
own comparison with the truth Zarr the simulator wrote (``insarcloud/pipelines/truth.py``), with its verdict
in words (``truth_verdict``):
- per frame: LOS velocity of ``ts_<weights>`` against the truth LOS velocity;
- the mosaic: ``velocity_A``/``velocity_D`` against the truth LOS of the frames placed on the area grid, over
  the whole area and over the overlaps; ``velocity_east``/``velocity_up`` against the truth ENU velocity.
Velocities are relative (each InSAR map has its own datum), so every RMSE is taken after removing the
median difference; the datum offsets are reported too. The anchor is the same RMSE of a map of zeros (the
truth's own spread), so the ratio says how much of the signal the job recovers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import embedded_s3, write_json  # noqa: E402

from insarcloud.pipelines.demo import (  # noqa: E402
    BUCKET,
    DEFAULT_EPOCHS,
    DEFAULT_SIZE,
    config_dict,
    simulate_inputs,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--size", type=int, default=DEFAULT_SIZE)
    ap.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    ap.add_argument("--stages", nargs="*", default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    with embedded_s3(BUCKET) as (endpoint, so):  # the job's progress and failures on stderr, as in the demo
        from insarcloud.config import parse_config
        from insarcloud.pipelines.area_job import run_area
        from insarcloud.pipelines.truth import truth_verdict

        t_sim = time.perf_counter()
        frames = simulate_inputs(args.size, args.epochs, so)
        t_sim = time.perf_counter() - t_sim
        stages = args.stages or ["ingest", "qc", "quality", "invert", "noise", "forecast", "mosaic"]
        cfg = parse_config(config_dict(frames, stages, endpoint, args.size), source="benchmark")
        result = run_area(cfg)
        out: dict = {"frames": {}, "mosaic": {}, "wall_s": {"simulate": round(t_sim, 1), **result.seconds},
                     "stage_seconds": {f: r.stage_seconds for f, r in result.frames.items()},
                     "failed": result.failed, "size": args.size, "epochs": args.epochs,
                     "errors": {f: r.error for f, r in result.frames.items() if r.error}}
        # the job itself compares with the truth (report.truth_url in the demo's config)
        out.update(result.truth or {"truth": "not computed (see the run log)"})
        out["truth_verdict"] = truth_verdict(result.truth)
    out["wall_s"]["benchmark_total"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out, indent=1))
    write_json(args.json, out)


if __name__ == "__main__":
    main()
