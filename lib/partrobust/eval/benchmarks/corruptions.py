"""Common corruptions (ImageNet-C procedure; paper Tables 2 and 7).

Each test image, resized and centre-cropped as the evaluation does, is corrupted by each of the 15
ImageNet-C corruption types at each of the 5 severities with ``imagecorruptions`` (the
``imagecorruptions-imaug`` release, which runs on numpy 2), and saved as uint8 PNG: the uint8
round trip of ImageNet-C. Its part mask is kept unchanged (the corruptions are photometric or
local blurs, not geometric moves of the object). ``imagecorruptions`` draws from numpy's global
RNG; it is seeded per image from (seed, row, corruption, severity), so a benchmark does not depend
on the number of workers.

Rows: ``corruption``, ``severity`` and ``source_index`` (the test row). Metrics: the mean over
every type and severity (``common_corruption_accuracy``, Table 2), per type
(``common_corruption_<type>_accuracy``, Table 7), per severity (``..._severity<k>_accuracy``) and
per type and severity (``..._<type>_severity<k>_accuracy``, the severity curves).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .base import Benchmark, BenchmarkSettings, Source, accuracy_rows, sample_exists, write_sample

CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
"""The 15 ImageNet-C types in the standard order (the order of Table 7's rows)."""
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
OWN_SEED = ("impulse_noise", "glass_blur")
"""Corruptions that take a ``seed`` argument instead of drawing from numpy's global generator."""
MIN_SIZE = 32
METRIC = "common_corruption_accuracy"


def corrupt_image(image: np.ndarray, corruption: str, severity: int, seed: int) -> np.ndarray:
    """`image` (uint8 (H,W,3)) corrupted by `corruption` at `severity` (1-5), as uint8 of the same shape."""
    from imagecorruptions import corrupt

    if corruption not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {corruption!r}; known: {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity}")
    if min(image.shape[:2]) < MIN_SIZE:
        raise ValueError(f"imagecorruptions needs images of at least {MIN_SIZE} x {MIN_SIZE} pixels, got {image.shape[:2]}")
    kwargs = {"seed": seed % 2**32} if corruption in OWN_SEED else {}  # these draw from their own generator
    state = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        out = corrupt(image, corruption_name=corruption, severity=severity, **kwargs)
    finally:
        np.random.set_state(state)
    out = np.clip(np.rint(np.asarray(out, dtype=np.float64)), 0, 255).astype(np.uint8)
    if out.shape != image.shape:  # some corruptions return (H,W) for tiny or grey inputs
        out = np.broadcast_to(out.reshape(*image.shape[:2], -1), image.shape).copy()
    return out


def _seed(seed: int, index: int, corruption: str, severity: int) -> int:
    return int(np.random.SeedSequence([seed, index, CORRUPTIONS.index(corruption), severity]).generate_state(1)[0])


class CommonCorruptions(Benchmark):
    name = "common_corruption"
    description = "ImageNet-C: 15 corruption types x 5 severities of each test image (imagecorruptions)"

    def check(self, source: Source, settings: BenchmarkSettings) -> None:
        self.check_options(settings.options)
        if settings.crop_size < MIN_SIZE:
            raise ValueError(f"data.crop_size: the corruptions need images of at least {MIN_SIZE} px (imagecorruptions), "
                             f"got {settings.crop_size}")

    def check_options(self, options: dict[str, Any]) -> None:
        unknown = sorted(set(options.get("corruptions") or CORRUPTIONS) - set(CORRUPTIONS))
        if unknown:
            raise ValueError(f"eval.corruptions: unknown corruption(s) {unknown}; known: {', '.join(CORRUPTIONS)}")
        bad = sorted(set(options.get("severities") or SEVERITIES) - set(SEVERITIES))
        if bad:
            raise ValueError(f"eval.corruption_severities: {bad} not in {list(SEVERITIES)}")

    def jobs(self, source: Source, settings: BenchmarkSettings, dst: Path) -> list[Any]:
        corruptions = list(settings.options.get("corruptions") or CORRUPTIONS)
        severities = list(settings.options.get("severities") or SEVERITIES)
        return [(source.item(i), settings, dst, corruptions, severities) for i in range(len(source.rows))]

    @staticmethod
    def work(job: Any) -> list[dict[str, Any]]:
        item, settings, dst, corruptions, severities = job
        clean = None
        rows = []
        for corruption in corruptions:
            for severity in severities:
                stem = f"{corruption}/{severity}/{item.index:06d}"
                if not sample_exists(dst, stem):
                    if clean is None:
                        clean = item.load(settings)
                    image, mask = clean
                    corrupted = corrupt_image(image, corruption, severity, _seed(settings.seed, item.index, corruption, severity))
                    write_sample(dst, stem, corrupted, mask, item.num_parts)
                rows.append({"image": f"images/{stem}.png", "mask": f"masks/{stem}.png", "label": item.label,
                             "corruption": corruption, "severity": severity, "source_index": item.index})
        return rows

    def score(self, rows: pd.DataFrame, pred: np.ndarray) -> list[dict[str, Any]]:
        hit = pred == rows["label"].to_numpy()
        types = rows["corruption"].nunique()
        note = f"{types} corruption types x {rows['severity'].nunique()} severities of {rows['source_index'].nunique()} test images"
        out = accuracy_rows(rows, hit, METRIC, note=note)
        out += accuracy_rows(rows, hit, METRIC, ["corruption"], note, lambda m, k: f"common_corruption_{k[0]}_accuracy")
        out += accuracy_rows(rows, hit, METRIC, ["severity"], note, lambda m, k: f"common_corruption_severity{k[0]}_accuracy")
        out += accuracy_rows(rows, hit, METRIC, ["corruption", "severity"], note,
                             lambda m, k: f"common_corruption_{k[0]}_severity{k[1]}_accuracy")
        return out
