"""The paper's 19 tables side by side with ours: which of our runs fill each printed cell.

Every table is described by a `TableSpec` (`TABLES`): the columns a printed number is indexed by
(dataset, training, model, metric, eps and the table's own hyperparameters), the setup its runs
must have, whether its rows name a hyperparameter setting or the one chosen by the paper's
selection rule, and the command that produces its runs. `side_by_side` joins a table's printed
numbers (`partrobust.report.paper_tables`) with our results averaged over seeds
(`settings`): one row per printed number with ours, the paper's, the difference, the test images,
the number of seeds and the run ids behind our cell. A printed number without a matching run is a
``missing`` row that names the command to run, never an error and never a made-up number.

A cell is filled only like with like: runs in the paper's setup (part labels on, 4x4 pooling, ...,
except what the table varies; ablation runs never enter a table that does not vary their keys),
measured as the paper measured (`partrobust.report.protocol`: the standard AutoAttack with its full
budget, the paper's PGD, the whole test split) at the printed eps. Matching runs measured otherwise
are shown beside the cell (``not_comparable``: why, and their number), never in it. A seed is a
trained model: re-evaluations of one trained model are one sample (`settings`).

Results on the built-in data never match a paper cell (the dataset is part of every key); they
are shown in the same layout by `builtin_table`, labelled as built-in data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..core.results import eps_text, setting_columns
from ..data.synthetic import DATASET_NAME as BUILTIN_DATASET
from ..data.synthetic import SyntheticConfig
from ..models.counts import PAPER_DATASETS
from .matching import SWEEP_SETUP, _in_sweep_setup, _key
from .paper_tables import load_paper_table
from .protocol import LIMIT_COLUMN, with_protocol
from .stats import over_seeds
from .style import dataset_label
from .sweep_analysis import select_best

PAPER_EPS = 8 / 255
"""The paper's evaluation budget; the selection rule compares adversarial accuracy at this eps."""

EVAL_COLUMNS = ("eps", "evaluators", "c_seg_attack", LIMIT_COLUMN)
"""Setting columns that belong to the evaluation, not to the trained model (one model, several eps)."""

NOTEBOOK_03 = "notebook 03_ablations (python -m partrobust.pipeline params/part_imagenet_ablations.yaml)"
NOTEBOOK_04 = "notebook 04_nonadversarial_robustness (python -m partrobust.pipeline params/part_imagenet_robustness.yaml)"
MAKE_TARGETS = {"builtin_study": "make study", "ablations_smoke": "make ablations", "robustness_smoke": "make robustness"}
"""Built-in-data experiment -> the command that produces its runs (the Makefile's targets)."""


def _pipeline(params: str) -> str:
    return f"python -m partrobust.pipeline {params}"


MAIN_RUNS = (f"{_pipeline('params/part_imagenet.yaml')}; {_pipeline('params/cityscapes.yaml')}; "
             f"{_pipeline('params/pascal_part.yaml')}")


@dataclass(frozen=True)
class TableSpec:
    """How the printed numbers of one paper table are matched with our runs.

    keys: our column names a printed number and our setting must agree on (besides ``dataset``,
        ``training``, ``model`` and ``metric``; ``eps`` is added for adversarial metrics).
    varies: setup columns the table changes on purpose (dropped from `SWEEP_SETUP` for its runs).
    select: rows stand for the model chosen by the paper's rule among the settings of its
        (dataset, model, training, `group_by`), not for a hyperparameter setting. Rows whose
        ``selection`` column says ``best`` are selected rows whatever this flag says.
    group_by: columns that split the pool the rule selects from (e.g. part labels yes / no).
    produced_by: the command (or notebook) that produces the runs.
    """

    number: int
    title: str
    keys: tuple[str, ...] = ()
    varies: tuple[str, ...] = ()
    select: bool = False
    group_by: tuple[str, ...] = ()
    produced_by: str = MAIN_RUNS


