"""Datasets: the prepared on-disk format, the synthetic generator, transforms, PartDataset."""
from .dataset import PartDataset
from .prepared import (
    SPLITS,
    DatasetMetadata,
    PartInfo,
    PreparedDatasetError,
    load_metadata,
    read_image,
    read_mask,
    read_split,
    validate_prepared,
    write_image,
    write_mask,
    write_metadata,
    write_split,
)
from .synthetic import SyntheticConfig, generate_synthetic
from .transforms import eval_transform, train_transform

__all__ = [
    "SPLITS",
    "DatasetMetadata",
    "PartInfo",
    "PartDataset",
    "PreparedDatasetError",
    "SyntheticConfig",
    "eval_transform",
    "generate_synthetic",
    "load_metadata",
    "read_image",
    "read_mask",
    "read_split",
    "train_transform",
    "validate_prepared",
    "write_image",
    "write_mask",
    "write_metadata",
    "write_split",
]
