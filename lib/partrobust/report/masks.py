"""Figures of images with their part masks (dataset previews, clean vs attacked predictions)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from ..core.fileio import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..data.dataset import PartDataset



def _part_colors(n: int) -> np.ndarray:
    """n fixed qualitative colours (uint8 RGB): tab20, tab20b, tab20c, then cycled."""
    from matplotlib import colormaps

    base = np.concatenate(
        [np.asarray(colormaps[name].colors)[:, :3] for name in ("tab20", "tab20b", "tab20c")]
    )
    reps = -(-n // len(base)) if n else 1
    return np.rint(np.tile(base, (reps, 1))[:n] * 255).astype(np.uint8)


def _to_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def mask_to_rgb(mask: np.ndarray | torch.Tensor, num_parts: int) -> np.ndarray:
    """Colour an (H,W) part mask: background black, part k a fixed qualitative colour."""
    m = _to_numpy(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be (H,W), got shape {m.shape}")
    if m.size and (m.min() < 0 or m.max() > num_parts):
        raise ValueError(f"mask values must lie in 0..{num_parts}, got {m.min()}..{m.max()}")
    lut = np.concatenate([np.zeros((1, 3), np.uint8), _part_colors(num_parts)])
    return lut[m.astype(np.int64)]


def _image_to_hwc(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """(3,H,W) or (H,W,3), float in [0,1] or uint8 -> (H,W,3) for imshow."""
    x = _to_numpy(image)
    if x.ndim != 3:
        raise ValueError(f"image must be 3-D, got shape {x.shape}")
    if x.shape[0] == 3 and x.shape[-1] != 3:
        x = x.transpose(1, 2, 0)
    if x.dtype == np.uint8:
        return x
    return np.clip(x.astype(np.float32), 0.0, 1.0)


def plot_samples(
    images: Sequence[np.ndarray | torch.Tensor] | torch.Tensor | np.ndarray,
    masks_list: Sequence[tuple[str, Sequence[np.ndarray | torch.Tensor] | torch.Tensor | np.ndarray]],
    labels: Sequence[int] | torch.Tensor | np.ndarray,
    class_names: Sequence[str],
    num_parts: int,
    preds: Sequence[int] | torch.Tensor | np.ndarray | None = None,
    ncols: int = 8,
) -> "Figure":
    """Grid with one column per sample: a row of images, then one row per (title, masks).

    Image titles are the true class; with `preds` they read "true -> pred" in green (correct)
    or red (wrong). More than `ncols` samples wrap into further blocks of rows. Used for
    dataset previews and for clean-vs-attacked figures like the paper's Fig. 5. The figure
    is created with pyplot: assign it (``fig = plot_samples(...)``) in notebooks.
    """
    import matplotlib.pyplot as plt

    n = len(images)
    labels_np = _to_numpy(labels).astype(int).tolist() if n else []
    preds_np = None if preds is None else _to_numpy(preds).astype(int).tolist()
    if len(labels_np) != n or (preds_np is not None and len(preds_np) != n):
        raise ValueError(f"got {n} images but {len(labels_np)} labels / preds")
    for title, masks in masks_list:
        if len(masks) != n:
            raise ValueError(f"masks row {title!r} has {len(masks)} masks for {n} images")
    if n == 0:
        raise ValueError("plot_samples needs at least one sample")
    ncols = max(1, min(ncols, n))
    blocks = -(-n // ncols)
    rows_per_block = 1 + len(masks_list)
    nrows = blocks * rows_per_block
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(1.6 * ncols, 1.75 * nrows), squeeze=False, constrained_layout=True
    )
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    for i in range(n):
        block, col = divmod(i, ncols)
        top = block * rows_per_block
        ax = axes[top, col]
        ax.imshow(_image_to_hwc(images[i]), interpolation="nearest")
        true_name = class_names[labels_np[i]]
        if preds_np is None:
            ax.set_title(true_name, fontsize=8)
        else:
            ok = preds_np[i] == labels_np[i]
            ax.set_title(
                f"{true_name}\n-> {class_names[preds_np[i]]}",
                fontsize=8,
                color="tab:green" if ok else "tab:red",
            )
        for r, (_, masks) in enumerate(masks_list, start=1):
            axes[top + r, col].imshow(mask_to_rgb(masks[i], num_parts), interpolation="nearest")
    for block in range(blocks):
        top = block * rows_per_block
        axes[top, 0].set_ylabel("image", fontsize=8)
        for r, (title, _) in enumerate(masks_list, start=1):
            axes[top + r, 0].set_ylabel(title, fontsize=8)
    return fig


def plot_image_mask_grid(dataset: "PartDataset", n: int = 16, seed: int = 0, ncols: int = 8) -> "Figure":
    """Plot n random samples of a PartDataset (chosen with `seed`) with their true masks."""
    if len(dataset) == 0:
        raise ValueError("dataset is empty")
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(dataset), size=min(n, len(dataset)), replace=False))
    items = [dataset[int(i)] for i in idx]
    return plot_samples(
        [im for im, _, _ in items],
        [("true masks", [m for _, m, _ in items])],
        [lab for _, _, lab in items],
        dataset.metadata.classes,
        dataset.metadata.num_parts,
        ncols=ncols,
    )


def plot_predictions_panel(
    true_masks: Sequence[np.ndarray | torch.Tensor] | torch.Tensor,
    labels: Sequence[int] | torch.Tensor,
    settings: Sequence[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]],
    class_names: Sequence[str],
    num_parts: int,
) -> "Figure":
    """Paper Fig. 5-style panel: ground truth, then for each setting its inputs and predicted masks.

    Args:
        true_masks, labels: ground truth of n samples (first row, titled with the true class).
        settings: (name, images, predicted masks, predicted classes) per setting, e.g.
            ("clean", x, masks, preds) and ("PGD", x_adv, masks_adv, preds_adv). Each adds an
            image row and a mask row; the mask is titled with the predicted class, green when
            right and red when wrong.
    """
    import matplotlib.pyplot as plt

    labels_np = _to_numpy(labels).astype(int).tolist()
    n = len(labels_np)
    nrows = 1 + 2 * len(settings)
    fig, axes = plt.subplots(nrows, n, figsize=(1.6 * n, 1.8 * nrows), squeeze=False, constrained_layout=True)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    for i in range(n):
        axes[0, i].imshow(mask_to_rgb(true_masks[i], num_parts), interpolation="nearest")
        axes[0, i].set_title(class_names[labels_np[i]], fontsize=8)
        for s, (_, images, masks, preds) in enumerate(settings):
            pred = int(preds[i])
            axes[1 + 2 * s, i].imshow(_image_to_hwc(images[i]), interpolation="nearest")
            ax = axes[2 + 2 * s, i]
            ax.imshow(mask_to_rgb(masks[i], num_parts), interpolation="nearest")
            ax.set_title(class_names[pred], fontsize=8, color="tab:green" if pred == labels_np[i] else "tab:red")
    axes[0, 0].set_ylabel("ground truth", fontsize=8)
    for s, (name, *_rest) in enumerate(settings):
        axes[1 + 2 * s, 0].set_ylabel(f"{name} input", fontsize=8)
        axes[2 + 2 * s, 0].set_ylabel(f"{name} prediction", fontsize=8)
    return fig


EXAMPLES_FILE = "examples.npz"
"""A part-model run's Fig. 5 samples (``<run>/figures/examples.npz``): what the figure is drawn from."""


