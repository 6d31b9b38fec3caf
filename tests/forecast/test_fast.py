"""FastGLER (the prediction path) computes GLER-BiGRUnet's function: same outputs as the module's forward to
float32 rounding, in one forward pass and through the cyclic loop (docs/forecast.md, "Prediction throughput")."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from insarcloud.forecast.fast import FastGLER, fast_model
from insarcloud.forecast.models import ModelConfig, build_model
from insarcloud.forecast.predict import cyclic_predict

# stated tolerance: float32 rounding of reordered sums, relative to the output's scale (measured: ~1e-6 of
# max |output| at the default init, up to ~4e-6 with these wider weights)
RTOL_SCALE = 1e-5


def _assert_close(got: np.ndarray, ref: np.ndarray) -> None:
    np.testing.assert_allclose(got, ref, rtol=0, atol=RTOL_SCALE * max(1.0, float(np.abs(ref).max())))


def _gler(window: int, cfg: ModelConfig, seed: int = 0) -> torch.nn.Module:
    """GLER with weights spread wider than the default init, so every gate and attention row matters."""
    torch.manual_seed(seed)
    m = build_model("gler", window, cfg)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, 0.3)
    return m.eval()


@pytest.mark.parametrize("window,cfg", [
    (12, ModelConfig()),  # the defaults: width 16, 8 heads of 2, 3 layers
    (7, ModelConfig(width=8, heads=1, rnn_layers=1)),  # one head of 8, one layer
    (10, ModelConfig(width=16, heads=4, rnn_layers=2)),  # heads of 4
])
def test_fast_forward_equals_module(window, cfg):
    m = _gler(window, cfg)
    x = torch.as_tensor(np.random.default_rng(1).normal(size=(37, window, 4)).astype(np.float32))
    with torch.no_grad():
        ref = m(x)
        got = FastGLER(m)(x)
    assert got.shape == ref.shape == (37, 4)
    assert ref.abs().max() > 0.5  # not a trivially small output
    _assert_close(got.numpy(), ref.numpy())


@pytest.mark.parametrize("with_future", [False, True])
def test_fast_cyclic_equals_module_cyclic(with_future):
    """The fast cyclic loop (time-major windows, batches that do not divide the pixels) == the module path."""
    m = _gler(12, ModelConfig(), seed=2)
    rng = np.random.default_rng(3)
    win = rng.normal(size=(11, 12, 4)).astype(np.float32)
    ff = rng.normal(size=(9, 11, 3)).astype(np.float32) if with_future else None
    ref = cyclic_predict(m, win, 9, batch=5, factor_future=ff, fast=False)
    got = cyclic_predict(m, win, 9, batch=4, factor_future=ff)
    assert got.shape == (9, 11, 4) and np.abs(ref).max() > 0.5
    _assert_close(got, ref)
    if with_future:  # the fed factors, not the predicted ones, reach the next step
        assert not np.allclose(got, cyclic_predict(m, win, 9, batch=4))


def test_fast_model_only_for_gler():
    base = build_model("mhca_bigru", 10, ModelConfig(width=8, rnn_layers=1))
    assert fast_model(base) is base
    assert isinstance(fast_model(_gler(10, ModelConfig(width=8))), FastGLER)
    with pytest.raises(TypeError, match="GLERBiGRUnet"):
        FastGLER(base)


def test_fast_copies_weights_at_build():
    """The twin holds a copy: training the module further does not change an existing twin (callers build it
    per cyclic_predict call, after training)."""
    m = _gler(8, ModelConfig(width=8, heads=2, rnn_layers=1))
    f = FastGLER(m)
    x = torch.as_tensor(np.random.default_rng(4).normal(size=(5, 8, 4)).astype(np.float32))
    with torch.no_grad():
        before = f(x).clone()
        for p in m.parameters():
            p.add_(1.0)
        np.testing.assert_array_equal(f(x).numpy(), before.numpy())
        assert not torch.allclose(m(x), before)


def test_predict_windows_fast_equals_module():
    """The one-step test's predictions (predict_windows) through the fast path == the module's."""
    from insarcloud.forecast.predict import predict_windows

    m = _gler(9, ModelConfig(), seed=5)
    x = np.random.default_rng(6).normal(size=(300, 9, 4)).astype(np.float32)
    got = predict_windows(m, x, batch=128)
    ref = predict_windows(m, x, fast=False)
    assert got.shape == ref.shape == (300, 4)
    _assert_close(got, ref)
