"""Per-sample outcomes of an evaluation: predictions and predicted masks, pixel accuracy, and attacked batches.

All evaluation runs in eval mode and fp32 (no autocast). Batch j of an attacked evaluation starts from
the seed ``item_seed(seed, j)`` in whichever process owns it, so its outcome does not depend on the
number of processes (`sample_outcomes`).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..attacks import PGD, check_images, check_logits
from ..core.distributed import SINGLE, Dist, item_seed
from ..data.prepared import UNLABELLED


def collect(loader: DataLoader, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stacks (images, masks, labels) of the first `limit` samples of a loader (CPU tensors)."""
    xs, ms, ys, n = [], [], [], 0
    for x, m, y in loader:
        xs.append(x), ms.append(m), ys.append(y)
        n += len(y)
        if limit is not None and n >= limit:
            break
    x, m, y = torch.cat(xs), torch.cat(ms), torch.cat(ys)
    return (x[:limit], m[:limit], y[:limit]) if limit is not None else (x, m, y)


def _batches(*tensors: torch.Tensor, batch_size: int):
    for start in range(0, len(tensors[0]), batch_size):
        yield tuple(t[start : start + batch_size] for t in tensors)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Class predictions and, for part models, predicted part masks (argmax), in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    preds, masks = [], []
    for (xb,) in _batches(x, batch_size=batch_size):
        xb = xb.to(device)
        if getattr(model, "is_part_model", False):
            logits, seg = model.forward_with_parts(xb)
            masks.append(seg.argmax(1).cpu())
        else:
            logits = model(xb)
        check_logits(logits)
        preds.append(logits.argmax(1).cpu())
    return torch.cat(preds), (torch.cat(masks) if masks else None)


def pixel_accuracy(pred_masks: torch.Tensor, true_masks: torch.Tensor) -> torch.Tensor:
    """Per-sample fraction of labelled pixels (background included) predicted correctly."""
    labelled = true_masks != UNLABELLED
    correct = ((pred_masks == true_masks) & labelled).flatten(1).sum(1)
    return correct.float() / labelled.flatten(1).sum(1).clamp_min(1).float()


def pgd_examples(model: nn.Module, attack: PGD, x: torch.Tensor, y: torch.Tensor, batch_size: int, progress: bool) -> torch.Tensor:
    """Runs `attack` batch by batch on the model's device; returns CPU adversarial images."""
    check_images(x, "PGD inputs")
    device = next(model.parameters()).device
    out = []
    for xb, yb in tqdm(list(_batches(x, y, batch_size=batch_size)), desc="PGD", disable=not progress, leave=False):
        out.append(attack(model, xb.to(device), yb.to(device)).cpu())
    return torch.cat(out)


def sample_outcomes(model: nn.Module, x: torch.Tensor, masks: torch.Tensor, y: torch.Tensor, attack: PGD | None,
                    batch_size: int, seed: int = 0, dist: Dist = SINGLE, progress: bool = False,
                    desc: str = "") -> dict[str, torch.Tensor]:
    """Per-sample ``correct`` (and ``pixel`` for part models) on (x, y), attacked by `attack` if given.

    Batch j starts from the seed ``item_seed(seed, j)`` and runs in the process that owns it, so
    the outcome of every sample is the same for any number of processes.
    """
    device = next(model.parameters()).device
    batches = list(_batches(x, masks, y, batch_size=batch_size))
    mine: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
    for j in tqdm(list(dist.mine(len(batches))), desc=desc, disable=not progress, leave=False):
        xb, mb, yb = batches[j]
        if attack is not None:
            torch.manual_seed(item_seed(seed, j))
            extra = (mb.to(device),) if getattr(attack, "needs_masks", False) else ()
            xb = attack(model, xb.to(device), yb.to(device), *extra).cpu()
        preds, pred_masks = predict(model, xb, batch_size)
        mine[j] = (preds == yb, None if pred_masks is None else pixel_accuracy(pred_masks, mb))
    merged = dist.merge(mine)
    out = {"correct": torch.cat([merged[j][0] for j in range(len(batches))])}
    if batches and merged[0][1] is not None:
        out["pixel"] = torch.cat([merged[j][1] for j in range(len(batches))])
    return out


