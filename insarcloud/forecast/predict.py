"""Cyclic multi-step prediction (section III-C, Fig. 9) and test-set evaluation, with inverse transforms.

A trained multi-output model predicts deformation and the three factors one step ahead; the prediction is
appended to the input window and the model is applied again, ``n_steps`` times (72 x 12 days = 2 years in
the paper). The deformation predictions are then unscaled and, when the dataset was differenced,
integrated from the last known displacement. Models that predict deformation only carry their factor
channels as zeros (they never read them).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import nn

from insarcloud.errors import InputArrayError
from insarcloud.forecast.dataset import Prepared, Scaler, levels_from_model, transform_for_inference
from insarcloud.forecast.fast import FastGLER, fast_model
from insarcloud.forecast.harmonic import HarmonicFit, factor_climatology, harmonic_residual, predict_harmonic

ForecastTarget = Literal["increments", "harmonic_residual"]
FactorFuture = Literal["predicted", "climatology"]
FORECAST_TARGETS: tuple[str, ...] = ForecastTarget.__args__  # type: ignore[attr-defined]
FACTOR_FUTURES: tuple[str, ...] = FactorFuture.__args__  # type: ignore[attr-defined]


class CyclicForecast(NamedTuple):
    """Output of :func:`cyclic_forecast`.

    Attributes
    ----------
    displacement : ndarray (step, pixel) float32, mm (+ toward the satellite)
    factors : ndarray (3, step, pixel) float32 or None
        Predicted LST (degC), NDVI, precipitation (mm/month) when the model predicts them.
    scaled : ndarray (step, pixel, variable) float32, the raw model-space predictions
    """

    displacement: np.ndarray
    factors: np.ndarray | None
    scaled: np.ndarray


@torch.inference_mode()
def cyclic_predict(model: nn.Module, window: np.ndarray, n_steps: int, batch: int | None = None,
                   factor_future: np.ndarray | None = None, fast: bool = True) -> np.ndarray:
    """Iterate one-step predictions, all pixels of a batch at once (one forward pass per step and batch).

    Parameters
    ----------
    model : nn.Module with ``outputs`` (predicted variable indices)
    window : ndarray (pixel, L, 4) float32, scaled model space, the last L known steps
    n_steps : int
        Number of steps to predict.
    batch : int, optional
        Pixels per forward pass. Default: 65536 on a GPU; on CPU 256 for the fast GLER path (its intermediates
        stay in the core's cache; docs/forecast.md, "Prediction throughput"), 4096 for the module path.
    factor_future : ndarray (n_steps, pixel, 3) float32, optional
        Scaled values fed back for the three factor channels instead of the model's own predictions (the
        factors' known future, e.g. their climatology). None = the paper's loop (predictions fed back).
    fast : bool
        Run GLER-BiGRUnet through :class:`insarcloud.forecast.fast.FastGLER` (same weights and function,
        float32 rounding apart; docs/forecast.md gives the measured difference); False, or any other model:
        the module's own forward.

    Returns
    -------
    ndarray (n_steps, pixel, 4) float32; channels the model does not predict are 0.
    """
    if window.ndim != 3 or window.shape[2] != 4:
        raise InputArrayError(f"window must be (pixel, L, 4), got {window.shape}")
    if n_steps < 1:
        raise InputArrayError(f"n_steps must be >= 1, got {n_steps}")
    if factor_future is not None and factor_future.shape != (n_steps, window.shape[0], 3):
        raise InputArrayError(f"factor_future must be {(n_steps, window.shape[0], 3)}, got {factor_future.shape}")
    dev = next(model.parameters()).device
    model.eval()
    fm = fast_model(model) if fast else model
    if fm is not model:
        return _cyclic_time_major(fm, window, n_steps, batch or (65536 if dev.type == "cuda" else 256),
                                  factor_future, dev)
    batch = batch or (65536 if dev.type == "cuda" else 4096)
    outs = list(model.outputs)
    res = np.zeros((n_steps, window.shape[0], 4), np.float32)
    for i in range(0, window.shape[0], batch):
        win = torch.as_tensor(np.ascontiguousarray(window[i : i + batch], np.float32), device=dev)
        for s in range(n_steps):
            nxt = torch.zeros((win.shape[0], 4), device=dev)
            nxt[:, outs] = model(win)
            res[s, i : i + win.shape[0]] = nxt.cpu().numpy()
            if factor_future is not None:
                nxt[:, 1:] = torch.as_tensor(factor_future[s, i : i + win.shape[0]], device=dev)
            win = torch.cat([win[:, 1:], nxt[:, None]], dim=1)
    return res


def _cyclic_time_major(fm: FastGLER, window: np.ndarray, n_steps: int, batch: int,
                       factor_future: np.ndarray | None, dev: torch.device) -> np.ndarray:
    """:func:`cyclic_predict`'s loop for :class:`FastGLER`, on time-major batch-last windows (L, 4, pixel)."""
    n = window.shape[0]
    res = torch.zeros((n_steps, 4, n), dtype=torch.float32)
    wall = torch.as_tensor(np.asarray(window, np.float32)).permute(1, 2, 0)  # (L, 4, pixel) view
    ff = None if factor_future is None else torch.as_tensor(np.asarray(factor_future, np.float32))
    for i in range(0, n, batch):
        j = min(i + batch, n)
        win = wall[:, :, i:j].to(dev).contiguous()
        for s in range(n_steps):
            nxt = fm.forward_tm(win)  # (4, b)
            res[s, :, i:j] = nxt.cpu()
            if ff is not None:
                nxt = torch.cat([nxt[:1], ff[s, i:j].t().to(dev)])
            win = torch.cat([win[1:], nxt[None]])
    return res.permute(0, 2, 1).contiguous().numpy()


@torch.inference_mode()
def predict_windows(model: nn.Module, x: np.ndarray, batch: int | None = None, fast: bool = True) -> np.ndarray:
    """Eval-mode outputs (sample, n_out) for windows ``x`` (sample, L, 4): through :class:`FastGLER` for
    GLER-BiGRUnet (batches of 256 on CPU, see :func:`cyclic_predict`), else the module (batches of 16384)."""
    from insarcloud.forecast.train import predict_batched

    model.eval()
    fm = fast_model(model) if fast else model
    if fm is model:
        return predict_batched(model, x)
    dev = next(model.parameters()).device
    batch = batch or (65536 if dev.type == "cuda" else 256)
    xt = torch.as_tensor(np.asarray(x, np.float32))
    out = [fm(xt[i : i + batch].to(dev)).cpu() for i in range(0, len(xt), batch)]
    return torch.cat(out).numpy() if out else np.zeros((0, 4), np.float32)


def _to_physical(model: nn.Module, scaled: np.ndarray, prepared: Prepared, level_before: np.ndarray
                 ) -> CyclicForecast:
    disp = levels_from_model(scaled[..., 0], prepared, level_before)
    fac = None
    if len(model.outputs) == 4:
        fac = np.stack([prepared.scaler.inverse(scaled[..., v], var=v) for v in (1, 2, 3)])
    return CyclicForecast(disp, fac, scaled)


def cyclic_forecast(model: nn.Module, prepared: Prepared, deformation: np.ndarray, start: int,
                    n_steps: int, factor_future: np.ndarray | None = None) -> CyclicForecast:
    """Cyclic forecast in physical units starting at model step ``start``.

    Parameters
    ----------
    prepared : Prepared
    deformation : ndarray (date, pixel) float32, mm, the observed displacement (levels)
    start : int
        First model step to predict (``len(prepared.series[0])`` forecasts beyond the record; ``-n_test``
        style negative values count from the end). Needs ``start >= L``.
    n_steps : int
    factor_future : ndarray (3, n_steps, pixel), optional
        Known future of LST (degC), NDVI, precipitation on the predicted steps (physical units), fed back
        instead of the predicted factors (see :func:`cyclic_predict`).
    """
    n_model = prepared.series.shape[1]
    start = start + n_model if start < 0 else start
    L = prepared.window
    if start < L or start > n_model:
        raise InputArrayError(f"start {start} must lie in [{L}, {n_model}]")
    window = np.transpose(prepared.series[:, start - L : start, :], (2, 1, 0))
    ff = None
    if factor_future is not None:
        f = np.asarray(factor_future, np.float64)
        sc = prepared.scaler
        ff = np.transpose((f - sc.mean[1:, None, None]) / sc.std[1:, None, None], (1, 2, 0)).astype(np.float32)
    scaled = cyclic_predict(model, window, n_steps, factor_future=ff)
    # model step s is date s + 1 when differenced: the level before step `start` is date `start`
    off = 1 if prepared.differenced else 0
    level_before = np.asarray(deformation)[start - 1 + off]
    return _to_physical(model, scaled, prepared, level_before)


def one_step_test(model: nn.Module, prepared: Prepared, deformation: np.ndarray) -> np.ndarray:
    """One-step predictions (true inputs) of the displacement on the ``n_test`` held-out dates.

    Returns ndarray (n_test, pixel) float32, mm: each step is the true displacement of the date before
    plus the predicted increment (or the predicted level when not differenced).
    """
    from insarcloud.forecast.dataset import make_windows

    n_model = prepared.series.shape[1]
    start = n_model - prepared.n_test
    x, _ = make_windows(prepared.series, prepared.window, start - prepared.window, n_model)
    p = predict_windows(model, x)[:, 0].reshape(prepared.n_test, -1)
    inc = prepared.scaler.inverse(p, var=0)
    if not prepared.differenced:
        return inc
    d = np.asarray(deformation)
    return (d[start : start + prepared.n_test] + inc).astype(np.float32)


def test_truth(prepared: Prepared, deformation: np.ndarray) -> np.ndarray:
    """Observed displacement (n_test, pixel) on the held-out dates."""
    return np.asarray(deformation)[-prepared.n_test :]


class PixelForecast(NamedTuple):
    """Output of :func:`forecast_pixels`.

    displacement : ndarray (n_steps, pixel) float32, mm, the cyclic forecast after the last date
    one_step : ndarray (n_test, pixel) float32, mm, one-step predictions of the last ``n_test`` dates
    dates : ndarray (n_steps,) datetime64[ns], the forecast dates
    """

    displacement: np.ndarray
    one_step: np.ndarray
    dates: np.ndarray


def future_dates(dates: np.ndarray, n_steps: int, step_days: int = 12) -> np.ndarray:
    """``n_steps`` dates every ``step_days`` after the last of ``dates`` (datetime64[ns])."""
    last = np.asarray(dates)[-1].astype("datetime64[D]")
    return (last + np.arange(1, n_steps + 1) * np.timedelta64(step_days, "D")).astype("datetime64[ns]")


def model_space(dates: np.ndarray, deformation: np.ndarray, target: ForecastTarget, n_fit: int | None = None
                ) -> tuple[np.ndarray, HarmonicFit | None]:
    """The series a network models before scaling: the displacement itself (``increments``: differenced
    later by the dataset) or its residual about a per-pixel harmonic fit on the first ``n_fit`` dates."""
    if target == "increments":
        return np.asarray(deformation, np.float32), None
    if target == "harmonic_residual":
        hr = harmonic_residual(dates, deformation, n_fit)
        return hr.residual, hr.fit
    raise InputArrayError(f"unknown target {target!r}; choose from {FORECAST_TARGETS}")


def forecast_pixels(model: nn.Module, scaler: Scaler, window: int, dates: np.ndarray, deformation: np.ndarray,
                    factors: np.ndarray, n_steps: int, *, target: ForecastTarget = "increments",
                    factor_future: FactorFuture = "predicted", n_test: int = 10, step_days: int = 12
                    ) -> PixelForecast:
    """Serve a trained model on pixels: the cyclic forecast after the record and the one-step test.

    Parameters
    ----------
    model, scaler, window : the trained network, its scaler and input length
    dates : ndarray (date,) datetime64
    deformation : ndarray (date, pixel) float32, mm (complete series)
    factors : ndarray (3, date, pixel) float32, LST (degC), NDVI, precipitation (mm/month)
    n_steps : int, forecast steps of ``step_days``
    target : "increments" (the paper: 12-day increments, integrated back) or "harmonic_residual" (the network
        forecasts the residual about a per-pixel trend + annual + semi-annual fit, which is added back)
    factor_future : "predicted" (the paper: the model's own factor predictions are fed back) or
        "climatology" (the factors' per-pixel annual + semi-annual climatology is fed back)
    n_test : int, held-out dates of the one-step test; for it the harmonic part is fitted without them
    """
    d = np.asarray(deformation, np.float32)
    f = np.asarray(factors, np.float32)
    fdates = future_dates(dates, n_steps, step_days)
    differenced = target == "increments"
    s_full, fit_full = model_space(dates, d, target)
    prep = transform_for_inference(s_full, f, scaler, window, differenced, n_test)
    ff = factor_climatology(dates, f, fdates) if factor_future == "climatology" else None
    disp = cyclic_forecast(model, prep, s_full, prep.series.shape[1], n_steps, factor_future=ff).displacement
    if fit_full is not None:
        disp = disp + predict_harmonic(fit_full, fdates)
        s_test, fit_test = model_space(dates, d, target, n_fit=len(dates) - n_test)
        prep_t = transform_for_inference(s_test, f, scaler, window, differenced, n_test)
        one = one_step_test(model, prep_t, s_test) + predict_harmonic(fit_test, np.asarray(dates)[-n_test:])
    else:
        one = one_step_test(model, prep, s_full)
    return PixelForecast(disp.astype(np.float32), one.astype(np.float32), fdates)
