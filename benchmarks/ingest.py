"""Ingest throughput against raw read throughput of the same objects from the same endpoint.

    python benchmarks/ingest.py --json bench-output/ingest.json [--source DIR] [--workers 2] [--rounds 3]

Uploads a LiCSAR frame (default: the whole real frame in ../shared/data/licsar when present, else the
test crop) to a local S3 endpoint (moto's server on loopback) and, on one Dask cluster of worker processes,
measures in interleaved rounds:

- raw read (the anchor): every pair product's bytes fetched by the same workers with s3fs, (a) one object
  after another per task as in session 1, and (b) the objects of a task fetched concurrently; the faster
  of the two is the round's anchor, so the anchor is never the slow side of the ratio;
- ingest: ``insarcloud.io.ingest.ingest_frame`` into a fresh Zarr cube on the same endpoint;
- the session-1 ingest (``--baseline-rev``, loaded from git) into another fresh cube, for old vs new.

MB/s are of source GeoTIFF bytes (the pair products). Per round the ratio is anchor seconds / ingest
seconds; the JSON holds every round and the medians. Workers import the modules both sides use before the
first round (a long-lived cluster pays imports once; neither side is timed with them). Peak memory: each
worker's high-water RSS is reset before the ingest and read after it (Linux /proc/self/clear_refs), and
compared with the frame stack and with one pair's shard-row block. A file:// ingest of the same frame gives
the reference MB/s without an object store.
Goal (issue 2): ingest >= 70% of raw read throughput, peak memory bounded by chunks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
from _common import write_json  # noqa: E402

from insarcloud.pipelines.local_s3 import local_s3  # noqa: E402  (the one moto start-up of the project)

REAL = ROOT.parent / "shared" / "data" / "licsar"
CROP = ROOT / "tests" / "data" / "licsar"
FRAME = "106A_09048_000909"
BASELINE_REV = "9f9f609"  # session 1's last commit: insarcloud/io/ingest.py before this work
BASELINE_MODULE = "insarcloud_ingest_baseline"
REAL_FRAME_PAIR_MPX = 7.0 * 700  # a real LiCSAR frame (issue 20): ~7e6 px x ~700 pairs


def _read_all(urls: list[str]) -> int:
    """Session 1's anchor: one object after another."""
    from insarcloud.io.storage import get_fs

    total = 0
    for u in urls:
        fs, path = get_fs(u)
        total += len(fs.cat_file(path))
    return total


def _read_all_concurrent(urls: list[str]) -> int:
    """The same objects, fetched concurrently by s3fs (as ingest's two threads per pair fetch theirs)."""
    from insarcloud.io.storage import get_fs

    fs, _ = get_fs(urls[0])
    return sum(len(v) for v in fs.cat([get_fs(u)[1] for u in urls]).values())


def _read_decode(urls: list[str]) -> int:
    """Reference, not the anchor: the same objects read and decoded through ingest's own GDAL path, no write."""
    from insarcloud.io.licsar import open_product, read_window

    total = 0
    for u in urls:
        with open_product(u) as ds:
            total += read_window(ds, u, 0, ds.height).nbytes
    return total


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _endpoint_pid() -> int | None:
    """The moto server started by ``local_s3`` (a child of this process)."""
    import os

    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == os.getpid() and b"moto.server" in (d / "cmdline").read_bytes():
                return int(d.name)
        except (OSError, ValueError):
            continue
    return None


def _read_files(paths: list[str]) -> int:
    return sum(len(Path(p).read_bytes()) for p in paths)


def _warm(extra_path: str | None) -> None:
    """Import what both sides use, once per worker."""
    if extra_path and extra_path not in sys.path:
        sys.path.insert(0, extra_path)
    import rasterio  # noqa: F401
    import s3fs  # noqa: F401
    import zarr  # noqa: F401

    import insarcloud.io.ingest  # noqa: F401


def _reset_peak() -> int:
    """Reset this process's high-water RSS (Linux >= 4.0); return the current RSS in bytes."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kb("VmRSS") * 1024


def _peak() -> int:
    return _status_kb("VmHWM") * 1024


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _load_baseline(rev: str, where: Path) -> object | None:
    """Session 1's ingest module from git, importable by the driver and the (local) workers."""
    try:
        src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:insarcloud/io/ingest.py"],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"baseline {rev} not available ({exc}); old-vs-new skipped", file=sys.stderr)
        return None
    (where / f"{BASELINE_MODULE}.py").write_text(src)
    sys.path.insert(0, str(where))
    import importlib

    return importlib.import_module(BASELINE_MODULE)


