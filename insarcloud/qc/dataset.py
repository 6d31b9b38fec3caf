"""The labelled tile dataset (Zarr v3 on the bucket) for the ConvNeXt-InSAR model, and manual verdicts.

Format (a contract with ``insarcloud.qc.train``; written with xarray, one group at ``DATASET_URL``):

- ``inputs`` (tile, channel, ty, tx) float32, NaN = no data. Coordinate ``channel`` (str) in this order:
  ``cos_phase``, ``sin_phase``, ``coh`` always; then, when any source cube has them, ``unw_grad``
  (magnitude of the unwrapped-phase gradient, rad/pixel, central differences inside the tile),
  ``closure`` (per-pixel mean |unwrapped loop misclosure| over the triplets containing the pair, rad),
  ``amp`` (amplitude, when a cube has an ``amp`` variable). A channel a frame lacks is NaN on its tiles.
- ``label`` (tile, ty, tx) uint8 rule labels: 0 good, 1 bad, 2 uncertain, 255 no data.
- ``truth`` (tile, ty, tx) uint8: 0 good, 1 bad, 255 unknown. On simulated frames
  ``bad = unw_error | coherence_true < TRUTH_COH`` (0.2: an unwrapping-error patch, or a pixel too
  decorrelated to carry signal), 255 where the wrapped phase is NaN; all 255 on real frames.
- ``weight`` (tile, ty, tx) float32: training weight of ``label``: 1 where the rule label is good or bad,
  0 where uncertain or no data; manual verdicts set verified pixels to ``MANUAL_WEIGHT`` (1).
- per-tile coords: ``frame`` (str), ``pair`` (str), ``y0``, ``x0`` (int, tile origin in the frame's pixel
  grid), ``split`` (str: train / val / test, by frame), ``tile_label`` (uint8 per-tile rule verdict,
  :func:`insarcloud.qc.labels.tile_label`).
- attrs: ``tile_size``, ``thresholds`` (JSON), ``channel_descriptions`` (JSON), ``source_cubes`` (JSON
  list), ``truth_rule``, ``format_version``.
- Tiles smaller than the frame's edge are padded with NaN / 255; all-NaN tiles are skipped (logged).

Manual verdicts: one JSON object per tile at ``DATASET_URL/verdicts/<tile_index>.json``:
``{"tile": int, "verdict": "accept" | "reject" | "bad_areas", "bad_mask": [[y0, x0, y1, x1], ...]
(optional, tile pixels, end-exclusive), "reviewer": str, "at": ISO-8601 time}``.
:func:`apply_verdicts` merges them: ``accept`` -> uncertain pixels become good (rule-bad ones stay bad);
``reject`` -> every valid pixel bad; ``bad_areas`` -> pixels inside the boxes bad, the other uncertain
pixels good; verified valid pixels get weight ``MANUAL_WEIGHT``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import xarray as xr

from insarcloud.errors import CubeError, InputArrayError
from insarcloud.qc import labels
from insarcloud.qc.config import QCParams

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
TRUTH_COH = 0.2
MANUAL_WEIGHT = 1.0
BASE_CHANNELS = ("cos_phase", "sin_phase", "coh")
OPTIONAL_CHANNELS = ("unw_grad", "closure", "amp")
CHANNEL_DESCRIPTIONS = {
    "cos_phase": "cos of the wrapped phase",
    "sin_phase": "sin of the wrapped phase",
    "coh": "coherence 0..1",
    "unw_grad": "magnitude of the unwrapped-phase gradient, rad/pixel",
    "closure": "mean |unwrapped loop misclosure| over the triplets containing the pair, rad",
    "amp": "amplitude",
}
Verdict = Literal["accept", "reject", "bad_areas"]
VERDICTS: tuple[str, ...] = ("accept", "reject", "bad_areas")
Split = Literal["train", "val", "test"]


# ------------------------------------------------------------------------------------------------
# tile kernels (numpy)
# ------------------------------------------------------------------------------------------------


def unw_gradient(unw: np.ndarray) -> np.ndarray:
    """Magnitude of the unwrapped-phase gradient, rad/pixel (central differences; NaN-propagating).

    Parameters
    ----------
    unw : np.ndarray
        (..., y, x) float32 rad.
    """
    if unw.shape[-1] < 2 or unw.shape[-2] < 2:
        return np.full(unw.shape, np.nan, np.float32)
    gy, gx = np.gradient(unw.astype(np.float32), axis=(-2, -1))
    return np.hypot(gy, gx).astype(np.float32)


def truth_mask(phase: np.ndarray, unw_error: np.ndarray, coherence_true: np.ndarray,
               coh_thre: float = TRUTH_COH) -> np.ndarray:
    """uint8 truth: 1 where ``unw_error | coherence_true < coh_thre``, 0 elsewhere, 255 where phase is NaN."""
    out = ((unw_error.astype(bool)) | (coherence_true < coh_thre)).astype(np.uint8)
    out[~np.isfinite(phase)] = labels.NODATA
    return out


def _pad(a: np.ndarray, tile: int, fill: Any) -> np.ndarray:
    py, px = tile - a.shape[-2], tile - a.shape[-1]
    if py == 0 and px == 0:
        return a
    pad = [(0, 0)] * (a.ndim - 2) + [(0, py), (0, px)]
    return np.pad(a, pad, constant_values=fill)


def tile_starts(n: int, tile: int) -> list[int]:
    """Tile origins covering ``n`` pixels; the last tile is flush with the edge (overlapping the previous)."""
    if tile <= 0:
        raise InputArrayError(f"tile must be positive, got {tile}")
    if n <= tile:
        return [0]
    starts = list(range(0, n - tile + 1, tile))
    if starts[-1] + tile < n:
        starts.append(n - tile)
    return starts


def split_of(frame: str, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)) -> Split:
    """Deterministic split of a frame from a hash of its id (stable when frames are added)."""
    h = int(hashlib.sha256(frame.encode()).hexdigest()[:8], 16) / 2**32
    if h < fractions[0]:
        return "train"
    if h < fractions[0] + fractions[1]:
        return "val"
    return "test"


# ------------------------------------------------------------------------------------------------
# building
# ------------------------------------------------------------------------------------------------


def _open_truth(url: str, storage_options: dict[str, Any] | None) -> xr.Dataset:
    from insarcloud.io.storage import storage_options_for

    so = storage_options_for(url, storage_options) if "://" in url else None
    try:
        t = xr.open_zarr(url, consolidated=False, storage_options=so)
    except (FileNotFoundError, KeyError) as exc:
        raise CubeError(f"cannot open truth store {url}: {exc}") from exc
    if "unw_error" not in t and "unw_cycles" not in t:
        raise CubeError(f"truth store {url} has neither 'unw_error' nor 'unw_cycles'")
    if "coherence_true" not in t and "coherence" not in t:
        raise CubeError(f"truth store {url} has neither 'coherence_true' nor 'coherence'")
    return t


def write_truth(url: str, pairs: Sequence[str], y: np.ndarray, x: np.ndarray, unw_error: np.ndarray,
                coherence_true: np.ndarray, storage_options: dict[str, Any] | None = None) -> None:
    """Write a truth store for :func:`build_dataset` (simulated frames): ``unw_error`` (pair, y, x) bool and
    ``coherence_true`` (pair, y, x) float32 on the cube's pair names and grid."""
    from insarcloud.io.storage import storage_options_for

    ds = xr.Dataset(
        {"unw_error": (("pair", "y", "x"), np.asarray(unw_error, bool)),
         "coherence_true": (("pair", "y", "x"), np.asarray(coherence_true, np.float32))},
        coords={"pair": np.asarray(pairs, dtype=object), "y": y, "x": x},
    )
    so = storage_options_for(url, storage_options) if "://" in url else None
    ds.to_zarr(url, mode="w", zarr_format=3, consolidated=False, storage_options=so)


def _qc_for(cube_url: str, ds: xr.Dataset, params: QCParams, storage_options: dict[str, Any] | None,
            qc_group: str) -> xr.Dataset:
    """The cube's complete ``qc`` group; when absent or stale it is written first (``run_qc``), so tiles
    are read per pair from Zarr chunks instead of recomputing the stack for every pair."""
    from insarcloud import io
    from insarcloud.qc.dask_ops import run_qc

    try:
        q = io.open_cube(cube_url, storage_options, group=qc_group)
        if list(map(str, q["pair"].values)) == list(map(str, ds["pair"].values)):
            return q
        log.info("qc group of %s is stale (pairs differ): writing a fresh one", cube_url)
    except CubeError:
        log.info("no complete %r group in %s: running qc first", qc_group, cube_url)
    group = run_qc(cube_url, params, storage_options, group=qc_group)
    return io.open_cube(cube_url, storage_options, group=group)


def _frame_tiles(cube_url: str, truth_url: str | None, tile: int, params: QCParams, channels: list[str],
                 storage_options: dict[str, Any] | None, qc_group: str, split: str, first_index: int,
                 batch: int) -> Any:
    """Yield per-batch xr.Datasets of tiles of one frame (tile index from ``first_index``)."""
    from insarcloud import io

    ds = io.open_cube(cube_url, storage_options)
    q = _qc_for(cube_url, ds, params, storage_options, qc_group)
    frame = str(ds.attrs.get("frame") or cube_url.rstrip("/").split("/")[-1].removesuffix(".zarr"))
    truth = _open_truth(truth_url, storage_options) if truth_url else None
    if truth is not None:
        missing = sorted(set(map(str, ds["pair"].values)) - set(map(str, truth["pair"].values)))
        if missing:
            raise CubeError(f"truth store {truth_url} lacks pairs {missing[:5]} of cube {cube_url}")
    th = params.rules.thresholds()
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    index = first_index
    buf: list[dict[str, Any]] = []
    n_skipped = 0
    for pair in map(str, ds["pair"].values):
        sel = {"pair": pair}
        # one pair at a time: (y, x) planes of a frame, never the stack
        phase = ds["phase"].sel(sel).values.astype(np.float32)
        if not np.isfinite(phase).any():
            log.warning("%s %s: the wrapped phase is all NaN (no overlap with the frame): no tiles", frame, pair)
            continue
        coh = ds["coh"].sel(sel).values.astype(np.float32)
        lab = q["label"].sel(sel).values.astype(np.uint8)
        unw = ds["unw"].sel(sel).values.astype(np.float32) if "unw" in ds else None
        clo = q["pair_closure"].sel(sel).values.astype(np.float32) if "pair_closure" in q else None
        amp = ds["amp"].sel(sel).values.astype(np.float32) if "amp" in ds else None
        tru = None
        if truth is not None:
            ue = (truth["unw_error"].sel(sel).values if "unw_error" in truth
                  else truth["unw_cycles"].sel(sel).values != 0)
            ct = (truth["coherence_true"] if "coherence_true" in truth else truth["coherence"]).sel(sel).values
            tru = truth_mask(phase, ue, ct)
        for y0 in tile_starts(ny, tile):
            for x0 in tile_starts(nx, tile):
                win = (slice(y0, y0 + tile), slice(x0, x0 + tile))
                ph = phase[win]
                if not np.isfinite(ph).any():
                    n_skipped += 1
                    continue
                chans = {"cos_phase": np.cos(ph), "sin_phase": np.sin(ph), "coh": coh[win]}
                if unw is not None:
                    chans["unw_grad"] = unw_gradient(unw[win])
                if clo is not None:
                    chans["closure"] = clo[win]
                if amp is not None:
                    chans["amp"] = amp[win]
                inp = np.stack([_pad(chans[c].astype(np.float32), tile, np.nan) if c in chans
                                else np.full((tile, tile), np.nan, np.float32) for c in channels])
                lt = _pad(lab[win], tile, labels.NODATA)
                tt = (_pad(tru[win], tile, labels.NODATA) if tru is not None
                      else np.full((tile, tile), labels.NODATA, np.uint8))
                w = ((lt == labels.GOOD) | (lt == labels.BAD)).astype(np.float32)
                buf.append(dict(inputs=inp, label=lt, truth=tt, weight=w, frame=frame, pair=pair, y0=y0, x0=x0,
                                split=split, tile_label=labels.tile_label(lt, th), tile=index))
                index += 1
                if len(buf) >= batch:
                    yield _to_dataset(buf, channels)
                    buf = []
    if n_skipped:
        log.warning("%s: skipped %d all-NaN tile(s)", frame, n_skipped)
    if buf:
        yield _to_dataset(buf, channels)


