"""The paper's claims, each with the evidence our results give and a status (``figures/REPORT.md``).

Statuses:

* ``reproduced``: every comparison the claim makes goes the paper's way and, where there are
  seeds on both sides, a two-sample Welch t-test (scipy.stats) gives p < 0.05 for each;
* ``direction only``: every comparison goes the paper's way, but not all are significant (or
  there is one seed, so no test is possible);
* ``not reproduced``: at least one comparison goes the other way;
* ``not yet run``: the runs the claim needs do not exist (the evidence names the command).

Claims are evaluated per source: each paper dataset (runs pooled across experiments) and each
built-in-data experiment on its own (labelled as such; never compared with the paper's numbers).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from ..core.metrics import benchmark_metric
from .masking_verdicts import cap_masking_claim
from .paper import MAIN_RUNS, NOTEBOOK_03, NOTEBOOK_04, TABLES, in_main_setup, with_source
from .stats import t_test
from .style import model_label
from .sweep_analysis import frontier, wide_runs

ALPHA = 0.05
PART_MODELS = ("downsampled", "bbox")
PAPER_DATASETS = ("part_imagenet", "cityscapes", "pascal_part")
STATUS_ORDER = ("reproduced", "direction only", "not reproduced", "not yet run")
MASKING_TOLERANCE = 1.0
"""Percentage points by which AutoAttack may exceed PGD accuracy on the same images before the
gradient-masking check fails (AutoAttack and PGD use different random starts)."""


@dataclass(frozen=True)
class Comparison:
    """One part model vs the ResNet on one metric: means, difference, p-value, run ids."""

    label: str
    part: float
    resnet: float
    p_value: float

    @property
    def difference(self) -> float:
        return self.part - self.resnet

    def text(self) -> str:
        p = "one seed, no test" if math.isnan(self.p_value) else f"p = {self.p_value:.3g}"
        return f"{self.label}: {self.part:.1f} vs {self.resnet:.1f} ({self.difference:+.1f}; {p})"


def welch_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Welch t-test p-value; NaN when either side has fewer than two values."""
    if len(a) < 2 or len(b) < 2:
        return math.nan
    if np.all(a == a[0]) and np.all(b == b[0]):
        return 0.0 if a[0] != b[0] else 1.0
    return t_test(a, b)[1]


def status_of(comparisons: list[Comparison]) -> str:
    if not comparisons:
        return "not yet run"
    if any(c.difference <= 0 for c in comparisons):
        return "not reproduced"
    if all(not math.isnan(c.p_value) and c.p_value < ALPHA for c in comparisons):
        return "reproduced"
    return "direction only"


def _values(results: pd.DataFrame, run_ids: str, metric: str) -> np.ndarray:
    rows = results[results["run_id"].isin(run_ids.split()) & (results["metric"] == metric)]
    return rows.groupby("run_id")["value"].mean().to_numpy(float)


def _cells(side: pd.DataFrame, builtin: pd.DataFrame, table: int) -> pd.DataFrame:
    """Our matched cells of `table` (paper datasets) and its built-in layout, with a ``source`` column."""
    real = side[(side["table"] == table) & (side["status"] == "ours")].assign(source=lambda d: d["dataset"])
    ours = builtin[(builtin["table"] == table) & (builtin["status"] == "ours")].assign(source=lambda d: d["dataset"])
    return pd.concat([real, ours], ignore_index=True)


def _sources(results: pd.DataFrame) -> list[str]:
    return sorted(set(PAPER_DATASETS) | set(results["source"]))


# --------------------------------------------------------------------------- claims


def _versus_resnet(results: pd.DataFrame, cells: pd.DataFrame, training: str, metric: str,
                   label: str) -> tuple[list[Comparison], list[str]]:
    """Each part model's cell against the ResNet's (same training and metric), with Welch's p over seeds."""
    group = cells[(cells["training"] == training) & (cells["metric"] == metric)].set_index("model")
    if "resnet" not in group.index:
        return [], [f"{training} ResNet"]
    comparisons, gaps = [], []
    for model in PART_MODELS:
        if model not in group.index:
            gaps.append(f"{training} {model_label(model)}")
            continue
        p = welch_p(_values(results, group.at[model, "run_ids"], metric), _values(results, group.at["resnet", "run_ids"], metric))
        comparisons.append(Comparison(f"{label}, {model_label(model)}", group.at[model, "ours"], group.at["resnet", "ours"], p))
    return comparisons, gaps


