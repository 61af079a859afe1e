"""Joint image + part-mask transforms (torchvision.transforms.v2).

A transform is called as ``transform(image, mask)`` with a ``tv_tensors.Image`` uint8
(3,H,W) and a ``tv_tensors.Mask`` (H,W) integer tensor, and returns ``(image, mask)`` with
the image float32 in [0, 1] and the mask int64. Geometric ops are applied to both with the
same random parameters; v2 resizes ``Mask`` with nearest interpolation, so mask values stay
part ids. Randomness comes from torch's global RNG (seed it with ``torch.manual_seed``;
DataLoader workers are seeded from it).
"""
from __future__ import annotations

from typing import Callable

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

JointTransform = Callable[[tv_tensors.Image, tv_tensors.Mask], tuple[torch.Tensor, torch.Tensor]]


def to_float_and_long() -> v2.Transform:
    """Image uint8 -> float32 in [0, 1]; mask -> int64."""
    return v2.ToDtype(
        {tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None}, scale=True
    )


def train_transform(
    crop_size: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> JointTransform:
    """RandomResizedCrop + horizontal flip (joint), then dtype conversion."""
    return v2.Compose([
        v2.RandomResizedCrop(crop_size, scale=scale, ratio=ratio, antialias=True),
        v2.RandomHorizontalFlip(0.5),
        to_float_and_long(),
    ])


def eval_transform(resize_size: int, crop_size: int) -> JointTransform:
    """Resize the shorter side to resize_size, centre-crop crop_size, then dtype conversion."""
    return v2.Compose([
        v2.Resize(resize_size, antialias=True),
        v2.CenterCrop(crop_size),
        to_float_and_long(),
    ])
