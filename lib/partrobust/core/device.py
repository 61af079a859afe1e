"""The device a run computes on, and the float32 precision of CUDA matmuls and convolutions."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from .config import ParameterError


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' picks CUDA when available; an explicit CUDA device without that GPU is a `ParameterError` (key ``device``)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"device: {device!r} requested but CUDA is not available here; use 'cpu' or 'auto'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ParameterError(f"device: {device!r} requested but this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ParameterError(f"device: {device!r} requested but MPS is not available here; use 'cpu' or 'auto'")
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
