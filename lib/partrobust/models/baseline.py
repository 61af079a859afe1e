"""Baseline classifier ("resnet"): normaliser -> timm network with a fresh C-way head.

Also holds `load_backbone_weights`, the strict local-file loader shared with the part models
(decision 13 in lib/README.md: one configurable pretrained source per network, never downloaded).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import timm
import torch
from torch import nn

from ..core.fileio import load_checkpoint
from .config import MODEL_OPTIONS, MODELS, ModelConfig
from .normalize import ImageNormalizer

_BN_COUNTER = "num_batches_tracked"


class Classifier(nn.Module):
    """Image classifier: [0,1] images (N,3,H,W) -> class logits (N,C)."""

    is_part_model = False

    def __init__(self, net: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.normalize = ImageNormalizer()
        self.net = net
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


MODEL_OPTIONS["resnet"] = ("arch", "pretrained_baseline")


@MODELS.register("resnet")
def build_baseline(config: ModelConfig) -> Classifier:
    """`timm.create_model(arch, pretrained=False, num_classes=C)`, weights from `pretrained_path`.

    Any classifier weights in the file are ignored: the C-way head is always fresh
    (reference: timm backbone + new `nn.Linear(2048, C)`; 23,530,571 params for resnet50, C=11).
    """
    net = timm.create_model(config.arch, pretrained=False, num_classes=config.num_classes)
    if config.pretrained_path is not None:
        classifier = net.pretrained_cfg.get("classifier", "fc")
        prefixes = (classifier,) if isinstance(classifier, str) else tuple(classifier)
        load_backbone_weights(net, config.pretrained_path, ignore_prefixes=prefixes)
    return Classifier(net, config.num_classes)


def load_backbone_weights(
    module: nn.Module, path: str | Path, ignore_prefixes: tuple[str, ...] = ("fc",)
) -> None:
    """Loads a local state dict into `module`, strictly except for classifier keys.

    Keys under `ignore_prefixes` (the ImageNet classifier, e.g. ``fc.weight``/``fc.bias``) are
    skipped in the file and may be absent from it. BatchNorm ``num_batches_tracked`` counters
    may be absent too (old torchvision/timm checkpoints lack them; they do not affect outputs).
    Any other missing or unexpected key, or a shape mismatch, raises.

    Args:
        module: the backbone (timm model or smp encoder).
        path: file written by ``torch.save(state_dict)``.
        ignore_prefixes: module-name prefixes of the classifier, without the trailing dot.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained_path {str(path)!r} does not exist (weights are never downloaded)"
        )
    state = load_checkpoint(path)
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(
            f"{path}: expected a flat state dict (name -> tensor) of the backbone, got "
            f"{type(state).__name__}"
            + (f" with keys {list(state)[:5]}" if isinstance(state, Mapping) else "")
        )

    def ignored(key: str) -> bool:
        return any(key == p or key.startswith(p + ".") for p in ignore_prefixes)

    own = module.state_dict()
    state = {k: v for k, v in state.items() if not ignored(k)}
    unexpected = sorted(k for k in state if k not in own)
    missing = sorted(
        k for k in own if k not in state and not ignored(k) and not k.endswith(_BN_COUNTER)
    )
    if missing or unexpected:
        raise KeyError(
            f"{path} does not match {type(module).__name__}: missing keys {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''} ({len(missing)}), unexpected keys "
            f"{unexpected[:10]}{' ...' if len(unexpected) > 10 else ''} ({len(unexpected)})"
        )
    mismatched = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if v.shape != own[k].shape
    ]
    if mismatched:
        raise ValueError(f"{path}: shape mismatch for {mismatched[:10]}")
    # strict=False only tolerates the classifier / BN-counter keys checked above.
    nn.Module.load_state_dict(module, state, strict=False)
