"""The quality stage leaves water (LiCSAR landmask 0) without quality: NaN (issue 21). One worker in this
process (the Ray pool around it is tested in test_serve.py)."""

from __future__ import annotations

import numpy as np
import torch

from insarcloud import io
from insarcloud.qc.model import ModelConfig, build_model
from insarcloud.qc.serve import QualityWorker, ServeParams, _template, file_sha256, plan_jobs
from insarcloud.qc.train import save_checkpoint

from .conftest import synthetic_cube

CHANNELS = ("cos_phase", "sin_phase", "coh")


def test_water_quality_is_nan(tmp_path):
    _, ds = synthetic_cube(seed=4, shape=(64, 64), unw=False)
    ds = ds.isel(pair=slice(0, 2))
    lm = np.ones((64, 64), np.float32)
    lm[:, 40:] = 0
    ds["landmask"] = (("y", "x"), lm)
    url = str(tmp_path / "cube.zarr")
    io.write_new_cube(ds, url, chunk=32)
    ck = str(tmp_path / "q.pt")
    torch.manual_seed(0)
    m = build_model(ModelConfig(channels=CHANNELS, num_stages=2, decoder_width=8))
    save_checkpoint(ck, {"model_config": m.config.model_dump_json(), "state_dict": m.state_dict()})
    p = ServeParams(checkpoint=ck, tile=32, overlap=8, batch_size=4, threads=1)
    marker = {**p.model_dump(), "checkpoint_sha256": file_sha256(ck)}
    root = io.open_cube(url)
    io.create_stage_template(_template(root, (32, 32), marker), url, "quality", stage="quality", params=marker)
    w = QualityWorker(url, "quality", p.model_dump_json())
    for job in plan_jobs([str(v) for v in root["pair"].values], (64, 64), (32, 32)):
        w.run(job)
    q = io.open_cube(url, group="quality", complete_only=False)["quality"].values
    assert np.isnan(q[:, :, 40:]).all()
    land = q[:, :, :40]
    assert np.isfinite(land).all() and (land >= 0).all() and (land <= 1).all()


def test_closure_model_on_a_cube_without_unw(tmp_path):
    """A cube without ``unw`` (LiCSAR crops ingested without unwrapped phase) gets a qc group without
    ``pair_closure``: a model with a closure channel sees it as no data, as in training, and still writes
    quality (the image test's area job failed here: 'NoneType' object is not iterable)."""
    from insarcloud.qc.dask_ops import run_qc

    _, ds = synthetic_cube(seed=5, shape=(64, 64), unw=False)
    url = str(tmp_path / "cube.zarr")
    io.write_new_cube(ds.isel(pair=slice(0, 6)), url, chunk=32)
    qc_group = run_qc(url)
    assert "pair_closure" not in io.open_cube(url, group=qc_group).data_vars
    ck = str(tmp_path / "q.pt")
    torch.manual_seed(0)
    m = build_model(ModelConfig(channels=(*CHANNELS, "closure"), num_stages=2, decoder_width=8))
    save_checkpoint(ck, {"model_config": m.config.model_dump_json(), "state_dict": m.state_dict()})
    p = ServeParams(checkpoint=ck, tile=32, overlap=8, batch_size=4, threads=1)
    marker = {**p.model_dump(), "checkpoint_sha256": file_sha256(ck)}
    root = io.open_cube(url)
    io.create_stage_template(_template(root, (32, 32), marker), url, "quality", stage="quality", params=marker)
    w = QualityWorker(url, "quality", p.model_dump_json(), qc_group=qc_group)
    w.run_many(plan_jobs([str(v) for v in root["pair"].values], (64, 64), (32, 32)))
    q = io.open_cube(url, group="quality", complete_only=False)["quality"].values
    assert np.isfinite(q).all() and (q >= 0).all() and (q <= 1).all()
