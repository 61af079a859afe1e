"""Models: ResNet baseline and DeepLabv3+ part models, all built from a `ModelConfig`.

Every model takes [0,1] images (N,3,H,W), normalises them internally and returns class logits
(N,C) from `forward`. Part models (`is_part_model = True`) also offer `forward_with_parts(x)`
-> (class logits, part logits (N,K+1,H,W)) and `forward_parts(x)`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ..core.config import validate
from .baseline import Classifier, load_backbone_weights
from .config import MODEL_OPTIONS, MODELS, ModelConfig, ModelSpec
from .counts import count_parameters, paper_parameter_counts
from .heads import HEADS, bbox_features
from .normalize import ImageNormalizer
from .part_model import PartModel  # importing registers the part models
from .segmenter import DeepLabV3PlusSegmenter

__all__ = [
    "HEADS",
    "MODELS",
    "MODEL_OPTIONS",
    "Classifier",
    "DeepLabV3PlusSegmenter",
    "ImageNormalizer",
    "ModelConfig",
    "ModelSpec",
    "PartModel",
    "bbox_features",
    "build_model",
    "count_parameters",
    "load_backbone_weights",
    "paper_parameter_counts",
]


def build_model(config: ModelConfig | Mapping[str, Any]) -> nn.Module:
    """Builds the model registered under `config.name` (a dict is validated into a ModelConfig).

    Unknown dict keys or wrong types raise `ParameterError` naming the key; an unknown model
    name raises `KeyError` listing the registered ones.
    """
    if isinstance(config, Mapping):
        config = validate(ModelConfig, config, where="model config")
    elif not isinstance(config, ModelConfig):
        raise TypeError(f"build_model expects a ModelConfig or a dict, got {type(config).__name__}")
    return MODELS.build(config.name, config)
