"""The per-area report: PNG maps and plots plus one HTML page, written to the bucket.

Everything is read through ``insarcloud.io`` by group name; a product a stage did not make is listed as
missing in the page rather than failing the report.
"""

from __future__ import annotations

import datetime as _dt
import html
import io as _io
import json
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from insarcloud.errors import CubeError
from insarcloud.io import open_cube
from insarcloud.io.storage import join, write_bytes_atomic

log = logging.getLogger(__name__)


def _fig_png(fig: Any, dpi: int) -> bytes:
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _map_png(da: Any, title: str, cmap: str, dpi: int, symmetric: bool = False, label: str = "") -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vals = np.asarray(da.values, dtype=float)
    finite = vals[np.isfinite(vals)]
    vmin, vmax = (np.percentile(finite, [2, 98]) if finite.size else (0, 1))
    if symmetric:
        m = max(abs(vmin), abs(vmax), 1e-6)
        vmin, vmax = -m, m
    fig, ax = plt.subplots(figsize=(6, 5))
    lon, lat = da["x"].values, da["y"].values
    im = ax.imshow(vals, extent=(lon[0], lon[-1], lat[-1], lat[0]), cmap=cmap, vmin=vmin, vmax=vmax,
                   interpolation="nearest")
    fig.colorbar(im, ax=ax, label=label or da.attrs.get("units", ""))
    ax.set_title(title)
    ax.set_xlabel("longitude (deg E)")
    ax.set_ylabel("latitude (deg N)")
    return _fig_png(fig, dpi)


def _network_png(root: Any, frame: str, dpi: int) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dates = root["date"].values
    bperp = root["bperp"].values if "bperp" in root else np.zeros(dates.size)
    pos = {d: b for d, b in zip(dates, bperp, strict=True)}
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for p, s in zip(root["primary"].values, root["secondary"].values, strict=True):
        ax.plot([p, s], [pos.get(p, 0), pos.get(s, 0)], color="tab:blue", lw=0.6, alpha=0.7)
    ax.plot(dates, bperp, "o", color="k", ms=3)
    ax.set_title(f"{frame}: {root.sizes['pair']} interferograms, {dates.size} epochs")
    ax.set_ylabel("Bperp (m)")
    fig.autofmt_xdate()
    return _fig_png(fig, dpi)


def _nearest(ds: Any, lon: float, lat: float) -> tuple[int, int] | None:
    x, y = ds["x"].values, ds["y"].values
    if not (min(x) <= lon <= max(x) and min(y) <= lat <= max(y)):
        return None
    return int(np.abs(y - lat).argmin()), int(np.abs(x - lon).argmin())


