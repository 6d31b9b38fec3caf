"""Training and evaluation of ConvNeXt-InSAR on the QC tile dataset (``insarcloud.qc.dataset`` format).

Targets per pixel: the simulator's truth where it is known (0/1), else the rule label where it is good or
bad (manual verdicts merged in by :func:`insarcloud.qc.dataset.apply_verdicts`); "uncertain" and no-data
pixels carry no loss. The split is the dataset's ``split`` coordinate (by frame): train on ``train``,
select the best epoch on ``val``, report on ``test`` frames never seen in training.

Evaluation (:func:`evaluate`) scores "bad" (unwrapping error or decorrelated) against the truth with
pixel ROC-AUC and F1 for three predictors on the same pixels: the model (score ``1 - quality``), the
rule labels of QC part 1 (good 0, uncertain 0.5, bad 1) and a coherence threshold (score ``1 - coh``).

Checkpoints are single ``torch.save`` blobs written to any fsspec URL through ``insarcloud.io``; a run
resumes from its own checkpoint (same URL) when ``resume=True``.
"""

from __future__ import annotations

import io as _pyio
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from scipy.stats import rankdata

from insarcloud.errors import InputArrayError
from insarcloud.qc.model import BASE_CHANNELS, ConvNeXtInSAR, ModelConfig, build_model, predict_quality

log = logging.getLogger(__name__)

LossKind = Literal["bce", "bce_dice", "focal_dice"]
TargetKind = Literal["auto", "truth", "label"]
GOOD, BAD, UNCERTAIN, NODATA = 0, 1, 2, 255
COH_THRESHOLD = 0.3  # fixed coherence threshold reported next to the best-threshold F1


class TrainConfig(BaseModel):
    """Training hyper-parameters (stored in the checkpoint)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelConfig = Field(default_factory=ModelConfig, description="architecture")
    epochs: int = Field(6, ge=1, le=1000, description="epochs in total (a resumed run continues to this)")
    batch_size: int = Field(8, ge=1, le=512, description="tiles per optimiser step")
    crop: int | None = Field(96, ge=16, le=4096, description="random training crop side (None: whole tile)")
    lr: float = Field(2e-3, gt=0, le=1, description="AdamW peak learning rate (cosine decay)")
    weight_decay: float = Field(0.05, ge=0, le=1, description="AdamW weight decay")
    loss: LossKind = Field("bce_dice", description="weighted BCE, + soft Dice, or focal + soft Dice")
    target: TargetKind = Field("auto", description="'auto': truth where known else rule labels")
    pos_weight: float = Field(1.0, gt=0, le=100, description="extra BCE weight of 'bad' pixels")
    channel_dropout: float = Field(0.2, ge=0, le=1, description="P(optional channels set to NaN) per tile")
    max_tiles: int = Field(4000, ge=1, description="tiles per split loaded into memory at most")
    threads: int = Field(2, ge=1, le=256, description="torch CPU threads")
    seed: int = Field(0, description="seed of every random choice")


class Arrays(NamedTuple):
    """One split in memory.

    Attributes
    ----------
    inputs : (tile, channel, ty, tx) float32, NaN = no data, channels in the model's order.
    target : (tile, ty, tx) float32 1 = bad, 0 = good (meaningful where weight > 0).
    weight : (tile, ty, tx) float32 loss weight (0 = ignored).
    truth : (tile, ty, tx) uint8 0/1/255.
    label : (tile, ty, tx) uint8 rule labels 0/1/2/255.
    frames : (tile,) str.
    """

    inputs: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    truth: np.ndarray
    label: np.ndarray
    frames: np.ndarray


class Metrics(NamedTuple):
    """Pixel scores of one predictor of "bad" against the truth."""

    auc: float
    f1: float  # at the predictor's own operating point (model q < 0.5, rules bad, coh < COH_THRESHOLD)
    f1_best: float  # best F1 over all thresholds (an oracle operating point)
    n_pixels: int
    bad_fraction: float


class TrainResult(NamedTuple):
    """What :func:`train` did: the per-epoch history and the test-split evaluation."""

    model: ConvNeXtInSAR
    history: list[dict[str, float]]
    evaluation: dict[str, dict[str, float]]
    checkpoint_url: str | None


# ------------------------------------------------------------------------------------------------
# metrics (numpy)
# ------------------------------------------------------------------------------------------------


def roc_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks for ties); NaN without both classes."""
    score, positive = np.ravel(score), np.ravel(positive).astype(bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(score)
    return float((r[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def f1_score(pred: np.ndarray, positive: np.ndarray) -> float:
    pred, positive = np.ravel(pred).astype(bool), np.ravel(positive).astype(bool)
    tp = float((pred & positive).sum())
    denom = float(pred.sum() + positive.sum())
    return 2 * tp / denom if denom else float("nan")


def best_f1(score: np.ndarray, positive: np.ndarray, n_thresholds: int = 101) -> float:
    """Best F1 of ``score >= t`` over quantile thresholds t."""
    score, positive = np.ravel(score), np.ravel(positive).astype(bool)
    if not positive.any():
        return float("nan")
    ts = np.unique(np.quantile(score, np.linspace(0, 1, n_thresholds)))
    return float(max(f1_score(score >= t, positive) for t in ts))


def _metrics(score: np.ndarray, pred: np.ndarray, positive: np.ndarray) -> Metrics:
    return Metrics(roc_auc(score, positive), f1_score(pred, positive), best_f1(score, positive),
                   int(positive.size), float(positive.mean()) if positive.size else float("nan"))


def compare_predictors(quality: np.ndarray, arrays: Arrays, coh_threshold: float = COH_THRESHOLD
                       ) -> dict[str, Metrics]:
    """Model vs rule labels vs coherence threshold on the pixels with known truth and valid input.

    Parameters
    ----------
    quality : (tile, ty, tx) float32 model quality in [0, 1].
    arrays : the split (``truth``, ``label``, coherence channel 2 of ``inputs``).
    """
    coh = arrays.inputs[:, 2]
    ok = (arrays.truth != NODATA) & np.isfinite(coh) & np.isfinite(arrays.inputs[:, 0])
    if not ok.any():
        raise InputArrayError("no pixel with known truth and valid input: cannot evaluate (real frames only?)")
    pos = arrays.truth[ok] == 1
    lab = arrays.label[ok]
    rule_score = np.where(lab == BAD, 1.0, np.where(lab == GOOD, 0.0, 0.5))
    return {
        "model": _metrics(1.0 - quality[ok], quality[ok] < 0.5, pos),
        "rules": _metrics(rule_score, lab == BAD, pos),
        "rules_uncertain_as_bad": _metrics(rule_score, (lab == BAD) | (lab == UNCERTAIN), pos),
        "coherence": _metrics(1.0 - coh[ok], coh[ok] < coh_threshold, pos),
    }


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------


def make_targets(label: np.ndarray, truth: np.ndarray, weight: np.ndarray, kind: TargetKind
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel (target, weight) from rule labels, truth and the dataset weight (module docstring)."""
    lab_ok = (label == GOOD) | (label == BAD)
    lab_t = (label == BAD).astype(np.float32)
    lab_w = np.where(lab_ok, np.where(np.isfinite(weight), weight, 0.0), 0.0).astype(np.float32)
    tru_ok = truth != NODATA
    if kind == "label":
        return lab_t, lab_w
    tru_t = (truth == 1).astype(np.float32)
    if kind == "truth":
        return tru_t, tru_ok.astype(np.float32)
    return np.where(tru_ok, tru_t, lab_t), np.where(tru_ok, 1.0, lab_w).astype(np.float32)


def _strs(values: Any) -> np.ndarray:
    """Object array of str (Zarr v3 string arrays come back as numpy StringDType)."""
    return np.asarray([str(v) for v in np.asarray(values).ravel()], dtype=object)


def select_channels(available: list[str], wanted: tuple[str, ...]) -> list[int]:
    missing = [c for c in wanted if c not in available]
    if missing:
        raise InputArrayError(f"dataset channels {available} lack {missing} needed by the model")
    return [available.index(c) for c in wanted]


def load_split(ds: Any, split: str, channels: tuple[str, ...], target: TargetKind, max_tiles: int,
               rng: np.random.Generator) -> Arrays | None:
    """Load one split of an (xarray) tile dataset into memory; None when the split has no tile."""
    for name in ("inputs", "label", "truth", "weight", "split", "channel"):
        if name not in ds.variables:
            raise InputArrayError(f"QC tile dataset lacks {name!r} (has {sorted(ds.variables)})")
    idx = np.flatnonzero(_strs(ds["split"].values) == split)
    if idx.size == 0:
        return None
    if idx.size > max_tiles:
        idx = np.sort(rng.choice(idx, max_tiles, replace=False))
    sub = ds.isel(tile=idx)
    ch = select_channels(list(_strs(ds["channel"].values)), channels)
    inputs = np.asarray(sub["inputs"].values, dtype=np.float32)[:, ch]
    label = np.asarray(sub["label"].values, dtype=np.uint8)
    truth = np.asarray(sub["truth"].values, dtype=np.uint8)
    t, w = make_targets(label, truth, np.asarray(sub["weight"].values, dtype=np.float32), target)
    frames = _strs(sub["frame"].values) if "frame" in sub.variables else np.full(idx.size, "")
    return Arrays(inputs, t, w, truth, label, frames)


def _augment(x: torch.Tensor, t: torch.Tensor, w: torch.Tensor, crop: int | None, g: torch.Generator,
             n_base: int, channel_dropout: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random crop, flips / transposes (quality is isotropic) and dropout of optional channels."""
    if crop is not None and crop < x.shape[-1] and crop < x.shape[-2]:
        y0 = int(torch.randint(0, x.shape[-2] - crop + 1, (1,), generator=g))
        x0 = int(torch.randint(0, x.shape[-1] - crop + 1, (1,), generator=g))
        x, t, w = (a[..., y0 : y0 + crop, x0 : x0 + crop] for a in (x, t, w))
    k = int(torch.randint(0, 8, (1,), generator=g))
    if k & 1:
        x, t, w = (a.flip(-1) for a in (x, t, w))
    if k & 2:
        x, t, w = (a.flip(-2) for a in (x, t, w))
    if k & 4 and x.shape[-1] == x.shape[-2]:
        x, t, w = (a.transpose(-1, -2) for a in (x, t, w))
    if channel_dropout > 0 and x.shape[1] > n_base:
        drop = torch.rand(x.shape[0], generator=g) < channel_dropout
        if drop.any():
            x = x.clone()
            x[drop, n_base:] = float("nan")
    return x.contiguous(), t.contiguous(), w.contiguous()


# ------------------------------------------------------------------------------------------------
# loss
# ------------------------------------------------------------------------------------------------


def quality_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, kind: LossKind,
                 pos_weight: float = 1.0) -> torch.Tensor:
    """Loss on P(bad) logits (batch, 1, y, x) against target/weight (batch, y, x).

    Dice is computed over the whole batch (soft, weighted), so tiles without any bad pixel do not
    produce the 0/0 that per-tile Dice has; BCE/focal are weighted means.
    """
    z = logits[:, 0].float()
    wt = weight * torch.where(target > 0.5, pos_weight, 1.0)
    norm = wt.sum().clamp_min(1.0)
    if kind == "focal_dice":
        p = torch.sigmoid(z)
        pt = torch.where(target > 0.5, p, 1 - p)
        bce = F.binary_cross_entropy_with_logits(z, target, reduction="none")
        pix = (1 - pt).pow(2.0) * bce
    else:
        pix = F.binary_cross_entropy_with_logits(z, target, reduction="none")
    loss = (pix * wt).sum() / norm
    if kind in ("bce_dice", "focal_dice"):
        p = torch.sigmoid(z)
        inter = (p * target * weight).sum()
        denom = ((p + target) * weight).sum()
        loss = loss + 1 - (2 * inter + 1) / (denom + 1)
    return loss


# ------------------------------------------------------------------------------------------------
# checkpoints
# ------------------------------------------------------------------------------------------------


def checkpoint_bytes(state: Mapping[str, Any]) -> bytes:
    buf = _pyio.BytesIO()
    torch.save(dict(state), buf)
    return buf.getvalue()


def save_checkpoint(url: str, state: Mapping[str, Any], storage_options: dict[str, Any] | None = None) -> None:
    """Write a checkpoint blob to ``url`` (any fsspec URL or path) in one atomic put."""
    from insarcloud.io.storage import write_bytes_atomic

    write_bytes_atomic(url, checkpoint_bytes(state), storage_options)


def read_checkpoint(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read a checkpoint blob (``weights_only``: no code runs from the file)."""
    from insarcloud.io.storage import read_bytes

    try:
        data = read_bytes(url, storage_options)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"no checkpoint at {url}") from exc
    try:
        state = torch.load(_pyio.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt/foreign files
        raise InputArrayError(f"checkpoint {url} is not a ConvNeXt-InSAR checkpoint: {exc}") from exc
    if not isinstance(state, dict) or "model_config" not in state or "state_dict" not in state:
        raise InputArrayError(f"checkpoint {url} lacks model_config/state_dict")
    return state


def model_from_state(state: Mapping[str, Any], best: bool = True) -> ConvNeXtInSAR:
    """Rebuild the model of a checkpoint (its best-on-validation weights when present), in eval mode."""
    model = build_model(ModelConfig.model_validate_json(state["model_config"]))
    sd = state.get("best_state_dict") if best and state.get("best_state_dict") else state["state_dict"]
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
    return model.eval()


def load_model(url: str, storage_options: dict[str, Any] | None = None) -> ConvNeXtInSAR:
    return model_from_state(read_checkpoint(url, storage_options))


def export_checkpoint(state: Mapping[str, Any], dtype: torch.dtype = torch.float16) -> dict[str, Any]:
    """A small inference-only copy: best weights stored in ``dtype`` (cast back to float32 on load)."""
    sd = state.get("best_state_dict") or state["state_dict"]
    return {
        "model_config": state["model_config"],
        "train_config": state.get("train_config"),
        "state_dict": {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()},
        "evaluation": state.get("evaluation"),
        "history": state.get("history"),
        "epoch": state.get("epoch"),
        "format": "convnext-insar-1",
    }


# ------------------------------------------------------------------------------------------------
# training loop
# ------------------------------------------------------------------------------------------------


def _evaluate_arrays(model: ConvNeXtInSAR, arrays: Arrays, batch_size: int) -> dict[str, dict[str, float]]:
    q = predict_quality(model, arrays.inputs, batch_size=batch_size).quality
    return {k: m._asdict() for k, m in compare_predictors(q, arrays).items()}


def _val_loss(model: ConvNeXtInSAR, arrays: Arrays, cfg: TrainConfig) -> float:
    total, n = 0.0, 0
    with torch.inference_mode():
        for i in range(0, arrays.inputs.shape[0], cfg.batch_size):
            sl = slice(i, i + cfg.batch_size)
            x = torch.from_numpy(arrays.inputs[sl])
            loss = quality_loss(model(x), torch.from_numpy(arrays.target[sl]), torch.from_numpy(arrays.weight[sl]),
                                cfg.loss, cfg.pos_weight)
            total += float(loss) * x.shape[0]
            n += x.shape[0]
    return total / max(n, 1)


def fit(
    train_arrays: Arrays,
    cfg: TrainConfig,
    *,
    val_arrays: Arrays | None = None,
    state: Mapping[str, Any] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = True,
) -> tuple[ConvNeXtInSAR, dict[str, Any]]:
    """Train on in-memory arrays; returns the model (best weights on validation) and the final state.

    ``state`` (a checkpoint dict) resumes: model, optimiser, scheduler, epoch, history and RNG continue.
    ``on_epoch`` receives the state after every epoch (used to write the checkpoint).
    """
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = train_arrays.inputs.shape[0]
    steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
    total = steps_per_epoch * cfg.epochs
    warm = max(1, min(50, total // 10))

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    g = torch.Generator().manual_seed(cfg.seed)
    history: list[dict[str, Any]] = []
    start_epoch, best_score, best_sd = 0, -math.inf, None
    if state is not None:
        model.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        g.set_state(state["generator"])
        history = list(state.get("history", []))
        start_epoch = int(state["epoch"])
        best_score = float(state.get("best_score", -math.inf))
        best_sd = state.get("best_state_dict")
        log.info("resuming at epoch %d of %d", start_epoch, cfg.epochs)
    x_all = torch.from_numpy(train_arrays.inputs)
    t_all = torch.from_numpy(train_arrays.target)
    w_all = torch.from_numpy(train_arrays.weight)
    n_base = len(BASE_CHANNELS)
    out_state: dict[str, Any] = dict(state or {})
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        perm = torch.randperm(n, generator=g)
        t0, run_loss = time.perf_counter(), 0.0
        steps = range(steps_per_epoch)
        bar = None
        if progress:
            from rich.progress import Progress

            bar = Progress(transient=True)
            bar.start()
            task = bar.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=steps_per_epoch)
        try:
            for s in steps:
                b = perm[s * cfg.batch_size : (s + 1) * cfg.batch_size]
                x, t, w = _augment(x_all[b], t_all[b], w_all[b], cfg.crop, g, n_base, cfg.channel_dropout)
                loss = quality_loss(model(x), t, w, cfg.loss, cfg.pos_weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                run_loss += float(loss.detach())
                if bar is not None:
                    desc = f"epoch {epoch + 1}/{cfg.epochs} loss {float(loss.detach()):.4f}"
                    bar.update(task, advance=1, description=desc)
        finally:
            if bar is not None:
                bar.stop()
        model.eval()
        rec: dict[str, Any] = {"epoch": epoch + 1, "train_loss": run_loss / steps_per_epoch,
                               "seconds": time.perf_counter() - t0, "lr": sched.get_last_lr()[0]}
        score = -rec["train_loss"]
        if val_arrays is not None:
            rec["val_loss"] = _val_loss(model, val_arrays, cfg)
            score = -rec["val_loss"]
            if (val_arrays.truth != NODATA).any():
                ev = _evaluate_arrays(model, val_arrays, cfg.batch_size)
                rec["val_auc"], rec["val_f1"] = ev["model"]["auc"], ev["model"]["f1"]
                rec["val_auc_coherence"] = ev["coherence"]["auc"]
                if math.isfinite(rec["val_auc"]):
                    score = rec["val_auc"]
        if score > best_score:
            best_score = score
            best_sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
        history.append(rec)
        log.info("epoch %s", " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()))
        out_state = {
            "model_config": cfg.model.model_dump_json(), "train_config": cfg.model_dump_json(),
            "state_dict": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "generator": g.get_state(), "epoch": epoch + 1, "history": history, "best_score": best_score,
            "best_state_dict": best_sd, "format": "convnext-insar-1",
        }
        if on_epoch is not None:
            on_epoch(out_state)
    if best_sd is not None:
        model.load_state_dict(best_sd)
    return model.eval(), out_state


def train(
    dataset_url: str,
    out_url: str | None,
    cfg: TrainConfig | None = None,
    *,
    storage_options: dict[str, Any] | None = None,
    resume: bool = True,
    verdicts: bool = True,
    progress: bool = True,
) -> TrainResult:
    """Train from the QC tile dataset at ``dataset_url``; checkpoint to ``out_url`` after every epoch.

    Parameters
    ----------
    dataset_url : str
        Zarr tile dataset written by :func:`insarcloud.qc.dataset.build_dataset`.
    out_url : str or None
        Checkpoint URL (``s3://bucket/models/quality.pt``); written after each epoch, read to resume.
    cfg : TrainConfig
        Hyper-parameters; ``cfg.model.channels`` must be in the dataset.
    resume : bool
        Continue from the checkpoint at ``out_url`` when one exists.
    verdicts : bool
        Merge the manual verdicts stored beside the dataset into the rule labels first.

    Returns
    -------
    TrainResult
        ``evaluation`` holds the test split metrics (model vs rules vs coherence) when the test frames
        have truth, else on validation; empty when neither has truth.
    """
    from insarcloud.io.storage import exists
    from insarcloud.qc.dataset import apply_verdicts, load_verdicts, open_dataset

    cfg = cfg or TrainConfig()
    ds = open_dataset(dataset_url, storage_options)
    if verdicts:
        v = load_verdicts(dataset_url, storage_options)
        if v:
            log.info("merging %d manual verdict(s)", len(v))
            ds = apply_verdicts(ds, v)
    rng = np.random.default_rng(cfg.seed)
    chans = cfg.model.channels
    tr = load_split(ds, "train", chans, cfg.target, cfg.max_tiles, rng)
    if tr is None:
        raise InputArrayError(f"dataset {dataset_url} has no 'train' tile")
    va = load_split(ds, "val", chans, cfg.target, cfg.max_tiles, rng)
    te = load_split(ds, "test", chans, cfg.target, cfg.max_tiles, rng)
    log.info("tiles: train %d, val %d, test %d; channels %s", tr.inputs.shape[0],
             0 if va is None else va.inputs.shape[0], 0 if te is None else te.inputs.shape[0], chans)
    state = None
    if resume and out_url is not None and exists(out_url, storage_options):
        state = read_checkpoint(out_url, storage_options)
        if "optimizer" not in state:
            raise InputArrayError(f"{out_url} is an exported (inference-only) checkpoint: cannot resume")
        if state["model_config"] != cfg.model.model_dump_json():
            raise InputArrayError(f"checkpoint {out_url} has another architecture: {state['model_config']}")

    def save(st: dict[str, Any]) -> None:
        if out_url is not None:
            save_checkpoint(out_url, st, storage_options)

    model, state = fit(tr, cfg, val_arrays=va, state=state, on_epoch=save, progress=progress)
    evaluation: dict[str, dict[str, float]] = {}
    for name, arr in (("test", te), ("val", va)):
        if arr is not None and (arr.truth != NODATA).any():
            evaluation = _evaluate_arrays(model, arr, cfg.batch_size)
            evaluation["_split"] = {"name": name, "tiles": float(arr.inputs.shape[0]),  # type: ignore[dict-item]
                                    "frames": float(len(set(arr.frames)))}
            break
    if evaluation:
        state["evaluation"] = evaluation
        save(state)
        log.info("evaluation on %s: %s", evaluation["_split"]["name"],
                 {k: (round(v["auc"], 4), round(v["f1"], 4)) for k, v in evaluation.items() if k != "_split"})
    return TrainResult(model, state["history"], evaluation, out_url)
