"""Part-model heads (reference-spec 1.4): map segmenter outputs to class logits (N, C).

Every head is built from a `ModelConfig` via the `HEADS` registry and called as
``head(seg_logits, image=..., features=...)`` where

* ``seg_logits``: part logits (N, K+1, H, W), channel 0 = background;
* ``image``: the normalised input (N, 3, H, W) (used only with ``concat_input``);
* ``features``: the segmenter's decoder output (N, 256, H/4, W/4) (used only by "two_headed").
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.registry import Registry
from .config import ModelConfig
from .segmenter import DECODER_CHANNELS

HEADS: Registry[nn.Module] = Registry("part head")

EPS = 1e-6
BBOX_FEATURES = ("score", "cx", "cy", "sdx", "sdy")


def _check_seg_logits(seg_logits: torch.Tensor, num_seg_channels: int) -> None:
    if seg_logits.ndim != 4 or seg_logits.shape[1] != num_seg_channels:
        raise ValueError(
            f"expected part logits of shape (N, K+1={num_seg_channels}, H, W), "
            f"got {tuple(seg_logits.shape)}"
        )


def pool_to(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Adaptive average pooling of (N, D, H, W) to `size`: a plain `avg_pool2d` when the size divides H and W.

    Same function (the same windows and means, equal within float rounding) with a cheaper backward:
    the adaptive pool's backward scatters with atomics at full resolution, the fixed-window pool's does not.
    """
    out_h, out_w = (size, size) if isinstance(size, int) else size
    height, width = x.shape[-2:]
    if height % out_h == 0 and width % out_w == 0:
        return F.avg_pool2d(x, kernel_size=(height // out_h, width // out_w))
    return F.adaptive_avg_pool2d(x, (out_h, out_w))


# --------------------------------------------------------------------------- (a) Downsampled
@HEADS.register("downsampled")
class DownsampledHead(nn.Module):
    """Softmax masks -> adaptive average pool to P x P (`pool_to`) -> tiny conv/MLP classifier.

    D = K+1 channels (K with ``drop_background``; +3 with ``concat_input``, the normalised image
    resized to the mask size is appended after the softmax masks). Layers:
    Conv2d(D, 5D, P) -> BN2d -> ReLU -> Flatten -> Linear(5D, 50) -> BN1d -> ReLU -> Linear(50, C).
    """

    supports_concat_input = True
    config_keys = ("pool_size", "drop_background", "concat_input")  # ModelSpec keys this head reads

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.num_seg_channels = config.num_seg_channels
        self.drop_background = config.drop_background
        self.concat_input = config.concat_input
        d = config.num_seg_channels - int(config.drop_background) + 3 * int(config.concat_input)
        p = config.pool_size
        self.in_channels = d
        self.pool_size = p
        self.classifier = nn.Sequential(
            nn.Conv2d(d, 5 * d, kernel_size=p),
            nn.BatchNorm2d(5 * d),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(5 * d, 50),
            nn.BatchNorm1d(50),
            nn.ReLU(),
            nn.Linear(50, config.num_classes),
        )

    def forward(
        self,
        seg_logits: torch.Tensor,
        *,
        image: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        _check_seg_logits(seg_logits, self.num_seg_channels)
        masks = F.softmax(seg_logits, dim=1)
        if self.drop_background:
            masks = masks[:, 1:]
        if self.concat_input:
            if image is None:
                raise ValueError("DownsampledHead with concat_input=True needs the normalised image")
            if image.shape[-2:] != masks.shape[-2:]:
                image = F.interpolate(image, size=masks.shape[-2:], mode="bilinear", align_corners=False)
            masks = torch.cat([masks, image], dim=1)
        return self.classifier(pool_to(masks, self.pool_size))


# ------------------------------------------------------------------------- (b) Bounding-Box
def part_geometry(
    masses: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalised centroid and spread of each part's mass (paper App. C.1 Eq. 2-4).

    The one place this formula lives: `bbox_features` applies it to the predicted softmax masks,
    `partrobust.models.losses.centroid_targets` to the one-hot ground-truth masks (decision 6). With
    S_k = sum_hw M_k + EPS, colsum_k(w) = sum_h M_k + EPS, rowsum_k(h) = sum_w M_k + EPS and
    0-based pixel indices w, h:

    * cx_k  = sum_w colsum_k(w) * w / S_k (column, horizontal), cy_k = sum_h rowsum_k(h) * h / S_k (row);
    * sdx_k = sqrt(sum_w colsum_k(w) (w - cx_k)^2 / S_k), sdy_k likewise over rows;
    * normalised by the image size: cx/W*2-1, cy/H*2-1 (in [-1, 1-2/W]), 2*sdx/W, 2*sdy/H.

    The EPS terms keep absent parts finite (no NaN); an absent part's centroid is meaningless.

    Args:
        masses: (N, K, H, W) non-negative per-part mass (no background channel).

    Returns:
        (cx, cy, sdx, sdy), each (N, K).
    """
    _, _, height, width = masses.shape
    mass = masses.sum((2, 3)) + EPS  # (N, K)
    col = masses.sum(2) + EPS  # (N, K, W)
    row = masses.sum(3) + EPS  # (N, K, H)
    grid_x = torch.arange(width, dtype=masses.dtype, device=masses.device)
    grid_y = torch.arange(height, dtype=masses.dtype, device=masses.device)
    cx = (col * grid_x).sum(2) / mass
    cy = (row * grid_y).sum(2) / mass
    sdx = ((col * (grid_x - cx.unsqueeze(-1)) ** 2).sum(2) / mass).sqrt()
    sdy = ((row * (grid_y - cy.unsqueeze(-1)) ** 2).sum(2) / mass).sqrt()
    return cx / width * 2 - 1, cy / height * 2 - 1, sdx / width * 2, sdy / height * 2


def bbox_features(seg_logits: torch.Tensor, score: str = "logits") -> torch.Tensor:
    """Per-part weighted bounding-box features (reference-spec 1.4(b), paper App. C.1).

    With L = seg_logits, M = softmax(L)[:, 1:] (background always dropped) and foreground weight
    F = sigmoid(sum_{k>=1} L_k - L_0) normalised to sum 1 over pixels:

    * s_k = sum_hw F * L_k ("logits", reference) or sum_hw F * M_k ("probability", in [0,1]);
    * (cx_k, cy_k, sdx_k, sdy_k) = `part_geometry` (M): normalised centroid and spread, cx the
      horizontal (column) centroid.

    Args:
        seg_logits: (N, K+1, H, W) part logits, channel 0 = background.
        score: "logits" or "probability".

    Returns:
        (N, K, 5) features in the order (s, cx, cy, sdx, sdy).
    """
    if seg_logits.ndim != 4 or seg_logits.shape[1] < 2:
        raise ValueError(f"expected part logits (N, K+1>=2, H, W), got {tuple(seg_logits.shape)}")
    if score not in ("logits", "probability"):
        raise ValueError(f"score must be 'logits' or 'probability', got {score!r}")
    part_logits = seg_logits[:, 1:]
    masks = F.softmax(seg_logits, dim=1)[:, 1:]  # (N, K, H, W)

    fg = torch.sigmoid(part_logits.sum(1, keepdim=True) - seg_logits[:, :1])  # (N, 1, H, W)
    fg = fg / fg.sum((2, 3), keepdim=True).clamp_min(EPS)
    values = part_logits if score == "logits" else masks
    scores = (values * fg).sum((2, 3))  # (N, K)

    cx, cy, sdx, sdy = part_geometry(masks)
    return torch.stack([scores, cx, cy, sdx, sdy], dim=2)


@HEADS.register("bbox")
class BBoxHead(nn.Module):
    """`bbox_features` -> Flatten -> BN1d(5K) -> Linear(5K, 50) -> ReLU -> BN1d(50) -> Linear(50, C).

    The background channel is always dropped from the features (it only enters the foreground
    weight), so ``drop_background`` has no effect here; ``bbox_score`` picks the score.
    """

    config_keys = ("bbox_score",)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.num_seg_channels = config.num_seg_channels
        self.score = config.bbox_score
        k = config.num_parts
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.BatchNorm1d(5 * k),
            nn.Linear(5 * k, 50),
            nn.ReLU(),
            nn.BatchNorm1d(50),
            nn.Linear(50, config.num_classes),
        )

    def forward(
        self,
        seg_logits: torch.Tensor,
        *,
        image: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        _check_seg_logits(seg_logits, self.num_seg_channels)
        return self.classifier(bbox_features(seg_logits, self.score))


# -------------------------------------------------------------------------- (c) Two-Headed
def two_headed_flatten_size(image_size: int) -> int:
    """Flatten size of the Two-Headed classifier for a square input of side `image_size`.

    Decoder map side S = image_size/4; conv3x3 (valid) -> S-2; maxpool2 -> (S-2)//2;
    conv1x1; maxpool2 -> ((S-2)//2)//2; 10 channels. 224 -> 56 -> 54 -> 27 -> 13 -> 1690.
    """
    side = ((image_size // 4 - 2) // 2) // 2
    if side < 1:
        raise ValueError(f"image_size={image_size} is too small for the Two-Headed head (need >= 24)")
    return 10 * side * side


@HEADS.register("two_headed")
class TwoHeadedHead(nn.Module):
    """Classifier on the 256-channel decoder output (the seg head stays smp's).

    Conv2d(256,50,3) -> BN -> ReLU -> MaxPool2 -> Conv2d(50,10,1) -> BN -> ReLU -> MaxPool2 ->
    Flatten -> Linear(F,100) -> ReLU -> Linear(100,C), F from ``image_size`` (224 -> 1690).
    """

    def __init__(self, config: ModelConfig, in_channels: int = DECODER_CHANNELS) -> None:
        super().__init__()
        self.image_size = config.image_size
        self.flatten_size = two_headed_flatten_size(config.image_size)
        self.classifier = nn.Sequential(
            nn.Conv2d(in_channels, 50, kernel_size=3),
            nn.BatchNorm2d(50),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(50, 10, kernel_size=1),
            nn.BatchNorm2d(10),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(self.flatten_size, 100),
            nn.ReLU(),
            nn.Linear(100, config.num_classes),
        )

    def forward(
        self,
        seg_logits: torch.Tensor,
        *,
        image: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if features is None:
            raise ValueError("TwoHeadedHead needs the decoder features (N, 256, H/4, W/4)")
        expected = self.image_size // 4
        if tuple(features.shape[-2:]) != (expected, expected):
            raise ValueError(
                f"Two-Headed head was built for image_size={self.image_size} (decoder map "
                f"{expected}x{expected}), got a {features.shape[-2]}x{features.shape[-1]} map; "
                "set ModelConfig.image_size to the input size"
            )
        return self.classifier(features)


# ------------------------------------------------------------------------------- (d) Pixel
@HEADS.register("pixel")
class PixelHead(nn.Module):
    """Class logit c = mean over all H*W pixels of sum_{k: class(k)=c} L_k (background dropped).

    No trainable parameters; ``part_to_class`` becomes a fixed (K+1, C) 0/1 matrix (row 0 = 0).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.part_to_class is None:
            raise ValueError(
                "the 'pixel' model needs ModelConfig.part_to_class (length K+1, entry 0 = -1, "
                "entry k = class of part k), e.g. from the prepared dataset's metadata"
            )
        self.num_seg_channels = config.num_seg_channels
        grouping = torch.zeros(config.num_seg_channels, config.num_classes)
        for part, cls in enumerate(config.part_to_class[1:], start=1):
            grouping[part, cls] = 1.0
        empty = [c for c in range(config.num_classes) if grouping[:, c].sum() == 0]
        if empty:
            raise ValueError(
                f"part_to_class assigns no part to classes {empty}; the pixel model needs >= 1 each"
            )
        self.register_buffer("grouping", grouping, persistent=False)

    def forward(
        self,
        seg_logits: torch.Tensor,
        *,
        image: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        _check_seg_logits(seg_logits, self.num_seg_channels)
        return torch.einsum("nkhw,kc->nc", seg_logits, self.grouping) / (
            seg_logits.shape[2] * seg_logits.shape[3]
        )
