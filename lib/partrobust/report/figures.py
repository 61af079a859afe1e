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
from ..core.results import distinguishing_columns, is_plain_evaluation, results_csv, setting_columns
from .masks import EXAMPLES_FILE, load_examples, plot_examples
from .paper import EVAL_COLUMNS, NOTEBOOK_03, NOTEBOOK_04, at_paper_eps, in_main_setup, settings, source_label, with_source
from .stats import seed_summary, seed_table_markdown
from .style import (
    MODEL_COLORS,
    SETTING_MARKERS,
    SWEEP_MARKERS,
    TRAINING_LINES,
    TRAINING_MARKERS,
    axis_label,
    clipped_errors,
    dropped_background,
    label,
    metric_label,
    model_colors,
    model_label,
    model_rank,
    model_variant_labels,
    option_text,
    save_figure,
    seeds_caption,
    setting_label,
    training_label,
    training_rank,
)
from .sweep_analysis import frontier, present_metrics, seed_means, wide_runs


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
    """Loss and accuracies per epoch over both training phases (clean, then adversarial); every name from `label`."""
    frame = history.reset_index(drop=True).assign(step=lambda d: range(1, len(d) + 1))
    frame["phase"] = frame["phase"].map(lambda p: label(p) if p != "clean" else "clean")
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(8, 3))
    sns.lineplot(data=frame, x="step", y="train_loss", hue="phase", marker="o", ax=ax_loss)
    accuracies = [c for c in ("train_acc", "val_clean_acc", "val_adv_acc") if c in frame.columns]
    long = frame.melt(id_vars=["step", "phase"], value_vars=accuracies, var_name="accuracy", value_name="percent").dropna()
    long["accuracy"] = long["accuracy"].map(label)
    sns.lineplot(data=long, x="step", y="percent", hue="accuracy", style="phase", marker="o", ax=ax_acc)
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel(label("step"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax_loss.set_ylabel(label("train_loss"))
    ax_acc.set_ylabel("accuracy (%)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- Table 1 as a figure, the seed report


def _sort_key(value: object) -> tuple:
    """Sorts setting values: numbers by size, then text, NaN (does not apply) first."""
    if pd.isna(value):
        return (0, 0.0, "")
    return (1, float(value), "") if isinstance(value, (int, float)) else (2, 0.0, str(value))


def plot_seed_summary(summary: pd.DataFrame, x_metric: str = "clean_accuracy", y_metric: str = "autoattack_accuracy",
                      title: str = "") -> matplotlib.figure.Figure:
    """Mean of `y_metric` against mean of `x_metric` per setting, with their confidence intervals clipped to
    [0, 100] as error bars (input: `partrobust.report.stats.seed_summary`).

    Colour: model; marker: training, or, when settings of one model and training differ in further columns
    (a c_seg sweep), one marker per combination of training and those columns, so that no two legend
    entries look alike. The title is `title` (what the runs are, default: their datasets) and what a point
    is (`seeds_caption`: one seed is said as such)."""
    extra = distinguishing_columns(summary)
    points = []
    for (model, training, *values), group in summary.groupby(["model", "training", *extra], sort=False, dropna=False):
        cells = group.set_index("metric")
        if {x_metric, y_metric} <= set(cells.index):  # NaN (does not apply) as None: equal to itself
            points.append((model, training, tuple(None if pd.isna(v) else v for v in values), cells.loc[x_metric], cells.loc[y_metric]))
    if not points:
        raise ValueError(f"no setting has both {x_metric} and {y_metric}")
    points.sort(key=lambda p: (model_rank(p[0]), str(p[0]), training_rank(p[1]), str(p[1]), tuple(_sort_key(v) for v in p[2])))
    by_training = len({(p[0], p[1]) for p in points}) == len(points) and {p[1] for p in points} <= set(TRAINING_MARKERS)
    rests = sorted({(p[1], *p[2]) for p in points},  # what a marker tells apart: training and the further columns
                   key=lambda r: (training_rank(r[0]), str(r[0]), tuple(_sort_key(v) for v in r[1:])))
    colors = model_colors(p[0] for p in points)
    fig, ax = plt.subplots(figsize=(5.6, 4))
    handles: list[Line2D] = []  # markers without their error bars, so that the legend shows each marker's shape
    for model, training, values, x, y in points:
        if by_training:
            marker, filled = TRAINING_MARKERS[training], True
        else:
            index = rests.index((training, *values))
            marker, filled = SETTING_MARKERS[index % len(SETTING_MARKERS)], index // len(SETTING_MARKERS) % 2 == 0
        color = colors[model]
        style = {"marker": marker, "color": color, "markerfacecolor": color if filled else "none", "markersize": 7,
                 "linestyle": "none"}
        ax.errorbar(x["mean"], y["mean"], xerr=clipped_errors(x["mean"], x["half_width"]),
                    yerr=clipped_errors(y["mean"], y["half_width"]), capsize=3, **style)
        handles.append(Line2D([], [], label=setting_label(model, training, dict(zip(extra, values))), **style))
    seeds = [min(int(p[3]["seeds"]), int(p[4]["seeds"])) for p in points]
    confidence = float(summary["confidence"].iloc[0]) if "confidence" in summary else 0.95
    ax.set_xlabel(axis_label(x_metric))
    ax.set_ylabel(axis_label(y_metric))
    datasets = ", ".join(sorted(summary["dataset"].astype(str).unique())) if "dataset" in summary else ""
    ax.set_title(": ".join(t for t in (title or datasets, seeds_caption(seeds, confidence)) if t), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
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
    """Clean (x) vs `adv_metric` (y) of every setting of a sweep (runs of `partrobust.report.sweep_analysis.wide_runs`,
    averaged over their seeds by `seed_means`), as the paper's Fig. 4; one panel per dataset.

    Colour = model; filled circles = PGD, open circles = TRADES (each annotated with its own beta), squares =
    normal training. The line is each model's Pareto frontier over the means of the `frontier_trainings`
    settings (normal training is left out by default: it sits at zero robustness and says nothing about
    the trade-off). Panel titles say over how many seeds a point is the mean; the legend lists only the
    models and trainings drawn.
    """
    if adv_metric not in wide.columns:
        raise KeyError(f"no {adv_metric!r} column; metrics present: {present_metrics(wide)}")
    means = seed_means(wide)
    means = means[means["clean_accuracy"].notna() & means[adv_metric].notna()] if "clean_accuracy" in means else means.iloc[0:0]
    datasets = sorted(means["dataset"].dropna().unique()) or [""]
    present = list(dict.fromkeys(means["model"].dropna()))
    models = [m for m in MODEL_COLORS if m in present] + [m for m in present if m not in MODEL_COLORS]
    colors = model_colors(models)
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.6 * len(datasets) + 1.4, 4.0), squeeze=False)
    trained = set(frontier_trainings)
    for ax, dataset in zip(axes[0], datasets):
        panel = means[means["dataset"] == dataset] if dataset else means
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
                        if pd.notna(p["beta"]):
                            ax.annotate(option_text("beta", float(p["beta"])), (p["clean_accuracy"], p[adv_metric]),
                                        textcoords="offset points", xytext=(4, 3), fontsize=6, color=color)
            line = frontier(runs[runs["training"].isin(trained)], y=adv_metric, by=None)
            if len(line) > 1:
                ax.plot(line["clean_accuracy"], line[adv_metric], color=color, alpha=0.7, linewidth=1.2, zorder=2)
        caption = seeds_caption(panel["seeds"] if len(panel) else [1], confidence=None)
        ax.set_title(f"{dataset}: {caption}" if dataset else caption, fontsize=9)
        ax.set_xlabel(axis_label("clean_accuracy"))
        ax.set_ylabel(axis_label(adv_metric))
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=colors[m], linewidth=1.2, label=model_label(m)) for m in models]
    drawn = set(means["training"].dropna())
    handles += [
        Line2D([], [], linestyle="none", marker=s["marker"], color="0.3", markerfacecolor="0.3" if s["filled"] else "none",
               label=s["label"])
        for t, s in SWEEP_MARKERS.items() if t in drawn
    ]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
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
    """Table 1 as a figure: clean vs AutoAttack accuracy, mean and 95% CI over seeds (or one seed, said as
    such), per source and setting of Table 1's models in the paper's main setup (ablation variants left out)."""
    figures = {}
    results = data.results[in_main_setup(data.results) & data.results["model"].isin(TABLE01_MODELS)]
    if "evaluators" in results:  # one point per trained model: not its re-evaluations by notebook 03's attack sections
        results = results[is_plain_evaluation(results["evaluators"])]
    for source, group in results.groupby("source", sort=True):
        summary = seed_summary(group.drop(columns="source"))
        if summary.empty or not {"clean_accuracy", "autoattack_accuracy"} <= set(summary["metric"]):
            continue
        name = f"table01_{source.replace(':', '_')}"
        figures[name] = plot_seed_summary(summary, title=source_label(source))
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
        title = f"{source_label(source)}: {model_label(model)}, {training_label(row['training'])} training ({row['run_id']})"
        figures[name] = plot_examples(load_examples(examples[row["run_id"]]), title=title)
    if not figures:
        raise Missing(f"no part-model run with figures/{EXAMPLES_FILE} (runs write it when they finish; older runs: "
                      "python -m partrobust.figures --examples runs/<experiment>)")
    return figures


