"""GLER-BiGRUnet and baselines: shapes through every module, the losses of eqs. 17-18, a short training
that lowers the loss, the cyclic predictor's length and inverse transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from insarcloud.errors import InputArrayError
from insarcloud.forecast.dataset import prepare
from insarcloud.forecast.models import (
    EF_MODELS,
    GLFE,
    MODEL_NAMES,
    GLERBiGRUnet,
    ModelConfig,
    SelfAttention,
    build_model,
)
from insarcloud.forecast.predict import cyclic_forecast, cyclic_predict, one_step_test
from insarcloud.forecast.train import TrainConfig, logcosh, moa_logcosh, moa_r2_torch, train_model

torch.set_num_threads(1)


def test_glfe_and_self_attention_shapes():
    x = torch.randn(3, 15, 1)
    g = GLFE(1, 16, "relu")(x)
    assert g.shape == (3, 15, 16) and (g >= 0).all()
    assert GLFE(1, 16, "tanh")(x).abs().max() <= 1
    assert SelfAttention(16)(g).shape == (3, 15, 16)


def test_gler_internal_shapes():
    cfg = ModelConfig(width=16)
    m = GLERBiGRUnet(15, cfg).eval()
    x = torch.randn(4, 15, 4)
    g = [mod(x[..., i : i + 1]) for i, mod in enumerate(m.glfe)]
    efs = torch.cat(g[1:], -1)
    assert efs.shape == (4, 15, 48)  # eq. 5
    awfm, w = m.mhca(g[0], efs, efs, need_weights=True, average_attn_weights=False)
    assert awfm.shape == (4, 15, 16)  # W^0 maps back to the SD width (eq. 9)
    assert w.shape == (4, 8, 15, 15)  # 8 heads (eq. 8)
    assert m.bigru1.num_layers == 3 and m.bigru1.bidirectional and m.bigru2.num_layers == 3
    assert m(x).shape == (4, 4)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_shape(name):
    m = build_model(name, 12, ModelConfig(width=16, rnn_layers=1)).eval()
    out = m(torch.randn(5, 12, 4))
    assert out.shape == (5, 4 if name in EF_MODELS else 1)
    assert tuple(m.outputs) == ((0, 1, 2, 3) if name in EF_MODELS else (0,))


def test_sd_only_models_ignore_factors():
    m = build_model("bigru", 12, ModelConfig(width=16, rnn_layers=1)).eval()
    x = torch.randn(5, 12, 4)
    x2 = x.clone()
    x2[..., 1:] = torch.randn(5, 12, 3)
    torch.testing.assert_close(m(x), m(x2))


def test_losses():
    x = torch.linspace(-30, 30, 101)
    torch.testing.assert_close(logcosh(x[45:56]), torch.log(torch.cosh(x[45:56])))
    assert torch.isfinite(logcosh(x)).all()
    p = torch.zeros(10, 4)
    t = torch.zeros(10, 4)
    t[:, 0] = 1.0
    assert float(moa_logcosh(p, t)) == pytest.approx(np.log(np.cosh(1.0)) / 4, rel=1e-5)
    y = torch.randn(50, 4)
    assert float(moa_r2_torch(y, y)) == pytest.approx(1.0)


def _toy(n_pix=24, t=90, seed=0):
    rng = np.random.default_rng(seed)
    tt = np.arange(t)[:, None]
    ph = rng.uniform(0, 1, n_pix)[None]
    lst = 10 * np.cos(2 * np.pi * (tt / 30.0 - 0.1)) + rng.normal(0, 0.3, (t, n_pix))
    d = np.cumsum(0.4 * np.cos(2 * np.pi * (tt / 30.0 - 0.3 - 0.05 * ph)) - 0.1, 0) + rng.normal(0, 0.05, (t, n_pix))
    ndvi = np.clip(0.2 + 0.02 * lst, 0, 1)
    pr = np.maximum(lst, 0) * 3
    return d.astype(np.float32), np.stack([lst, ndvi, pr]).astype(np.float32)


def test_short_training_lowers_loss():
    d, f = _toy(n_pix=12)
    p = prepare(d, f, window=12, rng=np.random.default_rng(0))
    m = build_model("gler", p.window, ModelConfig(width=8, rnn_layers=1))
    res = train_model(m, p.x_train, p.y_train, p.x_val, p.y_val,
                      TrainConfig(epochs=5, batch_size=128, lr=5e-3, device="cpu"))
    h = res.history
    assert len(h["val_loss"]) == 5
    assert h["train_loss"][-1] < 0.7 * h["train_loss"][0]
    assert min(h["val_loss"]) < 0.7 * h["val_loss"][0]
    assert h["val_r2"][-1] > h["val_r2"][0]


def test_plateau_schedule_reduces_lr():
    d, f = _toy(n_pix=4, t=60)
    p = prepare(d, f, window=12, rng=np.random.default_rng(0))
    m = build_model("gru", p.window, ModelConfig(width=8, heads=1, rnn_layers=1))
    res = train_model(m, p.x_train, p.y_train, p.x_val, p.y_val,
                      TrainConfig(epochs=8, lr=1e-9, plateau_patience=0, plateau_cooldown=0, device="cpu"))
    assert res.history["lr"][-1] < 1e-9


class _Const(torch.nn.Module):
    """A 'model' that always predicts the same scaled vector (to check the predictor's bookkeeping)."""

    def __init__(self, value):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(value, dtype=torch.float32))
        self.outputs = (0, 1, 2, 3)

    def forward(self, x):
        return self.w.expand(x.shape[0], 4)


