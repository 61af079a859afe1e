"""Params files as experiments: a base run config, a sweep of runs, and the notebooks around them.

A params file (``params/*.yaml``)::

    experiment: trades_smoke          # runs go to <runs_root>/<experiment>/<run id>/
    prepare:                          # notebooks executed before the runs (data preparation)
      00_data_prep: {dataset: synthetic, output_root: runs/data}
    config:                           # the base run config: any keys of partrobust.runconfig.RunConfig
      data: {root: runs/data/synthetic, crop_size: 64}
      train: {epochs_clean: 3, epochs_adv: 1}
    sweep:                            # one block or a list of blocks; their runs are united
      - set:  {train.method: trades}              # fixed overrides of this block
        grid: {model.name: [resnet, bbox], train.beta: [0.1, 1.0]}   # cartesian product
        zip:  {train.lr: [0.1, 0.05], train.weight_decay: [5e-4, 1e-4]}  # zipped, times the grid
    notebooks:                        # notebooks executed after the runs (reports)
      02_trades_sweep: {}

Without ``sweep`` the file describes one run (the base config). Every point of every block is
validated into a `RunConfig` before anything runs; points that resolve to the same run id (for
instance a TRADES beta given to a PGD run) are one run.
"""
from __future__ import annotations

import codecs
import fnmatch
import itertools
import os
import queue
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field, field_validator, model_validator

from ..core.config import ParameterError, Section, validate
from ..core.fileio import file_lock
from ..core.paths import PLAIN_NAME_RULE, find_repo_root, is_plain_name
from .errors import EXIT_BUSY, EXIT_INPUT
from .runconfig import RunConfig, make_run_config, read_yaml, resolved, run_id
from .rundir import LOCK_FILE, claim, describe_progress, read_status, run_dir_for


class SweepBlock(Section):
    """One block of a sweep: fixed overrides, a product grid and zipped lists (all dotted keys)."""

    section: str | None = Field(None, description="the part of a report this block's runs belong to (notebook 03's ablations); blocks may share runs")
    set: dict[str, Any] = Field(default_factory=dict, description="overrides shared by this block's runs")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="key -> values; every combination is a run")
    zip: dict[str, list[Any]] = Field(default_factory=dict, description="key -> values of equal length, taken together")

    @model_validator(mode="after")
    def _equal_zip_lengths(self) -> "SweepBlock":
        empty = [f"{part}.{k}" for part, values in (("grid", self.grid), ("zip", self.zip)) for k, v in values.items() if not v]
        if empty:
            raise ValueError(f"{empty[0]}: empty list of values (the block would have no runs)")
        lengths = {k: len(v) for k, v in self.zip.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"zip lists must have equal lengths, got {lengths}")
        return self

    def points(self) -> list[dict[str, Any]]:
        """The overrides of every run of the block, in grid order."""
        grid = [dict(zip(self.grid, values)) for values in itertools.product(*self.grid.values())]
        zipped = [dict(zip(self.zip, values)) for values in zip(*self.zip.values())] if self.zip else [{}]
        return [{**self.set, **g, **z} for g in grid for z in zipped]


class Plan(Section):
    """A params file (see the module docstring)."""

    experiment: str = Field(description="experiment name: the folder under the runs root")
    prepare: dict[str, dict[str, Any] | None] = Field(default_factory=dict, description="notebooks run before the runs")
    config: dict[str, Any] = Field(default_factory=dict, description="base run config")
    sweep: list[SweepBlock] | None = Field(None, description="the runs: one block or a list of blocks; none: one run of the base config")
    notebooks: dict[str, dict[str, Any] | None] = Field(default_factory=dict, description="notebooks run after the runs")
    launcher: dict[str, Any] = Field(default_factory=dict, description="cluster job settings for --launcher slurm (partrobust.runs.launcher.LauncherConfig)")

    @field_validator("sweep", mode="before")
    @classmethod
    def _one_block_is_a_list(cls, sweep: Any) -> Any:
        return [sweep] if isinstance(sweep, dict) else sweep  # errors then say "sweep block 1: <key>"

    @field_validator("experiment")
    @classmethod
    def _valid_experiment(cls, experiment: str) -> str:
        if not is_plain_name(experiment):  # pydantic adds the key and the value
            raise ValueError(PLAIN_NAME_RULE)
        return experiment

    @property
    def sections(self) -> list[str]:
        """The section labels of the sweep's blocks, in order of first appearance."""
        return list(dict.fromkeys(b.section for b in self.blocks if b.section is not None))

    @property
    def blocks(self) -> list[SweepBlock]:
        return self.sweep if self.sweep is not None else [SweepBlock()]


