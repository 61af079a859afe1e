"""Figures from tidy result tables (seaborn), saved with byte-stable metadata."""
from __future__ import annotations

from pathlib import Path

import matplotlib

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

MODEL_LABELS = {
    "resnet": "ResNet",
    "downsampled": "Downsampled",
    "bbox": "Bounding-Box",
    "two_headed": "Two-Headed",
    "pixel": "Pixel",
}


def model_label(name: str) -> str:
    """Display name of a registered model ("bbox" -> "Bounding-Box")."""
    return MODEL_LABELS.get(name, name)


def save_figure(fig: matplotlib.figure.Figure, path: str | Path) -> Path:
    """Saves PNG/PDF without timestamps or software tags, so unchanged figures diff as unchanged."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"Software": None} if path.suffix == ".png" else {"Creator": None, "Producer": None, "CreationDate": None}
    fig.savefig(path, dpi=150, bbox_inches="tight", metadata=metadata)
    return path


def accuracy_table(results: pd.DataFrame) -> pd.DataFrame:
    """Wide table (one row per dataset x training x model, one column per metric)."""
    table = results.pivot_table(index=["dataset", "training", "model"], columns="metric", values="value", aggfunc="first")
    return table.reindex(columns=[c for c in _METRIC_ORDER if c in table.columns] + [c for c in table.columns if c not in _METRIC_ORDER])


_METRIC_ORDER = [
    "clean_accuracy", "pgd_accuracy", "autoattack_accuracy",
    "clean_pixel_accuracy", "pgd_pixel_accuracy", "autoattack_pixel_accuracy",
]


def plot_training_history(history: pd.DataFrame, title: str = "") -> matplotlib.figure.Figure:
    """Loss and accuracies per epoch over both training phases (clean, then adversarial)."""
    frame = history.reset_index(drop=True).assign(step=lambda d: range(1, len(d) + 1))
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(8, 3))
    sns.lineplot(data=frame, x="step", y="train_loss", hue="phase", marker="o", ax=ax_loss)
    accuracies = [c for c in ("train_acc", "val_clean_acc", "val_adv_acc") if c in frame.columns]
    long = frame.melt(id_vars=["step", "phase"], value_vars=accuracies, var_name="accuracy", value_name="percent").dropna()
    sns.lineplot(data=long, x="step", y="percent", hue="accuracy", style="phase", marker="o", ax=ax_acc)
    ax_loss.set_xlabel("epoch (both phases)")
    ax_acc.set_xlabel("epoch (both phases)")
    ax_acc.set_ylabel("accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
