"""The paper's printed tables, read from their transcription (``tableNN.csv``) in our names.

No paper number is written in the code: `load_paper_table` reads them from the transcription shipped
with the package (`PAPER_TABLES`, ``report/paper_data``; or a folder passed as ``directory``), renaming the paper's
models, attacks and columns to ours (`PAPER_MODELS`, `PAPER_ATTACKS`, `PAPER_COLUMNS`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..attacks.two_stage import STRATEGIES
from ..core.metrics import benchmark_metric
from ..core.results import RUN_COLUMNS, with_eps_numbers
from ..data.synthetic import DATASET_NAME as BUILTIN_DATASET
from .protocol import paper_note

PAPER_MODELS = {"resnet50": "resnet", "bounding_box": "bbox"}
"""Paper-table model name -> our registered model name (others are the same in both)."""


PAPER_ATTACKS = {
    "clean": "clean_accuracy", "pgd": "pgd_accuracy", "autoattack": "autoattack_accuracy",
    **{f"{first}": f"two_stage_{first}_accuracy" for first in STRATEGIES},
}
"""Paper-table `attack` -> our `metric` (Table 13's two-stage attacks are named by their first stage;
other attacks would become ``<attack>_accuracy``)."""


PAPER_COLUMNS = {"trades_beta": "beta", "epsilon": "eps"}
"""Paper-table column -> our column."""


PAPER_TABLES = Path(__file__).resolve().parent / "paper_data"
"""The paper's 19 numeric tables as transcribed (``tableNN.csv``), shipped with the package; their
``README.md`` says how each was read from the paper and how its ambiguities were resolved."""


def paper_tables_dir(directory: str | Path | None = None) -> Path:
    """The transcribed paper tables: `directory`, else `PAPER_TABLES`; FileNotFoundError naming the folder if absent."""
    path = Path(directory) if directory is not None else PAPER_TABLES
    if not path.is_dir():
        raise FileNotFoundError(f"paper tables folder not found: {path} (the transcribed tables are {PAPER_TABLES})")
    return path


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
    return with_eps_numbers(table)


def paper_as_results(tables: Sequence[int] = (8, 9, 10), directory: str | Path | None = None) -> pd.DataFrame:
    """Paper sweep tables as a tidy results frame (one made-up run per printed table row).

    Lets the paper's sweeps go through `wide_runs`, `select_best` and `plot_sweep` like ours. Their notes
    say they were measured as the paper measured (`partrobust.report.protocol.paper_note`). Run ids look like ``paper-t08-resnet-trades-lr0.1-wd0.0005-b0.1``; ``n`` is unknown (NaN).
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
        # measured as the paper measured: its AutoAttack and PGD, the whole test split (empty eval_limit)
        table["note"] = [f"{paper_note(m)}; paper: {n}" if isinstance(n, str) and paper_note(m) else paper_note(m) or n
                         for m, n in zip(table["metric"], table["note"] if "note" in table else [""] * len(table))]
        table["eval_limit"] = np.nan
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
