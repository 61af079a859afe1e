"""What every non-adversarial benchmark shares: its settings, its folder, preprocessing and scoring.

A benchmark is generated from the test split of a prepared dataset and is itself a prepared
dataset with one split (``test.csv``, ``images/``, ``masks/``, ``metadata.json``), so it loads as
a `PartDataset` and a reader can open every image. Its images are already preprocessed the way
the evaluation preprocesses test images (resize the shorter side, centre-crop; uint8), so the
evaluation reads them as they are. Extra columns of ``test.csv`` say what each image is (the
corruption and severity, the background's class, the texture's class).

Folder: ``<data root>-benchmarks/<benchmark>-<8 hex digits>/``, the digits hashing everything the
images depend on (`BenchmarkSettings`, the benchmark's version, the source's fingerprint).
``benchmark.json`` is written last and marks it complete; a complete folder is reused untouched,
an interrupted one is finished (each image is written atomically and skipped when it exists).
"""
from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from ...core.fileio import atomic_write_text
from ...data.convert import run_jobs
from ...data.prepared import (
    METADATA_FILE,
    DatasetMetadata,
    PreparedDatasetError,
    load_metadata,
    read_image,
    read_mask,
    read_split,
    write_image,
    write_mask,
    write_metadata,
    write_split,
)
from ...data.variants import source_fingerprint

COMPLETE_FILE = "benchmark.json"
SPLIT = "test"


@dataclass(frozen=True)
class BenchmarkSettings:
    """Everything a benchmark's images depend on besides the source dataset and the benchmark's code."""

    resize_size: int
    crop_size: int
    limit: int | None = None
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    def key(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), sort_keys=True, default=str))