def _replicate(frame_dir: Path, out: Path, n: int) -> Path:
    """A copy of the frame whose pairs appear ``n`` times, the k-th copy's dates shifted by k * 364 days."""
    import datetime as dt

    shutil.copytree(frame_dir / "metadata", out / "metadata")
    for pair_dir in sorted((frame_dir / "interferograms").iterdir()):
        for k in range(n):
            a, b = (dt.datetime.strptime(d, "%Y%m%d") + dt.timedelta(days=364 * k) for d in pair_dir.name.split("_"))
            name = f"{a:%Y%m%d}_{b:%Y%m%d}"
            (out / "interferograms" / name).mkdir(parents=True)
            for f in pair_dir.glob("*.tif"):
                shutil.copy(f, out / "interferograms" / name / f.name.replace(pair_dir.name, name))
    return out


def _simulate(spec: str, out: Path) -> Path:
    """A simulated LiCSAR frame (``HxW:EPOCHS``) written as files under ``out``; returns the frame folder."""
    from insarcloud.simulate import write_licsar_frame
    from insarcloud.simulate.presets import simulate_preset_frame

    size, epochs = spec.split(":")
    ny, nx = (int(v) for v in size.split("x"))
    sim = simulate_preset_frame(FRAME, "tibet_basin", shape=(ny, nx), n_epochs=int(epochs), seed=1)
    return Path(write_licsar_frame(sim, f"file://{out}").removeprefix("file://"))


@contextlib.contextmanager
def _quiet_close(cluster: object) -> Iterator[object]:
    """The cluster, closed at the end; a close that times out (workers slow to exit on a loaded machine)
    is reported, not allowed to lose the measurements already taken."""
    try:
        yield cluster
    finally:
        try:
            cluster.close()  # type: ignore[attr-defined]
        except (TimeoutError, OSError) as exc:
            print(f"cluster close failed ({type(exc).__name__}: {exc}); results kept", file=sys.stderr)


def _median(xs: list[float]) -> float:
    return round(statistics.median(xs), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None, help="write results here")
    ap.add_argument("--source", default=None, help="directory holding <frame>/ or <track>/<frame>/")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--product-threads", type=int, default=1, help="ingest_frame(product_threads=...)")
    ap.add_argument("--baseline-rev", default=BASELINE_REV, help="git revision of the old ingest ('none': skip)")
    ap.add_argument("--no-file", action="store_true", help="skip the file:// reference")
    ap.add_argument("--simulate", default=None, metavar="HxW:EPOCHS",
                    help="a simulated frame instead (preset tibet_basin, 3 rasters per pair), e.g. 512x512:20 "
                         "(58 pairs); written once to a temporary folder, then uploaded like the real one")
    ap.add_argument("--replicate", type=int, default=1,
                    help="repeat the frame's pairs N times (dates shifted by whole years): a taller frame stack, "
                         "same products, to show that peak memory does not grow with it")
    args = ap.parse_args()
    src_dir = Path(args.source) if args.source else (REAL if (REAL / FRAME).exists() else CROP / "106")
    frame_dir = src_dir / FRAME if (src_dir / FRAME).exists() else next(src_dir.rglob(FRAME))
    tmp = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    if args.simulate:
        frame_dir = _simulate(args.simulate, tmp / "sim")
    if args.replicate > 1:
        frame_dir = _replicate(frame_dir, tmp / "replicated" / FRAME, args.replicate)
    try:
        result = _run(args, frame_dir, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=1))
    write_json(args.json, result)


