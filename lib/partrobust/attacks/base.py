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


Objective = Callable[[nn.Module, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``(model, x) -> (class logits (N, C) float, per-sample loss (N,))``: what an attack ascends."""


def objective_and_input_grad(objective: Objective, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (class logits at x, d sum(loss) / d x), leaving parameter ``.grad`` untouched.

    Works under an outer ``torch.no_grad()``; inference mode cannot be undone, so it is refused.
    """
    if torch.is_inference_mode_enabled():
        raise RuntimeError("attacks need gradients: call them outside torch.inference_mode()")
    with torch.enable_grad():
        z = x.detach().requires_grad_(True)
        logits, loss = objective(model, z)
        (grad,) = torch.autograd.grad(loss.sum(), z)
    return logits.detach(), grad.detach()


def logits_and_input_grad(
    model: nn.Module, x: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """`objective_and_input_grad` of the loss `loss_fn(class logits)`."""
    def objective(m: nn.Module, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = m(z).float()
        return logits, loss_fn(logits)

    return objective_and_input_grad(objective, model, x)


def project_linf(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Projects onto the L-inf ball of radius eps around x, intersected with [0, 1]."""
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)


def check_eps(eps: float, step_size: float, steps: int) -> None:
    """Validates attack budgets, which live in [0, 1] pixel units."""
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"eps must be in [0, 1] pixel units (e.g. 8/255), got {eps}")
    if step_size <= 0 or steps < 0:
        raise ValueError(f"need step_size > 0 and steps >= 0, got step_size={step_size}, steps={steps}")


class InvalidInputError(ValueError):
    """Images or logits that would make an accuracy meaningless (NaN, inf, outside [0, 1])."""


def check_images(x: torch.Tensor, where: str = "images") -> None:
    """Refuses images that are not finite floats in [0, 1] (the pixel scale of every model and eps here).

    One pass over `x` (a device sync); meant for evaluation entry points, not the training loop.
    """
    if not x.is_floating_point():
        raise InvalidInputError(f"{where}: expected float images in [0, 1], got dtype {x.dtype} (divide uint8 images by 255)")
    finite = torch.isfinite(x).flatten(1).all(1) if x.ndim > 1 else torch.isfinite(x)
    if not finite.all():
        bad = torch.nonzero(~finite).flatten()
        raise InvalidInputError(f"{where}: {len(bad)} image(s) hold NaN or inf values (first: index {bad[:5].tolist()})")
    if x.numel():
        low, high = (v.item() for v in torch.aminmax(x))
        if low < 0.0 or high > 1.0:
            hint = "; they look like 0-255 pixel values: divide by 255" if high > 2.0 else ""
            raise InvalidInputError(f"{where}: pixel values must lie in [0, 1], got [{low:.4g}, {high:.4g}]{hint}")


def check_logits(logits: torch.Tensor, where: str = "model output") -> None:
    """Refuses NaN or infinite logits: an argmax over them is not a prediction."""
    if not torch.isfinite(logits).all():
        bad = (~torch.isfinite(logits)).flatten(1).any(1) if logits.ndim > 1 else ~torch.isfinite(logits)
        raise InvalidInputError(
            f"{where}: the model returned NaN or infinite logits for {int(bad.sum())} of {len(logits)} input(s); "
            "its accuracy would be meaningless (diverged weights or a bad checkpoint?)")
