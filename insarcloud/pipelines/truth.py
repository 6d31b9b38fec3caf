"""The area job's results against the simulator's truth (simulated inputs only).

When a job's inputs come from ``insarcloud.simulate`` (``make demo``, ``benchmarks/area.py``, the end-to-end
tests), the simulator's truth cubes sit beside them and the job can say how right it is: LOS velocity RMSE
per frame, of the mosaic over the whole area and over the overlaps, and of the east/up decomposition. The
figures go into the run summary and the HTML report.

InSAR velocities are relative (every map has its own datum), so each RMSE is taken after removing the median
difference; that datum is reported too. The anchor is the truth's own spread about its median (the RMSE of a
map of zeros), so ``rmse_over_spread`` says how much of the signal is left unexplained.

When a frame has a complete ``forecast`` group, its forecast is scored against the truth's continuation
(the simulated deformation is a secular rate plus an annual cycle, so the truth is known beyond the record)
beside the per-pixel harmonic regression of the same ts displacement (``forecast_vs_truth``).

``truth_verdict`` turns the comparison into sentences (the demo's summary line, the report's opening).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

log = logging.getLogger("insarcloud.area_job")

# LiCSAR's geocoded products and the simulator share this posting; area grids are built on it too
POSTING_DEG = 0.001


def rmse_after_datum(est: np.ndarray, truth: np.ndarray, std: np.ndarray | None = None
                     ) -> dict[str, float | int | None]:
    """RMSE of ``est - truth`` (mm/yr) after removing their median difference, over pixels finite in both.

    With ``std`` (the reported 1-sigma precision), also the fraction of pixels whose error lies within
    1.96 sigma: about 0.95 when the precision is honest, far less when it is optimistic.
    """
    ok = np.isfinite(est) & np.isfinite(truth)
    if ok.sum() < 10:
        return {"n": int(ok.sum())}
    d = est[ok] - truth[ok]
    datum = float(np.median(d))
    t = truth[ok] - np.median(truth[ok])
    rmse = float(np.sqrt(np.mean((d - datum) ** 2)))
    spread = float(np.sqrt(np.mean(t**2)))
    out = {"rmse_mm_yr": round(rmse, 3), "truth_spread_mm_yr": round(spread, 3),
           "rmse_over_spread": round(rmse / spread, 3) if spread else None, "datum_mm_yr": round(datum, 3),
           "n": int(ok.sum())}
    if std is not None:  # over the pixels that report a precision
        s = std[ok]
        has = np.isfinite(s) & (s > 0)
        if has.any():
            out["median_std_mm_yr"] = round(float(np.median(s[has])), 3)
            out["frac_within_1.96_sigma"] = round(float(np.mean(np.abs(d - datum)[has] <= 1.96 * s[has])), 3)
    return out


def forecast_vs_truth(truth: xr.Dataset, ts: xr.Dataset, fc: xr.Dataset, horizon_days: float = 732.0
                      ) -> dict[str, float | int]:
    """RMSE (mm) of a forecast group and of the harmonic baseline against the truth beyond the record.

    The simulator's LOS displacement is ``velocity * t + seasonal(t)`` (secular rate plus a pure annual
    cycle per pixel, ``insarcloud.simulate.deformation``), so its continuation is exact: the rate from
    ``truth.velocity`` and the annual cycle fitted (cos, sin) to ``truth.seasonal`` over the record. Both the
    forecast (``fc.displacement``, (forecast_date, y, x) mm) and the baseline (trend + annual + semi-annual
    least squares on ``ts.displacement``, ``insarcloud.forecast.harmonic``) continue the ts series, whose
    datum is a reference pixel: each date's median difference to the truth is removed before the RMSE.
    Pixels: finite in both over the forecast dates within ``horizon_days`` of the last observed date (732:
    61 steps of 12 days, the first whole step count reaching 2 years).
    """
    from insarcloud.forecast.harmonic import fit_harmonic, predict_harmonic

    dates = ts["date"].values
    fdates = fc["forecast_date"].values
    keep = (fdates - dates[-1]) / np.timedelta64(1, "D") <= horizon_days + 1e-6
    fdates = fdates[keep]
    tday = (truth["date"].values - np.datetime64("1970-01-01")) / np.timedelta64(1, "D") / 365.25
    g = np.stack([np.cos(2 * np.pi * tday), np.sin(2 * np.pi * tday)], 1)
    seas = np.asarray(truth["seasonal"].values, np.float64)
    nt, ny, nx = seas.shape
    cs = np.linalg.lstsq(g, seas.reshape(nt, -1), rcond=None)[0]
    tf = (fdates - np.datetime64("1970-01-01")) / np.timedelta64(1, "D") / 365.25
    gf = np.stack([np.cos(2 * np.pi * tf), np.sin(2 * np.pi * tf)], 1)
    yrs = (fdates - truth["date"].values[-1]) / np.timedelta64(1, "D") / 365.25
    last = np.asarray(truth["displacement"].values[-1], np.float64).reshape(-1)
    true_f = (last[None] + yrs[:, None] * np.asarray(truth["velocity"].values, np.float64).reshape(1, -1)
              + gf @ cs - seas[-1].reshape(1, -1))
    d = np.asarray(ts["displacement"].values, np.float64).reshape(len(dates), -1)
    est = np.asarray(fc["displacement"].values[keep], np.float64).reshape(len(fdates), -1)
    ok = np.isfinite(d).all(0) & np.isfinite(est).all(0) & np.isfinite(true_f).all(0)
    if ok.sum() < 10:
        return {"n": int(ok.sum())}
    harm = predict_harmonic(fit_harmonic(dates, d[:, ok]), fdates)

    def score(x: np.ndarray) -> float:
        e = x - true_f[:, ok]
        e = e - np.median(e, axis=1, keepdims=True)
        return round(float(np.sqrt(np.mean(e**2))), 3)

    t = true_f[:, ok] - np.median(true_f[:, ok], axis=1, keepdims=True)
    return {"forecast_rmse_mm": score(est[:, ok]), "harmonic_rmse_mm": score(harm),
            "truth_spread_mm": round(float(np.sqrt(np.mean(t**2))), 3), "horizon_days": int(round(
                (fdates[-1] - dates[-1]) / np.timedelta64(1, "D"))), "n": int(ok.sum())}


def _place(area: xr.Dataset, name: str, truth: xr.DataArray, out: np.ndarray, count: np.ndarray) -> None:
    """Paste a frame's truth map onto the area grid (same posting, so an index shift)."""
    iy = np.round((area.y.values[0] - truth.y.values) / POSTING_DEG).astype(int)
    ix = np.round((truth.x.values - area.x.values[0]) / POSTING_DEG).astype(int)
    oky, okx = (iy >= 0) & (iy < area.sizes["y"]), (ix >= 0) & (ix < area.sizes["x"])
    out[np.ix_(iy[oky], ix[okx])] = truth.values[np.ix_(oky, okx)]
    count[np.ix_(iy[oky], ix[okx])] += 1


