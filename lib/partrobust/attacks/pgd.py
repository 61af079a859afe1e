"""L-infinity PGD with random start and restarts (Madry et al.), in [0, 1] pixel space.

The PGD loop takes a pluggable per-sample *objective* (see `Objective`), so attacks on other
losses (`SegPGD`: classification + segmentation loss; `TwoStage`: segmenter first, classifier
second) reuse this loop and the per-sample worst-case bookkeeping (`WorstCase`) instead of
copying them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .base import Objective, check_eps, eval_mode, objective_and_input_grad, project_linf

# An Objective returns (class logits (N, C) in float32, per-sample loss (N,)). PGD ascends the loss
# (a targeted attack returns a negated loss). The class logits decide whether an iterate fools the
# model; they must come from the same forward pass as the loss.


@dataclass(eq=False)
class CrossEntropyObjective:
    """Cross-entropy of the class logits w.r.t. `labels`; negated when `targeted` (descend toward them).

    An `Objective` with `select`, so early-stopped PGD can attack a subset of the samples.
    """

    labels: torch.Tensor
    targeted: bool = False

    def __call__(self, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(x).float()
        loss = F.cross_entropy(logits, self.labels, reduction="none")
        return logits, (-loss if self.targeted else loss)

    def select(self, index: torch.Tensor) -> CrossEntropyObjective:
        """The same objective for the samples `index` only (x then holds just those rows)."""
        return CrossEntropyObjective(self.labels[index], self.targeted)


def cross_entropy_objective(labels: torch.Tensor, targeted: bool = False) -> CrossEntropyObjective:
    """Cross-entropy of the class logits w.r.t. `labels`; negated when `targeted` (descend toward them)."""
    return CrossEntropyObjective(labels, targeted)


class WorstCase:
    """Per-sample worst case over iterates and restarts (decision 9).

    A sample is *fooled* as soon as one offered iterate is misclassified (w.r.t. the true labels);
    its first fooling iterate is kept and never replaced. Otherwise the candidate with the
    highest score offered through `offer_final` is kept (strictly higher: ties keep the earlier
    one). With ``track_fooling=False`` only the scores decide (the training attack).

    Offers may cover a subset of the batch: `index` names the rows they hold (all when None).
    Updates go through `torch.where`, not boolean-mask assignment, which would sync the GPU.
    """

    def __init__(self, x: torch.Tensor, track_fooling: bool = True) -> None:
        self.track_fooling = track_fooling
        self.best_x = x.clone()
        self.best_score = torch.full((x.shape[0],), -float("inf"), device=x.device)
        self.fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)

    def offer_iterate(self, x_adv: torch.Tensor, logits: torch.Tensor, y: torch.Tensor,
                      index: torch.Tensor | None = None) -> None:
        """An intermediate iterate with its class logits: kept if it is the first to fool."""
        if self.track_fooling:
            rows = slice(None) if index is None else index
            fooled = self.fooled[rows]
            wrong = (logits.argmax(1) != y) & ~fooled
            self._keep(rows, wrong, x_adv)
            self.fooled[rows] = fooled | wrong

    def offer_final(self, x_adv: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, score: torch.Tensor,
                    index: torch.Tensor | None = None) -> None:
        """The final iterate of one run: kept if it fools, or if its score beats the best so far."""
        rows = slice(None) if index is None else index
        fooled = self.fooled[rows]
        wrong = (logits.argmax(1) != y) if self.track_fooling else torch.zeros_like(fooled)
        take = ~fooled & (wrong | (score > self.best_score[rows]))
        self._keep(rows, take, x_adv)
        self.best_score[rows] = torch.where(take, score, self.best_score[rows])
        self.fooled[rows] = fooled | wrong

    def _keep(self, rows: slice | torch.Tensor, take: torch.Tensor, x_adv: torch.Tensor) -> None:
        """``best_x[rows] = x_adv`` where `take` (per sample)."""
        take = take.view(-1, *[1] * (x_adv.ndim - 1))
        self.best_x[rows] = torch.where(take, x_adv, self.best_x[rows])


@dataclass
class PGD:
    """Untargeted L-inf PGD on the cross-entropy of the class logits.

    Args:
        eps: radius in [0, 1] pixel units (8/255 in the paper).
        step_size: signed-gradient step (training: 1/255 or 2/255; evaluation: 0.001).
        steps: iterations per restart.
        restarts: independent random starts. The per-sample worst case is kept: a sample
            counts as broken if ANY iterate of ANY restart is misclassified (decision 9);
            otherwise the restart with the highest final loss is kept.
        random_start: start from x + U(-eps, eps).
        track_fooling: keep the first misclassified iterate of every sample (evaluation: a
            sample is broken if any iterate fools the model). Training attacks set False and
            get the final iterate of the highest-loss restart, as the reference.
        early_stop: with track_fooling, stop attacking a sample once it is fooled (no more
            steps, no more restarts): the result is the same, the work smaller. Needs an
            objective with ``select`` (`CrossEntropyObjective`); others run on the full batch.

    Subclasses change the objective, not the loop: `run` takes any `Objective`; `start`,
    `ascend` and `finish` are the pieces of one restart, for attacks that chain runs.
    """

    needs_masks: ClassVar[bool] = False  # subclasses on the segmenter take (model, x, y, masks)
    eps: float = 8 / 255
    step_size: float = 2 / 255
    steps: int = 10
    restarts: int = 1
    random_start: bool = True
    track_fooling: bool = True
    early_stop: bool = True
    compact_every: ClassVar[int] = 10  # early stopping drops fooled samples every this many steps (a host sync each)

    def __post_init__(self) -> None:
        check_eps(self.eps, self.step_size, self.steps)
        if self.restarts < 1 or self.steps < 1:
            raise ValueError(f"need restarts >= 1 and steps >= 1, got restarts={self.restarts}, steps={self.steps}")

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Returns adversarial examples for (x, y); model runs in eval mode, mode restored."""
        with eval_mode(model):
            return self.run(model, x.detach(), y, cross_entropy_objective(y))

    def run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        objective: Objective,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """`restarts` runs ascending `objective`; the per-sample worst case (`WorstCase`) of all.

        `y` are the true labels (they decide what "fooled" means); the restart choice uses the
        objective's final loss. The caller sets eval mode. Random starts draw from `generator`
        (torch's global RNG when None).
        """
        if self.early_stop and self.track_fooling and callable(getattr(objective, "select", None)):
            return self._run_early_stopped(model, x, y, objective, generator)
        worst = WorstCase(x, self.track_fooling)
        for _ in range(self.restarts):
            x_adv = self.ascend(model, x, y, objective, self.start(x, generator), worst)
            self.finish(model, x_adv, y, objective, worst)
        return worst.best_x.detach()

    def _run_early_stopped(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, objective: Objective, generator: torch.Generator | None
    ) -> torch.Tensor:
        """`run` on the samples not yet fooled only: the same result (a fooled sample's first fooling
        iterate is final), less work. Fooled samples leave the batch at every restart and every
        `compact_every` steps. Every restart draws its start for the full batch, even once all are
        fooled, so the random stream (and every later draw) is that of ``early_stop=False``.

        Bit for bit the same where the model computes a sample independently of the batch size
        (as on CPU); GPU kernels chosen per batch shape may differ in the last bits.
        """
        worst = WorstCase(x, track_fooling=True)
        active = torch.arange(len(x), device=x.device)  # the samples still attacked
        for _ in range(self.restarts):
            x_start = self.start(x, generator)
            active = active[~worst.fooled[active]]
            x_adv = x_start[active]
            for first in range(0, self.steps, self.compact_every):
                if first:
                    keep = ~worst.fooled[active]
                    active, x_adv = active[keep], x_adv[keep]
                if not len(active):
                    break
                steps = min(self.compact_every, self.steps - first)
                x_adv = self.ascend(model, x[active], y[active], objective.select(active), x_adv, worst, active, steps)
            if len(active):
                self.finish(model, x_adv, y[active], objective.select(active), worst, active)
        return worst.best_x.detach()

    def start(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Starting point of one restart: x + U(-eps, eps) clamped to [0, 1], or x itself."""
        x_adv = x.clone()
        if self.random_start and self.eps > 0:
            if generator is None or generator.device == x.device:
                noise = torch.empty_like(x).uniform_(-self.eps, self.eps, generator=generator)
            else:  # e.g. a CPU generator for CUDA inputs: same draws on every device
                noise = torch.empty(x.shape, dtype=x.dtype).uniform_(-self.eps, self.eps, generator=generator).to(x.device)
            x_adv = (x_adv + noise).clamp_(0.0, 1.0)
        return x_adv

    def ascend(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        objective: Objective,
        x_start: torch.Tensor,
        worst: WorstCase | None = None,
        index: torch.Tensor | None = None,
        steps: int | None = None,
    ) -> torch.Tensor:
        """`steps` (default ``self.steps``) signed-gradient ascent steps on `objective` from
        `x_start`, projected on the eps-ball around `x`; every iterate before a step is offered to
        `worst` (if given) as its rows `index` (all when None).

        Returns the final iterate (not yet offered: see `finish`).
        """
        x_adv = x_start
        for _ in range(self.steps if steps is None else steps):
            logits, grad = objective_and_input_grad(objective, model, x_adv)
            if worst is not None:
                worst.offer_iterate(x_adv, logits, y, index)
            x_adv = project_linf(x_adv + self.step_size * grad.sign(), x, self.eps)
        return x_adv

    @staticmethod
    def finish(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, score: Objective, worst: WorstCase,
               index: torch.Tensor | None = None) -> None:
        """Offers a run's final iterate to `worst` (as its rows `index`; all when None), scored by
        the loss of `score` at it."""
        with torch.no_grad():
            logits, loss = score(model, x_adv)
        worst.offer_final(x_adv, logits, y, loss, index)
