"""ConvNeXt-InSAR: a pixel-wise interferogram quality model (timm ConvNeXt encoder + U-Net decoder).

The seed paper (Remote Sensing 18(5):733) describes "an improved ConvNeXt-InSAR model" that outputs a
pixel-wise quality map per interferogram, but publishes no code, channels, decoder or weights. What we
call *improved* over a plain ConvNeXt + U-Net on the raw channels (each part is switchable, and the
evaluation in ``notes/qc_model.md`` measures what each is worth):

1. A **phase-aware stem** (``stem="phase"``): the ConvNeXt patchify stem (4 x 4, stride 4) sees raw
   cos/sin values, which depend on the absolute phase (deformation, atmosphere) that says nothing about
   quality. We prepend deterministic features that are invariant to a constant phase offset and that the
   field has used for decades to find bad pixels: wrapped phase gradients along y and x, the phase
   *residue* map (non-zero 2 x 2 loop sums of wrapped gradients: where unwrapping errors start), and the
   local phase consistency ``|mean(exp(i phi))|`` over 3 x 3 and 7 x 7 windows (a phase-only coherence).
   Extra unbounded channels (``unw_grad``, ``closure``, ``amp``) are squashed by ``sign(x) log1p(|x|)``.
2. A **full-resolution skip**: a small conv branch at full resolution feeds the last decoder stage, so
   the map is sharp at pixel scale (the stride-4 stem otherwise loses pixel detail; unwrapping-error
   patches have sharp 2 pi edges).
3. A **loss for imbalanced masks** (``train.py``): weighted BCE plus soft Dice on the "bad" class.

NaN inputs are masked: a validity channel (1 where cos, sin and coherence are finite) is appended and
NaNs are zero-filled; invalid pixels get quality 0 (no weight in an inversion). Any tile size works:
inputs are zero-padded (validity 0) to a multiple of 32 and the output is cropped back.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from insarcloud._compat import import_timm
from insarcloud.core.options import tile_overlap_error  # noqa: F401 - kept importable from here
from insarcloud.qc.tiling import WindowPlan, blend_weights, plan_window, tile_starts_global  # noqa: F401

EncoderName = Literal["atto", "nano", "tiny"]
StemKind = Literal["plain", "phase"]
BASE_CHANNELS: tuple[str, ...] = ("cos_phase", "sin_phase", "coh")
OPTIONAL_CHANNELS: tuple[str, ...] = ("unw_grad", "closure", "amp")
PAD_MULTIPLE = 32
_N_PHASE_FEATURES = 5  # dphi_y, dphi_x, residue, consistency 3x3, consistency 7x7


class ModelConfig(BaseModel):
    """Architecture of a ConvNeXt-InSAR model (stored inside every checkpoint)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    encoder: EncoderName = Field("atto", description="timm ConvNeXt size: convnext_{atto,nano,tiny}")
    channels: tuple[str, ...] = Field(
        BASE_CHANNELS, description="input channel names; cos_phase, sin_phase, coh first, in that order"
    )
    stem: StemKind = Field("phase", description="'phase': add phase-invariant features; 'plain': raw only")
    full_res_skip: bool = Field(True, description="full-resolution conv branch feeding the last decoder stage")
    num_stages: int = Field(4, ge=2, le=4, description="ConvNeXt stages used (3 keeps the model ~1.5 M)")
    decoder_width: int = Field(32, ge=8, le=256, description="channels of the finest decoder stage")

    def model_post_init(self, __context: object) -> None:
        if tuple(self.channels[:3]) != BASE_CHANNELS:
            raise ValueError(f"channels must start with {BASE_CHANNELS}, got {self.channels}")
        unknown = [c for c in self.channels[3:] if c not in OPTIONAL_CHANNELS]
        if unknown or len(set(self.channels)) != len(self.channels):
            raise ValueError(f"unknown or repeated channels {unknown} in {self.channels}")


