"""What a run writes about itself: its tidy result rows (config fields attached) and its manifest
(commit, parameters, package versions, device, seed, wall time)."""
from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from ..core.fileio import atomic_write_text
from ..core.results import RESULT_INDEX, evaluators_label
from .runconfig import RunConfig, config_hash, resolved, run_id

_PACKAGES = ["partrobust", "torch", "torchvision", "timm", "segmentation-models-pytorch", "pyautoattack", "numpy", "pandas", "papermill", "pydantic"]


def result_rows(
    rows: Iterable[Mapping[str, Any]], config: RunConfig, *, experiment: str, dataset: str
) -> list[dict[str, Any]]:
    """Tidy rows (one per metric) that carry the run id and the config fields of `RESULT_INDEX`.

    Keys that do not apply to the run (TRADES beta of a PGD run, c_seg of the ResNet, ...) are
    left empty, so tables can be filtered on them without false matches.
    """
    values = resolved(config)
    ident = {"experiment": experiment, "run_id": run_id(config), "dataset": dataset, "training": config.training}
    ident.update({column: values[key] for column, key in RESULT_INDEX.items()})
    ident["evaluators"] = evaluators_label(config.eval.evaluators)
    digest = config_hash(config)
    return [
        {**ident, "metric": r["metric"], "value": float(r["value"]), "n": int(r["n"]), "note": r.get("note", ""), "config_hash": digest}
        for r in rows
    ]


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
