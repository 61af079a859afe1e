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


def plot_clean_vs_adversarial(results: pd.DataFrame, adversarial_metric: str = "autoattack_accuracy") -> matplotlib.figure.Figure:
    """Clean (x) against adversarial (y) accuracy, one marker per model, as the paper's trade-off plots."""
    wide = results.pivot_table(index=["dataset", "training", "model"], columns="metric", values="value", aggfunc="first").reset_index()
    if adversarial_metric not in wide.columns:
        raise KeyError(f"results have no {adversarial_metric!r} rows; metrics present: {sorted(results.metric.unique())}")
    wide["model_label"] = wide["model"].map(model_label)
    fig, ax = plt.subplots(figsize=(4.5, 3.6))
    sns.scatterplot(data=wide, x="clean_accuracy", y=adversarial_metric, hue="model_label", style="training", s=90, ax=ax)
    for _, row in wide.iterrows():
        ax.annotate(row["model_label"], (row["clean_accuracy"], row[adversarial_metric]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel(adversarial_metric.replace("_accuracy", "").replace("autoattack", "AutoAttack").replace("pgd", "PGD") + " accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


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