def _run(args: argparse.Namespace, frame_dir: Path, tmp: Path) -> dict:
    old = None if args.baseline_rev == "none" else _load_baseline(args.baseline_rev, tmp)
    with local_s3() as endpoint:
        import rasterio
        import s3fs
        import xarray as xr
        from distributed import Client, LocalCluster

        from insarcloud.io.ingest import ingest_frame
        from insarcloud.io.licsar import discover_frame

        fs = s3fs.S3FileSystem(endpoint_url=endpoint)
        fs.mkdir("bench")
        fs.put(str(frame_dir) + "/", f"bench/licsar/106/{FRAME}/", recursive=True)
        products = discover_frame("s3://bench/licsar", FRAME)
        urls = [r.url for refs in products.pairs.values() for r in refs.values()]
        nbytes = sum(r.size for refs in products.pairs.values() for r in refs.values())
        mb = nbytes / 1e6
        decoded = 0
        for refs in products.pairs.values():  # decoded bytes: float32 phase/unw, uint8 cc
            for ref in refs.values():
                with rasterio.open(frame_dir / "interferograms" / ref.url.rsplit("/", 2)[1] /
                                   ref.url.rsplit("/", 1)[1]) as ds:
                    decoded += ds.width * ds.height * (1 if ds.dtypes[0] == "uint8" else 4)
        n_groups = args.workers * 2
        groups = [urls[i::n_groups] for i in range(n_groups)]
        rounds: list[dict] = []
        with _quiet_close(LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                       dashboard_address=":0")) as cluster, Client(cluster) as client:
            client.run(_warm, str(tmp) if old is not None else None)
            moto_pid = _endpoint_pid()
            worker_pids = list(client.run(lambda: __import__("os").getpid()).values())

            def cpu_now() -> dict[str, float]:
                return {"endpoint": _cpu_seconds(moto_pid) if moto_pid else float("nan"),
                        "workers": sum(_cpu_seconds(p) for p in worker_pids), "driver": time.process_time()}

            def cpu_since(c0: dict[str, float]) -> dict[str, float]:
                c1 = cpu_now()
                return {k: round(c1[k] - c0[k], 2) for k in c0}

            def raw(fn: object, expect: int = nbytes) -> float:
                t0 = time.perf_counter()
                got = sum(client.gather(client.map(fn, groups, pure=False)))
                assert got == expect, (got, expect)
                return time.perf_counter() - t0

            for r in range(args.rounds):
                row: dict = {"round": r}
                steps = ["raw_seq", "raw_conc", "decode", "new"] + (["old"] if old is not None else [])
                steps = steps[r % len(steps):] + steps[:r % len(steps)]  # rotate: no side always goes first
                for step in steps:
                    c0 = cpu_now()
                    if step == "raw_seq":
                        row["raw_seq_s"] = round(raw(_read_all), 3)
                    elif step == "raw_conc":
                        row["raw_conc_s"] = round(raw(_read_all_concurrent), 3)
                    elif step == "decode":
                        row["read_decode_s"] = round(raw(_read_decode, decoded), 3)
                    elif step == "new":
                        before = client.run(_reset_peak)
                        t0 = time.perf_counter()
                        rep = ingest_frame("s3://bench/licsar", FRAME, f"s3://bench/cubes/new{r}/{FRAME}.zarr",
                                           chunk=args.chunk, client=client, product_threads=args.product_threads)
                        row["new_s"] = round(time.perf_counter() - t0, 3)
                        peaks = client.run(_peak)
                        row["new_phases_s"] = rep.timings
                        row["new_task_seconds_sum"] = rep.task_seconds
                        row["new_peak_rss_MB"] = {k: round(v / 1e6, 1) for k, v in peaks.items()}
                        row["new_rss_increase_MB"] = {k: round((peaks[k] - before[k]) / 1e6, 1) for k in peaks}
                        assert sorted(rep.completed) == sorted(products.pairs), rep.failed
                    else:
                        t0 = time.perf_counter()
                        rep = old.ingest_frame("s3://bench/licsar", FRAME, f"s3://bench/cubes/old{r}/{FRAME}.zarr",
                                               chunk=args.chunk, client=client)
                        row["old_s"] = round(time.perf_counter() - t0, 3)
                        assert sorted(rep.completed) == sorted(products.pairs), rep.failed
                    row[f"cpu_{step}_s"] = cpu_since(c0)
                row["anchor_s"] = min(row["raw_seq_s"], row["raw_conc_s"])
                row["new_over_raw"] = round(row["anchor_s"] / row["new_s"], 3)
                if "old_s" in row:
                    row["old_over_raw"] = round(row["anchor_s"] / row["old_s"], 3)
                print(json.dumps(row), file=sys.stderr)
                rounds.append(row)

            ds = xr.open_zarr(f"s3://bench/cubes/new0/{FRAME}.zarr", storage_options={"endpoint_url": endpoint})
            ny, nx = ds.sizes["y"], ds.sizes["x"]
            shard_rows = ds.phase.encoding.get("shards", ds.phase.encoding["chunks"])[1]
            written = sum(i["size"] for i in fs.find(f"bench/cubes/new0/{FRAME}.zarr", detail=True).values())
            n_objects = len(fs.find(f"bench/cubes/new0/{FRAME}.zarr"))
            written_old = n_objects_old = None
            if old is not None:
                written_old = sum(i["size"] for i in fs.find(f"bench/cubes/old0/{FRAME}.zarr", detail=True).values())
                n_objects_old = len(fs.find(f"bench/cubes/old0/{FRAME}.zarr"))

            file_ref = None if args.no_file else _file_reference(client, frame_dir, tmp, args.chunk, ingest_frame)

    anchor = [r["anchor_s"] for r in rounds]
    steps = ("raw_seq", "raw_conc", "decode", "new") + (("old",) if old is not None else ())
    cpu = {step: {k: round(statistics.median([r[f"cpu_{step}_s"][k] for r in rounds]), 2)
                  for k in ("endpoint", "workers", "driver")} for step in steps}
    new = [r["new_s"] for r in rounds]
    out = {
        "frame": FRAME, "source": str(frame_dir), "pairs": len(products.pairs), "shape": [ny, nx],
        "source_MB": round(mb, 2), "workers": args.workers, "threads_per_worker": 1, "chunk": args.chunk,
        "product_threads": args.product_threads, "replicate": args.replicate,
        "rounds": rounds,
        "raw_read_s": _median(anchor), "raw_read_MBps": round(mb / statistics.median(anchor), 2),
        "ingest_s": _median(new), "ingest_MBps": round(mb / statistics.median(new), 2),
        "ingest_over_raw": _median([r["new_over_raw"] for r in rounds]),
        "goal_ingest_over_raw": 0.7,
        "read_decode_s": _median([r["read_decode_s"] for r in rounds]),
        "ingest_over_read_decode": _median([r["read_decode_s"] / r["new_s"] for r in rounds]),
        "cpu_s_median": cpu,
        # If every CPU second counted equally (2 cores, endpoint on the same machine), the best ratio ingest
        # could reach: the anchor's CPU seconds (endpoint + workers + driver) over ingest's.
        "cpu_bound_ratio": round(min(sum(cpu["raw_seq"].values()), sum(cpu["raw_conc"].values()))
                                 / sum(cpu["new"].values()), 3),
        "cube_objects": n_objects, "cube_MB_written": round(written / 1e6, 2),
        "peak_worker_rss_MB": rounds[0]["new_peak_rss_MB"],
        "peak_worker_rss_increase_MB": {k: max(r["new_rss_increase_MB"][k] for r in rounds)
                                        for k in rounds[0]["new_rss_increase_MB"]},
        "one_pair_shard_block_MB": round(min(shard_rows, ny) * nx * (4 + 1) / 1e6, 2),
        "frame_stack_MB": round(len(products.pairs) * ny * nx * 4 * 2 / 1e6, 1),
    }
    # CPU per pair-megapixel (one pair's rasters over one million pixels) and the projection to one real frame
    # (REAL_FRAME_PAIR_MPX): the marginal cost, since at this size the per-run fixed costs are included.
    pair_mpx = len(products.pairs) * ny * nx / 1e6
    out["pair_Mpx"] = round(pair_mpx, 3)
    out["rasters_per_pair"] = round(len(urls) / len(products.pairs), 2)
    out["cpu_s_per_pair_Mpx"] = {step: {k: round(v / pair_mpx, 4) for k, v in cpu[step].items()} for step in steps}
    out["real_frame_core_h"] = {
        step: {"workers_driver": round((cpu[step]["workers"] + cpu[step]["driver"]) / pair_mpx
                                       * REAL_FRAME_PAIR_MPX / 3600, 3),
               "endpoint": round(cpu[step]["endpoint"] / pair_mpx * REAL_FRAME_PAIR_MPX / 3600, 3)}
        for step in steps}
    if old is not None:
        out.update({
            "baseline_rev": args.baseline_rev,
            "old_ingest_s": _median([r["old_s"] for r in rounds]),
            "old_ingest_MBps": round(mb / statistics.median([r["old_s"] for r in rounds]), 2),
            "old_ingest_over_raw": _median([r["old_over_raw"] for r in rounds]),
            "old_cube_objects": n_objects_old, "old_cube_MB_written": round(written_old / 1e6, 2),
        })
    if file_ref:
        out["file"] = file_ref
    return out


