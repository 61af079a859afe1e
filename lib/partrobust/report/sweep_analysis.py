"""Analysis of hyperparameter sweeps: the clean-vs-adversarial trade-off (paper Tables 8-10, Fig. 4).

Input is the tidy results frame (one row per run x metric, see `partrobust.core.results`). This module
pivots it to one row per run (`wide_runs`), finds each model's Pareto frontier (`frontier`),
applies the paper's model-selection rule (`select_best`), plots the sweep (`plot_sweep`) and puts
our numbers next to the paper's sweep tables (`compare_with_paper`).

No paper number is written here: they are all read from the transcribed tables in
``<repo>/../shared/spec/paper-tables`` (`load_paper_table`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from ..core.config import parse_fraction
from ..data.synthetic import DATASET_NAME as BUILTIN_DATASET
from .style import MODEL_COLORS, model_label
from ..core.metrics import METRIC_ORDER as METRICS, benchmark_metric
from ..core.results import RUN_COLUMNS
from ..core.paths import find_repo_root

PAPER_MODELS = {"resnet50": "resnet", "bounding_box": "bbox"}
"""Paper-table model name -> our registered model name (others are the same in both)."""

PAPER_ATTACKS = {
    "clean": "clean_accuracy", "pgd": "pgd_accuracy", "autoattack": "autoattack_accuracy",
    **{f"{first}": f"two_stage_{first}_accuracy" for first in ("untargeted", "random", "mc_random", "mc_sorted")},
}
"""Paper-table `attack` -> our `metric` (Table 13's two-stage attacks are named by their first stage;
other attacks would become ``<attack>_accuracy``)."""


PAPER_COLUMNS = {"trades_beta": "beta", "epsilon": "eps"}
"""Paper-table column -> our column."""

SWEEP_SETUP: dict[str, Any] = {
    "labels": "parts",
    "label_fraction": 1.0,
    "pool_size": 4,
    "drop_background": False,
    "concat_input": False,
}
"""The setup of the paper's sweep tables (8-10): part labels, all of them, 4x4 pooling, background
channel kept, no image concatenated. `compare_with_paper` ignores runs that set one of these
columns to something else (an empty cell means the option does not apply and passes)."""

_DECIMALS = 6


# --------------------------------------------------------------------------- small helpers


def parse_eps(value: Any) -> float:
    """An `eps`/`train_eps` cell (``"8/255"``, ``"0.03"`` or a number) as a float; empty -> NaN."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return float("nan")
    text = str(value).strip()
    if not text or text.lower() == "nan":
        return float("nan")
    return parse_fraction(float(value) if isinstance(value, (int, float, np.number)) else text, "eps")


def _key(value: Any) -> str:
    """A hashable matching key: floats rounded to 6 decimals, NaN/empty -> ''. So NaN matches NaN."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if np.isnan(number):
        return ""
    return repr(round(number, _DECIMALS) + 0.0)


def _is_adversarial(metric: str) -> bool:
    return not str(metric).startswith("clean")


def _as_bool(value: Any) -> bool | None:
    """True/False from bools or their CSV text; None for an empty cell."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if not text or text == "nan":
            return None
        return text in {"true", "1", "1.0", "yes"}
    return bool(value)


def _present_metrics(frame: pd.DataFrame) -> list[str]:
    return [m for m in METRICS if m in frame.columns]


# --------------------------------------------------------------------------- wide frame, frontier


SUMMARY_COLUMNS = [
    "run_id", "dataset", "model", "training", "lr", "weight_decay", "c_seg", "beta", "seed", "n",
    "clean_accuracy", "pgd_accuracy", "autoattack_accuracy", "clean_pixel_accuracy", "selection", "target_clean",
]
"""The columns a reader scans first, in that order (see `summary_view`)."""


def summary_view(frame: pd.DataFrame, decimals: int = 2) -> pd.DataFrame:
    """The `SUMMARY_COLUMNS` of a per-run frame (`wide_runs`, `select_best`), accuracies rounded, for display."""
    view = frame[[c for c in SUMMARY_COLUMNS if c in frame.columns]].copy()
    percent = [c for c in view.columns if c.endswith("_accuracy") or c == "target_clean"]
    view[percent] = view[percent].astype(float).round(decimals)
    return view


