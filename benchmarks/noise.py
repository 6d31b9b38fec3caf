"""Benchmark and evidence for insarcloud.noise (multivariate LS-VCE).

Prints and writes JSON (``--json OUT``):

* timing of one class (r series x m epochs; the paper's r = 1000, m = 100; goal < 10 s on one core), its
  growth with r and m, the anchor ratio against a dense (m r) x (m r) LS-VCE on a small case in the same run,
  and the projected plateau time for N workers;
* recovery on simulated classes with known white / AR(1) / flicker amplitudes and a known Gaussian spatial
  covariance: fraction of components within 2 sigma of their own reported precision, model choice rate;
* honest precision: 95 % velocity interval coverage with the estimated model vs white-noise-only LS.

Component amplitudes of the simulations are set by the residual variance each adds,
``sigma_k tr(Q_k P_A) / (m - n)`` (mm^2), so "differ by a factor of 2" compares what the data can see.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # one core per class, as a Dask worker thread runs it

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from insarcloud.noise.cofactors import build_cofactors, design_matrix  # noqa: E402
from insarcloud.noise.estimate import MODEL_NAMES, MODELS, SLOTS, estimate_class  # noqa: E402
from insarcloud.noise.lsvce import multivariate_lsvce  # noqa: E402
from insarcloud.noise.select import choose_model  # noqa: E402
from insarcloud.noise.spatial import make_pair_bins  # noqa: E402
from insarcloud.noise.synth import grid_coords, regular_days, simulate_class  # noqa: E402

SCENARIOS = {  # effective residual variances (mm^2)
    "white+flicker": {"white": 4.0, "flicker": 2.0},
    "white+ar1": {"white": 2.0, "ar1": 4.0},
    "ar1+flicker": {"ar1": 2.0, "flicker": 4.0},
    "white+ar1+flicker": {"white": 2.0, "ar1": 4.0, "flicker": 2.0},
}
ALPHA = 0.05  # 1/day, the paper's most probable value
LEVELS = (0.01, 0.05, 0.1, 0.2)  # test levels of the LR rule reported side by side (same fits)


def raw_components(days: np.ndarray, eff: dict[str, float]) -> dict[str, float]:
    m = days.size
    A = design_matrix(days)
    P = np.eye(m) - A @ np.linalg.solve(A.T @ A, A.T)
    out = {}
    for k, v in eff.items():
        q = build_cofactors(days, (k,), alpha=ALPHA).Q[0]
        out[k] = v / (np.trace(q @ P) / (m - A.shape[1]))
    return out


def _dense_iteration(Y, A, Qk, S, sig0):
    m, r = Y.shape
    Ab = np.kron(np.eye(r), A)
    Q = np.tensordot(sig0, Qk, axes=1)
    R = np.linalg.inv(np.kron(S, Q))
    P = np.eye(m * r) - Ab @ np.linalg.solve(Ab.T @ R @ Ab, Ab.T @ R)
    y = Y.T.reshape(-1)
    e = P @ y
    Qb = [np.kron(S, q) for q in Qk]
    N = np.array([[0.5 * np.trace(a @ R @ P @ b @ R @ P) for b in Qb] for a in Qb])
    return np.linalg.solve(N, np.array([0.5 * e @ R @ a @ R @ e for a in Qb]))


def timing(rs: list[int], ms: list[int], rng: np.random.Generator) -> dict:
    res: dict = {"growth_r": {}, "growth_m": {}}
    comps = ("white", "flicker")

    def one(r: int, m: int) -> tuple[float, float]:
        """CPU seconds (process_time: robust on a shared machine) of one fit, and of a full class."""
        days = regular_days(m)
        xy = grid_coords(r, 100.0)
        s = simulate_class(rng, days, xy, {"white": 2.0, "flicker": 4.0}, rho0=0.5, d_m=500.0)
        cs = build_cofactors(days, comps)
        A = design_matrix(days)
        t0 = time.process_time()
        bins = make_pair_bins(xy)
        multivariate_lsvce(s.Y, A, cs.Q, cs.names, sigma_model="gaussian", coords_m=xy, bins=bins)
        t1 = time.process_time() - t0
        if (r, m) != (1000, 100):
            return t1, float("nan")
        t0, w0 = time.process_time(), time.perf_counter()
        estimate_class(s.Y, days, xy)
        res["class_r1000_m100_wall_s"] = time.perf_counter() - w0
        return t1, time.process_time() - t0

    for r in rs:
        t = one(r, 100)
        res["growth_r"][r] = t[0]
        if r == 1000:
            res["class_r1000_m100_s"] = t[1]
        print(f"r={r:5d} m=100: one LS-VCE fit {t[0]:.2f} s CPU" + (f", full class (4 models) {t[1]:.2f} s CPU"
                                                                 if r == 1000 else ""), flush=True)
    for m in ms:
        t = one(1000, m)
        res["growth_m"][m] = t[0]
        print(f"r= 1000 m={m:4d}: one LS-VCE fit {t[0]:.2f} s CPU", flush=True)
    # anchor: dense (m r)^2 iteration vs the Kronecker one, same data, one iteration each
    # (offset + rate model and a strong flicker, so the one-step update stays positive and comparable)
    r, m = 12, 40
    days = regular_days(m)
    cs = build_cofactors(days, comps)
    A = design_matrix(days, "linear")
    Y = np.linalg.cholesky(2.0 * cs.Q[0] + 20.0 * cs.Q[1]) @ rng.standard_normal((m, r))
    S = np.eye(r)
    t0 = time.process_time()
    sd = _dense_iteration(Y, A, cs.Q, S, np.array([2.0, 20.0]))
    td = time.process_time() - t0
    t0 = time.process_time()
    for _ in range(20):
        sk = multivariate_lsvce(Y, A, cs.Q, cs.names, sigma_model="identity", sigma0=np.array([2.0, 20.0]),
                                max_iter=1,
                                nonneg=False).sigma
    tk = (time.process_time() - t0) / 20
    res["anchor"] = {"r": r, "m": m, "dense_s": td, "kron_s": tk, "speedup": td / tk,
                     "max_rel_diff": float(np.max(np.abs(sd - sk) / np.abs(sd)))}
    print(f"anchor r={r} m={m}: dense {td:.3f} s, kronecker {tk:.4f} s, x{td / tk:.0f}", flush=True)
    return res


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial rate k / n."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(c - h), float(c + h)


def recovery(n_trials: int, r: int, m: int, seed: int, alpha_pixels: int = 200, level: float = 0.05) -> dict:
    """Model choice and component precision on simulated classes with a known truth.

    Trial i of scenario k draws from ``default_rng([seed, r, k, i])`` (independent streams; the design runs of
    notes/noise.md used ``default_rng(1000 + i)``, so ``--seed`` gives fresh classes). Reported in the same
    run: the LR rule at ``level`` (and at LEVELS from the same fits) and the earlier Akaike rule, the propagated
    precision and plain LS-VCE N^-1, with 95 % Wilson intervals.
    """
    days = regular_days(m)
    xy = grid_coords(r, 100.0)
    out = {}
    for si, (name, eff) in enumerate(SCENARIOS.items()):
        truth = raw_components(days, eff)
        z_new, z_old, chosen, chosen_aic, c0e, de, t, models = [], [], 0, 0, [], [], 0.0, []
        by_level = dict.fromkeys(LEVELS, 0)
        for i in range(n_trials):
            rng = np.random.default_rng([seed, r, si, i])
            s = simulate_class(rng, days, xy, truth, alpha=ALPHA, rho0=0.5, d_m=300.0)
            t0 = time.perf_counter()
            c = estimate_class(s.Y, days, xy, profile_pixels=alpha_pixels, level=level)
            t += time.perf_counter() - t0
            chosen += c.model == name
            models.append(c.model)
            reml = dict(zip(MODEL_NAMES, c.reml, strict=True))
            chosen_aic += choose_model(reml, MODELS, selection="aic").model == name
            for lev in LEVELS:
                by_level[lev] += choose_model(reml, MODELS, level=lev).model == name
            # components of the true model, estimated with that model, against its own precision (the
            # chosen fit is reused when it is the true model: the same fits in the same order)
            ct = c if c.model == name else estimate_class(s.Y, days, xy, models=(name,),
                                                          profile_pixels=alpha_pixels)
            zn, zo = [], []
            for j, k in enumerate(SLOTS):
                if k in truth:
                    zn.append((ct.sigma[j] - truth[k]) / ct.sigma_std[j])
                    zo.append((ct.sigma[j] - truth[k]) / ct.fit.sigma_std[ct.fit.names.index(k)])
            z_new.append(zn)
            z_old.append(zo)
            c0e.append(ct.c0 - 0.5)
            de.append(ct.d - 300.0)
        zn_a, zo_a = np.abs(np.array(z_new)), np.abs(np.array(z_old))
        k_new, k_old, n_comp = int(np.sum(zn_a <= 2)), int(np.sum(zo_a <= 2)), zn_a.size
        out[name] = {
            "truth_mm2": truth, "trials": n_trials,
            "chosen_rate": chosen / n_trials, "chosen_ci95": wilson(chosen, n_trials),
            "chosen_rate_aic": chosen_aic / n_trials, "chosen_aic_ci95": wilson(chosen_aic, n_trials),
            "chosen_rate_by_level": {lev: k / n_trials for lev, k in by_level.items()},
            "models_chosen": {k: models.count(k) for k in MODEL_NAMES if k in models},
            "within_2sigma": k_new / n_comp, "within_2sigma_ci95": wilson(k_new, n_comp),
            "within_2sigma_plain_N": k_old / n_comp, "within_2sigma_plain_N_ci95": wilson(k_old, n_comp),
            "within_2sigma_per_component": dict(zip([k for k in SLOTS if k in truth],
                                                    np.mean(zn_a <= 2, axis=0).tolist(), strict=True)),
            "z_std_per_component": np.std(np.array(z_new), axis=0).tolist(),
            "z_std_per_component_plain_N": np.std(np.array(z_old), axis=0).tolist(),
            "c0_bias": float(np.mean(c0e)), "c0_rmse": float(np.sqrt(np.mean(np.square(c0e)))),
            "d_bias_m": float(np.mean(de)), "d_rmse_m": float(np.sqrt(np.mean(np.square(de)))),
            "s_per_class": t / n_trials}
        lo, hi = out[name]["chosen_ci95"]
        wl, wh = out[name]["within_2sigma_ci95"]
        print(f"{name:18s} chosen {chosen}/{n_trials} [{lo:.2f}, {hi:.2f}] (AIC rule {chosen_aic}/{n_trials}), "
              f"within 2 sigma {k_new}/{n_comp} = {k_new / n_comp:.2f} [{wl:.2f}, {wh:.2f}] "
              f"(plain N^-1 {k_old / n_comp:.2f}), C0 bias {np.mean(c0e):+.3f}, d bias {np.mean(de):+.0f} m",
              flush=True)
    return out


def coverage(n_classes: int, r: int, m: int, rng: np.random.Generator) -> dict:
    days = regular_days(m)
    xy = grid_coords(r, 100.0)
    truth = raw_components(days, {"white": 2.0, "flicker": 4.0})
    hit_m, hit_w, n = 0, 0, 0
    ratio = []
    for _ in range(n_classes):
        s = simulate_class(rng, days, xy, truth, rho0=0.3, d_m=300.0)
        c = estimate_class(s.Y, days, xy)
        ok = c.valid
        err = np.abs(c.velocity[ok] - s.X[1][ok])
        hit_m += int(np.sum(err <= 1.96 * c.velocity_std[ok]))
        # white-only: ordinary LS velocity and its white-noise std
        A = design_matrix(days)
        vols = np.linalg.lstsq(A, s.Y, rcond=None)[0][1]
        hit_w += int(np.sum(np.abs(vols[ok] - s.X[1][ok]) <= 1.96 * c.velocity_std_white[ok]))
        n += int(ok.sum())
        ratio.append(float(np.median(c.velocity_std[ok] / c.velocity_std_white[ok])))
    out = {"pixels": n, "classes": n_classes, "coverage_model": hit_m / n, "coverage_white": hit_w / n,
           "median_std_ratio_model_over_white": float(np.median(ratio)), "truth_mm2": truth}
    print(f"95% velocity interval coverage over {n} pixels: model {hit_m / n:.3f}, white-only {hit_w / n:.3f}",
          flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None, help="write results here")
    ap.add_argument("--r", type=int, nargs="+", default=[250, 500, 1000])
    ap.add_argument("--m", type=int, nargs="+", default=[50, 100, 200])
    ap.add_argument("--trials", type=int, default=20, help="recovery trials per scenario")
    ap.add_argument("--sim-r", type=int, nargs="+", default=[36], help="pixels per simulated class (recovery: "
                    "each value; coverage: the first)")
    ap.add_argument("--sim-m", type=int, default=80, help="epochs per simulated class")
    ap.add_argument("--coverage-classes", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7, help="recovery seed (design runs used other streams)")
    ap.add_argument("--level", type=float, default=0.05, help="test level of the model choice (LR rule)")
    ap.add_argument("--alpha-pixels", type=int, default=200, help="pixels of the alpha profile (profile_pixels)")
    ap.add_argument("--plateau-pixels", type=float, default=1.0e8, help="pixels of the plateau to project")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 16, 64, 256])
    ap.add_argument("--skip", nargs="*", default=[], choices=["timing", "recovery", "coverage"])
    a = ap.parse_args()
    rng = np.random.default_rng(2022)
    res: dict = {"threads": os.environ["OMP_NUM_THREADS"], "cpu_count": os.cpu_count(),
                 "load_avg_1min": os.getloadavg()[0]}
    if "timing" not in a.skip:
        res["timing"] = timing(a.r, a.m, rng)
        tc = res["timing"].get("class_r1000_m100_s")
        if tc is not None:
            n_cls = a.plateau_pixels / 1000
            res["plateau"] = {"pixels": a.plateau_pixels, "classes": n_cls,
                              "hours_by_workers": {w: n_cls * tc / w / 3600 for w in a.workers}}
            for w in a.workers:
                print(f"plateau {a.plateau_pixels:.0e} px: {n_cls * tc / w / 3600:.1f} h on {w} workers", flush=True)
    if "recovery" not in a.skip:
        res["recovery"] = {}
        for r in a.sim_r:
            print(f"recovery r={r}, m={a.sim_m}, {a.trials} trials per scenario, seed {a.seed}", flush=True)
            res["recovery"][str(r)] = {"r": r, "m": a.sim_m, "seed": a.seed, "level": a.level,
                                       "scenarios": recovery(a.trials, r, a.sim_m, a.seed, a.alpha_pixels, a.level)}
    if "coverage" not in a.skip:
        res["coverage"] = coverage(a.coverage_classes, a.sim_r[0], a.sim_m, rng)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(res, fh, indent=2, default=float)


if __name__ == "__main__":
    main()
