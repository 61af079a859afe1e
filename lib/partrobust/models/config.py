"""`ModelSpec` (the ``model`` section of a run) and `ModelConfig` (a spec plus the dataset's sizes).

Every model is built from a `ModelConfig` by the constructor registered under `config.name`
(see `build_model`). Validation here covers what a config means on its own (types, ranges,
`part_to_class` consistency); model-specific requirements (part models need ``num_parts >= 1``,
"pixel" needs ``part_to_class``) are checked by the model constructors.

`MODEL_OPTIONS` says which spec keys each registered model reads; the others do not change the
model, so a run's identity ignores them (see `partrobust.runs.runconfig`).
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator
from torch import nn

from ..core.checksum import sha256_of
from ..core.config import Section
from ..core.registry import Registry

MODELS: Registry[nn.Module] = Registry("model")
"""Model constructors keyed by `ModelConfig.name`; each takes a `ModelConfig`."""

MODEL_OPTIONS: dict[str, tuple[str, ...]] = {}
"""Registered model name -> the `ModelSpec` keys (besides ``name``) its constructor reads."""

def uses_segmenter(name: str) -> bool:
    """True for part models (a DeepLabv3+ segmenter plus a head), False for the baseline."""
    return "encoder" in MODEL_OPTIONS[name]


BBOX_SCORES = ("logits", "probability")
TRAININGS = ("normal", "pgd", "trades")
OUTPUT_STRIDES = (8, 16)


class ModelSpec(Section):
    """Architecture of one classifier as a run configures it (section ``model``). All models take [0,1] images."""

    name: str = Field("downsampled", description='model kind, a registry name: "resnet" (baseline), "downsampled", "bbox", "two_headed" or "pixel"')
    arch: str = Field("resnet50", description="timm architecture of the ResNet baseline")
    encoder: str = Field("resnet50", description="smp encoder of the DeepLabv3+ segmenter (e.g. resnet50, tu-resnet10t)")
    output_stride: Literal[8, 16] = Field(16, description="encoder output stride of DeepLabv3+")
    pool_size: int = Field(4, ge=1, description="Downsampled head: pooled mask side P (Table 17 sweeps 1-128)")
    drop_background: bool = Field(False, description="Downsampled head drops the background mask channel (Table 16; decision 2 in lib/README.md)")
    concat_input: bool = Field(False, description="Downsampled head also sees the image resized to the mask size (Table 19)")
    bbox_score: Literal["logits", "probability"] = Field(
        "logits", description="Bounding-Box part score: reference's foreground-weighted mean of part logits, or of probabilities (paper's s_i)")
    pretrained_baseline: str | None = Field(None, description="local state-dict file for the baseline's timm backbone (never downloaded)")
    pretrained_encoder: str | None = Field(None, description="local state-dict file for the segmenter's encoder (never downloaded)")
    from_scratch: bool = Field(False, description="train a resnet50 without ImageNet weights on purpose (the paper always starts from them)")
    weights: str | None = Field(None, description="imported weights (`python -m partrobust.weights import-reference`, e.g. the authors' released ones): the run trains nothing and evaluates them")
    weights_sha256: str | None = Field(None, description="SHA-256 of model.weights, part of the run id (filled in from the file when empty; a file with another hash is refused)")
    weights_training: Literal["normal", "pgd", "trades"] | None = Field(
        None, description="how the imported weights were trained (the run's `training` label; checked against the file)")

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        if name not in MODELS:
            raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS.names())}")
        return name

    @model_validator(mode="after")
    def _imported_weights(self) -> "ModelSpec":
        if self.weights is None:
            extra = [k for k in ("weights_sha256", "weights_training") if getattr(self, k) is not None]
            if extra:
                raise ValueError(f"model.{extra[0]} is set but model.weights is not")
            return self
        if self.weights_training is None:
            raise ValueError("model.weights_training: say how the imported weights were trained (normal, pgd or trades); "
                             "the run config written by `python -m partrobust.weights import-reference` has it")
        try:
            digest = sha256_of(self.weights)
        except FileNotFoundError:  # not imported yet: a preview lists it, a run refuses it before compute
            return self
        if self.weights_sha256 is None:
            self.weights_sha256 = digest
        elif self.weights_sha256 != digest:
            raise ValueError(f"model.weights_sha256: {self.weights} has SHA-256 {digest[:16]}..., not {self.weights_sha256[:16]}...: "
                             "the file changed since this config was written; results of two files never mix")
        return self

    @property
    def pretrained_path(self) -> str | None:
        """The weights file this model's backbone loads: the baseline's or the encoder's."""
        return self.pretrained_encoder if uses_segmenter(self.name) else self.pretrained_baseline

    @property
    def pretrained_key(self) -> str:
        """The spec key of `pretrained_path`."""
        return "pretrained_encoder" if uses_segmenter(self.name) else "pretrained_baseline"

    @property
    def backbone(self) -> str:
        """The architecture the weights are for: the smp encoder or the timm baseline."""
        return self.encoder if uses_segmenter(self.name) else self.arch


class ModelConfig(ModelSpec):
    """A `ModelSpec` plus what the dataset fixes: classes, parts, input size, part-to-class map.

    Attributes besides the spec's:
        num_classes: C, number of object classes.
        num_parts: K, number of parts excluding background (segmenter outputs K+1 channels).
            Part models need K >= 1; the baseline ignores it.
        image_size: input side length; the Two-Headed head needs it for its flatten size.
        part_to_class: length K+1; entry 0 is -1 (background), entry k the class of part k.
            Required by "pixel".
    """

    name: str
    num_classes: int = Field(ge=2)
    num_parts: int = Field(0, ge=0)
    image_size: int = Field(224, ge=1)
    part_to_class: list[int] | None = None

    @field_validator("part_to_class", mode="before")
    @classmethod
    def _tuple_to_list(cls, value):
        return list(value) if isinstance(value, tuple) else value

    @model_validator(mode="after")
    def _check_part_to_class(self) -> "ModelConfig":
        p2c = self.part_to_class
        if p2c is None:
            return self
        if len(p2c) != self.num_parts + 1:
            raise ValueError(
                f"part_to_class must have length num_parts + 1 = {self.num_parts + 1} (entry 0 = background), got length {len(p2c)}")
        if p2c[0] != -1:
            raise ValueError(f"part_to_class[0] must be -1 (background), got {p2c[0]}")
        bad = [(k, c) for k, c in enumerate(p2c[1:], start=1) if not 0 <= c < self.num_classes]
        if bad:
            raise ValueError(f"part_to_class entries 1..K must be class indices in [0, {self.num_classes}); bad (part, class) pairs: {bad}")
        return self

    @property
    def num_seg_channels(self) -> int:
        """K+1: segmenter output channels (channel 0 = background)."""
        return self.num_parts + 1


