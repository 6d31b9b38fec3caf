"""The forecast stage's parameters and entry point (the stage contract: :mod:`insarcloud.core.contract`).

:class:`ForecastParams` is the one definition of the stage's options (the area config's ``params.forecast``,
``insarcloud forecast``'s options, the config template); :func:`run_stage` runs
:func:`insarcloud.forecast.serve.run_forecast` (Ray actors) on the invert stage's output. No torch here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from insarcloud.core.contract import ParamsModel, StageContext, StageResult
from insarcloud.forecast.names import ModelName as ForecastModel

__all__ = ["NAME", "ForecastModel", "ForecastParams", "Params", "run_stage"]

NAME = "forecast"


class ForecastParams(ParamsModel):
    """Deformation forecasting with Ray actors (``insarcloud.forecast.serve.run_forecast``)."""

    model: ForecastModel = Field("gler", description="gler (GLER-BiGRUnet) or a baseline of the paper's Table IV.")
    factors_url: str = Field(
        "{output_url}/factors/{frame}.zarr",
        max_length=2048,
        description="Environmental factors (LST, NDVI, precipitation) per frame; {frame} and {output_url} are "
        "filled in.",
    )
    horizon: int = Field(72, ge=1, le=1000, description="Epochs predicted (cyclically), 12-day steps.")
    train_pixels: int = Field(2000, ge=10, le=10**7, description="Pixels sampled for training.")
    num_actors: int = Field(2, ge=1, le=256, description="Ray actors predicting chunks.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Random seed (sampling, initialisation).")
    epochs: int = Field(128, ge=1, le=10000, description="Training epochs (Table III: 128).")
    max_train_seconds: float | None = Field(
        None, gt=0, le=7 * 86400, description="Wall-clock training budget per frame; unset = none (Table III)."
    )
    early_stop: int | None = Field(None, ge=1, le=10000, description="Stop after this many epochs without "
                                   "validation improvement; unset = off (Table III).")
    # Off by default: measured 0.11x the training CPU but +25 % cyclic RMSE (2 seeds, docs/forecast.md)
    warm_start_epochs: int | None = Field(
        None, ge=1, le=10000, description="On an update (new epochs, the same options), train from the current "
        "forecast's weights for at most this many epochs instead of from random weights: ~1/9 of the training "
        "CPU at 1/8 of the epochs, cyclic forecasts measured worse (docs/forecast.md); unset = always from "
        "scratch (Table III).")
    target: Literal["increments", "harmonic_residual"] = Field(
        "increments", description="increments: the paper's 12-day increments; harmonic_residual: the network "
        "forecasts the residual about a per-pixel trend + annual + semi-annual fit (ties the harmonic baseline "
        "at 2 years where the paper's design drifts; notes/forecast.md).")
    factor_future: Literal["predicted", "climatology"] = Field(
        "predicted", description="Factors fed back in cyclic prediction: the model's own (paper) or their "
        "per-pixel seasonal climatology.")

    def train_cfg(self) -> dict[str, Any]:
        """The training options ``run_forecast`` takes (``insarcloud.forecast.train.TrainConfig`` fields)."""
        out: dict[str, Any] = {"epochs": self.epochs, "seed": self.seed}
        if self.max_train_seconds is not None:
            out["max_seconds"] = self.max_train_seconds
        if self.early_stop is not None:
            out["early_stop"] = self.early_stop
        return out

    @field_validator("factors_url")
    @classmethod
    def _template(cls, v: str) -> str:
        try:
            v.format(frame="F", output_url="s3://o")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"only {{frame}} and {{output_url}} may be filled in, got {v!r} ({exc})") from exc
        return v

    def factors_for(self, frame: str | None, output_url: str | None) -> str:
        """``factors_url`` with ``{frame}`` and ``{output_url}`` filled in."""
        return self.factors_url.format(frame=frame or "", output_url=(output_url or "").rstrip("/"))


Params = ForecastParams


def run_stage(cube_url: str, params: ForecastParams, ctx: StageContext) -> StageResult:
    """Forecast of the time series the invert stage wrote in this job (``ctx.upstream["invert"]``), else of its
    current output of kind ``ctx.ts_group``; summary: ``model``, ``window``, ``pixels`` and the test RMSE (mm)."""
    from insarcloud.forecast.serve import run_forecast
    from insarcloud.io.stages import run_planned, stage_result

    ts = ctx.upstream["invert"].group if "invert" in ctx.upstream else ctx.ts_group
    s, plan = run_planned(cube_url, NAME, lambda: run_forecast(
        cube_url, params.factors_for(ctx.frame, ctx.output_url), model=params.model, ts_group=ts,
        storage_options=ctx.storage_options, n_actors=params.num_actors, train_pixels=params.train_pixels,
        n_steps=params.horizon, seed=params.seed, train_cfg=params.train_cfg(), target=params.target,
        factor_future=params.factor_future, warm_start_epochs=params.warm_start_epochs))
    summary: dict[str, Any] = {"model": s.model, "window": int(s.window), "pixels": int(s.n_pixels)}
    if not s.skipped and "rmse" in (s.test or {}):
        summary["test_rmse_mm"] = s.test["rmse"]
        summary["warm_start"] = s.train.get("warm_start")
    return stage_result(NAME, plan, summary, s.group)
