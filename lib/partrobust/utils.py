"""Small shared helpers: seeding, devices, RNG state capture, atomic saves."""
from __future__ import annotations

import fcntl
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
def file_lock(path: str | os.PathLike, blocking: bool = True) -> Iterator[None]:
    """Holds an exclusive ``flock`` on `path` for the block (released when the process dies, too).

    Non-blocking: raises `BlockingIOError` at once if another process holds it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        yield


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
    """All global RNG states, for checkpoints that resume bit-for-bit."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """Saves via a temporary file and rename, so a kill never leaves a truncated checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")  # unique per process: concurrent writers never collide
    torch.save(obj, tmp)
    os.replace(tmp, path)


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
