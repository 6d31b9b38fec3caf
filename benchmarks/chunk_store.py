"""CPU per chunk request on S3: s3fs (fsspec) against obstore (insarcloud/io/chunk_store.py), same run (issue 20).

On moto's S3 server (loopback), a (pairs, size, size) float32 array stored one pair per chunk, zstd, as ingest
stores phase: every pair of it read the way QC's tile tasks read it (``READ_PAIRS`` pairs per Zarr call), then
(size/32)^2 chunks of a (pairs, 32, 32) float16 array and of a (32, 32) int16 array written the way pass 2 writes
them. Each store alternated ``--repeat`` times; CPU of this process (Zarr's and obstore's threads included) and,
apart, of the S3 server (AWS's cost, not ours). Prints and writes JSON, with the obstore/fsspec ratio.

Usage::

    PYTHONPATH=. python benchmarks/chunk_store.py --json chunk_store.json --pairs 300 --size 512 --repeat 3
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
from typing import Any

import numpy as np
from _common import embedded_s3, write_json


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _server_cpu() -> float:
    import psutil

    return sum(sum(p.cpu_times()[:2]) for p in psutil.process_iter(["cmdline"])
               if "moto.server" in " ".join(p.info["cmdline"] or []))


def one(url: str, so: dict[str, Any], chunk_io: bool, pairs: int, size: int, tag: str) -> dict[str, float]:
    from insarcloud.io.cube import open_zarr_group
    from insarcloud.qc.tiles import _read_into

    g = open_zarr_group(url, None, so, mode="r+", chunk_io=chunk_io)
    assert (type(g.store).__name__ == "ObjectStore") == chunk_io, type(g.store)
    out = np.empty((pairs, size, size), np.float32)
    s0, c0, t0 = _server_cpu(), _cpu(), time.perf_counter()
    _read_into(g["phase"], out, None, (0, size), (0, size))  # as read_tile: READ_PAIRS a call, into the tile
    s1, c1, t1 = _server_cpu(), _cpu(), time.perf_counter()
    a = g.create_array(f"w3_{tag}", shape=(pairs, size, size), chunks=(pairs, 32, 32), dtype="float16",
                       overwrite=True)
    b = g.create_array(f"w2_{tag}", shape=(size, size), chunks=(32, 32), dtype="int16", overwrite=True)
    blk, b2 = np.ones((pairs, 32, 32), np.float16), np.ones((32, 32), np.int16)
    c2, t2 = _cpu(), time.perf_counter()
    for y in range(0, size, 32):
        for x in range(0, size, 32):
            a[:, y:y + 32, x:x + 32] = blk
            b[y:y + 32, x:x + 32] = b2
    s3, c3, t3 = _server_cpu(), _cpu(), time.perf_counter()
    n_w = 2 * (size // 32) ** 2
    return {"read_cpu_s": c1 - c0, "read_wall_s": t1 - t0, "read_ms_per_chunk": 1e3 * (c1 - c0) / pairs,
            "write_cpu_s": c3 - c2, "write_wall_s": t3 - t2, "write_ms_per_chunk": 1e3 * (c3 - c2) / n_w,
            "server_cpu_s": (s1 - s0) + (s3 - s1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", required=True)
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)
    import zarr


    with embedded_s3("s3://bench", job_log=False) as (endpoint, so):
        so = {**so, "key": "demo", "secret": "demo"}
        url = "s3://bench/cube.zarr"
        g = zarr.open_group(url, mode="w", storage_options=so, zarr_format=3)
        rng = np.random.default_rng(0)
        arr = g.create_array("phase", shape=(a.pairs, a.size, a.size), chunks=(1, a.size, a.size), dtype="float32",
                             compressors=zarr.codecs.ZstdCodec(level=0))
        for k in range(a.pairs):  # noise like a real interferogram's phase: barely compressible, as in the cube
            arr[k] = rng.uniform(-np.pi, np.pi, (a.size, a.size)).astype(np.float32)
        runs: dict[str, list[dict[str, float]]] = {"fsspec": [], "obstore": []}
        for r in range(a.repeat):
            for name in runs:
                res = one(url, so, name == "obstore", a.pairs, a.size, f"{name}{r}")
                runs[name].append(res)
                print(name, {k: round(v, 3) for k, v in res.items()}, flush=True)
    best = {n: {k: min(x[k] for x in v) for k in v[0]} for n, v in runs.items()}
    ratio = {k: best["obstore"][k] / best["fsspec"][k] for k in ("read_cpu_s", "write_cpu_s")}
    print("best fsspec ", {k: round(v, 3) for k, v in best["fsspec"].items()})
    print("best obstore", {k: round(v, 3) for k, v in best["obstore"].items()})
    print("obstore / fsspec CPU:", {k: round(v, 3) for k, v in ratio.items()})
    write_json(a.json, {"args": vars(a), "python": sys.version, "machine": platform.platform(), "runs": runs,
                        "best": best, "ratio_obstore_over_fsspec": ratio})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
