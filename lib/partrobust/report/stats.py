"""Statistics over training seeds: mean and Student-t confidence interval per model and training.

The paper reports robustness numbers as the mean over training seeds with a 95 % confidence
interval (Tables 2-4, 6, 7). Here every number is computed from the tidy results of the runs
(one row per run x metric, see `partrobust.core.results`) by one aggregation, `over_seeds`: it
groups runs that differ only in their seed and gives the mean, the sample standard deviation, the
t-interval ``mean +/- t_{(1+c)/2, n-1} * sd / sqrt(n)`` and the run ids behind it. `seed_summary`
(notebook 02, the study's table), `partrobust.report.paper.settings` (the paper join) and notebook
04's `partrobust.report.robustness.benchmark_table` are views of it; `t_test` compares two groups.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ..core.metrics import SUMMARY_METRICS
from ..core.results import distinguishing_columns, setting_columns
from .style import MODEL_LABELS, TRAINING_ORDER, metric_label, model_label, seeds_caption


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """(mean, half-width of the two-sided Student-t confidence interval); the half-width is NaN for one value."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("mean_ci needs at least one value")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if x.size == 1:
        return float(x[0]), math.nan
    sem = x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean()), float(stats.t.ppf((1 + confidence) / 2, df=x.size - 1) * sem)


def t_test(a: Sequence[float], b: Sequence[float], equal_var: bool = False) -> tuple[float, float]:
    """(t statistic, two-sided p-value) of the two-sample t-test of `a` against `b` (Welch's unless
    `equal_var`); NaN when a side has fewer than two values or both sides are constant."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return math.nan, math.nan
    result = stats.ttest_ind(a, b, equal_var=equal_var)
    return float(result.statistic), float(result.pvalue)


OVER_SEEDS_COLUMNS = ["mean", "sd", "ci_low", "ci_high", "half_width", "confidence", "seeds", "n", "run_ids"]


def seed_samples(rows: pd.DataFrame) -> pd.Series:
    """One value per seed, i.e. per trained model, of `rows` (``run_id``, ``seed``, ``value``): each run's rows
    averaged, then the runs of one seed (re-evaluations of the same trained model) averaged. Indexed by seed,
    in the order of first appearance; runs without a seed (NaN) are one sample together. `over_seeds` and the
    claims' t-tests (`partrobust.report.claims`) take their samples from here."""
    per_run = rows.groupby("run_id", sort=False).agg(value=("value", "mean"), seed=("seed", "first"))
    return per_run.groupby("seed", sort=False, dropna=False)["value"].mean()


