"""AdaIN style transfer (Huang and Belongie 2017), the Stylized-ImageNet procedure (Geirhos et al. 2019).

The networks are the usual pair of weight files (``vgg_normalised.pth``: VGG-19 with a leading
1x1 colour conv, used up to relu4_1; ``decoder.pth``: its mirror), read from local paths the user
gives; nothing is downloaded. The layers are laid out as in those files (an ``nn.Sequential`` with
reflection padding, so the state-dict keys are the layer positions), and each convolution's width
is read from the file, so a file of the same layout at any width loads (the tests use tiny ones).
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...core.fileio import load_checkpoint

ENCODER_LAYOUT = "c" + "pcr" * 2 + "m" + "pcr" * 2 + "m" + "pcr" * 4 + "m" + "pcr"
"""vgg_normalised.pth up to relu4_1 (positions 0-30): c conv (no padding), p reflection pad, r ReLU, m max pool."""
DECODER_LAYOUT = "pcr" + "u" + "pcr" * 4 + "u" + "pcr" * 2 + "u" + "pcr" + "pc"
"""decoder.pth (positions 0-28): u nearest upsampling x2."""


def build(layout: str, state: dict[str, torch.Tensor], where: str) -> nn.Sequential:
    """An ``nn.Sequential`` of `layout` whose convolutions take their shapes and values from `state`."""
    layers: list[nn.Module] = []
    for i, token in enumerate(layout):
        if token == "c":
            key = f"{i}.weight"
            if key not in state or f"{i}.bias" not in state:
                raise KeyError(f"{where}: no {key} / {i}.bias: not an AdaIN weight file of the expected layout")
            out_ch, in_ch, kh, kw = state[key].shape
            layers.append(nn.Conv2d(in_ch, out_ch, (kh, kw)))
        else:
            layers.append({"p": lambda: nn.ReflectionPad2d(1), "r": lambda: nn.ReLU(),
                           "m": lambda: nn.MaxPool2d(2, 2, 0, ceil_mode=True),
                           "u": lambda: nn.Upsample(scale_factor=2, mode="nearest")}[token]())
    net = nn.Sequential(*layers)
    own = {k: v for k, v in state.items() if k in net.state_dict()}
    try:
        net.load_state_dict(own)
    except RuntimeError as err:
        raise ValueError(f"{where}: weights do not fit the layout: {err}") from None
    return net.eval().requires_grad_(False)


def load_network(path: str | Path, layout: str) -> nn.Sequential:
    """The network of `layout` from a local weight file, read by the project's one safe loader
    (`partrobust.core.fileio.load_checkpoint`: tensors only, never code; errors name the file)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"AdaIN weight file {path} is a directory; give the .pth file itself")
    if not path.is_file():
        raise FileNotFoundError(f"AdaIN weight file {path} does not exist (it is never downloaded; give a local file)")
    state = load_checkpoint(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    return build(layout, state, str(path))


@functools.lru_cache(maxsize=2)
def load_pair(encoder: str, decoder: str) -> tuple[nn.Sequential, nn.Sequential]:
    """(encoder, decoder) from their files, cached per process."""
    return load_network(encoder, ENCODER_LAYOUT), load_network(decoder, DECODER_LAYOUT)


def _mean_std(features: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    flat = features.flatten(2)
    return flat.mean(-1)[..., None, None], (flat.var(-1, unbiased=True) + eps).sqrt()[..., None, None]


def adaptive_instance_norm(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """Content features renormalised to the style features' channel means and standard deviations."""
    c_mean, c_std = _mean_std(content)
    s_mean, s_std = _mean_std(style)
    return (content - c_mean) / c_std * s_std + s_mean


@torch.no_grad()
def stylize(content: torch.Tensor, style: torch.Tensor, encoder: nn.Module, decoder: nn.Module, alpha: float = 1.0) -> torch.Tensor:
    """`content` (B,3,H,W in [0,1]) drawn in the style of `style` (B,3,h,w); alpha 1 = full style, 0 = reconstruction."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    f_content = encoder(content)
    target = alpha * adaptive_instance_norm(f_content, encoder(style)) + (1 - alpha) * f_content
    out = decoder(target)
    if out.shape[-2:] != content.shape[-2:]:
        out = F.interpolate(out, size=content.shape[-2:], mode="bilinear", align_corners=False)
    return out.clamp(0, 1)
