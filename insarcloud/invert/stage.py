"""The invert stage's parameters and entry point (the stage contract: :mod:`insarcloud.core.contract`).

:class:`InvertParams` is the one definition of the stage's options (the area config's ``params.invert``,
``insarcloud invert``'s options, the config template); :func:`run_stage` runs
:func:`insarcloud.invert.dask_ops.invert_cube` on LiCSAR's ``unw`` when the cube has it, else on the group the
unwrap stage wrote (``ctx.upstream["unwrap"]``, or its current output).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from insarcloud.core.contract import ParamsModel, StageContext, StageResult
from insarcloud.core.options import DEFAULT_INVERT_WEIGHTS, InversionWeights

__all__ = ["NAME", "InvertParams", "Params", "run_stage"]

NAME = "invert"


class InvertParams(ParamsModel):
    """SBAS / NSBAS inversion (``insarcloud.invert.dask_ops.invert_cube``)."""

    # Default quality_closure (core.options.DEFAULT_INVERT_WEIGHTS, session 5, notes/invert.md): on 5 simulated
    # 100-epoch frames it cut the velocity RMSE against unweighted by 29.5% with the default ConvNeXt export
    # (28.0% with the unw_error export), against 6.7% for that map alone ("quality") and 27.4% for closure alone.
    weights: InversionWeights = Field(DEFAULT_INVERT_WEIGHTS, description=(
        "Per-pixel-pair weights: none, coherence, quality (the ConvNeXt map), closure (loop closures of the "
        "unwrapped stack) or quality_closure (their product, the default)."))
    quality_floor: float | None = Field(None, ge=0.0, le=1.0, description=(
        "Smallest weight of a positive quality; unset: 0 for a map of unwrapping errors alone "
        "(quality.checkpoint: unw_error), else 0.2."))
    nsbas_gamma: float = Field(
        1e-4, ge=0.0, le=1e3, description="NSBAS temporal constraint weight (LiCSBAS default 1e-4; 0 = plain SBAS)."
    )
    correct_unwrap: Literal["none", "phase_closure"] = Field("none", description=(
        "Unwrapping-error correction before the inversion: none, or phase_closure (MintPy's integer "
        "loop-closure correction, insarcloud.invert.correct); corrections are written as unw_correction."))
    gacos: bool = Field(False, description=(
        "Subtract LiCSAR's GACOS delays (the cube's gacos group, read after ingest) from each pair."))
    gacos_missing: Literal["keep", "drop"] = Field("keep", description=(
        "Pairs touching an epoch without GACOS: keep them uncorrected (default) or drop them; the epochs are "
        "logged by date and recorded in the ts group either way."))
    reference: (
        tuple[Annotated[float, Field(ge=-180.0, le=180.0)], Annotated[float, Field(ge=-90.0, le=90.0)]] | None
    ) = Field(None, description="[lon, lat] reference point; unset = automatic (most coherent area).")


Params = InvertParams


def _source(cube_url: str, ctx: StageContext) -> str:
    """LiCSAR's own ``unw`` when the frame has it; else the unwrap stage's group (this job's, or its current
    output: the name may carry a parameter hash when an older unwrapping with other parameters exists)."""
    from insarcloud.io import open_cube
    from insarcloud.io.stages import input_group

    if "unw" in open_cube(cube_url, ctx.storage_options):
        return "unw"
    if "unwrap" in ctx.upstream:
        return ctx.upstream["unwrap"].group
    return input_group(cube_url, "unwrap", None, ctx.storage_options)


def run_stage(cube_url: str, params: InvertParams, ctx: StageContext) -> StageResult:
    """The time series of the cube at ``cube_url`` (``ts_<weights>``, or ``..._<hash8>``); with ``gacos`` the
    frame's GACOS delays are ingested first (``ctx.source_url``, ``ctx.frame``).

    Summary: ``source`` (the unwrapped input), ``weights``, and of a recompute ``components`` (network
    components) and ``pairs_dropped`` (pairs not valid at the reference).
    """
    from insarcloud.invert.dask_ops import invert_cube
    from insarcloud.io.stages import run_planned, stage_result

    source = _source(cube_url, ctx)
    if params.gacos:  # LiCSAR's per-epoch GACOS delays into the cube's gacos group (issue 21)
        from insarcloud.errors import ConfigError
        from insarcloud.io.gacos import ingest_gacos

        if not (ctx.source_url and ctx.frame):
            raise ConfigError("invert with gacos: true needs the LiCSAR source_url and frame of the cube")
        ingest_gacos(ctx.source_url, ctx.frame, cube_url, ctx.storage_options)
    ref = (params.reference[1], params.reference[0]) if params.reference else None
    (group, inv), plan = run_planned(cube_url, NAME, lambda: invert_cube(
        cube_url, weights=params.weights, source=source, gamma=params.nsbas_gamma, ref_latlon=ref,
        storage_options=ctx.storage_options, quality_floor=params.quality_floor,
        correct_unwrap=params.correct_unwrap, gacos=params.gacos, gacos_missing=params.gacos_missing))
    summary: dict[str, Any] = {"source": source, "weights": params.weights}
    if inv is not None:
        summary.update(components=int(inv.n_components), pairs_dropped=len(inv.pairs_dropped_by_reference))
    return stage_result(NAME, plan, summary, group)
