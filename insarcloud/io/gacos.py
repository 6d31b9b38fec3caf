"""GACOS tropospheric delays published by COMET-LiCSAR, read into a frame cube's ``gacos`` group.

LiCSAR publishes one GACOS product per epoch (when GACOS had it):
``<frame>/epochs/YYYYMMDD/YYYYMMDD.sltd.geo.tif``, beside ``interferograms/`` and ``metadata/``, on the
frame's own grid (EPSG:4326, 0.001 deg).

Convention (stated here once, used by the inversion):

- values are the **slant-range total tropospheric delay in radians** of Sentinel-1 C-band phase, 0 = no data.
  Source: LiCSAR's own tooling reads them as radians (``LiCSAR_lib``'s ``get_gacos_in_coord`` converts the
  tif with ``rad2mm_s1``; licsar_extra's cube import notes "sltd was radians of delay where POSITIVE means
  BIGGER DELAY") and LiCSBAS ``LiCSBAS03op_GACOS.py`` uses the ``.sltd.geo.tif`` values as radians without
  conversion (its ``.ztd`` inputs are metres and are converted with ``-4 pi / wavelength`` and the incidence).
- sign: positive = more delay = longer apparent range, the same sign as LiCSAR's unwrapped phase (positive
  for range increase). An interferogram ``primary_secondary`` therefore carries ``sltd[secondary] -
  sltd[primary]`` of tropospheric phase, and the correction is ``unw - (sltd[secondary] - sltd[primary])``,
  as LiCSBAS step 03 (``unw_cor = unw - dsltd``) and LiCSAR's ``make_gacos_ifg`` (``gacos2 - gacos1``) do.

The group ``gacos`` holds ``gacos`` (date, y, x) float32 rad (NaN = no data) for the epochs that have a file,
and the attribute ``missing_dates``: the cube's epochs without one, by date. Nothing is dropped here; the
inversion decides (``--gacos-missing keep|drop``).
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import xarray as xr

from insarcloud.errors import ProductError
from insarcloud.io.cube import open_cube, transform_from_coords, write_stage_output
from insarcloud.io.licsar import check_grid, header_of, open_product, read_window
from insarcloud.io.storage import get_fs, join, with_retries

log = logging.getLogger(__name__)

GROUP = "gacos"
VAR = "gacos"
SUFFIX = ".sltd.geo.tif"
SIGN_CONVENTION = ("slant-range tropospheric delay, radians of C-band phase; positive = more delay (range "
                   "increase), the sign of LiCSAR unw: pair correction = unw - (gacos[secondary] - gacos[primary])")


class GacosStack(NamedTuple):
    """Per-epoch GACOS delays of a frame.

    Attributes
    ----------
    dates : np.ndarray
        (date,) datetime64[ns] epochs that have a GACOS file.
    delay : np.ndarray
        (date, y, x) float32 slant delay, rad (module convention), NaN = no data.
    missing : list of str
        YYYYMMDD of the requested epochs without a GACOS file.
    urls : list of str
        The files read, in ``dates`` order.
    """

    dates: np.ndarray
    delay: np.ndarray
    missing: list[str]
    urls: list[str]


def epoch_url(frame_dir: str, date: str) -> str:
    """``<frame_dir>/epochs/YYYYMMDD/YYYYMMDD.sltd.geo.tif``."""
    return join(frame_dir, "epochs", date, f"{date}{SUFFIX}")


def _ymd(d: Any) -> str:
    return pd.Timestamp(d).strftime("%Y%m%d")


def read_gacos(frame_dir: str, dates: Any, shape: tuple[int, int], transform: tuple[float, ...],
               storage_options: dict[str, Any] | None = None) -> GacosStack:
    """Read the GACOS files of ``dates`` under ``frame_dir`` (any fsspec URL) on the frame grid.

    A file that exists but is not on the grid raises GridMismatchError naming it; an unreadable one a
    ProductError naming it. Epochs without a file are returned in ``missing`` (by date).
    """
    fs, _ = get_fs(frame_dir, storage_options)
    found, missing, urls, planes = [], [], [], []
    for d in dates:
        ymd = _ymd(d)
        url = epoch_url(frame_dir, ymd)
        _, path = get_fs(url, storage_options)
        if not with_retries(fs.exists, path):
            missing.append(ymd)
            continue
        with open_product(url, storage_options) as ds:
            check_grid(header_of(ds, url), shape, transform)
            raw = read_window(ds, url, 0, shape[0]).astype(np.float32)
        raw[(raw == 0) | ~np.isfinite(raw)] = np.nan  # LiCSAR: 0 = no data
        found.append(np.datetime64(pd.Timestamp(d).to_datetime64(), "ns"))
        urls.append(url)
        planes.append(raw)
    delay = np.stack(planes) if planes else np.zeros((0, *shape), np.float32)
    return GacosStack(np.array(found, "datetime64[ns]"), delay, missing, urls)


def gacos_dataset(stack: GacosStack, y: np.ndarray, x: np.ndarray, all_dates: Any, frame: str = "") -> xr.Dataset:
    """The ``gacos`` group as a dataset (CF attributes, units and sign stated)."""
    ds = xr.Dataset(
        {VAR: (("date", "y", "x"), stack.delay.astype(np.float32),
               {"long_name": "GACOS slant-range tropospheric delay (LiCSAR epochs/*.sltd.geo.tif)",
                "units": "rad", "sign_convention": SIGN_CONVENTION, "no_data": "NaN"})},
        coords={"date": stack.dates, "y": y, "x": x},
    )
    ds["date"].attrs["long_name"] = "acquisition date"
    ds.attrs.update(frame=frame, source="COMET-LiCSAR GACOS products", files=len(stack.urls),
                    requested_dates=[_ymd(d) for d in all_dates], missing_dates=list(stack.missing),
                    Conventions="CF-1.10")
    return ds


def ingest_gacos(source_url: str, frame: str, cube_url: str, storage_options: dict[str, Any] | None = None,
                 cube_storage_options: dict[str, Any] | None = None) -> GacosStack | None:
    """Read the frame's GACOS epochs into the cube's ``gacos`` group (called after the pair ingest).

    Returns None (and writes nothing) when the frame publishes no GACOS file for any of the cube's epochs;
    epochs without one are logged by date and kept in the group's ``missing_dates`` attribute.
    """
    from insarcloud.io.licsar import frame_url

    root = open_cube(cube_url, cube_storage_options if cube_storage_options is not None else storage_options)
    if "date" not in root.coords or root.sizes.get("date", 0) == 0:
        raise ProductError(f"cube {cube_url} has no epochs: ingest the pairs before GACOS")
    fdir = frame_url(source_url, frame, storage_options)
    y, x = root["y"].values, root["x"].values
    transform = tuple(transform_from_coords(y, x))[:6]
    st = read_gacos(fdir, root["date"].values, (y.size, x.size), transform, storage_options)
    if st.missing:
        log.warning("GACOS: %d of %d epochs of %s have no %s file: %s", len(st.missing), root.sizes["date"], frame,
                    SUFFIX, ", ".join(st.missing))
    if not st.urls:
        log.info("GACOS: frame %s publishes no GACOS epochs; no gacos group written", frame)
        return None
    ds = gacos_dataset(st, y, x, root["date"].values, frame)
    write_stage_output(ds, cube_url, GROUP, stage="gacos",
                       params={"files": st.urls, "missing": st.missing},
                       storage_options=cube_storage_options if cube_storage_options is not None else storage_options)
    log.info("GACOS: %d epochs of %s written to %s/%s", len(st.urls), frame, cube_url, GROUP)
    return st


def pair_delay_indices(gacos_dates: np.ndarray, primary: np.ndarray, secondary: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices into ``gacos_dates`` of each pair's primary and secondary (-1: no GACOS), and a (pair,) bool
    ``covered`` (both epochs have GACOS)."""
    pos = {np.datetime64(d, "D"): i for i, d in enumerate(np.asarray(gacos_dates))}
    ip = np.array([pos.get(np.datetime64(d, "D"), -1) for d in np.asarray(primary)], np.int64)
    is_ = np.array([pos.get(np.datetime64(d, "D"), -1) for d in np.asarray(secondary)], np.int64)
    return ip, is_, (ip >= 0) & (is_ >= 0)
