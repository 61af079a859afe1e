"""Figures from tidy result tables (seaborn), saved with byte-stable metadata."""
from __future__ import annotations

from pathlib import Path

import matplotlib

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from ..core.metrics import METRIC_ORDER
from ..core.results import distinguishing_columns

MODEL_LABELS = {
    "resnet": "ResNet",
    "downsampled": "Downsampled",
    "bbox": "Bounding-Box",
    "two_headed": "Two-Headed",
    "pixel": "Pixel",
}


MODEL_COLORS = dict(zip(MODEL_LABELS, sns.color_palette("colorblind", len(MODEL_LABELS))))
"""One colour-blind-safe colour per model, the same in every figure."""

TRAINING_MARKERS = {"normal": "o", "pgd": "s", "trades": "^"}


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
    return table.reindex(columns=[c for c in METRIC_ORDER if c in table.columns] + [c for c in table.columns if c not in METRIC_ORDER])


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


def _setting_label(model: str, training: str, extra: dict) -> str:
    """'Bounding-Box, trades, beta=2' (options that do not apply are left out)."""
    options = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in extra.items() if not pd.isna(v)]
    return ", ".join([model_label(model), training, *options])


def plot_seed_summary(summary: pd.DataFrame, x_metric: str = "clean_accuracy", y_metric: str = "autoattack_accuracy",
                      title: str = "") -> matplotlib.figure.Figure:
    """Mean of `y_metric` against mean of `x_metric` per model and training, with their confidence
    intervals as error bars (input: `partrobust.report.stats.seed_summary`). Colour: model; marker: training."""
    extra = distinguishing_columns(summary)
    fig, ax = plt.subplots(figsize=(5.2, 4))
    for (model, training, *values), group in summary.groupby(["model", "training", *extra], sort=False, dropna=False):
        cells = group.set_index("metric")
        if not {x_metric, y_metric} <= set(cells.index):
            continue
        x, y = cells.loc[x_metric], cells.loc[y_metric]
        ax.errorbar(x["mean"], y["mean"], xerr=None if pd.isna(x.half_width) else x.half_width,
                    yerr=None if pd.isna(y.half_width) else y.half_width,
                    marker=TRAINING_MARKERS.get(training, "D"), color=MODEL_COLORS.get(model), markersize=7, capsize=3,
                    linestyle="none", label=_setting_label(model, training, dict(zip(extra, values))))
    seeds = sorted(summary.seeds.astype(int).unique())
    confidence = summary.confidence.iloc[0] if "confidence" in summary else 0.95
    ax.set_xlabel(f"{x_metric.replace('_', ' ')} (%)")
    ax.set_ylabel(f"{y_metric.replace('_', ' ')} (%)")
    datasets = ", ".join(sorted(summary.dataset.astype(str).unique())) + ": " if "dataset" in summary else ""
    ax.set_title(title or f"{datasets}mean ± {100 * confidence:.0f}% CI over {'/'.join(map(str, seeds))} seeds", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig
