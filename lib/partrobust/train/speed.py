"""Speed switches of a run (section ``speed``): how fast it computes, never what it computes.

* ``channels_last``: the model's weights and its input batches in NHWC memory format, which
  tensor-core convolutions prefer;
* ``cudnn_benchmark``: cuDNN times its convolution algorithms once per input shape and keeps the
  fastest;
* ``compile``: `torch.compile` of the forward pass that the attacks and the training loss share
  (`PartModel.forward_with_parts` for part models, ``forward`` otherwise), so the PGD steps
  inside training, the loss pass, validation and the test attacks all run compiled code. The
  compile time is paid once per process and reported (`CompiledForward.compile_seconds`).

None of them changes the model's function: outputs and PGD results agree within float tolerance
(tested on the CPU against the plain path), so they are runtime keys, outside the run id, free to
change when a run resumes. One difference in training: dropout draws its mask in memory order, so
with ``channels_last`` the ASPP's dropout drops other units than the plain path (the same
distribution, other draws), as a different number of data workers draws other augmentations. ``"auto"`` turns a switch on on CUDA and leaves it off elsewhere. The precision of
the attacks, which does change results, is ``train.attack_precision`` (part of the run id).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from ..core.config import Section


class SpeedConfig(Section):
    """Kernel-level switches that leave results unchanged within float tolerance (section ``speed``)."""

    channels_last: bool | Literal["auto"] = Field("auto", description="NHWC memory format for the model and its input batches (auto: on CUDA; training's dropout masks then fall on other units)")
    cudnn_benchmark: bool | Literal["auto"] = Field("auto", description="cuDNN picks the fastest convolution algorithm per input shape, timed once (auto: on CUDA)")
    compile: bool = Field(False, description="torch.compile the forward pass shared by the attacks and the loss (compile time paid once per process, printed)")
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = Field(
        "default", description="torch.compile mode (with compile: true)")
    compile_backend: str = Field("inductor", description="torch.compile backend (inductor; aot_eager checks the wiring without a C++ compiler)")

    @field_validator("compile_backend")
    @classmethod
    def _known_backend(cls, backend: str) -> str:
        """One of ``torch._dynamo.list_backends()`` (debug backends such as aot_eager included), checked
        before any compute rather than at the first compiled call."""
        if backend == "inductor":  # the default: always registered, and importing dynamo costs a second
            return backend
        import torch._dynamo

        known = sorted(torch._dynamo.list_backends(exclude_tags=()))
        if backend not in known:
            raise ValueError(f"unknown torch.compile backend {backend!r}; known: {', '.join(known)}")
        return backend


@dataclass(frozen=True)
class Speed:
    """A `SpeedConfig` resolved for one device: every switch a plain bool."""

    channels_last: bool = False
    cudnn_benchmark: bool = False
    compile: bool = False
    compile_mode: str = "default"
    compile_backend: str = "inductor"

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def describe(self) -> str:
        """``channels_last, cudnn_benchmark, compile(default)`` or ``plain``."""
        on = [name for name in ("channels_last", "cudnn_benchmark") if getattr(self, name)]
        if self.compile:
            on.append(f"compile({self.compile_mode}, {self.compile_backend})")
        return ", ".join(on) or "plain"


PLAIN = Speed()
"""The plain fp32 eager path: every switch off."""


def resolve_speed(cfg: SpeedConfig, device: torch.device) -> Speed:
    """``"auto"`` -> on for CUDA devices, off elsewhere."""
    def pick(value: bool | str) -> bool:
        return device.type == "cuda" if value == "auto" else bool(value)

    return Speed(channels_last=pick(cfg.channels_last), cudnn_benchmark=pick(cfg.cudnn_benchmark), compile=cfg.compile,
                 compile_mode=cfg.compile_mode, compile_backend=cfg.compile_backend)


@contextlib.contextmanager
def speed_settings(speed: Speed) -> Iterator[None]:
    """Sets the process-wide switch (``torch.backends.cudnn.benchmark``) inside the block, restores it after."""
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = speed.cudnn_benchmark
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


def to_device(x: torch.Tensor, device: torch.device, speed: Speed = PLAIN) -> torch.Tensor:
    """A batch on `device` (asynchronously from pinned memory), image batches in the speed's memory format."""
    if x.ndim == 4:
        return x.to(device, non_blocking=True, memory_format=speed.memory_format)
    return x.to(device, non_blocking=True)


class CompiledForward:
    """`torch.compile` of one forward method, timing the calls that compiled a new graph.

    Installed as an instance attribute over the class's method, so the model's ``state_dict``
    keys, checkpoints and ``model(x)`` calls stay what they were.
    """

    def __init__(self, method: Callable[..., Any], mode: str, backend: str) -> None:
        self.compiled = torch.compile(method, mode=None if mode == "default" else mode, backend=backend)
        self.compile_seconds = 0.0
        self.graphs = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from torch._dynamo.utils import counters

        before = counters["stats"]["unique_graphs"]
        t0 = time.perf_counter()
        out = self.compiled(*args, **kwargs)
        new = counters["stats"]["unique_graphs"] - before
        if new:
            self.graphs += new
            self.compile_seconds += time.perf_counter() - t0
        return out


def shared_forward_name(model: nn.Module) -> str:
    """The method both the attacks (through ``model(x)``) and the loss call: part models' ``forward_with_parts``."""
    return "forward_with_parts" if getattr(model, "is_part_model", False) else "forward"


def apply_speed(model: nn.Module, speed: Speed) -> nn.Module:
    """Puts `model` (in place) in the speed's memory format and compiles its shared forward."""
    if speed.channels_last:
        model.to(memory_format=torch.channels_last)
    name = shared_forward_name(model)
    if speed.compile and not isinstance(getattr(model, name), CompiledForward):
        setattr(model, name, CompiledForward(getattr(model, name), speed.compile_mode, speed.compile_backend))
    return model


def compile_report(model: nn.Module) -> str | None:
    """``torch.compile: 3 graph(s) in 145.2 s`` for a compiled model, None otherwise."""
    forward = getattr(model, shared_forward_name(model), None)
    if not isinstance(forward, CompiledForward):
        return None
    return f"torch.compile: {forward.graphs} graph(s) in {forward.compile_seconds:.1f} s"