def wide_runs(results: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its identifying columns plus one column per metric (and ``n``, test images).

    Tables and plots compare runs, not (run, metric) rows. Identifying columns are taken from the
    run's first row (they are the same on every row of a run); a metric reported twice for one run
    is averaged. Empty identifying cells stay NaN (a plain pivot would drop those runs).
    """
    if results.empty:
        return pd.DataFrame(columns=[*RUN_COLUMNS, "config_hash", "n"])
    id_columns = [c for c in [*RUN_COLUMNS, "config_hash"] if c in results.columns]
    ids = results[id_columns].drop_duplicates("run_id").set_index("run_id")
    values = results.pivot_table(index="run_id", columns="metric", values="value", aggfunc="mean")
    values = values.reindex(columns=[m for m in METRICS if m in values.columns] + [m for m in values.columns if m not in METRICS])
    values.columns.name = None
    n = results.groupby("run_id")["n"].max() if "n" in results.columns else pd.Series(dtype=float)
    wide = ids.join(n.rename("n")).join(values).reset_index()
    return wide[[c for c in id_columns if c in wide.columns] + [c for c in wide.columns if c not in id_columns]]


def _pareto_mask(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """True where no other point is >= on both coordinates and > on one. NaN points are never on it."""
    valid = ~(np.isnan(x) | np.isnan(y))
    mask = np.zeros(len(x), dtype=bool)
    for i in np.flatnonzero(valid):
        others = valid.copy()
        others[i] = False
        dominated = (x[others] >= x[i]) & (y[others] >= y[i]) & ((x[others] > x[i]) | (y[others] > y[i]))
        mask[i] = not dominated.any()
    return mask


def mark_frontier(
    wide: pd.DataFrame, x: str = "clean_accuracy", y: str = "autoattack_accuracy", by: str | Sequence[str] | None = "model"
) -> pd.DataFrame:
    """`wide` with a boolean ``on_frontier`` column: Pareto-optimal in (x, y) within its `by` group."""
    out = wide.copy()
    out["on_frontier"] = False
    if out.empty:
        return out
    keys = [by] if isinstance(by, str) else list(by or [])
    parts = [part for _, part in out.groupby(keys, dropna=False)] if keys else [out]
    for part in parts:
        mask = _pareto_mask(part[x].to_numpy(dtype=float), part[y].to_numpy(dtype=float))
        out.loc[part.index, "on_frontier"] = mask
    out["on_frontier"] = out["on_frontier"].astype(bool)
    return out


def frontier(
    wide: pd.DataFrame, x: str = "clean_accuracy", y: str = "autoattack_accuracy", by: str | Sequence[str] | None = "model"
) -> pd.DataFrame:
    """The Pareto-optimal runs of each `by` group (none other is >= on x and y and > on one), sorted by x.

    These are the runs worth choosing from: any other run loses clean or adversarial accuracy for
    nothing. Runs with a missing x or y are left out. Group by ``["dataset", "model"]`` when the
    frame holds several datasets.
    """
    marked = mark_frontier(wide, x=x, y=y, by=by)
    keys = [by] if isinstance(by, str) else list(by or [])
    return marked[marked["on_frontier"]].sort_values([*keys, x, y]).reset_index(drop=True)


# --------------------------------------------------------------------------- selection rule


def _pick(frame: pd.DataFrame, order: list[tuple[str, bool]]) -> pd.Series:
    """First row after sorting by (column, ascending) pairs; NaNs last; run_id breaks remaining ties."""
    columns = [c for c, _ in order] + ["run_id"]
    ascending = [a for _, a in order] + [True]
    return frame.sort_values(columns, ascending=ascending, na_position="last", kind="mergesort").iloc[0]


def trades_clean_target(wide: pd.DataFrame) -> pd.Series:
    """Per dataset: the lowest, over models, of each model's highest TRADES clean accuracy.

    Every model can reach this clean accuracy in its beta sweep, so models are compared at (about)
    the same clean accuracy (paper Sec. 4).
    """
    trades = wide[(wide["training"] == "trades") & wide["clean_accuracy"].notna()]
    return trades.groupby(["dataset", "model"])["clean_accuracy"].max().groupby(level="dataset").min()


def select_best(wide: pd.DataFrame, adv_metric: str = "autoattack_accuracy") -> pd.DataFrame:
    """One run per (dataset, model, training), chosen by the paper's rule; ``selection`` says which rule.

    - pgd (lr x weight-decay grid, c_seg sweeps): highest `adv_metric`, ties -> higher clean
      accuracy (App. B.1: grid search for the best learning rate and weight decay).
    - trades (beta sweep): clean accuracy closest to the dataset's target (`trades_clean_target`),
      ties -> higher `adv_metric` (Sec. 4: models with similar clean accuracy are compared).
    - normal: highest clean accuracy, ties -> higher `adv_metric`.

    Extra columns: ``candidates`` (runs the choice was made from) and ``target_clean`` (TRADES).
    """
    if adv_metric not in wide.columns:
        raise KeyError(f"no {adv_metric!r} column; metrics present: {_present_metrics(wide)}")
    targets = trades_clean_target(wide)
    chosen: list[pd.Series] = []
    for (dataset, model, training), group in wide.groupby(["dataset", "model", "training"], sort=True):
        count = len(group)
        target = float("nan")
        if training == "trades" and dataset in targets.index and group["clean_accuracy"].notna().any():
            target = float(targets[dataset])
            ranked = group.assign(_distance=(group["clean_accuracy"] - target).abs().round(_DECIMALS))
            row = _pick(ranked, [("_distance", True), (adv_metric, False)]).drop("_distance")
            rule = (f"trades: clean accuracy closest to {target:g} (lowest over models of each model's best TRADES "
                    f"clean accuracy), ties -> higher {adv_metric}; {count} runs")
        elif training == "normal":
            row = _pick(group, [("clean_accuracy", False), (adv_metric, False)])
            rule = f"normal: highest clean_accuracy, ties -> higher {adv_metric}; {count} runs"
        else:
            row = _pick(group, [(adv_metric, False), ("clean_accuracy", False)])
            rule = f"{training}: highest {adv_metric}, ties -> higher clean_accuracy; {count} runs"
        chosen.append(pd.concat([row, pd.Series({"selection": rule, "candidates": count, "target_clean": target})]))
    if not chosen:
        return pd.DataFrame(columns=[*wide.columns, "selection", "candidates", "target_clean"])
    return pd.DataFrame(chosen).reset_index(drop=True)


# --------------------------------------------------------------------------- plot


_TRAINING_STYLE = {
    "pgd": {"marker": "o", "filled": True, "label": "PGD"},
    "trades": {"marker": "o", "filled": False, "label": "TRADES"},
    "normal": {"marker": "s", "filled": True, "label": "normal"},
}


def _axis_label(metric: str) -> str:
    name = metric.replace("_accuracy", "").replace("autoattack", "AutoAttack").replace("pgd", "PGD").replace("_", " ")
    return f"{name} accuracy (%)"


def plot_sweep(
    wide: pd.DataFrame,
    adv_metric: str = "autoattack_accuracy",
    frontier_trainings: Iterable[str] = ("pgd", "trades"),
) -> matplotlib.figure.Figure:
    """Clean (x) vs `adv_metric` (y) of every run, as the paper's Fig. 4; one panel per dataset.

    Colour = model; filled circles = PGD, open circles = TRADES (annotated with beta), squares =
    normal training. The line is each model's Pareto frontier over the `frontier_trainings` runs
    (normal training is left out by default: it sits at zero robustness and says nothing about the
    trade-off).
    """
    if adv_metric not in wide.columns:
        raise KeyError(f"no {adv_metric!r} column; metrics present: {_present_metrics(wide)}")
    datasets = sorted(wide["dataset"].dropna().unique()) or [""]
    present = list(dict.fromkeys(wide["model"].dropna()))
    models = [m for m in MODEL_COLORS if m in present] + [m for m in present if m not in MODEL_COLORS]
    others = iter(sns.color_palette("colorblind", n_colors=len(MODEL_COLORS) + len(models))[len(MODEL_COLORS):])
    colors = {m: MODEL_COLORS[m] if m in MODEL_COLORS else next(others) for m in models}
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.0 * len(datasets), 4.0), squeeze=False)
    trained = set(frontier_trainings)
    for ax, dataset in zip(axes[0], datasets):
        panel = wide[wide["dataset"] == dataset] if dataset else wide
        for model in models:
            runs = panel[panel["model"] == model]
            color = colors[model]
            for training, style in _TRAINING_STYLE.items():
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
        ax.set_ylabel(_axis_label(adv_metric))
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=colors[m], linewidth=1.2, label=model_label(m)) for m in models]
    present = set(wide["training"].dropna())
    handles += [
        Line2D([], [], linestyle="none", marker=s["marker"], color="0.3", markerfacecolor="0.3" if s["filled"] else "none",
               label=s["label"])
        for t, s in _TRAINING_STYLE.items() if t in present
    ]
    axes[0][-1].legend(handles=handles, fontsize=7, loc="best")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- paper tables


def paper_tables_dir(directory: str | Path | None = None) -> Path:
    """The transcribed paper tables: `directory`, else ``<repo>/../shared/spec/paper-tables``.

    The repository root is looked up from the working directory, then from this file.
    Raises FileNotFoundError (naming the paths tried) when the folder is absent.
    """
    if directory is not None:
        candidates = [Path(directory)]
    else:
        candidates = []
        for start in (None, Path(__file__).resolve().parent):
            try:
                candidates.append((find_repo_root(start).parent / "shared" / "spec" / "paper-tables").resolve())
            except FileNotFoundError:
                continue
    for path in candidates:
        if path.is_dir():
            return path
    tried = ", ".join(str(p) for p in dict.fromkeys(candidates)) or "no repository root found"
    raise FileNotFoundError(
        f"paper tables folder not found (tried: {tried}); it is <repo>/../shared/spec/paper-tables, or pass directory="
    )


def load_paper_table(number: int, directory: str | Path | None = None) -> pd.DataFrame:
    """Paper table `number` (``tableNN.csv``) in our names, one row per printed number.

    Models ``resnet50`` -> ``resnet``, ``bounding_box`` -> ``bbox``; attack -> our ``metric``
    (``clean`` -> ``clean_accuracy``, ``autoattack`` -> ``autoattack_accuracy``, ...; benchmarks ->
    `benchmark_metric`; the paper's own metric column is kept as ``paper_metric``); ``trades_beta`` -> ``beta``; ``epsilon`` -> ``eps``.
    lr, weight_decay, c_seg, beta and value are floats; empty cells (the missing Table 9 cell) are NaN.
    """
    path = paper_tables_dir(directory) / f"table{int(number):02d}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no paper table {number}: {path} does not exist")
    table = pd.read_csv(path, dtype=str, keep_default_na=False).replace("", np.nan)
    table = table.rename(columns={"metric": "paper_metric", **PAPER_COLUMNS})
    if "model" in table.columns:
        table["model"] = table["model"].map(lambda m: PAPER_MODELS.get(m, m) if isinstance(m, str) else m)
    if "attack" in table.columns:
        table["metric"] = table["attack"].map(lambda a: PAPER_ATTACKS.get(a, f"{a}_accuracy") if isinstance(a, str) else a)
    elif "benchmark" in table.columns:
        corruption = table["corruption"] if "corruption" in table.columns else pd.Series(None, index=table.index)
        table["metric"] = [benchmark_metric(b, c if isinstance(c, str) else None) for b, c in zip(table["benchmark"], corruption)]
    for column in ("table", "lr", "weight_decay", "c_seg", "beta", "value", "ci95"):
        if column in table.columns:
            table[column] = pd.to_numeric(table[column], errors="raise")
    table["table"] = table["table"].astype(int)
    return table


def paper_as_results(tables: Sequence[int] = (8, 9, 10), directory: str | Path | None = None) -> pd.DataFrame:
    """Paper sweep tables as a tidy results frame (one made-up run per printed table row).

    Lets the paper's sweeps go through `wide_runs`, `select_best` and `plot_sweep` like ours.
    Run ids look like ``paper-t08-resnet-trades-lr0.1-wd0.0005-b0.1``; ``n`` is unknown (NaN).
    """
    frames = []
    for number in tables:
        table = load_paper_table(number, directory)
        for column in ("lr", "weight_decay", "c_seg", "beta"):
            if column not in table.columns:
                table[column] = np.nan
        keys = ["dataset", "training", "model", "lr", "weight_decay", "c_seg", "beta"]

        def run_name(row: pd.Series) -> str:
            bits = [f"paper-t{number:02d}", row["model"], row["training"]]
            bits += [f"{tag}{row[c]:g}" for tag, c in (("lr", "lr"), ("wd", "weight_decay"), ("c", "c_seg"), ("b", "beta"))
                     if pd.notna(row[c])]
            return "-".join(bits)

        table["run_id"] = table[keys].apply(run_name, axis=1)
        # a run's eps is its evaluation budget: fill the clean rows from the run's adversarial rows
        table["eps"] = table.groupby("run_id")["eps"].transform(lambda s: s.ffill().bfill())
        table["experiment"] = f"paper_table{number:02d}"
        table["n"] = np.nan
        table["config_hash"] = ""
        frames.append(table)
    merged = pd.concat(frames, ignore_index=True)
    for column in RUN_COLUMNS:
        if column not in merged.columns:
            merged[column] = np.nan
    return merged[[*RUN_COLUMNS, "metric", "value", "n", "note", "config_hash"]]


def paper_datasets(directory: str | Path | None = None) -> set[str]:
    """Dataset names that appear in any paper table (the names our converters write)."""
    folder = paper_tables_dir(directory)
    names: set[str] = set()
    for path in sorted(folder.glob("table*.csv")):
        column = pd.read_csv(path, usecols=["dataset"], dtype=str, keep_default_na=False)["dataset"]
        names.update(n for n in column if n)
    return names


def is_comparable(results: pd.DataFrame, directory: str | Path | None = None) -> bool:
    """True when some result is on a dataset the paper tables cover (else: built-in data, nothing to compare).

    Results on the built-in dataset (and its label variants) alone need no paper tables at all.
    """
    real = {d for d in results["dataset"].dropna().astype(str) if not d.startswith(BUILTIN_DATASET)}
    return bool(real) and bool(real & paper_datasets(directory))


def _in_sweep_setup(results: pd.DataFrame, setup: dict[str, Any]) -> pd.Series:
    """Rows whose variant columns are empty (not applicable) or equal to `setup`."""
    keep = pd.Series(True, index=results.index)
    for column, expected in setup.items():
        if column not in results.columns:
            continue
        if isinstance(expected, bool):
            values = results[column].map(_as_bool)
            keep &= values.isna() | (values == expected)
        else:
            values = results[column].map(_key)
            keep &= (values == "") | (values == _key(expected))
    return keep


def compare_with_paper(results: pd.DataFrame, tables: Sequence[int] = (8, 9, 10), directory: str | Path | None = None) -> pd.DataFrame:
    """Paper's sweep numbers next to ours, one row per printed paper number, with the sweep's
    hyperparameter columns (notebook 02's view of `partrobust.report.paper.side_by_side`, which does the matching).

    Columns: ``table``, dataset, training, model, lr, weight_decay, c_seg, beta, metric, ``eps``,
    ``paper``, ``ours`` (mean over matching runs, NaN when none), ``difference`` (ours - paper),
    ``n`` (test images), ``runs`` and ``run_ids`` (comma-separated).
    """
    from .paper import side_by_side

    frames = []
    for number in tables:
        printed = load_paper_table(number, directory)
        side = side_by_side(results, number, directory)
        for column in ("lr", "weight_decay", "c_seg", "beta"):
            side[column] = printed[column].to_numpy() if column in printed.columns else np.nan
        frames.append(side)
    out = pd.concat(frames, ignore_index=True)
    out["runs"] = out["run_ids"].map(lambda ids: len(ids.split())).astype(int)
    out["run_ids"] = out["run_ids"].str.replace(" ", ",")
    order = ["table", "dataset", "training", "model", "lr", "weight_decay", "c_seg", "beta", "metric", "eps",
             "paper", "ours", "difference", "n", "runs", "run_ids"]
    return out[order]
