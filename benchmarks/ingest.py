"""Ingest throughput against raw read throughput of the same objects from the same endpoint.

    python benchmarks/ingest.py --json bench-output/ingest.json [--source DIR] [--workers 2]

Uploads a LiCSAR frame (default: the whole real frame in ../shared/data/licsar when present, else the
test crop) to a local S3 endpoint (moto's server on loopback), then in one run measures
(1) raw read: every product's bytes fetched with s3fs by the same Dask workers, and
(2) ingest: ``insarcloud.io.ingest.ingest_frame`` into a Zarr cube on the same endpoint,
and reports MB/s of source GeoTIFF for both, their ratio, and the peak RSS of the workers.
Goal (issue 2): ingest >= 70% of raw read throughput, peak memory bounded by chunks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from pipelines.local_s3 import local_s3  # noqa: E402  (the one moto start-up of the project)

REAL = HERE.parent.parent / "shared" / "data" / "licsar"
CROP = HERE.parent / "tests" / "data" / "licsar"
FRAME = "106A_09048_000909"


def _read_all(urls: list[str]) -> int:
    from insarcloud.io.storage import get_fs

    total = 0
    for u in urls:
        fs, path = get_fs(u)
        total += len(fs.cat_file(path))
    return total


def _peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None, help="write results here")
    ap.add_argument("--source", default=None, help="directory holding <frame>/ or <track>/<frame>/")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=512)
    args = ap.parse_args()
    src_dir = Path(args.source) if args.source else (REAL if (REAL / FRAME).exists() else CROP / "106")
    frame_dir = src_dir / FRAME if (src_dir / FRAME).exists() else next(src_dir.rglob(FRAME))

    with local_s3() as endpoint:
        import s3fs
        from distributed import Client, LocalCluster

        from insarcloud.io.ingest import ingest_frame
        from insarcloud.io.licsar import discover_frame

        fs = s3fs.S3FileSystem(endpoint_url=endpoint)
        fs.mkdir("bench")
        fs.put(str(frame_dir) + "/", f"bench/licsar/106/{FRAME}/", recursive=True)
        products = discover_frame("s3://bench/licsar", FRAME)
        urls = [r.url for refs in products.pairs.values() for r in refs.values()]
        nbytes = sum(r.size for refs in products.pairs.values() for r in refs.values())

        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                          dashboard_address=":0") as cluster, Client(cluster) as client:
            client.run(lambda: None)
            groups = [urls[i::args.workers * 2] for i in range(args.workers * 2)]
            t0 = time.perf_counter()
            got = sum(client.gather(client.map(_read_all, groups, pure=False)))
            raw_s = time.perf_counter() - t0
            assert got == nbytes, (got, nbytes)
            t0 = time.perf_counter()
            report = ingest_frame("s3://bench/licsar", FRAME, f"s3://bench/cubes/{FRAME}.zarr",
                                  chunk=args.chunk, client=client)
            ingest_s = time.perf_counter() - t0
            peaks = client.run(_peak_rss)
        mb = nbytes / 1e6
        ny, nx = 0, 0
        import xarray as xr

        ds = xr.open_zarr(f"s3://bench/cubes/{FRAME}.zarr", storage_options={"endpoint_url": endpoint})
        ny, nx = ds.sizes["y"], ds.sizes["x"]
        result = {
            "frame": FRAME, "source": str(frame_dir), "pairs": len(report.completed), "shape": [ny, nx],
            "source_MB": round(mb, 2), "workers": args.workers, "chunk": args.chunk,
            "raw_read_s": round(raw_s, 3), "raw_read_MBps": round(mb / raw_s, 2),
            "ingest_s": round(ingest_s, 3), "ingest_MBps": round(mb / ingest_s, 2),
            "ingest_over_raw": round(raw_s / ingest_s, 3),
            "goal_ingest_over_raw": 0.7,
            "peak_worker_rss_MB": {k: round(v / 1e6, 1) for k, v in peaks.items()},
            "one_pair_band_MB": round(3 * args.chunk * nx * 4 / 1e6, 2),
            "frame_stack_MB": round(len(report.completed) * ny * nx * 4 * 2 / 1e6, 1),
        }
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
