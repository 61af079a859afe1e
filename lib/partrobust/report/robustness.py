"""Notebook 04's analysis: non-adversarial robustness over training seeds (Tables 2-4, 6, 7, 16; Fig. 8).

Everything here reads tidy results (`partrobust.core.results`) of runs that evaluated the benchmarks
of `partrobust.eval.benchmarks` (``eval.benchmarks``):

* `benchmark_table`: per model, the mean and 95 % Student-t interval over seeds of clean accuracy
  and each benchmark, and a two-sample t-test of each part model against the ResNet;
* `corruption_table` (Table 7) and `plot_severity` (accuracy against severity);
* Fig. 8 itself is `partrobust.report.figures.fig08_benchmarks`, the function ``make figures`` draws it with;
* `plot_texture_cue`: shape-vs-texture accuracy of models trained with a stronger and stronger
  texture cue (the built-in data's check that the benchmark measures what it claims to);
* `plot_benchmark_examples`: a grid of each benchmark's images.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.lines import Line2D

from ..core.metrics import BENCHMARK_METRICS
from ..core.results import distinguishing_columns, setting_columns
from ..data.prepared import read_image
from ..eval.benchmarks import CORRUPTIONS, benchmark_rows
from .stats import format_mean_ci, over_seeds, seed_summary, t_test
from .style import (
    MODEL_COLORS,
    clipped_errors,
    dropped_background,
    label,
    metric_label,
    model_label,
    model_rank,
    model_variant_labels,
    seeds_caption,
)

BASELINE = "resnet"


def benchmark_values(results: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """One row per run and metric: ``row`` (the model's label), ``seed``, ``metric``, ``value``."""
    frame = results[results["metric"].isin(metrics)].copy()
    frame["row"] = model_variant_labels(frame)
    return frame[[c for c in ("row", "model", "dataset", "seed", "run_id", "metric", "value", "n") if c in frame.columns]]


def benchmark_table(results: pd.DataFrame, metrics: Sequence[str] = ("clean_accuracy", *BENCHMARK_METRICS),
                    baseline: str = BASELINE, confidence: float = 0.95, equal_var: bool = False, margin: float = 0.0) -> pd.DataFrame:
    """Per model row and metric: mean, CI half-width, seeds, and the t-test against the baseline's runs
    (difference of means, t, p; `margin`: p of the difference being `margin`, the size a claim states,
    as the report's claim tests it). One dataset at a time: results on several datasets are refused."""
    if results["dataset"].nunique() > 1:
        raise ValueError(f"results on several datasets ({sorted(results['dataset'].unique())}): pass one at a time")
    values = benchmark_values(results, metrics)
    base_rows = values[(values["model"] == baseline) & (values["row"] == model_label(baseline))]
    out = []
    for cell in over_seeds(values, ["row", "model", "metric"], confidence).itertuples():
        runs = values[(values["row"] == cell.row) & (values["metric"] == cell.metric)]["value"]
        base = base_rows[base_rows["metric"] == cell.metric]["value"]
        t, p = (math.nan, math.nan) if cell.row == model_label(baseline) or base.empty else t_test(runs - margin, base, equal_var)
        out.append({"row": cell.row, "model": cell.model, "metric": cell.metric, "mean": cell.mean, "half_width": cell.half_width,
                    "seeds": cell.seeds, "difference": cell.mean - base.mean() if len(base) else math.nan, "t": t, "p_value": p})
    table = pd.DataFrame(out)
    rank = table["model"].map(model_rank)
    return table.assign(_rank=rank).sort_values(["_rank", "row"], kind="stable").drop(columns="_rank").reset_index(drop=True)


def benchmark_view(table: pd.DataFrame) -> pd.DataFrame:
    """`benchmark_table` as the paper prints it: 'mean ± CI' per metric, and p against the ResNet."""
    rows = {}
    for _, r in table.iterrows():
        row = rows.setdefault(r["row"], {"model": r["row"], "seeds": r["seeds"]})
        name = metric_label(r["metric"])
        row[name] = format_mean_ci(r["mean"], r["half_width"])
        if r["metric"] != "clean_accuracy" and not math.isnan(r["p_value"]):
            row[f"{name}: p vs ResNet"] = f"{r['p_value']:.2g}"
    return pd.DataFrame(list(rows.values())).set_index("model").fillna("")


def corruption_table(results: pd.DataFrame) -> pd.DataFrame:
    """Table 7: accuracy (mean over seeds) per corruption type (rows, ImageNet-C order) and model (columns), with the mean."""
    names = {f"common_corruption_{c}_accuracy": c for c in CORRUPTIONS}
    values = benchmark_values(results, [*names, "common_corruption_accuracy"])
    if values.empty:
        raise ValueError("no common-corruption results: run with eval.benchmarks: [common_corruption]")
    values["corruption"] = values["metric"].map(names).fillna("mean")
    table = values.pivot_table(index="corruption", columns="row", values="value", aggfunc="mean")
    order = [c for c in (*CORRUPTIONS, "mean") if c in table.index]
    return table.loc[order].round(1)


def severity_values(results: pd.DataFrame) -> pd.DataFrame:
    """Per run: accuracy at each severity (mean over corruption types), with ``severity`` as a number."""
    frame = results[results["metric"].str.fullmatch(r"common_corruption_severity\d+_accuracy", na=False)].copy()
    frame["severity"] = frame["metric"].str.extract(r"severity(\d+)", expand=False).astype(int)
    clean = results[results["metric"] == "clean_accuracy"].assign(severity=0)
    both = pd.concat([clean, frame], ignore_index=True)
    return both.assign(row=model_variant_labels(both))


def plot_severity(results: pd.DataFrame, confidence: float = 0.95) -> plt.Figure:
    """Accuracy against corruption severity (0 = clean), mean over seeds with the Student-t CI clipped to
    [0, 100], per model (dashed: background channel dropped); the title says over how many seeds."""
    frame = severity_values(results)
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    points = over_seeds(frame, ["row", "model", "severity"], confidence, one_run_per_seed=False)
    handles = []  # lines without their error bars, so that the legend shows each line's style
    for (row, model), group in points.groupby(["row", "model"], sort=False):
        group = group.sort_values("severity")
        style = {"marker": "o", "color": MODEL_COLORS.get(model), "linestyle": "--" if "no background" in row else "-"}
        ax.errorbar(group["severity"], group["mean"], yerr=clipped_errors(group["mean"], group["half_width"]), capsize=3, **style)
        handles.append(Line2D([], [], label=row, **style))
    ax.set_xticks(sorted(frame["severity"].unique()))
    ax.set_xlabel("corruption severity (0: clean)")
    ax.set_ylabel("accuracy (%)")
    ax.legend(handles=handles)
    ax.set_title(f"Accuracy against corruption severity (mean over types; {seeds_caption(points['seeds'], confidence)})",
                 fontsize=9)
    fig.tight_layout()
    return fig


def texture_cue_values(results: pd.DataFrame) -> pd.DataFrame:
    """Shape-vs-texture and clean accuracy per run with the training data's texture-cue probability
    (read from the dataset name ``...-texture<p>``; 0 for the plain built-in data)."""
    frame = results[results["metric"].isin(["clean_accuracy", "shape_vs_texture_accuracy", "shape_vs_texture_texture_rate"])].copy()
    cue = frame["dataset"].str.extract(r"-texture([0-9.]+)$", expand=False).astype(float).fillna(0.0)
    return frame.assign(texture_cue_prob=cue, row=model_variant_labels(frame))


def plot_texture_cue(results: pd.DataFrame) -> plt.Figure:
    """Shape-vs-texture accuracy (solid) and texture rate (dashed) against the texture cue models were trained with."""
    frame = texture_cue_values(results)
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for (row, model), group in frame.groupby(["row", "model"], sort=False):
        for metric, style in (("shape_vs_texture_accuracy", "-"), ("shape_vs_texture_texture_rate", "--")):
            points = group[group["metric"] == metric].groupby("texture_cue_prob")["value"].mean()
            if points.empty:
                continue
            ax.plot(points.index, points.values, style, marker="o", color=MODEL_COLORS.get(model),
                    label=f"{row}, {'shape' if metric.endswith('accuracy') else 'texture'}")
    ax.set_xlabel("texture-cue probability in training")
    ax.set_ylabel("% of cue-conflict images")
    ax.set_title("Predicting the shape (solid) or the texture (dashed)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_benchmark_examples(folders: dict[str, str | Path], classes: Sequence[str], n: int = 6) -> plt.Figure:
    """A grid: one row per benchmark (plus common corruptions at severity 3 by type), first `n` images,
    each titled with its label (and background or texture class)."""
    panels: list[tuple[str, list[tuple[Path, str]]]] = []
    for name, folder in folders.items():
        rows = benchmark_rows(folder)
        if name == "common_corruption":
            severities = sorted(rows["severity"].unique())
            middle = rows[rows["severity"] == severities[len(severities) // 2]]
            picked = middle.groupby("corruption", sort=False).head(1).head(n)
            captions = [f"{label(r.corruption)} s{r.severity}" for r in picked.itertuples()]
        elif name == "spurious_correlation":
            picked = rows.head(n)
            captions = [f"{classes[r.label]} on {classes[r.background_label]}" for r in picked.itertuples()]
        else:
            picked = rows.head(n)
            captions = [f"{classes[r.label]} / {classes[r.texture_label]} texture" for r in picked.itertuples()]
        panels.append((name, [(Path(folder) / r.image, c) for r, c in zip(picked.itertuples(), captions)]))
    width = max(len(p) for _, p in panels)
    fig, axes = plt.subplots(len(panels), width, figsize=(1.6 * width, 1.8 * len(panels)), squeeze=False)
    for axis_row, (name, items) in zip(axes, panels):
        for ax in axis_row:
            ax.axis("off")
        for ax, (path, caption) in zip(axis_row, items):
            ax.imshow(read_image(path), interpolation="nearest")
            ax.set_title(caption, fontsize=6)
        axis_row[0].text(-0.1, 0.5, label(name), transform=axis_row[0].transAxes, rotation=90, va="center",
                         ha="right", fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- runs of notebook 04


def hparam_sets(results: pd.DataFrame) -> pd.DataFrame:
    """Table 6: per model row (the background-dropped Downsampled model is its own row), the setting (group
    of seeds) with the best shape-vs-texture accuracy (A) and the one with the best mean of spurious-
    correlation and corruption accuracy (B), with all three benchmarks (means over seeds)."""
    summary = seed_summary(results, metrics=tuple(BENCHMARK_METRICS))
    if summary.empty:
        return summary
    by = [c for c in setting_columns(summary) if c in summary.columns]
    wide = summary.pivot_table(index=by, columns="metric", values="mean", dropna=False).reset_index()
    missing = [m for m in BENCHMARK_METRICS if m not in wide]
    if missing:
        raise ValueError(f"hparam_sets needs all three benchmarks; missing {missing}")
    wide = wide.dropna(subset=list(BENCHMARK_METRICS), how="all").reset_index(drop=True)  # the pivot's empty combinations
    wide["row"] = model_variant_labels(wide)
    wide["_b"] = wide[["spurious_correlation_accuracy", "common_corruption_accuracy"]].mean(axis=1)
    varied = [c for c in distinguishing_columns(summary) if c in wide and c != "drop_background"]
    rows = []
    for row, group in wide.groupby("row", sort=False):
        for name, score in (("A", "shape_vs_texture_accuracy"), ("B", "_b")):
            best = group.sort_values(score, ascending=False, kind="stable").iloc[0]
            rows.append({"model": row, "set": name, **{c: best[c] for c in varied},
                         **{metric_label(m): round(best[m], 1) for m in BENCHMARK_METRICS}})
    return pd.DataFrame(rows)


def conclusions(table: pd.DataFrame, alpha: float = 0.05) -> list[str]:
    """One sentence per benchmark: do the part models beat the ResNet here (difference and p)?"""
    lines = []
    for metric in BENCHMARK_METRICS:
        name = metric_label(metric)
        rows = table[(table["metric"] == metric) & (table["model"] != BASELINE)]
        if rows.empty or table[(table["metric"] == metric) & (table["model"] == BASELINE)].empty:
            continue
        parts = [f"{r.row} {r.difference:+.1f} points (p = {r.p_value:.2g})" for r in rows.itertuples()]
        better = (rows["difference"] > 0).all()
        significant = better and (rows["p_value"] < alpha).all()
        verdict = ("holds, significantly" if significant else "holds in direction, not significantly" if better
                   else "does not hold")
        lines.append(f"{name}: the paper's direction (part models above the ResNet) {verdict}: {'; '.join(parts)}.")
    return lines


def texture_cue_results(results: pd.DataFrame, cue: pd.DataFrame) -> pd.DataFrame:
    """The texture-cue runs (`cue`) with their cue-free counterparts from `results` (same models and seeds,
    background kept), for `plot_texture_cue`."""
    if cue.empty:
        return cue
    plain = results[results["model"].isin(set(cue["model"])) & results["seed"].isin(set(cue["seed"])) & ~dropped_background(results)]
    return pd.concat([plain, cue], ignore_index=True)