def test_cyclic_length_and_inverse_transforms():
    d, f = _toy(n_pix=5, t=70)
    p = prepare(d, f, window=12, rng=np.random.default_rng(0))
    model = _Const([0.5, -1.0, 0.0, 2.0])
    raw = cyclic_predict(model, np.transpose(p.series[:, -12:], (2, 1, 0)), 72)
    assert raw.shape == (72, 5, 4)
    out = cyclic_forecast(model, p, d, p.series.shape[1], 72)
    assert out.displacement.shape == (72, 5) and out.factors.shape == (3, 72, 5)
    # constant scaled increment z -> displacement grows linearly by z*std + mean per 12-day step
    inc = 0.5 * p.scaler.std[0] + p.scaler.mean[0]
    np.testing.assert_allclose(out.displacement, d[-1] + inc * np.arange(1, 73)[:, None], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(out.factors[0], -1.0 * p.scaler.std[1] + p.scaler.mean[1], rtol=1e-5)
    # one-step test: true level before + predicted increment
    one = one_step_test(model, p, d)
    np.testing.assert_allclose(one, d[-11:-1] + inc, rtol=1e-4, atol=1e-3)


def test_forecast_pixels_harmonic_residual_adds_the_fit_back():
    """With target harmonic_residual, a model predicting a residual of (unscaled) r gives harmonic + r on the
    forecast dates; the one-step test uses a fit without the held-out dates."""
    from insarcloud.forecast.dataset import Scaler
    from insarcloud.forecast.harmonic import fit_harmonic, predict_harmonic
    from insarcloud.forecast.predict import forecast_pixels, future_dates

    dates = (np.datetime64("2019-01-01") + np.arange(60) * np.timedelta64(12, "D")).astype("datetime64[ns]")
    t = (dates - dates[0]) / np.timedelta64(1, "D") / 365.25
    d = np.stack([2 - 8 * t + 5 * np.cos(2 * np.pi * t), 1 + 3 * np.sin(2 * np.pi * t)], 1).astype(np.float32)
    d[-3:, 1] += 4.0  # held-out dates that differ from the fit
    f = np.stack([10 * np.cos(2 * np.pi * t)[:, None] * np.ones((1, 2))] * 3).astype(np.float32)
    scaler = Scaler(np.array([0.5, 0.0, 0.0, 0.0]), np.array([2.0, 1.0, 1.0, 1.0]))
    model = _Const([0.25, 0.0, 0.0, 0.0])  # scaled 0.25 -> residual 0.25 * 2 + 0.5 = 1 mm
    out = forecast_pixels(model, scaler, 12, dates, d, f, 30, target="harmonic_residual",
                          factor_future="climatology", n_test=10)
    fdates = future_dates(dates, 30)
    assert out.displacement.shape == (30, 2) and out.one_step.shape == (10, 2)
    np.testing.assert_array_equal(out.dates, fdates)
    np.testing.assert_allclose(out.displacement, predict_harmonic(fit_harmonic(dates, d), fdates) + 1.0,
                               rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(out.one_step, predict_harmonic(fit_harmonic(dates[:50], d[:50]), dates[50:]) + 1.0,
                               rtol=1e-5, atol=1e-4)
    inc = forecast_pixels(model, scaler, 12, dates, d, f, 5)  # the paper's increments: integrated from the end
    np.testing.assert_allclose(inc.displacement, d[-1] + 1.0 * np.arange(1, 6)[:, None], rtol=1e-5, atol=1e-4)


def test_cyclic_feeds_predictions_back():
    """A model predicting 'last value + 1' produces a ramp only if each prediction is fed back in."""

    class _Next(torch.nn.Module):
        outputs = (0,)

        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return x[:, -1, :1] + 1.0

    win = np.zeros((3, 12, 4), np.float32)
    out = cyclic_predict(_Next(), win, 10)
    np.testing.assert_allclose(out[:, 0, 0], np.arange(1, 11))
    np.testing.assert_allclose(out[..., 1:], 0)


def test_cyclic_feeds_known_factor_future():
    """With factor_future, the factor channels of the window are the given values, not predictions: a model
    returning the window's last LST as deformation reproduces the fed LST one step later."""

    class _EchoLST(torch.nn.Module):
        outputs = (0, 1, 2, 3)

        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            out = torch.full((x.shape[0], 4), 7.0)  # predicted factors would be 7: must never be fed back
            out[:, 0] = x[:, -1, 1]
            return out

    win = np.zeros((3, 12, 4), np.float32)
    ff = np.random.default_rng(0).normal(size=(5, 3, 3)).astype(np.float32)
    out = cyclic_predict(_EchoLST(), win, 5, factor_future=ff)
    np.testing.assert_allclose(out[1:, :, 0], ff[:-1, :, 0])
    np.testing.assert_allclose(out[0, :, 0], 0.0)
    with pytest.raises(InputArrayError):
        cyclic_predict(_EchoLST(), win, 4, factor_future=ff)


def test_training_cpu_budget_stops_within_first_epoch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 10, 4)).astype(np.float32)
    y = rng.normal(size=(256, 4)).astype(np.float32)
    m = build_model("gru", 10, ModelConfig(width=8, rnn_layers=1))
    res = train_model(m, x, y, x[:32], y[:32], TrainConfig(epochs=5, batch_size=32, max_cpu_seconds=1e-6))
    assert res.epochs == 1 and len(res.history["val_loss"]) == 1


def test_batched_cyclic_equals_per_pixel_reference():
    """One forward pass per step over all pixels (in batches) == session 1's per-pixel view: each pixel's
    window run alone through the network, step by step."""
    torch.manual_seed(0)
    m = build_model("gler", 12, ModelConfig(width=16, rnn_layers=3)).eval()
    rng = np.random.default_rng(0)
    win = rng.normal(size=(9, 12, 4)).astype(np.float32)
    got = cyclic_predict(m, win, 6, batch=4)  # 3 batches, the last one partial
    ref = np.zeros_like(got)
    with torch.no_grad():
        for p in range(win.shape[0]):
            w = torch.as_tensor(win[p : p + 1])
            for s in range(6):
                nxt = m(w)
                ref[s, p] = nxt[0].numpy()
                w = torch.cat([w[:, 1:], nxt[:, None]], dim=1)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
