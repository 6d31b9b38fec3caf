"""CLI sub-commands of QC part 1: ``qc`` (the cube's qc group), ``qc-dataset`` (labelled tiles) and
``review`` (the manual verification page)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from insarcloud.cliargs import int_range, odd_int, params_from_args, port, positive_float, positive_int
from insarcloud.errors import InsarcloudError

log = logging.getLogger(__name__)


def _params(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from insarcloud.qc.config import QCParams

    if getattr(args, "config", None):
        p = QCParams.from_yaml(Path(args.config).read_text())
    else:
        p = QCParams()
    # the options given override the YAML's values, validated again (model_copy(update=) would not validate)
    return params_from_args(QCParams, args, {"window": "--window", "loop_thre": "--loop-thre", "block": "--block"},
                            base=p.model_dump())


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("qc", help="loop closure, coverage/coherence, phase-std statistics and rule labels: "
                       "writes the cube's qc group")
    p.add_argument("cube_url", help="frame cube, e.g. s3://bucket/cubes/106A_09048_000909.zarr")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address (default: "
                   "$INSARCLOUD_DASK_SCHEDULER or a LocalCluster)")
    p.add_argument("--config", default=None, help="YAML of QCParams (insarcloud.qc.config)")
    p.add_argument("--window", type=odd_int(3, 31), default=None, help="statistics window, odd pixels (default 5)")
    p.add_argument("--loop-thre", dest="loop_thre", type=positive_float, default=None,
                   help="loop RMS threshold, rad (LiCSBAS default 1.5)")
    p.add_argument("--block", type=int_range(16, 4096), default=None, help="spatial block of the tasks, pixels")
    p.add_argument("--json", action="store_true", help="print the per-ifg table as JSON")
    p.set_defaults(func=run_qc)

    d = sub.add_parser("qc-dataset", help="cut frame cubes into the labelled tile dataset (Zarr)")
    d.add_argument("out_url", help="dataset URL, e.g. s3://bucket/datasets/qc_tiles.zarr")
    d.add_argument("cube_urls", nargs="+", help="frame cubes")
    d.add_argument("--truth", action="append", default=None,
                   help="truth store per cube, in order ('-' for none); simulated frames only")
    d.add_argument("--tile", type=positive_int, default=256, help="tile side, pixels (default 256)")
    d.add_argument("--split", action="append", default=[], metavar="FRAME=SPLIT",
                   help="force a frame's split (train/val/test); others by hash")
    d.add_argument("--scheduler", default=None, help="Dask scheduler address")
    d.set_defaults(func=run_dataset)

    r = sub.add_parser("review", help="serve the manual verification page of a tile dataset (127.0.0.1)")
    r.add_argument("dataset_url")
    r.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    r.add_argument("--port", type=port, default=0, help="port (default 0: a free one, printed)")
    r.add_argument("--reviewer", default=None, help="name stored with each verdict (default: login name)")
    r.set_defaults(func=run_review)


def run_qc(args: argparse.Namespace) -> int:
    from insarcloud import io
    from insarcloud.engines import dask_client
    from insarcloud.qc.dask_ops import run_qc as _run

    try:
        params = _params(args)
        with dask_client(args.scheduler):
            group = _run(args.cube_url, params)
        q = io.open_cube(args.cube_url, group=group)
        table = q[["coverage", "coh_avg", "step11_bad", "step12_bad", "no_loop", "ifg_label", "frac_good",
                   "frac_bad", "frac_uncertain"]].to_dataframe()
        keep = [c for c in table.columns if c in ("coverage", "coh_avg", "step11_bad", "step12_bad", "no_loop",
                                                  "ifg_label", "frac_good", "frac_bad", "frac_uncertain")]
        table = table[keep]
    except InsarcloudError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"group": group, "ifgs": json.loads(table.to_json(orient="index"))}, indent=1))
    else:
        print(f"qc group: {args.cube_url}/{group} ({int(q.attrs.get('n_triplets', 0))} triplets, "
              f"unw: {'yes' if q.attrs.get('has_unw') else 'no (wrapped closure only)'})")
        print(table.to_string(float_format=lambda v: f"{v:.3f}"))
        print("ifg_label: 0 good, 1 bad, 2 uncertain, 255 no data")
    return 0


def run_dataset(args: argparse.Namespace) -> int:
    from insarcloud.engines import dask_client
    from insarcloud.qc.dataset import build_dataset

    truth = None
    if args.truth:
        truth = [None if t in ("-", "") else t for t in args.truth]
    splits = {}
    for item in args.split:
        if "=" not in item:
            print(f"error: --split {item!r} is not FRAME=SPLIT", file=sys.stderr)
            return 2
        k, v = item.split("=", 1)
        splits[k] = v
    try:
        with dask_client(args.scheduler):
            summary = build_dataset(args.cube_urls, args.out_url, truth, args.tile, splits=splits)
    except InsarcloudError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    print(f"review the uncertain tiles: insarcloud review {args.out_url}")
    return 0


def run_review(args: argparse.Namespace) -> int:
    from insarcloud.qc.review import serve

    try:
        return serve(args.dataset_url, args.host, args.port, reviewer=args.reviewer)
    except InsarcloudError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