def load_plan(path: str | Path) -> Plan:
    """Reads and validates a params file (structure only; see `expand` for the runs)."""
    doc = read_yaml(path)
    return validate(Plan, doc if doc is not None else {}, where=str(path))


def expand(plan: Plan, source: str = "params file", sections: list[str] | None = None) -> list[RunConfig]:
    """Every run of the plan as a validated `RunConfig` (duplicates by run id removed, order kept).

    `sections`: only the blocks labelled with one of these sections (None: every block).
    """
    if not plan.config and plan.sweep is None:
        return []
    if sections is not None:
        unknown = sorted(set(sections) - set(plan.sections))
        if unknown:
            raise ParameterError(f"{source}: no sweep block has section {unknown}; sections: {plan.sections}")
    configs: dict[str, RunConfig] = {}
    for b, block in enumerate(plan.blocks, start=1):
        if sections is not None and block.section not in sections:
            continue
        for point in block.points():
            where = f"{source}: sweep block {b}, run {point}" if point else source
            config = make_run_config(plan.config, point, where=where)
            configs.setdefault(run_id(config), config)
    return list(configs.values())


def section_run_ids(plan: Plan, source: str = "params file", sections: list[str] | None = None) -> dict[str, list[str]]:
    """Section name -> the run ids of its sweep blocks, for `sections` (None: every section of the plan), in that order."""
    return {name: [run_id(c) for c in expand(plan, source, sections=[name])] for name in (plan.sections if sections is None else sections)}


def select(configs: list[RunConfig], patterns: list[str] | None) -> list[RunConfig]:
    """Runs whose id matches any of the glob `patterns` (substring match when a pattern has no wildcard)."""
    if not patterns:
        return configs
    globs = [p if any(c in p for c in "*?[") else f"*{p}*" for p in patterns]
    return [c for c in configs if any(fnmatch.fnmatch(run_id(c), g) for g in globs)]


# --------------------------------------------------------------------------- execution


@dataclass
class RunReport:
    """What happened to one run of a batch."""

    run_id: str
    run_dir: Path
    state: str  # done, skipped (finished before), failed, refused (bad input, exit 2), busy
    wall_time_s: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""


def swept_keys(plan: Plan) -> list[str]:
    """The dotted keys the plan's sweep sets, in the order they first appear."""
    keys: dict[str, None] = {}
    for block in plan.blocks:
        keys.update(dict.fromkeys([*block.set, *block.grid, *block.zip]))
    return list(keys)


def status_table(configs: list[RunConfig], experiment: str, runs_root: str | Path, keys: list[str] = ()) -> pd.DataFrame:
    """Run id, the values of `keys` (empty where they do not apply) and the progress of each run."""
    rows = []
    for config in configs:
        values = resolved(config)
        folder = run_dir_for(config, experiment, runs_root)
        rows.append({"run_id": run_id(config), **{k: values[k] for k in keys}, "status": describe_progress(folder)})
    return pd.DataFrame(rows, columns=["run_id", *keys, "status"])


