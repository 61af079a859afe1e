"""DataLoaders over a prepared dataset, with seeded shuffling so training can resume exactly.

With workers (``num_workers`` > 0) the loaders keep their worker processes from one epoch to the
next and prefetch ``prefetch_factor`` batches each; ``preload`` decodes a split into memory in the
main process before its workers are forked, so they share one copy of the decoded images instead
of decoding PNGs every epoch. Neither changes a batch: the train loader reseeds its persistent
workers every epoch as fresh workers would be seeded (`PersistentTrainLoader`).
"""
from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, Sampler, get_worker_info
from torch.utils.data._utils.worker import _generate_state

from ..core.config import Section
from ..core.distributed import SINGLE, Dist
from .dataset import PartDataset
from .transforms import eval_transform, train_transform

PRELOAD_MEMORY_FRACTION = 0.25
"""``preload: auto`` decodes a split into memory when it takes less than this share of the available memory."""


class LoaderConfig(Section):
    """How images are cropped and batched (paper: crop 224, resize 256 at test time, batch 128)."""

    crop_size: int = Field(224, ge=1, description="training crop side and test centre-crop side")
    resize_size: int = Field(256, ge=1, description="test-time shorter-side resize before the centre crop")
    min_crop_scale: float = Field(0.08, gt=0, le=1, description="RandomResizedCrop's lower area scale")
    batch_size: int = Field(128, ge=1, description="training batch size")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes (the same batches, except that training's random augmentations draw from per-worker streams with > 0 workers)")
    prefetch_factor: int = Field(2, ge=1, description="batches each worker prepares ahead, with num_workers > 0 "
                                                       "(does not change results)")
    preload: bool | Literal["auto"] = Field(
        "auto", description="decode each split into memory before the workers start, shared by them (does not change "
                            "results): true, false, or auto (with workers, when it takes under a quarter of the "
                            "available memory)")
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


def should_preload(setting: bool | Literal["auto"], num_workers: int, estimated_bytes: int, available_bytes: int) -> bool:
    """Whether to decode a split into memory before its loader's workers start (``data.preload``).

    true and false decide alone. "auto" preloads only for workers (without them the main
    process's cache fills during the first epoch anyway), and only when the decoded split
    (`estimated_bytes`) takes less than `PRELOAD_MEMORY_FRACTION` of `available_bytes`.
    """
    if isinstance(setting, bool):
        return setting
    return num_workers > 0 and estimated_bytes < PRELOAD_MEMORY_FRACTION * available_bytes


def available_memory() -> int:
    """Bytes of memory this process can still take: /proc/meminfo's MemAvailable (else the free
    pages), capped by the memory limits of its cgroup (v2) and the cgroups above it (containers,
    Slurm jobs); 0 when unknown."""
    try:
        available = int(Path("/proc/meminfo").read_text().split("MemAvailable:")[1].split()[0]) * 1024
    except (OSError, IndexError, ValueError):
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, OSError, ValueError):
            return 0
    return min([available, *_cgroup_headroom()])


