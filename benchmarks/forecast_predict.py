"""Prediction throughput of the forecast stage: the cyclic GLER-BiGRUnet forecast, module path vs fast path.

The forecast stage's actors spend almost all their time in ``cyclic_predict`` (one forward pass of the network
per pixel and forecast step; docs/scale.md). This times, in the same process and on the same pixels:

* old: ``cyclic_predict(..., fast=False)``, the module's own forward (batches of 4096 pixels), as the stage ran;
* new: ``cyclic_predict(...)``, :class:`insarcloud.forecast.fast.FastGLER` (time-major, batch-last, batches of
  256 pixels on CPU);

repeated and interleaved (the minimum CPU seconds of each is kept: a shared machine only adds), with one torch
thread (what a Ray actor of ``num_cpus=1`` runs), the GLER defaults (width 16, 8 heads, 3 (Bi)GRU layers),
seeded random weights (the cost does not depend on the weights) and random scaled windows. Reports CPU seconds
per pixel-step, pixels per second for the whole horizon, the max difference of the two outputs, the model's
FLOPs per pixel-step, a batch-size sweep of the new path, and the projection to a real frame (7e6 pixels, the
stage's default 72-step horizon). With a CUDA device, the same comparison on it (batches of 65536); skipped
otherwise.

    python benchmarks/forecast_predict.py --json bench-output/forecast_predict.json
    python benchmarks/forecast_predict.py --pixels 1024 --steps 2 --repeats 1 --sweep 256 --json /tmp/fp.json
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from _common import write_json  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from insarcloud.forecast.models import ModelConfig, build_model  # noqa: E402
from insarcloud.forecast.predict import cyclic_predict  # noqa: E402

FRAME_PIXELS = 7e6  # a real LiCSAR frame (~2,500 x 2,800)
HORIZON = 72  # run_forecast's default n_steps


def _cpu(fn) -> tuple[float, float, object]:
    """(CPU s of this process, wall s, result) of fn()."""
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return time.process_time() - c0, time.perf_counter() - w0, out


def flops_per_pixel_step(model: torch.nn.Module, window: int) -> float:
    """FLOPs of one forward pass per pixel (matmuls, convolutions, attention), counted by torch."""
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.zeros(64, window, 4))
    return fc.get_total_flops() / 64


def cpu_run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model("gler", args.window, ModelConfig()).eval()
    rng = np.random.default_rng(0)
    win = rng.normal(size=(args.pixels, args.window, 4)).astype(np.float32)
    cyclic_predict(model, win[:64], 1)  # warm-up of both paths
    cyclic_predict(model, win[:64], 1, fast=False)
    old_c, new_c, old_w, new_w = [], [], [], []
    ref = got = None
    for _ in range(args.repeats):
        c, w, ref = _cpu(lambda: cyclic_predict(model, win, args.steps, fast=False))
        old_c.append(c)
        old_w.append(w)
        c, w, got = _cpu(lambda: cyclic_predict(model, win, args.steps))
        new_c.append(c)
        new_w.append(w)
    n_ps = args.pixels * args.steps
    old_ps, new_ps = min(old_c) / n_ps, min(new_c) / n_ps
    diff = np.abs(np.asarray(got) - np.asarray(ref))
    flops = flops_per_pixel_step(model, args.window)
    sweep = {}
    for b in args.sweep:
        c, _, _ = _cpu(lambda b=b: cyclic_predict(model, win[: max(b, min(args.pixels, 4 * b))], args.steps, batch=b))
        sweep[str(b)] = c / (max(b, min(args.pixels, 4 * b)) * args.steps) * 1e6
    frame = {k: v * FRAME_PIXELS * HORIZON / 3600 for k, v in (("old", old_ps), ("new", new_ps))}
    return {
        "pixels": args.pixels, "steps_timed": args.steps, "window": args.window, "threads": args.threads,
        "repeats": args.repeats,
        "old_cpu_us_per_pixel_step": old_ps * 1e6, "new_cpu_us_per_pixel_step": new_ps * 1e6,
        "speedup_cpu": old_ps / new_ps, "speedup_wall": min(old_w) / min(new_w),
        "old_cpu_seconds": old_c, "new_cpu_seconds": new_c,
        "old_pixels_per_cpu_second_72_steps": 1 / (old_ps * HORIZON),
        "new_pixels_per_cpu_second_72_steps": 1 / (new_ps * HORIZON),
        "max_abs_diff": float(diff.max()), "max_abs_output": float(np.abs(ref).max()),
        "rms_diff": float(np.sqrt((diff**2).mean())),
        "flops_per_pixel_step": flops,
        "old_gflops_per_s": flops / old_ps / 1e9, "new_gflops_per_s": flops / new_ps / 1e9,
        "new_batch_sweep_cpu_us_per_pixel_step": sweep,
        "frame_core_hours_old": frame["old"], "frame_core_hours_new": frame["new"],
        "frame": f"{FRAME_PIXELS:.0e} pixels x {HORIZON} steps",
    }


def gpu_run(args: argparse.Namespace) -> dict:
    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device (torch.cuda.is_available() is False)"}
    dev = torch.device("cuda")
    torch.manual_seed(0)
    model = build_model("gler", args.window, ModelConfig()).to(dev).eval()
    win = np.random.default_rng(0).normal(size=(args.gpu_pixels, args.window, 4)).astype(np.float32)
    res = {"device": torch.cuda.get_device_name(0), "pixels": args.gpu_pixels, "steps_timed": args.steps}
    for name, fast in (("old", False), ("new", True)):
        cyclic_predict(model, win[:1024], 1, fast=fast)
        torch.cuda.synchronize()
        w0 = time.perf_counter()
        out = cyclic_predict(model, win, args.steps, fast=fast)
        torch.cuda.synchronize()
        sec = time.perf_counter() - w0
        res[f"{name}_us_per_pixel_step"] = sec / (args.gpu_pixels * args.steps) * 1e6
        res[f"{name}_frame_gpu_hours"] = sec / (args.gpu_pixels * args.steps) * FRAME_PIXELS * HORIZON / 3600
        res[f"{name}_out"] = out
    res["max_abs_diff"] = float(np.abs(res.pop("new_out") - res.pop("old_out")).max())
    res["speedup"] = res["old_us_per_pixel_step"] / res["new_us_per_pixel_step"]
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pixels", type=int, default=4096, help="pixels timed on CPU")
    ap.add_argument("--steps", type=int, default=8, help="cyclic steps timed (the cost per step is flat)")
    ap.add_argument("--window", type=int, default=15, help="input length L (fft_window's default)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (a Ray actor of num_cpus=1 runs 1)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats, the minimum is kept")
    ap.add_argument("--sweep", type=int, nargs="*", default=[64, 128, 256, 512, 1024, 4096],
                    help="batch sizes of the new path timed once each")
    ap.add_argument("--gpu-pixels", type=int, default=262144, help="pixels timed on a CUDA device")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    out = {"load_average_start": os.getloadavg(), "torch": torch.__version__, "host": platform.node(),
           "cpu_count": os.cpu_count(), "cpu": cpu_run(args)}
    c = out["cpu"]
    print(f"CPU, L={c['window']}, {c['pixels']} px x {c['steps_timed']} steps, {c['threads']} thread(s): "
          f"old {c['old_cpu_us_per_pixel_step']:.1f} us, new {c['new_cpu_us_per_pixel_step']:.1f} us CPU per "
          f"pixel-step: {c['speedup_cpu']:.2f}x (wall {c['speedup_wall']:.2f}x); max |new - old| "
          f"{c['max_abs_diff']:.2e} (outputs up to {c['max_abs_output']:.2f}); "
          f"{c['flops_per_pixel_step'] / 1e6:.2f} MFLOP per pixel-step = {c['old_gflops_per_s']:.1f} -> "
          f"{c['new_gflops_per_s']:.1f} GFLOP/s; real frame ({c['frame']}): {c['frame_core_hours_old']:.1f} -> "
          f"{c['frame_core_hours_new']:.1f} core-hours")
    print("new path, CPU us per pixel-step by batch:",
          {k: round(v, 1) for k, v in c["new_batch_sweep_cpu_us_per_pixel_step"].items()})
    out["gpu"] = gpu_run(args)
    print("GPU:", {k: v for k, v in out["gpu"].items()})
    out["load_average_end"] = os.getloadavg()
    write_json(args.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
