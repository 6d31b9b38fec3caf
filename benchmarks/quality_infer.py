"""ConvNeXt-InSAR inference throughput per actor: tiles/s and megapixels/s, against reading the cube.

Measures, on whatever device is present (CUDA when available, else CPU), the shipped checkpoint's model
over a grid of batch size x threads x channels_last x bf16 autocast at one tile size, and the time to
read the same pixels (phase, coh, unw of one 512 x 512 chunk per pair) from a Zarr frame cube. Every
configuration is reported as a ratio to the anchor measured in the same run: eager fp32, NCHW, batch 1.

    python benchmarks/quality_infer.py --json OUT [--tile 512] [--repeats 3] [--quick]
    python benchmarks/quality_infer.py --json OUT --read-only [--size 512 --pairs-epochs 16]

``--read-only`` skips the model grid and measures only the actors' reads (issue 20's read amplification):
bytes each job shape decodes from the stored chunks of phase, coh, unw and the qc group's ``pair_closure``,
against the bytes the job uses, for the old shape (one pair x one chunk per actor call, pair-major: what the
driver sent before) and the window shape (one window x its pairs per call, ``insarcloud.qc.serve_plan``), on
a cube whose qc group is written by the qc stage itself (its real layout: all pairs x 32 x 32 px per chunk).
Decoded bytes are counted in zarr's array-bytes codec (every stored chunk, inner chunks of a shard included,
passes it once per decode); both shapes' quality maps are compared (they must be equal).

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


class DecodeCounter:
    """Counts the bytes zarr decodes (the array-bytes codec's output, one stored chunk at a time)."""

    def __init__(self) -> None:
        from zarr.codecs import BytesCodec

        self.bytes = 0
        self.chunks = 0
        self._cls, self._orig = BytesCodec, BytesCodec._decode_sync
        counter = self

        def counting(codec, chunk_bytes, chunk_spec):  # type: ignore[no-untyped-def]
            counter.bytes += len(chunk_bytes)
            counter.chunks += 1
            return counter._orig(codec, chunk_bytes, chunk_spec)

        BytesCodec._decode_sync = counting

    def close(self) -> None:
        self._cls._decode_sync = self._orig


def read_amplification(size: int, n_epochs: int, chunk: int, tile: int, overlap: int, block: int,
                       mem_mb: int) -> dict:
    """Decoded vs used bytes per job for the old (pair x chunk) and the window job shape (module docstring)."""
    import tracemalloc

    import dask

    from insarcloud import io
    from insarcloud.qc import synthetic
    from insarcloud.qc.config import QCParams
    from insarcloud.qc.dask_ops import run_qc
    from insarcloud.qc.model import ModelConfig, build_model
    from insarcloud.qc.serve import QualityWorker, ServeParams, _template, file_sha256
    from insarcloud.qc.serve_plan import calls, pairs_per_call, plan_jobs, window_px
    from insarcloud.qc.train import save_checkpoint

    torch.set_num_threads(1)
    s = synthetic.make_stack(np.random.default_rng(0), shape=(size, size), n_epochs=n_epochs, max_span=3)
    ds = io.make_frame_dataset(frame="012A_05850_131313", pairs=s.pairs, lat=1.0 - np.arange(size) * 1e-3,
                               lon=10.0 + np.arange(size) * 1e-3, phase=s.phase, coh=s.coh, unw=s.unw)
    n = len(s.pairs)
    out: dict = {"size": size, "pairs": n, "cube_chunk": chunk, "tile": tile, "overlap": overlap, "qc_block": block,
                 "actor_mem_mb": mem_mb, "shapes": {}}
    with tempfile.TemporaryDirectory() as d:
        url = str(Path(d) / "cube.zarr")
        io.write_new_cube(ds, url, chunk=chunk)
        with dask.config.set(scheduler="threads", num_workers=2):
            qc_group = run_qc(url, QCParams(block=block))
        qc_chunks = list(io.cube.open_zarr_group(url, qc_group)["pair_closure"].chunks)
        out["qc_pair_closure_chunks"] = qc_chunks
        torch.manual_seed(0)  # a small model with the packaged export's channels: bytes do not depend on its size
        m = build_model(ModelConfig(channels=("cos_phase", "sin_phase", "coh", "unw_grad", "closure"), num_stages=2,
                                    decoder_width=8))
        ck = str(Path(d) / "q.pt")
        save_checkpoint(ck, {"model_config": m.config.model_dump_json(), "state_dict": m.state_dict()})
        p = ServeParams(checkpoint=ck, tile=tile, overlap=overlap, batch_size=4, threads=1, bf16=False)
        marker = {**p.model_dump(), "checkpoint_sha256": file_sha256(ck)}
        root = io.open_cube(url)
        jobs = plan_jobs([str(v) for v in root["pair"].values], (size, size), (chunk, chunk))
        win = window_px((size, size), (chunk, chunk), tile, overlap)
        per_call = pairs_per_call(n, win, 2, mem_mb)
        shapes = {"pair_x_chunk (before)": [[j] for j in sorted(jobs, key=lambda j: (j.pair_index, j.y, j.x))],
                  "window_x_pairs (after)": calls(jobs, per_call)}
        maps = {}
        for label, batches in shapes.items():
            group = "quality_" + label.split()[0]
            io.create_stage_template(_template(root, (chunk, chunk), marker), url, group, stage="quality",
                                     params=marker)
            w = QualityWorker(url, group, p.model_dump_json(), qc_group=qc_group, mem_mb=mem_mb)
            per_var: dict[str, dict[str, int]] = {}
            orig_read = QualityWorker._read
            counter = DecodeCounter()

            def counted(d, name, idx, ys, xs, per_var=per_var, orig_read=orig_read,  # type: ignore[no-untyped-def]
                        counter=counter):
                c0 = counter.bytes
                block_ = orig_read(d, name, idx, ys, xs)
                v = per_var.setdefault(name, {"decoded": 0, "used": 0, "reads": 0})
                v["decoded"] += counter.bytes - c0
                v["used"] += int(block_.nbytes)
                v["reads"] += 1
                return block_

            QualityWorker._read = staticmethod(counted)
            tracemalloc.start()
            peak = 0
            t0 = time.perf_counter()
            try:
                for b in batches:
                    tracemalloc.reset_peak()
                    w.run_many(b)
                    peak = max(peak, tracemalloc.get_traced_memory()[1])
            finally:
                dt = time.perf_counter() - t0
                tracemalloc.stop()
                QualityWorker._read = orig_read
                counter.close()
            n_jobs = len(jobs)
            out["shapes"][label] = {
                "calls": len(batches), "jobs": n_jobs, "seconds": dt,
                "decoded_bytes_total": counter.bytes, "decoded_chunks": counter.chunks,
                "per_variable": {k: {**v, "decoded_per_job": v["decoded"] / n_jobs, "used_per_job": v["used"] / n_jobs,
                                     "amplification": v["decoded"] / max(1, v["used"])} for k, v in per_var.items()},
                "peak_numpy_mb_per_call": peak / 2**20,
            }
            maps[label] = io.open_cube(url, group=group, complete_only=False)["quality"].values
            pc = out["shapes"][label]["per_variable"].get("pair_closure", {})
            print(f"{label:24s}: {len(batches):4d} calls, pair_closure decoded "
                  f"{pc.get('decoded_per_job', 0) / 1e6:8.3f} MB/job for {pc.get('used_per_job', 0) / 1e6:.3f} MB "
                  f"used ({pc.get('amplification', 0):.1f}x); "
                  f"all variables {counter.bytes / n_jobs / 1e6:.3f} MB/job; peak numpy {peak / 2**20:.1f} MB/call",
                  flush=True)
        a, b = maps.values()
        out["max_abs_diff_between_shapes"] = float(np.nanmax(np.abs(a - b))) if np.isfinite(a).any() else 0.0
        out["identical"] = bool(np.array_equal(a, b, equal_nan=True))
    before, after = (out["shapes"][k]["per_variable"]["pair_closure"] for k in shapes)
    out["pair_closure_decoded_ratio_before_over_after"] = before["decoded"] / max(1, after["decoded"])
    out["note"] = ("decoded bytes: zarr's array-bytes codec output, i.e. every stored chunk decompressed; used: "
                   "the bytes of the (pair, window) selection each job needs (the window includes the tiles' halo)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None, help="write results here")
    ap.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="fewer configurations (CI / loaded machines)")
    ap.add_argument("--read-only", action="store_true", help="only the read amplification of the job shapes")
    ap.add_argument("--size", type=int, default=512, help="read-only: image side, pixels")
    ap.add_argument("--epochs", type=int, default=16, help="read-only: epochs (pairs up to 3 epochs apart)")
    ap.add_argument("--chunk", type=int, default=256, help="read-only: cube chunk side (the output chunk)")
    ap.add_argument("--read-tile", type=int, default=128, help="read-only: model tile")
    ap.add_argument("--read-overlap", type=int, default=32, help="read-only: tile overlap")
    ap.add_argument("--qc-block", type=int, default=32, help="read-only: the qc stage's block (a real frame's: 32)")
    ap.add_argument("--actor-mem-mb", type=int, default=2048, help="read-only: actor memory bound")
    a = ap.parse_args(argv)
    if a.read_only:
        res = {"benchmark": "quality_read_amplification", "info": device_info(),
               **read_amplification(a.size, a.epochs, a.chunk, a.read_tile, a.read_overlap, a.qc_block,
                                    a.actor_mem_mb)}
        print(f"pair_closure decoded: before/after = {res['pair_closure_decoded_ratio_before_over_after']:.1f}x; "
              f"quality identical: {res['identical']} (load {res['info']['loadavg_1min']:.1f})")
        if a.json:
            Path(a.json).write_text(json.dumps(res, indent=1))
        return 0
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
