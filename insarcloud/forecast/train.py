"""Training as in Table III: MOA-LogCosh loss (eq. 17), MOA-R^2 metric (eq. 18), Nadam, reduce-on-plateau.

Pixels are samples: a region's windows from many pixels form one shuffled dataset; batches run on the GPU
when there is one. The best validation-loss weights are kept.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from insarcloud.forecast.dataset import ClimatologyWindows
from insarcloud.forecast.train_config import DeviceName, TrainConfig  # noqa: F401 - re-exported

log = logging.getLogger(__name__)

class TrainResult(NamedTuple):
    """model (best weights, eval mode); history: dict of per-epoch lists (train_loss, val_loss, val_r2, lr);
    seconds: wall time; epochs: epochs run; device: where it ran."""

    model: nn.Module
    history: dict[str, list[float]]
    seconds: float
    epochs: int
    device: str


def logcosh(x: torch.Tensor) -> torch.Tensor:
    """log(cosh(x)) computed without overflow: |x| + log1p(exp(-2|x|)) - log 2."""
    a = x.abs()
    return a + torch.log1p(torch.exp(-2 * a)) - float(np.log(2.0))


def moa_logcosh(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. (17): mean over the outputs (last axis) of the mean LogCosh over samples."""
    return logcosh(pred - target).mean(0).mean()


def moa_r2_torch(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. (18) on tensors (batch, outputs)."""
    ss_res = ((target - pred) ** 2).sum(0)
    ss_tot = ((target - target.mean(0)) ** 2).sum(0).clamp_min(1e-12)
    return (1 - ss_res / ss_tot).mean()


def resolve_device(name: DeviceName = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _batches(n: int, bs: int, gen: torch.Generator | None):
    idx = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
    for i in range(0, n, bs):
        yield idx[i : i + bs]


def rollout(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Free-running K-step predictions for rolled-out training (our option; the paper trains one step).

    x (B, L, 4) windows, y (B, K, 4) the next K true steps. Each step's predicted deformation is appended to
    the window (the network sees its own feedback, as in the cyclic forecast); the factor channels take the
    true values (at forecast time they are the factors' climatology or the model's own predictions).
    Returns predictions (B, K, n_out) and the matching targets (B, K, n_out).
    """
    outs = list(model.outputs)
    preds = []
    win = x
    for k in range(y.shape[1]):
        p = model(win)
        preds.append(p)
        nxt = torch.cat([p[:, :1], y[:, k, 1:]], dim=1)  # outputs[0] is always the deformation
        win = torch.cat([win[:, 1:], nxt[:, None]], dim=1)
    return torch.stack(preds, dim=1), y[:, :, outs]


def mix_factor_climatology(x: torch.Tensor, y: torch.Tensor, xc: torch.Tensor, yc: torch.Tensor, p: float,
                           gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows ``x`` (B, L, 4) and targets ``y`` (B, 4) or (B, K, 4) where each sample, with probability
    ``p``, takes its climatology version ``xc``, ``yc`` (same shapes; only the factor channels differ).

    Whole windows are swapped: after L steps of a cyclic forecast every factor in the window is climatology,
    which is the state of most of the 72 steps of the 2-year horizon.
    """
    if p <= 0.0:
        return x, y
    mask = torch.rand(x.shape[0], generator=gen).to(x.device) < p
    return (torch.where(mask.view(-1, *([1] * (x.ndim - 1))), xc, x),
            torch.where(mask.view(-1, *([1] * (y.ndim - 1))), yc, y))


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, outs: list[int]) -> torch.Tensor:
    if y.ndim == 3:  # rolled out: MOA-LogCosh over outputs, averaged over the K steps
        p, t = rollout(model, x, y)
        return moa_logcosh(p.flatten(0, 1), t.flatten(0, 1))
    return moa_logcosh(model(x), y[:, outs])


def train_model(model: nn.Module, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
                y_val: np.ndarray, cfg: TrainConfig | None = None,
                climatology: ClimatologyWindows | None = None) -> TrainResult:
    """Fit ``model`` on windows (sample, L, 4) -> targets (sample, 4); only ``model.outputs`` are scored.

    With targets (sample, K, 4) the loss is that of :func:`rollout` (K free-running steps), for training and
    for the validation loss that selects the kept weights. With ``cfg.factor_climatology_prob`` > 0,
    ``climatology`` (the same windows with climatological factors) is mixed in by
    :func:`mix_factor_climatology`. Returns the model with its best validation-loss weights.
    """
    cfg = cfg or TrainConfig()
    p_clim = cfg.factor_climatology_prob
    if p_clim > 0 and climatology is None:
        raise ValueError("factor_climatology_prob > 0 needs the climatology windows (prepare(factor_climatology=))")
    torch.manual_seed(cfg.seed)
    dev = resolve_device(cfg.device)
    outs = list(model.outputs)
    model = model.to(dev)
    xt = torch.as_tensor(x_train, device=dev)
    yt = torch.as_tensor(y_train, device=dev)
    xv = torch.as_tensor(x_val, device=dev)
    yv = torch.as_tensor(y_val, device=dev)
    # its own generator: the batch order and dropout draws stay those of p = 0
    clim_gen = torch.Generator().manual_seed(cfg.seed + 1)
    if p_clim > 0:
        assert climatology is not None
        xct = torch.as_tensor(climatology.x_train, device=dev)
        yct = torch.as_tensor(climatology.y_train, device=dev)
        # one fixed draw, so that the kept weights are chosen on the mixture the net is trained for
        xv, yv = mix_factor_climatology(xv, yv, torch.as_tensor(climatology.x_val, device=dev),
                                        torch.as_tensor(climatology.y_val, device=dev), p_clim, clim_gen)
    opt = torch.optim.NAdam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience,
        cooldown=cfg.plateau_cooldown, min_lr=cfg.min_lr,
        eps=0.0)  # torch's default eps=1e-8 would stop reductions far above Table III's 1e-15 floor
    gen = torch.Generator().manual_seed(cfg.seed)
    hist: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "val_r2": [], "lr": []}
    best, best_state, since = np.inf, copy.deepcopy(model.state_dict()), 0
    t0, c0 = time.perf_counter(), time.process_time()
    epoch = 0
    out_of_time = False
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        tot, cnt = 0.0, 0
        for _ in range(cfg.repeat):
            for b in _batches(len(xt), cfg.batch_size, gen):
                b = b.to(dev)
                opt.zero_grad(set_to_none=True)
                xb, yb = xt[b], yt[b]
                if p_clim > 0:
                    xb, yb = mix_factor_climatology(xb, yb, xct[b], yct[b], p_clim, clim_gen)
                loss = _loss(model, xb, yb, outs)
                loss.backward()
                opt.step()
                tot += float(loss.detach()) * len(b)
                cnt += len(b)
                # the budget is checked per batch (not per epoch): an epoch can take minutes on a busy CPU
                if ((cfg.max_seconds is not None and time.perf_counter() - t0 > cfg.max_seconds)
                        or (cfg.max_cpu_seconds is not None and time.process_time() - c0 > cfg.max_cpu_seconds)):
                    out_of_time = True
                    break
            if out_of_time:
                break
        vl, vr = evaluate(model, xv, yv)
        sched.step(vl)
        hist["train_loss"].append(tot / max(cnt, 1))
        hist["val_loss"].append(vl)
        hist["val_r2"].append(vr)
        hist["lr"].append(opt.param_groups[0]["lr"])
        log.debug("epoch %d train %.4f val %.4f R2 %.3f", epoch, hist["train_loss"][-1], vl, vr)
        if vl < best - 1e-7:
            best, best_state, since = vl, copy.deepcopy(model.state_dict()), 0
        else:
            since += 1
        if cfg.early_stop is not None and since >= cfg.early_stop:
            break
        if out_of_time:
            log.info("training stopped at its time budget in epoch %d", epoch)
            break
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(model, hist, time.perf_counter() - t0, epoch, str(dev))


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 8192) -> tuple[float, float]:
    """(MOA-LogCosh, MOA-R^2) of ``model`` on tensors already on its device; ``y`` holds all four variables,
    (sample, 4) for one-step or (sample, K, 4) for rolled-out scores (over all K steps)."""
    model.eval()
    outs = list(model.outputs)
    if y.ndim == 3:
        pairs = [rollout(model, x[i : i + batch], y[i : i + batch]) for i in range(0, len(x), batch)]
        p = torch.cat([a.flatten(0, 1) for a, _ in pairs])
        t = torch.cat([b.flatten(0, 1) for _, b in pairs])
    else:
        preds = [model(x[i : i + batch]) for i in range(0, len(x), batch)]
        t = y[:, outs]
        p = torch.cat(preds) if preds else torch.zeros_like(t)
    return float(moa_logcosh(p, t)), float(moa_r2_torch(p, t))


@torch.no_grad()
def predict_batched(model: nn.Module, x: np.ndarray | torch.Tensor, batch: int = 16384) -> np.ndarray:
    """Model outputs (sample, n_out) for windows ``x`` (sample, L, 4), batched on the model's device."""
    dev = next(model.parameters()).device
    xt = torch.as_tensor(np.asarray(x, np.float32)) if not isinstance(x, torch.Tensor) else x
    model.eval()
    out = [model(xt[i : i + batch].to(dev)).cpu() for i in range(0, len(xt), batch)]
    return torch.cat(out).numpy() if out else np.zeros((0, len(model.outputs)), np.float32)
