"""The per-area report: PNG maps and plots plus one HTML page (Jinja2, ``report.html``), written to the bucket.

What the page shows and why is in docs/report.md. In short: the truth comparison first when there is one (a
sentence saying whether the velocities beat a map of zeros), a summary table (frames, pairs, time span,
stage times), maps side by side in a responsive grid, each frame's network and stage quicklooks, and the run
that produced each output read from the groups' completion markers (so a resumed run, where every stage
was skipped, still names the run that made the results). The run record is written beside the page as
``run.json`` (and ``runs/{run_id}.json``) and linked, not dumped.

Everything is read through ``insarcloud.io`` by group name; a product a stage did not make is listed as
missing in the page rather than failing the report. The report never writes into the cubes.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from insarcloud.errors import CubeError
from insarcloud.io import open_cube, open_stage
from insarcloud.io.storage import join, read_bytes, write_bytes_atomic

log = logging.getLogger(__name__)

TEMPLATE = "report.html"
AREA_MAPS = (  # (variable, colour map, signed, title)
    ("velocity_A", "RdBu_r", True, "LOS velocity, ascending (+ toward satellite)"),
    ("velocity_D", "RdBu_r", True, "LOS velocity, descending (+ toward satellite)"),
    ("velocity_up", "RdBu_r", True, "vertical velocity (+ up)"),
    ("velocity_east", "PuOr", True, "east velocity (+ east)"),
)
AREA_PRECISION = (
    ("velocity_std_A", "viridis", False, "velocity precision (1-sigma), ascending"),
    ("velocity_std_D", "viridis", False, "velocity precision (1-sigma), descending"),
    ("velocity_up_std", "viridis", False, "vertical velocity precision (1-sigma)"),
    ("velocity_east_std", "viridis", False, "east velocity precision (1-sigma)"),
)


def _render(**context: Any) -> str:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(loader=FileSystemLoader(Path(__file__).parent), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template(TEMPLATE).render(**context)


def _map_png(da: Any, title: str, cmap: str, dpi: int, symmetric: bool = False) -> bytes:
    """One area map drawn from its decimated overview (:mod:`insarcloud.plot.overview`): the page never reads
    the area at full resolution, whatever its size (issue 20)."""
    from insarcloud.plot.figures import Panel, maps_figure, png_bytes
    from insarcloud.plot.overview import overview, overview_values

    panel = (6.0, 5.0)
    ov = overview(da, max_px=int(panel[0] * dpi))  # a sample per drawn pixel: matplotlib's cost is per input pixel
    fig = maps_figure([Panel(overview_values(ov), title, da.attrs.get("units", "mm/yr"), cmap,
                             symmetric)], ov["y"].values, ov["x"].values, panel_size=panel)
    return png_bytes(fig, dpi)


def _nearest(ds: Any, lon: float, lat: float) -> tuple[int, int] | None:
    x, y = ds["x"].values, ds["y"].values
    if not (min(x) <= lon <= max(x) and min(y) <= lat <= max(y)):
        return None
    return int(np.abs(y - lat).argmin()), int(np.abs(x - lon).argmin())


def _series_png(points: Sequence[dict], cubes: dict[str, str], ts_group: str, forecast_group: str | None,
                storage_options: dict[str, Any] | None, dpi: int) -> tuple[bytes | None, list[str]]:
    from insarcloud.plot.figures import png_bytes, pyplot

    plt = pyplot()
    notes = []
    fig, axes = plt.subplots(len(points), 1, figsize=(8, 2.6 * len(points)), squeeze=False)
    drawn = False
    for ax, pt in zip(axes[:, 0], points, strict=True):
        ax.set_title(f"{pt['name']} ({pt['lon']:.3f}E, {pt['lat']:.3f}N)")
        ax.set_ylabel("LOS (mm)")
        for frame, url in cubes.items():
            try:
                ts = open_stage(url, "invert", storage_options, requested=ts_group)  # its current output
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
                    fc = open_stage(url, "forecast", storage_options, requested=forecast_group)
                except CubeError:
                    notes.append(f"{frame}: no forecast group")
                    continue
                var = next((v for v in ("displacement", "forecast") if v in fc), next(iter(fc.data_vars)))
                tdim = [d for d in fc[var].dims if d not in ("y", "x")][0]
                ax.plot(fc[tdim].values, fc[var].isel(y=ij[0], x=ij[1]).values, "--", label=f"{frame} forecast")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.autofmt_xdate()
    fig.tight_layout()
    if not drawn:
        plt.close(fig)
        return None, notes
    return png_bytes(fig, dpi), notes


# ----------------------------------------------------------------------------------------------------
# The truth comparison: rows and the headline sentence


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)


def versus_zeros(ratio: float | None) -> str:
    """``rmse_over_spread`` in words: how much better (or worse) than a map of zeros."""
    if ratio is None:
        return "n/a"
    pct = round(abs(1.0 - ratio) * 100)
    return f"{pct}% better than a map of zeros" if ratio < 1 else f"{pct}% worse than a map of zeros"


def truth_rows(truth: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(what, where, stats) rows: frames (ts group), frames of other groups, then the mosaic."""
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
    return rows


