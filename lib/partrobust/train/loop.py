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
from typing import Any, Literal, Mapping, get_args

import torch
import torch.nn as nn
from pydantic import Field, model_validator
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..attacks import PGD, TradesKL
from ..core.config import Fraction, Section, diff_flat
from ..core.device import float32_precision
from ..core.distributed import SINGLE, Dist, item_seed
from ..core.fileio import (
    CorruptCheckpointError,
    atomic_torch_save,
    atomic_write_text,
    check_checkpoint,
    file_lock,
    load_checkpoint,
    remove_stale_temporaries,
)
from ..core.seeding import rng_state, set_rng_state
from ..models.losses import PartLoss, part_model_loss, trades_loss
from .speed import PLAIN, Speed, apply_speed, compile_report, speed_settings, to_device

ADV_METHODS = ("pgd", "trades")
AttackPrecision = Literal["as_train", "fp32", "bf16"]
_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


class TrainConfig(Section):
    """Hyperparameters of one training run (section ``train``; defaults: the paper's recipe)."""

    epochs_clean: int = Field(50, ge=0, description="epochs of normal training")
    epochs_adv: int = Field(50, ge=0, description="epochs of adversarial training from the best clean checkpoint (0: normal training only)")
    method: Literal["pgd", "trades"] = Field("pgd", description="adversarial training: PGD (eq. 8-9) or TRADES (eq. 10-11)")
    lr: float = Field(0.1, gt=0, description="SGD learning rate (cosine schedule per phase)")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    weight_decay: float = Field(5e-4, ge=0, description="weight decay on weights (not biases or normalisation)")
    c_seg: float = Field(0.5, ge=0, le=1, description="weight of the segmentation loss (part models)")
    beta: float = Field(1.0, ge=0, description="TRADES beta")
    eps: Fraction = Field("8/255", description="L-inf budget of the training and validation attacks")
    step_size: Fraction = Field("2/255", description="training attack step (paper text 2/255; the reference code used 1/255, decision 1)")
    steps: int = Field(10, ge=1, description="training attack steps")
    val_every: int = Field(2, ge=1, description="validate every N epochs (and after the last)")
    val_steps: int = Field(100, ge=1, description="validation PGD steps")
    val_step_size: Fraction = Field(0.002, description="validation PGD step")
    val_limit: int | None = Field(None, ge=1, description="validation images per check (None: all)")
    bf16: bool = Field(False, description="bf16 autocast for training on CUDA (evaluation stays fp32)")
    attack_precision: AttackPrecision = Field(
        "as_train", description="precision of the attacks inside training and validation: as_train (the training attack in the "
        "training precision, validation in fp32), fp32 (both in full IEEE fp32, no autocast, no TF32) or bf16 (both under bf16 "
        "autocast); the test attacks always run in fp32")
    tf32: bool = Field(False, description="TF32 matmuls and convolutions for training on CUDA (restored afterwards)")
    log_every: int = Field(20, ge=1, description="progress-bar update every N steps")
    sync_bn: bool = Field(False, description="SyncBatchNorm across the processes of a torchrun run (the reference used it; CUDA only; no effect in one process)")

    @property
    def training(self) -> str:
        """The paper's name for this recipe: "normal" without adversarial epochs, else the method."""
        return self.method if self.epochs_adv > 0 else "normal"

    @model_validator(mode="after")
    def _some_epochs(self) -> "TrainConfig":
        if self.epochs_clean + self.epochs_adv == 0:
            raise ValueError("need at least one epoch in total (epochs_clean + epochs_adv >= 1)")
        return self

    def train_attack(self) -> PGD | TradesKL:
        """The attack used inside adversarial training (class loss only, eq. 9 / eq. 11)."""
        if self.method == "trades":
            return TradesKL(eps=self.eps, step_size=self.step_size, steps=self.steps)
        return PGD(eps=self.eps, step_size=self.step_size, steps=self.steps, track_fooling=False)

    def val_attack(self) -> PGD:
        return PGD(eps=self.eps, step_size=self.val_step_size, steps=self.val_steps, restarts=1)


class ConfigMismatchError(RuntimeError):
    """A checkpoint was written by a different configuration than the one resuming it."""


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