def _verdict(comparisons: list[Comparison], gaps: list[str], produced_by: str) -> tuple[str, str]:
    if not comparisons:
        return "not yet run", f"no runs; produced by: {produced_by}"
    evidence = "; ".join(c.text() for c in comparisons)
    if gaps:
        evidence += f". Not run: {', '.join(sorted(set(gaps)))}"
    return status_of(comparisons), evidence


def beats_resnet(results: pd.DataFrame, side: pd.DataFrame, builtin: pd.DataFrame, source: str) -> tuple[str, str]:
    """Table 1: each part model vs the ResNet, clean and AutoAttack accuracy, under PGD and TRADES."""
    cells = _cells(side, builtin, 1)
    cells = cells[cells["source"] == source]
    comparisons, gaps = [], []
    for training in ("pgd", "trades"):
        for metric in ("clean_accuracy", "autoattack_accuracy"):
            found, missing = _versus_resnet(results, cells, training, metric, f"{training}, {metric.replace('_accuracy', '')}")
            comparisons += found
            gaps += missing
    return _verdict(comparisons, gaps, MAIN_RUNS if not source.startswith("builtin:") else "make study")


BENCHMARK_TABLES = {2: benchmark_metric("common_corruption"), 3: benchmark_metric("spurious_correlation"), 4: benchmark_metric("shape_vs_texture")}


def beats_resnet_benchmarks(results: pd.DataFrame, side: pd.DataFrame, builtin: pd.DataFrame, source: str) -> tuple[str, str]:
    """Tables 2-4: each normally trained part model vs the ResNet on corruptions, spurious correlation, shape vs texture."""
    comparisons, gaps = [], []
    for table, metric in BENCHMARK_TABLES.items():
        cells = _cells(side, builtin, table)
        found, missing = _versus_resnet(results, cells[cells["source"] == source], "normal", metric,
                                        f"Table {table} {metric.replace('_accuracy', '').replace('_', ' ')}")
        comparisons += found
        gaps += [f"{g} (Table {table})" for g in missing]
    return _verdict(comparisons, gaps, NOTEBOOK_04)


def dominates_tradeoff(results: pd.DataFrame, side: pd.DataFrame, builtin: pd.DataFrame, source: str) -> tuple[str, str]:
    """Fig. 4: every point of the ResNet's clean-vs-AutoAttack frontier (PGD and TRADES runs of the
    paper's main setup, no ablations) is matched or beaten on both axes by a run of each part model."""
    runs = results[(results["source"] == source) & results["training"].isin(["pgd", "trades"]) & in_main_setup(results)]
    wide = wide_runs(runs)
    if wide.empty or "autoattack_accuracy" not in wide or not {"resnet", *PART_MODELS} <= set(wide["model"]):
        return "not yet run", "needs PGD/TRADES runs of the ResNet and both part models with AutoAttack"
    line = frontier(wide[wide["model"] == "resnet"], by=None)
    verdicts = []
    for model in PART_MODELS:
        part = wide[wide["model"] == model]
        beaten = sum(bool(((part["clean_accuracy"] >= r.clean_accuracy) & (part["autoattack_accuracy"] >= r.autoattack_accuracy)).any())
                     for r in line.itertuples())
        verdicts.append((model, beaten, len(line)))
    evidence = "; ".join(f"{model_label(m)} matches or beats {b} of the ResNet's {n} frontier points" for m, b, n in verdicts)
    evidence += f" ({wide['run_id'].nunique()} runs, one point per run)"
    status = "direction only" if all(b == n for _, b, n in verdicts) else "not reproduced"
    return status, evidence + ("; a frontier comparison has no significance test" if status == "direction only" else "")