def save_examples(examples: dict, path: str | Path, class_names: Sequence[str], num_parts: int, title: str = "") -> Path:
    """Stores `Run.examples` (images as uint8, masks, labels, predictions) so the panel can be redrawn
    without the checkpoint or the dataset (notebook 05 and ``make figures`` read these)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def image_bytes(x: torch.Tensor) -> np.ndarray:
        return np.rint(_to_numpy(x).clip(0, 1) * 255).astype(np.uint8)

    def ints(x: torch.Tensor) -> np.ndarray:
        return _to_numpy(x).astype(np.int16)

    buffer = io.BytesIO()
    np.savez_compressed(
        buffer, images=image_bytes(examples["images"]), pgd_images=image_bytes(examples["pgd_images"]),
        true_masks=ints(examples["true_masks"]), clean_masks=ints(examples["clean_masks"]),
        pgd_masks=ints(examples["pgd_masks"]), labels=ints(examples["labels"]), clean_pred=ints(examples["clean_pred"]),
        pgd_pred=ints(examples["pgd_pred"]), class_names=np.asarray(list(class_names), dtype=str),
        num_parts=np.asarray(num_parts), title=np.asarray(title))
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_examples(path: str | Path) -> dict:
    """The arrays `save_examples` wrote (a corrupt or foreign file raises ValueError naming it)."""
    keys = {"images", "pgd_images", "true_masks", "clean_masks", "pgd_masks", "labels", "clean_pred", "pgd_pred",
            "class_names", "num_parts", "title"}
    try:
        with np.load(path, allow_pickle=False) as data:
            stored = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path}: not a readable examples file ({err})") from None
    if not keys <= set(stored):
        raise ValueError(f"{path}: not an examples file (missing {sorted(keys - set(stored))})")
    return stored


def plot_examples(examples: dict, title: str | None = None) -> "Figure":
    """The paper's Fig. 5 panel (ground truth; clean and PGD inputs with predicted masks) from `load_examples`."""
    fig = plot_predictions_panel(
        examples["true_masks"], examples["labels"],
        [("clean", examples["images"], examples["clean_masks"], examples["clean_pred"]),
         ("PGD", examples["pgd_images"], examples["pgd_masks"], examples["pgd_pred"])],
        [str(c) for c in examples["class_names"]], int(examples["num_parts"]))
    fig.suptitle(str(examples["title"]) if title is None else title, fontsize=9)
    return fig
