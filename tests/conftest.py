"""Shared fixtures: a tiny synthetic dataset in the prepared format (generated once per session), and
the values of a run on it that trains in seconds."""
from pathlib import Path

import pytest

from partrobust.data import SyntheticConfig, generate_synthetic

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """40/16/16 images of 32x32 pixels, 4 classes."""
    root = tmp_path_factory.mktemp("data") / "synthetic"
    generate_synthetic(root, SyntheticConfig(num_classes=4, image_size=32, n_train=40, n_val=16, n_test=16, seed=0), progress=False)
    return root


TINY_RUN = {
    "data": {"crop_size": 32, "resize_size": 32, "batch_size": 16, "train_limit": 32},
    "model": {"name": "bbox", "arch": "resnet10t", "encoder": "tu-resnet10t"},
    "train": {"epochs_clean": 1, "epochs_adv": 1, "steps": 1, "val_steps": 1, "val_limit": 16, "val_every": 1},
    "eval": {"limit": 8, "pgd_steps": 2, "pgd_restarts": 1, "autoattack": False},
    "device": "cpu",
    "progress": False,
}


def tiny_run_values(dataset: Path | str) -> dict:
    """Run-config values of a seconds-long CPU run on `dataset` (import with ``from conftest import ...``)."""
    return {**TINY_RUN, "data": {**TINY_RUN["data"], "root": str(dataset)}}
