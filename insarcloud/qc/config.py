"""QC parameters (pydantic, ``extra="forbid"``): validated, never mutated, YAML round-trippable.

Kernels never see these objects; :mod:`insarcloud.qc.dask_ops` unpacks them into typed arguments.
"""

from __future__ import annotations

import math
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from insarcloud.qc.labels import RuleThresholds

_D = RuleThresholds()


class RuleParams(BaseModel):
    """Thresholds of the rule labels (see :mod:`insarcloud.qc.labels`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    loop_pixel_thre: float = Field(_D.loop_pixel_thre, gt=0, le=4 * math.pi,
                                   description="|closure| above which a loop is in error at a pixel, rad")
    coh_bad: float = Field(_D.coh_bad, ge=0, le=1, description="windowed coherence below this: BAD")
    coh_good: float = Field(_D.coh_good, ge=0, le=1, description="windowed coherence at least this for GOOD")
    std_bad: float = Field(_D.std_bad, gt=0, le=10, description="circular phase std above this: BAD, rad")
    std_good: float = Field(_D.std_good, gt=0, le=10, description="circular phase std at most this for GOOD, rad")
    wrapped_good: float = Field(_D.wrapped_good, gt=0, le=math.pi,
                                description="mean |wrapped closure| at most this for GOOD, rad")
    ifg_bad_frac: float = Field(_D.ifg_bad_frac, ge=0, le=1, description="bad-pixel fraction above which an ifg is BAD")
    ifg_good_frac: float = Field(_D.ifg_good_frac, ge=0, le=1, description="good-pixel fraction for a GOOD ifg")
    ifg_max_bad_frac: float = Field(_D.ifg_max_bad_frac, ge=0, le=1, description="max bad fraction of a GOOD ifg")
    tile_bad_frac: float = Field(_D.tile_bad_frac, ge=0, le=1, description="bad fraction above which a tile is BAD")
    tile_good_frac: float = Field(_D.tile_good_frac, ge=0, le=1, description="good fraction for a GOOD tile")
    tile_max_bad_frac: float = Field(_D.tile_max_bad_frac, ge=0, le=1, description="max bad fraction of a GOOD tile")

    def thresholds(self) -> RuleThresholds:
        return RuleThresholds(**self.model_dump())


class QCParams(BaseModel):
    """Parameters of the ``qc`` stage."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window: int = Field(5, ge=3, le=31, description="odd window of the phase std / mean coherence, pixels")
    loop_thre: float = Field(1.5, gt=0, le=10, description="loop RMS threshold of LiCSBAS step 12, rad")
    cov_thre: float = Field(0.3, ge=0, le=1, description="coverage threshold of LiCSBAS step 11")
    coh_thre: float = Field(0.05, ge=0, le=1, description="mean coherence threshold of LiCSBAS step 11")
    block: int | None = Field(None, ge=16, le=4096,
                              description="spatial block of the Dask tasks, pixels (None: from memory budget)")
    block_mem_mb: int = Field(256, ge=16, le=16384, description="memory budget of one block task, MiB")
    rules: RuleParams = Field(default_factory=RuleParams, description="rule-label thresholds")

    @field_validator("window")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"window must be odd, got {v}")
        return v

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(), sort_keys=True)

    @classmethod
    def from_yaml(cls, text: str) -> QCParams:
        data: Any = yaml.safe_load(text) or {}
        return cls.model_validate(data)

    def marker_params(self) -> dict[str, Any]:
        """Parameters that change the output (the block size does not), for the stage marker."""
        d = self.model_dump()
        d.pop("block")
        d.pop("block_mem_mb")
        return d
