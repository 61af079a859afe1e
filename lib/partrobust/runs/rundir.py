"""A run's folder ``<runs_root>/<experiment>/<run id>/``: its claim, status and lock.

Files (all written atomically):

* ``config.yaml``: the full resolved config, loadable by ``python -m partrobust.run``.
* ``run.json``: run id, config hash, experiment and the flat identity; a folder whose
  ``run.json`` holds another hash is refused (`ConfigMismatchError` naming the changed keys).
* ``status.json``: ``state`` (``running``, ``done``, ``failed``, ``interrupted``), times, key metrics
  or the error (with the failing notebook cell, for runs executed as notebooks). A ``running``
  status whose lock nobody holds (its process died, or its kernel was interrupted) reads as
  ``interrupted`` (`read_status`): rerunning resumes it from its last epoch.
* ``.lock``: an exclusive ``flock`` held while a process works on the run, so two processes
  never train the same run at once (`RunBusyError`).

Training writes ``train/<phase>/{last,best}.pt`` and ``history.jsonl``; evaluation writes
``results.csv``, ``manifest.json``, ``autoattack_state.pt`` and ``figures/``.
"""
from __future__ import annotations

import fcntl
import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..core.config import diff_flat
from ..core.fileio import atomic_write_text, file_lock, remove_stale_temporaries
from ..core.paths import refuse_source_location
from ..train.loop import ConfigMismatchError
from .runconfig import RunConfig, config_hash, identity, run_id, save_run_config

CONFIG_FILE = "config.yaml"
RUN_FILE = "run.json"
STATUS_FILE = "status.json"
LOCK_FILE = ".lock"
TRAIN_DIR = "train"


class RunBusyError(RuntimeError):
    """Another process holds the run's lock."""


def run_dir_for(config: RunConfig, experiment: str, runs_root: str | Path = "runs") -> Path:
    """``<runs_root>/<experiment>/<run id>``."""
    return Path(runs_root) / experiment / run_id(config)


def check_folder(run_dir: Path, config: RunConfig) -> None:
    """Refuses a run folder inside the sources, or one that another configuration wrote (naming the changed keys)."""
    refuse_source_location(run_dir, "run folder")
    record_path = run_dir / RUN_FILE
    if not record_path.is_file():
        return
    stored = json.loads(record_path.read_text())
    if stored.get("config_hash") != config_hash(config):
        changed = diff_flat(stored.get("identity", {}), identity(config))
        raise ConfigMismatchError(
            f"{run_dir} holds run {stored.get('run_id')!r} of another configuration; changed keys:\n  "
            + "\n  ".join(changed) + "\nUse another folder (the run id follows the config) or delete this one.")


def claim(run_dir: Path, config: RunConfig, experiment: str) -> None:
    """Creates or reopens the folder of `config` (config.yaml, run.json); refuses one that another config wrote."""
    check_folder(run_dir, config)
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in remove_stale_temporaries(run_dir):
        print(f"[partrobust] removed {stale}, left by a killed writer", flush=True)
    save_run_config(config, run_dir / CONFIG_FILE)  # rewritten: runtime keys (device, progress) may change
    record = {"run_id": run_id(config), "config_hash": config_hash(config), "experiment": experiment, "identity": identity(config)}
    atomic_write_text(run_dir / RUN_FILE, json.dumps(record, indent=2))


def read_status(run_dir: Path) -> dict[str, Any]:
    """The run's status; ``{"state": "new"}`` for a folder that never started.

    A ``running`` status whose lock nobody holds is stale (its holder died or was interrupted):
    it reads as ``interrupted``, with ``"stale": true``.
    """
    path = run_dir / STATUS_FILE
    if not path.is_file():
        return {"state": "new"}
    status = json.loads(path.read_text())
    if status.get("state") == "running" and not lock_held(run_dir):
        status.update(state="interrupted", stale=True)
    return status


def lock_held(run_dir: Path) -> bool:
    """Whether some open file (any process, this one included) holds the run's lock now."""
    try:
        handle = open(run_dir / LOCK_FILE, "rb")
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def write_status(run_dir: Path, state: str, **fields: Any) -> dict[str, Any]:
    """Replaces the status with `state` and `fields` (keeps ``started``, under a lock); returns it."""
    with file_lock(run_dir / f".{STATUS_FILE}.lock"):
        old = read_status(run_dir)
        status = {"state": state, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"), **fields}
        if "started" in old and "started" not in status:
            status["started"] = old["started"]
        atomic_write_text(run_dir / STATUS_FILE, json.dumps(status, indent=2, default=str))
    return status


def describe_progress(run_dir: Path) -> str:
    """One word or phrase for listings: new, done, failed, started, interrupted, or how far training got."""
    status = read_status(run_dir)
    state = status["state"]
    if state in ("done", "failed"):
        return state
    phases = []
    for history in sorted((run_dir / TRAIN_DIR).glob("*/history.jsonl")):  # written every epoch; cheap to read
        epochs = sum(1 for line in history.read_text().splitlines() if line.strip())
        phases.append(f"{history.parent.name} epoch {epochs}")
    word = {"running": "started", "interrupted": "interrupted"}.get(state, "new")
    if phases:
        return ("partial (" if state != "interrupted" else "interrupted (") + ", ".join(phases) + ")"
    return word


@contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Holds the run's exclusive lock for the block; `RunBusyError` if another process has it."""
    try:
        with file_lock(run_dir / LOCK_FILE, blocking=False):
            yield
    except BlockingIOError:
        raise RunBusyError(f"run {run_dir} is being worked on by another process") from None
