"""The quality stage's parameters and entry point (the stage contract: :mod:`insarcloud.core.contract`).

:class:`QualityParams` is the one definition of the stage's options: the area config's ``params.quality``,
``insarcloud quality``'s options (:mod:`insarcloud.qc.command_model`) and the config template. The engine's
``insarcloud.qc.serve.ServeParams`` (numerics such as bf16 and channels-last, the resolved checkpoint path) is
built from it in :func:`run_stage`; that module imports numpy and Ray's helpers, this one only pydantic.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from insarcloud.core.contract import ParamsModel, StageContext, StageResult
from insarcloud.core.options import tile_overlap_error

__all__ = ["NAME", "Params", "QualityParams", "run_stage"]

NAME = "quality"


class QualityParams(ParamsModel):
    """ConvNeXt-InSAR quality maps served by Ray actors (``insarcloud.qc.serve``)."""

    checkpoint: str | None = Field(None, max_length=2048, description=(
        "Checkpoint URL, or a packaged export: 'default' (unwrapping error or decorrelation; unset = this) or "
        "'unw_error' (unwrapping errors only: the better weights for the inversion, notes/invert.md)."))
    tile: int = Field(256, ge=32, le=4096, description="Model tile side, pixels.")
    overlap: int = Field(64, ge=0, le=2048, description="Tile overlap blended with sin^2 tapers, pixels.")
    batch_size: int = Field(4, ge=1, le=256, description="Tiles per forward pass.")
    threads: int = Field(1, ge=1, le=256, description="torch threads (and Ray CPUs) per actor.")
    num_actors: int = Field(2, ge=1, le=256, description="Ray actors serving the model (one GPU each when present).")

    @model_validator(mode="after")
    def _overlap_lt_tile(self) -> QualityParams:
        if why := tile_overlap_error(self.tile, self.overlap):
            raise ValueError(why)
        return self

    def serve_kwargs(self) -> dict[str, Any]:
        """The fields ``insarcloud.qc.serve.ServeParams`` takes (unset ones left to its defaults)."""
        from insarcloud.qc.serve import ServeParams

        return {k: v for k, v in self.model_dump().items() if k in ServeParams.model_fields and v is not None}


Params = QualityParams


def run_stage(cube_url: str, params: QualityParams, ctx: StageContext) -> StageResult:
    """Quality maps of the cube at ``cube_url`` (Ray must be up: ``ctx.ray``, or a local Ray is started).

    Summary: ``inferred_pairs`` and ``copied_pairs`` (an update infers only new pairs and old pairs that gained a
    loop, and copies the rest), ``chunks`` written, ``device``.
    """
    from insarcloud.io.stages import run_planned, stage_result
    from insarcloud.qc.serve import ServeParams, run_quality

    run, plan = run_planned(cube_url, NAME, lambda: run_quality(
        cube_url, ServeParams(**params.serve_kwargs()), n_actors=params.num_actors,
        storage_options=ctx.storage_options))
    summary = {"inferred_pairs": int(run.inferred_pairs), "copied_pairs": int(run.copied_pairs),
               "chunks": int(run.chunks), "device": run.device}
    return stage_result(NAME, plan, summary, run.group)