_BENCHMARK = dict(select=True, produced_by=NOTEBOOK_04)
TABLES: dict[int, TableSpec] = {spec.number: spec for spec in [
    TableSpec(1, "Clean and AutoAttack accuracy, PGD and TRADES training, three datasets", select=True),
    TableSpec(2, "Common corruptions (normal training, mean over seeds)", **_BENCHMARK),
    TableSpec(3, "Foreground/background spurious correlation", **_BENCHMARK),
    TableSpec(4, "Shape vs texture", **_BENCHMARK),
    TableSpec(5, "Part models trained with and without part labels", keys=("seg_labels",), select=True,
              group_by=("seg_labels",), varies=("c_seg",), produced_by=NOTEBOOK_03),
    TableSpec(6, "Generalised robustness of hyperparameter sets (A) and (B)", keys=("hparam_set",), **_BENCHMARK),
    TableSpec(7, "Common corruptions per corruption type", **_BENCHMARK),
    TableSpec(8, "ResNet-50 sweep (normal, PGD lr x wd, TRADES beta)", keys=("lr", "weight_decay", "beta"),
              produced_by=_pipeline("params/part_imagenet_sweep.yaml")),
    TableSpec(9, "Downsampled part-model sweep", keys=("lr", "weight_decay", "c_seg", "beta"),
              produced_by=_pipeline("params/part_imagenet_sweep.yaml")),
    TableSpec(10, "Bounding-Box part-model sweep", keys=("lr", "weight_decay", "c_seg", "beta"),
              produced_by=_pipeline("params/part_imagenet_sweep.yaml")),
    TableSpec(11, "AutoAttack accuracy at eps 8, 16, 24, 32 /255", select=True, produced_by=NOTEBOOK_03),
    TableSpec(12, "PGD with the segmentation loss in the attack objective", keys=("c_seg_attack",), select=True,
              produced_by=NOTEBOOK_03),
    TableSpec(13, "PGD, AutoAttack and four two-stage attacks", select=True, produced_by=NOTEBOOK_03),
    TableSpec(14, "Auxiliary label types (segmentation, part boxes, centroids)", keys=("label_type",), select=True,
              group_by=("label_type",), varies=("labels",), produced_by=NOTEBOOK_03),
    TableSpec(15, "Object-level instead of part-level masks, c_seg sweep", keys=("seg_label_level", "c_seg"),
              group_by=("seg_label_level",), varies=("labels", "c_seg"), produced_by=NOTEBOOK_03),
    TableSpec(16, "Background channel dropped vs kept", keys=("background",), group_by=("background",),
              varies=("drop_background",), **_BENCHMARK),
    TableSpec(17, "Downsampled pooled size 1x1 to 128x128", keys=("lr", "weight_decay", "c_seg", "downsample_size"),
              varies=("pool_size",), produced_by=NOTEBOOK_03),
    TableSpec(18, "Two-Headed and Pixel part models, c_seg sweep", keys=("c_seg",), varies=("c_seg",),
              produced_by=NOTEBOOK_03),
    TableSpec(19, "Input image concatenated to the masks, c_seg sweep", keys=("concat_input", "c_seg"),
              group_by=("concat_input",), varies=("concat_input", "c_seg"), produced_by=NOTEBOOK_03),
]}
"""Table number -> its spec; all 19 of the paper's numeric tables."""

BASE_KEYS = ("dataset", "training", "model", "metric")


def row_command(spec: TableSpec, dataset: str) -> str:
    """The command that produces a printed row's runs on its own `dataset` (its params file, not all three)."""
    if spec.produced_by == MAIN_RUNS:
        return _pipeline(f"params/{dataset}.yaml")
    if spec.produced_by == NOTEBOOK_03:
        return f"notebook 03_ablations ({_pipeline(f'params/{dataset}_ablations.yaml')})"
    return spec.produced_by


def missing_commands(side: pd.DataFrame) -> str:
    """The distinct commands of a side-by-side's missing rows, in order ('' when none is missing)."""
    return "; ".join(dict.fromkeys(side.loc[side["status"] == "missing", "produced_by"]))


# --------------------------------------------------------------------------- our side: settings


def is_builtin(dataset: Any) -> bool:
    """True for the built-in synthetic dataset and its label variants."""
    return str(dataset).startswith(BUILTIN_DATASET)


