"""Semi-real unwrapping benchmark (issue 21): known signals + each real LiCSAR interferogram's own noise and mask.

Built from frame 106A_09048_000909 (../shared/data/licsar; loader shared with unwrap_real.py):

* **mask**: the interferogram's no-data (phase 0 or coherence 0) and LiCSAR's landmask (water = no data);
* **noise**: ``n = wrap(psi - angle(box9(exp(i psi))))``: the real wrapped phase minus its 9 x 9 phasor
  low-pass. LiCSAR's phase is already filtered; what its low-pass leaves is the decorrelation noise
  with its real amplitude, its dependence on coherence, its short-range correlation and its residues,
  which are what break unwrappers. The real long-wavelength signal (atmosphere, deformation), whose
  truth nobody knows, is removed. Real fringes steeper than the 9-px filter passes stay in ``n`` (so
  the noise is, if anything, pessimistic). Filtering the phasor, not the phase, adds no wraps.
* **signals** (rad, defined on the array that is unwrapped; centre = the valid pixel nearest the
  median of the valid pixels):
  ``bowl``: Gaussian subsidence, max gradient 0.25 rad/px, sigma = side/5;
  ``lobe``: steep Mogi-like uplift ``A / (1 + r^2/d^2)^1.5``, d = 25 px, max gradient 0.6 rad/px;
  ``fault``: screw dislocation ``(s/pi) atan(x'/D)`` with s = 12 rad, D = 8 px, plus a 1.5 rad
  surface step, fault through the centre at 30 degrees;
  ``ramp``: 0.06 rad/px in x, -0.04 rad/px in y (an orbit-like trend across the whole array).
* **truth** ``T = S + n``; input ``wrap(T)`` under the mask.

Metrics per method, over valid pixels, from the congruent output ``u`` (every method here is run
congruent, so ``u - T`` is a whole number of cycles per pixel):

* ``off_frac``: share of pixels with ``|u - T - 2 pi k0| > pi``, ``k0`` the best single offset (the mode
  of the cycle count) over the whole array, as the issue asks: separate islands must also be
  referenced right;
* ``off_frac_region``: the same with one best offset per 4-connected valid region (what is observable
  from the data alone);
* ``rmse_rad``: RMS of ``u - T - 2 pi k0``;
* ``cpu_s_per_mpx``: CPU seconds (process + children: snaphu runs a child process) per megapixel of
  the unwrapped array (window or whole frame, no-data included, as a user pays for the frame).

Sets: ``window`` = the 256-px coastal window (most valid pixels among windows <= 80% valid) and the
256-px window with most valid pixels; ``frame`` = the whole 1913 x 1840 frame (``--frame-pairs`` pairs).

    python benchmarks/unwrap_semireal.py --json bench-output/unwrap/semireal.json
    python benchmarks/unwrap_semireal.py --sets window --json /tmp/semireal_win.json --methods ls,multiscale,snaphu
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json  # noqa: E402
from unwrap_real import DEFAULT_DIR, _cpu, best_window, load  # noqa: E402

from insarcloud.unwrap import unwrap, wrap  # noqa: E402
from insarcloud.unwrap.semireal import SIGNALS, centre_of, cycle_score, known_signal, real_noise  # noqa: E402

log = logging.getLogger("unwrap_semireal")

# name -> (method, params, weights from coherence?)
METHODS: dict[str, tuple[str, dict[str, Any], bool]] = {
    "ls": ("ls", {}, False),
    "wls": ("wls", {}, True),
    "chebyshev": ("chebyshev", {}, False),
    "multiscale": ("multiscale", {}, True),  # defaults: looks 4, coarse snaphu, regions bridged
    "multiscale_ls": ("multiscale", {"coarse": "ls"}, True),
    "multiscale_trend": ("multiscale", {"regions": "trend"}, True),
    "skimage": ("skimage", {}, False),
    "snaphu": ("snaphu", {"nlooks": 10.0}, True),
}
DEFAULT_METHODS = "ls,wls,chebyshev,multiscale,multiscale_ls,multiscale_trend,skimage,snaphu"


def load_landmask(frame_dir: Path) -> np.ndarray | None:
    import rasterio

    f = next(iter((frame_dir / "metadata").glob("*.geo.landmask.tif")), None)
    if f is None:
        return None
    with rasterio.open(f) as ds:
        return ds.read(1) != 0


def run_method(name: str, psi: np.ndarray, coh: np.ndarray) -> tuple[np.ndarray, float]:
    method, params, use_w = METHODS[name]
    t0 = _cpu()
    if method == "skimage":
        from skimage.restoration import unwrap_phase

        bad = ~np.isfinite(psi)  # NaN under the mask makes skimage crawl: zero it, mask it
        out = np.asarray(unwrap_phase(np.ma.array(np.where(bad, 0.0, psi), mask=bad)).filled(np.nan),
                         dtype=np.float64)
        return out, _cpu() - t0
    w = coh if use_w else None
    fd = os.dup(1)  # snaphu's C log (also from multiscale's coarse solve) would drown the table
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        try:
            out = unwrap(psi, method, w, congruent=True, **params)  # type: ignore[arg-type]
        finally:
            os.dup2(fd, 1)
            os.close(fd)
    return np.asarray(out, dtype=np.float64), _cpu() - t0


def score(u: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    return cycle_score(u, truth, valid)._asdict()


def run_set(set_name: str, phase: np.ndarray, coh: np.ndarray, pairs: list[str], methods: list[str],
            signals: list[str]) -> dict[str, Any]:
    npx = phase.shape[1] * phase.shape[2]
    rows: dict[str, dict[str, list[float]]] = {m: {"off_frac": [], "off_frac_region": [], "rmse_rad": [],
                                                  "cpu_s": []} for m in methods}
    cases = []
    for i, p in enumerate(pairs):
        valid = np.isfinite(phase[i])
        noise = real_noise(phase[i])
        nreg = int(ndimage.label(valid)[1])
        c = centre_of(valid)
        for s in signals:
            truth = known_signal(s, valid.shape, c) + noise
            psi = np.where(valid, wrap(truth), np.nan)
            case = {"pair": p, "signal": s, "valid_frac": float(valid.mean()), "regions": int(nreg)}
            for m in methods:
                u, dt = run_method(m, psi, coh[i])
                sc = score(u, truth, valid)
                for key, val in sc.items():
                    rows[m][key].append(val)
                rows[m]["cpu_s"].append(dt)
                case[m] = {**sc, "cpu_s": dt}
                log.info("%s %s %-6s %-18s off %6.2f%% (region %6.2f%%) rmse %6.3f cpu %6.2f s", set_name, p, s,
                         m, 100 * sc["off_frac"], 100 * sc["off_frac_region"], sc["rmse_rad"], dt)
            cases.append(case)
    summary = {}
    for m, r in rows.items():
        summary[m] = {
            "off_frac_mean": float(np.mean(r["off_frac"])),
            "off_frac_region_mean": float(np.mean(r["off_frac_region"])),
            "rmse_rad_mean": float(np.mean(r["rmse_rad"])),
            "cpu_s_per_mpx": float(np.sum(r["cpu_s"]) / (len(r["cpu_s"]) * npx / 1e6)),
            "cpu_s_mean": float(np.mean(r["cpu_s"])),
        }
        for s in signals:
            idx = [j for j, cs in enumerate(cases) if cs["signal"] == s]
            summary[m][f"off_frac_{s}"] = float(np.mean([r["off_frac"][j] for j in idx]))
    return {"shape": list(phase.shape[1:]), "pixels": npx, "summary": summary, "cases": cases}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", required=True)
    ap.add_argument("--data", default=str(DEFAULT_DIR), help="LiCSAR frame folder")
    ap.add_argument("--sets", default="window,frame", help="comma list of window, frame, speed (multiscale on "
                    "the real interferograms themselves, --frame-pairs of them)")
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--pairs", type=int, default=6, help="pairs used in the windows")
    ap.add_argument("--frame-pairs", type=int, default=2, help="pairs used on the whole frame")
    ap.add_argument("--methods", default=DEFAULT_METHODS)
    ap.add_argument("--frame-methods", default=None, help="methods on the whole frame (default: --methods)")
    ap.add_argument("--signals", default=",".join(SIGNALS))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    t_start, load0 = time.time(), os.getloadavg()
    frame = Path(args.data)
    pairs, phase, coh = load(frame)
    land = load_landmask(frame)
    if "speed" in args.sets.split(","):
        out_speed = []
        for i in range(args.frame_pairs):
            for masked in (False, True):
                a, c = phase[i].copy(), coh[i].copy()
                if masked and land is not None:
                    a[~land], c[~land] = np.nan, np.nan
                w0 = time.time()
                _, dt = run_method("multiscale", a, c)
                out_speed.append({"pair": pairs[i], "landmask": masked, "valid_frac": float(np.isfinite(a).mean()),
                                  "cpu_s": dt, "wall_s": time.time() - w0, "loadavg_1min": os.getloadavg()[0]})
                log.info("speed %s", out_speed[-1])
    if land is not None:
        phase[:, ~land] = np.nan
        coh[:, ~land] = np.nan
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        ap.error(f"unknown methods {unknown}; choose from {list(METHODS)}")
    signals = [s for s in args.signals.split(",") if s]
    out: dict[str, Any] = {"data": str(frame), "pairs": pairs, "landmask": land is not None,
                           "signals": signals, "methods": {m: METHODS[m][:2] for m in methods}, "sets": {}}
    if "speed" in args.sets.split(","):
        # whole-frame speed goal (issue 21): one real 1913 x 1840 interferogram, as LiCSAR gives it
        # (sea data kept) and with the landmask, < 30 CPU-s
        out["speed_real_multiscale"] = out_speed
    sets = args.sets.split(",")
    if "window" in sets:
        allv = np.isfinite(phase).all(axis=0)
        for wname, cap in (("coast", 0.8), ("land", 1.0)):
            win = best_window(allv, args.window, max_frac=cap)
            sub = run_set(f"window-{wname}", phase[: args.pairs, win[0], win[1]], coh[: args.pairs, win[0], win[1]],
                          pairs[: args.pairs], methods, signals)
            sub["rows"], sub["cols"] = [win[0].start, win[0].stop], [win[1].start, win[1].stop]
            out["sets"][f"window_{wname}"] = sub
    if "frame" in sets:
        fm = [m for m in (args.frame_methods or args.methods).split(",") if m]
        out["sets"]["frame"] = run_set("frame", phase[: args.frame_pairs], coh[: args.frame_pairs],
                                       pairs[: args.frame_pairs], fm, signals)
    out["machine"] = {"cpus": os.cpu_count(), "loadavg_start": load0, "loadavg_end": os.getloadavg(),
                      "note": "shared 2-core machine: times are CPU seconds (process + children)"}
    out["elapsed_s"] = time.time() - t_start
    write_json(args.json, out)
    for sname, sub in out["sets"].items():
        print(f"\n{sname} {sub['shape']} ({sub.get('rows', '')} {sub.get('cols', '')})")
        print(f"{'method':18s} {'off>pi':>7s} {'region':>7s} {'RMSE':>6s} {'cpu s/Mpx':>9s}  "
              + " ".join(f"{s:>6s}" for s in signals))
        for m, r in sub["summary"].items():
            print(f"{m:18s} {100 * r['off_frac_mean']:6.2f}% {100 * r['off_frac_region_mean']:6.2f}% "
                  f"{r['rmse_rad_mean']:6.3f} {r['cpu_s_per_mpx']:9.2f}  "
                  + " ".join(f"{100 * r[f'off_frac_{s}']:5.2f}%" for s in signals))
    for r in out.get("speed_real_multiscale", []):
        print(f"speed multiscale {r['pair']} landmask={r['landmask']}: {r['cpu_s']:.2f} CPU-s "
              f"({r['wall_s']:.1f} s wall, load {r['loadavg_1min']:.1f})")
    print(f"\nload average start {load0}, end {os.getloadavg()}; elapsed {out['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
