"""The one plotting style: display names of models, trainings and metrics, colours, markers, the rc style,
and byte-stable saving. Every table and figure of `partrobust.report` takes its names and looks from here."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns

from ..attacks.two_stage import STRATEGIES
from ..core.metrics import BENCHMARK_METRICS
from ..eval.benchmarks import CORRUPTIONS

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

TRAINING_LABELS = {"normal": "normal", "pgd": "PGD", "trades": "TRADES"}
"""Training method -> display name, in display order."""

TRAINING_ORDER = tuple(TRAINING_LABELS)
"""Trainings in display order."""

TRAINING_MARKERS = {"normal": "o", "pgd": "s", "trades": "^"}
"""Marker per training in the seed-summary figure (Table 1 as a figure)."""

SETTING_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "p", "h", "<", ">")
"""Markers for settings that training alone does not tell apart (a c_seg sweep in Table 1 as a figure)."""

TRAINING_LINES = {"normal": ":", "pgd": "-", "trades": "--"}
"""Line style per training in the curves of Figs. 9-10 and Table 11."""

SWEEP_MARKERS = {
    "pgd": {"marker": "o", "filled": True, "label": TRAINING_LABELS["pgd"]},
    "trades": {"marker": "o", "filled": False, "label": TRAINING_LABELS["trades"]},
    "normal": {"marker": "s", "filled": True, "label": TRAINING_LABELS["normal"]},
}
"""Marker per training in the sweep trade-off (Fig. 4), as the paper draws it: filled circles PGD, open TRADES."""

METRIC_LABELS = {
    "clean_accuracy": "clean", "pgd_accuracy": "PGD", "autoattack_accuracy": "AutoAttack", "rays_accuracy": "RayS",
    **{f"two_stage_{s}_accuracy": f"two-stage {s.replace('_', ' ')}" for s in STRATEGIES},
    **dict(zip(BENCHMARK_METRICS, ("shape vs texture", "spurious correlation", "corruptions"))),
}
"""Metric -> short display name (table columns, legends)."""

SETTING_LABELS = {
    "model": "model", "training": "training", "metric": "metric", "seed": "seed", "dataset": "dataset",
    "c_seg": r"$c_\mathrm{seg}$", "beta": "β", "eps": "ε", "eps_255": "ε (x/255)", "train_eps": "training ε",
    "lr": "learning rate", "weight_decay": "weight decay", "label_fraction": "fraction of images with part labels",
    "pool_size": "pooled size P (P×P masks)", "label_type": "kind of part labels", "labels": "part labels",
    "seg_labels": "trained with part labels", "seg_label_level": "masks of", "concat_input": "image concatenated to the masks",
    "background": "background channel", "drop_background": "background channel dropped",
    "c_seg_attack": r"attack's $c_\mathrm{seg}$", "downsample_size": "pooled size",
}
"""Setting column -> display name (axis titles, legend titles, ``key=value`` in legend entries)."""

VALUE_LABELS = {
    "segmentation": "part masks", "bounding_boxes": "bounding boxes", "centroids": "centroids",
    "none": "no parts (ResNet)", "n/a": "no parts (ResNet)",
}
"""Value of a derived setting column (`partrobust.report.paper.settings`: label_type, seg_labels) -> display
name (ticks of categorical axes, legend entries); yes/no, part/object and with/without show as they are."""

HISTORY_LABELS = {
    "train_loss": "training loss", "train_acc": "training", "val_clean_acc": "validation clean",
    "val_adv_acc": "validation adversarial", "phase": "phase", "step": "epoch (both phases)",
}
"""A run's training-history column -> display name (its training-curves figure)."""

BENCHMARK_LABELS = {
    **{m.removesuffix("_accuracy"): label for m, label in METRIC_LABELS.items() if m in BENCHMARK_METRICS},
    "common_corruption": "common corruption", **{c: c.replace("_", " ") for c in CORRUPTIONS},
}
"""Benchmark and corruption name -> display name (notebook 04's example grid)."""

DATASET_LABELS = {"part_imagenet": "Part-ImageNet", "cityscapes": "Cityscapes", "pascal_part": "PASCAL-Part"}
"""Display names of the paper's datasets."""

NAMES: dict[str, str] = {}
"""The one name map: every name a figure may show (model, training, metric, setting column and value,
history column, benchmark, corruption) -> its display name. Figures take every word from here, and the
tests check that no figure shows a key whose display name differs from it (`raw_names`)."""
for _part in (MODEL_LABELS, TRAINING_LABELS, METRIC_LABELS, SETTING_LABELS, VALUE_LABELS, HISTORY_LABELS, BENCHMARK_LABELS,
              DATASET_LABELS):
    _clash = {k for k in _part if k in NAMES and NAMES[k] != _part[k]}
    if _clash:
        raise ValueError(f"names with two display names: {sorted(_clash)}")
    NAMES.update(_part)


def label(name: object) -> str:
    """Display name of any model, training, metric, setting column or value in `NAMES` ("bbox" ->
    "Bounding-Box", "c_seg" -> "$c_\\mathrm{seg}$"); numbers and unknown names as they are, NaN as ""."""
    if isinstance(name, float):
        return "" if pd.isna(name) else f"{name:g}"
    return NAMES.get(str(name), str(name))