def attack_precision(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The numeric precision an attack inside training or validation runs in (``train.attack_precision``).

    ``as_train``: whatever the caller runs in (the training step's autocast, if any); ``fp32``: autocast
    off and full IEEE fp32 matmuls and convolutions (no TF32); ``bf16``: bf16 autocast on `device`
    (on a CPU, torch's CPU bf16 autocast: slow, but it lets the switch be tested without a GPU).
    """
    if precision == "as_train":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp32":
        stack = contextlib.ExitStack()
        stack.enter_context(torch.autocast(device.type, enabled=False))
        stack.enter_context(float32_precision(tf32=False))
        return stack
    raise ValueError(f"attack precision must be one of {get_args(AttackPrecision)}, got {precision!r}")


def _is_part_model(model: nn.Module) -> bool:
    return bool(getattr(model, "is_part_model", False))


class LossForward(nn.Module):
    """The forward pass the training loss differentiates: (class logits, part logits or None).

    One module call for both model kinds, so that DistributedDataParallel (which synchronises
    the gradients of what its wrapped module's ``forward`` computes) covers the part models'
    ``forward_with_parts`` too. Attacks call the model itself, outside this wrapper.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if _is_part_model(self.model):
            return self.model.forward_with_parts(x)
        return self.model(x), None


def training_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor, method: str, cfg: TrainConfig, attack=None,
    forward: nn.Module | None = None, part_loss: PartLoss | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step's loss and the logits its accuracy is measured on (model already in train mode).

    method: "normal" (eq. 5), "pgd" (eq. 8-9: x* from the class loss, both terms on x*) or
    "trades" (eq. 10-11: one pass over [x; x*], segmentation term on the adversarial half).
    `forward`: the `LossForward` of `model` (a DDP-wrapped one under torchrun); default: its own.
    `part_loss`: the part-label term of a part model (default: segmentation cross-entropy;
    `partrobust.models.losses.CentroidLoss` for ``data.labels: centroid``).
    """
    forward = forward if forward is not None else LossForward(model)
    if part_loss is not None and not _is_part_model(model):
        raise ValueError("training_loss: part_loss is given but the model has no part logits")
    if method == "normal" or method == "pgd":
        if method == "pgd":
            with attack_precision(cfg.attack_precision, x.device):
                inputs = attack(model, x, y)
        else:
            inputs = x
        logits, seg = forward(inputs)
        if seg is not None:
            return part_model_loss(logits, y, seg, masks, cfg.c_seg, part_loss), logits
        return part_model_loss(logits, y), logits
    if method == "trades":
        with attack_precision(cfg.attack_precision, x.device):
            x_adv = attack(model, x, y)
        n = x.shape[0]
        logits, seg = forward(torch.cat([x, x_adv]))
        if seg is not None:
            loss = trades_loss(logits[:n], logits[n:], y, cfg.beta, seg[n:], masks, cfg.c_seg, part_loss)
        else:
            loss = trades_loss(logits[:n], logits[n:], y, cfg.beta)
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
    progress: bool = True,
    forward: nn.Module | None = None,
    dist: Dist = SINGLE,
    part_loss: PartLoss | None = None,
    speed: Speed = PLAIN,
) -> dict[str, float]:
    """Runs one epoch; returns mean loss and accuracy (on the inputs the loss saw, over all processes).

    The step never waits for the device: loss sum, correct count and a non-finite-loss flag are
    accumulated on it and read every ``log_every`` steps and at the end, where a non-finite loss
    raises `FloatingPointError` naming its first step (the epoch's checkpoint is then never written).
    """
    attack = cfg.train_attack() if method in ADV_METHODS else None
    model.train()
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    first_bad = torch.full((), -1, dtype=torch.int64, device=device)
    seen = 0
    bar = tqdm(loader, desc=desc, disable=not progress or not dist.is_main, leave=False, mininterval=1.0)

    def check_finite() -> None:
        bad = int(first_bad)
        if bad >= 0:
            raise FloatingPointError(f"{desc}: non-finite loss at step {bad}")

    for step, (x, masks, y) in enumerate(bar):
        x, masks, y = to_device(x, device, speed), to_device(masks, device), to_device(y, device)
        with _autocast(device, cfg.bf16):
            loss, logits = training_loss(model, x, y, masks, method, cfg, attack, forward, part_loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss = loss.detach()
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), step, first_bad)
        total_loss += loss.double() * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        if step % cfg.log_every == 0:
            check_finite()
            bar.set_postfix(loss=f"{float(total_loss) / seen:.3f}", acc=f"{100 * int(correct) / seen:.1f}%")
    check_finite()
    total_loss, correct, seen = dist.sum([float(total_loss), int(correct), seen])
    return {"train_loss": total_loss / max(seen, 1), "train_acc": 100.0 * correct / max(seen, 1)}


def validate(
    model: nn.Module, loader: DataLoader, device: torch.device, attack: PGD | None = None, limit: int | None = None,
    dist: Dist = SINGLE, seed: int = 0, precision: str = "as_train", speed: Speed = PLAIN,
) -> dict[str, float]:
    """Clean accuracy and, with `attack`, adversarial accuracy (%) on up to `limit` samples.

    With several processes, batch j runs in process ``j % world_size`` with its attack seeded by
    its index (the global random stream untouched), and the counts are summed over processes.
    The attack runs in `precision` (`attack_precision`; ``as_train``: the caller's, fp32 in `fit`);
    counts stay on the device until the end.
    """
    model.eval()
    clean = torch.zeros((), dtype=torch.int64, device=device)
    adv = torch.zeros((), dtype=torch.int64, device=device)
    seen, total = 0, 0
    for j, (x, _, y) in enumerate(loader):
        if limit is not None and total >= limit:
            break
        if limit is not None:
            x, y = x[: limit - total], y[: limit - total]
        total += len(y)
        if not dist.owns(j):
            continue
        x, y = to_device(x, device, speed), to_device(y, device)
        with torch.no_grad():
            clean += (model(x).argmax(1) == y).sum()
        if attack is not None:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], enabled=dist.enabled):
                if dist.enabled:
                    torch.manual_seed(item_seed(seed, j))
                with attack_precision(precision, device):
                    x_adv = attack(model, x, y)
            with torch.no_grad():
                adv += (model(x_adv).argmax(1) == y).sum()
        seen += len(y)
    clean, adv, seen = dist.sum([int(clean), int(adv), seen])
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


def _checkpoint_config(state: Mapping[str, Any], path: Path, fingerprint: Mapping[str, Any] | None) -> None:
    """Refuses to resume `path` if it was written by a different configuration."""
    if fingerprint is None:
        return
    stored = state.get("config")
    if stored is None:
        raise ConfigMismatchError(f"{path} records no configuration, so it cannot be resumed safely; delete it to start again")
    changed = diff_flat(stored, fingerprint)
    if changed:
        raise ConfigMismatchError(
            f"{path} was written by a different configuration; changed keys:\n  " + "\n  ".join(changed)
            + "\nUse a new run folder (the run id follows the config) or delete the old one.")


CHECKPOINT_FILES = ("last.pt", "best.pt")
_LAST_KEYS = ("model", "optimizer", "scheduler", "rng", "generator", "epoch", "history", "best")


def check_phase_files(folder: Path, fingerprint: Mapping[str, Any] | None) -> None:
    """Checks a phase folder's checkpoints before any compute (memory-mapped, cheap): each must load
    safely (`UnsafeCheckpointError`, `CorruptCheckpointError`), hold what `fit_phase` wrote
    (`CorruptCheckpointError` naming the missing entries) and come from this configuration
    (`ConfigMismatchError` naming the changed keys), so a bad file stops a run before it trains
    another phase first."""
    for name in CHECKPOINT_FILES:
        path = Path(folder) / name
        if not path.exists():
            continue
        state = check_checkpoint(path)
        needed = _LAST_KEYS if name == "last.pt" else ("model",)
        missing = [k for k in needed if not isinstance(state, Mapping) or k not in state]
        if missing:
            raise CorruptCheckpointError(f"{path}: not a checkpoint of this project (no {', '.join(missing)}); "
                                         "delete it to start again")
        _checkpoint_config(state, path, fingerprint)


def _write_history(out_dir: Path, history: list[dict[str, Any]]) -> None:
    atomic_write_text(out_dir / "history.jsonl", "".join(json.dumps(record) + "\n" for record in history))


def fit_phase(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    cfg: TrainConfig,
    method: str,
    epochs: int,
    out_dir: Path,
    device: torch.device,
    fingerprint: Mapping[str, Any] | None = None,
    progress: bool = True,
    forward: nn.Module | None = None,
    dist: Dist = SINGLE,
    seed: int = 0,
    part_loss: PartLoss | None = None,
    speed: Speed = PLAIN,
) -> FitResult:
    """Trains one phase in `out_dir`, resuming from ``last.pt`` if it exists.

    Files: ``last.pt`` (full state, every epoch), ``best.pt`` (selected weights),
    ``history.jsonl`` (one JSON line per epoch). `fingerprint` (the run's identity, flat
    ``key: value``) is stored in both checkpoints; resuming under another one raises
    `ConfigMismatchError` naming the changed keys.

    Under torchrun (`dist`), every process trains its share of each batch through `forward`
    (the DDP-wrapped `LossForward`); rank 0 alone writes the files, and the others wait for it
    at the end of every epoch. The data order of epoch e is the sampler's for (seed, e) and the
    random augmentations of process r are seeded by (seed, e, r), so a resume with any number
    of processes continues from the last finished epoch.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if dist.is_main:
        remove_stale_temporaries(out_dir, recursive=False)  # a killed checkpoint write leaves its temporary file
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    adversarial = method in ADV_METHODS
    optimizer = torch.optim.SGD(parameter_groups(model, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    generator: torch.Generator = train_loader.generator  # type: ignore[assignment]
    if generator is None:
        raise ValueError("train_loader needs a seeded torch.Generator (see partrobust.data loaders)")
    config = dict(fingerprint) if fingerprint is not None else None
    start_epoch, history, best = 0, [], None
    if last_path.exists():
        state = load_checkpoint(last_path, map_location=device)
        _checkpoint_config(state, last_path, fingerprint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        generator.set_state(state["generator"])
        start_epoch, history, best = state["epoch"], state["history"], state["best"]
        if start_epoch < epochs:
            print(f"[partrobust] resuming {out_dir} at epoch {start_epoch + 1}/{epochs}", flush=True)
    t0 = time.time()
    save = atomic_torch_save if dist.is_main else (lambda obj, path: None)
    for epoch in range(start_epoch, epochs):
        phase = "clean" if method == "normal" else method
        desc = f"{phase} {epoch + 1}/{epochs}"
        if dist.enabled:
            train_loader.sampler.set_epoch(epoch)  # type: ignore[union-attr]
            torch.manual_seed(item_seed(item_seed(seed, epoch), dist.rank))
        record: dict[str, Any] = {"phase": phase, "epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"]}
        record.update(train_one_epoch(model, train_loader, optimizer, method, cfg, device, desc, progress, forward, dist, part_loss,
                                      speed))
        scheduler.step()
        if (epoch + 1) % cfg.val_every == 0 or epoch + 1 == epochs:
            attack = cfg.val_attack() if adversarial else None
            metrics = validate(model, val_loader, device, attack, cfg.val_limit, dist, item_seed(seed, epoch), cfg.attack_precision,
                               speed)
            record.update(metrics)
            if _is_better(metrics, best, adversarial):
                best = {**metrics, "epoch": epoch + 1}
                save({"model": model.state_dict(), "epoch": epoch + 1, "metrics": metrics, "config": config}, best_path)
        record["selected"] = best is not None and best["epoch"] == epoch + 1
        history.append(record)
        if progress and dist.is_main:
            tqdm.write(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in record.items()}))
        if best is None and epoch + 1 == epochs:
            # No validation met clean >= adversarial: keep the final weights, and say so.
            best = {"epoch": epochs, "note": "no epoch had clean >= adversarial accuracy; using the last one"}
            save({"model": model.state_dict(), "epoch": epochs, "metrics": {}, "config": config}, best_path)
            history[-1]["selected"] = True
            history[-1]["note"] = best["note"]
        save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng_state(),
                "generator": generator.get_state(),
                "epoch": epoch + 1,
                "history": history,
                "best": best,
                "config": config,
            },
            last_path,
        )
        if dist.is_main:
            _write_history(out_dir, history)  # every epoch, so listings can read progress without loading checkpoints
        dist.barrier()  # the others read best.pt and last.pt only after rank 0 has written them
    if dist.is_main:
        _write_history(out_dir, history)
    return FitResult(best_checkpoint=best_path, history=history, wall_time_s=time.time() - t0)


def load_weights(model: nn.Module, checkpoint: Path, device: torch.device) -> nn.Module:
    """Loads the ``model`` entry of a checkpoint written by this module."""
    state = load_checkpoint(checkpoint, map_location=device)
    model.load_state_dict(state["model"])
    return model


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    cfg: TrainConfig,
    out_dir: str | Path,
    device: torch.device,
    fingerprint: Mapping[str, Any] | None = None,
    progress: bool = True,
    shared_phases: Mapping[str, tuple[Path, Mapping[str, Any]]] | None = None,
    dist: Dist = SINGLE,
    seed: int = 0,
    part_loss: PartLoss | None = None,
    speed: Speed = PLAIN,
) -> FitResult:
    """Clean phase, then the adversarial phase from the best clean weights; returns the final pick.

    Each phase lives in ``out_dir/clean`` and ``out_dir/<method>`` (checkpoints recording
    `fingerprint`), or, for a phase named in `shared_phases` (``"clean"`` / ``"adversarial"`` ->
    (folder, the phase's own fingerprint)), in that folder, which several runs may reuse: it is
    trained once, under a lock, and the others wait for it and continue from it.
    TF32 (``cfg.tf32``) applies inside this call only: the previous precision settings are
    restored on return, so evaluation afterwards runs in full fp32. `part_loss` replaces a part
    model's segmentation term in both phases (`training_loss`; the run passes
    `partrobust.models.losses.CentroidLoss` for ``data.labels: centroid``); validation stays class accuracy.

    Under torchrun (`dist`) the loss pass runs through DistributedDataParallel (with
    SyncBatchNorm if ``cfg.sync_bn``); rank 0 holds the shared phases' locks and the others wait
    for it before reading any checkpoint.

    `speed` (`partrobust.train.speed`: channels_last, cudnn.benchmark, torch.compile) is applied to
    `model` in place and stays on it for the evaluation that follows; the compile time is printed.
    """
    out_dir = Path(out_dir)
    shared_phases = shared_phases or {}

    @contextlib.contextmanager
    def lock_of(folder: Path):
        with file_lock(folder / ".lock") if dist.is_main else contextlib.nullcontext():
            dist.barrier()
            yield

    def place(phase: str, default: Path) -> tuple[Path, Mapping[str, Any] | None, contextlib.AbstractContextManager]:
        if phase in shared_phases:
            folder, phase_fingerprint = shared_phases[phase]
            return Path(folder), phase_fingerprint, lock_of(Path(folder))
        return default, fingerprint, contextlib.nullcontext()

    if cfg.sync_bn and dist.enabled:
        if device.type != "cuda":
            raise ValueError("train.sync_bn: SyncBatchNorm runs on CUDA only; set it to false for CPU processes")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    apply_speed(model, speed)
    forward: nn.Module = LossForward(model)
    if dist.enabled:
        forward = nn.parallel.DistributedDataParallel(forward, device_ids=[device.index] if device.type == "cuda" else None)
    phase_args = dict(forward=forward, dist=dist, seed=seed, part_loss=part_loss, speed=speed)
    history: list[dict[str, Any]] = []
    wall = 0.0
    result = None
    with float32_precision(tf32=cfg.tf32), speed_settings(speed):
        if cfg.epochs_clean > 0:
            folder, phase_fingerprint, lock = place("clean", out_dir / "clean")
            with lock:
                result = fit_phase(model, train_loader, val_loader, cfg, "normal", cfg.epochs_clean, folder, device,
                                   phase_fingerprint, progress, **phase_args)
            history += result.history
            wall += result.wall_time_s
        if cfg.epochs_adv > 0:
            folder, phase_fingerprint, lock = place("adversarial", out_dir / cfg.method)
            with lock:
                if result is not None and not (folder / "last.pt").exists():
                    load_weights(model, result.best_checkpoint, device)
                result = fit_phase(model, train_loader, val_loader, cfg, cfg.method, cfg.epochs_adv, folder, device,
                                   phase_fingerprint, progress, **phase_args)
            history += result.history
            wall += result.wall_time_s
    assert result is not None
    report = compile_report(model)
    if report and progress and dist.is_main:
        print(f"[partrobust] {report}", flush=True)
    load_weights(model, result.best_checkpoint, device)
    model.eval()
    return FitResult(best_checkpoint=result.best_checkpoint, history=history, wall_time_s=wall)
