"""Shared fixtures: a tiny synthetic dataset in the prepared format (generated once per session)."""
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
