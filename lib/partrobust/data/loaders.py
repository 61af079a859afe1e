"""DataLoaders over a prepared dataset, with seeded shuffling so training can resume exactly."""
from __future__ import annotations

import torch
from pydantic import Field, model_validator
from torch.utils.data import DataLoader, DistributedSampler

from ..config import Section
from ..distributed import SINGLE, Dist
from .dataset import PartDataset
from .transforms import eval_transform, train_transform


class LoaderConfig(Section):
    """How images are cropped and batched (paper: crop 224, resize 256 at test time, batch 128)."""

    crop_size: int = Field(224, ge=1, description="training crop side and test centre-crop side")
    resize_size: int = Field(256, ge=1, description="test-time shorter-side resize before the centre crop")
    min_crop_scale: float = Field(0.08, gt=0, le=1, description="RandomResizedCrop's lower area scale")
    batch_size: int = Field(128, ge=1, description="training batch size")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes (does not change results)")
    train_limit: int | None = Field(None, ge=1, description="use only the first N training images (None: all)")
    label_fraction: float = Field(1.0, gt=0, le=1, description="fraction of training images that keep their part masks (Fig. 10)")
    label_seed: int = Field(0, description="seed of the permutation choosing them (the reference fixes it to 0)")

    @model_validator(mode="after")
    def _crop_fits(self) -> "LoaderConfig":
        if self.crop_size > self.resize_size:
            raise ValueError(f"crop_size {self.crop_size} > resize_size {self.resize_size}: the test centre crop "
                             "would pad the resized image with black borders; use crop_size <= resize_size")
        return self


def per_process_batch(cfg: LoaderConfig, dist: Dist) -> int:
    """The batch each process trains on: ``data.batch_size`` is the global batch, split evenly."""
    if cfg.batch_size % dist.world_size:
        raise ValueError(f"data.batch_size {cfg.batch_size} is the global batch and must divide evenly among "
                         f"{dist.world_size} processes")
    return cfg.batch_size // dist.world_size


def build_loaders(root: str, cfg: LoaderConfig, seed: int = 0, dist: Dist = SINGLE) -> dict[str, DataLoader]:
    """Train (shuffled by a generator seeded with `seed`, augmented, last partial batch dropped), val and test loaders.

    ``cfg.label_fraction`` < 1 drops the part masks of some train rows (see PartDataset);
    val and test keep all their masks. Under torchrun (`dist`), each process reads its share of
    every epoch through a DistributedSampler seeded with `seed` (the epoch set by the training
    loop), in batches of `per_process_batch`; val and test are read whole by every process and
    split by batch where they are used.
    """
    generator = torch.Generator().manual_seed(seed)
    pin = torch.cuda.is_available()
    train_set = PartDataset(
        root, "train", transform=train_transform(cfg.crop_size, scale=(cfg.min_crop_scale, 1.0)), limit=cfg.train_limit,
        label_fraction=cfg.label_fraction,
        label_seed=cfg.label_seed,
    )
    batch = per_process_batch(cfg, dist)
    drop_last = len(train_set) > cfg.batch_size
    sampler = (DistributedSampler(train_set, num_replicas=dist.world_size, rank=dist.rank, shuffle=True, seed=seed,
                                  drop_last=drop_last) if dist.enabled else None)
    loaders = {
        "train": DataLoader(
            train_set,
            batch_size=batch,
            shuffle=sampler is None,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=cfg.num_workers,
            generator=generator,
            pin_memory=pin,
        )
    }
    for split in ("val", "test"):
        dataset = PartDataset(root, split, transform=eval_transform(cfg.resize_size, cfg.crop_size))
        loaders[split] = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers, pin_memory=pin)
    return loaders
