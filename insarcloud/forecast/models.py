"""GLER-BiGRUnet (Huo et al. 2024, JSTARS 17, doi:10.1109/JSTARS.2024.3443833) and its Table IV baselines.

Every model takes a window ``x`` of shape (batch, L, 4) float32 holding the scaled (deformation, LST, NDVI,
precipitation) and returns (batch, n_out): models that consider environmental factors (EFs) predict all
four variables one step ahead (multi-output, needed by the cyclic predictor), the "only InSAR SD" models
predict the deformation alone (``model.outputs`` lists the predicted variable indices).

No public code exists; the paper's text and equations are the specification. Where the paper is silent
(widths, how the two MCAR lines meet, the head) the choice is ours and is marked "(ours)". Pixels are the
samples here (the paper used the pixels of a region as the feature dimension; see notes/forecast.md).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from insarcloud.forecast.names import MODEL_NAMES
from insarcloud.forecast.names import ModelName as ModelName  # re-exported: the public name stays here too

EF_MODELS = ("gler", "conv1d_mhca_bigru", "mhca_bigru", "mhca_gru")
PAPER_NAMES = {
    "gler": "GLER-BiGRUnet", "conv1d_mhca_bigru": "Conv1D-MHCA-BiGRU", "mhca_bigru": "MHCA-BiGRU",
    "mhca_gru": "MHCA-GRU", "mhsa_bigru": "MHSA-BiGRU", "mhsa_gru": "MHSA-GRU", "sa_bigru": "SA-BiGRU",
    "sa_gru": "SA-GRU", "bigru": "BiGRU", "gru": "GRU",
}


class ModelConfig(BaseModel):
    """Network sizes (the paper gives none; these fit 2 CPU cores and a megapixel forecast)."""

    model_config = ConfigDict(extra="forbid")
    width: int = Field(16, ge=8, le=512, description="feature width d of GLFE / embeddings (multiple of 8)")
    heads: int = Field(8, ge=1, le=16, description="attention heads of MHCA / MHSA (8 in the paper)")
    rnn_layers: int = Field(3, ge=1, le=4, description="stacked (Bi)GRU layers (3 in the paper)")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="TD-Dropout rate")


class GLFE(nn.Module):
    """Global-local feature extraction, eqs. (3)-(4): Dense then Conv1D (k=3), both with ``act``.

    (batch, L, in_dim) -> (batch, L, width). 'same' padding keeps the time steps aligned for MHCA (ours).
    """

    def __init__(self, in_dim: int, width: int, act: Literal["tanh", "relu"]) -> None:
        super().__init__()
        self.dense = nn.Linear(in_dim, width)
        self.conv = nn.Conv1d(width, width, kernel_size=3, padding=1)
        self.act = nn.Tanh() if act == "tanh" else nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.dense(x))
        return self.act(self.conv(h.transpose(1, 2)).transpose(1, 2))


class SelfAttention(nn.Module):
    """Single-head scaled dot-product self-attention, eqs. (14)-(15): (B, L, d) -> (B, L, d)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.q = nn.Linear(width, width, bias=False)
        self.k = nn.Linear(width, width, bias=False)
        self.v = nn.Linear(width, width, bias=False)
        self.scale = width**-0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.q(x) @ self.k(x).transpose(1, 2) * self.scale, dim=-1)
        return w @ self.v(x)


