"""Non-adversarial robustness benchmarks (paper Sec. 4 and App. D; Tables 2-4, 6, 7, 16; Fig. 8).

The paper's authors downloaded pre-generated benchmarks and never published how they were made;
here each one is generated from a prepared dataset's test split by code in this package, cached
beside the dataset, and scored by the evaluator a run's ``eval.benchmarks`` names:

* ``common_corruption`` (`corruptions`): ImageNet-C's 15 corruptions x 5 severities;
* ``spurious_correlation`` (`spurious`): each object on the background of another class
  ("mixed-rand"), or ImageNet-9's Only-FG / Only-BG-T when ``eval.imagenet9_root`` is given;
* ``shape_vs_texture`` (`cue_conflict`): each object's shape with another class's texture (AdaIN
  with local weights, or the built-in generator on the synthetic data).

``BENCHMARKS`` is the evaluator registry (name -> constructor taking the benchmark's options), as
models and attacks have theirs; `prepare_benchmark` makes a benchmark's folder and `evaluate_benchmarks`
scores a model on prepared folders (a run's: `run_benchmark_folders`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ...core.registry import Registry
from ...data.dataset import PartDataset
from ...data.prepared import read_split
from ..outcomes import pixel_accuracy, predict
from .base import COMPLETE_FILE, SPLIT, Benchmark, BenchmarkSettings, benchmark_folder, generate, is_complete, load_source
from .corruptions import CORRUPTIONS, SEVERITIES, CommonCorruptions
from .cue_conflict import ShapeVsTexture
from .spurious import ImageNet9MixedRand, SpuriousCorrelation

BENCHMARKS: Registry[Benchmark] = Registry("benchmark")


@BENCHMARKS.register("common_corruption")
def _common_corruption(options: dict[str, Any]) -> Benchmark:
    return CommonCorruptions()


@BENCHMARKS.register("spurious_correlation")
def _spurious_correlation(options: dict[str, Any]) -> Benchmark:
    return ImageNet9MixedRand() if options.get("imagenet9_root") else SpuriousCorrelation()


@BENCHMARKS.register("shape_vs_texture")
def _shape_vs_texture(options: dict[str, Any]) -> Benchmark:
    return ShapeVsTexture()


def build_benchmark(name: str, options: dict[str, Any] | None = None) -> Benchmark:
    return BENCHMARKS.build(name, dict(options or {}))


def run_benchmark_settings(config: Any) -> BenchmarkSettings:
    """How a run's benchmarks are made (a `RunConfig`): from the first ``eval.limit`` test images of
    ``data.root``, preprocessed as the test split is."""
    data, cfg = config.data, config.eval
    return BenchmarkSettings(resize_size=data.resize_size, crop_size=data.crop_size, limit=cfg.limit,
                             seed=cfg.benchmark_seed, options=cfg.benchmark_options())


def run_benchmark_folders(config: Any) -> dict[str, Path]:
    """Benchmark name -> the folder a run of `config` reads its images from (made when the run evaluates)."""
    settings = run_benchmark_settings(config)
    return {name: benchmark_folder(build_benchmark(name, settings.options), config.data.root, settings)
            for name in config.eval.benchmarks}


def check_benchmarks(names: Sequence[str], source_root: str | Path, settings: BenchmarkSettings) -> None:
    """Raises an error naming the option or file if a named benchmark cannot be made (before any training)."""
    source = load_source(source_root, settings.limit)
    for name in names:
        build_benchmark(name, settings.options).check(source, settings)


def prepare_benchmark(name: str, source_root: str | Path, settings: BenchmarkSettings, workers: int = 1,
                      progress: bool = True) -> Path:
    """The benchmark's folder, generated from `source_root`'s test split unless it is already complete."""
    return generate(build_benchmark(name, settings.options), source_root, settings, workers, progress)


def benchmark_rows(folder: str | Path) -> pd.DataFrame:
    """The rows (``test.csv``) of a complete benchmark folder."""
    folder = Path(folder)
    if not is_complete(folder):
        raise FileNotFoundError(f"{folder}: not a complete benchmark (no {COMPLETE_FILE}); generate it first")
    return read_split(folder, SPLIT)


@torch.no_grad()
def benchmark_predictions(model: nn.Module, folder: str | Path, batch_size: int = 128, num_workers: int = 0,
                          progress: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Predicted class of every benchmark image and, for part models on images with masks, the
    pixel accuracy of the predicted part mask (eval mode, fp32, batch by batch)."""
    dataset = PartDataset(folder, SPLIT, cache=False)
    has_masks = bool(dataset.metadata.info.get("has_masks", True))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    preds, pixels = [], []
    for x, masks, _ in tqdm(loader, desc=Path(folder).name, disable=not progress, leave=False):
        pred, pred_masks = predict(model, x, batch_size)
        preds.append(pred.numpy())
        if pred_masks is not None and has_masks:
            pixels.append(pixel_accuracy(pred_masks, masks).numpy())
    return np.concatenate(preds), (np.concatenate(pixels) if pixels else None)


def score_benchmark(name: str, folder: str | Path, pred: np.ndarray, pixel: np.ndarray | None = None,
                    options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Result rows of benchmark `name` from the predictions on its folder's images."""
    rows = benchmark_rows(folder)
    if len(pred) != len(rows):
        raise ValueError(f"{folder}: {len(rows)} images but {len(pred)} predictions")
    out = build_benchmark(name, options).score(rows, np.asarray(pred))
    if pixel is not None:
        out.append({"metric": f"{name}_pixel_accuracy", "value": 100.0 * float(np.mean(pixel)), "n": len(pixel),
                    "note": out[0]["note"]})
    return out


def evaluate_benchmarks(model: nn.Module, folders: dict[str, Path], options: dict[str, Any], batch_size: int = 128,
                        progress: bool = True) -> list[dict[str, Any]]:
    """Scores `model` on each prepared benchmark (name -> folder, `prepare_benchmark`): tidy metric rows."""
    rows = []
    for name, folder in folders.items():
        pred, pixel = benchmark_predictions(model, folder, batch_size, progress=progress)
        rows += score_benchmark(name, folder, pred, pixel, options)
    return rows


__all__ = ["BENCHMARKS", "Benchmark", "BenchmarkSettings", "CORRUPTIONS", "SEVERITIES",
           "benchmark_folder", "benchmark_predictions", "check_benchmarks", "run_benchmark_folders", "run_benchmark_settings", "benchmark_rows", "build_benchmark", "evaluate_benchmarks",
           "prepare_benchmark", "score_benchmark"]
