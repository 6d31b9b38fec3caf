"""The unwrap stage's parameters and entry point (the stage contract: :mod:`insarcloud.core.contract`).

:class:`UnwrapParams` is the one definition of the stage's options (the area config's ``params.unwrap``,
``insarcloud unwrap``'s ``--method/--tile/--overlap``, the config template); :func:`run_stage` runs
:func:`insarcloud.unwrap.dask_ops.unwrap_cube`.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from insarcloud.core.contract import ParamsModel, StageContext, StageResult
from insarcloud.core.options import UnwrapMethod, tile_overlap_error

__all__ = ["NAME", "Params", "UnwrapParams", "run_stage"]

NAME = "unwrap"


class UnwrapParams(ParamsModel):
    """Phase unwrapping for frames without LiCSAR unw products (``insarcloud.unwrap.dask_ops.unwrap_cube``)."""

    method: UnwrapMethod = Field(
        "multiscale", description="multiscale (coarse snaphu on 4x4 looks + region bridging, the default: see "
        "docs/unwrap.md), ls (DCT), wls, pcua, rpua, chebyshev (filtered LS) or snaphu."
    )
    tile: int | None = Field(None, ge=64, le=16384, description="Tile side, pixels; unset = whole image when small.")
    overlap: int = Field(64, ge=1, le=2048, description="Tile overlap (pixels) used to choose 2*pi offsets; >= 1 so "
                         "neighbouring tiles share pixels.")

    @model_validator(mode="after")
    def _overlap_lt_tile(self) -> UnwrapParams:
        if why := tile_overlap_error(self.tile, self.overlap):
            raise ValueError(why)
        return self


Params = UnwrapParams


def run_stage(cube_url: str, params: UnwrapParams, ctx: StageContext) -> StageResult:
    """Unwrap every ingested pair into ``unw_<method>`` (or ``unw_<method>_<hash8>``); summary: ``method``."""
    from insarcloud.io.stages import run_planned, stage_result
    from insarcloud.unwrap.dask_ops import unwrap_cube

    res, plan = run_planned(cube_url, NAME, lambda: unwrap_cube(
        cube_url, params.method, tile=params.tile, overlap=params.overlap, storage_options=ctx.storage_options))
    return stage_result(NAME, plan, {"method": params.method}, res.group)
