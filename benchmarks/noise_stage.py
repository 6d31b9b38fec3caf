"""Stage-level benchmark of the noise stage: CPU seconds per class and per pixel, split by phase, and the
projection to a real LiCSAR frame (issue 20: the CPU chain <= 1 core-hour per frame).

A ts group is simulated tile by tile (each tile = one class of the default ``tiles`` mode) with a known
white / AR(1) / flicker truth (cycling through the four candidate models), a Gaussian spatial covariance and
known velocities; ``noise_dataset`` then runs the whole stage on it under Dask's synchronous scheduler in
this process (one core, BLAS pinned to one thread: what a Dask worker thread does per class), so process
CPU time is the stage's core-seconds.

Phases (exclusive CPU time, they add up to the total):

* ``wtest`` : w-test grid of alpha (eq. 5) ;  ``alpha_profile`` : LS-VCE fits of the profile likelihood over
  ln(alpha) on the pixel subset ;  ``lsvce_fit`` : the whole-class LS-VCE fit of each candidate model ;
  ``alpha_refine`` : Fisher-scoring steps of alpha on the whole class (score + refits) ;
  ``nuisance_precision`` : the joint REML Fisher information of (sigma, ln alpha) ;
  ``spatial_cov`` : Sigma and its Gaussian covariance fit (``factor_sigma``, inside every fit above) ;
  ``scale_variance`` ;  ``class_other`` : screening, model choice, per-pixel GLS velocity and precision ;
  ``stage_other`` : Dask, rechunking, coordinates, output assembly.

Projection: the CPU per class is fitted as ``a * m^b`` over the measured epoch counts (one count: b = 2)
and multiplied by the classes of a real frame (7e6 px / pixels per tile) at 180 epochs.

Usage: ``python benchmarks/noise_stage.py --json OUT [--sizes 64x60,64x120] [--profile]``.
Timings under a loaded shared machine are not comparable to a quiet one: compare ratios from one machine.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # one core per class, as a Dask worker thread runs it

import argparse  # noqa: E402
import cProfile  # noqa: E402
import functools  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import pstats  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import xarray as xr  # noqa: E402

from insarcloud.noise import dask_ops, estimate, lsvce  # noqa: E402
from insarcloud.noise.classes import tile_side  # noqa: E402
from insarcloud.noise.cofactors import build_cofactors, design_matrix  # noqa: E402
from insarcloud.noise.spatial import lonlat_to_local_m  # noqa: E402
from insarcloud.noise.synth import regular_days, simulate_class  # noqa: E402

REAL_PIXELS = 7.0e6
REAL_EPOCHS = 180
ALPHA = 0.05
SCENARIOS = (  # effective residual variances (mm^2), as benchmarks/noise.py
    {"white": 4.0, "flicker": 2.0},
    {"white": 2.0, "ar1": 4.0},
    {"ar1": 2.0, "flicker": 4.0},
    {"white": 2.0, "ar1": 4.0, "flicker": 2.0},
)
PHASES = ("wtest", "alpha_profile", "lsvce_fit", "alpha_refine", "nuisance_precision", "spatial_cov",
          "scale_variance", "class_other", "stage_other")


def _raw(days: np.ndarray, eff: dict[str, float]) -> dict[str, float]:
    m = days.size
    A = design_matrix(days)
    P = np.eye(m) - A @ np.linalg.solve(A.T @ A, A.T)
    return {k: v * (m - A.shape[1]) / np.trace(build_cofactors(days, (k,), alpha=ALPHA).Q[0] @ P)
            for k, v in eff.items()}


def make_ts(px: int, m: int, class_size: int, seed: int) -> xr.Dataset:
    """A ts group of px x px pixels and m dates, every tile of the stage drawn from one scenario."""
    rng = np.random.default_rng(seed)
    days = regular_days(m)
    lat = 35.0 - 0.001 * np.arange(px)
    lon = 51.0 + 0.001 * np.arange(px)
    side = tile_side(class_size)
    disp = np.zeros((m, px, px), np.float32)
    vel = np.zeros((px, px), np.float32)
    k = 0
    for y0 in range(0, px, side):
        for x0 in range(0, px, side):
            la, lo = np.meshgrid(lat[y0:y0 + side], lon[x0:x0 + side], indexing="ij")
            xy = lonlat_to_local_m(lo.ravel(), la.ravel())
            sc = SCENARIOS[k % len(SCENARIOS)]
            s = simulate_class(rng, days, xy, _raw(days, sc), alpha=ALPHA, rho0=0.5, d_m=300.0)
            ny, nx = la.shape
            disp[:, y0:y0 + ny, x0:x0 + nx] = (s.Y - s.Y[:1]).reshape(m, ny, nx)  # SBAS: zero first epoch
            vel[y0:y0 + ny, x0:x0 + nx] = s.X[1].reshape(ny, nx)
            k += 1
    disp[:, 0, 0] = 0.0  # reference pixel
    dates = pd.Timestamp("2020-01-01") + pd.to_timedelta(days, unit="D")
    return xr.Dataset({"displacement": (("date", "y", "x"), disp, {"units": "mm"}),
                       "velocity": (("y", "x"), vel, {"units": "mm/yr"})},
                      coords={"date": dates.values, "y": lat, "x": lon})


class PhaseTimer:
    """Exclusive CPU time per phase: wraps the stage's functions in their modules' namespaces."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.iters: dict[str, int] = defaultdict(int)
        self.stack: list[tuple[str, float]] = []
        self.undo: list[tuple[object, str, object]] = []

    def _enter(self, label: str) -> None:
        now = time.process_time()
        if self.stack:
            top, t0 = self.stack[-1]
            self.cpu[top] += now - t0
        self.stack.append((label, now))

    def _exit(self) -> None:
        now = time.process_time()
        label, t0 = self.stack.pop()
        self.cpu[label] += now - t0
        if self.stack:
            self.stack[-1] = (self.stack[-1][0], now)

    def wrap(self, module: object, name: str, label: str, inherit: bool = False) -> None:
        fn = getattr(module, name, None)
        if fn is None:
            return

        @functools.wraps(fn)
        def inner(*a, **kw):
            lab = label
            if inherit and self.stack and self.stack[-1][0] not in ("class_other",):
                lab = self.stack[-1][0]  # an LS-VCE fit inside the alpha profile/refinement is that phase's
            self.calls[lab] += 1
            self._enter(lab)
            try:
                out = fn(*a, **kw)
            finally:
                self._exit()
            if name == "multivariate_lsvce":
                self.iters[lab] += int(out.n_iter)
            return out

        self.undo.append((module, name, fn))
        setattr(module, name, inner)

    def install(self) -> None:
        self.wrap(dask_ops, "estimate_class", "class_other")
        self.wrap(estimate, "wtest_alpha", "wtest")
        self.wrap(estimate, "_profile_max", "alpha_profile")
        self.wrap(estimate, "_refine_alpha", "alpha_refine")
        self.wrap(estimate, "_alpha_propagated", "nuisance_precision")
        self.wrap(estimate, "scale_variance", "scale_variance")
        self.wrap(estimate, "multivariate_lsvce", "lsvce_fit", inherit=True)
        self.wrap(lsvce, "factor_sigma", "spatial_cov")

    def remove(self) -> None:
        for module, name, fn in reversed(self.undo):
            setattr(module, name, fn)
        self.undo.clear()