def summary_table(reports: list[RunReport]) -> pd.DataFrame:
    """One line per run: id, state, wall time, clean / PGD / AutoAttack accuracy, error."""
    rows = [{"run_id": r.run_id, "state": r.state, "wall_s": round(r.wall_time_s),
             "clean": r.metrics.get("clean_accuracy"), "pgd": r.metrics.get("pgd_accuracy"),
             "autoattack": r.metrics.get("autoattack_accuracy"), "error": r.error.splitlines()[0][:120] if r.error else ""}
            for r in reports]
    return pd.DataFrame(rows, columns=["run_id", "state", "wall_s", "clean", "pgd", "autoattack", "error"])


def _device_slots(jobs: int) -> "queue.Queue[str | None]":
    """One slot per job: a GPU id (round-robin over the visible GPUs) or None for CPU processes."""
    import torch

    slots: queue.Queue[str | None] = queue.Queue()
    if torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpus = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
        for i in range(jobs):
            slots.put(gpus[i % len(gpus)])
    else:
        for _ in range(jobs):
            slots.put(None)
    return slots


_PROGRESS_BAR = re.compile(r"\d+%\||\d+/\d+ \[|it/s\]|s/it\]")


def finished_lines(text: str) -> list[str]:
    """The lines of a chunk of terminal output as a reader sees them at the end: for each line,
    what follows its last carriage return; progress-bar states and blank lines dropped."""
    lines = (line.rsplit("\r", 1)[-1].rstrip() for line in text.split("\n"))
    return [line for line in lines if line.strip() and not _PROGRESS_BAR.search(line)]


def _pump(proc: subprocess.Popen, log_path: Path, echo: bool | str, keep: int = 40) -> str:
    """Copies the child's output to its log file and to the terminal: raw (``echo=True``: one job,
    progress bars included) or, with ``echo="<run id>"`` (several jobs at once), its finished lines
    (epoch records, messages) prefixed with the run id, so that parallel runs stay readable.
    Returns the child's own last `keep` finished lines (the log file may hold another process's too)."""
    pending = b""
    own = b""
    text = codecs.getincrementaldecoder("utf-8")("replace")  # for a stdout without bytes (a notebook kernel's)
    with open(log_path, "ab") as log:
        assert proc.stdout is not None
        while chunk := proc.stdout.read1(4096) if hasattr(proc.stdout, "read1") else proc.stdout.read(4096):
            log.write(chunk)
            log.flush()
            own = (own + chunk)[-16384:]
            if echo is True:
                if hasattr(sys.stdout, "buffer"):
                    sys.stdout.buffer.write(chunk)
                else:
                    sys.stdout.write(text.decode(chunk))
                sys.stdout.flush()
            elif echo:
                pending += chunk
                complete, _, pending = pending.rpartition(b"\n")
                lines = finished_lines(complete.decode("utf-8", "replace")) if complete else []
                if lines:
                    sys.stdout.write("".join(f"[{echo}] {line}\n" for line in lines))
                    sys.stdout.flush()
    return "\n".join(finished_lines(own.decode("utf-8", "replace"))[-keep:])