def _file_reference(client: object, frame_dir: Path, tmp: Path, chunk: int, ingest_frame: object) -> dict:
    """The same frame from local disk into a local cube (file:// both sides): no object store in the way."""
    src = tmp / "licsar" / "106" / FRAME
    shutil.copytree(frame_dir, src)
    from insarcloud.io.licsar import discover_frame

    products = discover_frame(f"file://{tmp / 'licsar'}", FRAME)
    paths = [r.url.removeprefix("file://") for refs in products.pairs.values() for r in refs.values()]
    nbytes = sum(r.size for refs in products.pairs.values() for r in refs.values())
    t0 = time.perf_counter()
    assert sum(client.gather(client.map(_read_files, [paths[i::4] for i in range(4)], pure=False))) == nbytes
    raw_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rep = ingest_frame(f"file://{tmp / 'licsar'}", FRAME, f"file://{tmp / 'cube.zarr'}", chunk=chunk, client=client)
    ingest_s = time.perf_counter() - t0
    assert len(rep.completed) == len(products.pairs), rep.failed
    mb = nbytes / 1e6
    return {"raw_read_s": round(raw_s, 3), "raw_read_MBps": round(mb / raw_s, 1), "ingest_s": round(ingest_s, 3),
            "ingest_MBps": round(mb / ingest_s, 2), "phases_s": rep.timings}


if __name__ == "__main__":
    main()