class GLERBiGRUnet(nn.Module):
    """GLER-BiGRUnet: GLFE -> MCAR (two lines) -> RCSA -> dimension raising -> four one-step heads.

    * GLFE per variable: tanh for deformation and LST, ReLU for NDVI and precipitation.
    * MCAR line 1: 8-head cross-attention, query = GLFE(SD), key = value = EFs = concat(GLFE of LST, NDVI,
      precipitation) (eqs. 5-9; W^0 maps back to the SD width), TD-Dense + TD-Dropout, 3-layer BiGRU
      (eqs. 10-12), TD-Dropout. Line 2: 3-layer BiGRU on EFs, TD-Dropout.
    * RCSA: Input_SA = concat(GLFE_SD, EFs) + concat(line 1, line 2) (eq. 13; BiGRU hidden = width so the
      widths match (ours)), self-attention (eqs. 14-15), RSAM = concat(Input_SA, SA) (eq. 16).
    * Dimension raising: TD-Dropout + TD-Dense; heads: one Dense per output on the flattened sequence (ours).
    """

    outputs = (0, 1, 2, 3)

    def __init__(self, window: int, cfg: ModelConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or ModelConfig()
        d = cfg.width
        self.glfe = nn.ModuleList([GLFE(1, d, "tanh"), GLFE(1, d, "tanh"), GLFE(1, d, "relu"), GLFE(1, d, "relu")])
        self.mhca = nn.MultiheadAttention(d, cfg.heads, kdim=3 * d, vdim=3 * d, batch_first=True)
        self.td_dense1 = nn.Linear(d, d)
        self.drop = nn.Dropout(cfg.dropout)
        self.bigru1 = nn.GRU(d, d, num_layers=cfg.rnn_layers, batch_first=True, bidirectional=True)
        self.bigru2 = nn.GRU(3 * d, d, num_layers=cfg.rnn_layers, batch_first=True, bidirectional=True)
        self.sa = SelfAttention(4 * d)
        self.raise_dense = nn.Linear(8 * d, d)
        self.heads = nn.ModuleList([nn.Linear(window * d, 1) for _ in range(4)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = [m(x[..., i : i + 1]) for i, m in enumerate(self.glfe)]
        sd, efs = g[0], torch.cat(g[1:], dim=-1)
        awfm, _ = self.mhca(sd, efs, efs, need_weights=False)
        line1 = self.drop(self.bigru1(self.drop(self.td_dense1(awfm)))[0])
        line2 = self.drop(self.bigru2(efs)[0])
        input_sa = torch.cat([sd, efs], dim=-1) + torch.cat([line1, line2], dim=-1)
        rsam = torch.cat([input_sa, self.sa(input_sa)], dim=-1)
        h = torch.tanh(self.raise_dense(self.drop(rsam))).flatten(1)
        return torch.cat([head(h) for head in self.heads], dim=-1)


class Baseline(nn.Module):
    """The Table IV comparison networks, from one recipe.

    ``[conv1d-]<attention>-<rnn>``: Dense embedding (tanh) of the inputs; optional Conv1D (k=3) local
    features (Conv1D-MHCA-BiGRU); attention: none, single-head self-attention (SA), 8-head self-attention
    (MHSA) or 8-head cross-attention of deformation over the EFs (MHCA); then a (Bi)GRU stack and a Dense head
    on its last step. MHCA models see and predict the four variables; the others use deformation only.
    """

    def __init__(self, name: str, window: int, cfg: ModelConfig | None = None) -> None:
        super().__init__()
        if name not in MODEL_NAMES or name == "gler":
            raise ValueError(f"unknown baseline {name!r}; choose from {MODEL_NAMES[1:]}")
        cfg = cfg or ModelConfig()
        d = cfg.width
        self.name = name
        self.conv = name.startswith("conv1d")
        self.attention = "mhca" if "mhca" in name else "mhsa" if "mhsa" in name else "sa" if "sa_" in name else "none"
        bidir = name.endswith("bigru")
        self.uses_efs = self.attention == "mhca"
        self.outputs = (0, 1, 2, 3) if self.uses_efs else (0,)
        self.embed_sd = nn.Linear(1, d)
        if self.uses_efs:
            self.embed_ef = nn.Linear(3, d)
        if self.conv:
            self.conv_sd = nn.Conv1d(d, d, 3, padding=1)
            self.conv_ef = nn.Conv1d(d, d, 3, padding=1)
        if self.attention in ("mhca", "mhsa"):
            self.att = nn.MultiheadAttention(d, cfg.heads, batch_first=True)
        elif self.attention == "sa":
            self.att = SelfAttention(d)
        self.drop = nn.Dropout(cfg.dropout)
        self.rnn = nn.GRU(d, d, num_layers=cfg.rnn_layers, batch_first=True, bidirectional=bidir)
        self.head = nn.Linear(d * (2 if bidir else 1), len(self.outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sd = torch.tanh(self.embed_sd(x[..., :1]))
        if self.conv:
            sd = torch.tanh(self.conv_sd(sd.transpose(1, 2)).transpose(1, 2))
        if self.attention == "mhca":
            ef = torch.tanh(self.embed_ef(x[..., 1:4]))
            if self.conv:
                ef = torch.tanh(self.conv_ef(ef.transpose(1, 2)).transpose(1, 2))
            h, _ = self.att(sd, ef, ef, need_weights=False)
        elif self.attention == "mhsa":
            h, _ = self.att(sd, sd, sd, need_weights=False)
        elif self.attention == "sa":
            h = self.att(sd)
        else:
            h = sd
        out = self.rnn(self.drop(h))[0]
        return self.head(self.drop(out[:, -1]))


def build_model(name: str, window: int, cfg: ModelConfig | None = None) -> nn.Module:
    """Model by name (see ``MODEL_NAMES``) for input length ``window``."""
    if name == "gler":
        return GLERBiGRUnet(window, cfg)
    return Baseline(name, window, cfg)