def _die_with_parent() -> None:
    """In a child process: ask Linux to kill it when its parent dies (a killed cluster job leaves no orphan run)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def execute_one(config: RunConfig, experiment: str, runs_root: str | Path, runner: str, gpu: str | None,
                echo: bool | str, cpu_threads: int | None = None, processes: int = 1,
                die_with_parent: bool = False) -> RunReport:
    """Runs one run in a child process (``python -m partrobust.run``, under ``torchrun`` with
    `processes` > 1), its output in ``log.txt`` and on the terminal as `_pump` says (`echo`).
    `die_with_parent`: the child is killed with this process (cluster jobs)."""
    folder = run_dir_for(config, experiment, runs_root)
    rid = run_id(config)
    previous = read_status(folder)
    if previous["state"] == "done":
        return RunReport(rid, folder, "skipped", metrics=previous.get("metrics", {}))
    claim(folder, config, experiment)
    launch = [sys.executable, "-m", "partrobust.run"] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", "-m", "partrobust.run"]
    cmd = [*launch, str(folder / "config.yaml"), "--experiment", experiment, "--runs-root", str(runs_root),
           *(["--notebook"] if runner == "notebook" else [])]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    if cpu_threads is not None:
        env["OMP_NUM_THREADS"] = str(cpu_threads)
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=find_repo_root(),
                            preexec_fn=_die_with_parent if die_with_parent else None)
    own = _pump(proc, folder / "log.txt", echo)
    code = proc.wait()
    status = read_status(folder)
    wall = time.time() - t0
    if code == 0 and status["state"] == "done":
        return RunReport(rid, folder, "done", wall, status.get("metrics", {}))
    said = _last_message(own) or f"exit status {code}"  # this child's words, never another writer's log lines
    if code == EXIT_BUSY:
        return RunReport(rid, folder, "busy", wall, error=said)
    if code == EXIT_INPUT:
        return RunReport(rid, folder, "refused", wall, error=said.removeprefix("error: "))
    error = status.get("error") if status["state"] == "failed" else None
    if status.get("cell") is not None:
        error = f"{error} (cell [{status['cell']}] of {status.get('notebook')})"
    return RunReport(rid, folder, "failed", wall, error=error or said)


def _last_message(output: str) -> str:
    """The closing ``error:`` / ``busy:`` / ``failed:`` message of a run's output (all its lines), else its last line."""
    lines = output.splitlines()
    start = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith(("error: ", "busy: ", "failed: "))), None)
    return "\n".join(lines[start:]) if start is not None else (lines[-1] if lines else "")


def wait_for_other_process(run_dir: Path) -> dict[str, Any]:
    """Blocks until no process holds the run's lock, then returns its status (done if the other process finished it)."""
    with file_lock(run_dir / LOCK_FILE):
        pass
    return read_status(run_dir)


def run_sweep(configs: list[RunConfig], experiment: str, runs_root: str | Path = "runs", jobs: int = 1,
              runner: str = "notebook") -> list[RunReport]:
    """Runs every unfinished run, `jobs` at a time (one GPU each, or CPU processes); failures do not stop the others."""
    if jobs < 1:
        raise ParameterError(f"--jobs must be >= 1, got {jobs}")
    if runner not in ("notebook", "process"):
        raise ParameterError(f"runner must be 'notebook' or 'process', got {runner!r}")
    slots = _device_slots(jobs)
    cpu_threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
    lock = threading.Lock()
    total = len(configs)

    def job(index: int, config: RunConfig) -> RunReport:
        gpu = slots.get()
        try:
            with lock:
                print(f"[partrobust] run {index}/{total} {run_id(config)}" + (f" on GPU {gpu}" if gpu else ""), flush=True)
            report = execute_one(config, experiment, runs_root, runner, gpu, echo=True if jobs == 1 else run_id(config),
                                 cpu_threads=None if gpu else cpu_threads)
            with lock:
                line = f"[partrobust] run {index}/{total} {report.run_id}: {report.state}"
                print(line + (f" ({report.error.splitlines()[0]})" if report.error else ""), flush=True)
            return report
        finally:
            slots.put(gpu)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        reports = list(pool.map(lambda item: job(*item), enumerate(configs, start=1)))
    for i, report in enumerate(reports):  # runs another process was working on: wait for it, then count its outcome
        if report.state != "busy":
            continue
        print(f"[partrobust] run {report.run_id} is being worked on by another process; waiting for it", flush=True)
        status = wait_for_other_process(report.run_dir)
        if status["state"] == "done":  # finished by the other process: done, as if this batch had run it
            reports[i] = RunReport(report.run_id, report.run_dir, "done", report.wall_time_s, status.get("metrics", {}))
            print(f"[partrobust] run {report.run_id}: done (by another process)", flush=True)
        else:  # the other process stopped without finishing it: run it here
            reports[i] = job(i + 1, configs[i])
    return reports


