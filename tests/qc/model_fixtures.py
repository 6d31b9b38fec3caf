"""Tiny QC tile datasets in the exact ``insarcloud.qc.dataset`` format, for the model/train/serve tests.

Built from :mod:`insarcloud.qc.synthetic` stacks (known truth) with plain xarray, so the model tests do
not depend on the dataset builder's Dask path; rule labels here are a crude coherence rule.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from insarcloud.qc import synthetic
from insarcloud.qc.dataset import unw_gradient

CHANNELS = ["cos_phase", "sin_phase", "coh", "unw_grad"]


def tile_dataset(seed: int = 0, n_frames: int = 3, shape: tuple[int, int] = (96, 96), tile: int = 48,
                 splits: tuple[str, ...] = ("train", "val", "test")) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    for f in range(n_frames):
        s = synthetic.make_stack(rng, shape=shape, n_epochs=5, n_error_pairs=3, n_decorrelated_pairs=2)
        frame = f"00{f}A_0000{f}_000000"
        for p, pair in enumerate(s.pairs):
            for y0 in range(0, shape[0] - tile + 1, tile):
                for x0 in range(0, shape[1] - tile + 1, tile):
                    w = (slice(y0, y0 + tile), slice(x0, x0 + tile))
                    ph = s.phase[p][w]
                    inp = np.stack([np.cos(ph), np.sin(ph), s.coh[p][w], unw_gradient(s.unw[p][w])])
                    coh = s.coh[p][w]
                    label = np.where(coh < 0.25, 1, np.where(coh > 0.45, 0, 2)).astype(np.uint8)
                    rows.append(dict(inputs=inp.astype(np.float32), label=label, truth=s.truth[p][w],
                                     weight=(label != 2).astype(np.float32), frame=frame, pair=pair, y0=y0,
                                     x0=x0, split=splits[f % len(splits)],
                                     tile_label=np.uint8(1 if (label == 1).mean() > 0.3 else 0)))
    n = len(rows)
    return xr.Dataset(
        {
            "inputs": (("tile", "channel", "ty", "tx"), np.stack([r["inputs"] for r in rows])),
            "label": (("tile", "ty", "tx"), np.stack([r["label"] for r in rows])),
            "truth": (("tile", "ty", "tx"), np.stack([r["truth"] for r in rows]).astype(np.uint8)),
            "weight": (("tile", "ty", "tx"), np.stack([r["weight"] for r in rows])),
        },
        coords={
            "tile": np.arange(n),
            "channel": np.asarray(CHANNELS, dtype=object),
            **{k: ("tile", np.asarray([r[k] for r in rows], dtype=object if k in ("frame", "pair", "split")
                                      else None)) for k in ("frame", "pair", "y0", "x0", "split", "tile_label")},
        },
        attrs={"tile_size": tile},
    )


def write_tile_dataset(url: str, storage_options: dict | None = None, **kw) -> xr.Dataset:
    ds = tile_dataset(**kw)
    ds.to_zarr(url, mode="w", zarr_format=3, consolidated=False,
               storage_options=storage_options if "://" in url else None)
    return ds
