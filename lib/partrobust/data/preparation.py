"""Notebook 00: prepare a dataset in the project's prepared format and summarise it.

``PREPARERS`` maps a dataset name to the function that writes it: the built-in synthetic
dataset is generated; Part-ImageNet, Cityscapes-Panoptic-Parts and PASCAL-Part are converted
from their raw releases (downloaded by the user to ``raw_root``). Label variants for the
ablations (object-level masks, part bounding boxes) are derived from the prepared dataset.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Literal

from pydantic import Field, model_validator

from ..core.config import ParameterError, Section
from ..core.fileio import remove_stale_temporaries
from ..core.paths import refuse_source_location
from ..core.registry import Registry
from . import DatasetMetadata, SyntheticConfig, generate_synthetic, scan_prepared
from .sources.cityscapes import convert_cityscapes
from .sources.part_imagenet import convert_part_imagenet
from .sources.pascal_part import convert_pascal_part
from .variants import make_label_variant

PREPARERS: Registry[Callable[["DataPrepParams"], DatasetMetadata]] = Registry("dataset")


class DataPrepParams(Section):
    """Parameters of notebook 00 (defaults live in the notebook's `parameters` cell)."""

    run_dir: str
    dataset: str
    raw_root: str | None
    cityscapes_crop: Literal["paper", "reference"]
    output_root: str
    variants: list[str]
    num_classes: int = Field(ge=2)
    image_size: int = Field(ge=16)
    n_train: int = Field(ge=1)
    n_val: int = Field(ge=1)
    n_test: int = Field(ge=1)
    texture_cue_prob: float = Field(ge=0, le=1)
    summary_limit: int | None = Field(ge=1)
    seed: int = Field(ge=0)
    workers: int = Field(ge=1)
    progress: bool

    @model_validator(mode="after")
    def _check(self) -> "DataPrepParams":
        if self.dataset not in PREPARERS:
            raise ValueError(f"dataset: unknown dataset {self.dataset!r}; known: {PREPARERS.names()}")
        if self.dataset != "synthetic":
            if self.raw_root is None:
                raise ValueError(f"raw_root: the folder of the downloaded {self.dataset} release is required")
            if not Path(self.raw_root).is_dir():
                raise ValueError(f"raw_root: folder {self.raw_root} does not exist (download the {self.dataset} release there)")
        unknown = sorted(set(self.variants) - set(VARIANTS))
        if unknown:
            raise ValueError(f"variants: unknown label variant(s) {unknown}; known: {list(VARIANTS)}")
        for key in ("run_dir", "output_root"):
            try:
                refuse_source_location(getattr(self, key), key)
            except ParameterError as err:
                raise ValueError(str(err)) from None
        return self

    @property
    def dataset_root(self) -> Path:
        """Where the prepared dataset is written: ``<output_root>/<dataset>``."""
        return Path(self.output_root) / self.dataset

    def variant_root(self, kind: str) -> Path:
        """Where a label variant is written: ``<output_root>/<dataset>-<kind>``."""
        return Path(self.output_root) / f"{self.dataset}-{kind}"


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


@PREPARERS.register("part_imagenet")
def prepare_part_imagenet(params: DataPrepParams) -> DatasetMetadata:
    """Converts the PartImageNet release (JPEGImages/ + train/val/test.json)."""
    return convert_part_imagenet(params.raw_root, params.dataset_root, seed=params.seed, workers=params.workers, progress=params.progress)


@PREPARERS.register("cityscapes")
def prepare_cityscapes(params: DataPrepParams) -> DatasetMetadata:
    """Converts Cityscapes-Panoptic-Parts (leftImg8bit/ + gtFinePanopticParts/) to human/vehicle crops."""
    return convert_cityscapes(params.raw_root, params.dataset_root, seed=params.seed, crop=params.cityscapes_crop,
                              workers=params.workers, progress=params.progress)


@PREPARERS.register("pascal_part")
def prepare_pascal_part(params: DataPrepParams) -> DatasetMetadata:
    """Converts PASCAL-Part (VOC2010 JPEGImages/ + Annotations_Part/*.mat), five classes."""
    return convert_pascal_part(params.raw_root, params.dataset_root, seed=params.seed, workers=params.workers, progress=params.progress)


VARIANTS = ("object", "bbox")


def prepare(params: DataPrepParams) -> DatasetMetadata:
    """Prepares the dataset named by ``params.dataset`` and its label variants (idempotent), then scans
    every file written (`partrobust.data.scan`): a bad file raises, naming it."""
    for folder in (params.dataset_root, *map(params.variant_root, params.variants)):
        remove_stale_temporaries(folder)  # left by a killed earlier preparation
    meta = PREPARERS.get(params.dataset)(params)
    roots = [params.dataset_root]
    if params.variants:
        for kind in params.variants:
            make_label_variant(params.dataset_root, params.variant_root(kind), kind, workers=params.workers, progress=params.progress)
            roots.append(params.variant_root(kind))
    for root in roots:  # check what was written (and fill the scan cache, so runs start without rescanning)
        report = scan_prepared(root, workers=params.workers, progress=params.progress)
        print(report.summary())
        report.raise_if_bad()
    return meta
