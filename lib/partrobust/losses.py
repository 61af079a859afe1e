"""Training losses of the paper (Appendix C.4), as pure functions of tensors.

Notation: class logits (N, C), segmentation logits (N, K+1, H, W), labels (N,), part masks
(N, H, W) with part ids in [0, K]. A mask whose pixels are all ``UNLABELLED`` (-1) marks a
sample without part labels (fewer-labels ablation): it contributes no segmentation loss but
keeps its classification term and still counts in the batch mean (as the reference code).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

UNLABELLED = -1


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


def part_model_loss(
    class_logits: torch.Tensor,
    labels: torch.Tensor,
    seg_logits: torch.Tensor | None = None,
    masks: torch.Tensor | None = None,
    c_seg: float = 0.5,
) -> torch.Tensor:
    """Combined loss, Eq. 5: mean_i[(1 - c_seg) CE_i + c_seg seg_i].

    With ``seg_logits=None`` (a plain classifier) this is the mean cross-entropy. For PGD
    adversarial training (Eq. 8-9) pass the logits of the adversarial input x*: the same x*,
    found with the classification loss only, feeds both terms.
    """
    if not 0.0 <= c_seg <= 1.0:
        raise ValueError(f"c_seg must be in [0, 1], got {c_seg}")
    ce = F.cross_entropy(class_logits.float(), labels, reduction="none")
    if seg_logits is None:
        return ce.mean()
    if masks is None:
        raise ValueError("part_model_loss: seg_logits given without masks")
    seg = segmentation_loss_per_sample(seg_logits, masks)
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
) -> torch.Tensor:
    """TRADES loss, Eq. 10: (1 - c) CE(f(x), y) + c L_seg(x*) + beta KL(f(x) || f(x*)).

    The segmentation term is the mean over the labelled samples of the adversarial half (as the
    reference). Without segmentation logits this is plain TRADES: CE(f(x), y) + beta KL.
    Gradients flow through both the clean and the adversarial logits.
    """
    if not 0.0 <= c_seg <= 1.0:
        raise ValueError(f"c_seg must be in [0, 1], got {c_seg}")
    ce = F.cross_entropy(logits_clean.float(), labels)
    kl = kl_clean_to_adv(logits_clean, logits_adv)
    if seg_logits_adv is None:
        return ce + beta * kl
    if masks is None:
        raise ValueError("trades_loss: seg_logits_adv given without masks")
    per_sample = segmentation_loss_per_sample(seg_logits_adv, masks)
    labelled = (masks != UNLABELLED).flatten(1).any(dim=1)
    seg = per_sample[labelled].mean() if labelled.any() else per_sample.sum() * 0.0
    return (1.0 - c_seg) * ce + c_seg * seg + beta * kl
