"""PGD on a part model whose objective adds the segmentation loss (paper App. E.4, Table 12).

Per sample, L = (1 - c_seg) CE(class logits, y) + c_seg seg_loss(part logits, true masks), with
``seg_loss`` the pixel-mean cross-entropy of `partrobust.models.losses.segmentation_loss_per_sample`
(UNLABELLED pixels ignored). Reference: ``seg-sum`` evaluation attack (``SegPGDAttackModule``
with ``SemiSumLoss(seg_const=--seg-const-atk)``), reference-spec 3.4.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..data.prepared import UNLABELLED
from ..models.losses import segmentation_loss_per_sample
from .base import eval_mode
from .pgd import PGD, Objective, cross_entropy_objective


def check_part_model(model: nn.Module, where: str) -> None:
    """Refuses models without part logits (``is_part_model`` and ``forward_with_parts``)."""
    if not getattr(model, "is_part_model", False) or not callable(getattr(model, "forward_with_parts", None)):
        raise ValueError(
            f"{where} attacks the segmenter of a part model (is_part_model=True with forward_with_parts); "
            f"got {type(model).__name__}, which has no part logits (use PGD for plain classifiers)")


def check_masks(masks: torch.Tensor, x: torch.Tensor, model: nn.Module | None, where: str) -> torch.Tensor:
    """Checks integer part masks (N, H, W) matching images (N, 3, H, W); returns them on x's device.

    Values must lie in [UNLABELLED, K] where K = ``model.num_parts`` (when the model says).
    """
    if not isinstance(masks, torch.Tensor) or masks.ndim != 3 or x.ndim != 4 or masks.shape != (x.shape[0], *x.shape[-2:]):
        shape = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise ValueError(
            f"{where}: part masks must have shape (N, H, W) = {(x.shape[0], *x.shape[-2:])} to match the images "
            f"{tuple(x.shape)} (part logits have the input's resolution), got {shape}")
    if masks.is_floating_point() or masks.dtype == torch.bool:
        raise ValueError(f"{where}: part masks must hold integer part ids, got dtype {masks.dtype}")
    num_parts = getattr(model, "num_parts", None)
    if masks.numel():
        low, high = (int(v) for v in torch.aminmax(masks))
        if low < UNLABELLED or (num_parts is not None and high > num_parts):
            top = "K" if num_parts is None else str(num_parts)
            raise ValueError(f"{where}: part ids must lie in [{UNLABELLED}, {top}], got [{low}, {high}]")
    return masks.to(x.device)


def seg_sum_objective(
    c_seg: float, labels: torch.Tensor | None, masks: torch.Tensor | None, targeted: bool = False
) -> Objective:
    """Per-sample (1 - c_seg) CE(class logits, labels) + c_seg seg_loss(part logits, masks).

    Negated when `targeted` (PGD then descends toward `labels` / `masks`). A term with weight 0
    is not computed: c_seg = 0 is exactly `cross_entropy_objective` (plain PGD, the part logits
    unused); c_seg = 1 needs no labels.
    """
    if not 0.0 <= c_seg <= 1.0:
        raise ValueError(f"c_seg must be in [0, 1], got {c_seg}")
    if c_seg < 1.0 and labels is None:
        raise ValueError("seg_sum_objective: c_seg < 1 needs class labels")
    if c_seg == 0.0:
        return cross_entropy_objective(labels, targeted)
    if masks is None:
        raise ValueError("seg_sum_objective: c_seg > 0 needs part masks")

    def objective(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, seg_logits = model.forward_with_parts(x)
        logits = logits.float()
        loss = segmentation_loss_per_sample(seg_logits, masks)
        if c_seg < 1.0:
            loss = (1.0 - c_seg) * F.cross_entropy(logits, labels, reduction="none") + c_seg * loss
        return logits, (-loss if targeted else loss)

    return objective


@dataclass
class SegPGD(PGD):
    """`PGD` ascending (1 - c_seg) CE + c_seg seg_loss on a part model, called ``attack(model, x, y, masks)``.

    Same loop, restarts and worst case as `PGD` (decision 9): a sample is broken if any iterate
    of any restart is misclassified; otherwise the restart with the highest *combined* final
    loss is kept. With c_seg = 0 the result equals `PGD`'s bit for bit (same RNG state).

    Args:
        c_seg: weight of the segmentation loss in [0, 1] (keyword only; Table 12 sweeps
            0-0.9). masks: the true part masks (N, H, W) at the input's resolution.
    """

    needs_masks: ClassVar[bool] = True  # called as attack(model, x, y, masks)
    c_seg: float = field(kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.c_seg <= 1.0:
            raise ValueError(f"c_seg must be in [0, 1], got {self.c_seg}")

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Returns adversarial examples for (x, y, masks); model runs in eval mode, mode restored."""
        check_part_model(model, "SegPGD")
        masks = check_masks(masks, x, model, "SegPGD")
        with eval_mode(model):
            return self.run(model, x.detach(), y, seg_sum_objective(self.c_seg, y, masks))
