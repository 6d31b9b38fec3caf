"""CLI: ``insarcloud simulate frame --out URL --truth URL [options]``."""

from __future__ import annotations

import argparse
import json
import logging
import time

from insarcloud.cliargs import float_range, int_range, nonnegative_float, nonnegative_int, positive_float, probability

__all__ = ["add_parser", "run_simulate_frame"]

log = logging.getLogger(__name__)


def _size(text: str) -> tuple[int, int]:
    try:
        rows, cols = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--size must be ROWSxCOLS (e.g. 256x256), got {text!r}") from exc
    if rows < 16 or cols < 16:
        raise argparse.ArgumentTypeError(f"--size must be at least 16x16, got {text!r}")
    return rows, cols


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``simulate frame``."""
    p = subparsers.add_parser("simulate", help="simulate LiCSAR products with ground truth")
    sub = p.add_subparsers(dest="simulate_command", required=True)
    f = sub.add_parser(
        "frame", help="simulate one frame: LiCSAR tree to --out, truth Zarr to --truth",
        description="Simulate a LiCSAR frame over the Tibetan Plateau (fractal DEM, fault, subsidence bowl, "
                    "permafrost, atmosphere, decorrelation, unwrapping errors) and write its product tree "
                    "<out>/<track>/<frame>/... and a ground-truth Zarr.",
    )
    f.add_argument("--out", required=True, help="root URL of the LiCSAR tree (s3://, file://, path, memory://)")
    f.add_argument("--truth", required=True, help="URL of the truth Zarr store")
    f.add_argument("--frame", default=None, help="LiCSAR frame id NNN[AD]_NNNNN_NNNNNN (default 012A_05850_131313)")
    f.add_argument("--size", type=_size, default=(256, 256), help="ROWSxCOLS of 0.001 deg pixels (256x256)")
    f.add_argument("--epochs", type=int_range(2, 100000), default=30, help="number of acquired epochs (30)")
    f.add_argument("--seed", type=nonnegative_int, default=0, help="frame seed: noise, network, unwrapping errors (0)")
    f.add_argument("--scene-seed", type=nonnegative_int, default=0,
                   help="scene seed: ground truth shared by frames (0)")
    f.add_argument("--lon0", type=float_range(-180.0, 180.0), default=None,
                   help="frame centre longitude (default scene centre)")
    f.add_argument("--lat0", type=float_range(-90.0, 90.0), default=None,
                   help="frame centre latitude (default scene centre)")
    f.add_argument("--scene-lon", type=float_range(-180.0, 180.0), default=90.0, help="scene centre longitude (90.0)")
    f.add_argument("--scene-lat", type=float_range(-90.0, 90.0), default=31.5, help="scene centre latitude (31.5)")
    f.add_argument("--start-date", default="2019-01-05", help="first acquisition YYYY-MM-DD")
    f.add_argument("--looks", type=positive_float, default=12.0, help="equivalent number of looks of the phase noise")
    f.add_argument("--footprint", choices=["rectangle", "swath"], default="rectangle",
                   help="valid-data area: whole box, or a swath parallelogram along the track")
    f.add_argument("--unw-error-fraction", type=probability, default=0.2,
                   help="share of pairs with unwrapping-error patches (0.2)")
    f.add_argument("--missing-unw-fraction", type=probability, default=0.0,
                   help="share of pairs published without unw.tif (0)")
    f.add_argument("--noise-model", choices=["stack", "pairwise"], default="stack",
                   help="phase noise from one SLC stack (pairs share epochs' noise) or independent per pair")
    f.add_argument("--phase-filter", type=nonnegative_float, default=0.0, metavar="SIGMA_PX",
                   help="Gaussian smoothing (px) of the noisy interferogram, like LiCSAR's filter (0 = none)")
    f.add_argument("--dem-error-std", type=nonnegative_float, default=0.0,
                   help="std (m) of the DEM error whose bperp-proportional phase enters unw (0 = none)")
    f.add_argument("--no-atmosphere", action="store_true", help="switch the troposphere off")
    f.add_argument("--no-noise", action="store_true", help="switch the phase noise off")
    f.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra fsspec storage option for both URLs (repeatable)")
    f.set_defaults(func=run_simulate_frame)


def run_simulate_frame(args: argparse.Namespace) -> int:
    """Simulate, write the tree and the truth, print a JSON summary; 0 on success."""
    from insarcloud.simulate import DEFAULT_FRAME_ID, simulate_frame, write_licsar_frame, write_truth

    so: dict[str, str] = {}
    for kv in args.storage_option:
        if "=" not in kv:
            raise SystemExit(f"--storage-option needs KEY=VALUE, got {kv!r}")
        k, v = kv.split("=", 1)
        so[k] = v
    t0 = time.perf_counter()
    atm = 0.0 if args.no_atmosphere else 1.0
    sim = simulate_frame(
        frame_id=args.frame or DEFAULT_FRAME_ID, shape=args.size, n_epochs=args.epochs, seed=args.seed,
        scene_seed=args.scene_seed, lon0=args.lon0, lat0=args.lat0, start_date=args.start_date,
        scene_lon=args.scene_lon, scene_lat=args.scene_lat, looks=args.looks, footprint=args.footprint,
        unw_error_pair_fraction=args.unw_error_fraction, turbulence_scale=atm, stratified_scale=atm,
        noise=not args.no_noise, missing_unw_fraction=args.missing_unw_fraction,
        dem_error_std_m=args.dem_error_std, noise_model=args.noise_model,
        phase_filter_sigma_px=args.phase_filter,
    )
    t1 = time.perf_counter()
    url = write_licsar_frame(sim, args.out, so or None)
    write_truth(sim, args.truth, so or None)
    t2 = time.perf_counter()
    print(json.dumps({
        "frame": sim.frame_id, "frame_url": url, "truth_url": args.truth, "shape": list(sim.shape),
        "epochs": len(sim.dates), "pairs": len(sim.pairs), "first_date": str(sim.dates[0]),
        "last_date": str(sim.dates[-1]), "pairs_with_unw_errors": int(sim.unw_error.any(axis=(1, 2)).sum()),
        "simulate_s": round(t1 - t0, 2), "write_s": round(t2 - t1, 2),
    }, indent=2))
    return 0
