"""CLI sub-commands of the io stage: ``ingest`` and ``info``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from insarcloud.cliargs import add_model_options
from insarcloud.config import IngestParams

log = logging.getLogger(__name__)

#: IngestParams field -> (CLI flag, namespace dest)
FLAGS = {"chunk_yx": ("--chunk", "chunk")}

INGEST_EPILOG = """exit status:
  0  every product present was ingested (or already was); missing products are reported, not failures
  2  usage or configuration error, nothing written: a bad option, a frame not found, or a --cube URL that
     holds something else than this frame's cube (refused, nothing deleted)
  3  some products present could not be ingested (each is printed with its file and reason); the others
     landed, and a re-run retries the failed ones
  4  the object store stayed unreachable through the retry budget; what landed is kept, re-run to complete
"""


def _int_in(name: str, lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: an integer within lo..hi, the error naming the option."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, not {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{name} must be within {lo}..{hi}, not {value}")
        return value
    parse.__name__ = name
    return parse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="stream a LiCSAR frame from any fsspec URL into its Zarr frame cube",
                       epilog=INGEST_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source_url", help="LiCSAR tree root (s3://, file://, https://) or the frame directory")
    p.add_argument("--frame", required=True, help="LiCSAR frame id, e.g. 106A_09048_000909")
    p.add_argument("--cube", required=True, help="cube URL, e.g. s3://bucket/cubes/106A_09048_000909.zarr")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address (default: $INSARCLOUD_DASK_SCHEDULER "
                   "or a LocalCluster)")
    # the area config's params.ingest.chunk_yx: one definition of its bounds and default (insarcloud.config)
    add_model_options(p, IngestParams, FLAGS, bounds_at_parse=True)
    p.add_argument("--shard-chunks", type=_int_in("--shard-chunks", 0, 64), default=4,
                   help="chunks per shard side, 1..64; 0 = one object per chunk (default 4)")
    p.add_argument("--product-threads", type=_int_in("--product-threads", 1, 16), default=1,
                   help="threads per pair reading its products concurrently, 1..16 (default 1)")
    p.add_argument("--wait-lease", type=float, default=None, metavar="SECONDS",
                   help="when another run is writing this cube, wait up to SECONDS for it (then skip what it "
                   "wrote) instead of refusing (default $INSARCLOUD_LEASE_WAIT_S or 0)")
    p.set_defaults(func=run_ingest)

    q = sub.add_parser("info", help="summarise a frame cube")
    q.add_argument("cube_url")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=run_info)


def run_ingest(args: argparse.Namespace) -> int:
    """``insarcloud ingest``; exit status in :data:`INGEST_EPILOG`."""
    from insarcloud.engines import dask_client
    from insarcloud.errors import MissingProductError, ProductError, StorageUnavailableError
    from insarcloud.io.cube_target import check_target
    from insarcloud.io.ingest import EXIT_FAILED, EXIT_STORAGE, IngestReport, ingest_frame
    from insarcloud.io.licsar import validate_frame_id
    from insarcloud.io.storage import storage_options_for

    # Before any cluster starts: the frame id, and what the cube URL holds (refused with exit 2).
    validate_frame_id(args.frame)
    check_target(args.cube, args.frame, storage_options_for(args.cube) if "://" in args.cube else None)
    shard = args.shard_chunks or None
    report: IngestReport | None = None
    try:
        with dask_client(args.scheduler) as client:
            report = ingest_frame(args.source_url, args.frame, args.cube, chunk=args.chunk, client=client,
                                  shard_chunks=shard, product_threads=args.product_threads,
                                  lease_wait=args.wait_lease)
            if report.completed or report.skipped:  # LiCSAR's per-epoch GACOS delays, when published
                from insarcloud.io.gacos import ingest_gacos

                ingest_gacos(args.source_url, args.frame, args.cube)
    except StorageUnavailableError as exc:
        report = getattr(exc, "report", None)
        if report is not None:
            _print_report(args, report)
        print(f"insarcloud ingest: error: {exc}", file=sys.stderr)
        return EXIT_STORAGE
    except MissingProductError:
        raise  # the frame or its interferograms are not there: a usage error (2)
    except ProductError as exc:  # every product of a new cube failed: the data's fault, not the command's
        print(f"insarcloud ingest: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # the cube is written: a cluster that fails to shut down is only a warning
        if report is None:
            raise
        log.warning("ingest finished, but the Dask cluster's teardown failed: %s", exc)
    _print_report(args, report)
    return report.exit_code


def _print_report(args: argparse.Namespace, report: Any) -> None:
    print(f"{args.frame}: {len(report.completed)} pairs written ({len(report.replaced)} replacing a changed "
          f"source), {len(report.skipped)} already in the cube, {len(report.failed)} failed, "
          f"{len(report.missing)} products missing")
    for key, msg in report.failed.items():
        print(f"  FAILED {key}: {msg}", file=sys.stderr)
    print(f"cube: {args.cube}\nopen it: xr.open_zarr({args.cube!r}, storage_options=...)")


def cube_info(url: str) -> dict[str, Any]:
    """A JSON-able summary of a cube: shape, pairs, dates, groups, missing products and errors."""
    import numpy as np

    from insarcloud.io.cube import list_groups, open_cube, read_marker

    full = open_cube(url, complete_only=False)
    ds = open_cube(url)
    ingest = full.attrs.get("ingest", {})
    groups = {}
    for g in [g for g in list_groups(url) if g != "ingest"]:
        marker = read_marker(url, g) or {}
        groups[g] = {"stage": marker.get("stage"), "complete": marker.get("complete", False),
                     "params": marker.get("params")}
    return {
        "url": url,
        "frame": ds.attrs.get("frame"),
        "shape": {k: int(v) for k, v in ds.sizes.items()},
        "pairs": [str(p) for p in ds["pair"].values],
        "incomplete_pairs": [str(p) for p, ok in zip(full["pair"].values, full["ingested"].values, strict=True)
                             if not ok],
        "dates": [str(np.datetime_as_string(d, unit="D")) for d in ds["date"].values],
        "variables": sorted(ds.data_vars),
        "groups": groups,
        "missing_products": ingest.get("missing_products", []),
        "errors": ingest.get("errors", {}),
        "runs": _run_summaries(url),
    }


def _run_summaries(url: str, last: int = 20) -> list[dict[str, Any]]:
    """The last ``last`` ingest runs, each as when, id and counts (the full records: ``read_runs``)."""
    from insarcloud.errors import CubeError
    from insarcloud.io.ingest_log import read_runs

    try:
        runs = read_runs(url, None, last=last)
    except (CubeError, KeyError):
        return []
    keys = ("added", "completed", "replaced", "skipped", "failed", "missing")
    return [{"at": r.get("at"), "run_id": r.get("run_id", "")} | {k: len(r.get(k) or []) for k in keys}
            for r in runs]


def run_info(args: argparse.Namespace) -> int:
    info = cube_info(args.cube_url)
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"cube {info['url']} (frame {info['frame']})")
    print("  shape: " + ", ".join(f"{k}={v}" for k, v in info["shape"].items()))
    print(f"  pairs: {len(info['pairs'])} complete, {len(info['incomplete_pairs'])} incomplete")
    if info["dates"]:
        print(f"  dates: {len(info['dates'])} from {info['dates'][0]} to {info['dates'][-1]}")
    print(f"  variables: {', '.join(info['variables'])}")
    for g, m in info["groups"].items():
        print(f"  group {g}: stage={m['stage']} complete={m['complete']}")
    if info["missing_products"]:
        print(f"  missing products ({len(info['missing_products'])}):")
        for m in info["missing_products"]:
            print(f"    {m}")
    for k, v in info["errors"].items():
        print(f"  error {k}: {v}")
    if info["runs"]:
        print(f"  ingest runs (last {len(info['runs'])}):")
        for r in info["runs"]:
            print(f"    {r['at']} {r['run_id']}: {r['completed']} completed ({r['replaced']} replaced), "
                  f"{r['skipped']} skipped, {r['failed']} failed, {r['missing']} missing")
    return 0
