"""The qc stage's parameters: :class:`QcParams` (and its rule thresholds :class:`RuleParams`), the one definition
the area config's ``params.qc`` section, ``insarcloud qc``'s options and the config template come from (issue 18).

``QCParams`` is the same class under the name the qc package has always exported (``QCParams is QcParams``).
Validated, never mutated, YAML round-trippable; kernels never see them (:mod:`insarcloud.qc.dask_ops` unpacks
them into typed arguments). No numpy here: the CLI's parser imports this module through the area config.
"""

from __future__ import annotations

import math
from typing import Any

import yaml
from pydantic import Field, field_validator

from insarcloud.core.contract import ParamsModel
from insarcloud.qc.thresholds import RuleThresholds

__all__ = ["QCParams", "QcParams", "RuleParams"]

_RULES = RuleThresholds()  # the rule kernels own their default thresholds


class RuleParams(ParamsModel):
    """Thresholds of the qc stage's rule labels (:mod:`insarcloud.qc.labels`)."""

    loop_pixel_thre: float = Field(_RULES.loop_pixel_thre, gt=0, le=4 * math.pi,
                                   description="|closure| above which a loop is in error at a pixel, rad.")
    coh_bad: float = Field(_RULES.coh_bad, ge=0, le=1, description="Windowed coherence below this: BAD.")
    coh_good: float = Field(_RULES.coh_good, ge=0, le=1, description="Windowed coherence at least this for GOOD.")
    std_bad: float = Field(_RULES.std_bad, gt=0, le=10, description="Circular phase std above this: BAD, rad.")
    std_good: float = Field(_RULES.std_good, gt=0, le=10, description="Circular phase std at most this for GOOD, rad.")
    wrapped_good: float = Field(_RULES.wrapped_good, gt=0, le=math.pi,
                                description="Mean |wrapped closure| at most this for GOOD, rad.")
    ifg_bad_frac: float = Field(_RULES.ifg_bad_frac, ge=0, le=1,
                                description="Bad-pixel fraction above which an interferogram is BAD.")
    ifg_good_frac: float = Field(_RULES.ifg_good_frac, ge=0, le=1,
                                 description="Good-pixel fraction for a GOOD interferogram.")
    ifg_max_bad_frac: float = Field(_RULES.ifg_max_bad_frac, ge=0, le=1,
                                    description="Largest bad fraction of a GOOD interferogram.")
    tile_bad_frac: float = Field(_RULES.tile_bad_frac, ge=0, le=1,
                                 description="Bad fraction above which a tile is BAD.")
    tile_good_frac: float = Field(_RULES.tile_good_frac, ge=0, le=1, description="Good fraction for a GOOD tile.")
    tile_max_bad_frac: float = Field(_RULES.tile_max_bad_frac, ge=0, le=1,
                                     description="Largest bad fraction of a GOOD tile.")

    def thresholds(self) -> RuleThresholds:
        """The :class:`insarcloud.qc.labels.RuleThresholds` the kernels take."""
        return RuleThresholds(**self.model_dump())


class QcParams(ParamsModel):
    """Loop closure, coherence statistics and rule labels (``insarcloud.qc.dask_ops.run_qc``).

    The qc stage's one parameter model: ``insarcloud.qc.config.QCParams`` is this class, and the area config's
    ``params.qc`` section is validated by it.
    """

    window: int = Field(5, ge=3, le=31, description="Odd window of the phase std / mean coherence, pixels.")
    loop_thre: float = Field(1.5, gt=0.0, le=10.0, description="Loop-closure RMS threshold (LiCSBAS step 12), rad.")
    cov_thre: float = Field(0.3, ge=0.0, le=1.0, description="Coverage threshold (LiCSBAS step 11), 0..1.")
    coh_thre: float = Field(0.05, ge=0.0, le=1.0, description="Mean coherence threshold (LiCSBAS step 11), 0..1.")
    block: int | None = Field(None, ge=16, le=4096,
                              description="Spatial block of the Dask tasks, pixels; unset = from block_mem_mb.")
    block_mem_mb: int = Field(256, ge=16, le=16384, description="Memory budget of one block task, MiB.")
    rules: RuleParams = Field(default_factory=RuleParams, description="Rule-label thresholds.")

    @field_validator("window")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"window must be odd, got {v}")
        return v

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(), sort_keys=True)

    @classmethod
    def from_yaml(cls, text: str) -> QcParams:
        data: Any = yaml.safe_load(text) or {}
        return cls.model_validate(data)

    def marker_params(self) -> dict[str, Any]:
        """Parameters that change the output (the block size does not), for the stage marker."""
        d = self.model_dump()
        d.pop("block")
        d.pop("block_mem_mb")
        return d


#: The name the qc package has always exported: the same class (one model, two spellings kept for callers).
QCParams = QcParams
