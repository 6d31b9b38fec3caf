"""The labelled tile dataset on the local S3 endpoint: format, truth, rule labels, manual verdicts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from insarcloud import io
from insarcloud.errors import InputArrayError
from insarcloud.qc import dataset, labels

from .conftest import synthetic_cube


def test_tile_helpers() -> None:
    assert dataset.tile_starts(100, 64) == [0, 36]
    assert dataset.tile_starts(50, 64) == [0]
    assert dataset.tile_starts(128, 64) == [0, 64]
    g = dataset.unw_gradient(np.add.outer(np.arange(5.0), 2 * np.arange(6.0)).astype(np.float32))
    np.testing.assert_allclose(g, np.hypot(1, 2), rtol=1e-6)
    t = dataset.truth_mask(np.array([0.0, np.nan, 1.0, 1.0]), np.array([1, 0, 0, 0]),
                           np.array([0.9, 0.9, 0.1, 0.5]))
    assert t.tolist() == [1, 255, 1, 0]
    assert dataset.split_of("012A_05850_131313") == dataset.split_of("012A_05850_131313")
    with pytest.raises(InputArrayError, match="verdict"):
        dataset.validate_verdict({"tile": 1, "verdict": "maybe"})
    with pytest.raises(InputArrayError, match="at least one"):
        dataset.validate_verdict({"tile": 1, "verdict": "bad_areas", "bad_mask": []})
    v = dataset.validate_verdict({"tile": 3, "verdict": "bad_areas", "bad_mask": [[50, 70, -3, 2]]}, tile_size=64)
    assert v["bad_mask"] == [[0, 2, 50, 64]]


@pytest.mark.slow
def test_build_dataset_on_s3(bucket: str, storage_options: dict) -> None:
    s, ds = synthetic_cube(3, shape=(96, 96))
    # an all-NaN corner on one pair (no overlap there): its tile is skipped, not written
    ds["phase"][0, :48, :48] = np.nan
    syn_url = f"{bucket}/cubes/012A_05850_131313.zarr"
    io.write_new_cube(ds, syn_url, storage_options)
    _, ds2 = synthetic_cube(5, shape=(40, 40), unw=False)  # a second frame without unw (like LiCSAR's)
    ds2.attrs["frame"] = "106A_09048_000909"
    nounw_url = f"{bucket}/cubes/106A_09048_000909.zarr"
    io.write_new_cube(ds2, nounw_url, storage_options)
    truth_url = f"{bucket}/truth/012A_05850_131313.zarr"
    dataset.write_truth(truth_url, s.pairs, ds["y"].values, ds["x"].values, s.unw_error, s.coh_true,
                        storage_options)
    out = f"{bucket}/datasets/qc_tiles.zarr"
    summary = dataset.build_dataset([syn_url, nounw_url], out, [truth_url, None], tile=48,
                                    splits={"106A_09048_000909": "test"}, storage_options=storage_options)
    d = dataset.open_dataset(out, storage_options)
    assert [str(c) for c in d["channel"].values] == ["cos_phase", "sin_phase", "coh", "unw_grad", "closure"]
    assert d["inputs"].dtype == np.float32 and d["inputs"].dims == ("tile", "channel", "ty", "tx")
    for name, dt in (("label", np.uint8), ("truth", np.uint8), ("weight", np.float32)):
        assert d[name].dtype == dt and d[name].dims == ("tile", "ty", "tx")
    assert d.attrs["tile_size"] == 48 and "unw_error" in d.attrs["truth_rule"]
    assert json.loads(d.attrs["source_cubes"]) == [syn_url, nounw_url]
    assert summary["tiles"] == d.sizes["tile"]
    frames = d["frame"].values.astype(str)
    syn, other = frames == "012A_05850_131313", frames == "106A_09048_000909"
    assert syn.sum() == 9 * 2 * 2 - 1  # 9 pairs x 2 x 2 tiles, minus the all-NaN one
    assert not (syn & (d["pair"].values == s.pairs[0]) & (d["y0"].values == 0) & (d["x0"].values == 0)).any()
    assert other.sum() == 9  # 40 x 40 frame: one padded tile per pair
    assert (d["split"].values.astype(str)[other] == "test").all()
    # the frame without unw: no truth, its unw channels are NaN, padding is NaN / 255
    assert (d["truth"].values[other] == 255).all()
    assert np.isnan(d["inputs"].sel(channel="closure").values[other]).all()
    assert np.isnan(d["inputs"].values[other][:, :, 40:, :]).all() and (d["label"].values[other][:, 40:] == 255).all()
    # synthetic tiles: the truth and labels are the frame's, cut at (y0, x0)
    q = io.open_cube(syn_url, storage_options, group="qc")
    for i in np.flatnonzero(syn)[:6]:
        pair, y0, x0 = str(d["pair"].values[i]), int(d["y0"].values[i]), int(d["x0"].values[i])
        p = s.pairs.index(pair)
        truth = s.truth[p, y0:y0 + 48, x0:x0 + 48].copy()
        truth[~np.isfinite(ds["phase"].values[p, y0:y0 + 48, x0:x0 + 48])] = 255
        np.testing.assert_array_equal(d["truth"].values[i], truth)
        np.testing.assert_array_equal(d["label"].values[i], q["label"].values[p, y0:y0 + 48, x0:x0 + 48])
        np.testing.assert_allclose(d["inputs"].values[i, 0], np.cos(ds["phase"].values[p, y0:y0 + 48, x0:x0 + 48]),
                                   atol=1e-6)
        lab = d["label"].values[i]
        np.testing.assert_array_equal(d["weight"].values[i], (lab == 0) | (lab == 1))
        assert d["tile_label"].values[i] == labels.tile_label(lab)
    # the rule labels of the dataset score against the truth as the frame does
    sc = labels.score_labels(d["label"].values[syn], d["truth"].values[syn])
    assert sc.precision > 0.8 and sc.recall > 0.7
    # manual verdicts: written one object per tile, merged into label / weight
    unc = [int(t) for t in d["tile"].values[d["tile_label"].values == labels.UNCERTAIN][:3]]
    assert len(unc) == 3
    dataset.save_verdict(out, {"tile": unc[0], "verdict": "accept", "reviewer": "t"}, storage_options)
    dataset.save_verdict(out, {"tile": unc[1], "verdict": "reject", "reviewer": "t"}, storage_options)
    dataset.save_verdict(out, {"tile": unc[2], "verdict": "bad_areas", "bad_mask": [[0, 0, 8, 8]]},
                         storage_options)
    verdicts = dataset.load_verdicts(out, storage_options)
    assert sorted(verdicts) == sorted(unc)
    merged = dataset.apply_verdicts(d, verdicts)
    before = d["label"].values
    after = merged["label"].values
    valid = before != 255
    assert not (after[unc[0]] == labels.UNCERTAIN).any()
    np.testing.assert_array_equal(after[unc[0]][before[unc[0]] == 1], 1)  # rule-bad pixels stay bad
    assert (after[unc[1]][valid[unc[1]]] == labels.BAD).all()
    box = after[unc[2]][:8, :8][valid[unc[2]][:8, :8]]
    assert (box == labels.BAD).all()
    assert (merged["weight"].values[unc[1]][valid[unc[1]]] == 1).all()
    others = np.setdiff1d(np.arange(d.sizes["tile"]), [list(d["tile"].values).index(t) for t in unc])
    np.testing.assert_array_equal(after[others], before[others])
    assert merged["verdict"].values[list(d["tile"].values).index(unc[1])] == "reject"
