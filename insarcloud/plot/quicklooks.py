"""Per-stage quicklook PNGs, written beside the group that a stage made and listed in its attributes.

``{cube}/{group}/quicklooks/{name}.png`` and ``attrs["quicklooks"] = ["quicklooks/{name}.png", ...]`` (paths
relative to the group), as LiCSBAS writes a PNG after every step. Only what is drawn is read: per-pair means
the stage already stored (``qc`` ``coh_avg``, ``ifg_label``), (y, x) maps, and means over pairs or triplets
that Dask reduces chunk by chunk (a whole (pair, y, x) stack never sits in memory); (y, x) maps and the means
over pairs that draw them come from a decimated overview (:mod:`insarcloud.plot.overview`), so a picture of a
full-size frame reads about 1000 x 1000 samples.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from insarcloud.errors import CubeError
from insarcloud.io.cube import QUICKLOOK_DIR
from insarcloud.plot.figures import (
    LABEL_CODES,
    Panel,
    coherence_matrix_figure,
    maps_figure,
    network_figure,
    png_bytes,
)
from insarcloud.plot.overview import overview

log = logging.getLogger(__name__)

ATTR = "quicklooks"
#: ``insarcloud plot --stage`` names -> the stage recorded in a group's completion marker.
STAGE_ALIASES = {"qc": "qc", "quality": "quality", "invert": "invert", "ts": "invert", "noise": "noise"}


def _values(da: Any) -> np.ndarray:
    return np.asarray(da.compute().values if hasattr(da, "compute") else da.values, dtype=float)


def _frame(ds: Any, url: str, so: dict[str, Any] | None) -> str:
    """The frame id: the group's attribute, else the root's, else the store's name."""
    if ds.attrs.get("frame"):
        return str(ds.attrs["frame"])
    from insarcloud.io.cube import open_zarr_group

    try:
        return str(open_zarr_group(url, None, so).attrs["frame"])
    except (CubeError, KeyError):
        return Path(url.rstrip("/")).name.removesuffix(".zarr")


def qc_figures(url: str, group: str, so: dict[str, Any] | None) -> dict[str, Any]:
    """network.png (by coherence and by QC label), coherence_matrix.png, loop_closure.png."""
    from insarcloud.io import open_cube

    qc = overview(open_cube(url, so, group=group))  # maps drawn from a decimated overview (per-pair data whole)
    root = open_cube(url, so)
    prim = qc["primary"].values.astype("datetime64[ns]")
    sec = qc["secondary"].values.astype("datetime64[ns]")
    dates = np.unique(np.concatenate([prim, sec]))
    bperp = None
    if "bperp" in root:
        rb = dict(zip(root["date"].values.astype("datetime64[ns]"), root["bperp"].values, strict=True))
        bperp = np.array([rb.get(d, np.nan) for d in dates], dtype=float)
    coh = _values(qc["coh_avg"]) if "coh_avg" in qc else _values(root["coh"].sel(pair=qc["pair"].values)
                                                                 .mean(("y", "x")))
    classes = ([LABEL_CODES.get(int(v), "unlabelled") for v in qc["ifg_label"].values] if "ifg_label" in qc
               else None)
    frame = _frame(root, url, so)
    n_bad = sum(c == "bad" for c in classes or [])
    figs = {
        "network": network_figure(prim, sec, dates, bperp, coh, classes,
                                   title=f"{frame}: {prim.size} interferograms, {dates.size} epochs, "
                                         f"{n_bad} labelled bad by QC"),
        "coherence_matrix": coherence_matrix_figure(prim, sec, dates, coh, title=f"{frame}: mean coherence per pair"),
    }
    lat, lon = qc["y"].values, qc["x"].values
    panels = []
    if "n_loop_err" in qc:
        panels.append(Panel(_values(qc["n_loop_err"]), "loops with closure error > threshold", "count", "inferno"))
    if "closure" in qc and qc.sizes.get("triplet", 0):
        panels.append(Panel(_values(abs(qc["closure"]).mean("triplet")), "mean |loop closure| over triplets",
                            "rad", "magma"))
    if "label" in qc:
        panels.append(Panel(_values((qc["label"] == 1).mean("pair")), "share of pairs labelled bad", "0..1",
                            "Reds", vrange=(0.0, 1.0)))
    if panels:
        figs["loop_closure"] = maps_figure(panels, lat, lon, f"{frame}: loop closure (LiCSBAS step 12)")
    return figs