def run_size(px: int, m: int, class_size: int, seed: int, profile: bool, save: str | None = None) -> tuple[dict, str]:
    ts = make_ts(px, m, class_size, seed)
    side = tile_side(class_size)
    n_classes = int(np.ceil(px / side) ** 2)
    timer = PhaseTimer()
    timer.install()
    prof = cProfile.Profile() if profile else None
    try:
        c0, w0 = time.process_time(), time.perf_counter()
        if prof:
            prof.enable()
        ds = dask_ops.noise_dataset(ts, class_size=class_size).compute(scheduler="synchronous")
        if prof:
            prof.disable()
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    finally:
        timer.remove()
    phases = {k: float(timer.cpu.get(k, 0.0)) for k in PHASES if k != "stage_other"}
    phases["stage_other"] = max(cpu - sum(phases.values()), 0.0)
    # accuracy on the known truth: velocity error over its own std (should be ~N(0, 1) with correct noise)
    truth = ts["velocity"].values
    z = (ds["velocity"].values - truth) / ds["velocity_std"].values
    z = z[np.isfinite(z)]
    models = ds["class_model"].values.ravel()
    prof_txt = ""
    if prof:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(20)
        prof_txt = s.getvalue()
    res = {
        "px": px, "epochs": m, "class_size": class_size, "tile_side": side, "classes": n_classes,
        "pixels": px * px, "cpu_s": cpu, "wall_s": wall, "cpu_per_class_s": cpu / n_classes,
        "cpu_per_pixel_us": 1e6 * cpu / (px * px), "phases_cpu_s": phases,
        "phases_share": {k: v / cpu for k, v in phases.items()},
        "lsvce_calls": dict(timer.calls), "lsvce_iterations": dict(timer.iters),
        "velocity_z_std": float(np.std(z)), "velocity_z_within_2": float(np.mean(np.abs(z) < 2)),
        "models_chosen": {str(int(k)): int(np.sum(models == k)) for k in np.unique(models)},
    }
    if save:
        # the stage's outputs, to compare two versions of the code on the same simulated cube
        np.savez_compressed(save, **{k: ds[k].values for k in ds.data_vars})
    return res, prof_txt