def truth_headline(truth: dict[str, Any]) -> dict[str, Any] | None:
    """The sentence that opens the page: the area's LOS velocity (else the first frame's) against a map of zeros."""
    rows = truth_rows(truth)
    preferred = [r for r in rows if r[0].startswith("mosaic velocity_A") and r[1] == "whole area"] + \
        [r for r in rows if r[0].startswith("mosaic velocity_D") and r[1] == "whole area"] + rows
    for what, where, st in preferred:
        ratio = st.get("rmse_over_spread")
        if ratio is None and st.get("truth_spread_mm_yr"):
            ratio = st["rmse_mm_yr"] / st["truth_spread_mm_yr"]
        if ratio is None:
            continue
        ratio = float(ratio)
        sentence = (f"Velocity RMSE ({what}, {where}) is {ratio:.2f} of the truth's spread "
                    f"({_fmt(st.get('rmse_mm_yr'))} of {_fmt(st.get('truth_spread_mm_yr'))} mm/yr): "
                    f"{versus_zeros(ratio)}.")
        return {"sentence": sentence, "beats": ratio < 1, "ratio": ratio}
    return None


def _truth_context(truth: dict[str, Any]) -> dict[str, Any]:
    rows = []
    for what, where, st in truth_rows(truth):
        ratio = st.get("rmse_over_spread")
        rows.append({"what": what, "where": where, "rmse": _fmt(st.get("rmse_mm_yr")),
                     "spread": _fmt(st.get("truth_spread_mm_yr")), "ratio": _fmt(ratio),
                     "versus": versus_zeros(ratio), "datum": _fmt(st.get("datum_mm_yr")),
                     "std": _fmt(st.get("median_std_mm_yr")), "within": _fmt(st.get("frac_within_1.96_sigma")),
                     "n": st.get("n", 0)})
    forecast = []  # the forecast beyond the record against the truth's continuation and the harmonic baseline
    for f, st in truth.get("forecast", {}).items():
        if "forecast_rmse_mm" in st:
            fr, hr = st["forecast_rmse_mm"], st["harmonic_rmse_mm"]
            forecast.append({"frame": f, "years": f"{st['horizon_days'] / 365.25:.1f}", "rmse": _fmt(fr),
                             "harmonic": _fmt(hr), "spread": _fmt(st.get("truth_spread_mm")),
                             "versus": ("ties the harmonic baseline (within 1%)" if abs(fr - hr) <= 0.01 * hr else
                                        f"{round(abs(1 - fr / hr) * 100)}% {'below' if fr < hr else 'above'} the "
                                        f"harmonic baseline") if hr else "n/a", "n": st.get("n", 0)})
    return {"rows": rows, "headline": truth_headline(truth), "forecast": forecast}


# ----------------------------------------------------------------------------------------------------
# Frames, provenance, quicklooks


def _frame_info(frame: str, url: str, so: dict[str, Any] | None, run: dict[str, Any]) -> dict[str, Any]:
    info: dict[str, Any] = {"frame": frame, "direction": {"A": "ascending", "D": "descending"}.get(frame[3:4], "?"),
                            "pairs": "", "epochs": "", "span": "", "stage_seconds": run.get("stage_seconds", {}),
                            "status": "ok" if run.get("ok", True) else f"FAILED: {run.get('error')}"}
    if not url:  # a frame that failed before its cube could be opened
        return info
    try:
        root = open_cube(url, so)
    except CubeError:
        return info
    dates = root["date"].values
    info.update(pairs=int(root.sizes.get("pair", 0)), epochs=int(dates.size))
    if dates.size:
        first, last = (np.datetime_as_string(d, unit="D") for d in (dates.min(), dates.max()))
        years = (dates.max() - dates.min()) / np.timedelta64(1, "D") / 365.25
        info["span"] = f"{first} to {last} ({years:.1f} yr)"
    return info


def _provenance(label: str, url: str, so: dict[str, Any] | None) -> list[dict[str, Any]]:
    from insarcloud.io import list_groups, read_marker

    rows = []
    try:
        groups = ["", *list_groups(url, so)]
    except CubeError:
        return rows
    for g in groups:
        m = read_marker(url, g, so) or {}
        if not m.get("stage") or g == "" and m.get("stage") == "ingest" and not m.get("complete"):
            continue
        run_id = m.get("run_id")
        rows.append({"cube": label, "group": g or "(root)", "stage": m.get("stage", ""),
                     "written_at": m.get("written_at", "") + ("" if m.get("complete") else " (incomplete)"),
                     "run_id": run_id or "a stage command (no area run)",
                     "run_href": None,
                     "params_hash": str(m.get("params_hash", ""))[:12]})
    return rows


def _quicklooks(frame: str, url: str, so: dict[str, Any] | None, dpi: int) -> list[tuple[str, bytes, str]]:
    """(name, png, caption) of every complete stage group's quicklooks: copied from the cube when the stage
    drew them, else drawn now (nothing is written into the cube)."""
    from insarcloud.io import list_groups, read_marker
    from insarcloud.io.cube import open_zarr_group
    from insarcloud.io.stages import read_pointers
    from insarcloud.plot.figures import png_bytes
    from insarcloud.plot.quicklooks import ATTR, FIGURES, STAGE_ALIASES

    out = []
    groups = []
    # the stages' current groups only (docs/STAGES.md); a cube written before pointers shows every group
    current = {p["group"] for p in read_pointers(url, so).values()}
    for g in list_groups(url, so):
        m = read_marker(url, g, so) or {}
        stage = STAGE_ALIASES.get(m.get("stage", ""), "")
        if m.get("complete") and stage in FIGURES and (not current or g in current):
            groups.append((list(FIGURES).index(stage), g, stage))
    for _, g, stage in sorted(groups):  # pipeline order: qc, quality, invert, noise
        listed = list(open_zarr_group(url, g, so).attrs.get(ATTR) or [])
        try:
            if listed:
                items = [(Path(rel).stem, read_bytes(join(url, g, rel), so)) for rel in listed]
            else:
                items = [(name, png_bytes(fig, dpi)) for name, fig in FIGURES[stage](url, g, so).items()]
        except Exception as exc:  # noqa: BLE001 - one unreadable picture must not lose the report
            log.warning("quicklooks of %s/%s: %s: %s", url, g, type(exc).__name__, exc)
            continue
        out += [(f"{frame}_{g}_{name}.png", png, f"{frame}: {g} {name.replace('_', ' ')}") for name, png in items]
    return out


