"""`ModelConfig`: the typed, validated description of one classifier, and the `MODELS` registry.

Every model is built from a `ModelConfig` by the constructor registered under `config.name`
(see `build_model`). Validation here covers what a config means on its own (types, ranges,
`part_to_class` consistency); model-specific requirements (part models need ``num_parts >= 1``,
"pixel" needs ``part_to_class``) are checked by the model constructors.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any

from torch import nn

from partrobust.config import ParameterError
from partrobust.registry import Registry

MODELS: Registry[nn.Module] = Registry("model")
"""Model constructors keyed by `ModelConfig.name`; each takes a `ModelConfig`."""

BBOX_SCORES = ("logits", "probability")
OUTPUT_STRIDES = (8, 16)


@dataclass
class ModelConfig:
    """Architecture of one classifier (baseline or part model). All models take [0,1] images.

    Attributes:
        name: model kind, a `MODELS` key: "resnet" (baseline), "downsampled", "bbox",
            "two_headed" or "pixel".
        num_classes: C, number of object classes.
        num_parts: K, number of parts excluding background (segmenter outputs K+1 channels).
            Part models need K >= 1; the baseline ignores it.
        arch: timm architecture of the baseline.
        encoder: smp encoder of the DeepLabv3+ segmenter.
        output_stride: encoder output stride of DeepLabv3+ (8 or 16).
        pool_size: P, pooled mask size of the Downsampled head.
        drop_background: Downsampled head drops the background mask channel (the reference's
            "nobg" flag, which never fired in its scripts; decisions.md row 2).
        concat_input: Downsampled head also sees the normalised image resized to the mask size
            (Appendix E.11 / Table 19), i.e. 3 more input channels.
        bbox_score: Bounding-Box part score: "logits" (reference: foreground-weighted mean of
            raw part logits, unbounded) or "probability" (same weighting of softmax
            probabilities, the paper's s_i in [0, 1]).
        image_size: input side length; the Two-Headed head needs it for its flatten size.
        part_to_class: length K+1; entry 0 is -1 (background), entry k the class of part k.
            Required by "pixel".
        pretrained_path: local state-dict file loaded into the backbone (timm model for
            "resnet", smp encoder for part models). Never downloaded.
    """

    name: str
    num_classes: int
    num_parts: int = 0
    arch: str = "resnet50"
    encoder: str = "resnet50"
    output_stride: int = 16
    pool_size: int = 4
    drop_background: bool = False
    concat_input: bool = False
    bbox_score: str = "logits"
    image_size: int = 224
    part_to_class: list[int] | None = None
    pretrained_path: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.part_to_class, tuple):
            self.part_to_class = list(self.part_to_class)
        _check_types(self)
        _check_values(self)

    @property
    def num_seg_channels(self) -> int:
        """K+1: segmenter output channels (channel 0 = background)."""
        return self.num_parts + 1


def _is_instance(value: Any, tp: Any) -> bool:
    """isinstance for the simple annotations used by ModelConfig (bools are not ints)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_is_instance(value, arg) for arg in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if typing.get_origin(tp) is list:
        (inner,) = typing.get_args(tp)
        return isinstance(value, list) and all(_is_instance(v, inner) for v in value)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _check_types(config: ModelConfig) -> None:
    hints = typing.get_type_hints(ModelConfig)
    for field in dataclasses.fields(ModelConfig):
        value = getattr(config, field.name)
        tp = hints[field.name]
        if not _is_instance(value, tp):
            raise ParameterError(
                f"ModelConfig.{field.name} must be {str(tp).replace('typing.', '')}, "
                f"got {type(value).__name__} {value!r}"
            )


def _check_values(config: ModelConfig) -> None:
    if config.num_classes < 2:
        raise ParameterError(f"ModelConfig.num_classes must be >= 2, got {config.num_classes}")
    if config.num_parts < 0:
        raise ParameterError(f"ModelConfig.num_parts must be >= 0, got {config.num_parts}")
    if config.output_stride not in OUTPUT_STRIDES:
        raise ParameterError(
            f"ModelConfig.output_stride must be one of {OUTPUT_STRIDES}, got {config.output_stride}"
        )
    if config.pool_size < 1:
        raise ParameterError(f"ModelConfig.pool_size must be >= 1, got {config.pool_size}")
    if config.image_size < 1:
        raise ParameterError(f"ModelConfig.image_size must be >= 1, got {config.image_size}")
    if config.bbox_score not in BBOX_SCORES:
        raise ParameterError(
            f"ModelConfig.bbox_score must be one of {BBOX_SCORES}, got {config.bbox_score!r}"
        )
    if config.part_to_class is not None:
        _check_part_to_class(config.part_to_class, config.num_parts, config.num_classes)


def _check_part_to_class(part_to_class: list[int], num_parts: int, num_classes: int) -> None:
    if len(part_to_class) != num_parts + 1:
        raise ParameterError(
            f"ModelConfig.part_to_class must have length num_parts + 1 = {num_parts + 1} "
            f"(entry 0 = background), got length {len(part_to_class)}"
        )
    if part_to_class[0] != -1:
        raise ParameterError(
            f"ModelConfig.part_to_class[0] must be -1 (background), got {part_to_class[0]}"
        )
    bad = [(k, c) for k, c in enumerate(part_to_class[1:], start=1) if not 0 <= c < num_classes]
    if bad:
        raise ParameterError(
            f"ModelConfig.part_to_class entries 1..K must be class indices in [0, {num_classes}); "
            f"bad (part, class) pairs: {bad}"
        )
