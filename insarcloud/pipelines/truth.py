"""The area job's results against the simulator's truth (simulated inputs only).

When a job's inputs come from ``insarcloud.simulate`` (``make demo``, ``benchmarks/area.py``, the end-to-end
tests), the simulator's truth cubes sit beside them and the job can say how right it is: LOS velocity RMSE
per frame, of the mosaic over the whole area and over the overlaps, and of the east/up decomposition. The
figures go into the run summary and the HTML report.

InSAR velocities are relative (every map has its own datum), so each RMSE is taken after removing the median
difference; that datum is reported too. The anchor is the truth's own spread about its median (the RMSE of a
map of zeros), so ``rmse_over_spread`` says how much of the signal is left unexplained.
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

    if not (read_marker(cube, group, so) or {}).get("complete"):
        return None
    ds = xr.open_zarr(cube, group=group, storage_options=so)
    return ds if {"velocity", "velocity_std"} <= set(ds) else None


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
