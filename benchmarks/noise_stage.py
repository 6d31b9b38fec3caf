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

Noise model on a sample of classes (``--stride 2,3``; ``NoiseParams.model_stride``, docs/noise.md): every size
is also run with each stride on the SAME cube right after stride 1, and with ``--truth smooth`` (the default
with ``--stride``) the cube's noise truth is one model family (white + AR(1) + flicker) whose amplitudes vary
smoothly across the tiles (:func:`insarcloud.noise.synth.simulate_tiles`). Reported per stride: the measured
CPU ratio to stride 1, the CPU per class of a full search (``estimate_class``, inclusive) and of a borrowing
class (``borrow_class``, inclusive) and the rest of the stage per class, each fitted ``a m^b``, and from those
the projection to a real frame for strides 1..8 (``n (c_full / s^2 + c_borrow (1 - 1/s^2) + c_rest)``);
accuracy: velocity z-scores against the truth, per-class differences to stride 1 (velocity std, components,
velocity in units of its std) and the borrowing classes' components against their truth.
``--variants scale,model,all``: what a borrowing class estimates itself (``insarcloud.noise.borrow``'s ``fit``).

Driver memory and graph size (``--driver PXxM --before DIR``; docs/noise.md "One task per write chunk"): one
simulated ts group (rate, white, AR(1) and a spatially correlated part per epoch; chunks 256 px, as the
inversion writes them), then ``noise_cube`` (the stage as the area job runs it, ``NoiseParams`` defaults) once
with the code in DIR (e.g. ``git -C /work/main archive HEAD insarcloud | tar -x -C DIR``) and once with this
tree, each in a child process that is the driver of a ``LocalCluster`` (``--workers`` processes,
``--memory-limit``): the driver's peak RSS (scheduler included, sampled every 0.1 s), the workers' peaks, CPU
seconds of every process, wall, and the tasks of ``noise_dataset``'s graph; and whether the two noise groups
are equal, bit for bit.

Usage: ``python benchmarks/noise_stage.py --json OUT [--sizes 64x60,64x120] [--profile] [--stride 2,3]``;
``python benchmarks/noise_stage.py --json OUT --driver 1024x12 --before DIR [--workers 2 --memory-limit 4GiB]``.
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

# --driver runs each version of the code in a child process whose code folder is NOISE_STAGE_CODE
sys.path.insert(0, os.environ.get("NOISE_STAGE_CODE") or str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import xarray as xr  # noqa: E402

from insarcloud.noise import dask_ops, estimate, lsvce  # noqa: E402
from insarcloud.noise.classes import tile_side  # noqa: E402
from insarcloud.noise.cofactors import build_cofactors, design_matrix  # noqa: E402
from insarcloud.noise.spatial import lonlat_to_local_m  # noqa: E402
from insarcloud.noise.synth import regular_days, simulate_class, simulate_tiles  # noqa: E402

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
          "scale_variance", "class_other", "borrow", "stage_other")


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


def make_ts_smooth(px: int, m: int, class_size: int, seed: int) -> tuple[xr.Dataset, dict[str, np.ndarray]]:
    """A ts group of px x px pixels whose truth is white + AR(1) + flicker everywhere (the last scenario's
    effective variances at the centre), amplitudes varying by +-15 % across the tiles; and the true
    components (mm^2) per tile."""
    side = tile_side(class_size)
    n = int(np.ceil(px / side))
    days = regular_days(m)
    sim = simulate_tiles(np.random.default_rng(seed), (n, n), side, days, _raw(days, SCENARIOS[-1]), alpha=ALPHA,
                         gradient=0.3, rho0=0.5, d_m=300.0)
    ts = sim.ts.isel(y=slice(0, px), x=slice(0, px))
    ts["displacement"][:, 0, 0] = 0.0  # reference pixel
    return ts, sim.components


class PhaseTimer:
    """Exclusive CPU time per phase: wraps the stage's functions in their modules' namespaces."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.iters: dict[str, int] = defaultdict(int)
        self.stack: list[tuple[str, float]] = []
        self.undo: list[tuple[object, str, object]] = []
        self.incl: dict[str, float] = defaultdict(float)  # inclusive CPU of estimate_class / borrow_class
        self.incl_calls: dict[str, int] = defaultdict(int)

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
            t0 = time.process_time()
            self._enter(lab)
            try:
                out = fn(*a, **kw)
            finally:
                self._exit()
            if name in ("estimate_class", "borrow_class"):
                self.incl[name] += time.process_time() - t0
                self.incl_calls[name] += 1
            if name == "multivariate_lsvce":
                self.iters[lab] += int(out.n_iter)
            return out

        self.undo.append((module, name, fn))
        setattr(module, name, inner)

    def install(self) -> None:
        self.wrap(dask_ops, "estimate_class", "class_other")
        self.wrap(dask_ops, "borrow_class", "borrow")
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


def run_size(px: int, m: int, class_size: int, seed: int, profile: bool, save: str | None = None,
             ts: xr.Dataset | None = None, stride: int = 1, borrow: str = "scale") -> tuple[dict, str]:
    ts = make_ts(px, m, class_size, seed) if ts is None else ts
    side = tile_side(class_size)
    n_classes = int(np.ceil(px / side) ** 2)
    timer = PhaseTimer()
    timer.install()
    prof = cProfile.Profile() if profile else None
    try:
        c0, w0 = time.process_time(), time.perf_counter()
        if prof:
            prof.enable()
        ds = dask_ops.noise_dataset(ts, class_size=class_size, model_stride=stride,
                                    borrow=borrow).compute(scheduler="synchronous")
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
        "stride": stride, "borrow": borrow if stride > 1 else None,
        "full_search": {"classes": timer.incl_calls.get("estimate_class", 0),
                        "cpu_s": timer.incl.get("estimate_class", 0.0)},
        "borrowing": {"classes": timer.incl_calls.get("borrow_class", 0), "cpu_s": timer.incl.get("borrow_class", 0.0)},
    }
    res["rest_cpu_per_class_s"] = (cpu - res["full_search"]["cpu_s"] - res["borrowing"]["cpu_s"]) / n_classes
    if save:
        # the stage's outputs, to compare two versions of the code on the same simulated cube
        np.savez_compressed(save, **{k: ds[k].values for k in ds.data_vars})
    res["_ds"] = ds
    return res, prof_txt


def compare(ds: xr.Dataset, ref: xr.Dataset, side: int, truth: dict[str, np.ndarray] | None) -> dict:
    """Per class, stride s against stride 1 (``ref``) and the borrowing classes' components against the truth."""
    with np.errstate(divide="ignore", invalid="ignore"):  # a component zero in one run: an infinite ratio
        return _compare(ds, ref, side, truth)


def _compare(ds: xr.Dataset, ref: xr.Dataset, side: int, truth: dict[str, np.ndarray] | None) -> dict:
    own = ds["class_model_source"].values == ds["class_id"].values[::side, ::side]
    bor = ~own

    def per_class(a: np.ndarray) -> np.ndarray:  # the median over each tile's pixels
        ny, nx = a.shape
        t = a[: ny // side * side, : nx // side * side].reshape(ny // side, side, nx // side, side)
        return np.nanmedian(t.transpose(0, 2, 1, 3).reshape(ny // side, nx // side, -1), axis=2)

    std_rel = per_class(np.abs(ds["velocity_std"].values / ref["velocity_std"].values - 1))[bor]
    vel_z = per_class(np.abs((ds["velocity"].values - ref["velocity"].values) / ref["velocity_std"].values))[bor]
    out: dict = {"borrowing_classes": int(bor.sum()), "sampled_classes": int(own.sum()),
                 "velocity_std_rel_diff_per_class": _pct(std_rel), "velocity_diff_in_std_per_class": _pct(vel_z)}
    for k in ("white", "ar1", "flicker"):
        a, b = ds[f"class_sigma_{k}"].values[bor], ref[f"class_sigma_{k}"].values[bor]
        out[f"{k}_rel_diff_to_stride1"] = _pct(np.abs(a / b - 1))
        if truth is not None and k in truth:
            t = truth[k][: own.shape[0], : own.shape[1]][bor]
            out[f"{k}_rel_err_to_truth"] = _pct(np.abs(a / t - 1))
            out[f"{k}_rel_err_to_truth_stride1"] = _pct(np.abs(b / t - 1))
    return out


def _pct(x: np.ndarray) -> dict:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    if not x.size:
        return {"n": 0}
    return {"n": int(x.size), "median": float(np.median(x)), "p90": float(np.percentile(x, 90)),
            "max": float(np.max(x))}


def _fit(ms: np.ndarray, per: np.ndarray) -> tuple[float, float]:
    """``a m^b`` through the measured (epochs, CPU-s) points: (b, ln a); one point: b = 1."""
    if ms.size >= 2 and np.all(per > 0):
        b, loga = np.polyfit(np.log(ms), np.log(per), 1)
        return float(b), float(loga)
    return 1.0, float(np.log(max(per[0], 1e-9)) - np.log(ms[0]))


def project_stride(runs: list[dict], class_size: int) -> dict:
    """Per-class CPU of a full search, of a borrowing class and of the rest of the stage, each ``a m^b`` over
    the measured epoch counts, and the projected core-hours per real frame for strides 1..8."""
    side = tile_side(class_size)
    n_cls = REAL_PIXELS / (side * side)
    kinds: dict[str, dict[int, list[float]]] = {"full": defaultdict(list), "borrow": defaultdict(list),
                                                 "rest": defaultdict(list)}
    for r in runs:
        if r["full_search"]["classes"]:
            kinds["full"][r["epochs"]].append(r["full_search"]["cpu_s"] / r["full_search"]["classes"])
        if r["borrowing"]["classes"]:
            kinds["borrow"][r["epochs"]].append(r["borrowing"]["cpu_s"] / r["borrowing"]["classes"])
        kinds["rest"][r["epochs"]].append(r["rest_cpu_per_class_s"])
    at180 = {}
    fits = {}
    for k, by_m in kinds.items():
        if not by_m:
            at180[k] = float("nan")
            continue
        ms = np.array(sorted(by_m), dtype=np.float64)
        per = np.array([np.mean(by_m[int(v)]) for v in ms])
        b, loga = _fit(ms, per)
        fits[k] = {"epoch_exponent": b, "measured": {str(int(v)): float(p) for v, p in zip(ms, per, strict=True)}}
        at180[k] = float(np.exp(loga) * REAL_EPOCHS**b)
    proj = {}
    for st in range(1, 9):
        per = at180["full"] / st**2 + (at180["borrow"] * (1 - 1 / st**2) if st > 1 else 0.0) + at180["rest"]
        proj[str(st)] = {"cpu_per_class_s": per, "core_hours_per_frame": per * n_cls / 3600.0}
    ok = [int(k) for k, v in proj.items() if v["core_hours_per_frame"] <= 0.3]
    return {"per_class_s_at_180": at180, "fits": fits, "classes_per_frame": n_cls, "by_stride": proj,
            "goal_core_hours": 0.3, "smallest_stride_meeting_goal": min(ok) if ok else None}


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
    ap.add_argument("--stride", default="", help="comma list of model strides to run after stride 1 on each cube")
    ap.add_argument("--variants", default="scale", help="borrowing variants with --stride: scale, model, all")
    ap.add_argument("--truth", choices=("cycle", "smooth"), default=None,
                    help="cycle: the four scenarios tile by tile; smooth: one family, smooth amplitudes "
                         "(default: smooth with --stride, else cycle)")
    ap.add_argument("--real", metavar="FRAME_DIR", help=(
        "semi-real cube on a real LiCSAR frame's land instead of the simulator (--sizes TILESxEPOCHS): "
        "per epoch one real interferogram's decorrelation noise (phase minus its 9 x 9 phasor low-pass, "
        "insarcloud.unwrap.semireal.real_noise; a random one of its 8 rotations/flips and sign) as the white "
        "part, plus AR(1) + flicker of twice and once the window's mean real noise variance, under the frame's "
        "real mask"))
    ap.add_argument("--driver", metavar="PXxM", help="driver memory and graph size, --before's code against this")
    ap.add_argument("--before", metavar="DIR", help="with --driver: the folder holding the code to compare")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="4GiB")
    ap.add_argument("--repeat", type=int, default=1, help="with --driver: before/after pairs to run")
    ap.add_argument("--driver-child", metavar="CUBE", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.driver_child:
        return driver_child(a)
    if a.driver:
        return driver_compare(a)
    strides = [int(v) for v in a.stride.split(",") if v]
    truth_kind = a.truth or ("smooth" if strides else "cycle")
    variants = [v for v in a.variants.split(",") if v]
    sizes = [tuple(int(v) for v in s.split("x")) for s in a.sizes.split(",")]
    runs = []
    prof_txt = ""
    print(f"{'px':>5} {'dates':>5} {'cls':>4} {'CPU s':>8} {'s/class':>8} {'us/px':>8}  " +
          " ".join(f"{p[:10]:>10}" for p in PHASES), flush=True)
    for i, (px, m) in enumerate(sizes):
        save = str(Path(a.save) / f"{px}x{m}.npz") if a.save else None
        if save:
            Path(a.save).mkdir(parents=True, exist_ok=True)
        truth = None
        ts = None
        if a.real:
            ts = make_ts_real(a.real, px, a.class_size, m, a.seed)
            px = ts.sizes["y"]
            print(f"real window rows/cols {ts.attrs['window']}, valid {ts.attrs['valid_fraction']:.3f}", flush=True)
        elif truth_kind == "smooth":
            ts, truth = make_ts_smooth(px, m, a.class_size, a.seed)
        r, txt = run_size(px, m, a.class_size, a.seed, a.profile and i == len(sizes) - 1, save, ts=ts)
        prof_txt = txt or prof_txt
        ref = r.pop("_ds")
        runs.append(r)
        _print(r)
        for st in strides:
            for variant in variants:
                rs, _ = run_size(px, m, a.class_size, a.seed, False, None, ts=ts, stride=st, borrow=variant)
                ds = rs.pop("_ds")
                rs["cpu_ratio_to_stride1"] = rs["cpu_s"] / r["cpu_s"]
                rs["vs_stride1"] = compare(ds, ref, tile_side(a.class_size), truth)
                runs.append(rs)
                _print(rs)
                print(f"      stride {st} {variant}: CPU ratio to stride 1 "
                      f"{rs['cpu_ratio_to_stride1']:.3f}; borrowing classes: {json.dumps(rs['vs_stride1'])}",
                      flush=True)
    proj = project([r for r in runs if r["stride"] == 1], a.class_size)
    proj_stride = {}
    for variant in variants:
        if strides:
            sel = [r for r in runs if r["stride"] == 1 or r["borrow"] == variant]
            proj_stride[variant] = ps = project_stride(sel, a.class_size)
            print(f"projection by stride ({variant}): per class at 180 epochs "
                  f"{json.dumps(ps['per_class_s_at_180'])}; core-hours per frame "
                  + ", ".join(f"s={k}: {v['core_hours_per_frame']:.2f}" for k, v in ps["by_stride"].items())
                  + f"; smallest stride meeting 0.3: {ps['smallest_stride_meeting_goal']}", flush=True)
    print(f"projection: {proj['classes_per_frame']:.0f} classes x {proj['cpu_per_class_s_at_180']:.1f} CPU-s "
          f"(180 epochs, m^{proj['epoch_exponent']:.2f}) = {proj['core_hours_per_frame']:.2f} core-hours per "
          f"real frame (goal {proj['goal_core_hours']})", flush=True)
    if prof_txt:
        print(prof_txt)
    out = {"runs": runs, "projection": proj, "projection_by_stride": proj_stride, "truth": truth_kind,
           "command": " ".join(sys.argv), "threads": 1,
           "note": "synchronous scheduler, BLAS 1 thread; process CPU time; shared loaded machine"}
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=2))


def make_ts_real(frame_dir: str, tiles: int, class_size: int, m: int, seed: int) -> xr.Dataset:
    """A semi-real ts group on the real frame's land: the real decorrelation noise and mask plus a modelled
    AR(1) + flicker of constant amplitude (see ``--real``)."""
    from unwrap_real import best_window, load
    from unwrap_semireal import load_landmask

    from insarcloud.unwrap.semireal import real_noise

    rng = np.random.default_rng(seed)
    side = tile_side(class_size)
    w = tiles * side
    pairs, phase, _ = load(Path(frame_dir))
    land = load_landmask(Path(frame_dir))
    valid = np.all(np.isfinite(phase), axis=0) & (land if land is not None else True)
    ys, xs = best_window(valid, w, max_frac=1.0)
    mm_per_rad = 55.465 / (4.0 * np.pi)  # Sentinel-1 C band: LOS mm per radian of phase
    fields = np.stack([real_noise(p)[ys, xs] for p in phase]) * mm_per_rad  # (pairs, w, w) mm
    combos = [(k, t, sg) for k in range(len(pairs)) for t in range(8) for sg in (1.0, -1.0)]
    pick = rng.permutation(len(combos))[:m]
    days = regular_days(m)
    noise = np.empty((m, w, w))
    for e, c in enumerate(pick):
        k, t, sg = combos[c]
        f = np.rot90(fields[k], t % 4)
        noise[e] = sg * (f.T if t >= 4 else f)
    noise = np.nan_to_num(noise)  # a transformed field's no-data inside the window: no noise there
    lat = 35.0 - 0.001 * np.arange(w)
    lon = 51.0 + 0.001 * np.arange(w)
    disp = np.zeros((m, w, w))
    vel = np.zeros((w, w))
    # AR(1) and flicker constant over the window (twice and once its mean real noise variance): the ratio of
    # white to the other components follows the real decorrelation noise tile by tile (real, not smooth)
    v = float(np.nanmean(fields**2))
    for i in range(tiles):
        for j in range(tiles):
            sy, sx = slice(i * side, (i + 1) * side), slice(j * side, (j + 1) * side)
            la, lo = np.meshgrid(lat[sy], lon[sx], indexing="ij")
            sim = simulate_class(rng, days, lonlat_to_local_m(lo.ravel(), la.ravel()),
                                 _raw(days, {"ar1": 2.0 * v, "flicker": 1.0 * v}), alpha=ALPHA, rho0=0.5, d_m=300.0)
            disp[:, sy, sx] = sim.Y.reshape(m, side, side)
            vel[sy, sx] = sim.X[1].reshape(side, side)
    disp = disp + noise
    disp = disp - disp[:1]
    disp[:, ~valid[ys, xs]] = np.nan  # the real mask (water, no data)
    disp[:, 0, 0] = 0.0
    dates = pd.Timestamp("2020-01-01") + pd.to_timedelta(days, unit="D")
    ts = xr.Dataset({"displacement": (("date", "y", "x"), disp.astype(np.float32), {"units": "mm"}),
                     "velocity": (("y", "x"), vel.astype(np.float32), {"units": "mm/yr"})},
                    coords={"date": dates.values, "y": lat, "x": lon})
    ts.attrs["window"] = [ys.start, ys.stop, xs.start, xs.stop]
    ts.attrs["valid_fraction"] = float(valid[ys, xs].mean())
    return ts


def make_ts_fast(px: int, m: int, seed: int) -> xr.Dataset:
    """A ts group of px x px pixels and m dates, simulated by whole epochs (the tile-by-tile simulators need
    one Cholesky per class): a smooth rate, white noise (2 mm), AR(1) (2 mm, alpha 0.05/day) and per epoch a
    Gaussian-smoothed field (2 mm, ~3 px), zero at the first epoch; the first pixel is the reference."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    days = regular_days(m)
    yy, xx = np.mgrid[0:px, 0:px] / px
    vel = (10.0 * np.sin(3 * yy) * np.cos(2 * xx)).astype(np.float32)
    disp = np.empty((m, px, px), np.float32)
    ar = rng.normal(0, 2.0, (px, px))
    for e in range(m):
        if e:
            rho = np.exp(-ALPHA * (days[e] - days[e - 1]))
            ar = rho * ar + np.sqrt(1 - rho**2) * rng.normal(0, 2.0, (px, px))
        sp = gaussian_filter(rng.normal(0, 1, (px, px)), 3.0)
        disp[e] = vel * days[e] / 365.25 + rng.normal(0, 2.0, (px, px)) + ar + 2.0 * sp / sp.std()
    disp -= disp[:1]
    disp[:, 0, 0] = 0.0
    dates = pd.Timestamp("2020-01-01") + pd.to_timedelta(days, unit="D")
    return xr.Dataset({"displacement": (("date", "y", "x"), disp, {"units": "mm"}),
                       "velocity": (("y", "x"), vel, {"units": "mm/yr"})},
                      coords={"date": dates.values, "y": 35.0 - 0.001 * np.arange(px),
                              "x": 51.0 + 0.001 * np.arange(px)}, attrs={"weights": "quality"})


def driver_child(a: argparse.Namespace) -> None:
    """One ``noise_cube`` run on the cube ``a.driver_child`` with this process as the driver of a LocalCluster;
    prints one JSON line (see the module text)."""
    import gc
    import threading

    import psutil
    from distributed import Client, LocalCluster

    import insarcloud
    from insarcloud.io import open_cube
    from insarcloud.noise.command import noise_opts
    from insarcloud.noise.stage import NoiseParams

    p = NoiseParams(class_size=a.class_size)
    me = psutil.Process()
    peak: dict[int, int] = {}
    last: dict[int, float] = {}
    stop = threading.Event()

    def procs() -> list[psutil.Process]:
        return [me, *me.children(recursive=True)]

    def cpu() -> dict[int, float]:
        out = {}
        for q in procs():
            try:
                t = q.cpu_times()
                out[q.pid] = t.user + t.system
            except psutil.Error:
                continue
        return out

    def sample() -> None:
        while not stop.wait(0.1):
            for q in procs():
                try:
                    peak[q.pid] = max(peak.get(q.pid, 0), q.memory_info().rss)
                except psutil.Error:
                    continue
            last.update(cpu())

    with LocalCluster(n_workers=a.workers, threads_per_worker=1, processes=True, memory_limit=a.memory_limit,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        workers = set(client.run(os.getpid).values())
        gc.collect()
        base = me.memory_info().rss
        before = cpu()
        th = threading.Thread(target=sample, daemon=True)
        t0 = time.perf_counter()
        th.start()
        dask_ops.noise_cube(a.driver_child, ts_group="ts_quality", class_size=p.class_size, opts=noise_opts(p),
                            model_stride=p.model_stride)
        wall = time.perf_counter() - t0
        stop.set()
        th.join()
        after = {**last, **cpu()}
    ts = open_cube(a.driver_child, group="ts_quality")
    tasks = len(dask_ops.noise_dataset(ts, class_size=p.class_size, opts=noise_opts(p),
                                       model_stride=p.model_stride).__dask_graph__())
    kind = {pid: "driver" if pid == me.pid else "worker" if pid in workers else "other" for pid in after}
    by_kind: dict[str, float] = defaultdict(float)
    for pid, c in after.items():
        by_kind[kind[pid]] += c - before.get(pid, 0.0)
    print(json.dumps({
        "code": str(Path(insarcloud.__file__).parent), "tasks": tasks, "wall_s": wall,
        "cpu_s": sum(by_kind.values()), "cpu_s_by_kind": dict(by_kind), "driver_base_rss_mb": base / 2**20,
        "driver_peak_rss_mb": peak.get(me.pid, base) / 2**20,
        "worker_peak_rss_mb": sorted(peak[pid] / 2**20 for pid in workers if pid in peak),
        "classes": int(np.prod([-(-ts.sizes[k] // tile_side(p.class_size)) for k in ("y", "x")])),
        "model_stride": p.model_stride}))


def driver_compare(a: argparse.Namespace) -> None:
    """--driver: the same cube through ``--before``'s code and this tree's (see the module text)."""
    import shutil
    import subprocess
    import tempfile

    from insarcloud.io import open_cube, write_stage_output

    px, m = (int(v) for v in a.driver.split("x"))
    ts = make_ts_fast(px, m, a.seed).chunk({"date": -1, "y": 256, "x": 256})
    root = Path(tempfile.mkdtemp(prefix="noise_driver_"))
    here = str(Path(__file__).resolve().parents[1])
    runs, urls = [], {}
    try:
        for rep in range(a.repeat):
            for label, code in (("before", str(Path(a.before).resolve())), ("after", here)):
                url = str(root / f"{label}{rep}.zarr")
                write_stage_output(ts, url, "ts_quality", stage="invert", params={"weights": "quality"})
                env = {**os.environ, "NOISE_STAGE_CODE": code, "PYTHONPATH": code}
                cmd = [sys.executable, __file__, "--json", "-", "--driver-child", url, "--class-size",
                       str(a.class_size), "--workers", str(a.workers), "--memory-limit", a.memory_limit]
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                r = {"version": label, "repeat": rep, **json.loads(out.stdout.strip().splitlines()[-1])}
                runs.append(r)
                urls.setdefault(label, url)
                print(f"{label:>6} ({r['code']}): {r['tasks']:>6} tasks, driver peak {r['driver_peak_rss_mb']:.0f} "
                      f"MB (at start {r['driver_base_rss_mb']:.0f}), workers {r['worker_peak_rss_mb']} MB, CPU "
                      f"{r['cpu_s']:.1f} s {json.dumps({k: round(v, 1) for k, v in r['cpu_s_by_kind'].items()})}, "
                      f"wall {r['wall_s']:.1f} s", flush=True)
        b, f = (open_cube(urls[k], group="noise").load() for k in ("before", "after"))
        differ = [k for k in b.data_vars if not np.array_equal(b[k].values, f[k].values, equal_nan=True)]
        differ += [k for k in set(b.data_vars) ^ set(f.data_vars)]
    finally:
        shutil.rmtree(root)  # made by this run
    print(f"noise groups before/after bit-identical: {not differ} {differ or ''}", flush=True)
    out = {"runs": runs, "identical": not differ, "differ": differ, "pixels": px, "epochs": m,
           "command": " ".join(sys.argv), "note": "shared loaded machine, nice 19: CPU and wall not quiet-machine "
           "figures; compare before/after of the same run"}
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=2))


def _print(r: dict) -> None:
    print(f"{r['px']:>5} {r['epochs']:>5} {r['classes']:>4} {r['cpu_s']:>8.1f} {r['cpu_per_class_s']:>8.2f} "
          f"{r['cpu_per_pixel_us']:>8.0f}  " + " ".join(f"{r['phases_cpu_s'][p]:>10.1f}" for p in PHASES)
          + f"  stride {r['stride']} {r['borrow'] or ''}", flush=True)
    print(f"      LS-VCE calls {r['lsvce_calls']}, iterations {r['lsvce_iterations']}; velocity z std "
          f"{r['velocity_z_std']:.2f}, |z|<2 {r['velocity_z_within_2']:.3f}; full search {r['full_search']}, "
          f"borrowing {r['borrowing']}", flush=True)


if __name__ == "__main__":
    main()
