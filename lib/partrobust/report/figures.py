"""Every figure the repository draws, one function each (names, colours and markers from `partrobust.report.style`).

* A run's training curves (`plot_training_history`), drawn when the run finishes.
* Table 1 as a figure (`plot_seed_summary`, and `save_seed_report` with its table), the sweep
  trade-off of Fig. 4 (`plot_sweep`), notebook 02's figures.
* The paper's figures (`FIGURES`), each drawn from `FigureData` (the results with their source and
  seed means) by ``make figures``; notebooks 03 and 04 call the same functions on their runs (Figs.
  8-10 and Table 11). A paper figure whose runs do not exist raises `Missing`, naming the runs it
  needs: never an empty figure.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from ..core.fileio import atomic_write_text
from ..core.metrics import BENCHMARK_METRICS, SUMMARY_METRICS
from ..core.results import distinguishing_columns, results_csv
from .masks import EXAMPLES_FILE, load_examples, plot_examples
from .paper import NOTEBOOK_03, NOTEBOOK_04, in_main_setup, settings, source_label, with_source
from .stats import seed_summary, seed_table_markdown
from .style import (
    MODEL_COLORS,
    SWEEP_MARKERS,
    TRAINING_LINES,
    TRAINING_MARKERS,
    axis_label,
    dropped_background,
    metric_label,
    model_colors,
    model_label,
    model_variant_labels,
    save_figure,
    setting_label,
)
from .sweep_analysis import frontier, present_metrics, wide_runs


class Missing(Exception):
    """A figure whose runs do not exist; the message says which runs are needed."""


@dataclass
class FigureData:
    """What the paper's figures are drawn from, computed once: the results with their ``source``, their
    seed averages (`partrobust.report.paper.settings`) and the Fig. 5 example files by run id."""

    results: pd.DataFrame
    ours: pd.DataFrame
    examples: dict[str, Path]

    @classmethod
    def of(cls, results: pd.DataFrame, examples: dict[str, Path] | None = None) -> "FigureData":
        return cls(with_source(results), settings(results), dict(examples or {}))


# --------------------------------------------------------------------------- a run


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


# --------------------------------------------------------------------------- Table 1 as a figure, the seed report


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
                    linestyle="none", label=setting_label(model, training, dict(zip(extra, values))))
    seeds = sorted(summary.seeds.astype(int).unique())
    confidence = summary.confidence.iloc[0] if "confidence" in summary else 0.95
    ax.set_xlabel(axis_label(x_metric))
    ax.set_ylabel(axis_label(y_metric))
    datasets = ", ".join(sorted(summary.dataset.astype(str).unique())) + ": " if "dataset" in summary else ""
    ax.set_title(title or f"{datasets}mean ± {100 * confidence:.0f}% CI over {'/'.join(map(str, seeds))} seeds", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


SEED_FIGURE = "clean_vs_autoattack"
SEED_TABLE = "table.md"
SEED_SUMMARY = "summary.csv"


def save_seed_report(results: pd.DataFrame, folder: str | Path, source: str, title: str = "") -> dict[str, Path]:
    """Writes the seed summary (CSV), its Markdown table and the clean-vs-AutoAttack figure (PNG, PDF)
    to `folder`; the same results give byte-identical files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    summary = seed_summary(results)
    if summary.empty:
        raise ValueError(f"no {', '.join(SUMMARY_METRICS)} rows in the results: nothing to summarise")
    paths = {"summary": folder / SEED_SUMMARY, "table": folder / SEED_TABLE}
    atomic_write_text(paths["summary"], results_csv(summary, float_format="%.6g"))
    atomic_write_text(paths["table"], seed_table_markdown(summary, results, source))
    if {"clean_accuracy", "autoattack_accuracy"} <= set(summary.metric):
        fig = plot_seed_summary(summary, title=title)
        for suffix in (".png", ".pdf"):
            paths[suffix[1:]] = save_figure(fig, folder / f"{SEED_FIGURE}{suffix}")
        plt.close(fig)
    return paths


# --------------------------------------------------------------------------- Fig. 4: the sweep trade-off