class QualityOutput(NamedTuple):
    """Result of :func:`predict_quality`.

    Attributes
    ----------
    quality : np.ndarray
        (tile, y, x) float32 in [0, 1]; 1 = good. 0 where the input is not valid.
    valid : np.ndarray
        (tile, y, x) bool; True where cos, sin and coherence were finite.
    """

    quality: np.ndarray
    valid: np.ndarray


def _wrap(x: torch.Tensor) -> torch.Tensor:
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


def phase_features(cos_phase: torch.Tensor, sin_phase: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Phase-offset-invariant features of a wrapped interferogram.

    Parameters
    ----------
    cos_phase, sin_phase : torch.Tensor
        (batch, y, x) float32, zero where not valid.
    valid : torch.Tensor
        (batch, y, x) float32 0/1.

    Returns
    -------
    torch.Tensor
        (batch, 5, y, x) float32: wrapped gradient along y and x (rad / pi), residue (-1, 0, 1),
        phase consistency ``|mean exp(i phi)|`` over 3 x 3 and 7 x 7 windows (0..1, valid pixels only).
    """
    phi = torch.atan2(sin_phase, cos_phase)
    # Gradients only between two valid pixels; padded with 0 at the far edge to keep the shape.
    vy = valid[:, 1:, :] * valid[:, :-1, :]
    vx = valid[:, :, 1:] * valid[:, :, :-1]
    gy = _wrap(phi[:, 1:, :] - phi[:, :-1, :]) * vy
    gx = _wrap(phi[:, :, 1:] - phi[:, :, :-1]) * vx
    # Residue: the sum of wrapped differences around each 2 x 2 loop is 2 pi k; k != 0 marks a residue.
    loop = gx[:, :-1, :] + gy[:, :, 1:] - gx[:, 1:, :] - gy[:, :, :-1]
    v4 = vy[:, :, 1:] * vy[:, :, :-1]
    residue = torch.round(loop / (2 * math.pi)) * v4
    gy = F.pad(gy, (0, 0, 0, 1))
    gx = F.pad(gx, (0, 1, 0, 0))
    residue = F.pad(residue, (0, 1, 0, 1))
    feats = [gy / math.pi, gx / math.pi, residue]
    z = torch.stack([cos_phase, sin_phase, valid], dim=1)
    for k in (3, 7):
        m = F.avg_pool2d(z, k, stride=1, padding=k // 2, count_include_pad=False)
        n = m[:, 2].clamp_min(1e-6)
        feats.append(torch.sqrt((m[:, 0] / n) ** 2 + (m[:, 1] / n) ** 2).clamp(0, 1) * valid)
    return torch.stack(feats, dim=1)


def _conv_bn_act(cin: int, cout: int, k: int = 3, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.GELU(),
    )


class ConvNeXtInSAR(nn.Module):
    """ConvNeXt encoder (timm, ``features_only``) with a U-Net decoder back to full resolution.

    ``forward`` takes (batch, channel, y, x) float32 with NaN for no data, in the channel order of
    ``config.channels``, any y and x, and returns logits of P(bad) with shape (batch, 1, y, x).

    The decoder is a U-Net over the encoder stages down to stride 4 (one 3 x 3 conv per stage); from
    stride 4 to full resolution it upsamples bilinearly and refines with 1 x 1 and depthwise 3 x 3 convs
    only, next to a one-conv full-resolution branch on the stem inputs. Full-resolution 3 x 3 convs with
    tens of channels would cost more than the whole encoder at 512 x 512 on a CPU (measured).
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        c = self.config
        n_in = len(c.channels) + 1 + (_N_PHASE_FEATURES if c.stem == "phase" else 0)
        self.n_stem_inputs = n_in
        timm = import_timm()
        self.encoder = timm.create_model(
            f"convnext_{c.encoder}",
            pretrained=False,
            features_only=True,
            in_chans=n_in,
            out_indices=tuple(range(c.num_stages)),
        )
        enc_ch = list(self.encoder.feature_info.channels())  # strides 4, 8, 16, 32
        w = c.decoder_width
        dec = [min(enc_ch[i], w * 2**i) for i in range(len(enc_ch))]
        self.lateral = nn.ModuleList([nn.Conv2d(enc_ch[i], dec[i], 1) for i in range(len(enc_ch))])
        self.up_blocks = nn.ModuleList(
            [_conv_bn_act(dec[i + 1] + dec[i], dec[i]) for i in range(len(enc_ch) - 1)]
        )
        half = max(w // 2, 4)
        self.to_full = nn.Conv2d(dec[0], half, 1)
        self.full_res = _conv_bn_act(n_in, half) if c.full_res_skip else None
        cin = half * (2 if c.full_res_skip else 1)
        self.refine = nn.Sequential(
            _conv_bn_act(cin, half, k=1),
            _conv_bn_act(half, half, k=3, groups=half),
        )
        self.head = nn.Conv2d(half, 1, 1)

    def stem_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Masked, normalised stem input (batch, n_stem_inputs, y, x) from raw channels with NaN."""
        finite = torch.isfinite(x)
        valid = finite[:, :3].all(dim=1).to(x.dtype)
        x = torch.where(finite, x, torch.zeros((), dtype=x.dtype, device=x.device))
        base = x[:, :3] * valid[:, None]
        # Coherence 0..1 -> -1..1 (cos/sin already are); 0 stays "no data" together with valid = 0.
        coh = (2 * base[:, 2:3] - 1) * valid[:, None]
        extra = x[:, 3:]
        extra = torch.sign(extra) * torch.log1p(extra.abs())  # unbounded rad / dB channels, squashed
        parts = [base[:, :2], coh, extra, valid[:, None]]
        if self.config.stem == "phase":
            parts.append(phase_features(base[:, 0], base[:, 1], valid))
        return torch.cat(parts, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != len(self.config.channels):
            raise ValueError(
                f"expected (batch, {len(self.config.channels)} channels {self.config.channels}, y, x), "
                f"got shape {tuple(x.shape)}"
            )
        h, w = x.shape[-2:]
        ph, pw = (-h) % PAD_MULTIPLE, (-w) % PAD_MULTIPLE
        if ph or pw:  # NaN padding: the stem masks it like any other no-data pixel
            x = F.pad(x, (0, pw, 0, ph), value=float("nan"))
        s = self.stem_inputs(x)
        feats = self.encoder(s)
        y = self.lateral[-1](feats[-1])
        for i in range(len(feats) - 2, -1, -1):
            y = F.interpolate(y, size=feats[i].shape[-2:], mode="bilinear", align_corners=False)
            y = self.up_blocks[i](torch.cat([y, self.lateral[i](feats[i])], dim=1))
        y = F.interpolate(self.to_full(y), size=s.shape[-2:], mode="bilinear", align_corners=False)
        if self.full_res is not None:
            y = torch.cat([y, self.full_res(s)], dim=1)
        y = self.refine(y)
        return self.head(y)[..., :h, :w]


def build_model(config: ModelConfig | None = None) -> ConvNeXtInSAR:
    """Build a randomly initialised ConvNeXt-InSAR (no weights are downloaded)."""
    return ConvNeXtInSAR(config)


def predict_quality(
    model: ConvNeXtInSAR,
    inputs: np.ndarray,
    *,
    bf16: bool = False,
    channels_last: bool = False,
    batch_size: int = 8,
) -> QualityOutput:
    """Quality maps for a stack of tiles.

    Parameters
    ----------
    model : ConvNeXtInSAR
        In eval mode (this function does not change its mode).
    inputs : np.ndarray
        (tile, channel, y, x) float32, channels in ``model.config.channels`` order, NaN = no data.
    bf16 : bool
        Run under ``torch.autocast(dtype=torch.bfloat16)`` on the model's device.
    channels_last : bool
        Feed NHWC tensors (convert the model with ``.to(memory_format=torch.channels_last)`` too).
        Forced on for bf16 on CPU: oneDNN's bf16 convolutions in NCHW are ~20x slower (measured).
    batch_size : int
        Tiles per forward pass.

    Returns
    -------
    QualityOutput
    """
    if inputs.ndim != 4:
        raise ValueError(f"inputs must be (tile, channel, y, x), got shape {inputs.shape}")
    device = next(model.parameters()).device
    out = np.empty((inputs.shape[0],) + inputs.shape[2:], dtype=np.float32)
    valid = np.isfinite(inputs[:, :3]).all(axis=1)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for i in range(0, inputs.shape[0], batch_size):
            x = torch.from_numpy(np.ascontiguousarray(inputs[i : i + batch_size], dtype=np.float32))
            x = x.to(device)
            if channels_last or (bf16 and device.type == "cpu"):
                x = x.contiguous(memory_format=torch.channels_last)
            logit = model(x)[:, 0].float()
            out[i : i + batch_size] = torch.sigmoid(-logit).cpu().numpy()
    out[~valid] = 0.0
    return QualityOutput(quality=out, valid=valid)


# ------------------------------------------------------------------------------------------------
# Whole-image inference on a global tile grid (numpy + the model; used by serve.py per chunk)
# ------------------------------------------------------------------------------------------------


def infer_region(
    model: ConvNeXtInSAR,
    window: np.ndarray,
    plan: WindowPlan,
    region_y: tuple[int, int],
    region_x: tuple[int, int],
    tile: int,
    overlap: int,
    *,
    batch_size: int = 4,
    bf16: bool = False,
    channels_last: bool = False,
) -> np.ndarray:
    """Blended quality of ``region`` from the image ``window`` read as ``plan`` says.

    Parameters
    ----------
    window : np.ndarray
        (channel, wy, wx) float32, the image over ``plan.read_y`` x ``plan.read_x``; NaN = no data.
    region_y, region_x : (start, stop)
        Output region in image pixels (inside the window).

    Returns
    -------
    np.ndarray
        (region_y size, region_x size) float32 quality in [0, 1]; 0 where the input is not valid.
    """
    return infer_regions(model, window[None], plan, region_y, region_x, tile, overlap, batch_size=batch_size,
                         bf16=bf16, channels_last=channels_last)[0]


def infer_regions(model: ConvNeXtInSAR, windows: np.ndarray, plan: WindowPlan, region_y: tuple[int, int],
                  region_x: tuple[int, int], tile: int, overlap: int, *, batch_size: int = 4, bf16: bool = False,
                  channels_last: bool = False) -> np.ndarray:
    """:func:`infer_region` for a stack of windows (pair, channel, wy, wx) over one plan.

    The (pair, tile) list is cut and predicted ``batch_size`` tiles at a time, pair-major, so a small
    region's pairs fill the batches that one pair's single tile would leave nearly empty, and no more than
    one batch of tiles is ever held. Returns (pair, region y size, region x size) float32.
    """
    k, c = windows.shape[:2]
    wy0, wx0 = plan.read_y[0], plan.read_x[0]
    nt = len(plan.tiles)
    weights = blend_weights(tile, overlap)
    hy, hx = region_y[1] - region_y[0], region_x[1] - region_x[0]
    acc = np.zeros((k, hy, hx), np.float64)
    wsum = np.zeros((hy, hx), np.float64)  # the same tiles cover every pair: one weight sum
    for b in range(0, k * nt, batch_size):
        flat = range(b, min(k * nt, b + batch_size))
        x = np.full((len(flat), c, tile, tile), np.nan, np.float32)
        for i, f in enumerate(flat):
            ty, tx = plan.tiles[f % nt]
            part = windows[f // nt, :, ty - wy0 : ty - wy0 + tile, tx - wx0 : tx - wx0 + tile]
            x[i, :, : part.shape[1], : part.shape[2]] = part
        q = predict_quality(model, x, bf16=bf16, channels_last=channels_last, batch_size=batch_size).quality
        for i, f in enumerate(flat):
            ty, tx = plan.tiles[f % nt]
            # intersection of the tile with the region, in region and tile coordinates
            y0, y1 = max(ty, region_y[0]), min(ty + tile, region_y[1])
            x0, x1 = max(tx, region_x[0]), min(tx + tile, region_x[1])
            if y0 >= y1 or x0 >= x1:
                continue
            ts = (slice(y0 - ty, y1 - ty), slice(x0 - tx, x1 - tx))
            rs = (slice(y0 - region_y[0], y1 - region_y[0]), slice(x0 - region_x[0], x1 - region_x[0]))
            acc[f // nt][rs] += q[i][ts] * weights[ts]
            if f < nt:
                wsum[rs] += weights[ts]
    out = (acc / np.maximum(wsum, 1e-12)).astype(np.float32)
    win = windows[:, :3, region_y[0] - wy0 : region_y[1] - wy0, region_x[0] - wx0 : region_x[1] - wx0]
    out[~np.isfinite(win).all(1)] = 0.0
    return out


def stack_quality(
    model: ConvNeXtInSAR,
    phase: np.ndarray,
    coh: np.ndarray,
    unw: np.ndarray | None = None,
    closure: np.ndarray | None = None,
    *,
    tile: int = 256,
    overlap: int = 64,
    batch_size: int = 4,
) -> np.ndarray:
    """Quality of a whole in-memory stack, pair by pair, the whole image as one region.

    ``phase``, ``coh``, ``unw``, ``closure``: (pair, y, x) float32 (closure: the qc group's ``pair_closure``).
    Returns (pair, y, x) float32 quality in [0, 1], equal to what the quality stage writes for the same
    inputs and tile/overlap (its chunks blend the same global tile grid). For benchmarks and tests; the
    stage itself reads and writes chunk by chunk (``insarcloud.qc.serve``).
    """
    import torch

    ny, nx = phase.shape[1:]
    plan = plan_window((ny, nx), (0, ny), (0, nx), tile, overlap)
    out = np.empty(phase.shape, np.float32)
    with torch.no_grad():
        for i in range(phase.shape[0]):
            img = cube_channels(tuple(model.config.channels), phase[i], coh[i],
                                None if unw is None else unw[i], closure=None if closure is None else closure[i])
            win = img[:, plan.read_y[0]: plan.read_y[1], plan.read_x[0]: plan.read_x[1]]
            out[i] = infer_region(model, win, plan, (0, ny), (0, nx), tile, overlap, batch_size=batch_size)
    return out


def cube_channels(
    channels: tuple[str, ...],
    phase: np.ndarray,
    coh: np.ndarray,
    unw: np.ndarray | None = None,
    closure: np.ndarray | None = None,
    amp: np.ndarray | None = None,
) -> np.ndarray:
    """Model input channels (channel, y, x) float32 from one pair's cube planes (y, x), NaN = no data.

    ``unw_grad`` is ``|grad unw|`` by central differences (``np.gradient``), as the QC dataset builder
    computes it; a channel whose source is missing is all NaN (the model treats it as no data).
    """
    phase = np.asarray(phase, np.float32)
    out = np.full((len(channels),) + phase.shape, np.nan, np.float32)
    src: dict[str, np.ndarray | None] = {"cos_phase": np.cos(phase), "sin_phase": np.sin(phase),
                                         "coh": np.asarray(coh, np.float32), "closure": closure, "amp": amp}
    if unw is not None and min(unw.shape) >= 2:
        gy, gx = np.gradient(np.asarray(unw, np.float32))
        src["unw_grad"] = np.hypot(gy, gx)
    for i, name in enumerate(channels):
        a = src.get(name)
        if a is not None:
            out[i] = a
    return out


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has AMX-BF16 or AVX512-BF16 (bf16 autocast helps only there; measured)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags
