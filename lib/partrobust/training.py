"""Training: E_clean epochs of normal training, then E_adv epochs of PGD or TRADES training.

Recipe (paper B.1 / reference-spec 4): SGD momentum 0.9, lr 0.1, weight decay 5e-4 on weights
only (biases and normalisation parameters exempt, chosen by module type), per-epoch cosine
schedule restarting for each phase, the adversarial phase starting from the best clean
checkpoint. Validation every ``val_every`` epochs with clean and PGD accuracy; the adversarial
phase keeps the checkpoint with the best PGD accuracy among those with clean >= adversarial.
A checkpoint with model, optimiser, scheduler, RNG and data-order state is written every epoch,
so a killed run resumes and reaches the same weights as an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .attacks import PGD, TradesKL
from .config import parse_fraction
from .losses import part_model_loss, trades_loss
from .utils import atomic_torch_save, rng_state, set_rng_state

ADV_METHODS = ("pgd", "trades")
_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


@dataclass
class TrainConfig:
    """Hyperparameters of one training run (defaults: the paper's recipe)."""

    epochs_clean: int = 50
    epochs_adv: int = 50
    adv_method: str = "pgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    c_seg: float = 0.5
    trades_beta: float = 1.0
    eps: float | str = "8/255"
    train_step_size: float | str = "2/255"  # paper text; the reference code used 1/255 (decision 1)
    train_steps: int = 10
    val_every: int = 2
    val_steps: int = 100
    val_step_size: float | str = 0.002
    val_limit: int | None = None
    bf16: bool = False
    tf32: bool = False
    seed: int = 0
    log_every: int = 20
    progress: bool = True

    def __post_init__(self) -> None:
        if self.adv_method not in ADV_METHODS:
            raise ValueError(f"adv_method must be one of {ADV_METHODS}, got {self.adv_method!r}")
        if self.epochs_clean < 0 or self.epochs_adv < 0 or self.epochs_clean + self.epochs_adv == 0:
            raise ValueError("need epochs_clean >= 0, epochs_adv >= 0 and at least one epoch in total")
        if not 0.0 <= self.c_seg <= 1.0:
            raise ValueError(f"c_seg must be in [0, 1], got {self.c_seg}")
        if self.val_every < 1:
            raise ValueError(f"val_every must be >= 1, got {self.val_every}")

    @property
    def eps_value(self) -> float:
        return parse_fraction(self.eps, "eps")

    def train_attack(self) -> PGD | TradesKL:
        """The attack used inside adversarial training (class loss only, eq. 9 / eq. 11)."""
        step = parse_fraction(self.train_step_size, "train_step_size")
        if self.adv_method == "trades":
            return TradesKL(eps=self.eps_value, step_size=step, steps=self.train_steps)
        return PGD(eps=self.eps_value, step_size=step, steps=self.train_steps, track_fooling=False)

    def val_attack(self) -> PGD:
        step = parse_fraction(self.val_step_size, "val_step_size")
        return PGD(eps=self.eps_value, step_size=step, steps=self.val_steps, restarts=1)


@dataclass
class FitResult:
    """Where the selected weights are and what happened in each epoch."""

    best_checkpoint: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    wall_time_s: float = 0.0


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weights only: biases and normalisation parameters get none (decision 14)."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            if isinstance(module, _NORM_TYPES) or name == "bias" or param.ndim <= 1:
                no_decay.append(param)
            else:
                decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _is_part_model(model: nn.Module) -> bool:
    return bool(getattr(model, "is_part_model", False))


def training_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor, method: str, cfg: TrainConfig, attack=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step's loss and the logits its accuracy is measured on (model already in train mode).

    method: "normal" (eq. 5), "pgd" (eq. 8-9: x* from the class loss, both terms on x*) or
    "trades" (eq. 10-11: one pass over [x; x*], segmentation term on the adversarial half).
    """
    part = _is_part_model(model)
    if method == "normal" or method == "pgd":
        inputs = attack(model, x, y) if method == "pgd" else x
        if part:
            logits, seg = model.forward_with_parts(inputs)
            return part_model_loss(logits, y, seg, masks, cfg.c_seg), logits
        logits = model(inputs)
        return part_model_loss(logits, y), logits
    if method == "trades":
        x_adv = attack(model, x, y)
        both = torch.cat([x, x_adv])
        n = x.shape[0]
        if part:
            logits, seg = model.forward_with_parts(both)
            loss = trades_loss(logits[:n], logits[n:], y, cfg.trades_beta, seg[n:], masks, cfg.c_seg)
        else:
            logits = model(both)
            loss = trades_loss(logits[:n], logits[n:], y, cfg.trades_beta)
        return loss, logits[n:]
    raise ValueError(f"unknown training method {method!r}")


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    method: str,
    cfg: TrainConfig,
    device: torch.device,
    desc: str,
) -> dict[str, float]:
    """Runs one epoch; returns mean loss and accuracy (on the inputs the loss saw)."""
    attack = cfg.train_attack() if method in ADV_METHODS else None
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    bar = tqdm(loader, desc=desc, disable=not cfg.progress, leave=False, mininterval=1.0)
    for step, (x, masks, y) in enumerate(bar):
        x, masks, y = x.to(device, non_blocking=True), masks.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with _autocast(device, cfg.bf16):
            loss, logits = training_loss(model, x, y, masks, method, cfg, attack)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{desc}: non-finite loss {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
        if step % cfg.log_every == 0:
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{100 * correct / seen:.1f}%")
    return {"train_loss": total_loss / max(seen, 1), "train_acc": 100.0 * correct / max(seen, 1)}


def validate(
    model: nn.Module, loader: DataLoader, device: torch.device, attack: PGD | None = None, limit: int | None = None
) -> dict[str, float]:
    """Clean accuracy and, with `attack`, adversarial accuracy (%) on up to `limit` samples."""
    model.eval()
    clean, adv, seen = 0, 0, 0
    for x, _, y in loader:
        if limit is not None and seen >= limit:
            break
        if limit is not None:
            x, y = x[: limit - seen], y[: limit - seen]
        x, y = x.to(device), y.to(device)
        with torch.no_grad():
            clean += (model(x).argmax(1) == y).sum().item()
        if attack is not None:
            x_adv = attack(model, x, y)
            with torch.no_grad():
                adv += (model(x_adv).argmax(1) == y).sum().item()
        seen += len(y)
    metrics = {"val_clean_acc": 100.0 * clean / max(seen, 1)}
    if attack is not None:
        metrics["val_adv_acc"] = 100.0 * adv / max(seen, 1)
    return metrics


def _is_better(metrics: dict[str, float], best: dict[str, float] | None, adversarial: bool) -> bool:
    if adversarial:
        if metrics["val_clean_acc"] < metrics["val_adv_acc"]:
            return False
        return best is None or metrics["val_adv_acc"] > best["val_adv_acc"]
    return best is None or metrics["val_clean_acc"] > best["val_clean_acc"]


def fit_phase(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    cfg: TrainConfig,
    method: str,
    epochs: int,
    out_dir: Path,
    device: torch.device,
) -> FitResult:
    """Trains one phase in `out_dir`, resuming from ``last.pt`` if it exists.

    Files: ``last.pt`` (full state, every epoch), ``best.pt`` (selected weights),
    ``history.jsonl`` (one JSON line per epoch).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    adversarial = method in ADV_METHODS
    optimizer = torch.optim.SGD(parameter_groups(model, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    generator: torch.Generator = train_loader.generator  # type: ignore[assignment]
    if generator is None:
        raise ValueError("train_loader needs a seeded torch.Generator (see partrobust.data loaders)")
    start_epoch, history, best = 0, [], None
    if last_path.exists():
        state = torch.load(last_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        generator.set_state(state["generator"])
        start_epoch, history, best = state["epoch"], state["history"], state["best"]
    t0 = time.time()
    for epoch in range(start_epoch, epochs):
        desc = f"{out_dir.name} {epoch + 1}/{epochs}"
        record: dict[str, Any] = {"phase": out_dir.name, "epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"]}
        record.update(train_one_epoch(model, train_loader, optimizer, method, cfg, device, desc))
        scheduler.step()
        if (epoch + 1) % cfg.val_every == 0 or epoch + 1 == epochs:
            attack = cfg.val_attack() if adversarial else None
            metrics = validate(model, val_loader, device, attack, cfg.val_limit)
            record.update(metrics)
            if _is_better(metrics, best, adversarial):
                best = {**metrics, "epoch": epoch + 1}
                atomic_torch_save({"model": model.state_dict(), "epoch": epoch + 1, "metrics": metrics}, best_path)
        record["selected"] = best is not None and best["epoch"] == epoch + 1
        history.append(record)
        if cfg.progress:
            tqdm.write(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in record.items()}))
        if best is None and epoch + 1 == epochs:
            # No validation met clean >= adversarial: keep the final weights, and say so.
            best = {"epoch": epochs, "note": "no epoch had clean >= adversarial accuracy; using the last one"}
            atomic_torch_save({"model": model.state_dict(), "epoch": epochs, "metrics": {}}, best_path)
            history[-1]["selected"] = True
            history[-1]["note"] = best["note"]
        atomic_torch_save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng_state(),
                "generator": generator.get_state(),
                "epoch": epoch + 1,
                "history": history,
                "best": best,
            },
            last_path,
        )
    with open(out_dir / "history.jsonl", "w") as f:
        for record in history:
            f.write(json.dumps(record) + "\n")
    return FitResult(best_checkpoint=best_path, history=history, wall_time_s=time.time() - t0)


def load_weights(model: nn.Module, checkpoint: Path, device: torch.device) -> nn.Module:
    """Loads the ``model`` entry of a checkpoint written by this module."""
    state = torch.load(checkpoint, map_location=device, weights_only=False)
    model.load_state_dict(state["model"])
    return model


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    cfg: TrainConfig,
    out_dir: str | Path,
    device: torch.device,
) -> FitResult:
    """Clean phase, then the adversarial phase from the best clean weights; returns the final pick."""
    out_dir = Path(out_dir)
    if cfg.tf32 and device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model.to(device)
    history: list[dict[str, Any]] = []
    wall = 0.0
    result = None
    if cfg.epochs_clean > 0:
        result = fit_phase(model, train_loader, val_loader, cfg, "normal", cfg.epochs_clean, out_dir / "clean", device)
        history += result.history
        wall += result.wall_time_s
    if cfg.epochs_adv > 0:
        if result is not None and not (out_dir / cfg.adv_method / "last.pt").exists():
            load_weights(model, result.best_checkpoint, device)
        result = fit_phase(model, train_loader, val_loader, cfg, cfg.adv_method, cfg.epochs_adv, out_dir / cfg.adv_method, device)
        history += result.history
        wall += result.wall_time_s
    assert result is not None
    load_weights(model, result.best_checkpoint, device)
    model.eval()
    return FitResult(best_checkpoint=result.best_checkpoint, history=history, wall_time_s=wall)
