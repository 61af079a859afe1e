"""Figures from tidy result tables (seaborn), saved with byte-stable metadata."""
from __future__ import annotations

from pathlib import Path

import matplotlib

import seaborn as sns


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


METRIC_LABELS = {"clean_accuracy": "clean", "pgd_accuracy": "PGD", "autoattack_accuracy": "AutoAttack"}


TRAINING_ORDER = ("normal", "pgd", "trades")


STYLE = {"font.family": "DejaVu Sans", "font.size": 9, "axes.titlesize": 9, "legend.fontsize": 7,
         "svg.hashsalt": "partrobust", "pdf.fonttype": 42}
"""The one style of every figure (seaborn's whitegrid theme plus these): a fixed font, so that the
same results give the same bytes on any machine with matplotlib's bundled DejaVu fonts."""
