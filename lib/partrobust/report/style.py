"""The one plotting style: display names of models, trainings and metrics, colours, markers, the rc style,
and byte-stable saving. Every table and figure of `partrobust.report` takes its names and looks from here."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import matplotlib
import pandas as pd
import seaborn as sns

from ..attacks.two_stage import STRATEGIES
from ..core.metrics import BENCHMARK_METRICS

MODEL_LABELS = {
    "resnet": "ResNet",
    "downsampled": "Downsampled",
    "bbox": "Bounding-Box",
    "two_headed": "Two-Headed",
    "pixel": "Pixel",
}
"""Registered model name -> display name, in display order (tables, legends)."""

MODEL_COLORS = dict(zip(MODEL_LABELS, sns.color_palette("colorblind", len(MODEL_LABELS))))
"""One colour-blind-safe colour per model, the same in every figure."""

TRAINING_ORDER = ("normal", "pgd", "trades")
"""Trainings in display order."""

TRAINING_MARKERS = {"normal": "o", "pgd": "s", "trades": "^"}
"""Marker per training in the seed-summary figure (Table 1 as a figure)."""

TRAINING_LINES = {"normal": ":", "pgd": "-", "trades": "--"}
"""Line style per training in the curves of Figs. 9-10 and Table 11."""

SWEEP_MARKERS = {
    "pgd": {"marker": "o", "filled": True, "label": "PGD"},
    "trades": {"marker": "o", "filled": False, "label": "TRADES"},
    "normal": {"marker": "s", "filled": True, "label": "normal"},
}
"""Marker per training in the sweep trade-off (Fig. 4), as the paper draws it: filled circles PGD, open TRADES."""

METRIC_LABELS = {
    "clean_accuracy": "clean", "pgd_accuracy": "PGD", "autoattack_accuracy": "AutoAttack", "rays_accuracy": "RayS",
    **{f"two_stage_{s}_accuracy": f"two-stage {s.replace('_', ' ')}" for s in STRATEGIES},
    **dict(zip(BENCHMARK_METRICS, ("shape vs texture", "spurious correlation", "corruptions"))),
}
"""Metric -> short display name (table columns, legends)."""

STYLE = {"font.family": "DejaVu Sans", "font.size": 9, "axes.titlesize": 9, "legend.fontsize": 7,
         "svg.hashsalt": "partrobust", "pdf.fonttype": 42}
"""The rc settings of ``make figures`` (seaborn's whitegrid theme plus these): a fixed font, so that the
same results give the same bytes on any machine with matplotlib's bundled DejaVu fonts."""


def model_label(name: str) -> str:
    """Display name of a registered model ("bbox" -> "Bounding-Box")."""
    return MODEL_LABELS.get(name, name)


def metric_label(metric: str) -> str:
    """Short display name of a metric ("autoattack_accuracy" -> "AutoAttack")."""
    return METRIC_LABELS.get(metric, metric)


def axis_label(metric: str) -> str:
    """An axis title for a metric in %: "AutoAttack accuracy (%)", "shape vs texture accuracy (%)"."""
    name = metric.replace("_accuracy", "").replace("autoattack", "AutoAttack").replace("pgd", "PGD").replace("_", " ")
    return f"{name} accuracy (%)"


def setting_label(model: str, training: str, options: Mapping[str, Any]) -> str:
    """'Bounding-Box, trades, beta=2' (options that do not apply, NaN, are left out)."""
    shown = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in options.items() if not pd.isna(v)]
    return ", ".join([model_label(model), training, *shown])


def dropped_background(frame: pd.DataFrame) -> pd.Series:
    """True for rows of part models whose background channel is dropped (``drop_background``, as read from CSV)."""
    column = frame.get("drop_background", pd.Series(False, index=frame.index))
    return column.map(lambda v: str(v).lower() in {"true", "1", "1.0"})


def model_variant_labels(frame: pd.DataFrame) -> pd.Series:
    """Each row's model name, plus "(no background)" for a part model whose background channel is dropped (Table 16)."""
    label = frame["model"].map(model_label)
    return label.where(~dropped_background(frame), label + " (no background)")


def model_colors(models: Iterable[str]) -> dict[str, Any]:
    """A colour per model: `MODEL_COLORS` for registered models, further colour-blind-safe ones for others."""
    models = list(dict.fromkeys(models))
    others = iter(sns.color_palette("colorblind", n_colors=len(MODEL_COLORS) + len(models))[len(MODEL_COLORS):])
    return {m: MODEL_COLORS[m] if m in MODEL_COLORS else next(others) for m in models}


def save_figure(fig: matplotlib.figure.Figure, path: str | Path) -> Path:
    """Saves PNG/PDF without timestamps or software tags, so unchanged figures diff as unchanged."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"Software": None} if path.suffix == ".png" else {"Creator": None, "Producer": None, "CreationDate": None}
    fig.savefig(path, dpi=150, bbox_inches="tight", metadata=metadata)
    return path