def _derived(frame: pd.DataFrame) -> pd.DataFrame:
    """The paper's table columns computed from our run columns (e.g. Table 17's ``4x4`` from pool_size 4)."""
    out = frame.copy()
    model = out["model"].astype(str)
    resnet = model.eq("resnet")
    c_seg = pd.to_numeric(out.get("c_seg"), errors="coerce") if "c_seg" in out else pd.Series(np.nan, index=out.index)
    labels = out["labels"] if "labels" in out else pd.Series(np.nan, index=out.index)
    out["seg_labels"] = np.where(resnet, "n/a", np.where(c_seg.eq(0), "no", "yes"))
    out["label_type"] = np.where(resnet, "none", labels.map({"parts": "segmentation", "bbox": "bounding_boxes", "centroid": "centroids"}))
    out["seg_label_level"] = labels.map({"parts": "part", "object": "object"})
    if "drop_background" in out:
        dropped = out["drop_background"].map(lambda v: str(v).strip().lower() in {"true", "1", "1.0"} if pd.notna(v) else None)
        out["background"] = np.where(resnet, np.nan, dropped.map({True: "without", False: "with"}))
    if "pool_size" in out:
        out["downsample_size"] = pd.to_numeric(out["pool_size"], errors="coerce").map(
            lambda p: f"{int(p)}x{int(p)}" if pd.notna(p) else np.nan)
    if "concat_input" in out:
        out["concat_input"] = out["concat_input"].map(
            lambda v: ("yes" if str(v).strip().lower() in {"true", "1", "1.0"} else "no") if pd.notna(v) else np.nan)
    attack_weight = pd.to_numeric(out["c_seg_attack"], errors="coerce") if "c_seg_attack" in out else pd.Series(np.nan, index=out.index)
    out["c_seg_attack"] = attack_weight.fillna(0.0)  # evaluations without the seg_pgd evaluator: no segmentation term
    return out


RELEASED = "released:"
BUILTIN_SOURCE = "builtin:"
"""Prefixes of the sources that are not a paper dataset's: imported weights, built-in-data experiments."""


def is_builtin_source(source: str) -> bool:
    """True for a built-in-data source (``builtin:<experiment>``, `source_of`)."""
    return str(source).startswith(BUILTIN_SOURCE)


def source_of(dataset: Any, experiment: Any, weights: Any = None) -> str:
    """What results are pooled over: a real dataset's runs are pooled across experiments; built-in
    data experiments are separate recipes (smoke, study) and stay apart: ``builtin:<experiment>``;
    runs of imported weights (a ``weights_sha256``: the authors' released ones) are never pooled
    with ours: ``released:<dataset>``."""
    if isinstance(weights, str) and weights.strip():
        return f"{RELEASED}{dataset}"
    return f"{BUILTIN_SOURCE}{experiment}" if is_builtin(dataset) else str(dataset)


def with_source(results: pd.DataFrame) -> pd.DataFrame:
    """`results` with a ``source`` column (`source_of` of each row's dataset, experiment and weights)."""
    weights = results["weights_sha256"] if "weights_sha256" in results else pd.Series(None, index=results.index, dtype=object)
    return results.assign(source=[source_of(d, e, w) for d, e, w in zip(results["dataset"], results["experiment"], weights)])


def trained_here(ours: pd.DataFrame) -> pd.DataFrame:
    """`settings` rows of runs trained here (not of imported weights)."""
    return ours[~ours["source"].astype(str).str.startswith(RELEASED)] if not ours.empty else ours