def quality_figures(url: str, group: str, so: dict[str, Any] | None) -> dict[str, Any]:
    """quality.png: mean ConvNeXt quality over pairs and the share of pairs under 0.5."""
    from insarcloud.io import open_cube

    q = overview(open_cube(url, so, group=group))
    var = "quality" if "quality" in q else next(iter(q.data_vars))
    panels = [Panel(_values(q[var].mean("pair")), "mean quality over pairs", "0..1 (1 = good)", "magma",
                    vrange=(0.0, 1.0)),
              Panel(_values((q[var] < 0.5).mean("pair")), "share of pairs with quality < 0.5", "0..1", "Reds",
                    vrange=(0.0, 1.0))]
    return {"quality": maps_figure(panels, q["y"].values, q["x"].values, f"{_frame(q, url, so)}: quality ({group})")}


def ts_figures(url: str, group: str, so: dict[str, Any] | None) -> dict[str, Any]:
    """velocity.png (reference point, masked pixels) and precision.png (velocity_std, residual RMS, pairs used)."""
    from insarcloud.io import open_cube

    ts = overview(open_cube(url, so, group=group))
    lat, lon = ts["y"].values, ts["x"].values
    vel = _values(ts["velocity"])
    used = _values(ts["n_pairs_used"]) if "n_pairs_used" in ts else np.where(np.isfinite(vel), 1.0, 0.0)
    mask = ~np.isfinite(vel) | (used <= 0)
    ref = None
    if "ref_lon" in ts.attrs and "ref_lat" in ts.attrs:
        ref = (float(ts.attrs["ref_lon"]), float(ts.attrs["ref_lat"]))
    frame = _frame(ts, url, so)
    figs = {"velocity": maps_figure(
        [Panel(vel, f"LOS velocity ({group}; + toward satellite)", "mm/yr", "RdBu_r", True, mask, ref)],
        lat, lon, f"{frame}: velocity, reference point and mask", panel_size=(6.0, 5.0))}
    panels = []
    if "velocity_std" in ts:
        panels.append(Panel(_values(ts["velocity_std"]), "velocity precision (1-sigma)", "mm/yr", "viridis",
                            mask=mask))
    if "residual_rms" in ts:
        panels.append(Panel(_values(ts["residual_rms"]), "residual RMS of the inversion", ts["residual_rms"].attrs
                            .get("units", "mm"), "cividis", mask=mask))
    panels.append(Panel(used, "pairs used per pixel", "count", "Greens"))
    figs["precision"] = maps_figure(panels, lat, lon, f"{frame}: precision ({group})")
    return figs


def noise_figures(url: str, group: str, so: dict[str, Any] | None) -> dict[str, Any]:
    """noise.png: the LS-VCE noise components, the chosen model and the velocity precision."""
    from insarcloud.io import open_cube

    nz = overview(open_cube(url, so, group=group))
    spec = (("sigma_white", "white noise variance (sigma_white)", "viridis"),
            ("sigma_flicker", "flicker noise variance (sigma_flicker)", "viridis"),
            ("sigma_ar1", "AR(1) noise variance (sigma_ar1)", "viridis"), ("alpha", "AR(1) alpha", "plasma"),
            ("model", "chosen noise model (index)", "tab10"), ("velocity_std", "velocity precision (1-sigma)",
                                                              "viridis"))
    panels = [Panel(_values(nz[v]), title, nz[v].attrs.get("units", ""), cmap) for v, title, cmap in spec if v in nz]
    if not panels:
        raise CubeError(f"group {group!r} of {url} has none of the noise maps {[s[0] for s in spec]}")
    models = nz.attrs.get("model_names")
    sup = f"{_frame(nz, url, so)}: noise model (LS-VCE){'; models ' + ', '.join(models) if models else ''}"
    return {"noise": maps_figure(panels[:3], nz["y"].values, nz["x"].values, sup),
            **({"noise_model": maps_figure(panels[3:], nz["y"].values, nz["x"].values, sup)} if panels[3:] else {})}


