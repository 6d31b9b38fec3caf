"""The quality stage under the stage contract (docs/STAGES.md), with real local Ray actors on the local S3
endpoint: its identity is the checkpoint's content, not its path; after qc writes a new group for new pairs,
quality reads that group (the closure channel of every pair) and equals a from-scratch run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from insarcloud import io
from insarcloud.io import stages

from .test_stages import FIRST, FRAME, ingest, simulated, write_source

CHANNELS = ("cos_phase", "sin_phase", "coh", "closure")


def _checkpoint(url: str, so: dict) -> None:
    from insarcloud.qc.model import ModelConfig, build_model
    from insarcloud.qc.train import save_checkpoint

    torch.manual_seed(0)
    m = build_model(ModelConfig(channels=CHANNELS, num_stages=2, decoder_width=8))
    save_checkpoint(url, {"model_config": m.config.model_dump_json(), "state_dict": m.state_dict()}, so)


@pytest.mark.slow
def test_quality_follows_qc_and_its_identity_is_the_checkpoint_content(bucket, storage_options, ray_local):
    from insarcloud.qc.dask_ops import run_qc
    from insarcloud.qc.serve import ServeParams, run_quality

    so = storage_options
    sim = simulated()
    src, cube = f"{bucket}/licsar", f"{bucket}/cubes/{FRAME}.zarr"
    write_source(sim, src, so, FIRST)
    ingest(src, cube, so)
    ck_a, ck_b = f"{bucket}/models/a/q.pt", f"{bucket}/container/models/copy-of-q.pt"
    _checkpoint(ck_a, so)
    fs, _ = io.get_fs(ck_a, so)
    fs.pipe_file(ck_b.removeprefix("s3://"), fs.cat_file(ck_a.removeprefix("s3://")))
    params = ServeParams(checkpoint=ck_a, tile=32, overlap=8, threads=1, bf16=False, chunk=32)
    run_qc(cube, storage_options=so)
    first = run_quality(cube, params, storage_options=so, n_actors=1, progress=False)
    assert first.chunks > 0 and stages.current_group(cube, "quality", so) == first.group
    # the same model at another path (a laptop's vs the container's) is the same input: nothing to do
    moved = run_quality(cube, params.model_copy(update={"checkpoint": ck_b}), storage_options=so, n_actors=1,
                        progress=False)
    assert moved.chunks == 0 and moved.group == first.group

    write_source(sim, src, so)  # LiCSAR added the later acquisitions
    ingest(src, cube, so)
    qc2 = run_qc(cube, storage_options=so)
    assert qc2 != "qc" and stages.current_group(cube, "qc", so) == qc2  # a new qc group, the current one
    second = run_quality(cube, params, storage_options=so, n_actors=1, progress=False)
    assert second.group != first.group and second.chunks > 0

    fresh = f"{bucket}/fresh/{FRAME}.zarr"  # a from-scratch run on every epoch
    ingest(src, fresh, so)
    run_qc(fresh, storage_options=so)
    run_quality(fresh, params, storage_options=so, n_actors=1, progress=False)
    a, b = stages.open_stage(cube, "quality", so), stages.open_stage(fresh, "quality", so)
    # an appended cube keeps its old pairs first; a fresh ingest lists them in LiCSAR's order: match by name
    assert sorted(map(str, a["pair"].values)) == sorted(map(str, b["pair"].values))
    np.testing.assert_allclose(a["quality"].values, b.sel(pair=a["pair"].values)["quality"].values, atol=1e-5)
