"""LiCSAR-layout GACOS epoch files for a simulated frame (``epochs/YYYYMMDD/YYYYMMDD.sltd.geo.tif``).

The simulator's atmosphere (:mod:`insarcloud.simulate.atmosphere`) is stored as apparent LOS displacement
in mm, positive toward the satellite (minus the slant delay). LiCSAR's GACOS products are the slant delay
in radians of C-band phase, positive for more delay (insarcloud.io.gacos states the convention and its
source), so ``sltd = -atmosphere_mm / 1000 * 4 pi / wavelength``; an interferogram's tropospheric phase is
then ``sltd[secondary] - sltd[primary]`` (the sign of LiCSAR ``unw``).

GACOS is a model, not the truth: :func:`gacos_model` is the true delay low-passed by a Gaussian (default
3 pixels, ~300 m) plus a white error (default 0.1 rad), so a test can measure how much of the atmosphere
a correction removes. This is optimistic (real GACOS resolves little of the km-scale turbulence that
dominates a small simulated frame): it checks the correction's plumbing and sign, not GACOS's skill.
Files are written as the simulator's writer writes LiCSAR float products (EPSG:4326, DEFLATE predictor 3,
0 = no data).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from insarcloud.io import WAVELENGTH_M, get_fs, join, with_retries

from .frame import SimulatedFrame
from .writer import _float_product, _tiff_bytes, _ymd, frame_url

__all__ = ["atmosphere_sltd", "gacos_model", "write_gacos_epochs"]


def atmosphere_sltd(sim: SimulatedFrame) -> np.ndarray:
    """(date, y, x) float32 true slant tropospheric delay of the simulation, rad (LiCSAR sltd convention)."""
    return (-np.asarray(sim.atmosphere, np.float64) / 1000.0 * 4 * np.pi / WAVELENGTH_M).astype(np.float32)


def gacos_model(sim: SimulatedFrame, *, sigma_px: float = 3.0, error_rad: float = 0.1, seed: int = 0) -> np.ndarray:
    """(date, y, x) float32 a GACOS-like estimate of the slant delay, rad: the true delay low-passed with a
    Gaussian of ``sigma_px`` pixels plus white noise of ``error_rad``."""
    rng = np.random.default_rng(seed)
    true = atmosphere_sltd(sim)
    out = np.stack([gaussian_filter(t.astype(np.float64), sigma_px, mode="nearest") for t in true])
    out += rng.normal(0.0, error_rad, out.shape)
    return out.astype(np.float32)


def write_gacos_epochs(sim: SimulatedFrame, root_url: str, sltd: np.ndarray | None = None, *,
                       skip_dates: Sequence[str] = (), storage_options: dict[str, Any] | None = None) -> list[str]:
    """Write ``epochs/YYYYMMDD/YYYYMMDD.sltd.geo.tif`` for every epoch except ``skip_dates`` (YYYYMMDD).

    ``sltd`` (date, y, x) rad defaults to :func:`gacos_model`. Returns the URLs written.
    """
    import rasterio
    from rasterio.session import DummySession
    from rasterio.transform import Affine

    delay = gacos_model(sim) if sltd is None else np.asarray(sltd, np.float32)
    if delay.shape != (len(sim.dates), *sim.shape):
        raise ValueError(f"sltd must be (date, y, x) = {(len(sim.dates), *sim.shape)}, got {delay.shape}")
    base = frame_url(sim, root_url)
    fs, _ = get_fs(base, storage_options)
    tr = Affine(*sim.grid.transform)
    skip = set(skip_dates)
    written = []
    with rasterio.Env(session=DummySession()):
        for k, d in enumerate(sim.dates):
            ymd = _ymd(d)
            if ymd in skip:
                continue
            url = join(base, "epochs", ymd, f"{ymd}.sltd.geo.tif")
            _, path = get_fs(url, storage_options)
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            with_retries(fs.pipe, {path: _tiff_bytes(_float_product(delay[k], sim.valid), tr)})
            written.append(url)
    return written
