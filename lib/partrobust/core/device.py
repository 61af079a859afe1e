"""The device a run computes on, and the float32 precision of CUDA matmuls and convolutions."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


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
