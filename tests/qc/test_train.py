"""Training: metrics against brute force, a tiny run that lowers the loss, checkpoint + resume on S3."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from insarcloud.qc.model import ModelConfig
from insarcloud.qc.train import (
    TrainConfig,
    best_f1,
    compare_predictors,
    f1_score,
    fit,
    load_split,
    make_targets,
    quality_loss,
    read_checkpoint,
    roc_auc,
    train,
)

from .model_fixtures import tile_dataset, write_tile_dataset

TINY = ModelConfig(channels=("cos_phase", "sin_phase", "coh", "unw_grad"), num_stages=2, decoder_width=8)


def test_roc_auc_and_f1_brute_force():
    rng = np.random.default_rng(0)
    s = np.round(rng.normal(size=300), 1)  # ties on purpose
    y = rng.random(300) < 0.3 + 0.3 * (s > 0)
    pos, neg = s[y], s[~y]
    brute = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (pos.size * neg.size)
    assert np.isclose(roc_auc(s, y), brute)
    assert np.isnan(roc_auc(s, np.zeros(300, bool)))
    pred = s > 0
    tp, fp, fn = (pred & y).sum(), (pred & ~y).sum(), (~pred & y).sum()
    assert np.isclose(f1_score(pred, y), 2 * tp / (2 * tp + fp + fn))
    assert best_f1(s, y) >= f1_score(pred, y) - 1e-12


def test_targets_truth_first_then_rules():
    label = np.array([[0, 1, 2, 255]], np.uint8)
    truth = np.array([[255, 255, 1, 255]], np.uint8)
    weight = np.array([[1, 0.5, 0, 0]], np.float32)
    t, w = make_targets(label, truth, weight, "auto")
    assert t.tolist() == [[0, 1, 1, 0]] and w.tolist() == [[1, 0.5, 1, 0]]
    t, w = make_targets(label, truth, weight, "label")
    assert w.tolist() == [[1, 0.5, 0, 0]]


def test_loss_prefers_right_answer():
    target = torch.zeros(2, 8, 8)
    target[:, 2:4] = 1
    w = torch.ones(2, 8, 8)
    good = (target * 8 - 4)[:, None]
    for kind in ("bce", "bce_dice", "focal_dice"):
        assert quality_loss(good, target, w, kind) < quality_loss(-good, target, w, kind)
        assert torch.isfinite(quality_loss(good, target, torch.zeros_like(w), kind))


def test_tiny_training_lowers_loss():
    ds = tile_dataset(seed=1, n_frames=1, shape=(64, 64), tile=32, splits=("train",))
    tr = load_split(ds, "train", TINY.channels, "auto", 8, np.random.default_rng(0))
    cfg = TrainConfig(model=TINY, epochs=15, batch_size=8, crop=None, lr=5e-3, threads=1, channel_dropout=0,
                      loss="bce")
    model, state = fit(tr, cfg, progress=False)
    losses = [h["train_loss"] for h in state["history"]]
    assert losses[-1] < 0.9 * losses[0] and losses[-1] < min(losses[:3]), losses
    from insarcloud.qc.model import predict_quality

    ev = compare_predictors(predict_quality(model, tr.inputs).quality, tr)
    assert ev["model"].auc > 0.7, ev
    assert set(ev) == {"model", "rules", "rules_uncertain_as_bad", "coherence"}


@pytest.mark.slow
def test_train_checkpoints_to_s3_and_resumes(bucket, storage_options):
    url = f"{bucket}/datasets/tiles.zarr"
    write_tile_dataset(url, storage_options, seed=2, n_frames=3, shape=(64, 64), tile=32)
    ck = f"{bucket}/models/q.pt"
    cfg = TrainConfig(model=TINY, epochs=1, batch_size=8, crop=None, threads=1)
    r1 = train(url, ck, cfg, storage_options=storage_options, progress=False)
    st = read_checkpoint(ck, storage_options)
    assert st["epoch"] == 1 and len(st["history"]) == 1
    assert "model" in r1.evaluation and 0 <= r1.evaluation["model"]["auc"] <= 1
    cfg2 = TrainConfig(model=TINY, epochs=2, batch_size=8, crop=None, threads=1)
    r2 = train(url, ck, cfg2, storage_options=storage_options, progress=False)
    assert [h["epoch"] for h in r2.history] == [1, 2]  # epoch 1 came from the checkpoint
    assert r2.history[0] == r1.history[0]
    other = TrainConfig(model=ModelConfig(num_stages=2, decoder_width=8), epochs=3, threads=1)
    with pytest.raises(ValueError, match="another architecture"):
        train(url, ck, other, storage_options=storage_options, progress=False)
