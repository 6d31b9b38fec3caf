"""Water and no-data masks in QC (issue 21) on the real LiCSAR crop of frame 106A_09048_000909.

LiCSBAS semantics checked by brute force over land only: step 11 (valid area = land pixels with data in at
least as many pairs as epochs; coverage = a pair's valid pixels in the area / area; coh_avg = mean
coherence over the area; bad if coverage < 0.3 or coh_avg < 0.05) and step 12 (per-loop RMS of the
closure over the land pixels; a loop is bad at RMS >= 1.5 rad; a pair is bad when it is in a bad loop and
in no good loop). The full frame's figure is in docs/real_data.md (benchmarks/qc_real_masks.py).
"""

from __future__ import annotations

import glob

import numpy as np
import pytest
import rasterio

from insarcloud import io
from insarcloud.io.licsar import to_cube_values
from insarcloud.qc import labels
from insarcloud.qc.dask_ops import qc_dataset
from insarcloud.qc.network import find_triplets
from insarcloud.qc.products import frame_qc
from insarcloud.qc.stats import mask_water

from .conftest import LICSAR, REAL_FRAME

FRAME_DIR = LICSAR / "106" / REAL_FRAME


def _read(path: str, kind: str) -> np.ndarray:
    with rasterio.open(path) as ds:
        return to_cube_values(ds.read(1), kind, ds.nodata)


@pytest.fixture(scope="module")
def crop():
    pairs = sorted(p.name for p in (FRAME_DIR / "interferograms").iterdir())
    ph = np.stack([_read(f"{FRAME_DIR}/interferograms/{p}/{p}.geo.diff_pha.tif", "diff_pha") for p in pairs])
    cc = np.stack([_read(f"{FRAME_DIR}/interferograms/{p}/{p}.geo.cc.tif", "cc") for p in pairs])
    lm = _read(glob.glob(f"{FRAME_DIR}/metadata/*.geo.landmask.tif")[0], "landmask")
    return pairs, ph, cc, lm


def _with_sea_noise(ph: np.ndarray, cc: np.ndarray, lm: np.ndarray, seed: int = 0):
    """The crop's water given LiCSAR-like sea data (as the full frame's sea has: random phase, mean coherence
    0.04 where the full frame has sea data), so that water outweighs land as on the 86%-sea frame."""
    rng = np.random.default_rng(seed)
    sea = lm == 0
    ph2, cc2 = ph.copy(), cc.copy()
    ph2[:, sea] = rng.uniform(-np.pi, np.pi, (ph.shape[0], int(sea.sum()))).astype(np.float32)
    cc2[:, sea] = rng.uniform(0.01, 0.07, (ph.shape[0], int(sea.sum()))).astype(np.float32)
    return ph2, cc2


def _licsbas_11_12(pairs, ph, cc, land):
    """Brute-force LiCSBAS steps 11 and 12 over land pixels (wrapped closure: the crop has no unw)."""
    n_ep = len({d for p in pairs for d in p.split("_")})
    valid = np.isfinite(ph) & land[None]
    area = valid.sum(axis=0) >= n_ep
    cov = valid[:, area].sum(axis=1) / area.sum()
    c = np.where(np.isfinite(cc) & (cc > 0), cc.astype(np.float64), np.nan)[:, area]
    coh = np.nanmean(c, axis=1)
    bad11 = (cov < 0.3) | (coh < 0.05)
    trip = find_triplets(pairs)
    rms = []
    for ij, jk, ik in zip(trip.ij, trip.jk, trip.ik, strict=True):
        z = np.exp(1j * ph[ij]) * np.exp(1j * ph[jk]) * np.conj(np.exp(1j * ph[ik]))
        clo = np.angle(z)[land & np.isfinite(z)]
        rms.append(np.sqrt(np.mean(clo**2)))
    rms = np.array(rms)
    bad12 = []
    for p in range(len(pairs)):
        mine = [t for t in range(len(rms)) if p in (trip.ij[t], trip.jk[t], trip.ik[t])]
        bad12.append(any(rms[t] >= 1.5 for t in mine) and not any(rms[t] < 1.5 for t in mine))
    return cov, coh, bad11, rms, np.array(bad12)