def preprocess(image: np.ndarray, mask: np.ndarray, resize_size: int, crop_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The evaluation's preprocessing on uint8 arrays: resize the shorter side (antialiased; masks
    nearest), centre-crop. Returns (uint8 (crop,crop,3), mask (crop,crop)); the test loader gives
    exactly this image divided by 255."""
    ops = v2.Compose([v2.Resize(resize_size, antialias=True), v2.CenterCrop(crop_size)])
    image_t, mask_t = ops(tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))),
                          tv_tensors.Mask(torch.from_numpy(mask.astype(np.int64))))
    return image_t.permute(1, 2, 0).numpy().copy(), mask_t.numpy().astype(mask.dtype)


@dataclass(frozen=True)
class Source:
    """The test rows a benchmark is generated from (the first ``limit``), with where they live."""

    root: Path
    metadata: DatasetMetadata
    rows: pd.DataFrame

    def item(self, index: int) -> "Item":
        """Row `index` as a small picklable work item."""
        row = self.rows.iloc[index]
        return Item(self.root, index, str(row["image"]), str(row["mask"]), int(row["label"]), self.metadata.num_parts)


@dataclass(frozen=True)
class Item:
    """One source test image: where it is, its row, its class."""

    root: Path
    index: int
    image: str
    mask: str
    label: int
    num_parts: int

    def load(self, settings: BenchmarkSettings) -> tuple[np.ndarray, np.ndarray]:
        """Preprocessed (image uint8, mask)."""
        image, mask = read_image(self.root / self.image), read_mask(self.root / self.mask)
        return preprocess(image, mask, settings.resize_size, settings.crop_size)


def load_source(root: str | os.PathLike, limit: int | None) -> Source:
    root = Path(root)
    if not (root / METADATA_FILE).is_file():
        raise PreparedDatasetError(f"{root}: no prepared dataset here (no {METADATA_FILE}); run notebook 00 first")
    rows = read_split(root, SPLIT)
    if limit is not None:
        rows = rows.iloc[:limit]
    if rows.empty:
        raise PreparedDatasetError(f"{root}: the {SPLIT} split is empty: no benchmark can be made from it")
    return Source(root, load_metadata(root), rows.reset_index(drop=True))


def item_rng(seed: int, *keys: int) -> np.random.Generator:
    """A generator for one image of a benchmark: the same whatever order or process draws it."""
    return np.random.default_rng([seed, *keys])


def write_sample(dst: Path, stem: str, image: np.ndarray, mask: np.ndarray, num_parts: int) -> tuple[str, str]:
    """Writes one benchmark image and its mask (atomically); returns their paths relative to `dst`."""
    rel_image, rel_mask = f"images/{stem}.png", f"masks/{stem}.png"
    write_image(dst / rel_image, image)
    write_mask(dst / rel_mask, mask, num_parts)
    return rel_image, rel_mask


def sample_exists(dst: Path, stem: str) -> bool:
    return (dst / f"images/{stem}.png").is_file() and (dst / f"masks/{stem}.png").is_file()


class Benchmark(ABC):
    """One benchmark: how its images are made from a `Source` and how predictions on them are scored."""

    name: str
    version: int = 1
    description: str = ""
    has_masks: bool = True
    """False when the images come without part masks (then no pixel accuracy)."""

    @abstractmethod
    def jobs(self, source: Source, settings: BenchmarkSettings, dst: Path) -> list[Any]:
        """Picklable work units; `work` turns each into rows of ``test.csv``."""

    @staticmethod
    @abstractmethod
    def work(job: Any) -> list[dict[str, Any]]:
        """Makes (or finds) the images of one job; returns their rows (image, mask, label, extra columns)."""

    @abstractmethod
    def score(self, rows: pd.DataFrame, pred: np.ndarray) -> list[dict[str, Any]]:
        """Result rows (``metric``, ``value`` in %, ``n``, ``note``) from the predicted classes of every row."""

    def check_options(self, options: dict[str, Any]) -> None:
        """Raises ValueError naming a bad option before any image is made (default: nothing to check)."""

    def check(self, source: Source, settings: BenchmarkSettings) -> None:
        """Raises an error naming the option or file if this benchmark cannot be made from `source` (cheap)."""
        self.check_options(settings.options)


def benchmark_folder(benchmark: Benchmark, source_root: str | os.PathLike, settings: BenchmarkSettings) -> Path:
    """``<source root>-benchmarks/<name>-<hash>``: the hash covers the settings, version and source."""
    return _folder(Path(source_root), _claim(benchmark, Path(source_root), settings))


def _folder(source_root: Path, claim: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(claim, sort_keys=True).encode()).hexdigest()[:8]
    return source_root.with_name(f"{source_root.name}-benchmarks") / f"{claim['benchmark']}-{digest}"


def _claim(benchmark: Benchmark, source_root: Path, settings: BenchmarkSettings) -> dict[str, Any]:
    return {"benchmark": benchmark.name, "version": benchmark.version, "settings": settings.key(),
            "source_fingerprint": source_fingerprint(source_root)}


def is_complete(folder: Path) -> bool:
    return (folder / COMPLETE_FILE).is_file()


def generate(benchmark: Benchmark, source_root: str | os.PathLike, settings: BenchmarkSettings, workers: int = 1,
             progress: bool = True) -> Path:
    """Makes the benchmark's folder from the source's test split (or returns it when complete)."""
    source = load_source(source_root, settings.limit)
    benchmark.check(source, settings)
    claim = _claim(benchmark, source.root, settings)
    dst = _folder(source.root, claim)
    if is_complete(dst):
        return dst
    (dst / "images").mkdir(parents=True, exist_ok=True)
    (dst / "masks").mkdir(parents=True, exist_ok=True)
    jobs = benchmark.jobs(source, settings, dst)
    chunks = run_jobs(type(benchmark).work, jobs, workers, desc=f"{benchmark.name} -> {dst}", progress=progress)
    rows = [row for chunk in chunks for row in chunk]
    write_split(dst, SPLIT, rows)
    meta = source.metadata
    info = {"benchmark": benchmark.name, "description": benchmark.description, "has_masks": benchmark.has_masks,
            "source": str(source.root.resolve()), "source_name": meta.name, **claim}
    write_metadata(dst, DatasetMetadata(name=f"{meta.name}-{benchmark.name}", classes=list(meta.classes),
                                        parts=list(meta.parts), info=info))
    atomic_write_text(dst / COMPLETE_FILE, json.dumps(info, indent=2, sort_keys=True))  # last: marks it complete
    return dst


def accuracy_rows(rows: pd.DataFrame, hit: np.ndarray, metric: str, by: Sequence[str] = (), note: str = "",
                  name=lambda metric, keys: metric) -> list[dict[str, Any]]:
    """Accuracy (%) of `hit` over all rows (``metric``) or per group of `by` (``name(metric, keys)``)."""
    if not by:
        return [{"metric": metric, "value": 100.0 * float(np.mean(hit)), "n": len(hit), "note": note}]
    frame = rows.assign(_hit=hit)
    out = []
    for keys, group in frame.groupby(list(by), sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        out.append({"metric": name(metric, keys), "value": 100.0 * float(group["_hit"].mean()), "n": len(group), "note": note})
    return out
