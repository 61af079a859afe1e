"""AutoAttack (Croce & Hein, 2020) through the PyPI package `pyautoattack`, made resumable.

Why an adapter: `pyautoattack` keeps AutoAttack's algorithms but changes the upstream API
(keyword-only constructor, CPU default device, tuple return, DEBUG-level logging), its DLR
losses need >= 4 classes for the targeted attacks, and its own state-file resume is broken in
0.2.0 (resuming references a variable it never sets). So this adapter

* runs the *standard* version (APGD-CE, APGD-T, FAB-T, Square-5000) with
  ``n_target_classes = min(9, C - 1)``; for C < 4 it runs apgd-ce, fab (untargeted) and square,
  as the paper did for Cityscapes, and says so;
* fixes the seed (upstream's default seeds with the clock);
* takes the budget as parameters (``iterations`` of APGD and FAB, ``square_queries``; standard:
  100 and 5,000), so a CPU smoke test can run the standard attacks with a smaller, stated budget;
* runs each attack on the points still robust, in chunks of ``batch_size`` (``"auto"``: sized from
  the free GPU memory), and saves its own state file after every chunk, so an interrupted
  evaluation resumes where it stopped;
* reports robust accuracy as the pointwise worst case over the attacks, re-scored in eval mode.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from ..core.distributed import SINGLE, Dist
from ..core.fileio import atomic_torch_save, load_checkpoint
from .base import check_images, check_logits, eval_mode

STANDARD_ATTACKS = ("apgd-ce", "apgd-t", "fab-t", "square")
STANDARD_ITERATIONS = 100  # APGD and FAB iterations of the standard version
STANDARD_SQUARE_QUERIES = 5000
FEW_CLASS_ATTACKS = ("apgd-ce", "fab", "square")
KNOWN_ATTACKS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")
AUTO_BATCH_SIZE_OFF_CUDA = 128  # what batch_size="auto" means off CUDA (the former default)


def batch_size_for_memory(free_bytes: int, per_sample_bytes: int, fraction: float = 0.7, minimum: int = 1,
                          maximum: int = 4096) -> int:
    """The largest batch whose `per_sample_bytes` per sample fit in `fraction` of `free_bytes`,
    clamped to [`minimum`, `maximum`]."""
    if free_bytes <= 0 or per_sample_bytes <= 0:
        raise ValueError(f"free_bytes and per_sample_bytes must be > 0, got {free_bytes} and {per_sample_bytes}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if not 1 <= minimum <= maximum:
        raise ValueError(f"need 1 <= minimum <= maximum, got minimum={minimum}, maximum={maximum}")
    return max(minimum, min(maximum, math.floor(free_bytes * fraction / per_sample_bytes)))


def probe_per_sample_bytes(model: nn.Module, x_sample: torch.Tensor, probe: int = 8) -> int:
    """Peak CUDA memory per sample of one forward and backward to the input (as in an APGD step),
    measured on `probe` copies of the image `x_sample` (C, H, W). CUDA only; the caller sets eval mode.

    The fixed part of the peak (e.g. convolution workspaces) is counted per sample too: an overestimate.
    """
    device = x_sample.device
    x = x_sample.expand(probe, *x_sample.shape).clone().requires_grad_(True)
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    with torch.enable_grad():
        torch.autograd.grad(model(x).float().sum(), x)
    torch.cuda.synchronize(device)
    return max(1, math.ceil((torch.cuda.max_memory_allocated(device) - base) / probe))


def select_attacks(num_classes: int, attacks: list[str] | None = None) -> tuple[list[str], str]:
    """Picks the attack list for `num_classes`; returns (attacks, human-readable note)."""
    if attacks is not None:
        unknown = sorted(set(attacks) - set(KNOWN_ATTACKS))
        if unknown:
            raise ValueError(f"unknown AutoAttack attacks {unknown}; known: {list(KNOWN_ATTACKS)}")
        needs_four = {"apgd-t", "fab-t"} & set(attacks)
        if needs_four and num_classes < 4:
            raise ValueError(f"{sorted(needs_four)} need at least 4 classes (DLR-targeted), got C={num_classes}")
        if "apgd-dlr" in attacks and num_classes < 3:
            raise ValueError(f"apgd-dlr needs at least 3 classes, got C={num_classes}")
        return list(attacks), f"custom attack list: {', '.join(attacks)}"
    if num_classes >= 4:
        return list(STANDARD_ATTACKS), (
            f"standard AutoAttack: {', '.join(STANDARD_ATTACKS)} (n_target_classes={min(9, num_classes - 1)})"
        )
    return list(FEW_CLASS_ATTACKS), (
        f"C={num_classes} < 4: the DLR-based targeted attacks are undefined, running "
        f"{', '.join(FEW_CLASS_ATTACKS)} instead (as the paper did for Cityscapes)"
    )


@dataclass
class AutoAttackResult:
    """Outcome of an AutoAttack run; `robust[i]` is True if no attack fooled sample i."""

    x_adv: torch.Tensor
    robust: torch.Tensor
    clean_correct: torch.Tensor
    attacks: list[str]
    note: str
    robust_after: dict[str, float] = field(default_factory=dict)

    @property
    def robust_accuracy(self) -> float:
        return self.robust.float().mean().item()


@dataclass
class AutoAttack:
    """AutoAttack adapter; call ``run(model, x, y)`` for the full report, or use it as an attack.

    Args:
        eps: L-inf radius in [0, 1] pixel units.
        seed: seed for every sub-attack (deterministic results).
        batch_size: points per chunk; the state file is written after each chunk. ``"auto"``:
            on CUDA, the largest batch whose probed memory (`probe_per_sample_bytes`) fits in 70 %
            of the free GPU memory (`batch_size_for_memory`; the smallest over the processes),
            resolved once per `run`, or the state file's batch when resuming; elsewhere 128. The
            resolved size is in the note.
        attacks: explicit attack list (default: chosen from the number of classes).
        state_path: file for resuming; None disables resuming.
        progress: show a tqdm bar (one step per chunk).
        iterations: APGD and FAB iterations (standard: 100).
        square_queries: Square attack queries (standard: 5,000).
    """

    eps: float = 8 / 255
    seed: int = 0
    batch_size: int | Literal["auto"] = 128
    attacks: list[str] | None = None
    state_path: str | os.PathLike | None = None
    progress: bool = True
    norm: str = "Linf"
    iterations: int = STANDARD_ITERATIONS
    square_queries: int = STANDARD_SQUARE_QUERIES

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.square_queries < 1:
            raise ValueError(f"iterations and square_queries must be >= 1, got {self.iterations} and {self.square_queries}")
        if self.batch_size != "auto" and (isinstance(self.batch_size, str) or self.batch_size < 1):
            raise ValueError(f"batch_size must be an int >= 1 or 'auto', got {self.batch_size!r}")

    @property
    def budget_note(self) -> str:
        """'' for the standard budget, else what differs from it."""
        if (self.iterations, self.square_queries) == (STANDARD_ITERATIONS, STANDARD_SQUARE_QUERIES):
            return ""
        return (f"reduced budget: {self.iterations} APGD/FAB iterations (standard {STANDARD_ITERATIONS}), "
                f"{self.square_queries} Square queries (standard {STANDARD_SQUARE_QUERIES})")

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.run(model, x, y).x_adv

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, dist: Dist = SINGLE) -> AutoAttackResult:
        """Runs the attacks in order on the points still robust; with several processes (`dist`),
        chunk j of each attack runs in process ``j % world_size`` and the outcomes are shared after
        every round of chunks (every sub-attack reseeds per chunk, so the result is that of one
        process). Rank 0 alone writes the state file."""
        from pyautoattack import AutoAttack as _PyAutoAttack

        x, y = x.detach(), y.detach()
        check_images(x, "AutoAttack inputs")
        saved = self._read_state()
        with eval_mode(model), torch.autocast(x.device.type, enabled=False):
            batch_size, batch_note = self._resolve_batch_size(model, x, saved, dist)
            with torch.no_grad():
                logits = model(x[:1]).float()
                num_classes = logits.shape[1]
                clean_correct = self._predict(model, x, batch_size, check=True) == y
            attacks, note = select_attacks(num_classes, self.attacks)
            logging.getLogger("auto-attack").setLevel(logging.WARNING)
            adversary = _PyAutoAttack(
                model, device=x.device, eps=self.eps, norm=self.norm, seed=self.seed, version="standard"
            )
            adversary.apgd_targeted.n_target_classes = min(9, num_classes - 1)
            adversary.fab.n_target_classes = min(9, num_classes - 1)
            set_budget(adversary, self.iterations, self.square_queries)
            if self.budget_note:
                note = f"{note}; {self.budget_note}"
            if batch_note:
                note = f"{note}; {batch_note}"

            fingerprint = self._fingerprint(model, x, y, attacks, batch_size)
            state = self._check_state(saved, fingerprint) or {
                "fingerprint": fingerprint,
                "batch_size": batch_size,
                "robust": clean_correct.cpu().clone(),  # .cpu() of a CPU tensor is the same tensor
                "x_adv": x.cpu().clone(),
                "done": {},
                "pending": {},
                "robust_after": {},
            }
            bar = tqdm(total=len(attacks), desc="AutoAttack", disable=not self.progress, unit="attack")
            for attack in attacks:
                self._run_one(adversary, model, x, y, attack, state, bar, dist, batch_size)
                bar.update(1)
            bar.close()
        return AutoAttackResult(
            x_adv=state["x_adv"].to(x.device),
            robust=state["robust"].to(x.device),
            clean_correct=clean_correct,
            attacks=attacks,
            note=note,
            robust_after=dict(state["robust_after"]),
        )

    def _resolve_batch_size(self, model: nn.Module, x: torch.Tensor, saved: dict | None, dist: Dist) -> tuple[int, str]:
        """(batch size, note: '' unless "auto") for this run; see the class docstring."""
        if self.batch_size != "auto":
            return self.batch_size, ""
        if saved is not None and "batch_size" in saved:  # a resumed run keeps its chunks (the fingerprint holds the batch)
            return saved["batch_size"], f"batch {saved['batch_size']} (auto, from the state file)"
        if x.device.type != "cuda":
            return AUTO_BATCH_SIZE_OFF_CUDA, f"batch {AUTO_BATCH_SIZE_OFF_CUDA} (auto: not on CUDA, the former default)"
        free, _ = torch.cuda.mem_get_info(x.device)
        free += torch.cuda.memory_reserved(x.device) - torch.cuda.memory_allocated(x.device)  # cached, reusable
        per_sample = probe_per_sample_bytes(model, x[0])
        batch_size = min(dist.gather(batch_size_for_memory(free, per_sample)))  # every process chunks alike
        return batch_size, f"batch {batch_size} (auto, from free GPU memory)"

    def _run_one(self, adversary, model, x, y, attack: str, state: dict, bar, dist: Dist, batch_size: int) -> None:
        if attack in state["robust_after"]:
            return
        if attack not in state["pending"]:
            state["pending"][attack] = torch.nonzero(state["robust"]).flatten()
            state["done"][attack] = 0
        indices = state["pending"][attack]
        chunks = list(torch.split(indices, batch_size)) if len(indices) else []
        adversary.attacks_to_run = [attack]
        for first in range(state["done"][attack], len(chunks), dist.world_size):  # a round: one chunk per process
            updates = {}
            j = first + dist.rank
            if j < len(chunks):
                idx = chunks[j]
                bar.set_postfix_str(f"{attack} chunk {j + 1}/{len(chunks)}, robust {int(state['robust'].sum())}/{len(y)}")
                idx_dev = idx.to(x.device)
                x_adv, _ = adversary.run_standard_evaluation(x[idx_dev], y[idx_dev], batch_size=batch_size)
                with torch.no_grad():
                    fooled = (self._predict(model, x_adv, batch_size) != y[idx_dev]).cpu()
                updates[j] = (idx[fooled], x_adv[fooled.to(x.device)].cpu())
            for fooled_idx, fooled_x in dist.merge(updates).values():
                state["robust"][fooled_idx] = False
                state["x_adv"][fooled_idx] = fooled_x
            state["done"][attack] = min(first + dist.world_size, len(chunks))
            self._save_state(state, dist)
        state["robust_after"][attack] = state["robust"].float().mean().item()
        self._save_state(state, dist)

    @staticmethod
    def _predict(model: nn.Module, x: torch.Tensor, batch_size: int, check: bool = False) -> torch.Tensor:
        preds = []
        for chunk in torch.split(x, batch_size):
            logits = model(chunk)
            if check:
                check_logits(logits)
            preds.append(logits.argmax(1))
        return torch.cat(preds)

    def _fingerprint(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: list[str], batch_size: int) -> str:
        """Identifies model weights, data and settings, so a state file is never reused wrongly."""
        h = hashlib.sha256()
        for tensor in model.state_dict().values():
            h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        h.update(repr((tuple(x.shape), float(self.eps), self.seed, batch_size, self.norm, attacks)).encode())
        if self.budget_note:  # the standard budget keeps the fingerprints of state files written before it was a parameter
            h.update(repr((self.iterations, self.square_queries)).encode())
        h.update(y.cpu().numpy().tobytes())
        h.update(x[:: max(1, len(x) // 16)].cpu().float().numpy().tobytes())
        return h.hexdigest()

    def _read_state(self) -> dict | None:
        if self.state_path is None or not Path(self.state_path).exists():
            return None
        return load_checkpoint(self.state_path)

    def _check_state(self, state: dict | None, fingerprint: str) -> dict | None:
        """`state` (read by `_read_state`) if it belongs to this evaluation; refuses it otherwise."""
        if state is None:
            return None
        if state.get("fingerprint") != fingerprint:
            raise ValueError(
                f"AutoAttack state file {self.state_path} belongs to another evaluation "
                "(different model weights, data, eps, seed, batch size or attacks); delete it or pass another state_path"
            )
        return state

    def _save_state(self, state: dict, dist: Dist = SINGLE) -> None:
        if self.state_path is not None and dist.is_main:
            atomic_torch_save(state, self.state_path)


def set_budget(adversary, iterations: int, square_queries: int) -> None:
    """Sets the iterations of a pyautoattack ``AutoAttack``'s APGD and FAB attacks and its Square queries.

    APGD derives its step-size checkpoints from ``n_iter`` in its constructor (22 %, 6 % and 3 %
    of it), so they are recomputed here with the same formulas, as if it had been built with
    `iterations`.
    """
    for apgd in (adversary.apgd, adversary.apgd_targeted):
        apgd.n_iter = apgd.n_iter_orig = iterations
        apgd.n_iter_2 = max(int(0.22 * iterations), 1)
        apgd.n_iter_min = max(int(0.06 * iterations), 1)
        apgd.size_decr = max(int(0.03 * iterations), 1)
    adversary.fab.n_iter = iterations
    adversary.square.n_queries = square_queries