def plot_sweep(
    wide: pd.DataFrame,
    adv_metric: str = "autoattack_accuracy",
    frontier_trainings: Iterable[str] = ("pgd", "trades"),
) -> matplotlib.figure.Figure:
    """Clean (x) vs `adv_metric` (y) of every run (`partrobust.report.sweep_analysis.wide_runs`), as the
    paper's Fig. 4; one panel per dataset.

    Colour = model; filled circles = PGD, open circles = TRADES (annotated with beta), squares =
    normal training. The line is each model's Pareto frontier over the `frontier_trainings` runs
    (normal training is left out by default: it sits at zero robustness and says nothing about the
    trade-off).
    """
    if adv_metric not in wide.columns:
        raise KeyError(f"no {adv_metric!r} column; metrics present: {present_metrics(wide)}")
    datasets = sorted(wide["dataset"].dropna().unique()) or [""]
    present = list(dict.fromkeys(wide["model"].dropna()))
    models = [m for m in MODEL_COLORS if m in present] + [m for m in present if m not in MODEL_COLORS]
    colors = model_colors(models)
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.0 * len(datasets), 4.0), squeeze=False)
    trained = set(frontier_trainings)
    for ax, dataset in zip(axes[0], datasets):
        panel = wide[wide["dataset"] == dataset] if dataset else wide
        for model in models:
            runs = panel[panel["model"] == model]
            color = colors[model]
            for training, style in SWEEP_MARKERS.items():
                points = runs[runs["training"] == training]
                if points.empty:
                    continue
                ax.scatter(points["clean_accuracy"], points[adv_metric], marker=style["marker"], s=45, linewidths=1.4,
                           facecolors=color if style["filled"] else "none", edgecolors=color, zorder=3)
                if training == "trades" and "beta" in points.columns:
                    for _, p in points.iterrows():
                        if pd.notna(p["beta"]) and pd.notna(p["clean_accuracy"]) and pd.notna(p[adv_metric]):
                            ax.annotate(f"β={float(p['beta']):g}", (p["clean_accuracy"], p[adv_metric]),
                                        textcoords="offset points", xytext=(4, 3), fontsize=6, color=color)
            line = frontier(runs[runs["training"].isin(trained)], y=adv_metric, by=None)
            if len(line):
                ax.plot(line["clean_accuracy"], line[adv_metric], color=color, alpha=0.7, linewidth=1.2, zorder=2)
        ax.set_title(str(dataset), fontsize=9)
        ax.set_xlabel("clean accuracy (%)")
        ax.set_ylabel(axis_label(adv_metric))
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=colors[m], linewidth=1.2, label=model_label(m)) for m in models]
    present = set(wide["training"].dropna())
    handles += [
        Line2D([], [], linestyle="none", marker=s["marker"], color="0.3", markerfacecolor="0.3" if s["filled"] else "none",
               label=s["label"])
        for t, s in SWEEP_MARKERS.items() if t in present
    ]
    axes[0][-1].legend(handles=handles, fontsize=7, loc="best")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- the paper's figures


def _adv_metric(frame: pd.DataFrame) -> str:
    return "autoattack_accuracy" if "autoattack_accuracy" in set(frame["metric"]) else "pgd_accuracy"


def fig04_tradeoff(data: FigureData) -> dict[str, plt.Figure]:
    """Fig. 4: clean vs adversarial accuracy of every adversarially trained run of the paper's main
    setup (ablation variants are left out), one panel per source."""
    sourced = data.results
    adversarial = sourced[sourced["training"].isin(["pgd", "trades"]) & in_main_setup(sourced)]
    if adversarial.empty:
        raise Missing("no PGD or TRADES runs")
    wide = wide_runs(adversarial.assign(dataset=adversarial["source"].map(source_label)))
    metric = _adv_metric(adversarial)
    if "clean_accuracy" not in wide or metric not in wide:
        raise Missing("no clean and adversarial accuracy of the same runs")
    return {"fig04_tradeoff": plot_sweep(wide, adv_metric=metric)}


TABLE01_MODELS = ("resnet", "downsampled", "bbox")


def table01_seeds(data: FigureData) -> dict[str, plt.Figure]:
    """Table 1 as a figure: clean vs AutoAttack accuracy, mean and 95% CI over seeds, per source and
    setting of Table 1's models in the paper's main setup (ablation variants left out)."""
    figures = {}
    results = data.results[in_main_setup(data.results) & data.results["model"].isin(TABLE01_MODELS)]
    if "evaluators" in results:  # one point per trained model: not its re-evaluations by notebook 03's attack sections
        results = results[results["evaluators"].fillna("none") == "none"]
    for source, group in results.groupby("source", sort=True):
        summary = seed_summary(group.drop(columns="source"))
        if summary.empty or not {"clean_accuracy", "autoattack_accuracy"} <= set(summary["metric"]):
            continue
        name = f"table01_{source.replace(':', '_')}"
        figures[name] = plot_seed_summary(summary, title=f"{source_label(source)}: mean ± 95% CI over seeds")
    if not figures:
        raise Missing("no runs with clean and AutoAttack accuracy")
    return figures


