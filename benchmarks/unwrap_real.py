"""Unwrapping on the real COMET-LiCSAR frame in ../shared/data/licsar: speed, known-signal error, closure.

For each method (ls, wls with coherence weights, pcua, rpua, chebyshev, snaphu with coherence, multiscale
with coherence):

* CPU time per megapixel over the six real interferograms (LiCSAR 0 = no data -> NaN, masked);
* a known smooth signal S (a 40 rad Gaussian bump + a ramp) added to each interferogram's real noise
  ``r = wrap(psi - angle(lowpass(exp(i psi))))`` under its real no-data mask: the error of the smooth
  output against S (RMSE after mean removal) and the fraction of pixels whose congruent output is off
  from ``S + r`` by whole cycles (the errors users feel);
* triplet misclosure of the congruent outputs ``unw_ij + unw_jk - unw_ik`` in whole cycles (the wrapped
  misclosure of LiCSAR's filtered phase is small, so non-zero cycles are unwrapping errors): fraction
  of valid pixels with a non-zero cycle count, after removing each triplet's median.

The frame is 1913 x 1840 and mostly sea; the LS solves with no-data are PCG iterations over the whole
bounding box, so by default a ``--window`` x ``--window`` land window (the one with most valid pixels)
is used; ``--full`` takes the whole frame (slow on a shared 2-core machine).

    python benchmarks/unwrap_real.py --json bench-output/unwrap_real.json --png bench-output/unwrap_real
    python benchmarks/unwrap_real.py --quick --json /tmp/unwrap_real_quick.json
    python benchmarks/unwrap_real.py --full --methods multiscale --json /tmp/unwrap_real_full_ms.json

The semi-real set of issue 21 (several signal shapes, real noise, no-data and water masks, whole frame
and windows, single-offset cycle errors) is ``benchmarks/unwrap_semireal.py``.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import write_json  # noqa: E402
from scipy import ndimage

from insarcloud.unwrap import unwrap, wrap

log = logging.getLogger("unwrap_real")

# ../shared next to the checkout (/work/main), or /work/shared seen from a worktree under /work/wt/<name>
_FRAME = Path("shared") / "data" / "licsar" / "106A_09048_000909"
DEFAULT_DIR = next((p / _FRAME for p in Path(__file__).resolve().parents[1:4] if (p / _FRAME).is_dir()),
                   Path(__file__).resolve().parents[2] / _FRAME)
METHODS = ("ls", "wls", "pcua", "rpua", "chebyshev", "snaphu", "multiscale")


def load(frame_dir: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    import rasterio

    pairs = sorted(p.name for p in (frame_dir / "interferograms").iterdir() if p.is_dir())
    ph, cc = [], []
    for p in pairs:
        base = frame_dir / "interferograms" / p / p
        with rasterio.open(f"{base}.geo.diff_pha.tif") as ds:
            a = ds.read(1).astype(np.float64)
        with rasterio.open(f"{base}.geo.cc.tif") as ds:
            c = ds.read(1).astype(np.float64) / 255.0
        bad = (a == 0) | (c == 0)
        a[bad] = np.nan
        c[bad] = np.nan
        ph.append(a)
        cc.append(c)
    return pairs, np.stack(ph), np.stack(cc)


def best_window(valid: np.ndarray, size: int, step: int = 32, max_frac: float = 0.8) -> tuple[slice, slice]:
    """The size x size window with the most valid pixels among those with at most ``max_frac`` valid
    (on a step grid): land with a real coastline / no-data edge in it."""
    ii = np.pad(valid.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    best, where = -1, (0, 0)
    for y0 in range(0, max(1, valid.shape[0] - size + 1), step):
        for x0 in range(0, max(1, valid.shape[1] - size + 1), step):
            y1, x1 = min(y0 + size, valid.shape[0]), min(x0 + size, valid.shape[1])
            s = ii[y1, x1] - ii[y0, x1] - ii[y1, x0] + ii[y0, x0]
            if s > best and s <= max_frac * (y1 - y0) * (x1 - x0):
                best, where = s, (y0, x0)
    return slice(where[0], where[0] + size), slice(where[1], where[1] + size)


def real_noise(psi: np.ndarray, window: int = 9) -> np.ndarray:
    """``wrap(psi - angle(lowpass(exp(i psi))))``: the interferogram minus its low-pass, NaN kept."""
    m = np.isfinite(psi)
    z = np.where(m, np.exp(1j * np.where(m, psi, 0.0)), 0)
    zf = ndimage.uniform_filter(z.real, window) + 1j * ndimage.uniform_filter(z.imag, window)
    return np.where(m, wrap(psi - np.angle(zf)), np.nan)


def known_signal(shape: tuple[int, int]) -> np.ndarray:
    ny, nx = shape
    y, x = np.mgrid[:ny, :nx].astype(np.float64)
    s = 40.0 * np.exp(-((x - 0.45 * nx) ** 2 + (y - 0.55 * ny) ** 2) / (2 * (min(ny, nx) / 7) ** 2))
    return s + 0.02 * x - 0.01 * y


def congruent(phi: np.ndarray, psi: np.ndarray) -> np.ndarray:
    m = np.isfinite(phi) & np.isfinite(psi)
    phi = phi + float(np.angle(np.sum(np.exp(1j * (psi[m] - phi[m])))))
    return phi + wrap(psi - phi)


def _cpu() -> float:
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


def run(method: str, psi: np.ndarray, coh: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(smooth, congruent, CPU seconds of this process and its children: the shared machine's load
    makes wall time meaningless)."""
    w = coh if method in ("wls", "snaphu", "multiscale") else None
    t0 = _cpu()
    if method == "snaphu":
        fd = os.dup(1)  # snaphu's C log would drown the table
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            try:
                out = unwrap(psi, "snaphu", w, nlooks=10.0)
            finally:
                os.dup2(fd, 1)
                os.close(fd)
        return out, out, _cpu() - t0
    fd = os.dup(1)  # multiscale's coarse snaphu log
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        try:
            out = unwrap(psi, method, w)  # type: ignore[arg-type]
        finally:
            os.dup2(fd, 1)
            os.close(fd)
    dt = _cpu() - t0
    return out, congruent(out, psi), dt


