"""ConvNeXt-InSAR model: shapes for odd tiles, NaN masking, phase features against brute force, tiling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from insarcloud.qc.model import (
    ModelConfig,
    blend_weights,
    build_model,
    cube_channels,
    infer_region,
    phase_features,
    plan_window,
    predict_quality,
    tile_starts_global,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    cfg = ModelConfig(channels=("cos_phase", "sin_phase", "coh", "unw_grad"), num_stages=3, decoder_width=16)
    return build_model(cfg).eval()


@pytest.mark.parametrize("shape", [(1, 37, 61), (2, 64, 64), (1, 33, 95)])
def test_odd_tile_shapes(small_model, shape):
    b, h, w = shape
    x = torch.randn(b, 4, h, w)
    with torch.inference_mode():
        y = small_model(x)
    assert y.shape == (b, 1, h, w)
    assert torch.isfinite(y).all()


def test_encoder_sizes_and_wrong_channels():
    for enc in ("atto", "nano"):
        m = build_model(ModelConfig(encoder=enc, num_stages=2, decoder_width=8)).eval()
        with torch.inference_mode():
            assert m(torch.zeros(1, 3, 40, 40)).shape == (1, 1, 40, 40)
    with pytest.raises(ValueError, match="channels"):
        ModelConfig(channels=("coh", "cos_phase", "sin_phase"))
    with pytest.raises(ValueError, match="expected"):
        m(torch.zeros(1, 4, 32, 32))


def test_nan_inputs_masked_and_quality_zero(small_model):
    rng = np.random.default_rng(0)
    ph = rng.uniform(-np.pi, np.pi, (50, 70)).astype(np.float32)
    x = np.stack([np.cos(ph), np.sin(ph), np.full_like(ph, 0.7), np.ones_like(ph)])[None]
    x[0, :, 10:20, 5:30] = np.nan
    x[0, 3, 30:, :] = np.nan  # an optional channel missing: still valid pixels
    out = predict_quality(small_model, x)
    assert out.quality.shape == (1, 50, 70)
    assert np.isfinite(out.quality).all()
    assert (out.quality[0, 10:20, 5:30] == 0).all()
    assert not out.valid[0, 10:20, 5:30].any() and out.valid[0, 30:].all()
    assert (out.quality[out.valid] > 0).all() and (out.quality <= 1).all()


def test_bf16_close_to_fp32(small_model):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 4, 32, 32)).astype(np.float32)
    q32 = predict_quality(small_model, x).quality
    q16 = predict_quality(small_model, x, bf16=True).quality
    assert np.abs(q32 - q16).max() < 0.05


def test_phase_features_brute_force():
    """Wrapped gradients, residues and phase consistency against direct numpy loops."""
    rng = np.random.default_rng(2)
    phi = rng.uniform(-np.pi, np.pi, (1, 9, 11))
    valid = np.ones_like(phi)
    f = phase_features(torch.tensor(np.cos(phi), dtype=torch.float32), torch.tensor(np.sin(phi), dtype=torch.float32),
                       torch.tensor(valid, dtype=torch.float32)).numpy()[0]

    def wrap(a):
        return (a + np.pi) % (2 * np.pi) - np.pi

    p = phi[0]
    for i in range(8):
        for j in range(10):
            assert np.isclose(f[0, i, j] * np.pi, wrap(p[i + 1, j] - p[i, j]), atol=1e-4)
            assert np.isclose(f[1, i, j] * np.pi, wrap(p[i, j + 1] - p[i, j]), atol=1e-4)
            loop = (wrap(p[i, j + 1] - p[i, j]) + wrap(p[i + 1, j + 1] - p[i, j + 1])
                    - wrap(p[i + 1, j + 1] - p[i + 1, j]) - wrap(p[i + 1, j] - p[i, j]))
            assert f[2, i, j] == round(loop / (2 * np.pi))
    i, j = 4, 5
    z = np.exp(1j * p[i - 1 : i + 2, j - 1 : j + 2])
    assert np.isclose(f[3, i, j], abs(z.mean()), atol=1e-5)
    # invariant to a constant phase offset
    g = phase_features(torch.tensor(np.cos(phi + 1.3), dtype=torch.float32),
                       torch.tensor(np.sin(phi + 1.3), dtype=torch.float32), torch.tensor(valid, dtype=torch.float32))
    assert np.allclose(g.numpy()[0, [0, 1, 3, 4]], f[[0, 1, 3, 4]], atol=1e-4)


def test_blend_weights_partition_of_unity():
    tile, ov = 64, 16
    w = blend_weights(tile, ov)[0] / blend_weights(tile, ov)[0].max()
    n = 300
    acc = np.zeros(n + tile)
    for s in tile_starts_global(n, tile, ov):
        acc[s : s + tile] += w
    assert np.allclose(acc[ov:n - ov], 1.0, atol=1e-6)
    assert tile_starts_global(n, tile, ov)[-1] + tile >= n


def test_region_inference_matches_whole_image(small_model):
    """Any split of the image into regions reproduces the whole-image map (global tile grid)."""
    rng = np.random.default_rng(3)
    ny, nx, tile, ov = 90, 77, 48, 16
    ph = np.cumsum(rng.normal(0, 0.6, (ny, nx)), axis=1).astype(np.float32)
    coh = rng.uniform(0.1, 0.9, (ny, nx)).astype(np.float32)
    img = cube_channels(small_model.config.channels, np.angle(np.exp(1j * ph)), coh, unw=ph)
    whole_plan = plan_window((ny, nx), (0, ny), (0, nx), tile, ov)
    whole = infer_region(small_model, img, whole_plan, (0, ny), (0, nx), tile, ov)
    out = np.full((ny, nx), np.nan, np.float32)
    for y0 in range(0, ny, 40):
        for x0 in range(0, nx, 32):
            ry, rx = (y0, min(ny, y0 + 40)), (x0, min(nx, x0 + 32))
            plan = plan_window((ny, nx), ry, rx, tile, ov)
            win = img[:, plan.read_y[0] : plan.read_y[1], plan.read_x[0] : plan.read_x[1]]
            out[ry[0] : ry[1], rx[0] : rx[1]] = infer_region(small_model, win, plan, ry, rx, tile, ov, batch_size=3)
    assert np.isfinite(out).all()
    assert np.abs(out - whole).max() < 1e-4
