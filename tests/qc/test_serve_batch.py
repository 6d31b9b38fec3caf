"""The quality worker's batched path (several pairs of one chunk per actor call) gives each pair exactly what
a one-job call gives: the same tiles, the same blend, the same landmask (issue 23: a 64 px frame's quality
is one tile per pair, and one actor call per pair cost more in requests and call overhead than inference)."""

from __future__ import annotations

import numpy as np
import torch

from insarcloud import io
from insarcloud.qc.model import ModelConfig, build_model, infer_region, plan_window
from insarcloud.qc.serve import QualityWorker, ServeParams, _template, file_sha256, infer_regions, plan_jobs
from insarcloud.qc.train import save_checkpoint

from .conftest import synthetic_cube


def _model(channels: tuple[str, ...]) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(channels=channels, num_stages=2, decoder_width=8)).eval()


def test_infer_regions_equals_infer_region_per_window():
    torch.set_num_threads(1)
    m = _model(("cos_phase", "sin_phase", "coh"))
    rng = np.random.default_rng(0)
    image = rng.normal(size=(3, 3, 100, 90)).astype(np.float32)
    image[1, :, 5:9, 5:20] = np.nan
    plan = plan_window((100, 90), (48, 96), (0, 48), 48, 16)
    win = image[:, :, plan.read_y[0]:plan.read_y[1], plan.read_x[0]:plan.read_x[1]]
    many = infer_regions(m, win, plan, (48, 96), (0, 48), 48, 16, batch_size=5)
    one = np.stack([infer_region(m, win[k], plan, (48, 96), (0, 48), 48, 16, batch_size=4) for k in range(3)])
    assert len(plan.tiles) > 1 and many.shape == (3, 48, 48)
    np.testing.assert_array_equal(many, one)
    assert not np.array_equal(many[0], many[1])  # the pairs are not all given one pair's answer


def test_run_many_writes_what_single_jobs_write(tmp_path):
    torch.set_num_threads(1)
    _, ds = synthetic_cube(seed=4, shape=(64, 64))
    ds = ds.isel(pair=slice(0, 5))
    lm = np.ones((64, 64), np.float32)
    lm[:, 50:] = 0
    ds["landmask"] = (("y", "x"), lm)
    out = []
    for mode in ("one", "many"):
        url = str(tmp_path / mode / "cube.zarr")
        io.write_new_cube(ds, url, chunk=32)
        ck = str(tmp_path / mode / "q.pt")
        m = _model(("cos_phase", "sin_phase", "coh", "unw_grad"))
        save_checkpoint(ck, {"model_config": m.config.model_dump_json(), "state_dict": m.state_dict()})
        p = ServeParams(checkpoint=ck, tile=32, overlap=8, batch_size=8, threads=1, bf16=False)
        marker = {**p.model_dump(), "checkpoint_sha256": file_sha256(ck)}
        root = io.open_cube(url)
        io.create_stage_template(_template(root, (32, 32), marker), url, "quality", stage="quality", params=marker)
        w = QualityWorker(url, "quality", p.model_dump_json())
        jobs = plan_jobs([str(v) for v in root["pair"].values], (64, 64), (32, 32))
        if mode == "one":
            for j in jobs:
                w.run(j)
        else:  # window-major calls of several pairs, one call spanning two windows, one a lone pair
            jobs = sorted(jobs, key=lambda j: (j.y, j.x, j.pair_index))
            recs = w.run_many(jobs[:7]) + w.run_many(jobs[7:8]) + w.run_many(jobs[8:])
            assert [r["key"] for r in recs] == [j.key for j in jobs]
        out.append(io.open_cube(url, group="quality", complete_only=False)["quality"].values)
    one, many = out
    assert np.isnan(one[:, :, 50:]).all() and np.isfinite(one[:, :, :50]).all()
    np.testing.assert_array_equal(many, one)