def settings(results: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Our results averaged over seeds: one row per (source, setting, metric).

    Columns: the setting columns (`partrobust.core.results.setting_columns`) plus the paper's derived
    ones, ``source``, ``setting`` (a key of the trained model: the setting without its evaluation
    columns), ``metric``, ``value`` (mean over seeds), ``ci95`` (Student-t half-width, NaN for one
    seed), ``seeds`` (distinct seeds: runs of one seed, e.g. re-evaluations of one trained model,
    are one sample), ``n`` (fewest test images; NaN when unknown), ``run_ids``, ``attack`` (how the
    number was measured) and ``protocol_gap`` (why it is not measured as the paper measured it, ''
    when it is; `partrobust.report.protocol`). Runs that differ only in their extra evaluators
    (``evaluators``) repeat the same clean/PGD/AutoAttack numbers of one trained model: pooled.
    """
    if results.empty:
        return pd.DataFrame(columns=["source", "setting", "metric", "value", "ci95", "seeds", "n", "run_ids", "attack", "protocol_gap"])
    frame = with_protocol(with_source(results))
    columns = ["source", *[c for c in setting_columns(frame) if c != "evaluators"]]
    extra = ["attack", "protocol_gap"]
    means = over_seeds(frame, [*columns, "metric", *extra], confidence, one_run_per_seed=False, sort=True)
    means = means.rename(columns={"mean": "value", "half_width": "ci95"})[[*columns, "metric", "value", "ci95", "seeds", "n", "run_ids", *extra]]
    out = _derived(means)
    model_columns = [c for c in columns if c not in EVAL_COLUMNS]
    out["setting"] = ["|".join(map(str, values)) for values in out[model_columns].itertuples(index=False)]
    return out


CHANCE_FACTOR = 1.5
"""A baseline whose clean accuracy is below this multiple of chance level is no evidence that another model wins."""


def chance_level(source: str) -> float:
    """Chance accuracy (%) of a source or dataset: 100 / classes (NaN when the class count is unknown)."""
    if is_builtin_source(source) or is_builtin(source):
        classes = SyntheticConfig().num_classes
    else:
        classes = PAPER_DATASETS[source][0] if source in PAPER_DATASETS else None
    return math.nan if classes is None else 100.0 / classes


def at_chance(clean: float, source: str) -> bool:
    """True when a clean accuracy is below `CHANCE_FACTOR` x chance level: such a baseline is no evidence."""
    chance = chance_level(source)
    return not math.isnan(chance) and clean < CHANCE_FACTOR * chance


def trained_models(results: pd.DataFrame) -> int:
    """How many distinct trained models `results` hold: runs equal in every setting column but the evaluation
    ones (`EVAL_COLUMNS`), and in their seed, evaluate one trained model."""
    if results.empty:
        return 0
    columns = [c for c in setting_columns(results) if c not in EVAL_COLUMNS and c in results.columns]
    return int(results[[*columns, "seed"]].astype(str).drop_duplicates().shape[0])


def at_paper_eps(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows evaluated at the paper's eps (clean rows of a run evaluated elsewhere count as well)."""
    eps = frame["eps"].astype(float) if "eps" in frame else pd.Series(np.nan, index=frame.index)
    return frame[eps.isna() | np.isclose(eps, PAPER_EPS)]


def in_main_setup(frame: pd.DataFrame, varies: Sequence[str] = ()) -> pd.Series:
    """Rows in the paper's main setup (`SWEEP_SETUP`) except for the columns the table `varies`.

    Part models trained with ``c_seg`` = 0 (no part labels: Table 5's ablation, which shares the main
    experiment's name) are out unless the table varies ``c_seg``."""
    keep = _in_sweep_setup(frame, {k: v for k, v in SWEEP_SETUP.items() if k not in varies})
    if "c_seg" not in varies and "c_seg" in frame.columns:
        c_seg = pd.to_numeric(frame["c_seg"], errors="coerce")
        keep &= ~(c_seg.eq(0) & frame["model"].astype(str).ne("resnet"))
    return keep


def selected_settings(frame: pd.DataFrame, rule: str = "paper", group_by: Sequence[str] = ()) -> set[str]:
    """The ``setting`` keys chosen per (source, model, training, `group_by`).

    rule ``paper``: `partrobust.report.sweep_analysis.select_best` on clean and AutoAttack (else PGD) accuracy at
    eps 8/255; ``A``: highest shape-vs-texture accuracy; ``B``: highest mean of the spurious
    correlation and common corruption accuracies (Table 6's two hyperparameter sets).
    """
    pool = at_paper_eps(frame)
    if pool.empty:
        return set()
    wide = pool.pivot_table(index=["setting", "source", "model", "training", *group_by], columns="metric", values="value",
                            aggfunc="mean", dropna=False).reset_index()
    wide = wide.dropna(axis=1, how="all")
    if rule == "paper":
        if "clean_accuracy" not in wide:
            return set()
        adv = "autoattack_accuracy" if "autoattack_accuracy" in wide else "pgd_accuracy" if "pgd_accuracy" in wide else None
        if adv is None:
            wide = wide.assign(_none=np.nan)
            adv = "_none"
        tagged = wide.assign(dataset=wide["source"], run_id=wide["setting"],
                             model=["|".join(map(str, v)) for v in wide[["model", *group_by]].itertuples(index=False)])
        return set(select_best(tagged, adv_metric=adv, baseline=wide["model"].eq("resnet"))["run_id"])
    score_columns = {"A": ["shape_vs_texture_accuracy"], "B": ["spurious_correlation_accuracy", "common_corruption_accuracy"]}[rule]
    if not set(score_columns) <= set(wide.columns):
        return set()
    wide = wide.assign(_score=wide[score_columns].mean(axis=1)).dropna(subset=["_score"])
    best = wide.sort_values(["_score", "setting"], ascending=[False, True]).groupby(
        ["source", "model", "training", *group_by], dropna=False).head(1)
    return set(best["setting"])


# --------------------------------------------------------------------------- side by side


def _row_rule(row: pd.Series, spec: TableSpec) -> str | None:
    """How a printed row chooses its model: ``paper``, ``A``, ``B`` or None (the row names its setting)."""
    if "hparam_set" in row and isinstance(row["hparam_set"], str):
        return row["hparam_set"]
    if spec.produced_by == NOTEBOOK_04:
        return "A" if str(row.get("benchmark")) == "shape_vs_texture" else "B"
    if spec.select or row.get("selection") == "best":
        return "paper"
    return None


SIDE_BY_SIDE_COLUMNS = ["table", "dataset", "training", "model", "row", "metric", "eps", "paper", "paper_ci95", "ours",
                        "ours_ci95", "difference", "n", "seeds", "run_ids", "attack", "comparable", "selection", "not_comparable",
                        "status", "produced_by"]
"""``attack``: how our number was measured; ``comparable``: ``yes`` or ``not comparable: <why>`` (built-in
layouts); ``selection``: for a selected row, that it was chosen on test numbers and from how many
settings; ``not_comparable``: matching runs measured otherwise than the paper (why, and their number)."""


def _row_label(row: pd.Series, spec: TableSpec) -> str:
    """The printed row's distinguishing fields, e.g. ``lr=0.1, weight_decay=0.0005, beta=0.3``."""
    bits = []
    for key in spec.keys:
        value = row.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        bits.append(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}")
    if _row_rule(row, spec) is not None and row.get("hparam_set") is None:
        bits.append("selected")
    return ", ".join(bits)


def side_by_side(results: pd.DataFrame, number: int, directory: str | Path | None = None,
                 ours: pd.DataFrame | None = None) -> pd.DataFrame:
    """Paper table `number` next to our numbers: one row per printed number (`SIDE_BY_SIDE_COLUMNS`).

    A printed number matches our settings that agree on dataset, training, model, metric, the
    evaluation eps (adversarial metrics) and the table's keys (floats to 6 decimals; an empty
    printed key matches only an empty one), whose setup fits the table. Rows that stand for a
    selected model use the setting the paper's rule picks (`selected_settings`). ``status`` is
    ``ours`` or ``missing``; several matching settings are averaged and all their run ids listed.
    `ours`: `settings(results)` when already computed.
    """
    return join_table(load_paper_table(number, directory), trained_here(settings(results) if ours is None else ours), TABLES[number])


def _match(pool: pd.DataFrame, row: pd.Series, spec: TableSpec, rule: str | None,
           chosen: dict[str, set[str]]) -> tuple[pd.DataFrame, int]:
    """Settings of `pool` that fill printed `row` (after the row's selection rule) and the number of
    settings the rule chose from (0 for rows that name their setting)."""
    keys = [*BASE_KEYS, *spec.keys]
    if rule is not None:  # a selected row matches only the keys it prints
        keys = [k for k in keys if k in BASE_KEYS or _key(row.get(k)) != ""]
    match = pd.Series(True, index=pool.index)
    for key in keys:
        if key == "hparam_set":
            continue
        ours_values = pool[key].map(_key) if key in pool else pd.Series("", index=pool.index)
        match &= ours_values == _key(row.get(key))
    if _key(row.get("eps")) != "" and not pool.empty:  # clean and benchmark numbers print no eps
        eps = pool["eps"].map(_key) if "eps" in pool else pd.Series("", index=pool.index)
        match &= eps == _key(row.get("eps"))
    cells = pool[match]
    if rule is None or cells.empty:
        return cells, 0
    if rule not in chosen:
        chosen[rule] = selected_settings(pool, rule, spec.group_by)
    return cells[cells["setting"].isin(chosen[rule])], cells["setting"].nunique()


def _count(n: Any) -> str:
    return "?" if pd.isna(n) else str(int(n))


def _not_comparable_text(cells: pd.DataFrame) -> str:
    """'not comparable: <why>: <value> (<attack>, n <images>, <k> seeds)' per reason, joined by ' | '."""
    texts = []
    for gap, group in cells.groupby("protocol_gap", sort=True):
        texts.append(f"not comparable: {gap}: {group['value'].mean():.1f} ({group['attack'].iloc[0]}, "
                     f"n {_count(group['n'].min())}, {int(group['seeds'].min())} seeds)")
    return " | ".join(texts)


def join_table(paper: pd.DataFrame, ours: pd.DataFrame, spec: TableSpec, comparable_only: bool = True) -> pd.DataFrame:
    """The join of `side_by_side`, for given printed rows (`load_paper_table`) and settings (`settings`).

    `comparable_only`: only settings measured as the paper measured fill a cell, the others are
    described in ``not_comparable``; False (built-in layouts, never compared): every setting fills
    cells and ``comparable`` says whether it is measured as the paper measured."""
    pool = ours[in_main_setup(ours, spec.varies)] if not ours.empty else ours
    if "protocol_gap" not in pool:
        pool = pool.assign(protocol_gap="", attack="")
    fair = pool[pool["protocol_gap"] == ""] if comparable_only else pool
    unfair = pool[pool["protocol_gap"] != ""] if comparable_only else pool.iloc[0:0]
    chosen: dict[str, set[str]] = {}
    chosen_unfair: dict[str, set[str]] = {}
    rows = []
    for _, row in paper.iterrows():
        rule = _row_rule(row, spec)
        cells, candidates = _match(fair, row, spec, rule, chosen)
        others, _ = _match(unfair, row, spec, rule, chosen_unfair)
        adversarial = _key(row.get("eps")) != ""
        found = not cells.empty
        gaps = sorted({g for g in cells["protocol_gap"] if g}) if found else []
        rows.append({
            "table": spec.number, "dataset": row["dataset"], "training": row.get("training"), "model": row.get("model"),
            "row": _row_label(row, spec), "metric": row["metric"], "eps": row.get("eps") if adversarial else np.nan,
            "paper": row["value"], "paper_ci95": row.get("ci95", np.nan),
            "ours": cells["value"].mean() if found else np.nan,
            "ours_ci95": cells["ci95"].iloc[0] if len(cells) == 1 else np.nan,
            "n": cells["n"].min() if found else np.nan, "seeds": int(cells["seeds"].min()) if found else 0,
            "run_ids": " ".join(sorted({r for ids in cells["run_ids"] for r in ids.split()})),
            "attack": " / ".join(sorted(set(cells["attack"]))) if found else "",
            "comparable": ("not comparable: " + "; ".join(gaps) if gaps else "yes") if found else "",
            "selection": (f"selected on test-set numbers among {candidates} setting{'' if candidates == 1 else 's'}"
                          if found and rule is not None else ""),
            "not_comparable": _not_comparable_text(others) if not others.empty else "",
            "status": "ours" if found else "missing", "produced_by": row_command(spec, str(row["dataset"])),
        })
    out = pd.DataFrame(rows, columns=SIDE_BY_SIDE_COLUMNS)
    out["difference"] = out["ours"].astype(float) - out["paper"].astype(float)
    return out


def all_side_by_side(results: pd.DataFrame, directory: str | Path | None = None,
                     numbers: Sequence[int] = tuple(TABLES), ours: pd.DataFrame | None = None) -> pd.DataFrame:
    """`side_by_side` of every table in `numbers`, concatenated (seed averaging done once; `ours`:
    `settings(results)` when already computed)."""
    ours = settings(results) if ours is None else ours
    return pd.concat([side_by_side(results, n, directory, ours=ours) for n in numbers], ignore_index=True)


# --------------------------------------------------------------------------- built-in data, same layout


def builtin_table(results: pd.DataFrame, number: int, directory: str | Path | None = None,
                  ours: pd.DataFrame | None = None) -> pd.DataFrame:
    """Our built-in-data numbers in the layout of paper table `number` (labelled, never matched to
    the paper's cells): the paper's rows of one dataset with the dataset replaced by each built-in
    source; only tables without hyperparameter keys (their rows are selected models) qualify, since
    the built-in recipe's hyperparameters differ from the paper's. Empty when there is nothing."""
    spec = TABLES[number]
    ours = settings(results) if ours is None else ours
    if ours.empty or any(k in spec.keys for k in ("lr", "weight_decay", "beta")):
        return pd.DataFrame(columns=SIDE_BY_SIDE_COLUMNS)
    builtin = ours[ours["source"].map(is_builtin_source)]
    paper = load_paper_table(number, directory)
    template = paper[paper["dataset"] == paper["dataset"].iloc[0]]
    frames = []
    for source, group in builtin.groupby("source"):
        renamed = group.assign(dataset=source)
        fake = template.assign(dataset=source, value=np.nan, ci95=np.nan)
        table = join_table(fake, renamed, spec, comparable_only=False)
        if (table["status"] == "ours").any():
            frames.append(table)
    if not frames:
        return pd.DataFrame(columns=SIDE_BY_SIDE_COLUMNS)
    out = pd.concat(frames, ignore_index=True)
    out["paper"] = np.nan
    out["difference"] = np.nan
    return out


def released_table(results: pd.DataFrame, number: int, directory: str | Path | None = None,
                   ours: pd.DataFrame | None = None) -> pd.DataFrame:
    """Paper table `number` next to the runs of released weights ("released weights, evaluated here"): the
    paper's rows of each dataset with released runs, joined with those runs only (never pooled with ours);
    ``dataset`` names the source. Empty when there are none."""
    ours = settings(results) if ours is None else ours
    released = ours[ours["source"].astype(str).str.startswith(RELEASED)] if not ours.empty else ours
    paper = load_paper_table(number, directory) if not released.empty else None
    frames = []
    for source, group in released.groupby("source"):
        printed = paper[paper["dataset"] == source[len(RELEASED):]]
        table = join_table(printed, group, TABLES[number]) if not printed.empty else None
        if table is not None and (table["status"] == "ours").any():
            frames.append(table.assign(dataset=source))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SIDE_BY_SIDE_COLUMNS)