FIGURES: dict[str, Callable[[str, str, dict[str, Any] | None], dict[str, Any]]] = {
    "qc": qc_figures, "quality": quality_figures, "invert": ts_figures, "noise": noise_figures,
}


def default_group(url: str, stage: str, storage_options: dict[str, Any] | None = None) -> str:
    """The group a stage's quicklooks are drawn from: the stage's name, or the first complete ``ts_*`` group."""
    from insarcloud.io import list_groups, read_marker
    from insarcloud.io.stages import current_group

    stage = STAGE_ALIASES.get(stage, stage)
    current = current_group(url, stage, storage_options)  # the stage's pointer (docs/STAGES.md)
    if current is not None:
        return current
    groups = list_groups(url, storage_options)
    done = [g for g in groups if (read_marker(url, g, storage_options) or {}).get("stage") == stage
            and (read_marker(url, g, storage_options) or {}).get("complete")]
    if stage in groups and stage in done:
        return stage
    if done:
        return done[0]
    raise CubeError(f"{url} has no complete group made by stage {stage!r} (groups: {groups}); run the stage first")


def write_quicklooks(url: str, group: str, stage: str | None = None, *,
                     storage_options: dict[str, Any] | None = None, out_dir: str | None = None,
                     dpi: int = 100) -> list[str]:
    """Draw ``group``'s quicklooks; write them beside it (and list them in its attrs) or into ``out_dir``.

    ``stage`` defaults to the one in the group's completion marker. Returns the written paths: relative
    to the group (``quicklooks/network.png``) when beside it, else absolute files under ``out_dir``.
    """
    from insarcloud.io import read_marker
    from insarcloud.io.cube import consolidate, open_zarr_group
    from insarcloud.io.storage import join, write_bytes_atomic

    marker = read_marker(url, group, storage_options)
    if marker is None:
        raise CubeError(f"no group {group!r} in {url}")
    stage = STAGE_ALIASES.get(stage or marker.get("stage", ""), stage or marker.get("stage", ""))
    if stage not in FIGURES:
        raise CubeError(f"no quicklooks for stage {stage!r} (group {group!r} of {url}); "
                        f"stages with quicklooks: {sorted(STAGE_ALIASES)}")
    figs = FIGURES[stage](url, group, storage_options)
    written: list[str] = []
    for name, fig in figs.items():
        png = png_bytes(fig, dpi)
        if out_dir is not None:
            path = Path(out_dir) / f"{group}_{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png)
            written.append(str(path))
        else:
            rel = f"{QUICKLOOK_DIR}/{name}.png"
            write_bytes_atomic(join(url, group, rel), png, storage_options)
            written.append(rel)
    if out_dir is None:
        g = open_zarr_group(url, group, storage_options, mode="r+")
        g.attrs[ATTR] = written
        # the folder is a Zarr group of its own, so readers that list the group's members see a node
        g.require_group(QUICKLOOK_DIR).attrs.update(
            description=f"quicklook PNGs of the group {group!r} (insarcloud plot); files: {', '.join(written)}")
        consolidate(url, storage_options, group)
    log.info("quicklooks of %s/%s: %s", url, group, ", ".join(written))
    return written


def stage_quicklooks(url: str, group: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """The stages' hook: like ``write_quicklooks`` but a failure only warns (a picture never fails a stage)."""
    try:
        return write_quicklooks(url, group, storage_options=storage_options)
    except Exception as exc:  # noqa: BLE001 - any plotting failure is reported, the stage's output stands
        log.warning("could not draw the quicklooks of group %r of %s: %s: %s", group, url, type(exc).__name__, exc)
        return []