def project(runs: list[dict], class_size: int) -> dict:
    """Per-class CPU a * m^b fitted over the measured epoch counts, times the classes of a real frame."""
    side = tile_side(class_size)
    by_m: dict[int, list[float]] = defaultdict(list)
    for r in runs:
        by_m[r["epochs"]].append(r["cpu_s"] / r["pixels"] * side * side)  # CPU per full tile
    ms = np.array(sorted(by_m), dtype=np.float64)
    per = np.array([np.mean(by_m[int(k)]) for k in ms])
    if ms.size >= 2:
        b, loga = np.polyfit(np.log(ms), np.log(per), 1)
    else:
        b, loga = 2.0, float(np.log(per[0]) - 2.0 * np.log(ms[0]))
    per_class = float(np.exp(loga) * REAL_EPOCHS**b)
    n_cls = REAL_PIXELS / (side * side)
    return {"epoch_exponent": float(b), "cpu_per_class_s_at_180": per_class, "classes_per_frame": n_cls,
            "core_hours_per_frame": per_class * n_cls / 3600.0, "goal_core_hours": 0.3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", required=True)
    ap.add_argument("--sizes", default="64x60,64x120", help="comma list of PIXELSxEPOCHS (square frames)")
    ap.add_argument("--class-size", type=int, default=1000, help="pixels per class (the stage's default 1000)")
    ap.add_argument("--seed", type=int, default=20)
    ap.add_argument("--profile", action="store_true", help="cProfile the last size, print the top 20")
    ap.add_argument("--save", help="folder: write each size's output fields as PXxM.npz (to compare versions)")
    a = ap.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in a.sizes.split(",")]
    runs = []
    prof_txt = ""
    print(f"{'px':>5} {'dates':>5} {'cls':>4} {'CPU s':>8} {'s/class':>8} {'us/px':>8}  " +
          " ".join(f"{p[:10]:>10}" for p in PHASES), flush=True)
    for i, (px, m) in enumerate(sizes):
        save = str(Path(a.save) / f"{px}x{m}.npz") if a.save else None
        if save:
            Path(a.save).mkdir(parents=True, exist_ok=True)
        r, txt = run_size(px, m, a.class_size, a.seed, a.profile and i == len(sizes) - 1, save)
        prof_txt = txt or prof_txt
        runs.append(r)
        print(f"{px:>5} {m:>5} {r['classes']:>4} {r['cpu_s']:>8.1f} {r['cpu_per_class_s']:>8.2f} "
              f"{r['cpu_per_pixel_us']:>8.0f}  " + " ".join(f"{r['phases_cpu_s'][p]:>10.1f}" for p in PHASES),
              flush=True)
        print(f"      LS-VCE calls {r['lsvce_calls']}, iterations {r['lsvce_iterations']}; velocity z std "
              f"{r['velocity_z_std']:.2f}, |z|<2 {r['velocity_z_within_2']:.3f}", flush=True)
    proj = project(runs, a.class_size)
    print(f"projection: {proj['classes_per_frame']:.0f} classes x {proj['cpu_per_class_s_at_180']:.1f} CPU-s "
          f"(180 epochs, m^{proj['epoch_exponent']:.2f}) = {proj['core_hours_per_frame']:.2f} core-hours per "
          f"real frame (goal {proj['goal_core_hours']})", flush=True)
    if prof_txt:
        print(prof_txt)
    out = {"runs": runs, "projection": proj, "command": " ".join(sys.argv), "threads": 1,
           "note": "synchronous scheduler, BLAS 1 thread; process CPU time; shared loaded machine"}
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
