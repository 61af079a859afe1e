"""Tidy results (one row per run x dataset x model x metric) and run manifests."""
from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd
import torch

RESULT_COLUMNS = ["run", "dataset", "model", "training", "hparams", "metric", "value", "n", "note"]
_PACKAGES = ["partrobust", "torch", "torchvision", "timm", "segmentation-models-pytorch", "pyautoattack", "numpy", "pandas", "papermill"]


def result_rows(
    rows: Iterable[Mapping[str, Any]], *, run: str, dataset: str, model: str, training: str, hparams: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Adds the identifying columns to metric rows (``metric``, ``value``, ``n``, optional ``note``)."""
    hp = json.dumps(dict(hparams), sort_keys=True, default=str)
    return [
        {"run": run, "dataset": dataset, "model": model, "training": training, "hparams": hp,
         "metric": r["metric"], "value": float(r["value"]), "n": int(r["n"]), "note": r.get("note", "")}
        for r in rows
    ]


def append_results(csv_path: str | Path, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Appends rows to a results CSV, replacing earlier rows with the same identity (reruns)."""
    csv_path = Path(csv_path)
    new = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    if csv_path.exists():
        old = pd.read_csv(csv_path, keep_default_na=False)
        missing = set(RESULT_COLUMNS) - set(old.columns)
        if missing:
            raise ValueError(f"{csv_path} is not a results file: missing columns {sorted(missing)}")
        key = ["run", "dataset", "model", "training", "hparams", "metric"]
        old = old[~old.set_index(key).index.isin(new.set_index(key).index)]
        new = pd.concat([old, new], ignore_index=True)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    new.to_csv(csv_path, index=False)
    return new


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2, default=str))
    return manifest
