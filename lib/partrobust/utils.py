"""Small shared helpers: seeding, devices, float32 precision, RNG state capture, the repository root."""
from __future__ import annotations

import os
import random
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seeds python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' picks CUDA when available; an explicit 'cuda' without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    return dev


@contextmanager
def float32_precision(tf32: bool) -> Iterator[None]:
    """Inside the block, CUDA fp32 matmuls and cuDNN convolutions use TF32 (``tf32=True``) or full
    IEEE fp32 (``tf32=False``); the previous settings are restored on exit.

    Uses torch's per-backend ``fp32_precision`` switches only (mixing them with the legacy
    ``allow_tf32`` flags is an error in torch >= 2.9). The flags are plain settings, so they are
    set (and testable) on a CPU-only machine too, where they have no effect.
    """
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    saved = (matmul.fp32_precision, conv.fp32_precision)
    value = "tf32" if tf32 else "ieee"
    matmul.fp32_precision = value
    conv.fp32_precision = value
    try:
        yield
    finally:
        matmul.fp32_precision, conv.fp32_precision = saved


def rng_state() -> dict[str, Any]:
    """All global RNG states, for checkpoints that resume bit-for-bit.

    Plain values and tensors only (numpy's key array becomes a tensor), so checkpoints load
    with ``torch.load(weights_only=True)``.
    """
    version, mt_state, gauss = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(mt_state), "gauss": gauss},
        "numpy": {"key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)), "pos": int(numpy_state["state"]["pos"]),
                  "has_gauss": int(numpy_state["has_gauss"]), "gauss": float(numpy_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores what `rng_state` captured."""
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss"]))
    numpy = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937", "state": {"key": numpy["key"].numpy().astype(np.uint32), "pos": numpy["pos"]},
                         "has_gauss": numpy["has_gauss"], "gauss": numpy["gauss"]})
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def find_repo_root(start: str | os.PathLike | None = None) -> Path:
    """The repository root (the folder holding ``pyproject.toml`` and ``notebooks/``) above `start`.

    Notebooks chdir there so that the relative paths in ``params/*.yaml`` mean the same thing
    under papermill and in JupyterLab (which starts kernels in the notebook's folder).
    """
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "notebooks").is_dir():
            return folder
    raise FileNotFoundError(f"no partrobust checkout (pyproject.toml + notebooks/) found above {here}")


SOURCE_FOLDERS = ("notebooks", "lib", "params", "tests")
"""Folders of a checkout that hold sources: no output may be written inside them."""


def refuse_source_location(path: str | os.PathLike, key: str) -> None:
    """Raises `ParameterError` when output `path` is a checkout's root or lies in one of its
    `SOURCE_FOLDERS`, so an executed notebook or a run folder never overwrites a source file."""
    from .config import ParameterError

    target = Path(path).resolve()
    for folder in (target, *target.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "notebooks").is_dir():
            inside = target.relative_to(folder).parts
            if not inside or inside[0] in SOURCE_FOLDERS:
                where = "the repository root" if not inside else f"the source folder {inside[0]}/"
                raise ParameterError(f"{key}: {path} is {'' if not inside else 'inside '}{where}; outputs never go "
                                     "there (they could overwrite sources): use a folder under runs/")
            return
