"""Rebuild the shipped ConvNeXt-InSAR checkpoint (a script, not part of the library API).

Pipeline: ``insarcloud.simulate.simulate_frame`` frames (distinct scenes and seeds) -> contract frame
cubes (``insarcloud.io.make_frame_dataset`` + ``write_new_cube``; the GeoTIFF round trip of ingest is
skipped to fit the CPU budget) -> truth stores (``insarcloud.qc.dataset.write_truth``) -> the QC part 1
dataset builder (``build_dataset``: runs ``insarcloud qc`` for rule labels and loop closure) -> training
(``insarcloud.qc.train.train``) -> an inference-only float16 export next to this file.

Usage (the exact command is in README.md here)::

    python insarcloud/qc/checkpoints/make_checkpoint.py --work /tmp/qc_ckpt --out DIR [--ablation]

Stages never import each other; this script (like ``insarcloud.pipelines``) is where simulate and qc meet.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("make_checkpoint")

FRAMES = [  # (frame id, split): tracks differ so scenes, atmospheres and networks all differ
    ("012A_05850_131313", "train"), ("041D_05851_131313", "train"), ("085A_05852_131313", "train"),
    ("114D_05853_131313", "train"), ("129A_05854_131313", "train"), ("158D_05855_131313", "val"),
    ("172A_05856_131313", "test"), ("048D_05857_131313", "test"),
]


def _patch_triplets_sizeof() -> None:
    """Work around dask's sizeof on ``qc.network.Triplets`` (a NamedTuple whose ``__len__`` is the number
    of triplets, so ``random.sample`` over its fields raises IndexError once there are > 10 triplets)."""
    from dask.sizeof import sizeof

    from insarcloud.qc.network import Triplets

    @sizeof.register(Triplets)
    def _sizeof_triplets(t: Triplets) -> int:
        return int(sum(getattr(a, "nbytes", 64) for a in tuple.__iter__(t)))


def build(work: str, shape: tuple[int, int], n_epochs: int, tile: int, target: str = "bad") -> str:
    from insarcloud import io
    from insarcloud.qc.dataset import build_dataset, write_truth
    from insarcloud.simulate.frame import simulate_frame

    cubes, truths, splits = [], [], {}
    for i, (frame, split) in enumerate(FRAMES):
        t0 = time.perf_counter()
        sf = simulate_frame(frame_id=frame, shape=shape, n_epochs=n_epochs, seed=100 + i, scene_seed=i)
        ds = io.make_frame_dataset(frame=frame, pairs=sf.pairs, lat=sf.grid.lat, lon=sf.grid.lon,
                                   phase=sf.phase, coh=sf.coherence_est, unw=sf.unw)
        cube = f"{work}/cubes/{frame}.zarr"
        io.write_new_cube(ds, cube)
        truth = f"{work}/truth/{frame}.zarr"
        # target "unw_error": the truth's coherence is written as 1, so the dataset's truth (unw_error |
        # coherence < 0.2) is the unwrapping errors alone: what inversion weights need (notes/invert.md)
        coh_truth = np.ones_like(sf.coherence) if target == "unw_error" else sf.coherence
        write_truth(truth, sf.pairs, ds["y"].values, ds["x"].values, sf.unw_cycles != 0, coh_truth)
        cubes.append(cube)
        truths.append(truth)
        splits[frame] = split
        log.info("%s (%s): %d pairs, unw_error %.3f, coh<0.2 %.3f, %.1fs", frame, split, len(sf.pairs),
                 float(np.mean(sf.unw_cycles != 0)), float(np.mean(sf.coherence < 0.2)), time.perf_counter() - t0)
    out = f"{work}/datasets/qc_tiles.zarr"
    _patch_triplets_sizeof()
    summary = build_dataset(cubes, out, truths, tile=tile, splits=splits)
    log.info("dataset %s: %s", out, json.dumps(summary))
    return out


def main(argv: list[str] | None = None) -> int:
    from insarcloud.qc.model import ModelConfig
    from insarcloud.qc.train import TrainConfig, export_checkpoint, read_checkpoint, save_checkpoint, train

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/qc_ckpt", help="working URL for cubes and dataset")
    ap.add_argument("--out", default=str(Path(__file__).parent), help="directory of the exported checkpoint")
    ap.add_argument("--shape", default="192x192")
    ap.add_argument("--epochs-sim", type=int, default=10, help="simulated acquisitions per frame")
    ap.add_argument("--tile", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--max-tiles", type=int, default=800)
    ap.add_argument("--skip-build", action="store_true", help="reuse the dataset under --work")
    ap.add_argument("--ablation", action="store_true", help="also train the plain baseline and loss variants")
    ap.add_argument("--json", default=None, help="write the evaluation table here")
    ap.add_argument("--target", choices=("bad", "unw_error"), default="bad",
                    help="bad: unwrapping error or true coherence < 0.2 (the default quality map); unw_error: "
                         "unwrapping errors only (convnext_insar_atto_unw.pt, for inversion weights)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    shape = tuple(int(v) for v in a.shape.lower().split("x"))
    ds_url = (f"{a.work}/datasets/qc_tiles.zarr" if a.skip_build
              else build(a.work, shape, a.epochs_sim, a.tile, a.target))
    chans = ("cos_phase", "sin_phase", "coh", "unw_grad", "closure")
    variants = {"improved": ModelConfig(channels=chans, num_stages=3)}
    if a.ablation:
        variants["plain_stem"] = ModelConfig(channels=chans, num_stages=3, stem="plain", full_res_skip=False)
        variants["no_unw_channels"] = ModelConfig(num_stages=3)
    results = {}
    for name, mcfg in variants.items():
        losses = ["bce_dice", "bce"] if (a.ablation and name == "improved") else ["bce_dice"]
        for loss in losses:
            cfg = TrainConfig(model=mcfg, epochs=a.epochs, crop=None, batch_size=8, loss=loss,
                              max_tiles=a.max_tiles, threads=2)
            key = f"{name}/{loss}"
            ck = f"{a.work}/models/{name}_{loss}.pt"
            t0 = time.perf_counter()
            r = train(ds_url, ck, cfg, resume=False, progress=False)
            results[key] = {"evaluation": r.evaluation, "history": r.history, "seconds": time.perf_counter() - t0}
            log.info("%s: %s", key, {k: v for k, v in r.evaluation.items()})
            if key == "improved/bce_dice":
                state = read_checkpoint(ck)
                dst = Path(a.out) / ("convnext_insar_atto_unw.pt" if a.target == "unw_error"
                                     else "convnext_insar_atto.pt")
                save_checkpoint(str(dst), export_checkpoint(state))
                log.info("exported %s (%.2f MB)", dst, dst.stat().st_size / 1e6)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
