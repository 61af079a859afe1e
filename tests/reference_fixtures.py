"""Files in the layout of the authors' released checkpoints, made from our models with random weights.

The reference-layout module trees are built here from the facts of the reference code (wrapper with
``mean``/``std`` buffers and ``_model``; era A: the normaliser as index 0 of an ``nn.Sequential``;
the heads as ``nn.Sequential`` with the reference's indices, a leading pool / Identity), around our
model's ResNet, smp DeepLabV3+ and head layers, wrapped in ``nn.DataParallel`` (``module.``). Their
forward is written here from the reference's description, independently of the importer, so the
logits of an imported model can be compared with the source's.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from partrobust.models import ModelConfig, build_model
from partrobust.models.counts import PAPER_DATASETS

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
EXPERIMENTS = {"resnet": "normal", "downsampled": "part-pooling-4-semi", "bbox": "part-wbbox-norm_img-semi"}
REFERENCE_DATASETS = {"part_imagenet": "part-imagenet", "cityscapes": "cityscapes", "pascal_part": "pascal-part"}


class Normalize(nn.Module):
    """The reference's normaliser (era A ``Normalize``, era B/C the buffers of ``Classifier``/``SegClassifier``)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


def reference_bbox_features(logits: torch.Tensor) -> torch.Tensor:
    """WeightedBBoxFeatureExtractor with norm_img, from the reference's description (grid of the input's size)."""
    eps = 1e-6
    size = logits.shape[-1]
    grid = torch.arange(size, dtype=logits.dtype)
    masks = F.softmax(logits, dim=1)[:, 1:]
    fg = torch.sigmoid(logits[:, 1:].sum(1) - logits[:, 0])
    fg = fg / fg.sum((1, 2), keepdim=True).clamp_min(eps)
    score = (logits[:, 1:] * fg.unsqueeze(1)).sum((2, 3))
    mass = masks.sum((2, 3)) + eps
    cols, rows = masks.sum(2) + eps, masks.sum(3) + eps
    cx, cy = (cols * grid).sum(-1) / mass, (rows * grid).sum(-1) / mass
    sdx = ((cols * (grid - cx.unsqueeze(-1)) ** 2).sum(-1) / mass).sqrt()
    sdy = ((rows * (grid - cy.unsqueeze(-1)) ** 2).sum(-1) / mass).sqrt()
    features = torch.stack([score, cx / size * 2 - 1, cy / size * 2 - 1, sdx / size * 2, sdy / size * 2], dim=2)
    return features  # [B, K, 5], flattened part-major by core_model's Flatten


class PartInner(nn.Module):
    """The reference's part model (PoolingModel / WeightedBBoxModel): a segmenter and ``core_model``."""

    def __init__(self, kind: str, segmenter: nn.Module, core_model: nn.Sequential, attribute: str) -> None:
        super().__init__()
        self.kind, self.attribute = kind, attribute
        setattr(self, attribute, segmenter)
        self.core_model = core_model

    def forward(self, x):
        logits = getattr(self, self.attribute)(x)
        if self.kind == "downsampled":
            return self.core_model(F.softmax(logits, dim=1))
        return self.core_model(reference_bbox_features(logits))


class Wrapper(nn.Module):
    """Era B/C ``Classifier`` / ``SegClassifier``: mean/std buffers, then ``_model``."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        normalize = Normalize()
        self.register_buffer("mean", normalize.mean)
        self.register_buffer("std", normalize.std)
        self._model = inner

    def forward(self, x):
        return self._model((x - self.mean) / self.std)


class EraA(nn.Module):
    """Era A part model: the normaliser inside the segmenter (``segmenter.0``), the head as ``core_model``."""

    def __init__(self, kind: str, smp_net: nn.Module, core_model: nn.Sequential) -> None:
        super().__init__()
        self.segmenter = nn.Sequential(Normalize(), smp_net)
        self.core_model = core_model
        self.kind = kind

    def forward(self, x):
        logits = self.segmenter(x)
        if self.kind == "downsampled":
            return self.core_model(F.softmax(logits, dim=1))
        return self.core_model(reference_bbox_features(logits))


def randomise(model: nn.Module, seed: int) -> nn.Module:
    """Random weights and random BatchNorm statistics (default statistics would hide swapped layers)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
                module.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=generator)))
            elif isinstance(module, (nn.Conv2d, nn.Linear)):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2.0 / module.weight[0].numel()) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
    return model


def our_model(kind: str, dataset: str, backbone: str, seed: int = 0) -> nn.Module:
    num_classes, num_parts = PAPER_DATASETS[dataset]
    key = "arch" if kind == "resnet" else "encoder"
    config = ModelConfig(name=kind, num_classes=num_classes, num_parts=0 if kind == "resnet" else num_parts, **{key: backbone})
    return randomise(build_model(config), seed).eval()


def reference_model(ours: nn.Module, kind: str, era: str) -> nn.Module:
    """The reference's module tree of `era` around `ours`' layers (shared modules: same weights)."""
    if kind == "resnet":
        return nn.Sequential(Normalize(), ours.net) if era == "A" else Wrapper(ours.net)
    smp_net = ours.segmenter.net
    lead = nn.AdaptiveAvgPool2d(ours.head.pool_size) if kind == "downsampled" else nn.Identity()
    core_model = nn.Sequential(lead, *ours.head.classifier)
    if era == "A":
        return EraA(kind, smp_net, core_model)
    attribute = "_segmenter" if (kind == "downsampled" and era == "C") else "segmenter"
    return Wrapper(PartInner(kind, smp_net, core_model, attribute))


def namespace(kind: str, dataset: str, backbone: str, training: str = "pgd", **changes) -> argparse.Namespace:
    num_classes, num_parts = PAPER_DATASETS[dataset]
    values = dict(experiment=EXPERIMENTS[kind], dataset=REFERENCE_DATASETS[dataset], seg_labels=num_parts + 1,
                  num_classes=num_classes, epsilon=0.03137254901, adv_train={"normal": "none"}.get(training, training),
                  adv_beta=0.3, seg_const_trn=0.5, arch=backbone if kind == "resnet" else "resnet18",
                  seg_backbone=backbone if kind != "resnet" else "resnet18", seg_arch="deeplabv3plus", epochs=50, lr=0.1,
                  wd=5e-4, seed=0, distributed=False, gpu=None)
    values.update(changes)
    return argparse.Namespace(**values)


def checkpoint(reference: nn.Module, args: argparse.Namespace | None) -> dict:
    """What the reference's main.py saves: the DataParallel model's state dict (``module.``) and the run's args."""
    state = nn.DataParallel(reference).state_dict()
    if args is None:
        return state
    return {"epoch": 50, "state_dict": state, "optimizer": {"state": {}, "param_groups": []},
            "scaler": {"scale": 65536.0}, "best_acc1": 42.0, "args": args}
