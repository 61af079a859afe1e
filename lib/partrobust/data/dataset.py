"""PartDataset: a torch Dataset over one split of a prepared dataset (see `prepared`)."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from .prepared import UNLABELLED, DatasetMetadata, PreparedDatasetError, read_image, read_mask, read_split, validate_prepared
from .transforms import JointTransform, to_float_and_long


def labelled_rows(n: int, label_fraction: float = 1.0, label_seed: int = 0) -> np.ndarray:
    """Which of `n` rows keep their part mask: all but the first ``int((1 - f) * n)`` of a
    ``RandomState(label_seed)`` permutation (the reference's ``seg_drop_idx``)."""
    if not 0.0 <= label_fraction <= 1.0:
        raise ValueError(f"label_fraction must be in [0, 1], got {label_fraction}")
    labelled = np.ones(n, dtype=bool)
    n_drop = int((1.0 - label_fraction) * n)
    if n_drop:
        labelled[np.random.RandomState(label_seed).permutation(n)[:n_drop]] = False
    return labelled


class PartDataset(Dataset):
    """Samples ``(image float32 (3,H,W) in [0,1], mask int64 (H,W), label int)`` of one split.

    Metadata and split file are checked at construction (errors name the file). Decoded
    samples are kept in memory as uint8 tensors (mask uint8, or int16/int32 for many parts)
    when ``cache`` is true, so later epochs skip PNG decoding; ``preload()`` fills the cache
    up front (do it before forking DataLoader workers so they share it; `decoded_bytes`
    estimates its size). ``transform`` is a joint transform from `transforms` (called with
    tv_tensors.Image / tv_tensors.Mask); without one the full-size image is returned as float.
    ``limit`` keeps the first n rows.

    Fewer-labels ablation (paper Fig. 10, reference ``--semi-label``): with ``label_fraction``
    f < 1, a permutation of the rows (after ``limit``) drawn from
    ``numpy.random.RandomState(label_seed)`` picks its first ``int((1 - f) * N)`` rows, whose
    masks are replaced, after the transform, by a mask of the same shape filled with
    ``UNLABELLED`` (-1); the losses then skip their segmentation term. ``labelled`` (bool
    array, one entry per row) says which rows keep their mask. The count uses the reference's
    float formula as is, so e.g. f=0.9 of N=10 drops int(0.999...) = 0 rows.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        transform: JointTransform | None = None,
        cache: bool = True,
        limit: int | None = None,
        label_fraction: float = 1.0,
        label_seed: int = 0,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.metadata: DatasetMetadata = validate_prepared(self.root, splits=(split,))
        df = read_split(self.root, split)
        if limit is not None:
            if limit < 0:
                raise ValueError(f"limit must be >= 0 or None, got {limit}")
            df = df.iloc[:limit]
        self.images: list[str] = df["image"].tolist()
        self.masks: list[str] = df["mask"].tolist()
        self.labels: list[int] = [int(x) for x in df["label"]]
        self.labelled: np.ndarray = labelled_rows(len(self.labels), label_fraction, label_seed)
        self.label_fraction = float(label_fraction)
        self.label_seed = int(label_seed)
        self.transform = transform
        self._to_tensor = to_float_and_long()
        self._cache: list[tuple[torch.Tensor, torch.Tensor] | None] | None = (
            [None] * len(self.labels) if cache else None
        )
        k = self.metadata.num_parts
        self._mask_dtype = np.uint8 if k <= 255 else (np.int16 if k <= 32767 else np.int32)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def class_names(self) -> list[str]:
        return self.metadata.classes

    @property
    def num_classes(self) -> int:
        return self.metadata.num_classes

    @property
    def num_parts(self) -> int:
        return self.metadata.num_parts

    def _decode(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Read the files of sample `index`: image uint8 (3,H,W), mask (H,W) compact int."""
        image_path = self.root / self.images[index]
        mask_path = self.root / self.masks[index]
        image = read_image(image_path)
        mask = read_mask(mask_path)
        if mask.shape != image.shape[:2]:
            raise PreparedDatasetError(
                f"{mask_path}: mask size {mask.shape} differs from image {image_path} size {image.shape[:2]}"
            )
        k = self.metadata.num_parts
        top = int(mask.max()) if mask.size else 0
        if top > k:
            raise PreparedDatasetError(
                f"{mask_path}: mask value {top} exceeds the number of parts K={k} "
                f"(metadata {self.root / 'metadata.json'})"
            )
        image_t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        mask_t = torch.from_numpy(mask.astype(self._mask_dtype))  # values 0..K checked above: they fit
        return image_t, mask_t

    def _raw(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._cache is None:
            return self._decode(index)
        item = self._cache[index]
        if item is None:
            item = self._decode(index)
            self._cache[index] = item
        return item

    @property
    def cache(self) -> bool:
        """Whether decoded samples are kept in memory; setting it false drops them (DataLoader
        workers that did not inherit a preloaded cache would each keep a copy of their own)."""
        return self._cache is not None

    @cache.setter
    def cache(self, keep: bool) -> None:
        if keep != self.cache:
            self._cache = [None] * len(self) if keep else None

    def decoded_bytes(self, sample: int = 8) -> int:
        """Estimated size of the whole split decoded (uint8 image + mask): the mean of the first
        `sample` samples times the row count (those samples are decoded, and cached if caching)."""
        n = min(sample, len(self))
        sampled = sum(t.numel() * t.element_size() for i in range(n) for t in self._raw(i))
        return sampled * len(self) // n if n else 0

    def preload(self, progress: bool = False, workers: int = 1) -> "PartDataset":
        """Decode every sample not yet cached into the cache now, in `workers` threads (PNG decoding
        releases the GIL), with a progress bar only if `progress`; no-op without cache; returns self."""
        if self._cache is None:
            return self
        from tqdm.auto import tqdm

        missing = [i for i, item in enumerate(self._cache) if item is None]
        with ThreadPoolExecutor(max(1, workers)) as pool:  # its threads end before any DataLoader forks
            for _ in tqdm(pool.map(self._raw, missing), total=len(self), initial=len(self) - len(missing),
                          desc=f"decode {self.split}", disable=not progress):
                pass
        return self

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index %= len(self)
        image, mask = self._raw(index)
        transform = self.transform if self.transform is not None else self._to_tensor
        out_image, out_mask = transform(tv_tensors.Image(image), tv_tensors.Mask(mask))
        out_mask = out_mask.as_subclass(torch.Tensor)
        if not self.labelled[index]:
            signed = out_mask.dtype if out_mask.is_signed() else torch.int64  # -1 must fit
            out_mask = torch.full(out_mask.shape, UNLABELLED, dtype=signed)
        return out_image.as_subclass(torch.Tensor), out_mask, self.labels[index]
