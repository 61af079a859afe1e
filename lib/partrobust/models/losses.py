"""Training losses of the paper (Appendix C.4), as pure functions of tensors.

Notation: class logits (N, C), segmentation logits (N, K+1, H, W), labels (N,), part masks
(N, H, W) with part ids in [0, K]. A mask whose pixels are all ``UNLABELLED`` (-1) marks a
sample without part labels (fewer-labels ablation): it contributes no segmentation loss but
keeps its classification term and still counts in the batch mean (as the reference code).

The part-label term is a `PartLoss`: the segmentation cross-entropy by default, or the centroid
loss of App. E.5 (`CentroidLoss`, decision 6) for the "Centroids" rows of Table 14.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..data.prepared import UNLABELLED
from .heads import part_geometry

PartLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""(seg_logits (N, K+1, H, W), masks (N, H, W), labels (N,)) -> per-sample part-label loss (N,),
0 for samples without part labels. Default: `segmentation_loss_per_sample`; else `CentroidLoss`."""


def has_part_labels(masks: torch.Tensor) -> torch.Tensor:
    """(N,) bool: the samples whose mask is not entirely ``UNLABELLED``."""
    return (masks != UNLABELLED).flatten(1).any(dim=1)


def segmentation_loss_per_sample(seg_logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per-sample pixel-mean cross-entropy (Eq. 7 without the constant 1/(K+1), decision 5).

    Pixels equal to ``UNLABELLED`` are ignored; a fully unlabelled sample gets 0.

    Returns:
        (N,) tensor.
    """
    if seg_logits.shape[0] != masks.shape[0] or seg_logits.shape[-2:] != masks.shape[-2:]:
        raise ValueError(
            f"segmentation logits {tuple(seg_logits.shape)} and masks {tuple(masks.shape)} do not match"
        )
    pixel_ce = F.cross_entropy(seg_logits.float(), masks.long(), ignore_index=UNLABELLED, reduction="none")
    labelled = (masks != UNLABELLED).flatten(1)
    count = labelled.sum(dim=1).clamp_min(1)
    return pixel_ce.flatten(1).sum(dim=1) / count


def _check_part_to_class(part_to_class: Sequence[int], num_parts: int, num_classes: int | None = None) -> int:
    """Checks a part-to-class map (length K+1, entry 0 = -1); returns the number of classes C.

    Every class 0..C-1 needs at least one part (else its predicted mass, and p_y, would be 0).
    """
    p2c = [int(c) for c in part_to_class]
    if len(p2c) != num_parts + 1 or p2c[0] != -1 or min(p2c[1:], default=-1) < 0:
        raise ValueError(f"part_to_class must have length K+1 = {num_parts + 1} with entry 0 = -1 and class "
                         f"indices >= 0 after it, got {p2c}")
    num_classes = max(p2c) + 1 if num_classes is None else num_classes
    if max(p2c) >= num_classes:
        raise ValueError(f"part_to_class {p2c} names classes >= num_classes = {num_classes}")
    empty = sorted(set(range(num_classes)) - set(p2c[1:]))
    if empty:
        raise ValueError(f"part_to_class {p2c} must assign >= 1 part to each of the {num_classes} classes "
                         f"(classes without parts: {empty})")
    return num_classes


def centroid_targets(masks: torch.Tensor, num_parts: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ground-truth part centroids (App. E.5: Eq. 2-3 on the ground-truth masks, decision 6).

    The one-hot masks G_k = [mask == k] (k = 1..K; background and ``UNLABELLED`` pixels belong
    to no part) go through the same `partrobust.models.heads.part_geometry` as the model's
    Bounding-Box features: cx_k = sum_w colsum_k(w) w / S_k, cy_k = sum_h rowsum_k(h) h / S_k
    (0-based, with its EPS terms), normalised to cx/W*2-1, cy/H*2-1. x is the column (width)
    coordinate and y the row, as in the features (the reference swapped them; we do not).

    Returns:
        cx, cy: (N, K) float32, 0 where the part is absent; present: (N, K) bool.
    """
    if masks.ndim != 3:
        raise ValueError(f"expected masks (N, H, W), got {tuple(masks.shape)}")
    masks = masks.long()
    if masks.numel() and (masks.min() < UNLABELLED or masks.max() > num_parts):
        raise ValueError(f"mask values must be in [{UNLABELLED}, K={num_parts}], got [{masks.min()}, {masks.max()}]")
    n, height, width = masks.shape
    # Channels: 0 = UNLABELLED, 1 = background, 2.. = parts 1..K (a float one-hot, no int64 copy).
    one_hot = torch.zeros(n, num_parts + 2, height, width, dtype=torch.float32, device=masks.device)
    one_hot.scatter_(1, (masks + 1).unsqueeze(1), 1.0)
    parts = one_hot[:, 2:]
    present = parts.sum((2, 3)) > 0
    cx, cy, _, _ = part_geometry(parts)
    zero = torch.zeros((), dtype=cx.dtype, device=cx.device)
    return torch.where(present, cx, zero), torch.where(present, cy, zero), present


def centroid_term_per_sample(seg_logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Eq. 12 per sample: mean over the parts present in the mask of (cx - cx*)^2 + (cy - cy*)^2.

    (cx, cy) are the model's Bounding-Box centroid features of softmax(seg_logits)[:, 1:]
    (`part_geometry`), (cx*, cy*) the `centroid_targets`. The mean runs over the present parts
    only (Eq. 12 writes 1/K; the reference also averages over present parts); a sample with no
    part present, or without labels, gets 0.

    Returns:
        (N,) tensor.
    """
    _check_shapes(seg_logits, masks)
    cx_gt, cy_gt, present = centroid_targets(masks, seg_logits.shape[1] - 1)
    cx, cy, _, _ = part_geometry(F.softmax(seg_logits.float(), dim=1)[:, 1:])
    squared = (cx - cx_gt) ** 2 + (cy - cy_gt) ** 2
    squared = torch.where(present, squared, torch.zeros_like(squared))
    return squared.sum(dim=1) / present.sum(dim=1).clamp_min(1)


def part_class_term_per_sample(
    seg_logits: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor, part_to_class: Sequence[int],
    num_classes: int | None = None,
) -> torch.Tensor:
    """Eq. 13 per sample, properly normalised (decision 6): -log p_y with

        m_c = sum_{k: class(k) = c} sum_hw M_k,  p_c = m_c / sum_{c'} m_{c'},  M = softmax(seg_logits)[:, 1:],

    i.e. the cross-entropy of the logits log m_c. It is computed in log space, log m_c =
    logsumexp over (k in c, h, w) of log_softmax(seg_logits)_k, so it is exact and finite without
    any clamp (p_y > 0 because every class has >= 1 part, which `part_to_class` is checked for).
    Samples without part labels get 0 (like the segmentation loss).

    Args:
        part_to_class: length K+1, entry 0 = -1 (background), entry k = class of part k.
        num_classes: C (default: max(part_to_class) + 1).

    Returns:
        (N,) tensor.
    """
    _check_shapes(seg_logits, masks)
    num_parts = seg_logits.shape[1] - 1
    num_classes = _check_part_to_class(part_to_class, num_parts, num_classes)
    log_masks = F.log_softmax(seg_logits.float(), dim=1)[:, 1:]  # (N, K, H, W)
    log_part_mass = torch.logsumexp(log_masks.flatten(2), dim=2)  # (N, K): log sum_hw M_k
    classes = torch.as_tensor(list(part_to_class)[1:], device=seg_logits.device)
    member = classes.unsqueeze(1) == torch.arange(num_classes, device=seg_logits.device)  # (K, C)
    log_class_mass = log_part_mass.unsqueeze(2).masked_fill(~member, float("-inf")).logsumexp(dim=1)  # (N, C)
    term = F.cross_entropy(log_class_mass, labels, reduction="none")
    return torch.where(has_part_labels(masks), term, torch.zeros_like(term))


def centroid_loss_per_sample(
    seg_logits: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor, part_to_class: Sequence[int],
    num_classes: int | None = None,
) -> torch.Tensor:
    """L_cen per sample (App. E.5, decision 6): `centroid_term_per_sample` + `part_class_term_per_sample`.

    Returns:
        (N,) tensor, 0 for samples without part labels.
    """
    return centroid_term_per_sample(seg_logits, masks) + part_class_term_per_sample(
        seg_logits, masks, labels, part_to_class, num_classes)


@dataclass(frozen=True)
class CentroidLoss:
    """The centroid loss as a `PartLoss`: ``part_model_loss(..., part_loss=CentroidLoss(p2c, C))``.

    Checks `part_to_class` (length K+1, entry 0 = -1, every class with >= 1 part) when built.
    """

    part_to_class: tuple[int, ...]
    num_classes: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "part_to_class", tuple(int(c) for c in self.part_to_class))
        _check_part_to_class(self.part_to_class, len(self.part_to_class) - 1, self.num_classes)

    def __call__(self, seg_logits: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if seg_logits.shape[1] != len(self.part_to_class):
            raise ValueError(f"CentroidLoss: part_to_class has K+1 = {len(self.part_to_class)} entries, "
                             f"the part logits {seg_logits.shape[1]} channels")
        return centroid_loss_per_sample(seg_logits, masks, labels, self.part_to_class, self.num_classes)


def _check_shapes(seg_logits: torch.Tensor, masks: torch.Tensor) -> None:
    if seg_logits.ndim != 4 or seg_logits.shape[0] != masks.shape[0] or seg_logits.shape[-2:] != masks.shape[-2:]:
        raise ValueError(
            f"segmentation logits {tuple(seg_logits.shape)} and masks {tuple(masks.shape)} do not match"
        )


def _part_term(seg_logits: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor, part_loss: PartLoss | None) -> torch.Tensor:
    if part_loss is None:
        return segmentation_loss_per_sample(seg_logits, masks)
    return part_loss(seg_logits, masks, labels)


def part_model_loss(
    class_logits: torch.Tensor,
    labels: torch.Tensor,
    seg_logits: torch.Tensor | None = None,
    masks: torch.Tensor | None = None,
    c_seg: float = 0.5,
    part_loss: PartLoss | None = None,
) -> torch.Tensor:
    """Combined loss, Eq. 5: mean_i[(1 - c_seg) CE_i + c_seg seg_i].

    With ``seg_logits=None`` (a plain classifier) this is the mean cross-entropy. For PGD
    adversarial training (Eq. 8-9) pass the logits of the adversarial input x*: the same x*,
    found with the classification loss only, feeds both terms. `part_loss` replaces seg_i
    (default: `segmentation_loss_per_sample`); with `CentroidLoss` this is
    mean_i[(1 - c_seg) CE_i + c_seg (centroid_i + class_i)] (App. E.5).
    """
    if not 0.0 <= c_seg <= 1.0:
        raise ValueError(f"c_seg must be in [0, 1], got {c_seg}")
    ce = F.cross_entropy(class_logits.float(), labels, reduction="none")
    if seg_logits is None:
        return ce.mean()
    if masks is None:
        raise ValueError("part_model_loss: seg_logits given without masks")
    seg = _part_term(seg_logits, masks, labels, part_loss)
    return ((1.0 - c_seg) * ce + c_seg * seg).mean()


def kl_clean_to_adv(logits_clean: torch.Tensor, logits_adv: torch.Tensor) -> torch.Tensor:
    """KL(f(x) || f(x*)) averaged over the batch (summed over classes), as in TRADES."""
    return F.kl_div(
        F.log_softmax(logits_adv.float(), dim=1),
        F.softmax(logits_clean.float(), dim=1),
        reduction="batchmean",
    )


def trades_loss(
    logits_clean: torch.Tensor,
    logits_adv: torch.Tensor,
    labels: torch.Tensor,
    beta: float,
    seg_logits_adv: torch.Tensor | None = None,
    masks: torch.Tensor | None = None,
    c_seg: float = 0.5,
    part_loss: PartLoss | None = None,
) -> torch.Tensor:
    """TRADES loss, Eq. 10: (1 - c) CE(f(x), y) + c L_seg(x*) + beta KL(f(x) || f(x*)).

    The segmentation term (or `part_loss`, e.g. `CentroidLoss`) is the mean over the labelled
    samples of the adversarial half (as the reference). Without segmentation logits this is
    plain TRADES: CE(f(x), y) + beta KL. Gradients flow through both the clean and the
    adversarial logits.
    """
    if not 0.0 <= c_seg <= 1.0:
        raise ValueError(f"c_seg must be in [0, 1], got {c_seg}")
    ce = F.cross_entropy(logits_clean.float(), labels)
    kl = kl_clean_to_adv(logits_clean, logits_adv)
    if seg_logits_adv is None:
        return ce + beta * kl
    if masks is None:
        raise ValueError("trades_loss: seg_logits_adv given without masks")
    per_sample = _part_term(seg_logits_adv, masks, labels, part_loss)
    labelled = has_part_labels(masks)
    seg = per_sample[labelled].mean() if labelled.any() else per_sample.sum() * 0.0
    return (1.0 - c_seg) * ce + c_seg * seg + beta * kl
