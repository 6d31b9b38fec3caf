"""The forecaster's training options, apart from the training code so the driver can validate and
fingerprint them without importing torch."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DeviceName = Literal["auto", "cpu", "cuda"]


class TrainConfig(BaseModel):
    """Table III defaults (epochs 128, batch 64, Nadam 1e-4, plateau factor 0.2 / patience 4 / cooldown 4 /
    min lr 1e-15). ``repeat`` is Table III's data repetition (2^6 in the paper, which had few samples; with
    pixels as samples 1 is plenty). ``early_stop`` is ours (None = off, as in the paper)."""

    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(128, ge=1, le=10000, description="passes over the (repeated) training set")
    batch_size: int = Field(64, ge=1, le=65536, description="windows per step")
    lr: float = Field(1e-4, gt=0, le=1.0, description="Nadam learning rate")
    plateau_factor: float = Field(0.2, gt=0, lt=1, description="ReduceLROnPlateau factor")
    plateau_patience: int = Field(4, ge=0, description="ReduceLROnPlateau patience (epochs)")
    plateau_cooldown: int = Field(4, ge=0, description="ReduceLROnPlateau cooldown (epochs)")
    min_lr: float = Field(1e-15, ge=0, description="ReduceLROnPlateau minimum lr")
    repeat: int = Field(1, ge=1, le=64, description="training-set repetitions per epoch")
    early_stop: int | None = Field(None, ge=1, description="stop after this many epochs without improvement")
    max_seconds: float | None = Field(None, gt=0, description="wall-clock budget for training")
    max_cpu_seconds: float | None = Field(None, gt=0, description="CPU-time budget of this process for training "
                                          "(comparable across models on a shared machine, unlike wall time)")
    device: DeviceName = Field("auto", description="auto = cuda when available")
    seed: int = Field(0, description="torch seed")
    factor_climatology_prob: float = Field(
        0.0, ge=0.0, le=1.0,
        description="'train as you forecast' (ours): share of windows whose factor channels (inputs and "
        "targets) are replaced by the factors' climatology, drawn anew per batch; the validation windows get "
        "one fixed draw. Needs the climatology windows (prepare(factor_climatology=...)). 0 = the paper")