def _to_dataset(buf: list[dict[str, Any]], channels: list[str]) -> xr.Dataset:
    def col(k: str, dtype: Any = None) -> np.ndarray:
        return np.asarray([b[k] for b in buf], dtype=dtype)

    return xr.Dataset(
        {
            "inputs": (("tile", "channel", "ty", "tx"), np.stack([b["inputs"] for b in buf]).astype(np.float32)),
            "label": (("tile", "ty", "tx"), np.stack([b["label"] for b in buf]).astype(np.uint8)),
            "truth": (("tile", "ty", "tx"), np.stack([b["truth"] for b in buf]).astype(np.uint8)),
            "weight": (("tile", "ty", "tx"), np.stack([b["weight"] for b in buf]).astype(np.float32)),
        },
        coords={
            "tile": col("tile", np.int64),
            "channel": np.asarray(channels, dtype=object),
            "frame": ("tile", col("frame", object)),
            "pair": ("tile", col("pair", object)),
            "y0": ("tile", col("y0", np.int64)),
            "x0": ("tile", col("x0", np.int64)),
            "split": ("tile", col("split", object)),
            "tile_label": ("tile", col("tile_label", np.uint8)),
        },
    )


def _channels_for(cube_urls: Sequence[str], storage_options: dict[str, Any] | None) -> list[str]:
    from insarcloud import io

    chans = list(BASE_CHANNELS)
    has = set()
    for url in cube_urls:
        ds = io.open_cube(url, storage_options)
        if "unw" in ds:
            has.update({"unw_grad", "closure"})
        if "amp" in ds:
            has.add("amp")
    return chans + [c for c in OPTIONAL_CHANNELS if c in has]


