"""CLI sub-commands of QC part 2: ``quality`` (ConvNeXt-InSAR maps by Ray actors), ``qc-train`` (training
and evaluation) and ``qc-eval`` (evaluate a checkpoint on a tile dataset)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from insarcloud.cliargs import (
    add_model_options,
    int_range,
    nonnegative_int,
    params_from_args,
    positive_float,
    positive_int,
)
from insarcloud.config import QualityParams
from insarcloud.errors import InsarcloudError

log = logging.getLogger(__name__)

#: QualityParams field -> CLI flag (and the namespace name where it differs)
QUALITY_FLAGS = {"num_actors": ("--actors", "actors"), "checkpoint": "--checkpoint", "tile": "--tile",
                 "overlap": "--overlap", "threads": "--threads", "batch_size": "--batch-size"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser("quality", help="pixel-wise quality maps (ConvNeXt-InSAR) of every pair: writes the "
                       "cube's quality group with a pool of Ray actors")
    q.add_argument("cube_url", help="frame cube, e.g. s3://bucket/cubes/106A_09048_000909.zarr")
    q.add_argument("--ray-address", dest="ray_address", default=None,
                   help="Ray address (ray://head:10001, auto); default $INSARCLOUD_RAY_ADDRESS or a local Ray")
    add_model_options(q, QualityParams, QUALITY_FLAGS, bounds_at_parse=True)  # the area config's params.quality
    q.add_argument("--bf16", choices=["auto", "on", "off"], default="auto",
                   help="bfloat16 autocast (auto: GPU, or a CPU with AMX/AVX512-BF16)")
    q.set_defaults(func=run_quality)

    t = sub.add_parser("qc-train", help="train ConvNeXt-InSAR on a QC tile dataset; checkpoints to --out")
    t.add_argument("dataset_url", help="tile dataset (insarcloud qc-dataset), e.g. s3://bucket/datasets/t.zarr")
    t.add_argument("--out", required=True, help="checkpoint URL, e.g. s3://bucket/models/quality.pt")
    t.add_argument("--encoder", choices=["atto", "nano", "tiny"], default="atto")
    t.add_argument("--stages", type=int_range(2, 4), default=3, help="ConvNeXt stages used, 2-4 (default 3)")
    t.add_argument("--stem", choices=["phase", "plain"], default="phase")
    t.add_argument("--channels", default="cos_phase,sin_phase,coh,unw_grad,closure",
                   help="comma-separated input channels (must be in the dataset)")
    t.add_argument("--epochs", type=positive_int, default=4)
    t.add_argument("--batch-size", dest="batch_size", type=positive_int, default=8)
    t.add_argument("--crop", type=nonnegative_int, default=0, help="random training crop side (0: whole tiles)")
    t.add_argument("--lr", type=positive_float, default=2e-3)
    t.add_argument("--loss", choices=["bce", "bce_dice", "focal_dice"], default="bce_dice")
    t.add_argument("--target", choices=["auto", "truth", "label"], default="auto")
    t.add_argument("--max-tiles", dest="max_tiles", type=positive_int, default=4000, help="tiles per split in memory")
    t.add_argument("--threads", type=positive_int, default=2)
    t.add_argument("--seed", type=nonnegative_int, default=0)
    t.add_argument("--no-resume", dest="resume", action="store_false", help="start over even if --out exists")
    t.add_argument("--export", default=None, help="also write an inference-only float16 copy here")
    t.add_argument("--json", action="store_true", help="print history and evaluation as JSON")
    t.set_defaults(func=run_train)

    e = sub.add_parser("qc-eval", help="evaluate a checkpoint on a tile dataset (model vs rules vs coherence)")
    e.add_argument("dataset_url")
    e.add_argument("--checkpoint", default=None, help="checkpoint URL/path (default: the shipped one)")
    e.add_argument("--split", default="test", choices=["train", "val", "test"])
    e.add_argument("--max-tiles", dest="max_tiles", type=positive_int, default=4000)
    e.set_defaults(func=run_eval)


def _print_eval(ev: dict) -> None:
    for name, m in ev.items():
        if name.startswith("_"):
            continue
        print(f"  {name:24s} AUC {m['auc']:.4f}  F1 {m['f1']:.4f}  best-F1 {m['f1_best']:.4f}")


def run_quality(args: argparse.Namespace) -> int:
    from insarcloud.engines import ray_address
    from insarcloud.qc.serve import DEFAULT_CHECKPOINT, ServeParams
    from insarcloud.qc.serve import run_quality as _run

    try:
        q = params_from_args(QualityParams, args, QUALITY_FLAGS)
        params = ServeParams(checkpoint=q.checkpoint or str(DEFAULT_CHECKPOINT), tile=q.tile,
                             overlap=q.overlap, threads=q.threads, batch_size=q.batch_size,
                             bf16={"auto": None, "on": True, "off": False}[args.bf16])
        r = _run(args.cube_url, params, ray_address=ray_address(args.ray_address), n_actors=q.num_actors)
    except (InsarcloudError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"quality -> {args.cube_url} group {r.group!r}: {r.chunks} chunks ({r.skipped} already done, "
          f"{r.retried} retried) on {r.device} in {r.seconds:.1f}s")
    print(f"open with: xarray.open_zarr({args.cube_url!r}, group={r.group!r})")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from insarcloud.qc.model import ModelConfig
    from insarcloud.qc.train import TrainConfig, export_checkpoint, read_checkpoint, save_checkpoint, train

    try:
        mcfg = ModelConfig(encoder=args.encoder, num_stages=args.stages, stem=args.stem,
                           channels=tuple(c.strip() for c in args.channels.split(",") if c.strip()))
        cfg = TrainConfig(model=mcfg, epochs=args.epochs, batch_size=args.batch_size, crop=args.crop or None,
                          lr=args.lr, loss=args.loss, target=args.target, max_tiles=args.max_tiles,
                          threads=args.threads, seed=args.seed)
        r = train(args.dataset_url, args.out, cfg, resume=args.resume, progress=sys.stderr.isatty())
        if args.export:
            save_checkpoint(args.export, export_checkpoint(read_checkpoint(args.out)))
    except (InsarcloudError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"history": r.history, "evaluation": r.evaluation}, indent=1, default=float))
    else:
        for h in r.history:
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in h.items()))
        if r.evaluation:
            print(f"evaluation on {r.evaluation['_split']['name']} frames (pixels with truth):")
            _print_eval(r.evaluation)
    print(f"checkpoint: {args.out}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    import numpy as np

    from insarcloud.qc.dataset import open_dataset
    from insarcloud.qc.model import predict_quality
    from insarcloud.qc.serve import DEFAULT_CHECKPOINT
    from insarcloud.qc.train import compare_predictors, load_model, load_split

    try:
        model = load_model(args.checkpoint or str(DEFAULT_CHECKPOINT))
        arr = load_split(open_dataset(args.dataset_url), args.split, model.config.channels, "auto", args.max_tiles,
                         np.random.default_rng(0))
        if arr is None:
            raise ValueError(f"no {args.split!r} tile in {args.dataset_url}")
        ev = compare_predictors(predict_quality(model, arr.inputs).quality, arr)
    except (InsarcloudError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.split} split: {arr.inputs.shape[0]} tiles")
    _print_eval({k: m._asdict() for k, m in ev.items()})
    return 0
