"""CLI sub-commands of the io stage: ``ingest`` and ``info``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="stream a LiCSAR frame from any fsspec URL into its Zarr frame cube")
    p.add_argument("source_url", help="LiCSAR tree root (s3://, file://, https://) or the frame directory")
    p.add_argument("--frame", required=True, help="LiCSAR frame id, e.g. 106A_09048_000909")
    p.add_argument("--cube", required=True, help="cube URL, e.g. s3://bucket/cubes/106A_09048_000909.zarr")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address (default: $INSARCLOUD_DASK_SCHEDULER "
                   "or a LocalCluster)")
    p.add_argument("--chunk", type=int, default=512, help="spatial chunk size in pixels (default 512)")
    p.add_argument("--wait-lease", type=float, default=None, metavar="SECONDS",
                   help="when another run is writing this cube, wait up to SECONDS for it (then skip what it "
                   "wrote) instead of refusing (default $INSARCLOUD_LEASE_WAIT_S or 0)")
    p.set_defaults(func=run_ingest)

    q = sub.add_parser("info", help="summarise a frame cube")
    q.add_argument("cube_url")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=run_info)


def run_ingest(args: argparse.Namespace) -> int:
    from insarcloud.engines import dask_client
    from insarcloud.io.ingest import ingest_frame

    with dask_client(args.scheduler) as client:
        report = ingest_frame(args.source_url, args.frame, args.cube, chunk=args.chunk, client=client,
                              lease_wait=args.wait_lease)
    print(f"{args.frame}: {len(report.completed)} pairs written, {len(report.skipped)} already in the cube, "
          f"{len(report.failed)} failed, {len(report.missing)} products missing")
    for key, msg in report.failed.items():
        print(f"  FAILED {key}: {msg}", file=sys.stderr)
    print(f"cube: {args.cube}\nopen it: xr.open_zarr({args.cube!r}, storage_options=...)")
    return 0 if report.completed or report.skipped else 1


def cube_info(url: str) -> dict[str, Any]:
    """A JSON-able summary of a cube: shape, pairs, dates, groups, missing products and errors."""
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
    }


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
    return 0