def test_step11_step12_over_land_and_labels_agree(crop):
    pairs, ph, cc, lm = crop
    land = lm == 1
    assert 0.3 < land.mean() < 0.9  # the crop has both
    ph_s, cc_s = _with_sea_noise(ph, cc, lm)
    cov, coh, bad11, rms, bad12 = _licsbas_11_12(pairs, ph_s, cc_s, land)
    r = frame_qc(pairs, ph_s, cc_s, landmask=lm)
    np.testing.assert_allclose(r.step11.coverage, cov, rtol=1e-12)
    np.testing.assert_allclose(r.step11.coh_avg, coh, rtol=1e-5)
    np.testing.assert_array_equal(r.step11.bad, bad11)
    np.testing.assert_allclose(r.loops_wrapped.rms, rms, rtol=1e-4)
    np.testing.assert_array_equal(r.step12.bad, bad12)
    # LiCSBAS over land: every pair passes both steps, and QC agrees: no pair is labelled bad
    assert not bad11.any() and not bad12.any()
    assert not np.any(r.ifg.label == labels.BAD)
    # water is no data in every per-pixel product
    assert np.all(r.pixels.label[:, ~land] == labels.NODATA)
    # without the mask the same data (sea noise counted) makes every interferogram bad (the issue)
    r0 = frame_qc(pairs, ph_s, cc_s)
    assert np.all(r0.ifg.label == labels.BAD)
    assert np.all(r0.step11.coh_avg < r.step11.coh_avg)


def test_no_landmask_behaves_as_before(crop):
    pairs, ph, cc, _ = crop
    a = frame_qc(pairs, ph, cc)
    b = frame_qc(pairs, ph, cc, landmask=np.ones(ph.shape[1:], np.float32))
    c = frame_qc(pairs, ph, cc, landmask=np.full(ph.shape[1:], np.nan, np.float32))  # unknown: kept
    for other in (b, c):
        np.testing.assert_array_equal(a.pixels.label, other.pixels.label)
        np.testing.assert_array_equal(a.ifg.label, other.ifg.label)
        np.testing.assert_array_equal(a.step11.coverage, other.step11.coverage)
    assert mask_water(ph, None) is ph


@pytest.mark.parametrize("block", [64, 512])
def test_dask_path_uses_the_cube_landmask(crop, block):
    pairs, ph, cc, lm = crop
    ph_s, cc_s = _with_sea_noise(ph, cc, lm)
    ny, nx = ph.shape[1:]
    lat = -0.1 - np.arange(ny) * 0.001
    lon = -91.0 + np.arange(nx) * 0.001
    ds = io.make_frame_dataset(frame=REAL_FRAME, pairs=pairs, lat=lat, lon=lon, phase=ph_s, coh=cc_s,
                               statics={"landmask": lm})
    from insarcloud.qc.config import QCParams

    out = qc_dataset(ds, QCParams(block=block)).compute()
    ref = frame_qc(pairs, ph_s, cc_s, landmask=lm)
    assert out.attrs["landmask_applied"] == 1 and out.attrs["n_land_pixels"] == int((lm != 0).sum())
    np.testing.assert_array_equal(out["label"].values, ref.pixels.label)
    np.testing.assert_array_equal(out["ifg_label"].values, ref.ifg.label)
    np.testing.assert_allclose(out["coverage"].values, ref.step11.coverage, rtol=1e-6)
    assert not np.any(out["ifg_label"].values == labels.BAD)
    no_lm = qc_dataset(ds.drop_vars("landmask"), QCParams(block=block)).compute()
    assert no_lm.attrs["landmask_applied"] == 0
    assert np.all(no_lm["ifg_label"].values == labels.BAD)
