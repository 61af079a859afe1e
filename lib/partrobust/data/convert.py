"""Shared machinery for converters from a raw dataset release to the prepared format.

A converter (Part-ImageNet, Cityscapes-Panoptic-Parts, PASCAL-Part, ...) does three things:

1. list its samples cheaply (reading annotation files, not pixels) and check the raw layout,
   raising ``RawDatasetError`` naming the missing or malformed file before any long work;
2. convert every sample in parallel with ``run_jobs``: each job writes
   ``images/<stem>.<ext>`` and ``masks/<stem>.png`` atomically and is skipped when both
   already exist (``sample_done``), so an interrupted conversion resumes and a rerun redoes
   nothing;
3. assign splits with ``stratified_split`` and call ``finish``, which writes the split CSVs and
   then ``metadata.json`` last (a folder without it is an unfinished conversion).

Converted files live in ``images/`` and ``masks/`` without a split sub-folder: the split CSVs
are the only source of truth for membership, so a different split seed reuses the files.
"""
from __future__ import annotations

import multiprocessing
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

import numpy as np
from tqdm.auto import tqdm

from .prepared import SPLITS, DatasetMetadata, PreparedDatasetError, write_metadata, write_split

J = TypeVar("J")
R = TypeVar("R")


class RawDatasetError(PreparedDatasetError):
    """The raw release is missing a file or folder, or a file lacks a field; names the path."""


def require_dir(path: str | os.PathLike, what: str) -> Path:
    """Returns `path` if it is a folder, else raises naming it and what was expected there."""
    path = Path(path)
    if not path.is_dir():
        raise RawDatasetError(f"{path}: missing folder ({what})")
    return path


def require_file(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise RawDatasetError(f"{path}: missing file ({what})")
    return path


def sample_paths(root: str | os.PathLike, stem: str, image_ext: str = ".png") -> tuple[Path, Path]:
    """(image path, mask path) of a converted sample under a prepared root."""
    root = Path(root)
    return root / "images" / f"{stem}{image_ext}", root / "masks" / f"{stem}.png"


def sample_done(root: str | os.PathLike, stem: str, image_ext: str = ".png") -> bool:
    """True when both files of a sample exist (writes are atomic, so they are complete)."""
    image, mask = sample_paths(root, stem, image_ext)
    return image.is_file() and mask.is_file()


def run_jobs(fn: Callable[[J], R], jobs: Sequence[J], workers: int = 1, desc: str = "converting", progress: bool = True) -> list[R]:
    """Applies `fn` to every job (in `workers` processes when > 1), in order, with a progress bar.

    `fn` must be a module-level function (picklable). Results come back in job order, so the
    output does not depend on the number of workers.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    with tqdm(total=len(jobs), desc=desc, disable=not progress, unit="img") as bar:
        if workers == 1 or len(jobs) <= 1:
            results = []
            for job in jobs:
                results.append(fn(job))
                bar.update(1)
            return results
        results = []
        with multiprocessing.get_context("spawn" if os.name == "nt" else "fork").Pool(workers) as pool:
            for result in pool.imap(fn, jobs, chunksize=max(1, min(16, len(jobs) // (4 * workers)))):
                results.append(result)
                bar.update(1)
        return results


def stratified_split(
    labels: Sequence[int],
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    rounding: str = "floor",
) -> list[str]:
    """Per-class shuffled 80/10/10 split, as the reference code does (decision 15).

    For each class in increasing label order, the indices of its samples (in input order) are
    shuffled with one ``numpy.random.RandomState(seed)``; the first ``n_val`` go to val, the next
    ``n_test`` to test, the rest to train. ``rounding="floor"`` uses ``int(f * n)`` (Part-ImageNet,
    Cityscapes), ``"round"`` Python's ``round`` (PASCAL-Part). Returns the split of every sample.
    """
    if rounding not in ("floor", "round"):
        raise ValueError(f"rounding must be 'floor' or 'round', got {rounding!r}")
    rng = np.random.RandomState(seed)
    labels_np = np.asarray(labels)
    splits = ["train"] * len(labels_np)
    for label in sorted(set(labels_np.tolist())):
        idx = np.flatnonzero(labels_np == label)
        rng.shuffle(idx)
        n = len(idx)
        n_val = int(val_fraction * n) if rounding == "floor" else round(val_fraction * n)
        n_test = int(test_fraction * n) if rounding == "floor" else round(test_fraction * n)
        for i in idx[:n_val]:
            splits[i] = "val"
        for i in idx[n_val : n_val + n_test]:
            splits[i] = "test"
    return splits


def finish(root: str | os.PathLike, meta: DatasetMetadata, rows: Iterable[Mapping[str, Any]], splits: Sequence[str]) -> DatasetMetadata:
    """Writes the split CSVs (rows grouped by `splits`) and then metadata.json, marking completion.

    Files whose content would not change are not rewritten, so a rerun keeps their mtimes. An
    empty split (only with tiny inputs) gets a header-only CSV and a warning.
    """
    rows = list(rows)
    if len(rows) != len(splits):
        raise ValueError(f"{len(rows)} rows but {len(splits)} split assignments")
    empty = [split for split in SPLITS if split not in splits]
    if empty:  # tiny inputs only: validate_prepared refuses such a dataset before training
        warnings.warn(f"{root}: split(s) {empty} are empty ({len(rows)} samples in all)", UserWarning, stacklevel=2)
    for split in SPLITS:
        write_split(root, split, [row for row, s in zip(rows, splits) if s == split])
    write_metadata(root, meta)
    return meta
