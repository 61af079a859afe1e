"""DataLoaders over a prepared dataset, with seeded shuffling so training can resume exactly."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from .dataset import PartDataset
from .transforms import eval_transform, train_transform


@dataclass
class LoaderConfig:
    """How images are cropped and batched (paper: crop 224, resize 256 at test time, batch 128)."""

    crop_size: int = 224
    resize_size: int = 256
    min_crop_scale: float = 0.08
    batch_size: int = 128
    num_workers: int = 0
    train_limit: int | None = None
    seed: int = 0
    label_fraction: float = 1.0  # fewer-labels ablation: fraction of train rows keeping masks
    label_seed: int = 0  # seed of the permutation choosing them (the reference fixes it to 0)


def build_loaders(root: str, cfg: LoaderConfig) -> dict[str, DataLoader]:
    """Train (shuffled, augmented, last partial batch dropped), val and test loaders.

    ``cfg.label_fraction`` < 1 drops the part masks of some train rows (see PartDataset);
    val and test keep all their masks.
    """
    generator = torch.Generator().manual_seed(cfg.seed)
    pin = torch.cuda.is_available()
    train_set = PartDataset(
        root, "train", transform=train_transform(cfg.crop_size, scale=(cfg.min_crop_scale, 1.0)), limit=cfg.train_limit,
        label_fraction=cfg.label_fraction,
        label_seed=cfg.label_seed,
    )
    loaders = {
        "train": DataLoader(
            train_set,
            batch_size=cfg.batch_size,
            shuffle=True,
            drop_last=len(train_set) > cfg.batch_size,
            num_workers=cfg.num_workers,
            generator=generator,
            pin_memory=pin,
        )
    }
    for split in ("val", "test"):
        dataset = PartDataset(root, split, transform=eval_transform(cfg.resize_size, cfg.crop_size))
        loaders[split] = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers, pin_memory=pin)
    return loaders