def _complete_group(cube: str, group: str, so: dict[str, Any] | None) -> xr.Dataset | None:
    """The cube's ``group`` when its stage marked it complete and it has velocity and velocity_std, else None."""
    from insarcloud.io import read_marker
    from insarcloud.io.stages import optional_input_group

    # that kind's current output (the stage pointer, docs/STAGES.md), else the group of that name
    group = optional_input_group(cube, "invert" if group.startswith("ts_") else group, group, so) or group
    if not (read_marker(cube, group, so) or {}).get("complete"):
        return None
    ds = xr.open_zarr(cube, group=group, storage_options=so)
    return ds if {"velocity", "velocity_std"} <= set(ds) else None


def _complete_forecast(cube: str, so: dict[str, Any] | None) -> xr.Dataset | None:
    """The cube's ``forecast`` group when its stage marked it complete, else None."""
    from insarcloud.io.stages import current_group

    try:
        group = current_group(cube, "forecast", so)  # the stage pointer, else the legacy "forecast" group
    except (OSError, KeyError, ValueError):
        return None
    if group is None:
        return None
    ds = xr.open_zarr(cube, group=group, storage_options=so)
    return ds if "displacement" in ds else None


def compare_to_truth(truth_urls: Mapping[str, str], ts_urls: Mapping[str, tuple[str, str]],
                     area_url: str | None, storage_options: dict[str, Any] | None = None,
                     precision_group: str | None = None) -> dict[str, Any]:
    """Velocity RMSE against the truth per frame and for the mosaic.

    ``frames`` scores each frame's ts group: its WLS velocity and the white-noise ``velocity_std`` scaled by the
    residual variance. With ``precision_group`` (the noise stage's group, the one the mosaic takes its velocity
    and precision from), ``frames_<group>`` scores that group's GLS velocity and its precision under the
    estimated noise model too, for the frames that have it complete: both are reported because the white-noise
    sigma is the one LiCSBAS/MintPy users know, and the demo shows it covers far less than 95%.

    Parameters
    ----------
    truth_urls
        frame -> URL of its truth Zarr (``velocity`` LOS mm/yr, ``velocity_east``/``velocity_up`` mm/yr).
    ts_urls
        frame -> (cube URL, ts group) of the frames that finished.
    area_url
        The area cube, or None when the mosaic did not run.
    """
    so = storage_options or None  # zarr refuses storage_options on a plain local path
    truths = {f: xr.open_zarr(u, storage_options=so) for f, u in truth_urls.items()}
    out: dict[str, Any] = {"frames": {}, "mosaic": {}}
    for f, (cube, group) in ts_urls.items():
        if f not in truths:
            continue
        ts = xr.open_zarr(cube, group=group, storage_options=so)
        out["frames"][f] = rmse_after_datum(ts.velocity.values, truths[f].velocity.values, ts.velocity_std.values)
        if precision_group:
            pg = _complete_group(cube, precision_group, so)
            if pg is not None:
                out.setdefault(f"frames_{precision_group}", {})[f] = rmse_after_datum(
                    pg.velocity.values, truths[f].velocity.values, pg.velocity_std.values)
        fc = _complete_forecast(cube, so)
        if fc is not None and "seasonal" in truths[f]:
            try:
                out.setdefault("forecast", {})[f] = forecast_vs_truth(truths[f], ts, fc)
            except Exception as exc:  # noqa: BLE001 -- a forecast score must never cost the velocity scores
                log.warning("%s: could not score the forecast against the truth: %s", f, exc)
    if area_url is None:
        return out
    area = xr.open_zarr(area_url, storage_options=so)
    for d in ("A", "D"):
        name = f"velocity_{d}"
        if name not in area:
            continue
        truth_map, count = np.full(area[name].shape, np.nan), np.zeros(area[name].shape, int)
        for f, t in truths.items():
            if f[3] == d:  # frame id NNN[AD]_...: the pass direction
                _place(area, name, t.velocity, truth_map, count)
        est = area[name].values
        std = area[f"velocity_std_{d}"].values if f"velocity_std_{d}" in area else None
        out["mosaic"][name] = {"whole": rmse_after_datum(est, truth_map, std),
                               "overlaps": rmse_after_datum(np.where(count > 1, est, np.nan), truth_map, std)}
    for comp in ("east", "up"):
        name = f"velocity_{comp}"
        if name not in area:
            continue
        truth_map, count = np.full(area[name].shape, np.nan), np.zeros(area[name].shape, int)
        for t in truths.values():
            if name in t:
                _place(area, name, t[name], truth_map, count)
        std = area[f"{name}_std"].values if f"{name}_std" in area else None
        out["mosaic"][name] = rmse_after_datum(area[name].values, truth_map, std)
    return out


