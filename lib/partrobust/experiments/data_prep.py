"""Notebook 00: prepare a dataset in the project's prepared format and summarise it.

Only the built-in synthetic dataset exists so far; converters for the real datasets register
themselves in ``PREPARERS`` under their own name.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..config import ParameterError
from ..data import DatasetMetadata, SyntheticConfig, generate_synthetic
from ..registry import Registry

PREPARERS: Registry[Callable[["DataPrepParams"], DatasetMetadata]] = Registry("dataset")


@dataclass
class DataPrepParams:
    """Parameters of notebook 00 (defaults live in the notebook's `parameters` cell)."""

    run_dir: str
    dataset: str
    output_root: str
    num_classes: int
    image_size: int
    n_train: int
    n_val: int
    n_test: int
    texture_cue_prob: float
    seed: int
    workers: int
    progress: bool

    def __post_init__(self) -> None:
        if self.dataset not in PREPARERS:
            raise ParameterError(f"dataset: unknown dataset {self.dataset!r}; known: {PREPARERS.names()}")
        if self.workers < 1:
            raise ParameterError(f"workers must be >= 1, got {self.workers}")

    @property
    def dataset_root(self) -> Path:
        """Where the prepared dataset is written: ``<output_root>/<dataset>``."""
        return Path(self.output_root) / self.dataset


@PREPARERS.register("synthetic")
def prepare_synthetic(params: DataPrepParams) -> DatasetMetadata:
    """Generates (or reuses) the built-in synthetic part dataset."""
    config = SyntheticConfig(
        num_classes=params.num_classes,
        image_size=params.image_size,
        n_train=params.n_train,
        n_val=params.n_val,
        n_test=params.n_test,
        texture_cue_prob=params.texture_cue_prob,
        seed=params.seed,
    )
    try:
        config.check()
    except ValueError as err:
        raise ParameterError(str(err)) from None
    return generate_synthetic(params.dataset_root, config, workers=params.workers, progress=params.progress)


def prepare(params: DataPrepParams) -> DatasetMetadata:
    """Prepares the dataset named by ``params.dataset``; idempotent."""
    return PREPARERS.get(params.dataset)(params)
