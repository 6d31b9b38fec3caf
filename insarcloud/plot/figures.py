"""Quicklook figures from small numpy arrays (matplotlib, Agg): the kernels of ``insarcloud.plot``.

Each function takes arrays already reduced to what is drawn (a map, per-pair numbers) and returns the
``matplotlib.figure.Figure`` unsaved, so tests can look at its artists; ``png_bytes`` saves and closes it.
The pictures follow LiCSBAS's (Morishita et al. 2020, ``LiCSBAS_plot_network.py``, ``LiCSBAS13``'s
``vel.png``/``mask``): a network with date on x and perpendicular baseline on y when known, pairs a QC step
dropped drawn dashed in another colour; maps with their reference point and masked pixels marked.
"""

from __future__ import annotations

import io as _io
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

#: Colours and line styles of the pair classes in the network plot (tests read them back from the figure).
LABEL_STYLE: dict[str, tuple[str, str]] = {
    "good": ("tab:blue", "-"),
    "uncertain": ("tab:orange", "--"),
    "bad": ("tab:red", ":"),
    "unlabelled": ("0.5", "-"),
}
#: qc ``ifg_label`` codes (insarcloud.qc.labels: GOOD 0, BAD 1, UNCERTAIN 2, NODATA 255) -> class name.
LABEL_CODES = {0: "good", 1: "bad", 2: "uncertain"}


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")  # quicklooks are written by workers and jobs without a display
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig: Any, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (fixed size: no tight bbox, so the pixel size is ``figsize * dpi``); closes it."""
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    pyplot().close(fig)
    return buf.getvalue()


class Panel(NamedTuple):
    """One map of a quicklook.

    values : (y, x) float array; NaN is drawn as no data.
    title : panel title; label : colour-bar label (with units).
    cmap : matplotlib colour map; symmetric : colour range symmetric about 0 (signed quantities).
    mask : (y, x) bool, True where the stage masked the pixel (drawn grey), or None.
    marker : (lon, lat) of a point to mark (the reference point), or None.
    vrange : (vmin, vmax) or None for the 2nd-98th percentiles.
    """

    values: np.ndarray
    title: str
    label: str = ""
    cmap: str = "viridis"
    symmetric: bool = False
    mask: np.ndarray | None = None
    marker: tuple[float, float] | None = None
    vrange: tuple[float, float] | None = None


def _limits(vals: np.ndarray, symmetric: bool, vrange: tuple[float, float] | None) -> tuple[float, float]:
    if vrange is not None:
        return vrange
    finite = vals[np.isfinite(vals)]
    if not finite.size:
        return (-1.0, 1.0) if symmetric else (0.0, 1.0)
    lo, hi = (float(v) for v in np.percentile(finite, [2, 98]))
    if symmetric:
        m = max(abs(lo), abs(hi), 1e-6)
        return -m, m
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


def maps_figure(panels: Sequence[Panel], lat: np.ndarray, lon: np.ndarray, suptitle: str = "",
                panel_size: tuple[float, float] = (4.2, 3.6)) -> Any:
    """Maps side by side on the frame's lon/lat grid (one row)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(panel_size[0] * len(panels), panel_size[1]), squeeze=False)
    extent = (float(lon[0]), float(lon[-1]), float(lat[-1]), float(lat[0]))
    for ax, p in zip(axes[0], panels, strict=True):
        vals = np.asarray(p.values, dtype=float)
        vmin, vmax = _limits(vals, p.symmetric, p.vrange)
        im = ax.imshow(vals, extent=extent, cmap=p.cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        if p.mask is not None and np.any(p.mask):
            grey = np.where(np.asarray(p.mask, dtype=bool), 1.0, np.nan)
            ax.imshow(grey, extent=extent, cmap="Greys", vmin=0, vmax=2, alpha=0.6, interpolation="nearest")
        if p.marker is not None:
            ax.plot([p.marker[0]], [p.marker[1]], marker="s", ms=7, mfc="none", mec="k", mew=1.5, ls="none",
                    label="reference point")
            ax.legend(loc="lower right", fontsize=7, framealpha=0.7)
        fig.colorbar(im, ax=ax, label=p.label, shrink=0.85)
        ax.set_title(p.title, fontsize=9)
        ax.set_xlabel("longitude (deg E)", fontsize=8)
        ax.set_ylabel("latitude (deg N)", fontsize=8)
        ax.tick_params(labelsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def network_figure(primary: np.ndarray, secondary: np.ndarray, dates: np.ndarray, bperp: np.ndarray | None,
                   pair_coh: np.ndarray | None, pair_class: Sequence[str] | None, title: str = "") -> Any:
    """The interferogram network twice: pairs coloured by mean coherence, then by QC class.

    primary, secondary : (pair,) datetime64; dates : (date,) datetime64; bperp : (date,) m or None (then
    y is the epoch index, as LiCSBAS draws a network without baselines); pair_coh : (pair,) mean coherence
    0..1 or None; pair_class : (pair,) names among ``LABEL_STYLE`` or None (all "unlabelled").
    """
    plt = pyplot()
    from matplotlib.collections import LineCollection
    from matplotlib.dates import date2num

    dates = np.asarray(dates, dtype="datetime64[ns]")
    known = bperp is not None and np.isfinite(np.asarray(bperp, dtype=float)).all()
    ypos = np.asarray(bperp, dtype=float) if known else np.arange(dates.size, dtype=float)
    index = {d: i for i, d in enumerate(dates)}
    pi = np.array([index[np.datetime64(d, "ns")] for d in np.asarray(primary, dtype="datetime64[ns]")], dtype=int)
    si = np.array([index[np.datetime64(d, "ns")] for d in np.asarray(secondary, dtype="datetime64[ns]")], dtype=int)
    xnum = date2num(dates.astype("datetime64[ms]").astype(object))
    segs = np.stack([np.c_[xnum[pi], ypos[pi]], np.c_[xnum[si], ypos[si]]], axis=1) if pi.size else np.zeros((0, 2, 2))
    classes = list(pair_class) if pair_class is not None else ["unlabelled"] * pi.size
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    coh = np.asarray(pair_coh, dtype=float) if pair_coh is not None else np.full(pi.size, np.nan)
    lc = LineCollection(segs, cmap="viridis", norm=plt.Normalize(0, max(0.5, float(np.nanmax(coh, initial=0.5)))),
                        linewidths=1.2)
    lc.set_array(np.nan_to_num(coh, nan=0.0))
    lc.set_label("pairs (mean coherence)")
    a1.add_collection(lc)
    fig.colorbar(lc, ax=a1, label="mean coherence of the pair")
    a1.set_title("coloured by mean coherence", fontsize=9)
    for name, (colour, style) in LABEL_STYLE.items():
        sel = [k for k, c in enumerate(classes) if c == name]
        if not sel:
            continue
        xs, ys = [], []
        for k in sel:
            xs += [xnum[pi[k]], xnum[si[k]], np.nan]
            ys += [ypos[pi[k]], ypos[si[k]], np.nan]
        a2.plot(xs, ys, color=colour, ls=style, lw=1.2, label=f"{name} ({len(sel)})")
    a2.set_title("coloured by QC label (dropped/down-weighted: dashed, dotted)", fontsize=9)
    a2.legend(fontsize=7, loc="best")
    for ax in (a1, a2):
        ax.plot(xnum, ypos, "o", color="k", ms=3, zorder=3)
        ax.set_xlim(xnum.min() - 6, xnum.max() + 6) if xnum.size else None
        pad = (np.ptp(ypos) * 0.08 + 1.0) if ypos.size else 1.0
        ax.set_ylim(ypos.min() - pad, ypos.max() + pad) if ypos.size else None
        ax.xaxis_date()
        ax.tick_params(labelsize=7)
    a1.set_ylabel("perpendicular baseline (m)" if known else "epoch index (no baselines in the cube)")
    fig.suptitle(title or f"{pi.size} interferograms, {dates.size} epochs", fontsize=10)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def coherence_matrix_figure(primary: np.ndarray, secondary: np.ndarray, dates: np.ndarray, pair_coh: np.ndarray,
                            title: str = "") -> Any:
    """Date x date matrix of mean pair coherence (upper triangle; white: no interferogram)."""
    plt = pyplot()
    dates = np.asarray(dates, dtype="datetime64[ns]")
    index = {d: i for i, d in enumerate(dates)}
    mat = np.full((dates.size, dates.size), np.nan)
    for p, s, c in zip(np.asarray(primary, dtype="datetime64[ns]"), np.asarray(secondary, dtype="datetime64[ns]"),
                       np.asarray(pair_coh, dtype=float), strict=True):
        mat[index[p], index[s]] = c
    fig, ax = plt.subplots(figsize=(6, 5.2))
    im = ax.imshow(mat, cmap="viridis", vmin=0, vmax=max(0.5, float(np.nanmax(mat, initial=0.5))),
                   interpolation="nearest")
    labels = [str(d)[:10] for d in dates]
    step = max(1, dates.size // 12)
    ax.set_xticks(range(0, dates.size, step), labels[::step], rotation=90, fontsize=6)
    ax.set_yticks(range(0, dates.size, step), labels[::step], fontsize=6)
    ax.set_xlabel("secondary date")
    ax.set_ylabel("primary date")
    fig.colorbar(im, ax=ax, label="mean coherence of the pair")
    ax.set_title(title or "coherence matrix", fontsize=10)
    fig.tight_layout()
    return fig