def build_dataset(
    cube_urls: Sequence[str],
    out_url: str,
    truth_urls: Sequence[str | None] | None = None,
    tile: int = 256,
    *,
    params: QCParams | None = None,
    splits: Mapping[str, str] | None = None,
    storage_options: dict[str, Any] | None = None,
    qc_group: str = "qc",
    batch: int = 128,
) -> dict[str, Any]:
    """Cut frame cubes into labelled tiles and write the dataset (module docstring) to ``out_url``.

    Parameters
    ----------
    cube_urls : sequence of str
        Frame cubes; their complete ``qc`` group is used when present, else ``insarcloud qc`` runs first.
    out_url : str
        Dataset URL (``s3://bucket/datasets/qc_tiles.zarr``); overwritten.
    truth_urls : sequence of (str or None), optional
        Per cube, a truth store (:func:`write_truth`, or any Zarr with ``unw_error``/``unw_cycles`` and
        ``coherence_true``/``coherence`` on (pair, y, x)); None for real frames.
    tile : int
        Tile side, pixels.
    splits : mapping frame -> "train" | "val" | "test", optional
        Explicit splits; other frames by :func:`split_of`.
    batch : int
        Tiles written per append (bounds memory).

    Returns
    -------
    dict
        Summary: tiles, per-split and per-tile-label counts, channels.
    """
    from insarcloud.io.storage import storage_options_for

    p = params or QCParams()
    if not cube_urls:
        raise InputArrayError("build_dataset needs at least one cube URL")
    truths = list(truth_urls) if truth_urls is not None else [None] * len(cube_urls)
    if len(truths) != len(cube_urls):
        raise InputArrayError(f"{len(truths)} truth URLs for {len(cube_urls)} cubes")
    for v in (splits or {}).values():
        if v not in ("train", "val", "test"):
            raise InputArrayError(f"split {v!r} is not train/val/test")
    channels = _channels_for(cube_urls, storage_options)
    so = storage_options_for(out_url, storage_options) if "://" in out_url else None
    attrs = dict(
        tile_size=tile, format_version=FORMAT_VERSION, thresholds=p.model_dump_json(),
        channel_descriptions=json.dumps({c: CHANNEL_DESCRIPTIONS[c] for c in channels}),
        source_cubes=json.dumps(list(cube_urls)),
        truth_rule=f"bad = unw_error | coherence_true < {TRUTH_COH}; 255 = unknown",
        label_meanings="0 good, 1 bad, 2 uncertain, 255 no data",
    )
    n = 0
    summary: dict[str, Any] = {"tiles": 0, "split": {}, "tile_label": {}, "channels": channels}
    for cube_url, truth_url in zip(cube_urls, truths, strict=True):
        from insarcloud import io

        frame = str(io.open_cube(cube_url, storage_options).attrs.get("frame", cube_url))
        split = (splits or {}).get(frame) or split_of(frame)
        for part in _frame_tiles(cube_url, truth_url, tile, p, channels, storage_options, qc_group, split, n, batch):
            # every write carries the attrs: an append rewrites the group's attributes
            part.attrs.update(attrs)
            if n == 0:
                # one tile per chunk for the arrays (training reads random tiles); coords in big chunks
                enc: dict[str, Any] = {k: {"chunks": (1,) + part[k].shape[1:]} for k in part.data_vars}
                enc.update({k: {"chunks": (4096,)} for k in part.coords if part[k].dims == ("tile",)})
                part.to_zarr(out_url, mode="w", zarr_format=3, consolidated=False, storage_options=so,
                             encoding=enc)
            else:
                part.to_zarr(out_url, append_dim="tile", zarr_format=3, consolidated=False, storage_options=so)
            k = part.sizes["tile"]
            n += k
            summary["split"][split] = summary["split"].get(split, 0) + k
            for v, c in zip(*np.unique(part["tile_label"].values, return_counts=True), strict=True):
                name = labels.LABEL_NAMES[int(v)]
                summary["tile_label"][name] = summary["tile_label"].get(name, 0) + int(c)
        log.info("dataset %s: %d tiles after %s", out_url, n, cube_url)
    if n == 0:
        raise CubeError(f"no tile with data in {list(cube_urls)}: nothing written to {out_url}")
    summary["tiles"] = n
    return summary