def write_report(area_url: str, report_url: str, *, area_name: str, cubes: dict[str, str],
                 ts_group: str, points: Sequence[dict] = (), forecast_group: str | None = "forecast",
                 run_summary: dict[str, Any] | None = None, truth: dict[str, Any] | None = None,
                 storage_options: dict[str, Any] | None = None, dpi: int = 110,
                 job_seconds: dict[str, float] | None = None) -> str:
    """Write ``report_url/index.html``, its PNGs and ``run.json``; returns the page URL.

    ``truth`` (simulated inputs only) is the area job's comparison with the simulator's truth: ``{"frames":
    {frame: stats}, "mosaic": {name: stats | {"whole": stats, "overlaps": stats}}}`` with stats holding
    ``rmse_mm_yr``, ``truth_spread_mm_yr``, ``rmse_over_spread``, ``datum_mm_yr`` and ``n``; it opens the page.
    ``run_summary`` (with ``run_id`` and ``frames: {frame: {"ok", "error", "stage_seconds", ...}}``) is written
    to ``run.json`` and ``runs/{run_id}.json`` beside the page and linked.
    """
    from insarcloud.io.storage import exists

    so = storage_options
    missing: list[str] = []
    sections: list[dict[str, Any]] = []

    def put(name: str, png: bytes) -> str:
        write_bytes_atomic(join(report_url, name), png, so)
        return name

    def fig(src: str, png: bytes, caption: str) -> dict[str, Any]:
        # multi-panel pictures (network, loop closure, precision) take a whole row of the grid
        w, h = struct.unpack(">II", png[16:24]) if png[12:16] == b"IHDR" else (1, 1)
        return {"src": put(src, png), "caption": caption, "wide": w > 1.8 * h}

    def section(title: str, figures: list[dict[str, str]]) -> None:
        if figures:
            sections.append({"title": title, "figures": figures})

    run_summary = run_summary or {}
    run_id = run_summary.get("run_id")
    run_json = None
    if run_summary:
        blob = json.dumps(run_summary, indent=1, default=str).encode()
        run_json = put("run.json", blob)
        if run_id:
            put(f"runs/{run_id}.json", blob)
    try:
        area = open_cube(area_url, so, complete_only=False)
        for title, spec in (("Area velocity (mm/yr; A/D LOS, up/east)", AREA_MAPS),
                            ("Area velocity precision (mm/yr, 1-sigma)", AREA_PRECISION)):
            figs = []
            for name, cmap, sym, caption in spec:
                if name in area:
                    figs.append(fig(f"{name}.png", _map_png(area[name], caption, cmap, dpi, sym), caption))
                elif spec is AREA_MAPS:
                    missing.append(f"area map {name}")
            section(title, figs)
    except CubeError as exc:
        missing.append(f"area cube ({exc})")
    if points:
        png, notes = _series_png(points, cubes, ts_group, forecast_group, so, dpi)
        missing += notes
        if png:
            section("Time series at the chosen points",
                    [fig("timeseries.png", png, "LOS time series (and forecast) at the chosen points")])
        else:
            missing.append("time series at points (no frame covers them)")
    frame_runs = run_summary.get("frames", {})
    frames = [_frame_info(f, url, so, frame_runs.get(f, {}) if isinstance(frame_runs.get(f), dict) else {})
              for f, url in cubes.items()]
    frames += [_frame_info(f, "", so, r) for f, r in frame_runs.items() if f not in cubes and isinstance(r, dict)]
    provenance: list[dict[str, Any]] = []
    for f, url in cubes.items():
        figs = []
        try:
            qls = _quicklooks(f, url, so, dpi)
        except CubeError as exc:
            missing.append(f"{f}: cube ({exc})")
            continue
        for name, png, caption in qls:
            if name == f"{f}_qc_network.png":  # the frame's network keeps its old name (network_{frame}.png)
                name, caption = f"network_{f}.png", f"{f}: interferogram network (by coherence, by QC label)"
            figs.append(fig(name if name.startswith("network_") else f"quicklooks/{name}", png, caption))
        if not any(f_["src"].startswith("network_") for f_ in figs):
            missing.append(f"{f}: network plot (no complete qc group)")
        section(f"Frame {f}", figs)
    for f, url in cubes.items():
        provenance += _provenance(f, url, so)
    provenance += _provenance("area cube", area_url, so)
    # a run's record is linked when this or an earlier report wrote it (runs/{run_id}.json)
    for p in provenance:
        rid = p["run_id"]
        if rid and not rid.startswith("a stage command") and exists(join(report_url, "runs", f"{rid}.json"), so):
            p["run_href"] = f"runs/{rid}.json"
    stage_names = [s for s in ("ingest", "qc", "quality", "unwrap", "invert", "noise", "forecast")
                   if any(s in fr["stage_seconds"] for fr in frames)]
    page = _render(area_name=area_name, area_url=area_url,
                   generated=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), run_json=run_json,
                   run_id=run_id, truth=_truth_context(truth) if truth else None, frames=frames,
                   stage_names=stage_names, job_seconds=job_seconds or {}, map_sections=sections,
                   provenance=provenance, missing=missing)
    url = join(report_url, "index.html")
    write_bytes_atomic(url, page.encode(), so)
    return url
