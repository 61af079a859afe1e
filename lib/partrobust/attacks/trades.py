"""TRADES' inner maximisation: find x* in the eps-ball maximising KL(f(x) || f(x*))."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import check_eps, eval_mode, logits_and_input_grad, project_linf


@dataclass
class TradesKL:
    """Signed-gradient ascent on the per-sample KL divergence to the clean prediction.

    Args:
        eps, step_size, steps: budget in [0, 1] pixel units.
        init: "uniform" starts from x + U(-eps, eps) (the paper's reference code);
            "normal" from x + 0.001 N(0, 1) (the original TRADES code).
    """

    eps: float = 8 / 255
    step_size: float = 2 / 255
    steps: int = 10
    init: str = "uniform"

    def __post_init__(self) -> None:
        check_eps(self.eps, self.step_size, self.steps)
        if self.init not in ("uniform", "normal"):
            raise ValueError(f"init must be 'uniform' or 'normal', got {self.init!r}")

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Returns x* (labels are not used: the target is the clean prediction)."""
        x = x.detach()
        with eval_mode(model):
            with torch.no_grad():
                p_clean = F.softmax(model(x).float(), dim=1)
            if self.init == "uniform":
                x_adv = x + torch.empty_like(x).uniform_(-self.eps, self.eps)
            else:
                x_adv = x + 0.001 * torch.randn_like(x)
            x_adv = project_linf(x_adv, x, self.eps)

            def loss_fn(logits: torch.Tensor) -> torch.Tensor:
                return F.kl_div(F.log_softmax(logits, dim=1), p_clean, reduction="none").sum(dim=1)

            for _ in range(self.steps):
                _, grad = logits_and_input_grad(model, x_adv, loss_fn)
                x_adv = project_linf(x_adv + self.step_size * grad.sign(), x, self.eps)
        return x_adv.detach()