def _model_order(models: Iterable[str]) -> list[str]:
    """`models` once each, registered models in display order first."""
    return sorted(dict.fromkeys(models), key=model_rank)  # stable: unknown models in their order of appearance


def fig08_benchmarks(data: FigureData) -> dict[str, plt.Figure]:
    """Fig. 8: accuracy on each non-adversarial benchmark against clean accuracy, one point per model
    setting (mean over seeds), one panel per benchmark and one row of panels per source (notebook 04 draws
    it too). The legend lists each model drawn once; the background-dropped model (Table 16) is hollow."""
    ours = data.ours
    present = [b for b in BENCHMARK_METRICS if b in set(ours.get("metric", []))]
    if not present or "clean_accuracy" not in set(ours["metric"]):
        raise Missing("no non-adversarial benchmark results (with clean accuracy)")
    variant = ["drop_background"] if "drop_background" in ours else []
    wide = ours.pivot_table(index=["source", "setting", "model", *variant], columns="metric", values="value", dropna=False)
    wide = wide.dropna(subset=["clean_accuracy"]).dropna(subset=present, how="all").reset_index()
    if wide.empty:
        raise Missing("no run with both clean accuracy and a non-adversarial benchmark")
    wide["label"] = model_variant_labels(wide)
    sources = sorted(wide["source"].unique())
    fig, axes = plt.subplots(len(sources), len(present), figsize=(3.9 * len(present) + 2.0, 3.4 * len(sources)), squeeze=False)
    handles: dict[str, object] = {}
    for row, source in zip(axes, sources):
        for ax, metric in zip(row, present):
            panel = wide[(wide["source"] == source) & wide[metric].notna()]
            for model in _model_order(panel["model"]):
                for name, group in panel[panel["model"] == model].groupby("label", sort=True):
                    color = MODEL_COLORS.get(model)
                    drawn = ax.scatter(group["clean_accuracy"], group[metric], edgecolors=color, label=name,
                                       marker=TRAINING_MARKERS["normal"], facecolors="none" if dropped_background(group).all() else color)
                    handles.setdefault(name, drawn)
            ax.set_xlabel(axis_label("clean_accuracy"))
            ax.set_ylabel(axis_label(metric))
            if len(sources) > 1:
                ax.set_title(source_label(source))
    rank = {m: i for i, m in enumerate(_model_order(wide["model"]))}
    model_of = dict(zip(wide["label"], wide["model"]))
    names = sorted(handles, key=lambda name: (rank[model_of[name]], name))  # models in display order, each drawn once
    fig.legend(handles=[handles[n] for n in names], labels=names, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle("Non-adversarial robustness against clean accuracy (Fig. 8)" + (
        f", {source_label(sources[0])}" if len(sources) == 1 else ""))
    fig.tight_layout()
    return {"fig08_benchmarks": fig}


def _line_figure(frame: pd.DataFrame, column: str, x: str, x_label: str, title: str) -> plt.Figure:
    """Accuracy (y) against `x`: one row of panels per source, one panel per metric, one line per trained
    setting that varies in `x` alone (`_sweep_frame`'s ``_line``; colour: model, line style: training, marker:
    which of a model's lines). A line's legend entry is its model, its training where trainings differ, and
    the settings that tell it from the model's other lines; the legend lists the lines drawn, each once."""
    sources = sorted(frame["source"].unique())
    metrics = [m for m in (*ACCURACIES, *sorted(set(frame["metric"]) - set(ACCURACIES))) if m in set(frame["metric"])]
    fig, axes = plt.subplots(len(sources), len(metrics), figsize=(3.4 * len(metrics) + 1.6, 2.9 * len(sources)), squeeze=False)
    lines = frame.drop_duplicates("_line").copy()
    lines = lines.assign(_m=lines["model"].map(model_rank), _t=lines["training"].map(training_rank))
    lines = lines.sort_values(["_m", "model", "_t", "training", "_line"], kind="stable")
    shown_columns = [c for c in setting_columns(frame) if c not in (*EVAL_COLUMNS, column, "dataset", "model", "training")]
    several_trainings = frame["training"].nunique() > 1
    names, markers = {}, {}
    for (model, training), group in lines.groupby(["model", "training"], sort=False):
        differ = [c for c in shown_columns if group[c].nunique(dropna=False) > 1]
        shown = model_label(model) + (f", {training_label(training)}" if several_trainings else "")
        for index, (_, line) in enumerate(group.iterrows()):
            names[line["_line"]] = ", ".join([shown, *(option_text(c, line[c]) for c in differ if pd.notna(line[c]))])
            markers[line["_line"]] = SETTING_MARKERS[index % len(SETTING_MARKERS)]
    handles: dict[str, Line2D] = {}
    for row, source in zip(axes, sources):
        for ax, metric in zip(row, metrics):
            panel = frame[(frame["source"] == source) & (frame["metric"] == metric) & frame["value"].notna()]
            for key in [k for k in names if k in set(panel["_line"])]:
                rows = panel[panel["_line"] == key]
                points = rows.groupby(x)["value"].mean().sort_index()
                handles[names[key]], = ax.plot(points.index, points.values, marker=markers[key], label=names[key],
                                               color=MODEL_COLORS.get(rows["model"].iloc[0]),
                                               linestyle=TRAINING_LINES.get(rows["training"].iloc[0], "-"))
            ax.set_title(metric_label(metric) if len(sources) == 1 else f"{source_label(source)}: {metric_label(metric)}")
            ax.set_xlabel(x_label)
            ax.set_ylabel("accuracy (%)" if ax is row[0] else "")
            ax.grid(alpha=0.3)
    fig.legend(handles=list(handles.values()), loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle(title if len(sources) > 1 else f"{source_label(sources[0])}: {title}")
    fig.tight_layout()
    return fig


def _sweep_frame(ours: pd.DataFrame, column: str, metrics: Sequence[str]) -> pd.DataFrame:
    """Seed means of `metrics` of trained settings that differ in `column` alone, with a ``_line`` key per
    such group of settings (>= 2 values of `column`).

    Kept: the paper's main setup but for `column` (`in_main_setup`: no label-kind, pool-size or other
    ablation variant in a curve), one evaluation per trained model and eps (a model re-evaluated by other
    attack sections counts once, its plain evaluation first; attacks that also target the segmenter,
    ``c_seg_attack`` > 0, are left out) and, unless `column` is eps itself, the paper's eps."""
    if ours.empty or column not in ours:
        return ours.iloc[0:0]
    ours = ours[ours["metric"].isin(metrics) & ours[column].notna() & in_main_setup(ours, varies=(column,))]
    if "c_seg_attack" in ours:
        ours = ours[pd.to_numeric(ours["c_seg_attack"], errors="coerce").fillna(0.0).eq(0.0)]
    if column != "eps":
        ours = at_paper_eps(ours)
    if "evaluators" in ours:
        plain_first = (~is_plain_evaluation(ours["evaluators"])).astype(int)
        eps = ours["eps"].astype(float).round(6) if "eps" in ours else pd.Series(0.0, index=ours.index)
        ours = (ours.assign(_plain=plain_first, _eps=eps).sort_values("_plain", kind="stable")
                .drop_duplicates(["source", "setting", "_eps", "metric"]).drop(columns=["_plain", "_eps"]))
    line_columns = ["source", *[c for c in setting_columns(ours) if c not in EVAL_COLUMNS and c != column]]
    ours = ours.assign(_line=["|".join(map(str, values)) for values in ours[line_columns].itertuples(index=False)])
    varying = ours.groupby("_line")[column].transform("nunique") >= 2
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
    return {name: _line_figure(frame.assign(_x=x), column, "_x", x_label, title)}


def table11_eps(data: FigureData) -> dict[str, plt.Figure]:
    """Table 11 as curves: adversarial accuracy against eps (should fall to about 0 at 32/255)."""
    return accuracy_curve(data, name="table11_eps", column="eps", x_label=label("eps_255"), adversarial_only=True,
                          metrics=("autoattack_accuracy", "pgd_accuracy"),
                          title=f"Adversarial accuracy against {label('eps')} (Table 11)",
                          needs="no model evaluated at two or more eps")


def fig09_cseg(data: FigureData) -> dict[str, plt.Figure]:
    """Fig. 9: clean and adversarial accuracy of part models against c_seg."""
    return accuracy_curve(data, name="fig09_cseg", column="c_seg", x_label=label("c_seg"),
                          title=f"Accuracy against {label('c_seg')} (Fig. 9)",
                          needs="no part model trained with two or more c_seg values")


def fig10_label_fraction(data: FigureData) -> dict[str, plt.Figure]:
    """Fig. 10: accuracy against the fraction of training images with part labels."""
    return accuracy_curve(data, name="fig10_label_fraction", column="label_fraction",
                          x_label=label("label_fraction"), title="Accuracy against the part-label fraction (Fig. 10)",
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