# ------------------------------------------------------------------------------------------------
# reading and manual verdicts
# ------------------------------------------------------------------------------------------------


def open_dataset(url: str, storage_options: dict[str, Any] | None = None) -> xr.Dataset:
    """Open the tile dataset: arrays lazy (Dask-backed), per-tile coords in memory (str as object)."""
    from insarcloud.io.storage import storage_options_for

    so = storage_options_for(url, storage_options) if "://" in url else None
    try:
        ds = xr.open_zarr(url, consolidated=False, storage_options=so)
    except (FileNotFoundError, KeyError) as exc:
        raise CubeError(f"cannot open the QC tile dataset at {url}: {exc}") from exc
    # per-tile coordinates are small: load them, with strings as plain Python str (zarr v3 returns
    # numpy's StringDType, which many callers cannot cast)
    fix = {}
    for name in ("frame", "pair", "split", "channel", "y0", "x0", "tile_label"):
        if name in ds.coords:
            v = ds[name].values
            fix[name] = (ds[name].dims, np.asarray(v.tolist(), dtype=object) if v.dtype.kind in "TUO" else v)
    return ds.assign_coords(fix)


def verdict_url(url: str, tile_index: int) -> str:
    from insarcloud.io.storage import join

    return join(url, "verdicts", f"{int(tile_index)}.json")


