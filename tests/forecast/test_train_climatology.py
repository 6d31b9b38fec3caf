"""'Train as you forecast' (TrainConfig.factor_climatology_prob): the factor channels a network sees in
training are replaced by the factors' climatology in the stated share of windows, and nothing else changes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from insarcloud.forecast.dataset import ClimatologyWindows, prepare
from insarcloud.forecast.train import TrainConfig, mix_factor_climatology, train_model

torch.set_num_threads(1)
MARK = 7.0  # a value no scaled true factor takes here: marks the climatology windows


class _Spy(nn.Module):
    """Records every window it is given, in training mode and in evaluation mode (validation)."""

    outputs = (0, 1, 2, 3)

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.seen_train: list[torch.Tensor] = []
        self.seen_eval: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (self.seen_train if self.training else self.seen_eval).append(x.detach().clone())
        return self.lin(x[:, -1])


def _data(n=300, L=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, L, 4)).astype(np.float32)
    y = rng.normal(size=(n, 4)).astype(np.float32)
    xc, yc = x.copy(), y.copy()
    xc[..., 1:] = MARK
    yc[..., 1:] = MARK
    clim = ClimatologyWindows(xc, yc, xc[:50], yc[:50])
    return x, y, clim


def _train(p, clim, seed=3):
    x, y, c = _data()
    m = _Spy()
    cfg = TrainConfig(epochs=2, batch_size=64, lr=1e-3, device="cpu", seed=seed, factor_climatology_prob=p)
    train_model(m, x, y, x[:50], y[:50], cfg, climatology=c if clim else None)
    return x, torch.cat(m.seen_train), torch.cat(m.seen_eval)


def _is_clim(w: torch.Tensor) -> torch.Tensor:
    return (w[..., 1:] == MARK).all(dim=2).all(dim=1)


def test_p1_trains_and_validates_on_climatology_only():
    x, seen, seen_val = _train(1.0, True)
    assert len(seen) == 2 * len(x)
    assert bool(_is_clim(seen).all()) and bool(_is_clim(seen_val).all())
    # the deformation channel is the true one: every true window appears, each once per epoch
    got = np.sort(seen[:, :, 0].numpy().reshape(2, len(x), -1)[0], axis=0)
    np.testing.assert_array_equal(got, np.sort(x[:, :, 0], axis=0))


def test_p0_leaves_batches_unchanged():
    _, ref, ref_val = _train(0.0, False)
    _, seen, seen_val = _train(0.0, True)
    torch.testing.assert_close(seen, ref, rtol=0, atol=0)
    torch.testing.assert_close(seen_val, ref_val, rtol=0, atol=0)
    assert not bool(_is_clim(seen).any())


def test_half_mixes_and_keeps_the_batch_order():
    _, ref, _ = _train(0.0, False)
    _, seen, _ = _train(0.5, True)
    share = float(_is_clim(seen).float().mean())
    assert 0.4 < share < 0.6
    # same windows in the same order (own generator), only the factor channels of some differ
    torch.testing.assert_close(seen[..., 0], ref[..., 0], rtol=0, atol=0)
    keep = ~_is_clim(seen)
    torch.testing.assert_close(seen[keep], ref[keep], rtol=0, atol=0)


def test_mix_swaps_targets_with_their_windows():
    x, y, c = _data(n=400)
    yk = np.repeat(y[:, None], 3, axis=1)  # rolled-out targets (B, K, 4)
    yck = np.repeat(c.y_train[:, None], 3, axis=1)
    g = torch.Generator().manual_seed(0)
    for yy, yyc in ((y, c.y_train), (yk, yck)):
        xm, ym = mix_factor_climatology(torch.as_tensor(x), torch.as_tensor(yy), torch.as_tensor(c.x_train),
                                        torch.as_tensor(yyc), 0.5, g)
        wx = _is_clim(xm)
        wy = (ym[..., 1:] == MARK).reshape(len(ym), -1).all(1)
        assert torch.equal(wx, wy) and 0 < int(wx.sum()) < len(x)


def test_p_without_climatology_windows_is_an_error():
    x, y, _ = _data()
    with pytest.raises(ValueError, match="climatology"):
        train_model(_Spy(), x, y, x, y, TrainConfig(epochs=1, device="cpu", factor_climatology_prob=0.5))


@pytest.mark.parametrize("differenced", [True, False])
def test_prepare_builds_climatology_windows_aligned_with_the_true_ones(differenced):
    rng = np.random.default_rng(1)
    d = np.cumsum(rng.normal(size=(60, 5)), 0).astype(np.float32)
    f = rng.normal(size=(3, 60, 5)).astype(np.float32)
    kw = dict(window=8, n_test=10, differenced=differenced, max_samples=120, horizon=2)
    p0 = prepare(d, f, **kw, rng=np.random.default_rng(2))
    assert p0.climatology is None
    # the factors as their own climatology give the same windows
    same = prepare(d, f, **kw, rng=np.random.default_rng(2), factor_climatology=f)
    for a, b in zip(same.climatology, (p0.x_train, p0.y_train, p0.x_val, p0.y_val), strict=True):
        np.testing.assert_array_equal(a, b)
    const = np.broadcast_to(np.array([5.0, 0.3, 40.0], np.float32)[:, None, None], f.shape)
    pc = prepare(d, f, **kw, rng=np.random.default_rng(2), factor_climatology=const)
    np.testing.assert_array_equal(pc.x_train, p0.x_train)  # the true windows do not change
    np.testing.assert_array_equal(pc.climatology.x_train[..., 0], p0.x_train[..., 0])
    want = (np.array([5.0, 0.3, 40.0]) - p0.scaler.mean[1:]) / p0.scaler.std[1:]  # the true series' scaler
    for a in (pc.climatology.x_train, pc.climatology.y_val):
        np.testing.assert_allclose(a[..., 1:], np.broadcast_to(want, a[..., 1:].shape), rtol=1e-5)
