"""Tidy results (one row per run x metric, each run in its own file) and run manifests."""
from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd
import torch

from .fileio import atomic_write_text, file_lock
from .runconfig import RESULT_INDEX, RunConfig, config_hash, resolved, run_id

_PACKAGES = ["partrobust", "torch", "torchvision", "timm", "segmentation-models-pytorch", "pyautoattack", "numpy", "pandas", "papermill", "pydantic"]

RESULTS_FILE = "results.csv"
RUN_COLUMNS = ["experiment", "run_id", "dataset", "training", *RESULT_INDEX]
"""Identifying columns of every result row: the run, the dataset and the config fields tables are indexed by."""
METRIC_COLUMNS = ["metric", "value", "n", "note"]
RESULT_COLUMNS = [*RUN_COLUMNS, *METRIC_COLUMNS, "config_hash"]
SUMMARY_METRICS = ("clean_accuracy", "pgd_accuracy", "autoattack_accuracy")
"""The headline metrics of a run (its status line, the seed tables)."""
_NOT_SETTING = ("experiment", "run_id", "seed")
EVALUATION_COLUMNS = ("c_seg_attack",)
"""Evaluation parameters that are no config key, read off parametrised metrics (`expand_evaluations`)."""


def setting_columns(results: pd.DataFrame) -> list[str]:
    """The identifying columns of a run other than its seed (dataset, model, training, hyperparameters)."""
    return [c for c in [*RUN_COLUMNS, *EVALUATION_COLUMNS] if c in results.columns and c not in _NOT_SETTING]


# --------------------------------------------------------------------------- parametrised metrics

_PARAMETRISED = re.compile(r"^(?P<metric>[^@]+)@(?P<key>[a-z_]+)=(?P<value>[^,]+)$")
EVALUATION_PARAMETERS = ("eps", *EVALUATION_COLUMNS)
"""Parameters a metric may carry after ``@`` (notebook 03's evaluators): the results column each one fills."""


def parametrised_metric(metric: str, key: str, value: Any) -> str:
    """``autoattack_accuracy@eps=16/255``: a metric of an evaluation at another eps, or with another attack weight."""
    if key not in EVALUATION_PARAMETERS:
        raise ValueError(f"unknown evaluation parameter {key!r}; known: {EVALUATION_PARAMETERS}")
    return f"{metric}@{key}={value}"


def split_metric(metric: str) -> tuple[str, str | None, str | None]:
    """``autoattack_accuracy@eps=16/255`` -> (``autoattack_accuracy``, ``eps``, ``16/255``); a plain metric -> (metric, None, None)."""
    match = _PARAMETRISED.match(metric)
    if match is None or match["key"] not in EVALUATION_PARAMETERS:
        return metric, None, None
    return match["metric"], match["key"], match["value"]


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
        frame.at[i, key] = float(value) if key in EVALUATION_COLUMNS else value
    return frame


def distinguishing_columns(frame: pd.DataFrame) -> list[str]:
    """Setting columns other than training and model that differ between settings of the same
    training and model (a TRADES beta sweep: ``beta``); the others follow from those two."""
    pair = ["training", "model"]
    return [c for c in setting_columns(frame) if c not in pair
            and (frame.groupby(pair, dropna=False)[c].nunique(dropna=False) > 1).any()]


def result_rows(
    rows: Iterable[Mapping[str, Any]], config: RunConfig, *, experiment: str, dataset: str
) -> list[dict[str, Any]]:
    """Tidy rows (one per metric) that carry the run id and the config fields of `RESULT_INDEX`.

    Keys that do not apply to the run (TRADES beta of a PGD run, c_seg of the ResNet, ...) are
    left empty, so tables can be filtered on them without false matches.
    """
    values = resolved(config)
    ident = {"experiment": experiment, "run_id": run_id(config), "dataset": dataset, "training": config.train.training}
    ident.update({column: values[key] for column, key in RESULT_INDEX.items()})
    ident["evaluators"] = evaluators_label(config.eval.evaluators)
    digest = config_hash(config)
    return [
        {**ident, "metric": r["metric"], "value": float(r["value"]), "n": int(r["n"]), "note": r.get("note", ""), "config_hash": digest}
        for r in rows
    ]


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
        atomic_write_text(path, new.to_csv(index=False))
    return new


def evaluators_label(evaluators: Sequence[str]) -> str:
    """The ``evaluators`` column: the attack-side evaluators of the run joined by ``+``, or ``none``.

    It tells apart runs that evaluate the same trained model in different ways (notebook 03's
    attack-side sections), which repeat its clean, PGD and AutoAttack rows."""
    return "+".join(evaluators) or "none"


def _read_stored(path: str | Path) -> pd.DataFrame:
    """One results CSV as stored; a file without the result columns is refused by name.

    Files written before the ``evaluators`` column existed get ``none`` (no run had any then)."""
    frame = pd.read_csv(path)
    if "evaluators" not in frame.columns:
        frame.insert(frame.columns.get_loc("eps") + 1 if "eps" in frame.columns else len(frame.columns), "evaluators", "none")
    missing = set(RESULT_COLUMNS) - set(frame.columns)
    if missing:
        raise ValueError(f"{path} is not a results file: missing columns {sorted(missing)}")
    return frame


def read_results(path: str | Path) -> pd.DataFrame:
    """One results CSV, parametrised metrics as evaluations of their own (`expand_evaluations`)."""
    return expand_evaluations(_read_stored(path))


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


def git_commit(repo: Path | None = None) -> str:
    """The current commit (with '+dirty' for uncommitted changes), or 'not a git checkout'."""
    cwd = repo or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def write_manifest(path: str | Path, *, params: Mapping[str, Any], seed: int, device: torch.device, wall_time_s: float, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Writes a JSON manifest: commit, parameters, package versions, device, seed, wall time."""
    manifest = {
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git_commit": git_commit(),
        "parameters": dict(params),
        "seed": seed,
        "device": device_description(device),
        "wall_time_s": round(wall_time_s, 2),
        "packages": package_versions(),
        **(dict(extra) if extra else {}),
    }
    atomic_write_text(path, json.dumps(manifest, indent=2, default=str))
    return manifest
