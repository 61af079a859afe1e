"""Shared plumbing for attacks: eval mode, gradients w.r.t. the input only, eps-ball projection."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
import torch.nn as nn


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Puts `model` in eval mode (BN running stats, no dropout) and restores its mode after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def logits_and_input_grad(
    model: nn.Module, x: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (logits at x, d sum(loss_fn(logits)) / d x), leaving parameter ``.grad`` untouched.

    Works under an outer ``torch.no_grad()``; inference mode cannot be undone, so it is refused.
    """
    if torch.is_inference_mode_enabled():
        raise RuntimeError("attacks need gradients: call them outside torch.inference_mode()")
    with torch.enable_grad():
        z = x.detach().requires_grad_(True)
        logits = model(z).float()
        (grad,) = torch.autograd.grad(loss_fn(logits).sum(), z)
    return logits.detach(), grad.detach()


def project_linf(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Projects onto the L-inf ball of radius eps around x, intersected with [0, 1]."""
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)


def check_eps(eps: float, step_size: float, steps: int) -> None:
    """Validates attack budgets, which live in [0, 1] pixel units."""
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"eps must be in [0, 1] pixel units (e.g. 8/255), got {eps}")
    if step_size <= 0 or steps < 0:
        raise ValueError(f"need step_size > 0 and steps >= 0, got step_size={step_size}, steps={steps}")