def fig05_masks(data: FigureData) -> dict[str, plt.Figure]:
    """Fig. 5 / 12: ground truth, clean and PGD inputs with predicted masks, for the PGD-trained
    part model of each source and model (lowest seed), from its stored examples."""
    examples = data.examples
    runs = data.results.drop_duplicates("run_id")
    runs = runs[runs["run_id"].isin(examples) & runs["model"].ne("resnet")]
    order = {"pgd": 0, "trades": 1, "normal": 2}
    runs = runs.assign(_rank=runs["training"].map(order).fillna(3)).sort_values(["source", "model", "_rank", "seed", "run_id"])
    figures = {}
    for (source, model), group in runs.groupby(["source", "model"], sort=True):
        row = group.iloc[0]
        name = f"fig05_masks_{source.replace(':', '_')}_{model}"
        title = f"{source_label(source)}: {model_label(model)}, {row['training']} training ({row['run_id']})"
        figures[name] = plot_examples(load_examples(examples[row["run_id"]]), title=title)
    if not figures:
        raise Missing(f"no part-model run with figures/{EXAMPLES_FILE} (runs write it when they finish; older runs: "
                      "python -m partrobust.figures --examples runs/<experiment>)")
    return figures


def fig08_benchmarks(data: FigureData) -> dict[str, plt.Figure]:
    """Fig. 8: accuracy on each non-adversarial benchmark against clean accuracy, one point per model
    setting (mean over seeds), one panel per benchmark (notebook 04 draws it too)."""
    ours = data.ours
    present = [b for b in BENCHMARK_METRICS if b in set(ours.get("metric", []))]
    if not present:
        raise Missing("no non-adversarial benchmark results")
    variant = ["drop_background"] if "drop_background" in ours else []
    wide = ours.pivot_table(index=["source", "setting", "model", *variant], columns="metric", values="value", dropna=False)
    wide = wide.dropna(how="all").reset_index()
    wide["label"] = model_variant_labels(wide)  # the background-dropped model (Table 16) is drawn hollow
    fig, axes = plt.subplots(1, len(present), figsize=(4.2 * len(present), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], present):
        for (label, model), group in wide.groupby(["label", "model"]):
            color = MODEL_COLORS.get(model)
            ax.scatter(group["clean_accuracy"], group[metric], edgecolors=color, label=label, marker=TRAINING_MARKERS["normal"],
                       facecolors="none" if dropped_background(group).all() else color)
        ax.set_xlabel("clean accuracy (%)")
        ax.set_ylabel(axis_label(metric))
        ax.legend()
    fig.suptitle("Non-adversarial robustness against clean accuracy (Fig. 8)")
    fig.tight_layout()
    return {"fig08_benchmarks": fig}


