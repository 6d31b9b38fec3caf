"""Cyclic multi-step prediction (section III-C, Fig. 9) and test-set evaluation, with inverse transforms.

A trained multi-output model predicts deformation and the three factors one step ahead; the prediction is
appended to the input window and the model is applied again, ``n_steps`` times (72 x 12 days = 2 years in
the paper). The deformation predictions are then unscaled and, when the dataset was differenced,
integrated from the last known displacement. Models that predict deformation only carry their factor
channels as zeros (they never read them).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from insarcloud.errors import InputArrayError
from insarcloud.forecast.dataset import Prepared, levels_from_model


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


@torch.no_grad()
def cyclic_predict(model: nn.Module, window: np.ndarray, n_steps: int, batch: int = 32768) -> np.ndarray:
    """Iterate one-step predictions.

    Parameters
    ----------
    model : nn.Module with ``outputs`` (predicted variable indices)
    window : ndarray (pixel, L, 4) float32, scaled model space, the last L known steps
    n_steps : int
        Number of steps to predict.
    batch : int
        Pixels per forward pass (bounds device memory).

    Returns
    -------
    ndarray (n_steps, pixel, 4) float32; channels the model does not predict are 0.
    """
    if window.ndim != 3 or window.shape[2] != 4:
        raise InputArrayError(f"window must be (pixel, L, 4), got {window.shape}")
    if n_steps < 1:
        raise InputArrayError(f"n_steps must be >= 1, got {n_steps}")
    dev = next(model.parameters()).device
    outs = list(model.outputs)
    model.eval()
    res = np.zeros((n_steps, window.shape[0], 4), np.float32)
    for i in range(0, window.shape[0], batch):
        win = torch.as_tensor(np.ascontiguousarray(window[i : i + batch], np.float32), device=dev)
        for s in range(n_steps):
            nxt = torch.zeros((win.shape[0], 4), device=dev)
            nxt[:, outs] = model(win)
            res[s, i : i + win.shape[0]] = nxt.cpu().numpy()
            win = torch.cat([win[:, 1:], nxt[:, None]], dim=1)
    return res


def _to_physical(model: nn.Module, scaled: np.ndarray, prepared: Prepared, level_before: np.ndarray
                 ) -> CyclicForecast:
    disp = levels_from_model(scaled[..., 0], prepared, level_before)
    fac = None
    if len(model.outputs) == 4:
        fac = np.stack([prepared.scaler.inverse(scaled[..., v], var=v) for v in (1, 2, 3)])
    return CyclicForecast(disp, fac, scaled)


def cyclic_forecast(model: nn.Module, prepared: Prepared, deformation: np.ndarray, start: int,
                    n_steps: int) -> CyclicForecast:
    """Cyclic forecast in physical units starting at model step ``start``.

    Parameters
    ----------
    prepared : Prepared
    deformation : ndarray (date, pixel) float32, mm, the observed displacement (levels)
    start : int
        First model step to predict (``len(prepared.series[0])`` forecasts beyond the record; ``-n_test``
        style negative values count from the end). Needs ``start >= L``.
    n_steps : int
    """
    n_model = prepared.series.shape[1]
    start = start + n_model if start < 0 else start
    L = prepared.window
    if start < L or start > n_model:
        raise InputArrayError(f"start {start} must lie in [{L}, {n_model}]")
    window = np.transpose(prepared.series[:, start - L : start, :], (2, 1, 0))
    scaled = cyclic_predict(model, window, n_steps)
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
    from insarcloud.forecast.train import predict_batched

    n_model = prepared.series.shape[1]
    start = n_model - prepared.n_test
    x, _ = make_windows(prepared.series, prepared.window, start - prepared.window, n_model)
    p = predict_batched(model, x)[:, 0].reshape(prepared.n_test, -1)
    inc = prepared.scaler.inverse(p, var=0)
    if not prepared.differenced:
        return inc
    d = np.asarray(deformation)
    return (d[start : start + prepared.n_test] + inc).astype(np.float32)


def test_truth(prepared: Prepared, deformation: np.ndarray) -> np.ndarray:
    """Observed displacement (n_test, pixel) on the held-out dates."""
    return np.asarray(deformation)[-prepared.n_test :]