def no_masking_aa_below_pgd(results: pd.DataFrame, side: pd.DataFrame, builtin: pd.DataFrame, source: str) -> tuple[str, str]:
    """Gradient masking check: AutoAttack (the stronger attack) never leaves more accuracy than PGD on the same run."""
    wide = wide_runs(results[results["source"] == source])
    if wide.empty or not {"pgd_accuracy", "autoattack_accuracy"} <= set(wide.columns):
        return "not yet run", "needs runs evaluated with PGD and AutoAttack"
    both = wide.dropna(subset=["pgd_accuracy", "autoattack_accuracy"])
    worse = both[both["autoattack_accuracy"] > both["pgd_accuracy"] + MASKING_TOLERANCE]
    evidence = (f"AutoAttack <= PGD + {MASKING_TOLERANCE:g} points on {len(both) - len(worse)} of {len(both)} runs; "
                f"mean PGD - AutoAttack gap {float((both['pgd_accuracy'] - both['autoattack_accuracy']).mean()):.1f} points")
    if len(worse):
        evidence += "; fails on " + ", ".join(worse["run_id"])
    return ("not reproduced" if len(worse) else "reproduced"), evidence


def no_masking_large_eps(results: pd.DataFrame, side: pd.DataFrame, builtin: pd.DataFrame, source: str) -> tuple[str, str]:
    """Gradient masking check (Table 11): at eps 32/255 the adversarial accuracy is near 0 (< 5 %)."""
    rows = results[(results["source"] == source) & results["metric"].isin(["autoattack_accuracy", "pgd_accuracy"])]
    eps = rows["eps"] if not rows.empty else pd.Series(dtype=float)
    large = rows[np.isclose(eps.astype(float), 32 / 255)] if not rows.empty else rows
    if large.empty:
        return "not yet run", f"needs evaluations at eps 32/255; produced by: {NOTEBOOK_03}"
    high = large[large["value"] >= 5.0]
    evidence = f"{len(large) - len(high)} of {len(large)} evaluations at 32/255 below 5 %"
    return ("not reproduced" if len(high) else "reproduced"), evidence


def _from_table(table: int, what: str) -> Callable[..., tuple[str, str]]:
    """A claim whose evidence would be cells of paper `table` that we cannot produce yet."""
    def check(results: pd.DataFrame, side: pd.DataFrame, builtin: pd.DataFrame, source: str) -> tuple[str, str]:
        cells = _cells(side, builtin, table)
        cells = cells[cells["source"] == source]
        if cells.empty:
            return "not yet run", f"needs {what}; produced by: {TABLES[table].produced_by}"
        return "not yet run", (f"{len(cells)} cells of Table {table} exist, but the comparison it needs is not all there; "
                               f"see paper/tables/table{table:02d}.md")
    return check


@dataclass(frozen=True)
class Claim:
    name: str
    paper: str
    check: Callable[..., tuple[str, str]]


CLAIMS = [
    Claim("Part models beat the ResNet on clean and AutoAttack accuracy", "Table 1, Sec. 4", beats_resnet),
    Claim("Part models dominate the ResNet's clean-robust trade-off", "Fig. 4, Tables 8-10", dominates_tradeoff),
    Claim("Not gradient masking: AutoAttack is not weaker than PGD", "Sec. 4, App. E.4", no_masking_aa_below_pgd),
    Claim("Not gradient masking: accuracy near 0 at eps 32/255", "Table 11, App. E.4", no_masking_large_eps),
    Claim("Not gradient masking: attacks on the segmenter and two-stage attacks do not do better", "Tables 12-13",
          _from_table(13, "two-stage attacks")),
    Claim("The part labels, not the architecture, bring the gains", "Table 5, App. E.3",
          _from_table(5, "part models trained with c_seg = 0")),
    Claim("Non-adversarial robustness 3-7 points better than the ResNet", "Tables 2-4, 6, 7",
          beats_resnet_benchmarks),
    Claim("Cheaper labels (part boxes, centroids) keep most of the gain", "Table 14, App. E.5",
          _from_table(14, "runs with box and centroid labels")),
]
"""The claims `figures/REPORT.md` tracks, in the paper's order of importance."""


def evaluate_claims(results: pd.DataFrame, side: pd.DataFrame, builtin: pd.DataFrame) -> pd.DataFrame:
    """One row per claim x source: claim, paper, source, status, evidence. Every check gets the
    results with their ``source`` column (`partrobust.report.paper.with_source`), added here if missing."""
    results = results if "source" in results.columns else with_source(results)
    rows = []
    for claim in CLAIMS:
        for source in _sources(results):
            status, evidence = claim.check(results, side, builtin, source)
            status, evidence = cap_masking_claim(claim.name, status, evidence, results[results["source"] == source])
            rows.append({"claim": claim.name, "paper": claim.paper, "source": source, "status": status, "evidence": evidence})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the report


