"""The paper's claims, each with the evidence our results give and a status (``figures/REPORT.md``).

Statuses:

* ``reproduced``: every comparison the claim makes goes the paper's way by at least the size the
  paper claims (``margin``, 0 for a plain "better") and a two-sample Welch t-test (scipy.stats) of
  that size gives p < 0.05 for each, with at least `MIN_SEEDS` distinct seeds on each side;
* ``direction only``: every comparison goes the paper's way (by the claimed size), but not all are
  significant, or there are too few seeds for a test;
* ``not reproduced``: at least one comparison falls short of the claimed size (or goes the other way);
* ``inconclusive``: the only comparisons are against a baseline at chance level (`at_chance`);
* ``not yet run``: the runs the claim needs do not exist (the evidence names the command).

A sample is a seed, i.e. a trained model: runs of one seed (re-evaluations of the same trained
model) are averaged into one value before a test. Claims are evaluated per source: each paper
dataset (runs pooled across experiments, only cells measured as the paper measured) and each
built-in-data experiment on its own; there ``reproduced`` / ``not reproduced`` read ``built-in
check holds`` / ``built-in check fails``, since built-in data checks the method, not the paper's numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from ..core.metrics import benchmark_metric
from ..core.results import trained_run_ids
from ..train.loop import TrainConfig
from .ablations import verdict_label_kinds, verdict_part_labels, verdict_two_stage
from .masking_verdicts import cap_masking_claim
from .paper import BUILTIN_SOURCE, MAKE_TARGETS, at_chance, chance_level, in_main_setup, is_builtin_source, with_source
from .stats import seed_samples, t_test
from .style import model_label
from .sweep_analysis import frontier, wide_runs

ALPHA = 0.05
PART_MODELS = ("downsampled", "bbox")
PAPER_DATASETS = ("part_imagenet", "cityscapes", "pascal_part")
STATUS_ORDER = ("reproduced", "direction only", "not reproduced", "inconclusive", "not yet run")
BUILTIN_STATUS = {"reproduced": "built-in check holds", "not reproduced": "built-in check fails"}
"""How a status reads for built-in data (a check of the method, not a reproduction of the paper)."""
MIN_SEEDS = 3
"""Distinct seeds (trained models) each side needs before a claim is tested."""

MASKING_TOLERANCE = 1.0
"""Percentage points by which AutoAttack may exceed PGD accuracy on the same images before the
gradient-masking check fails (AutoAttack and PGD use different random starts)."""


@dataclass(frozen=True)
class Comparison:
    """One part model vs the ResNet on one metric: means, p-value of the claimed size, seeds per side.

    margin: the size the paper claims (``part - resnet > margin``; 0 for a plain "better")."""

    label: str
    part: float
    resnet: float
    p_value: float
    seeds: tuple[int, int] = (0, 0)
    margin: float = 0.0

    @property
    def difference(self) -> float:
        return self.part - self.resnet

    def text(self) -> str:
        size = f"claimed > +{self.margin:g}; " if self.margin else ""
        seeds = f"{self.seeds[0]} vs {self.seeds[1]} seeds"
        p = f"fewer than {MIN_SEEDS} seeds a side or no spread, no test" if math.isnan(self.p_value) else f"p = {self.p_value:.3g}"
        return f"{self.label}: {self.part:.1f} vs {self.resnet:.1f} ({self.difference:+.1f}; {size}{seeds}; {p})"


def welch_p(a: np.ndarray, b: np.ndarray, margin: float = 0.0) -> float:
    """Two-sided Welch t-test p-value of ``mean(a) - mean(b) = margin``, one value per seed; NaN when
    either side has fewer than `MIN_SEEDS` values or both sides are constant (no spread, no test)."""
    if len(a) < MIN_SEEDS or len(b) < MIN_SEEDS:
        return math.nan
    return t_test(np.asarray(a, float) - margin, b)[1]


def status_of(comparisons: list[Comparison]) -> str:
    if not comparisons:
        return "not yet run"
    if any(c.difference <= c.margin for c in comparisons):
        return "not reproduced"
    if all(not math.isnan(c.p_value) and c.p_value < ALPHA for c in comparisons):
        return "reproduced"
    return "direction only"


def _values(results: pd.DataFrame, run_ids: str, metric: str) -> np.ndarray:
    """One value per seed (a trained model; its runs, e.g. re-evaluations, averaged) of `metric` in `run_ids`."""
    rows = results[results["run_id"].isin(run_ids.split()) & (results["metric"] == metric)]
    return seed_samples(rows).to_numpy(float)


RECIPES = {"main": ("params/{dataset}.yaml", "builtin_study"), "ablations": ("params/{dataset}_ablations.yaml", "ablations_smoke"),
           "robustness": ("params/{dataset}_robustness.yaml", "robustness_smoke")}
"""What a claim needs -> (a paper dataset's params file, the built-in experiment that makes it)."""


def produced_by(source: str, kind: str = "main") -> str:
    """The command that produces the runs a claim of `kind` (`RECIPES`) needs on `source`: a paper
    dataset's own params file; for built-in data the source's own ``make`` target, or, when its recipe
    has no such runs, that target and the one that makes them (as a built-in source of its own)."""
    params, experiment = RECIPES[kind]
    if not is_builtin_source(source):
        if kind == "robustness" and source != "part_imagenet":
            return "none: the paper's Tables 2-4 are on Part-ImageNet only"
        return f"python -m partrobust.pipeline {params.format(dataset=source)}"
    own = source.removeprefix(BUILTIN_SOURCE)
    command = MAKE_TARGETS.get(own, f"python -m partrobust.pipeline params/{own}.yaml")
    if own == experiment:
        return command
    return f"not in this source's recipe ({command}); {MAKE_TARGETS[experiment]} makes them, as built-in data ({experiment})"


def _cells(side: pd.DataFrame, builtin: pd.DataFrame, table: int) -> pd.DataFrame:
    """Our matched cells of `table` (paper datasets) and its built-in layout, with a ``source`` column."""
    real = side[(side["table"] == table) & (side["status"] == "ours")].assign(source=lambda d: d["dataset"])
    ours = builtin[(builtin["table"] == table) & (builtin["status"] == "ours")].assign(source=lambda d: d["dataset"])
    return pd.concat([real, ours], ignore_index=True)


def _sources(results: pd.DataFrame) -> list[str]:
    return sorted(set(PAPER_DATASETS) | set(results["source"]))


# --------------------------------------------------------------------------- claims


def _versus_resnet(results: pd.DataFrame, cells: pd.DataFrame, training: str, metric: str,
                   label: str, margin: float = 0.0) -> tuple[list[Comparison], list[str], list[str]]:
    """Each part model's cell against the ResNet's (same training and metric), with Welch's p over seeds:
    (comparisons, what is not run, baselines left out). A ResNet at chance level (`at_chance`, its clean
    accuracy) gives no comparison but a sentence that says so."""
    group = cells[(cells["training"] == training) & (cells["metric"] == metric)].set_index("model")
    if "resnet" not in group.index:
        return [], [f"{training} ResNet"], []
    source = str(cells["source"].iloc[0])
    clean = cells[(cells["training"] == training) & (cells["metric"] == "clean_accuracy") & (cells["model"] == "resnet")]["ours"]
    if not clean.empty and at_chance(float(clean.iloc[0]), source):
        return [], [], [f"{training} ResNet clean accuracy {float(clean.iloc[0]):.1f} % is at chance level "
                        f"({chance_level(source):.0f} %), not evidence"]
    comparisons, gaps = [], []
    for model in PART_MODELS:
        if model not in group.index:
            gaps.append(f"{training} {model_label(model)}")
            continue
        part, resnet = _values(results, group.at[model, "run_ids"], metric), _values(results, group.at["resnet", "run_ids"], metric)
        comparisons.append(Comparison(f"{label}, {model_label(model)}", group.at[model, "ours"], group.at["resnet", "ours"],
                                      welch_p(part, resnet, margin), (len(part), len(resnet)), margin))
    return comparisons, gaps, []


def _verdict(comparisons: list[Comparison], gaps: list[str], chance: list[str], produced_by: str) -> tuple[str, str]:
    """Status and evidence of the comparisons; `gaps`: what is not run; `chance`: baselines left out at chance level."""
    flagged = "; ".join(sorted(set(chance)))
    if not comparisons:
        if chance:
            return "inconclusive", flagged
        return "not yet run", f"no runs; produced by: {produced_by}"
    evidence = "; ".join(c.text() for c in comparisons)
    if gaps:
        evidence += f". Not run: {', '.join(sorted(set(gaps)))}"
    if chance:
        evidence += f". Left out: {flagged}"
    return status_of(comparisons), evidence


def beats_resnet(results: pd.DataFrame, side: pd.DataFrame, builtin: pd.DataFrame, source: str) -> tuple[str, str]:
    """Table 1: each part model vs the ResNet, clean and AutoAttack accuracy, under PGD and TRADES."""
    cells = _cells(side, builtin, 1)
    cells = cells[cells["source"] == source]
    comparisons, gaps, chance = [], [], []
    for training in ("pgd", "trades"):
        for metric in ("clean_accuracy", "autoattack_accuracy"):
            found, missing, left_out = _versus_resnet(results, cells, training, metric, f"{training}, {metric.replace('_accuracy', '')}")
            comparisons += found
            gaps += missing
            chance += left_out
    return _verdict(comparisons, gaps, chance, produced_by(source))


BENCHMARK_TABLES = {2: benchmark_metric("common_corruption"), 3: benchmark_metric("spurious_correlation"), 4: benchmark_metric("shape_vs_texture")}


BENCHMARK_MARGIN = 3.0
"""The paper's claimed size: part models 3-7 points better on the non-adversarial benchmarks (Sec. 5)."""


def beats_resnet_benchmarks(results: pd.DataFrame, side: pd.DataFrame, builtin: pd.DataFrame, source: str) -> tuple[str, str]:
    """Tables 2-4: each normally trained part model vs the ResNet on corruptions, spurious correlation, shape
    vs texture, by at least the paper's 3 points (`BENCHMARK_MARGIN`: the size is tested, not only the sign)."""
    comparisons, gaps, chance = [], [], []
    for table, metric in BENCHMARK_TABLES.items():
        cells = _cells(side, builtin, table)
        found, missing, left_out = _versus_resnet(results, cells[cells["source"] == source], "normal", metric,
                                                  f"Table {table} {metric.replace('_accuracy', '').replace('_', ' ')}", BENCHMARK_MARGIN)
        comparisons += found
        gaps += [f"{g} (Table {table})" for g in missing]
        chance += [f"{g} (Table {table})" for g in left_out]
    return _verdict(comparisons, gaps, chance, produced_by(source, "robustness"))


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
    evidence += f" ({trained_run_ids(wide).nunique()} runs, one point per run)"
    status = "direction only" if all(b == n for _, b, n in verdicts) else "not reproduced"
    return status, evidence + ("; a frontier comparison has no significance test" if status == "direction only" else "")


def no_masking_aa_below_pgd(results: pd.DataFrame, side: pd.DataFrame, builtin: pd.DataFrame, source: str) -> tuple[str, str]:
    """Gradient masking check: AutoAttack (the stronger attack) never leaves more accuracy than PGD on the same run."""
    wide = wide_runs(results[results["source"] == source])
    if wide.empty or not {"pgd_accuracy", "autoattack_accuracy"} <= set(wide.columns):
        return "not yet run", "needs runs evaluated with PGD and AutoAttack"
    both = wide.dropna(subset=["pgd_accuracy", "autoattack_accuracy"])
    worse = both[both["autoattack_accuracy"] > both["pgd_accuracy"] + MASKING_TOLERANCE]
    evidence = (f"AutoAttack <= PGD + {MASKING_TOLERANCE:g} points on {len(both) - len(worse)} of {len(both)} evaluations "
                f"(runs x eps); "
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
        return "not yet run", f"needs evaluations at eps 32/255; produced by: {produced_by(source, 'ablations')}"
    high = large[large["value"] >= 5.0]
    evidence = f"{len(large) - len(high)} of {len(large)} evaluations at 32/255 below 5 %"
    return ("not reproduced" if len(high) else "reproduced"), evidence


def _holds_status(sentence: str) -> str:
    """The status of a notebook 03 verdict sentence (`partrobust.report.ablations`): it has no significance test."""
    if "at chance level" in sentence:
        return "inconclusive"
    if sentence.rstrip(".").endswith("does not hold"):
        return "not reproduced"
    if "not decided" in sentence or sentence.startswith("no runs"):
        return "not yet run"
    return "direction only" if sentence.rstrip(".").endswith("holds") else "not yet run"


def _from_ablation(table: int, verdict: Callable[[pd.DataFrame], str], what: str, varies: tuple[str, ...] = (),
                   needs: Callable[[pd.DataFrame], pd.Series] | None = None,
                   keep: Callable[[pd.DataFrame], pd.Series] | None = None) -> Callable[..., tuple[str, str]]:
    """A claim judged by notebook 03's verdict for paper `table` (the same sentence as the notebook and the
    README), on the source's runs in the table's setup (`varies`) that `keep` keeps (the section's runs:
    the base recipe but for what the ablation changes); `needs`: rows that must exist for a verdict."""
    def check(results: pd.DataFrame, side: pd.DataFrame, builtin: pd.DataFrame, source: str) -> tuple[str, str]:
        runs = results[(results["source"] == source) & in_main_setup(results, varies)]
        if keep is not None:
            runs = runs[keep(runs)]
        command = produced_by(source, "ablations")
        if runs.empty or (needs is not None and not needs(runs).any()):
            return "not yet run", f"needs {what}; produced by: {command}"
        sentence = verdict(runs)
        status = _holds_status(sentence)
        return status, sentence + (" (notebook 03's verdict; no significance test)" if status == "direction only" else "")
    return check


def _base_c_seg(runs: pd.DataFrame) -> pd.Series:
    """The ResNet and the Downsampled and Bounding-Box models at the recipe's c_seg (or 0 for Table 5): the
    section's runs, not the c_seg sweep or the other heads."""
    c_seg = pd.to_numeric(runs["c_seg"], errors="coerce")
    return runs["model"].isin(["resnet", *PART_MODELS]) & (c_seg.isna() | c_seg.eq(0) | np.isclose(c_seg, TrainConfig().c_seg))


def _with_two_stage(runs: pd.DataFrame) -> pd.Series:
    """Runs (and their evaluations) that ran the two-stage attacks."""
    has = runs.loc[runs["metric"].astype(str).str.startswith("two_stage_"), "run_id"]
    return runs["run_id"].isin(set(has))


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
    Claim("Not gradient masking: two-stage attacks on the segmenter do not beat AutoAttack", "Table 13",
          _from_ablation(13, verdict_two_stage, "two-stage attacks", keep=_with_two_stage)),
    Claim("The part labels, not the architecture, bring the gains", "Table 5, App. E.3",
          _from_ablation(5, verdict_part_labels, "part models trained with c_seg = 0", varies=("c_seg",), keep=_base_c_seg,
                         needs=lambda runs: pd.to_numeric(runs["c_seg"], errors="coerce").eq(0))),
    Claim("Non-adversarial robustness 3-7 points better than the ResNet", "Tables 2-4, 6, 7",
          beats_resnet_benchmarks),
    Claim("Cheaper labels (part boxes, centroids) keep most of the gain", "Table 14, App. E.5",
          _from_ablation(14, verdict_label_kinds, "runs with box and centroid labels", varies=("labels",), keep=_base_c_seg,
                         needs=lambda runs: runs["labels"].isin(["bbox", "centroid"]))),
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
            status = BUILTIN_STATUS.get(status, status) if is_builtin_source(source) else status
            rows.append({"claim": claim.name, "paper": claim.paper, "source": source, "status": status, "evidence": evidence})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the report