def raw_names() -> set[str]:
    """The names a figure must never show as they are: keys of `NAMES` whose display name differs."""
    return {k for k, v in NAMES.items() if k != v}


STYLE = {"font.family": "DejaVu Sans", "font.size": 9, "axes.titlesize": 9, "legend.fontsize": 7,
         "svg.hashsalt": "partrobust", "pdf.fonttype": 42}
"""The rc settings of ``make figures`` (seaborn's whitegrid theme plus these): a fixed font, so that the
same results give the same bytes on any machine with matplotlib's bundled DejaVu fonts."""


def model_label(name: str) -> str:
    """Display name of a registered model ("bbox" -> "Bounding-Box")."""
    return MODEL_LABELS.get(name, name)


def model_rank(name: object) -> int:
    """A model's place in display order (`MODEL_LABELS`); unknown models after the known ones."""
    return _MODEL_RANK.get(name, len(_MODEL_RANK))


def training_rank(name: object) -> int:
    """A training's place in display order (`TRAINING_ORDER`); unknown trainings after the known ones."""
    return _TRAINING_RANK.get(name, len(_TRAINING_RANK))


_MODEL_RANK = {m: i for i, m in enumerate(MODEL_LABELS)}
_TRAINING_RANK = {t: i for i, t in enumerate(TRAINING_ORDER)}


def dataset_label(name: str) -> str:
    """Display name of one of the paper's datasets ("part_imagenet" -> "Part-ImageNet"); others as they are."""
    return DATASET_LABELS.get(name, name)


def training_label(name: str) -> str:
    """Display name of a training method ("pgd" -> "PGD")."""
    return TRAINING_LABELS.get(name, name)


def metric_label(metric: str) -> str:
    """Short display name of a metric ("autoattack_accuracy" -> "AutoAttack"; one not in `METRIC_LABELS` loses
    its ``_accuracy`` and underscores: "common_corruption_fog_accuracy" -> "common corruption fog")."""
    return METRIC_LABELS.get(metric, metric.removesuffix("_accuracy").replace("_", " "))


def axis_label(metric: str) -> str:
    """An axis title for a metric in %: "AutoAttack accuracy (%)", "shape vs texture accuracy (%)"."""
    benchmark = metric.removesuffix("_accuracy")
    name = BENCHMARK_LABELS[benchmark] if metric in BENCHMARK_METRICS else metric_label(metric)
    return f"{name} accuracy (%)"


def option_text(key: str, value: Any) -> str:
    """'$c_\\mathrm{seg}$=0.5', 'β=2', 'kind of part labels=bounding boxes': one setting as a legend shows it."""
    return f"{label(key)}={label(value)}"


def setting_label(model: str, training: str, options: Mapping[str, Any]) -> str:
    """'Bounding-Box, TRADES, β=2' (options that do not apply, NaN, are left out)."""
    shown = [option_text(k, v) for k, v in options.items() if not pd.isna(v)]
    return ", ".join([model_label(model), training_label(training), *shown])


def seeds_caption(seeds: Iterable[int], confidence: float | None = 0.95) -> str:
    """What a point of a summary over seeds is, from each point's number of seeds: "one seed (no interval)",
    "mean ± 95% CI over 3 seeds", "mean ± 95% CI over 1-3 seeds (one seed: no interval)"; without a
    `confidence` (means drawn without intervals): "one seed", "mean over 3 seeds"."""
    counts = sorted({int(s) for s in seeds})
    if not counts:
        raise ValueError("seeds_caption needs the number of seeds of at least one point")
    if counts == [1]:
        return "one seed (no interval)" if confidence else "one seed"
    span = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    if not confidence:
        return f"mean over {span} seeds"
    single = " (one seed: no interval)" if counts[0] == 1 else ""
    return f"mean ± {100 * confidence:.0f}% CI over {span} seeds{single}"


def clipped_errors(mean: Any, half_width: Any, low: float = 0.0, high: float = 100.0):
    """Error bars (a 2 x n array of lower and upper lengths) of the intervals mean ± half_width clipped to
    [low, high] (accuracies in %: no interval below 0 or above 100); None when no point has an interval."""
    mean = np.atleast_1d(np.asarray(mean, dtype=float))
    half = np.broadcast_to(np.atleast_1d(np.asarray(half_width, dtype=float)), mean.shape)
    if np.isnan(half).all():
        return None
    half = np.nan_to_num(half, nan=0.0)
    lower = np.clip(mean - half, low, high)
    upper = np.clip(mean + half, low, high)
    return np.vstack([np.maximum(mean - lower, 0.0), np.maximum(upper - mean, 0.0)])


def dropped_background(frame: pd.DataFrame) -> pd.Series:
    """True for rows of part models whose background channel is dropped (``drop_background``, as read from CSV)."""
    column = frame.get("drop_background", pd.Series(False, index=frame.index))
    return column.map(lambda v: str(v).lower() in {"true", "1", "1.0"})


def model_variant_labels(frame: pd.DataFrame) -> pd.Series:
    """Each row's model name, plus "(no background)" for a part model whose background channel is dropped (Table 16)."""
    name = frame["model"].map(model_label)
    return name.where(~dropped_background(frame), name + " (no background)")


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
