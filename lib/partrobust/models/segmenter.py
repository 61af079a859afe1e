"""DeepLabv3+ part segmenter (smp), split into decoder features and segmentation head.

The split lets the Two-Headed model attach its classifier to the 256-channel decoder output
while the usual seg head still produces the part logits, all from one pass.

Note on parameter counts (installed smp, and every smp release the reference could have used):
smp's DeepLabV3Plus builds its segmentation head as a 1x1 conv, ``Conv2d(256, K+1, 1)``
(257*(K+1) params), not the 3x3 conv assumed by the hand count in reference-spec 1.3
(2305*(K+1)). Encoder (23,508,032) and decoder (3,169,296) match the spec exactly, so every
part model here has 2048*(K+1) fewer parameters than the spec's numbers
(resnet50, K+1=41: 26,687,865 vs 26,771,833).
"""
from __future__ import annotations

import segmentation_models_pytorch as smp
import torch
from torch import nn

from .config import ModelConfig

DECODER_CHANNELS = 256
ATROUS_RATES = (12, 24, 36)


class DeepLabV3PlusSegmenter(nn.Module):
    """smp DeepLabV3+ returning part logits (N, K+1, H, W) for *normalised* images.

    Args:
        encoder: smp encoder name (e.g. "resnet50"); weights are never downloaded.
        num_seg_channels: K+1 output channels (channel 0 = background).
        output_stride: encoder output stride, 8 or 16.
    """

    def __init__(self, encoder: str, num_seg_channels: int, output_stride: int = 16) -> None:
        super().__init__()
        self.net = smp.DeepLabV3Plus(
            encoder_name=encoder,
            encoder_weights=None,
            in_channels=3,
            classes=num_seg_channels,
            encoder_depth=5,
            encoder_output_stride=output_stride,
            decoder_channels=DECODER_CHANNELS,
            decoder_atrous_rates=ATROUS_RATES,
            upsampling=4,
            aux_params=None,
        )
        self.num_seg_channels = num_seg_channels
        self.out_channels = DECODER_CHANNELS

    @property
    def encoder(self) -> nn.Module:
        """The smp encoder (the part that `pretrained_path` initialises)."""
        return self.net.encoder

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (N,3,H,W) -> decoder output (N, 256, H/4, W/4).

        H and W must be divisible by the output stride (smp raises with the padded size).
        """
        self.net.check_input_shape(x)
        return self.net.decoder(self.net.encoder(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Decoder output (N,256,H/4,W/4) -> part logits (N, K+1, H, W)."""
        return self.net.segmentation_head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build_segmenter(config: ModelConfig) -> DeepLabV3PlusSegmenter:
    """DeepLabV3+ with `config.encoder`, K+1 outputs and `config.output_stride`."""
    return DeepLabV3PlusSegmenter(config.encoder, config.num_seg_channels, config.output_stride)