def _line_figure(frame: pd.DataFrame, x: str, x_label: str, title: str) -> plt.Figure:
    """Accuracy (y) against `x`: one row of panels per source, one panel per metric, one line per model
    and training (colour: model; line style: training), settings that share them averaged."""
    sources = sorted(frame["source"].unique())
    metrics = [m for m in (*ACCURACIES, *sorted(set(frame["metric"]) - set(ACCURACIES))) if m in set(frame["metric"])]
    fig, axes = plt.subplots(len(sources), len(metrics), figsize=(3.4 * len(metrics) + 1.6, 2.9 * len(sources)), squeeze=False)
    trainings = frame["training"].nunique() > 1
    handles: dict[str, Line2D] = {}
    for row, source in zip(axes, sources):
        for ax, metric in zip(row, metrics):
            panel = frame[(frame["source"] == source) & (frame["metric"] == metric)]
            lines = panel.groupby(["model", "training", x], sort=False)["value"].mean().reset_index()
            rank = {m: i for i, m in enumerate(MODEL_COLORS)}
            lines = lines.sort_values("model", key=lambda m: m.map(rank).fillna(len(rank)), kind="stable")
            for (model, training), line in lines.groupby(["model", "training"], sort=False):
                line = line.sort_values(x)
                label = model_label(model) + (f", {training}" if trainings else "")
                handles[label], = ax.plot(line[x], line["value"], marker="o", color=MODEL_COLORS.get(model),
                                          linestyle=TRAINING_LINES.get(training, "-"), label=label)
            ax.set_title(metric_label(metric) if len(sources) == 1 else f"{source_label(source)}: {metric_label(metric)}")
            ax.set_xlabel(x_label)
            ax.set_ylabel("accuracy (%)" if ax is row[0] else "")
            ax.grid(alpha=0.3)
    fig.legend(handles=list(handles.values()), loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle(title if len(sources) > 1 else f"{source_label(sources[0])}: {title}")
    fig.tight_layout()
    return fig


def _sweep_frame(ours: pd.DataFrame, column: str, metrics: Sequence[str]) -> pd.DataFrame:
    """Seed means of `metrics` for (source, model, training) groups that vary in `column` (>= 2 values)."""
    if ours.empty or column not in ours:
        return ours.iloc[0:0]
    ours = ours[ours["metric"].isin(metrics) & ours[column].notna()]
    varying = ours.groupby(["source", "model", "training"])[column].transform("nunique") >= 2
    return ours[varying]


ACCURACIES = ("clean_accuracy", "autoattack_accuracy", "pgd_accuracy")


def accuracy_curve(data: FigureData, *, name: str, column: str, x_label: str, title: str, needs: str,
                   metrics: Sequence[str] = ACCURACIES, adversarial_only: bool = False) -> dict[str, plt.Figure]:
    """Seed-mean accuracies against a swept `column` (eps, c_seg, label fraction), one panel per
    source; Missing (saying what it `needs`) unless some model was run with two or more values."""
    frame = _sweep_frame(data.ours, column, metrics)
    if adversarial_only:
        frame = frame[frame["training"].isin(["pgd", "trades"])]
    if frame.empty:
        raise Missing(needs)
    x = frame[column].astype(float) * (255 if column == "eps" else 1)
    return {name: _line_figure(frame.assign(_x=x), "_x", x_label, title)}


def table11_eps(data: FigureData) -> dict[str, plt.Figure]:
    """Table 11 as curves: adversarial accuracy against eps (should fall to about 0 at 32/255)."""
    return accuracy_curve(data, name="table11_eps", column="eps", x_label="eps (x/255)", adversarial_only=True,
                          metrics=("autoattack_accuracy", "pgd_accuracy"), title="Adversarial accuracy against eps (Table 11)",
                          needs="no model evaluated at two or more eps")


def fig09_cseg(data: FigureData) -> dict[str, plt.Figure]:
    """Fig. 9: clean and adversarial accuracy of part models against c_seg."""
    return accuracy_curve(data, name="fig09_cseg", column="c_seg", x_label="c_seg", title="Accuracy against c_seg (Fig. 9)",
                          needs="no part model trained with two or more c_seg values")


def fig10_label_fraction(data: FigureData) -> dict[str, plt.Figure]:
    """Fig. 10: accuracy against the fraction of training images with part labels."""
    return accuracy_curve(data, name="fig10_label_fraction", column="label_fraction",
                          x_label="fraction of images with part labels", title="Accuracy against the part-label fraction (Fig. 10)",
                          needs="no part model trained with two or more label fractions")


@dataclass(frozen=True)
class FigureSpec:
    """One of the paper's data figures: what it shows, how it is drawn, what produces its runs."""

    name: str
    paper: str
    draw: Callable[[FigureData], dict[str, plt.Figure]]
    produced_by: str


FIGURES: dict[str, FigureSpec] = {spec.name: spec for spec in [
    FigureSpec("table01_seeds", "Table 1 (as a figure; Fig. 2)", table01_seeds, "the main runs (make study on the built-in data)"),
    FigureSpec("fig04_tradeoff", "Fig. 4 and the sweep frontiers (Tables 8-10)", fig04_tradeoff,
               "python -m partrobust.pipeline params/part_imagenet_sweep.yaml"),
    FigureSpec("fig05_masks", "Fig. 5, 12-14", fig05_masks, "any finished part-model run"),
    FigureSpec("fig08_benchmarks", "Fig. 8", fig08_benchmarks, NOTEBOOK_04),
    FigureSpec("fig09_cseg", "Fig. 9 (and Tables 15, 18, 19)", fig09_cseg, NOTEBOOK_03),
    FigureSpec("fig10_label_fraction", "Fig. 10", fig10_label_fraction, NOTEBOOK_03),
    FigureSpec("table11_eps", "Table 11 (as curves)", table11_eps, NOTEBOOK_03),
]}
"""Figure name -> spec; figures that need runs nobody has made are reported missing, never drawn empty."""


def draw(name: str, results: pd.DataFrame) -> plt.Figure | None:
    """Paper figure `name` of `results` alone (a notebook's runs), or None when they do not cover it."""
    try:
        figures = FIGURES[name].draw(FigureData.of(results))
    except Missing:
        return None
    (fig,) = figures.values()
    return fig