def _cgroup_headroom() -> list[int]:
    """Free bytes under each memory limit of this process's cgroup v2 and its ancestors."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    group = next((line[3:] for line in lines if line.startswith("0::")), None)
    if group is None:
        return []
    root = Path("/sys/fs/cgroup")
    folder, room = root / group.strip("/"), []
    while True:
        try:
            limit = (folder / "memory.max").read_text().strip()
            if limit != "max":
                room.append(int(limit) - int((folder / "memory.current").read_text()))
        except (OSError, ValueError):
            pass
        if folder == root or root not in folder.parents:
            return room
        folder = folder.parent


def _prepare(dataset: PartDataset, cfg: LoaderConfig, dist: Dist, progress: bool) -> bool:
    """Preloads `dataset` if `should_preload` says so (returns whether it did). With workers and no
    preload, its cache is turned off: each persistent worker would fill a copy of its own."""
    estimate = dataset.decoded_bytes()
    available = available_memory() // dist.world_size  # each process holds its own copy
    if should_preload(cfg.preload, cfg.num_workers, estimate, available):
        dataset.preload(progress=progress and dist.is_main, workers=cfg.num_workers)
        return True
    if cfg.num_workers > 0:
        dataset.cache = False
        if cfg.preload == "auto" and dist.is_main:
            print(f"[partrobust] data.preload auto: not decoding the {dataset.split} split into memory "
                  f"(~{estimate / 2**30:.1f} GiB, over {PRELOAD_MEMORY_FRACTION:.0%} of the {available / 2**30:.1f} GiB "
                  "available); the workers decode its images every epoch", flush=True)
    return False


def _worker_options(cfg: LoaderConfig, preloaded: bool) -> dict[str, Any]:
    """DataLoader options for ``cfg.num_workers`` workers: persistent, prefetching, and forked where the
    dataset was preloaded (so they share its decoded images rather than receive pickled copies)."""
    if cfg.num_workers == 0:
        return {"num_workers": 0}
    return {"num_workers": cfg.num_workers, "persistent_workers": True, "prefetch_factor": cfg.prefetch_factor,
            "multiprocessing_context": "fork" if preloaded and sys.platform == "linux" else None}


def build_loaders(root: str, cfg: LoaderConfig, seed: int = 0, dist: Dist = SINGLE,
                  progress: bool = False) -> dict[str, DataLoader]:
    """Train (shuffled by a generator seeded with `seed`, augmented, last partial batch dropped), val and test loaders.

    ``cfg.label_fraction`` < 1 drops the part masks of some train rows (see PartDataset);
    val and test keep all their masks. Under torchrun (`dist`), each process reads its share of
    every epoch through a DistributedSampler seeded with `seed` (the epoch set by the training
    loop), in batches of `per_process_batch`; val and test are read whole by every process and
    split by batch where they are used. Each split is preloaded (``cfg.preload``, a progress bar
    with `progress`) here, before any worker starts.
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
    workers = _worker_options(cfg, _prepare(train_set, cfg, dist, progress))
    loaders = {
        "train": PersistentTrainLoader(
            train_set,
            batch_size=batch,
            shuffle=sampler is None,
            sampler=sampler,
            drop_last=drop_last,
            generator=generator,
            pin_memory=pin,
            **workers,
        )
    }
    for split in ("val", "test"):
        dataset = PartDataset(root, split, transform=eval_transform(cfg.resize_size, cfg.crop_size))
        workers = _worker_options(cfg, _prepare(dataset, cfg, dist, progress))
        loaders[split] = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, pin_memory=pin, **workers)
    return loaders


class PersistentTrainLoader(DataLoader):
    """A DataLoader whose persistent workers yield, every epoch, the batches fresh workers would.

    Without persistent workers, every epoch's iterator draws a base seed from `generator` (just
    before the sampler's shuffle) and seeds worker w's random, torch and numpy RNGs with it; the
    random augmentations depend on those seeds. Persistent workers are seeded once, so from the
    second epoch on the shuffle and the augmentations would change, and a run resumed from a
    checkpoint (whose workers start afresh) would not repeat the uninterrupted one. This loader
    draws that seed itself for every later epoch, at the same point of the generator's stream, and
    its workers reseed from it when they fetch their first batch of the epoch (`_EpochBatch`).
    Without persistent workers it is a plain DataLoader.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._epochs = _EpochBatches(self.batch_sampler)

    @property
    def _index_sampler(self) -> _EpochBatches:
        """Where DataLoader iterators take the batches of indices from (DataLoader's own: batch_sampler)."""
        return self._epochs

    def __iter__(self) -> Iterator[Any]:
        if self._iterator is not None:  # the persistent workers' next epoch
            self._epochs.epoch += 1
            self._epochs.seed = int(torch.empty((), dtype=torch.int64).random_(generator=self.generator).item())
        return super().__iter__()


class _EpochBatches(Sampler):
    """The batches of `batches`, tagged with the current epoch of a `PersistentTrainLoader`."""

    def __init__(self, batches: BatchSampler) -> None:
        self.batches = batches
        self.epoch = 0
        self.seed: int | None = None  # None: the first epoch, whose seed torch gave the workers at their start

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[_EpochBatch]:
        epoch, seed = self.epoch, self.seed
        for indices in self.batches:
            yield _EpochBatch(indices, epoch, seed)


_worker_epoch: int | None = None
"""In a DataLoader worker: the last epoch of a `PersistentTrainLoader` it reseeded itself for."""


@dataclass(frozen=True)
class _EpochBatch:
    """One batch's indices and its epoch; a worker iterates it to fetch the samples, and the
    first batch of a new epoch first reseeds the worker as torch seeds a new one
    (``torch.utils.data._utils.worker._worker_loop``)."""

    indices: list[int]
    epoch: int
    seed: int | None

    def __iter__(self) -> Iterator[int]:
        global _worker_epoch
        worker = get_worker_info()
        if worker is not None and self.seed is not None and self.epoch != _worker_epoch:
            _worker_epoch = self.epoch
            random.seed(self.seed + worker.id)
            torch.manual_seed(self.seed + worker.id)
            np.random.seed(_generate_state(self.seed, worker.id))
        return iter(self.indices)