def _series_png(points: Sequence[dict], cubes: dict[str, str], ts_group: str, forecast_group: str | None,
                storage_options: dict[str, Any] | None, dpi: int) -> tuple[bytes | None, list[str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    notes = []
    fig, axes = plt.subplots(len(points), 1, figsize=(8, 2.6 * len(points)), squeeze=False)
    drawn = False
    for ax, pt in zip(axes[:, 0], points, strict=True):
        ax.set_title(f"{pt['name']} ({pt['lon']:.3f}E, {pt['lat']:.3f}N)")
        ax.set_ylabel("LOS (mm)")
        for frame, url in cubes.items():
            try:
                ts = open_cube(url, storage_options, group=ts_group)
            except CubeError:
                continue
            ij = _nearest(ts, pt["lon"], pt["lat"])
            if ij is None:
                continue
            series = ts["displacement"].isel(y=ij[0], x=ij[1]).values
            if not np.isfinite(series).any():
                continue
            ax.plot(ts["date"].values, series, ".-", ms=3, label=f"{frame} observed")
            drawn = True
            if forecast_group:
                try:
                    fc = open_cube(url, storage_options, group=forecast_group)
                except CubeError:
                    notes.append(f"{frame}: no forecast group")
                    continue
                var = next((v for v in ("displacement", "forecast") if v in fc), next(iter(fc.data_vars)))
                tdim = [d for d in fc[var].dims if d not in ("y", "x")][0]
                ax.plot(fc[tdim].values, fc[var].isel(y=ij[0], x=ij[1]).values, "--", label=f"{frame} forecast")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.autofmt_xdate()
    return (_fig_png(fig, dpi) if drawn else None), notes


def _truth_table(truth: dict[str, Any]) -> str:
    rows = [(f"frame {f} (LOS, ts group, white-noise sigma)", "whole frame", st)
            for f, st in truth.get("frames", {}).items()]
    for key in sorted(k for k in truth if k.startswith("frames_")):
        rows += [(f"frame {f} (LOS, {key[7:]} group: GLS, estimated noise model)", "whole frame", st)
                 for f, st in truth[key].items()]
    for name, st in truth.get("mosaic", {}).items():
        if "whole" in st:
            rows += [(f"mosaic {name}", "whole area", st["whole"]), (f"mosaic {name}", "overlaps", st["overlaps"])]
        else:
            rows.append((f"mosaic {name}", "whole area", st))
    cells = "".join(
        f"<tr><td>{html.escape(what)}</td><td>{where}</td><td>{st.get('rmse_mm_yr', 'n/a')}</td>"
        f"<td>{st.get('truth_spread_mm_yr', 'n/a')}</td><td>{st.get('datum_mm_yr', 'n/a')}</td>"
        f"<td>{st.get('median_std_mm_yr', 'n/a')}</td><td>{st.get('frac_within_1.96_sigma', 'n/a')}</td>"
        f"<td>{st.get('n', 0)}</td></tr>" for what, where, st in rows)
    return ("<h2>Against the simulator's truth</h2><p>Velocity RMSE after removing the median difference "
            "(the datum: InSAR velocities are relative); the truth's own spread is the anchor.</p>"
            "<table border='1' cellpadding='3'><tr><th>map</th><th>pixels</th><th>RMSE mm/yr</th>"
            "<th>truth spread mm/yr</th><th>datum mm/yr</th><th>reported 1-sigma (median)</th>"
            "<th>errors within 1.96 sigma (0.95 = honest)</th><th>n</th></tr>" + cells + "</table>")


def write_report(area_url: str, report_url: str, *, area_name: str, cubes: dict[str, str],
                 ts_group: str, points: Sequence[dict] = (), forecast_group: str | None = "forecast",
                 run_summary: dict[str, Any] | None = None, truth: dict[str, Any] | None = None,
                 storage_options: dict[str, Any] | None = None, dpi: int = 110) -> str:
    """Write ``report_url/index.html`` and its PNGs; returns the page URL.

    ``truth`` (simulated inputs only) is the area job's comparison with the simulator's truth: ``{"frames":
    {frame: stats}, "mosaic": {name: stats | {"whole": stats, "overlaps": stats}}}`` with stats holding
    ``rmse_mm_yr``, ``truth_spread_mm_yr``, ``datum_mm_yr`` and ``n``; it becomes a table near the top.
    """
    figures: list[tuple[str, str]] = []
    missing: list[str] = []

    def put(name: str, png: bytes, caption: str) -> None:
        write_bytes_atomic(join(report_url, name), png, storage_options)
        figures.append((name, caption))

    try:
        area = open_cube(area_url, storage_options, complete_only=False)
        for name, cmap, sym, title in (
            ("velocity_A", "RdBu_r", True, "LOS velocity, ascending (+ toward satellite)"),
            ("velocity_D", "RdBu_r", True, "LOS velocity, descending (+ toward satellite)"),
            ("velocity_up", "RdBu_r", True, "vertical velocity"),
            ("velocity_east", "PuOr", True, "east velocity"),
            ("velocity_std_A", "viridis", False, "velocity precision (1-sigma), ascending"),
            ("velocity_std_D", "viridis", False, "velocity precision (1-sigma), descending"),
            ("velocity_up_std", "viridis", False, "vertical velocity precision (1-sigma)"),
        ):
            if name in area:
                put(f"{name}.png", _map_png(area[name], title, cmap, dpi, sym), title)
            else:
                missing.append(f"area map {name}")
    except CubeError as exc:
        missing.append(f"area cube ({exc})")
    for frame, url in cubes.items():
        try:
            root = open_cube(url, storage_options)
        except CubeError as exc:
            missing.append(f"{frame}: cube ({exc})")
            continue
        put(f"network_{frame}.png", _network_png(root, frame, dpi), f"{frame}: interferogram network")
        try:
            q = open_cube(url, storage_options, group="quality")
            put(f"quality_{frame}.png", _map_png(q["quality"].mean("pair").compute(), f"{frame}: mean quality",
                                                 "magma", dpi, label="0..1"), f"{frame}: mean ConvNeXt quality")
        except CubeError:
            missing.append(f"{frame}: quality maps")
        try:
            qc = open_cube(url, storage_options, group="qc")
            var = next((v for v in ("n_loop_err", "closure_count", "n_bad_loops", "closure_rms", "closure_abs_mean")
                        if v in qc), None) or next((v for v in qc.data_vars if "clos" in v and set(qc[v].dims) ==
                                                    {"y", "x"}), None)
            if var:
                put(f"closure_{frame}.png", _map_png(qc[var].compute(), f"{frame}: {var}", "inferno", dpi),
                    f"{frame}: loop closure ({var})")
            else:
                missing.append(f"{frame}: closure map")
        except CubeError:
            missing.append(f"{frame}: qc group")
    if points:
        png, notes = _series_png(points, cubes, ts_group, forecast_group, storage_options, dpi)
        missing += notes
        if png:
            put("timeseries.png", png, "time series (and forecast) at the chosen points")
        else:
            missing.append("time series at points (no frame covers them)")
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    body = [f"<h1>insarcloud area report: {html.escape(area_name)}</h1>",
            f"<p>generated {now}; area cube <code>{html.escape(area_url)}</code></p>",
            "<p>Sign convention: LOS velocity positive toward the satellite; up positive upward; mm/yr.</p>"]
    if truth:
        body.append(_truth_table(truth))
    if run_summary:
        body.append("<h2>Run</h2><pre>" + html.escape(json.dumps(run_summary, indent=1, default=str)) + "</pre>")
    for name, caption in figures:
        body.append(f"<figure><img src='{name}' alt='{html.escape(caption)}' style='max-width:900px'>"
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    if missing:
        body.append("<h2>Not available</h2><ul>" + "".join(f"<li>{html.escape(m)}</li>" for m in missing) + "</ul>")
    page = "<!doctype html><html><head><meta charset='utf-8'><title>insarcloud report</title></head><body>" + \
        "\n".join(body) + "</body></html>"
    url = join(report_url, "index.html")
    write_bytes_atomic(url, page.encode(), storage_options)
    return url