def over_seeds(frame: pd.DataFrame, by: Sequence[str], confidence: float = 0.95, *, one_run_per_seed: bool = True,
               sort: bool = False) -> pd.DataFrame:
    """The mean and Student-t interval over seeds: one row per group of runs equal in `by`.

    This is the project's one aggregation over seeds (`seed_summary`, the paper join's `settings`,
    notebook 04's tables all call it). A sample is a seed, i.e. a trained model: a run counts once
    (its rows of a group are averaged first), and without `one_run_per_seed` the runs of one seed
    (re-evaluations of the same trained model, which share its training phase) are averaged into one
    sample. Columns `OVER_SEEDS_COLUMNS`: mean, sample sd, CI bounds and half-width (`mean_ci`; NaN
    for one seed), the confidence, the number of distinct seeds (``seeds``), the fewest test images
    (``n``) and the run ids in seed order. With `one_run_per_seed`, a group holding two runs with
    the same seed is an error that names them (they differ in a key missing from `by`). Groups come
    in the order of their first row (`sort`: sorted).
    """
    if "n" not in frame.columns:  # test images unknown
        frame = frame.assign(n=math.nan)
    rows = []
    for keys, group in frame.groupby(list(by), sort=sort, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        per_run = group.groupby("run_id", sort=False).agg(value=("value", "mean"), n=("n", "min"), seed=("seed", "first"))
        if one_run_per_seed and per_run["seed"].duplicated().any():
            shared = per_run.index[per_run["seed"].duplicated(keep=False)].tolist()
            raise ValueError(f"{dict(zip(by, keys))}: several runs share a seed ({shared}); group by the keys that tell them apart")
        per_seed = seed_samples(group)  # one sample per trained model
        mean, half = mean_ci(per_seed.to_numpy(float), confidence)
        rows.append({**dict(zip(by, keys)), "mean": mean, "sd": float(per_seed.std(ddof=1)) if len(per_seed) > 1 else math.nan,
                     "ci_low": mean - half, "ci_high": mean + half, "half_width": half, "confidence": confidence,
                     "seeds": len(per_seed), "n": per_run["n"].min(),
                     "run_ids": " ".join(per_run.sort_values("seed", kind="stable").index.astype(str))})
    return pd.DataFrame(rows, columns=[*by, *OVER_SEEDS_COLUMNS])


def seed_summary(results: pd.DataFrame, by: Sequence[str] | None = None,
                 metrics: Sequence[str] = SUMMARY_METRICS, confidence: float = 0.95) -> pd.DataFrame:
    """One row per setting x metric (`over_seeds`; ``n`` is called ``test_images``), in the order
    training, model, metric.

    A setting is a group of runs equal in `by` (default: every identifying column but the seed,
    `setting_columns`). Raises ValueError if a group holds two runs with the same seed.
    """
    by = list(by) if by is not None else setting_columns(results)
    missing = [c for c in (*by, "seed", "run_id", "metric", "value", "n") if c not in results.columns]
    if missing:
        raise ValueError(f"results lack column(s) {missing}")
    frame = results[results.metric.isin(metrics)]
    if frame.empty:
        return pd.DataFrame()
    setting = frame.groupby(by, sort=False, dropna=False).ngroup()  # each setting's metrics together, settings in order
    frame = frame.assign(_setting=setting).sort_values("_setting", kind="stable").drop(columns="_setting")
    summary = over_seeds(frame, [*by, "metric"], confidence).rename(columns={"n": "test_images"})
    summary["test_images"] = summary["test_images"].astype(int)
    ranks = {"training": TRAINING_ORDER, "model": tuple(MODEL_LABELS), "metric": tuple(metrics)}
    keys = [k for k in ranks if k in summary.columns]
    rank_columns = {f"_{k}": summary[k].map(lambda v, known=ranks[k]: known.index(v) if v in known else len(known)) for k in keys}
    return summary.assign(**rank_columns).sort_values(list(rank_columns), kind="stable").drop(columns=list(rank_columns)).reset_index(drop=True)


def format_mean_ci(mean: float, half_width: float, decimals: int = 1) -> str:
    """'85.3 ± 1.2' (or '85.3' for a single seed)."""
    if math.isnan(half_width):
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f} ± {half_width:.{decimals}f}"


def seed_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Wide view of `seed_summary`: one row per setting (training, model and whatever else varies,
    empty where it does not apply), one 'mean ± CI' column per metric, plus the number of seeds."""
    index = ["training", "model", *distinguishing_columns(summary)]
    labels = [metric_label(m) for m in SUMMARY_METRICS if m in set(summary.metric)]
    rows = []
    for keys, group in summary.astype({c: object for c in index}).fillna({c: "" for c in index}).groupby(index, sort=False):
        cells = {metric_label(m): format_mean_ci(r["mean"], r.half_width) for m, r in group.set_index("metric").iterrows()}
        rows.append({**dict(zip(index, keys)), **{label: cells.get(label, "") for label in labels}, "seeds": int(group.seeds.min())})
    return pd.DataFrame(rows).set_index(index)


def seed_table_markdown(summary: pd.DataFrame, results: pd.DataFrame, source: str) -> str:
    """The seed table as Markdown, with what it was computed from (runs, test images, attack settings)."""
    table = seed_table(summary).reset_index()
    table["model"] = table["model"].map(model_label)
    confidence = summary.confidence.iloc[0]
    described = results[results.metric.isin(summary.metric.unique()) & results.note.fillna("").ne("")]
    notes = described.groupby("metric", sort=False).note.agg(lambda n: " / ".join(sorted(set(n))))
    caption = (f"Accuracy (%) on the first {int(summary.test_images.min())} test images: "
               f"{seeds_caption(summary.seeds, confidence)} (Student-t); {results.run_id.nunique()} runs of `{source}`.")
    lines = [table.to_markdown(index=False), "", caption, ""]
    lines += [f"- {metric_label(m)}: {note}." for m, note in notes.items()]
    return "\n".join(lines) + "\n"


