"""Water (LiCSAR landmask 0) is no data for the unwrapping stage (issue 21)."""

from __future__ import annotations

import numpy as np
import pytest

from insarcloud import io
from insarcloud.unwrap import wrap
from insarcloud.unwrap.dask_ops import unwrap_cube

FRAME = "012A_05850_131313"
PAIRS = ["20240101_20240113", "20240101_20240125", "20240113_20240125"]


def _write(url: str, phase: np.ndarray, landmask: np.ndarray | None) -> None:
    ny, nx = phase.shape[1:]
    coh = np.where(np.isfinite(phase), 0.8, np.nan).astype(np.float32)
    ds = io.make_frame_dataset(frame=FRAME, pairs=PAIRS, lat=10.0 - 0.001 * np.arange(ny),
                               lon=20.0 + 0.001 * np.arange(nx), phase=phase, coh=coh,
                               statics={"landmask": landmask} if landmask is not None else None)
    io.write_new_cube(ds, url)


@pytest.mark.parametrize("method", ["ls", "multiscale"])
def test_water_is_no_data_for_unwrapping(tmp_path, method):
    ny, nx = 60, 70
    y, x = np.mgrid[:ny, :nx].astype(float)
    truth = np.stack([0.3 * x, -0.25 * y + 0.1 * x, 0.3 * x - 0.25 * y])
    phase = wrap(truth).astype(np.float32)
    lm = np.ones((ny, nx), np.float32)
    lm[:, 45:] = 0  # sea
    sea_noise = phase.copy()
    sea_noise[:, lm == 0] = np.random.default_rng(0).uniform(-np.pi, np.pi, (3, int((lm == 0).sum())))
    masked = phase.copy()
    masked[:, lm == 0] = np.nan
    _write(str(tmp_path / "a.zarr"), sea_noise, lm)  # noisy sea + landmask
    _write(str(tmp_path / "b.zarr"), masked, None)  # sea already no data, no landmask (as before)
    ra = unwrap_cube(str(tmp_path / "a.zarr"), method)
    rb = unwrap_cube(str(tmp_path / "b.zarr"), method)
    a = io.open_cube(str(tmp_path / "a.zarr"), group=ra.group)[f"unw_{method}"]
    b = io.open_cube(str(tmp_path / "b.zarr"), group=rb.group)[f"unw_{method}"]
    pa, pb = ra.params.get("params", ra.params), rb.params.get("params", rb.params)  # the stage identity's params
    assert "landmask" in pa and "landmask" not in pb
    assert a.attrs["water_masked"] == "True"
    av, bv = a.values, b.values
    assert np.isnan(av[:, lm == 0]).all()
    np.testing.assert_allclose(av, bv, atol=1e-4, equal_nan=True)
    # the land result is the truth up to one constant per pair (congruent output on clean ramps)
    d = av[:, lm == 1] - truth[:, lm == 1]
    assert np.nanmax(np.abs(d - np.nanmedian(d, axis=1, keepdims=True))) < 1e-3
