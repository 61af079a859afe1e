"""The results schema and its files: tidy rows (one per run x metric), each run in its own ``results.csv``.

Every row names its run (experiment, run id, dataset, training), the config fields the paper's
tables are indexed by (`RESULT_INDEX`; empty where a key does not apply to the run), the metric
(`partrobust.core.metrics`), its value in %, the number of test images and a note saying how it
was measured. Writers add rows under a lock (`add_results`); readers gather whole folders
(`gather_results`) and see parametrised metrics as evaluations of their own (`expand_evaluations`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from .config import format_fraction, parse_fraction
from .fileio import atomic_write_text, file_lock
from .metrics import EVALUATION_COLUMNS, split_metric

RESULT_INDEX: dict[str, str] = {
    "model": "model.name",
    "arch": "model.arch",
    "encoder": "model.encoder",
    "pool_size": "model.pool_size",
    "bbox_score": "model.bbox_score",
    "drop_background": "model.drop_background",
    "concat_input": "model.concat_input",
    "labels": "data.labels",
    "label_fraction": "data.label_fraction",
    "crop_size": "data.crop_size",
    "epochs_clean": "train.epochs_clean",
    "epochs_adv": "train.epochs_adv",
    "lr": "train.lr",
    "weight_decay": "train.weight_decay",
    "c_seg": "train.c_seg",
    "beta": "train.beta",
    "train_eps": "train.eps",
    "train_step_size": "train.step_size",
    "train_steps": "train.steps",
    "eps": "eval.eps",
    "evaluators": "eval.evaluators",
    "eval_limit": "eval.limit",
    "seed": "seed",
    "weights_sha256": "model.weights_sha256",
}
"""Results column -> config key: the fields the paper's tables are indexed by (empty where inapplicable).
``weights_sha256`` is set only for runs of imported weights (e.g. the authors' released ones): their
provenance, which keeps them apart from the runs trained here (`partrobust.report.paper.source_of`)."""

RESULTS_FILE = "results.csv"
EPS_COLUMNS = ("eps", "train_eps")
"""Budgets: written as ``8/255`` in the files (readable), numbers in [0, 1] in every frame read from them
(`parse_eps`, at the edge), written back by `results_csv`."""
RUN_COLUMNS = ["experiment", "run_id", "dataset", "training", *RESULT_INDEX]
"""Identifying columns of every result row: the run, the dataset and the config fields tables are indexed by."""
METRIC_COLUMNS = ["metric", "value", "n", "note"]
RESULT_COLUMNS = [*RUN_COLUMNS, *METRIC_COLUMNS, "config_hash"]
_NOT_SETTING = ("experiment", "run_id", "seed")
UNKNOWN_LIMIT = "unknown"
"""``eval_limit`` of results files written before the column existed (test-set size not recorded)."""


def setting_columns(results: pd.DataFrame) -> list[str]:
    """The identifying columns of a run other than its seed (dataset, model, training, hyperparameters)."""
    return [c for c in [*RUN_COLUMNS, *EVALUATION_COLUMNS] if c in results.columns and c not in _NOT_SETTING]


# --------------------------------------------------------------------------- parametrised metrics


def trained_run_ids(results: pd.DataFrame) -> pd.Series:
    """The run id of each row without its evaluation suffix (``R@eps=16/255`` -> ``R``; `expand_evaluations`)."""
    return results["run_id"].astype(str).str.split("@").str[0]


def expand_evaluations(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of parametrised metrics as rows of an evaluation of their own.

    ``autoattack_accuracy@eps=16/255`` of run R becomes ``autoattack_accuracy`` of the evaluation
    ``R@eps=16/255`` with ``eps`` 16/255, so that every table, figure and claim sees it the way it
    sees a run evaluated at that eps (the trained model, the setting without its evaluation
    columns, is the same). The ``c_seg_attack`` column is added (empty for ordinary rows).
    """
    frame = frame.copy()
    for column in EVALUATION_COLUMNS:
        if column not in frame.columns:
            frame[column] = pd.Series(float("nan"), index=frame.index, dtype=object)
    if frame.empty or not frame["metric"].astype(str).str.contains("@", regex=False).any():
        return frame
    parts = frame["metric"].astype(str).map(split_metric)
    for i, (metric, key, value) in zip(frame.index, parts):
        if key is None:
            continue
        frame.at[i, "metric"] = metric
        frame.at[i, "run_id"] = f"{frame.at[i, 'run_id']}@{key}={value}"
        frame.at[i, key] = float(value) if key in EVALUATION_COLUMNS else parse_eps(value)
    return frame


def parse_eps(value: Any) -> float:
    """A budget cell as a number: ``"8/255"``, ``"0.03"`` or a number; an empty cell is NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return parse_fraction(float(value), "eps")
    text = str(value).strip()
    return math.nan if not text or text.lower() == "nan" else parse_fraction(text, "eps")


def with_eps_numbers(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with its `EPS_COLUMNS` as floats (the edge where results and paper tables are read)."""
    present = [c for c in EPS_COLUMNS if c in frame.columns]
    return frame.assign(**{c: frame[c].map(parse_eps).astype(float) for c in present}) if present else frame


def eps_text(value: Any) -> Any:
    """A budget for display and files: ``8/255`` for whole multiples of 1/255, the number otherwise, NaN kept."""
    number = parse_eps(value)
    return value if math.isnan(number) else format_fraction(number)


def results_csv(frame: pd.DataFrame, **to_csv: Any) -> str:
    """`frame` as CSV text with its budgets written as ``8/255`` (the inverse of reading)."""
    present = [c for c in EPS_COLUMNS if c in frame.columns]
    return frame.assign(**{c: frame[c].map(eps_text) for c in present}).to_csv(index=False, **to_csv)


def distinguishing_columns(frame: pd.DataFrame) -> list[str]:
    """Setting columns other than training and model that differ between settings of the same
    training and model (a TRADES beta sweep: ``beta``); the others follow from those two."""
    pair = ["training", "model"]
    return [c for c in setting_columns(frame) if c not in pair
            and (frame.groupby(pair, dropna=False)[c].nunique(dropna=False) > 1).any()]


def add_results(path: str | Path, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Adds `rows` to the results file at `path` (created if missing) and returns the whole file.

    A row replaces an existing one with the same run id and metric (a re-evaluation). The
    read-modify-write happens under a lock beside the file and ends in an atomic rename, so
    concurrent writers (evaluations of one run in several processes) lose no row and a kill
    leaves the previous file intact.
    """
    path = Path(path)
    new = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    with file_lock(path.with_name(f".{path.name}.lock")):
        if path.is_file():
            old = _read_stored(path)
            replaced = old.set_index(["run_id", "metric"]).index.isin(new.set_index(["run_id", "metric"]).index)
            new = pd.concat([old[~replaced], new], ignore_index=True) if (~replaced).any() else new
        atomic_write_text(path, results_csv(new))
    return new


NO_EVALUATORS = "none"
"""The ``evaluators`` value of a run without attack-side evaluators (its plain evaluation)."""


def evaluators_label(evaluators: Sequence[str]) -> str:
    """The ``evaluators`` column: the attack-side evaluators of the run joined by ``+``, or ``none``.

    It tells apart runs that evaluate the same trained model in different ways (notebook 03's
    attack-side sections), which repeat its clean, PGD and AutoAttack rows."""
    return "+".join(evaluators) or NO_EVALUATORS


def is_plain_evaluation(evaluators: pd.Series) -> pd.Series:
    """True for the rows of runs without attack-side evaluators (``evaluators`` ``none`` or empty)."""
    return evaluators.map(lambda v: pd.isna(v) or v == NO_EVALUATORS).astype(bool)


def _read_stored(path: str | Path) -> pd.DataFrame:
    """One results CSV as stored; a file without the result columns is refused by name.

    Files written before the ``evaluators`` column existed get ``none`` (no run had any then); files
    written before ``eval_limit`` (the first N test images, empty for the whole split) existed get
    ``unknown`` (the report then cannot call their numbers comparable with the paper's); those before
    ``weights_sha256`` an empty one."""
    frame = pd.read_csv(path)
    if "weights_sha256" not in frame.columns:  # files written before imported weights existed: all trained here
        frame.insert(frame.columns.get_loc("seed") + 1 if "seed" in frame.columns else len(frame.columns), "weights_sha256", float("nan"))
    if "evaluators" not in frame.columns:
        frame.insert(frame.columns.get_loc("eps") + 1 if "eps" in frame.columns else len(frame.columns), "evaluators", NO_EVALUATORS)
    if "eval_limit" not in frame.columns:
        frame.insert(frame.columns.get_loc("evaluators") + 1, "eval_limit", UNKNOWN_LIMIT)
    missing = set(RESULT_COLUMNS) - set(frame.columns)
    if missing:
        raise ValueError(f"{path} is not a results file: missing columns {sorted(missing)}")
    return frame


def read_results(path: str | Path) -> pd.DataFrame:
    """One results CSV, budgets as numbers (`with_eps_numbers`), parametrised metrics as evaluations of
    their own (`expand_evaluations`)."""
    return expand_evaluations(with_eps_numbers(_read_stored(path)))


def gather_results(*paths: str | Path) -> pd.DataFrame:
    """All result rows under `paths` (results files, run folders or experiment folders) in one tidy frame.

    Each run writes its own file, so gathering never races with a run that is finishing.
    """
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_file():
            files.append(path)
        elif (path / RESULTS_FILE).is_file():
            files.append(path / RESULTS_FILE)
        elif path.is_dir():
            files.extend(sorted(path.glob(f"*/{RESULTS_FILE}")))
        else:
            raise FileNotFoundError(f"no results at {path}")
    if not files:
        return pd.DataFrame(columns=[*RESULT_COLUMNS, *EVALUATION_COLUMNS])
    return pd.concat([read_results(f) for f in files], ignore_index=True)