def components(valid: np.ndarray) -> np.ndarray:
    """4-connected regions of valid pixels (0 = no data): the unwrapped phase of each is defined only up
    to its own constant, so every error below is taken after one constant per region."""
    lab, _ = ndimage.label(valid)
    return lab


def per_region(values: np.ndarray, labels: np.ndarray, how: str) -> np.ndarray:
    """Subtract each region's median (``how="median"``) or mean from ``values`` (1-D, labels > 0)."""
    out = values.astype(np.float64).copy()
    for lab in np.unique(labels):
        sel = labels == lab
        out[sel] -= np.median(values[sel]) if how == "median" else np.mean(values[sel])
    return out


def misclosure(pairs: list[str], unw: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    out = []
    dates = sorted({d for p in pairs for d in p.split("_")})
    for a, b, c in itertools.combinations(dates, 3):
        ab, bc, ac = f"{a}_{b}", f"{b}_{c}", f"{a}_{c}"
        if not all(k in unw for k in (ab, bc, ac)):
            continue
        clo = unw[ab] + unw[bc] - unw[ac]
        m = np.isfinite(clo)
        if not m.any():
            continue
        lab = components(m)[m]
        cyc = np.round(per_region(clo[m], lab, "median") / (2 * np.pi))
        out.append({"triplet": [ab, bc, ac], "frac_nonzero_cycles": float(np.mean(cyc != 0)),
                    "mean_abs_cycles": float(np.mean(np.abs(cyc))), "n_valid": int(m.sum())})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", required=True)
    ap.add_argument("--png", default=None)
    ap.add_argument("--data", default=str(DEFAULT_DIR), help="LiCSAR frame folder")
    ap.add_argument("--window", type=int, default=256, help="land window side (pixels)")
    ap.add_argument("--full", action="store_true", help="whole frame instead of a window")
    ap.add_argument("--quick", action="store_true", help="128-pixel window")
    ap.add_argument("--methods", default=",".join(METHODS))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    t_start = time.time()
    load0 = os.getloadavg()
    pairs, phase, coh = load(Path(args.data))
    if args.full:
        win = (slice(0, phase.shape[1]), slice(0, phase.shape[2]))
    else:
        win = best_window(np.isfinite(phase).all(axis=0), 128 if args.quick else args.window)
    phase, coh = phase[:, win[0], win[1]], coh[:, win[0], win[1]]
    npx = phase.shape[1] * phase.shape[2]
    valid_frac = float(np.isfinite(phase).mean())
    log.info("%d pairs, window rows %s cols %s (%d px, %.0f%% valid)", len(pairs), win[0], win[1], npx,
             100 * valid_frac)
    regions = [int(components(np.isfinite(p)).max()) for p in phase]
    signal = known_signal(phase.shape[1:])
    noise = [real_noise(p) for p in phase]
    synth = [np.where(np.isfinite(r), wrap(signal + r), np.nan) for r in noise]
    results: dict[str, Any] = {}
    maps: dict[str, np.ndarray] = {}
    for method in [m for m in args.methods.split(",") if m]:
        secs, errs, cyc_err = [], [], []
        cong: dict[str, np.ndarray] = {}
        for i, p in enumerate(pairs):
            _, c, dt = run(method, phase[i], coh[i])
            cong[p] = c
            secs.append(dt)
            sm, sc, _ = run(method, synth[i], coh[i])
            m = np.isfinite(sm)
            lab = components(m)[m]
            e = per_region(sm[m] - signal[m], lab, "mean")
            errs.append(float(np.sqrt(np.mean(e**2))))
            k = np.round(per_region(sc[m] - (signal[m] + noise[i][m]), lab, "median") / (2 * np.pi))
            cyc_err.append(float(np.mean(k != 0)))
            if i == 0:
                err_map = np.full(sm.shape, np.nan)
                err_map[m] = e
                maps[method] = err_map
            log.info("%-9s %s %.2f s known-signal rmse %.3f cycle errors %.4f", method, p, dt, errs[-1],
                     cyc_err[-1])
        clo = misclosure(pairs, cong)
        results[method] = {
            "cpu_seconds_per_ifg": secs,
            "cpu_seconds_per_megapixel": float(np.sum(secs) / (len(pairs) * npx / 1e6)),
            "known_signal_rmse_rad": errs,
            "known_signal_rmse_mean_rad": float(np.mean(errs)),
            "known_signal_cycle_error_frac": cyc_err,
            "known_signal_cycle_error_frac_mean": float(np.mean(cyc_err)),
            "triplet_misclosure": clo,
            "misclosure_nonzero_frac_mean": float(np.mean([t["frac_nonzero_cycles"] for t in clo])) if clo else None,
        }
    out = {
        "data": str(args.data), "pairs": pairs,
        "window": {"rows": [win[0].start, win[0].stop], "cols": [win[1].start, win[1].stop], "pixels": npx,
                   "valid_frac": valid_frac, "valid_regions_per_ifg": regions},
        "errors": "after one constant per 4-connected valid region (each region's own arbitrary constant)",
        "known_signal": "40 rad Gaussian bump (sigma = side/7) + 0.02 rad/px x ramp - 0.01 rad/px y ramp",
        "noise": "wrap(psi - angle(9x9 box mean of exp(i psi))) of each real interferogram",
        "methods": results,
        "machine": {"cpus": os.cpu_count(), "loadavg_start": load0, "loadavg_end": os.getloadavg(),
                    "note": "shared machine: times are CPU seconds (process + children), not wall"},
        "elapsed_s": time.time() - t_start,
    }
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        png = Path(args.png)
        png.mkdir(parents=True, exist_ok=True)
        fig, axes = plt.subplots(2, 4, figsize=(16, 8))
        axes[0, 0].imshow(phase[0], cmap="twilight")
        axes[0, 0].set_title(f"real {pairs[0]} (rad)")
        axes[0, 1].imshow(synth[0], cmap="twilight")
        axes[0, 1].set_title("known signal + its real noise, wrapped")
        for ax, (m, e) in zip(list(axes.flat)[2:], maps.items(), strict=False):
            im = ax.imshow(e, cmap="RdBu_r", vmin=-2 * np.pi, vmax=2 * np.pi)
            ax.set_title(f"{m}: error vs known signal (rad)")
            fig.colorbar(im, ax=ax, shrink=0.7)
        fig.tight_layout()
        f = png / "known_signal_errors.png"
        fig.savefig(f, dpi=80)
        plt.close(fig)
        out["figures"] = [str(f)]
    write_json(args.json, out)
    print(f"window {out['window']}")
    print(f"{'method':10s} {'cpu s/Mpx':>8s} {'sig RMSE':>9s} {'cyc err':>8s} {'misclos':>8s}")
    for m, r in results.items():
        mc = r["misclosure_nonzero_frac_mean"]
        print(f"{m:10s} {r['cpu_seconds_per_megapixel']:8.1f} {r['known_signal_rmse_mean_rad']:9.3f} "
              f"{100 * r['known_signal_cycle_error_frac_mean']:7.2f}% "
              f"{'n/a' if mc is None else f'{100 * mc:7.2f}%'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
