"""The noise stage's parameters and entry point (the stage contract: :mod:`insarcloud.core.contract`).

:class:`NoiseParams` is the one definition of the stage's options (the area config's ``params.noise``,
``insarcloud noise``'s options, the config template); :func:`run_stage` runs
:func:`insarcloud.noise.dask_ops.noise_cube` on the invert stage's output.
"""

from __future__ import annotations

from pydantic import Field

from insarcloud.core.contract import ParamsModel, StageContext, StageResult
from insarcloud.core.options import (
    NoiseAlphaMethod,
    NoiseClasses,
    NoiseFlicker,
    NoiseFunctional,
    NoiseSelection,
    NoiseSigmaModel,
)

__all__ = ["NAME", "NoiseParams", "Params", "run_stage"]

NAME = "noise"


class NoiseParams(ParamsModel):
    """LS-VCE noise estimation (``insarcloud.noise.dask_ops.noise_cube``)."""

    classes: NoiseClasses = Field("tiles", description="Spatial classes: square tiles or segments of the velocity map.")
    class_size: int = Field(1000, ge=4, le=10**7, description="Pixels per class.")
    sigma_model: NoiseSigmaModel = Field("gaussian", description=(
        "Sigma in the iteration: gaussian (any r), full (eq. 8; needs r < m - n) or diagonal."))
    flicker: NoiseFlicker = Field("flicker", description="Flicker cofactor: flicker (eq. 6) or flicker_powerlaw "
                                  "(the GNSS power law).")
    alpha_method: NoiseAlphaMethod = Field("likelihood", description=(
        "AR(1) alpha by restricted likelihood or by the w-test of eq. 5."))
    selection: NoiseSelection = Field("lrt", description=(
        "Model choice: boundary likelihood-ratio tests from the 3-component model (lrt) or Akaike's penalty (aic)."))
    level: float = Field(0.05, gt=0.0, lt=1.0, description=(
        "Test level of selection lrt (the chance of keeping an absent component)."))
    functional: NoiseFunctional = Field("seasonal", description="Functional model: seasonal (eq. 13) or linear "
                                        "(offset + rate).")
    model_stride: int = Field(6, ge=1, le=1000, description=(
        "Noise model on a sample of classes: the full model search (model choice, alpha, components, Sigma) runs "
        "on every model_stride-th class along each axis of the tile grid (segments: every model_stride^2-th "
        "segment of a processing block); every other class takes the nearest sampled class's alpha, fits its own "
        "white, AR(1) and flicker amplitudes (one LS-VCE fit on 200 of its pixels) and its own per-pixel GLS "
        "velocities and precisions; 1 = every class. Why: the multivariate LS-VCE already assumes one temporal "
        "model for ~1,000 pixels and the model varies slowly in space, while the search is nearly all of the stage's "
        "CPU; 6 = the smallest stride within issue 20's 0.3 core-hours per frame (docs/noise.md)"))


Params = NoiseParams


def run_stage(cube_url: str, params: NoiseParams, ctx: StageContext) -> StageResult:
    """Noise of the time series the invert stage wrote in this job (``ctx.upstream["invert"]``), else of its
    current output of kind ``ctx.ts_group`` (None: its current output); summary: ``ts_group``, the group read."""
    from insarcloud.io.stages import input_group, run_planned, stage_result
    from insarcloud.noise.command import noise_opts
    from insarcloud.noise.dask_ops import noise_cube

    ts = input_group(cube_url, "invert", ctx.upstream["invert"].group if "invert" in ctx.upstream else ctx.ts_group,
                     ctx.storage_options)
    (group, _), plan = run_planned(cube_url, NAME, lambda: noise_cube(
        cube_url, ts_group=ts, classes=params.classes, class_size=params.class_size, opts=noise_opts(params),
        model_stride=params.model_stride, storage_options=ctx.storage_options))
    return stage_result(NAME, plan, {"ts_group": ts}, group)
