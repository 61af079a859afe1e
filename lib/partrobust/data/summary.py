"""Summary tables of a prepared dataset: images per split and class, parts per class, pixels per part."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .prepared import SPLITS, load_metadata, read_mask, read_split


def images_per_class(root: str | os.PathLike) -> pd.DataFrame:
    """Rows = classes, columns = splits (+ total): number of images."""
    meta = load_metadata(root)
    counts = {split: read_split(root, split)["label"].value_counts() for split in SPLITS}
    table = pd.DataFrame(counts).reindex(range(meta.num_classes)).fillna(0).astype(int)
    table.index = pd.Index(meta.classes, name="class")
    table["total"] = table.sum(axis=1)
    return table


def part_pixels(root: str | os.PathLike, split: str = "train", limit: int | None = None, progress: bool = False) -> pd.DataFrame:
    """One row per part: id, name, class, share of pixels and of images it appears in (on `split`)."""
    meta = load_metadata(root)
    rows = read_split(root, split)
    if limit is not None:
        rows = rows.iloc[:limit]
    pixels = np.zeros(meta.num_parts + 1, dtype=np.int64)
    present = np.zeros(meta.num_parts + 1, dtype=np.int64)
    for rel in tqdm(rows["mask"], desc=f"masks ({split})", disable=not progress):
        counts = np.bincount(read_mask(Path(root) / rel).ravel(), minlength=meta.num_parts + 1)
        pixels += counts
        present += counts > 0
    total = pixels.sum()
    table = pd.DataFrame(
        {
            "part_id": range(meta.num_parts + 1),
            "name": ["background"] + [p.name for p in meta.parts],
            "class": [""] + [p.class_name for p in meta.parts],
            "pixel_share_%": 100.0 * pixels / max(total, 1),
            "images_with_part_%": 100.0 * present / max(len(rows), 1),
        }
    )
    return table.set_index("part_id")


def parts_per_class(root: str | os.PathLike) -> pd.Series:
    """Number of part classes of each object class."""
    meta = load_metadata(root)
    counts = pd.Series(0, index=pd.Index(meta.classes, name="class"), name="parts")
    for part in meta.parts:
        counts[part.class_name] += 1
    return counts
