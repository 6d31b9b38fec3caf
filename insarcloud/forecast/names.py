"""Forecast model names, in a module without torch so the CLI can offer them as choices cheaply."""

from __future__ import annotations

from typing import Literal

ModelName = Literal[
    "gler", "conv1d_mhca_bigru", "mhca_bigru", "mhca_gru", "mhsa_bigru", "mhsa_gru", "sa_bigru", "sa_gru",
    "bigru", "gru",
]
MODEL_NAMES: tuple[str, ...] = ModelName.__args__  # type: ignore[attr-defined]
