"""ConvNeXt-InSAR inference throughput per actor: tiles/s and megapixels/s, against reading the cube.

Measures, on whatever device is present (CUDA when available, else CPU), the shipped checkpoint's model
over a grid of batch size x threads x channels_last x bf16 autocast at one tile size, and the time to
read the same pixels (phase, coh, unw of one 512 x 512 chunk per pair) from a Zarr frame cube. Every
configuration is reported as a ratio to the anchor measured in the same run: eager fp32, NCHW, batch 1.

    python benchmarks/quality_infer.py --json OUT [--tile 512] [--repeats 3] [--quick]

The issue's CPU anchor (another CPU, with AMX-BF16): atto + U-Net head at 512 x 512, 2 threads: ~126
ms/tile eager fp32, ~70 ms channels_last + bf16. This script records the CPU flags so the two can be told
apart (bf16 only pays off on CPUs with AMX/AVX512-BF16).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from insarcloud.qc.model import cpu_has_fast_bf16, cube_channels, predict_quality
from insarcloud.qc.serve import DEFAULT_CHECKPOINT
from insarcloud.qc.train import load_model


def device_info() -> dict:
    info = {"torch": torch.__version__, "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "cpu_fast_bf16": cpu_has_fast_bf16(), "loadavg_1min": os.getloadavg()[0]}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        info["cpu"] = platform.processor()
    if torch.cuda.is_available():
        info["device"] = "cuda"
        info["gpu"] = torch.cuda.get_device_name(0)
    else:
        info["device"] = "cpu"
    return info


def time_config(model, x: np.ndarray, batch: int, bf16: bool, channels_last: bool, repeats: int) -> float:
    """Seconds per tile (median over repeats, after one warm-up)."""
    m = model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    predict_quality(m, x[:batch], bf16=bf16, channels_last=channels_last, batch_size=batch)  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict_quality(m, x[:batch], bf16=bf16, channels_last=channels_last, batch_size=batch)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        ts.append((time.perf_counter() - t0) / batch)
    return float(np.median(ts))


def read_throughput(tile: int, n_pairs: int, repeats: int) -> dict:
    """Seconds to read phase+coh+unw of one tile-sized chunk per pair from a local Zarr cube, and to build
    the model's channels from them (what an actor does before inference)."""
    from insarcloud import io

    rng = np.random.default_rng(0)
    pairs = [f"2024{m:02d}01_2024{m:02d}13" for m in range(1, n_pairs + 1)]
    shape = (n_pairs, tile, tile)
    ds = io.make_frame_dataset(frame="012A_05850_131313", pairs=pairs, lat=31.0 - np.arange(tile) * 1e-3,
                               lon=90.0 + np.arange(tile) * 1e-3,
                               phase=rng.uniform(-3, 3, shape).astype(np.float32),
                               coh=rng.uniform(0, 1, shape).astype(np.float32),
                               unw=rng.normal(0, 5, shape).astype(np.float32))
    with tempfile.TemporaryDirectory() as d:
        url = str(Path(d) / "cube.zarr")
        io.write_new_cube(ds, url, chunk=tile)
        cube = io.open_cube(url)
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for p in pairs:
                sel = cube.sel(pair=p)
                cube_channels(("cos_phase", "sin_phase", "coh", "unw_grad"), sel["phase"].values, sel["coh"].values,
                              unw=sel["unw"].values)
            ts.append((time.perf_counter() - t0) / n_pairs)
    return {"seconds_per_tile": float(np.median(ts)), "store": "local file Zarr v3 (zstd), 3 variables"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None, help="write results here")
    ap.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="fewer configurations (CI / loaded machines)")
    a = ap.parse_args(argv)
    info = device_info()
    model = load_model(a.checkpoint)
    gpu = torch.cuda.is_available()
    if gpu:
        model = model.cuda()
    rng = np.random.default_rng(0)
    c = len(model.config.channels)
    batches = [1, 4] if a.quick else [1, 4, 8]
    threads = [2] if (a.quick or gpu) else [1, 2]
    x = rng.standard_normal((max(batches), c, a.tile, a.tile)).astype(np.float32)
    x[:, 2] = rng.uniform(0, 1, x[:, 2].shape)
    rows = []
    for th, b, cl, bf in itertools.product(threads, batches, [False, True], [False, True]):
        if bf and not gpu and not cl:
            continue  # NCHW bf16 on CPU falls back to slow reference convolutions (measured ~20x slower)
        torch.set_num_threads(th)
        s = time_config(model, x, b, bf, cl, a.repeats)
        rows.append({"threads": th, "batch": b, "channels_last": cl, "bf16": bf, "ms_per_tile": 1e3 * s,
                     "tiles_per_s": 1 / s, "mpix_per_s": a.tile * a.tile / s / 1e6})
        print(f"threads {th} batch {b:2d} channels_last {cl!s:5} bf16 {bf!s:5}: {1e3 * s:8.1f} ms/tile "
              f"{1 / s:7.2f} tiles/s {a.tile * a.tile / s / 1e6:6.2f} MP/s", flush=True)
    anchor = next(r for r in rows if r["batch"] == 1 and not r["channels_last"] and not r["bf16"]
                  and r["threads"] == max(threads))
    for r in rows:
        r["speedup_vs_anchor"] = anchor["ms_per_tile"] / r["ms_per_tile"]
    best = min(rows, key=lambda r: r["ms_per_tile"])
    read = read_throughput(a.tile, 4, a.repeats)
    out = {
        "benchmark": "quality_infer", "tile": a.tile, "channels": list(model.config.channels),
        "model": json.loads(model.config.model_dump_json()),
        "params": int(sum(p.numel() for p in model.parameters())), "info": info, "rows": rows,
        "anchor": {"config": "eager fp32 NCHW batch 1", "ms_per_tile": anchor["ms_per_tile"],
                   "issue_cpu_anchor_ms": {"fp32": 126, "channels_last_bf16": 70, "quarter_res": 37}},
        "best": best, "read": read,
        "infer_over_read": best["ms_per_tile"] / (1e3 * read["seconds_per_tile"]),
        "note": "infer_over_read < 1 means the actor is bound by reading the cube, not by the model",
    }
    print(f"best {best['ms_per_tile']:.1f} ms/tile ({best['speedup_vs_anchor']:.2f}x anchor); read+channels "
          f"{1e3 * read['seconds_per_tile']:.1f} ms/tile; infer/read = {out['infer_over_read']:.2f} on "
          f"{info['device']} (load {info['loadavg_1min']:.1f})")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
