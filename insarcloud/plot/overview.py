"""Decimated overviews of (y, x) maps for the pictures: what a quicklook draws, never the full resolution.

A map is drawn a few hundred pixels wide (``figsize * dpi``), so reading a 7 Mpx frame or a 100 Mpx area at
full resolution into the process that draws it only costs memory (issue 20). ``overview`` takes every
``step``-th row and column (nearest-sample decimation, as a GDAL ``NEAREST`` overview) lazily; computing it
reads one storage chunk at a time and keeps only its samples, so the drawing process holds the overview plus a
chunk, whatever the map's size.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: longest side of an overview (pixels): above the widest panel drawn (6 in x 110 dpi = 660 px)
OVERVIEW_PX = 1000


def overview_step(shape: tuple[int, ...] | Any, max_px: int = OVERVIEW_PX) -> int:
    """The decimation step that brings the longest of ``shape``'s (y, x) sides to ``max_px`` or fewer."""
    return max(1, math.ceil(max(int(shape[-2]), int(shape[-1])) / max_px))


def overview(obj: Any, max_px: int = OVERVIEW_PX) -> Any:
    """Every ``step``-th row and column of an xarray Dataset or DataArray with ``y`` and ``x`` (lazy: a
    Dask-backed input stays Dask-backed); other dimensions and variables without ``y``/``x`` are untouched."""
    if "y" not in obj.dims or "x" not in obj.dims:
        return obj
    step = overview_step((obj.sizes["y"], obj.sizes["x"]), max_px)
    if step == 1:
        return obj
    return obj.isel(y=slice(None, None, step), x=slice(None, None, step))


def overview_values(da: Any, max_px: int = OVERVIEW_PX) -> np.ndarray:
    """The overview of a (y, x) DataArray as float numpy, computed chunk by chunk in this process."""
    ov = overview(da, max_px)
    data = ov.data
    if hasattr(data, "compute"):
        data = data.compute(scheduler="sync")
    return np.asarray(data, dtype=float)
