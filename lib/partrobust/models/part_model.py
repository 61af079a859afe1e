"""Part models: normaliser -> DeepLabv3+ segmenter -> part head, registered in `MODELS`.

One model kind per head in `HEADS` ("downsampled", "bbox", "two_headed", "pixel"); the model's
name is its head's name.
"""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from .baseline import load_backbone_weights
from .config import MODEL_OPTIONS, MODELS, ModelConfig
from .heads import HEADS
from .normalize import ImageNormalizer
from .segmenter import DeepLabV3PlusSegmenter, build_segmenter


class PartModel(nn.Module):
    """Part-based classifier: [0,1] images (N,3,H,W) -> class logits (N,C).

    `forward_with_parts` also returns the part logits (N, K+1, H, W) from the same pass, for the
    segmentation loss; `forward` returns class logits only, so attack libraries need no wrapper.
    """

    is_part_model = True

    def __init__(self, segmenter: DeepLabV3PlusSegmenter, head: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.normalize = ImageNormalizer()
        self.segmenter = segmenter
        self.head = head
        self.num_classes = num_classes
        self.num_parts = segmenter.num_seg_channels - 1

    def forward_with_parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N,3,H,W) in [0,1] -> (class logits (N,C), part logits (N,K+1,H,W))."""
        image = self.normalize(x)
        features = self.segmenter.forward_features(image)
        seg_logits = self.segmenter.forward_head(features)
        logits = self.head(seg_logits, image=image, features=features)
        return logits, seg_logits

    def forward_parts(self, x: torch.Tensor) -> torch.Tensor:
        """x (N,3,H,W) in [0,1] -> part logits (N, K+1, H, W) (the head is not run)."""
        return self.segmenter(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_parts(x)[0]


def build_part_model(config: ModelConfig, head: str) -> PartModel:
    """Segmenter from `config` + `HEADS[head]`; `pretrained_path` initialises the smp encoder.

    Classifier keys (``fc.*``, as in torchvision ImageNet checkpoints) in the file are ignored.
    """
    if config.num_parts < 1:
        raise ValueError(
            f"part model {config.name!r} needs ModelConfig.num_parts = K >= 1 (parts excluding "
            f"background), got {config.num_parts}"
        )
    head_cls = HEADS.get(head)
    if config.concat_input and not getattr(head_cls, "supports_concat_input", False):
        supported = [n for n in HEADS.names() if getattr(HEADS.get(n), "supports_concat_input", False)]
        raise ValueError(f"concat_input=True is only supported by {supported}, not {head!r}")
    segmenter = build_segmenter(config)
    if config.pretrained_path is not None:
        load_backbone_weights(segmenter.encoder, config.pretrained_path, ignore_prefixes=("fc",))
    return PartModel(segmenter, head_cls(config), config.num_classes)


_SEGMENTER_OPTIONS = ("encoder", "output_stride", "pretrained_encoder")

for _head in HEADS.names():
    MODELS.register(_head)(partial(build_part_model, head=_head))
    MODEL_OPTIONS[_head] = _SEGMENTER_OPTIONS + tuple(getattr(HEADS.get(_head), "config_keys", ()))