def validate_verdict(v: Mapping[str, Any], tile_size: int | None = None) -> dict[str, Any]:
    """Check a verdict object; returns a normalised copy (raises InputArrayError naming the field)."""
    if not isinstance(v, Mapping):
        raise InputArrayError(f"a verdict must be a JSON object, got {type(v).__name__}")
    try:
        tile = int(v["tile"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputArrayError(f"verdict field 'tile' missing or not an integer: {v.get('tile')!r}") from exc
    verdict = v.get("verdict")
    if verdict not in VERDICTS:
        raise InputArrayError(f"verdict of tile {tile}: {verdict!r} is not one of {VERDICTS}")
    boxes = v.get("bad_mask") or []
    out_boxes = []
    for b in boxes:
        if not (isinstance(b, list | tuple) and len(b) == 4):
            raise InputArrayError(f"verdict of tile {tile}: bad_mask box {b!r} is not [y0, x0, y1, x1]")
        y0, x0, y1, x1 = (int(round(float(c))) for c in b)
        if tile_size is not None:
            y0, y1 = sorted((max(0, min(tile_size, y0)), max(0, min(tile_size, y1))))
            x0, x1 = sorted((max(0, min(tile_size, x0)), max(0, min(tile_size, x1))))
        if y1 > y0 and x1 > x0:
            out_boxes.append([y0, x0, y1, x1])
    if verdict == "bad_areas" and not out_boxes:
        raise InputArrayError(f"verdict of tile {tile}: 'bad_areas' needs at least one non-empty box")
    return {"tile": tile, "verdict": verdict, "bad_mask": out_boxes, "reviewer": str(v.get("reviewer", "")),
            "at": str(v.get("at") or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))}


def save_verdict(url: str, verdict: Mapping[str, Any], storage_options: dict[str, Any] | None = None,
                 tile_size: int | None = None) -> dict[str, Any]:
    """Validate and write one verdict object to ``url/verdicts/<tile>.json`` at once."""
    from insarcloud.io.storage import write_bytes_atomic

    v = validate_verdict(verdict, tile_size)
    write_bytes_atomic(verdict_url(url, v["tile"]), json.dumps(v).encode(), storage_options)
    return v


def load_verdicts(url: str, storage_options: dict[str, Any] | None = None) -> dict[int, dict[str, Any]]:
    """All manual verdicts of the dataset at ``url``: {tile index: verdict object}."""
    from insarcloud.io.storage import get_fs, join, read_bytes

    fs, path = get_fs(join(url, "verdicts"), storage_options)
    try:
        names = [n for n in fs.ls(path, detail=False) if str(n).endswith(".json")]
    except FileNotFoundError:
        return {}
    out: dict[int, dict[str, Any]] = {}
    for name in names:
        key = str(name).rsplit("/", 1)[-1]
        try:
            v = validate_verdict(json.loads(read_bytes(join(url, "verdicts", key), storage_options)))
        except (InputArrayError, json.JSONDecodeError) as exc:
            log.warning("ignoring unreadable verdict %s: %s", key, exc)
            continue
        out[v["tile"]] = v
    return out


def _verdict_block(label: np.ndarray, weight: np.ndarray | None, by_pos: Mapping[int, dict[str, Any]],
                   start: int) -> np.ndarray:
    """Apply verdicts to a (tile, ty, tx) block starting at tile position ``start``: new label, or weight
    when ``weight`` is given."""
    out = (label if weight is None else weight).copy()
    for k in range(label.shape[0]):
        v = by_pos.get(start + k)
        if v is None:
            continue
        lt = label[k]
        valid = lt != labels.NODATA
        if weight is not None:
            out[k] = np.where(valid, MANUAL_WEIGHT, 0.0)
            continue
        new = lt.copy()
        if v["verdict"] == "reject":
            new[valid] = labels.BAD
        else:
            new[valid & (lt == labels.UNCERTAIN)] = labels.GOOD
            for y0, x0, y1, x1 in v["bad_mask"]:
                box = np.zeros_like(valid)
                box[y0:y1, x0:x1] = True
                new[box & valid] = labels.BAD
        out[k] = new
    return out


def apply_verdicts(ds: xr.Dataset, verdicts: Mapping[int, Mapping[str, Any]]) -> xr.Dataset:
    """Merge manual verdicts into ``label`` and ``weight`` (module docstring); adds a ``verdict`` coord.

    Lazy: with a Dask-backed dataset the merge runs per tile chunk when the arrays are read.
    """
    import dask.array as da

    tiles = ds["tile"].values
    pos = {int(t): i for i, t in enumerate(tiles)}
    ts = int(ds.sizes["ty"])
    by_pos: dict[int, dict[str, Any]] = {}
    ver = np.full(tiles.shape, "", dtype=object)
    for t, v in verdicts.items():
        if int(t) not in pos:
            log.warning("verdict for tile %s, which is not in the dataset: ignored", t)
            continue
        i = pos[int(t)]
        by_pos[i] = validate_verdict(v, ts)
        ver[i] = by_pos[i]["verdict"]

    def lazy(name: str) -> da.Array:
        a = ds[name].data
        return a if isinstance(a, da.Array) else da.from_array(np.asarray(a), chunks=(1, -1, -1))

    lab, wt = lazy("label"), lazy("weight").rechunk(lazy("label").chunks)

    def f_label(block: np.ndarray, block_info: Any = None) -> np.ndarray:
        return _verdict_block(block, None, by_pos, block_info[0]["array-location"][0][0])

    def f_weight(lblock: np.ndarray, wblock: np.ndarray, block_info: Any = None) -> np.ndarray:
        return _verdict_block(lblock, wblock, by_pos, block_info[0]["array-location"][0][0])

    new_lab = da.map_blocks(f_label, lab, dtype=np.uint8)
    new_wt = da.map_blocks(f_weight, lab, wt, dtype=np.float32)
    dims = ds["label"].dims
    out = ds.assign(label=(dims, new_lab, ds["label"].attrs), weight=(dims, new_wt, ds["weight"].attrs))
    return out.assign_coords(verdict=("tile", ver))
