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
from .scan import DataScanError, ScanReport, scan_prepared
from .synthetic import SyntheticConfig, generate_synthetic
from .transforms import eval_transform, train_transform

__all__ = [
    "SPLITS",
    "DataScanError",
    "DatasetMetadata",
    "PartInfo",
    "PartDataset",
    "PreparedDatasetError",
    "ScanReport",
    "SyntheticConfig",
    "eval_transform",
    "generate_synthetic",
    "load_metadata",
    "read_image",
    "read_mask",
    "read_split",
    "scan_prepared",
    "train_transform",
    "validate_prepared",
    "write_image",
    "write_mask",
    "write_metadata",
    "write_split",
]