def compare_with_paper(results: pd.DataFrame, tables: Sequence[int] = (8, 9, 10), directory: str | Path | None = None) -> pd.DataFrame:
    """Paper's sweep numbers next to ours, one row per printed paper number, with the sweep's
    hyperparameter columns (notebook 02's view of `partrobust.report.paper.side_by_side`, which does the matching).

    Columns: ``table``, dataset, training, model, lr, weight_decay, c_seg, beta, metric, ``eps``,
    ``paper``, ``ours`` (mean over matching runs, NaN when none), ``difference`` (ours - paper),
    ``n`` (test images), ``runs`` and ``run_ids`` (comma-separated).
    """
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
    out["eps"] = out["eps"].map(eps_text)  # a table to read: 8/255
    order = ["table", "dataset", "training", "model", "lr", "weight_decay", "c_seg", "beta", "metric", "eps",
             "paper", "ours", "difference", "n", "runs", "run_ids"]
    return out[order]


def source_label(source: str) -> str:
    """'built-in data (builtin_study)' for a built-in source, 'released weights, evaluated here (Part-ImageNet)'
    for imported weights, the dataset's display name otherwise ('Part-ImageNet')."""
    if source.startswith(RELEASED):
        return f"released weights, evaluated here ({dataset_label(source[len(RELEASED):])})"
    return f"built-in data ({source.removeprefix(BUILTIN_SOURCE)})" if is_builtin_source(source) else dataset_label(source)
