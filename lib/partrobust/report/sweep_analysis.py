"""Analysis of hyperparameter sweeps: the clean-vs-adversarial trade-off (paper Tables 8-10, Fig. 4).

Input is the tidy results frame (one row per run x metric, see `partrobust.core.results`). This module
pivots it to one row per run (`wide_runs`, `accuracy_table`) or per setting (`seed_means`), finds each model's Pareto frontier
(`frontier`) and applies the paper's model-selection rule (`select_best`). The sweep's figure is
`partrobust.report.figures.plot_sweep`; the paper's sweep tables next to ours are
`partrobust.report.paper.compare_with_paper`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..core.metrics import METRIC_ORDER
from ..core.results import RUN_COLUMNS, setting_columns
from .matching import DECIMALS

# --------------------------------------------------------------------------- small helpers


def _is_adversarial(metric: str) -> bool:
    return not str(metric).startswith("clean")


def present_metrics(frame: pd.DataFrame) -> list[str]:
    return [m for m in METRIC_ORDER if m in frame.columns]


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
    values = values.reindex(columns=[m for m in METRIC_ORDER if m in values.columns] + [m for m in values.columns if m not in METRIC_ORDER])
    values.columns.name = None
    n = results.groupby("run_id")["n"].max() if "n" in results.columns else pd.Series(dtype=float)
    wide = ids.join(n.rename("n")).join(values).reset_index()
    return wide[[c for c in id_columns if c in wide.columns] + [c for c in wide.columns if c not in id_columns]]


def seed_means(wide: pd.DataFrame) -> pd.DataFrame:
    """One row per setting of a per-run frame (`wide_runs`): runs equal in every identifying column but the
    experiment, run id and seed (`partrobust.core.results.setting_columns`) averaged. Metric columns hold
    the mean over the setting's runs, ``n`` the fewest test images, ``seeds`` the number of runs and
    ``run_ids`` their ids. Figures compare settings, not seeds: a frontier drawn through the seeds of one
    setting would show their spread as a trade-off (Fig. 4)."""
    keys = setting_columns(wide)
    identifying = {*RUN_COLUMNS, *keys, "config_hash", "n"}
    metrics = [c for c in wide.columns if c not in identifying and pd.api.types.is_numeric_dtype(wide[c])]
    if wide.empty:
        return pd.DataFrame(columns=[*keys, "n", *metrics, "seeds", "run_ids"])
    grouped = wide.groupby(keys, sort=False, dropna=False)
    means = grouped[metrics].mean()
    means["n"] = grouped["n"].min() if "n" in wide.columns else np.nan
    means["seeds"] = grouped["run_id"].nunique()
    means["run_ids"] = grouped["run_id"].agg(lambda ids: " ".join(map(str, ids)))
    return means.reset_index()[[*keys, "n", *metrics, "seeds", "run_ids"]]


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


def _comparable_pick(group: pd.DataFrame, baseline_adv: float, adv_metric: str) -> tuple[pd.Series, str]:
    """App. B.1's pick for a part model: the highest clean accuracy among the runs whose `adv_metric` is
    comparable with (not below) the baseline's; none such: the highest `adv_metric`."""
    comparable = group[group[adv_metric].round(DECIMALS) >= round(baseline_adv, DECIMALS)]
    if comparable.empty:
        return (_pick(group, [(adv_metric, False), ("clean_accuracy", False)]),
                f"no run reaches the baseline's {adv_metric} {baseline_adv:g}: highest {adv_metric}")
    return (_pick(comparable, [("clean_accuracy", False), (adv_metric, False)]),
            f"highest clean_accuracy among the {len(comparable)} runs with {adv_metric} >= the baseline's {baseline_adv:g} "
            "(App. B.1: comparable adversarial accuracy)")


def select_best(wide: pd.DataFrame, adv_metric: str = "autoattack_accuracy", baseline: pd.Series | None = None) -> pd.DataFrame:
    """One run per (dataset, model, training), chosen by the paper's rule; ``selection`` says which rule.

    - pgd, the baseline (lr x weight-decay grid): highest `adv_metric`, ties -> higher clean
      accuracy (App. B.1: grid search for the best learning rate and weight decay).
    - pgd, a part model (grid and c_seg sweep): App. B.1 reports "the model with comparable
      adversarial accuracy to the baseline": the highest clean accuracy among its runs whose
      `adv_metric` is not below the baseline's pick of the same dataset (`_comparable_pick`);
      without a baseline pick, the baseline's rule.
    - trades (beta sweep): clean accuracy closest to the dataset's target (`trades_clean_target`),
      ties -> higher `adv_metric` (Sec. 4: models with similar clean accuracy are compared).
    - normal: highest clean accuracy, ties -> higher `adv_metric`.

    `baseline`: True for the baseline's rows (default: model ``resnet``). Extra columns:
    ``candidates`` (runs the choice was made from) and ``target_clean`` (TRADES).
    """
    if adv_metric not in wide.columns:
        raise KeyError(f"no {adv_metric!r} column; metrics present: {present_metrics(wide)}")
    wide = wide.assign(_baseline=(wide["model"].eq("resnet") if baseline is None else baseline).to_numpy(bool))
    targets = trades_clean_target(wide)
    baseline_adv = {}
    for (dataset, training), group in wide[wide["_baseline"]].groupby(["dataset", "training"]):
        if training == "pgd" and group[adv_metric].notna().any():
            baseline_adv[dataset] = float(_pick(group, [(adv_metric, False), ("clean_accuracy", False)])[adv_metric])
    chosen: list[pd.Series] = []
    for (dataset, model, training), group in wide.groupby(["dataset", "model", "training"], sort=True):
        count = len(group)
        target = float("nan")
        if training == "trades" and dataset in targets.index and group["clean_accuracy"].notna().any():
            target = float(targets[dataset])
            ranked = group.assign(_distance=(group["clean_accuracy"] - target).abs().round(DECIMALS))
            row = _pick(ranked, [("_distance", True), (adv_metric, False)]).drop("_distance")
            rule = (f"trades: clean accuracy closest to {target:g} (lowest over models of each model's best TRADES "
                    f"clean accuracy), ties -> higher {adv_metric}; {count} runs")
        elif training == "normal":
            row = _pick(group, [("clean_accuracy", False), (adv_metric, False)])
            rule = f"normal: highest clean_accuracy, ties -> higher {adv_metric}; {count} runs"
        elif training == "pgd" and not group["_baseline"].all() and dataset in baseline_adv:
            row, how = _comparable_pick(group, baseline_adv[dataset], adv_metric)
            rule = f"pgd: {how}; {count} runs"
        else:
            row = _pick(group, [(adv_metric, False), ("clean_accuracy", False)])
            rule = f"{training}: highest {adv_metric}, ties -> higher clean_accuracy; {count} runs"
        chosen.append(pd.concat([row.drop("_baseline"), pd.Series({"selection": rule, "candidates": count, "target_clean": target})]))
    if not chosen:
        return pd.DataFrame(columns=[*wide.columns.drop("_baseline"), "selection", "candidates", "target_clean"])
    return pd.DataFrame(chosen).reset_index(drop=True)


# --------------------------------------------------------------------------- plot


# --------------------------------------------------------------------------- paper tables


def accuracy_table(results: pd.DataFrame) -> pd.DataFrame:
    """Wide table (one row per dataset x training x model, one column per metric)."""
    table = results.pivot_table(index=["dataset", "training", "model"], columns="metric", values="value", aggfunc="first")
    return table.reindex(columns=[c for c in METRIC_ORDER if c in table.columns] + [c for c in table.columns if c not in METRIC_ORDER])