# ----------------------------------------------------------------------------------------------------
# In words


def _verdict_line(label: str, st: Mapping[str, Any]) -> str | None:
    r = st.get("rmse_over_spread")
    if r is None:
        return None
    gain = (1.0 - r) * 100.0
    how = (f"beats a zero map by {gain:.0f}%" if r < 1.0
           else f"does NOT beat a zero map (worse by {-gain:.0f}%)")
    line = (f"{label}: velocity RMSE {r:.2f} x truth spread ({st['rmse_mm_yr']:.2f} of "
            f"{st['truth_spread_mm_yr']:.2f} mm/yr): {how}")
    if "frac_within_1.96_sigma" in st:
        line += f"; {100 * st['frac_within_1.96_sigma']:.0f}% of errors within 1.96 sigma"
    return line


def truth_verdict(truth: Mapping[str, Any] | None, precision_group: str = "noise") -> list[str]:
    """Sentences saying how the job's velocities (and forecasts) compare with the simulator's truth.

    Parameters
    ----------
    truth
        The dict ``compare_to_truth`` returns (``AreaResult.truth``; ``summary.json``'s ``"truth"``):
        ``frames`` {frame: stats} (the ts group's WLS velocity), optionally ``frames_<precision_group>``
        {frame: stats} (the noise stage's GLS velocity and its precision: preferred per frame when present,
        because the mosaic takes its velocity and precision from there), ``mosaic`` {``velocity_A``/
        ``velocity_D``: {"whole": stats, "overlaps": stats}, ``velocity_east``/``velocity_up``: stats} and
        optionally ``forecast`` {frame: ``forecast_vs_truth`` dict}. ``stats`` are ``rmse_after_datum``
        dicts: ``rmse_mm_yr``, ``truth_spread_mm_yr``, ``rmse_over_spread`` and, when a precision was
        reported, ``frac_within_1.96_sigma``. None or an empty dict gives one sentence saying so.

    Returns
    -------
    list of str
        First an overall sentence (how many maps beat a map of zeros, the worst RMSE / spread), then one
        sentence per frame, per mosaic map (A, D, east, up) and per scored forecast, e.g.
        ``"velocity_up (mosaic): velocity RMSE 0.31 x truth spread (1.20 of 3.90 mm/yr): beats a zero map by
        69%; 94% of errors within 1.96 sigma"``.
    """
    if not truth:
        return ["no comparison with a truth (the inputs were not simulated, or the truth could not be read)"]
    lines: list[str] = []
    prec = truth.get(f"frames_{precision_group}", {})
    for f, st in truth.get("frames", {}).items():
        src = prec.get(f) if prec.get(f, {}).get("rmse_over_spread") is not None else st
        tag = f"{f} ({precision_group} stage)" if src is not st else f"{f} (ts)"
        if (ln := _verdict_line(tag, src)) is not None:
            lines.append(ln)
    mosaic = truth.get("mosaic", {})
    for name in ("velocity_A", "velocity_D", "velocity_east", "velocity_up"):
        st = mosaic.get(name)
        st = st.get("whole") if isinstance(st, Mapping) and "whole" in st else st
        if st and (ln := _verdict_line(f"{name} (mosaic)", st)) is not None:
            lines.append(ln)
    ratios = [float(ln.split("velocity RMSE ")[1].split(" x")[0]) for ln in lines]
    head = (f"against the simulated truth, {sum(r < 1 for r in ratios)} of {len(ratios)} velocity maps beat a "
            f"map of zeros; the worst RMSE is {max(ratios):.2f} x the truth spread" if ratios
            else "no velocity map could be compared with the truth")
    for f, st in truth.get("forecast", {}).items():
        if "forecast_rmse_mm" in st:
            fr, hr = st["forecast_rmse_mm"], st["harmonic_rmse_mm"]
            # within 1% is a tie, not a win: the harmonic-residual design adds the network's residual to the
            # harmonic fit, and a residual near zero leaves the baseline's score (the demo: 8.639 vs 8.640 mm)
            cmp = ("ties (within 1%)" if abs(fr - hr) <= 0.01 * hr else "is below" if fr < hr else "is NOT below")
            lines.append(f"{f} forecast: {st['horizon_days'] / 365.25:.1f}-year RMSE {fr:.2f} mm against the "
                         f"truth's continuation, {cmp} the harmonic baseline's {hr:.2f} mm "
                         f"(truth spread {st['truth_spread_mm']:.1f} mm)")
    return [head, *lines]
