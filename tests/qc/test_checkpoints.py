"""The shipped ConvNeXt-InSAR exports, scored against a simulated frame's truth (never seen in training).

The default map's "bad" is unwrapping error or decorrelation (true coherence < 0.2); the ``_unw`` map's is
unwrapping errors alone (the inversion's weights; notes/invert.md). Each must rank its own target.
"""

from __future__ import annotations

import numpy as np
import pytest

from insarcloud.qc.model import stack_quality
from insarcloud.qc.products import frame_qc
from insarcloud.qc.serve import DEFAULT_CHECKPOINT, PACKAGED_CHECKPOINTS
from insarcloud.qc.train import load_model, roc_auc
from insarcloud.simulate import simulate_frame

UNW_CHECKPOINT = PACKAGED_CHECKPOINTS["unw_error"]
TILE, OVERLAP = 64, 16


@pytest.fixture(scope="module")
def frame():  # type: ignore[no-untyped-def]
    # a seed and scene of no training frame (make_checkpoint.py uses seeds 100-107, scenes 0-7); 40 epochs
    # reach the winter, and errors in 30% of pairs as in benchmarks/invert.py: ~5% error, ~34% decorrelated
    return simulate_frame(shape=(64, 64), n_epochs=40, seed=5, scene_seed=9, unw_error_pair_fraction=0.3)


def _p_bad(ckpt: str, sf) -> np.ndarray:  # type: ignore[no-untyped-def]
    phase, coh, unw = (a.astype(np.float32) for a in (sf.phase, sf.coherence_est, sf.unw))
    closure = frame_qc(sf.pairs, phase, coh, unw).pixels.pair_closure
    return 1.0 - stack_quality(load_model(ckpt).eval(), phase, coh, unw, closure, tile=TILE, overlap=OVERLAP,
                               batch_size=8)


@pytest.mark.parametrize("ckpt,target", [(DEFAULT_CHECKPOINT, "bad"), (UNW_CHECKPOINT, "unw_error")])
def test_shipped_checkpoint_ranks_its_target(frame, ckpt, target) -> None:  # type: ignore[no-untyped-def]
    p = _p_bad(str(ckpt), frame)
    err = frame.unw_cycles != 0
    truth = err | (frame.coherence < 0.2) if target == "bad" else err
    ok = np.isfinite(p) & np.isfinite(frame.unw)
    assert 0.002 < truth[ok].mean() < 0.98, "the test frame needs both classes"
    assert roc_auc(p[ok], truth[ok]) > 0.85
    if target == "unw_error":
        # and it is not just a decorrelation detector: among decorrelated pixel-pairs it still finds the errors
        low = ok & (frame.coherence < 0.3)
        assert roc_auc(p[low], err[low]) > 0.75


def test_packaged_checkpoints_by_name() -> None:
    from insarcloud.qc.serve import ServeParams

    assert ServeParams(checkpoint="unw_error").checkpoint == str(UNW_CHECKPOINT) and UNW_CHECKPOINT.exists()
    assert ServeParams(checkpoint="default").checkpoint == ServeParams().checkpoint == str(DEFAULT_CHECKPOINT)
    assert ServeParams(checkpoint="s3://bucket/mine.pt").checkpoint == "s3://bucket/mine.pt"
