"""L-infinity PGD with random start and restarts (Madry et al.), in [0, 1] pixel space."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import check_eps, eval_mode, logits_and_input_grad, project_linf


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
    """

    eps: float = 8 / 255
    step_size: float = 2 / 255
    steps: int = 10
    restarts: int = 1
    random_start: bool = True
    track_fooling: bool = True

    def __post_init__(self) -> None:
        check_eps(self.eps, self.step_size, self.steps)
        if self.restarts < 1 or self.steps < 1:
            raise ValueError(f"need restarts >= 1 and steps >= 1, got restarts={self.restarts}, steps={self.steps}")

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Returns adversarial examples for (x, y); model runs in eval mode, mode restored."""
        with eval_mode(model):
            return self._attack(model, x.detach(), y)

    def _attack(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        def loss_fn(logits: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(logits, y, reduction="none")

        best_x = x.clone()
        best_loss = torch.full((x.shape[0],), -float("inf"), device=x.device)
        fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for _ in range(self.restarts):
            x_adv = x.clone()
            if self.random_start and self.eps > 0:
                x_adv = (x_adv + torch.empty_like(x).uniform_(-self.eps, self.eps)).clamp_(0.0, 1.0)
            for _ in range(self.steps):
                logits, grad = logits_and_input_grad(model, x_adv, loss_fn)
                if self.track_fooling:
                    wrong = (logits.argmax(1) != y) & ~fooled  # keep the first fooling iterate
                    best_x[wrong] = x_adv[wrong]
                    fooled |= wrong
                x_adv = project_linf(x_adv + self.step_size * grad.sign(), x, self.eps)
            with torch.no_grad():
                logits = model(x_adv).float()
                loss = F.cross_entropy(logits, y, reduction="none")
                wrong = (logits.argmax(1) != y) if self.track_fooling else torch.zeros_like(fooled)
            take = ~fooled & (wrong | (loss > best_loss))
            best_x[take] = x_adv[take]
            best_loss = torch.where(take, loss, best_loss)
            fooled |= wrong
        return best_x.detach()
