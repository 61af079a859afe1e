"""Sweeps on a SLURM cluster with submitit: one job per unfinished run, resubmitted until it finishes.

    python -m partrobust.pipeline params/X.yaml --launcher slurm [--partition P --gpus 4 --time 1440 --mem 64]

Each job runs one run (``python -m partrobust.run``, under ``torchrun`` on the job's GPUs when it
has several) with its output in the run folder's ``log.txt``. A job that SLURM preempts or times
out is requeued by submitit (`RunJob` is checkpointable) and the run resumes from its last
epoch; a job that ends without finishing its run for any other reason (killed, node failure) is
resubmitted by the pipeline, up to ``max_resubmits`` times. A run that fails by itself (an error
in the run) is reported, not resubmitted. Results are gathered from the run folders, as for
local runs. Settings come from the params file's ``launcher:`` block, then the command-line flags.
``--launcher submitit-local`` sends the same jobs to submitit's local executor (no cluster).

What a cluster user must know: the jobs run the submitting Python (the same virtual
environment or conda env must exist on the compute nodes, at the same path), in the repository
checkout, and read the paths of the params file (data, weights, runs root) from the compute
nodes, so these must be on a shared file system. submitit's own logs go to
``<runs_root>/<experiment>/_jobs/``.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

from pydantic import Field

from ..core.config import ParameterError, Section, validate
from ..core.paths import find_repo_root
from .runconfig import RunConfig, run_id
from .rundir import read_status, run_dir_for
from .sweep import RunReport, execute_one

LAUNCHERS = ("local", "slurm", "submitit-local")
JOBS_DIR = "_jobs"


class LauncherConfig(Section):
    """Job settings of ``--launcher slurm`` (the params file's ``launcher:`` block)."""

    partition: str | None = Field(None, description="SLURM partition (None: the cluster's default)")
    gpus_per_node: int = Field(1, ge=0, description="GPUs per job; with more than one, the run trains under torchrun on all of them")
    cpus_per_task: int = Field(8, ge=1, description="CPU cores per job (data loading)")
    mem_gb: int = Field(64, ge=1, description="memory per job in GB")
    timeout_min: int = Field(24 * 60, ge=1, description="wall-clock limit per job in minutes (a timed-out job is requeued and resumes)")
    account: str | None = Field(None, description="SLURM account")
    qos: str | None = Field(None, description="SLURM quality of service")
    constraint: str | None = Field(None, description="SLURM node constraint, e.g. a GPU type")
    setup: list[str] = Field(default_factory=list, description="shell lines run in the job before the run (module load ..., source ...)")
    max_resubmits: int = Field(3, ge=0, description="times a job that ended without finishing its run is submitted again")
    poll_s: float = Field(10.0, gt=0, description="seconds between checks of the jobs' states")


def launcher_config(block: Mapping[str, Any], flags: Mapping[str, Any] | None = None, where: str = "launcher") -> LauncherConfig:
    """The params file's ``launcher:`` block with the command-line flags that were given on top."""
    values = {**block, **{k: v for k, v in (flags or {}).items() if v is not None}}
    return validate(LauncherConfig, values, where=where)


class RunJob:
    """One run as a submitit job; checkpointable, so SLURM preemption and timeouts requeue it."""

    def __init__(self, config: RunConfig, experiment: str, runs_root: str, repo: str, processes: int) -> None:
        self.config, self.experiment, self.runs_root, self.repo, self.processes = config, experiment, runs_root, repo, processes

    def __call__(self) -> dict[str, Any]:
        os.chdir(self.repo)
        report = execute_one(self.config, self.experiment, self.runs_root, "process", None, echo=False,
                             processes=max(1, self.processes), die_with_parent=True)
        return asdict(report)

    def checkpoint(self) -> Any:
        """Called by submitit on preemption or timeout: requeue the same job (the run resumes from its last epoch)."""
        import submitit

        return submitit.helpers.DelayedSubmission(self)


def _executor(kind: str, folder: Path, cfg: LauncherConfig, name: str) -> Any:
    import submitit

    if kind == "slurm":
        executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
        extra = {f"slurm_{k}": getattr(cfg, k) for k in ("partition", "account", "qos", "constraint") if getattr(cfg, k)}
        executor.update_parameters(slurm_setup=list(cfg.setup), **extra)
    else:
        executor = submitit.AutoExecutor(folder=str(folder), cluster="local")
    executor.update_parameters(name=name, timeout_min=cfg.timeout_min, gpus_per_node=cfg.gpus_per_node,
                               cpus_per_task=cfg.cpus_per_task, mem_gb=cfg.mem_gb, nodes=1, tasks_per_node=1)
    return executor


def _report_of(job: Any, config: RunConfig, experiment: str, runs_root: str, local: bool = False) -> RunReport | None:
    """The run's report if the job ended with one; None if the job ended without finishing it (resubmit).

    `local`: the job ran on this machine, which writes its result file before the job's process exits, so a
    missing file means it was killed (submitit would otherwise wait 15 s for a network file system to show it)."""
    try:
        if local and not job.paths.result_pickle.exists():
            raise RuntimeError(f"job {job.job_id} left no result")
        fields = job.result()
        return RunReport(**{**fields, "run_dir": Path(fields["run_dir"])})
    except Exception:  # noqa: BLE001 - killed, preempted past requeue, node failure: the run folder says what is left
        status = read_status(run_dir_for(config, experiment, runs_root))
        if status["state"] == "done":
            return RunReport(run_id(config), run_dir_for(config, experiment, runs_root), "done", metrics=status.get("metrics", {}))
        if status["state"] == "failed":
            return RunReport(run_id(config), run_dir_for(config, experiment, runs_root), "failed", error=status.get("error", ""))
        return None


def run_jobs(configs: list[RunConfig], experiment: str, runs_root: str | Path, launcher: str, cfg: LauncherConfig) -> list[RunReport]:
    """Submits one job per unfinished run of `configs`, waits, resubmits jobs that ended without
    finishing their run, and returns a report per run in the order of `configs`."""
    if launcher not in ("slurm", "submitit-local"):
        raise ParameterError(f"--launcher must be one of {LAUNCHERS}, got {launcher!r}")
    runs_root = str(runs_root)
    folder = Path(runs_root) / experiment / JOBS_DIR
    repo = str(find_repo_root())
    reports: dict[str, RunReport] = {}
    pending: dict[str, RunConfig] = {}
    for config in configs:
        rid, status = run_id(config), read_status(run_dir_for(config, experiment, runs_root))
        if status["state"] == "done":
            reports[rid] = RunReport(rid, run_dir_for(config, experiment, runs_root), "skipped", metrics=status.get("metrics", {}))
        else:
            pending[rid] = config
    executor = _executor(launcher, folder, cfg, experiment)
    for attempt in range(cfg.max_resubmits + 1):
        if not pending:
            break
        jobs = {}
        for rid, config in pending.items():
            jobs[rid] = executor.submit(RunJob(config, experiment, runs_root, repo, cfg.gpus_per_node))
            again = f" (resubmission {attempt})" if attempt else ""
            print(f"[partrobust] {rid}: job {jobs[rid].job_id}{again}, log {run_dir_for(pending[rid], experiment, runs_root) / 'log.txt'}",
                  flush=True)
        while not all(job.done() for job in jobs.values()):
            time.sleep(cfg.poll_s)
        unfinished = {}
        for rid, job in jobs.items():
            report = _report_of(job, pending[rid], experiment, runs_root, local=launcher == "submitit-local")
            if report is None:
                unfinished[rid] = pending[rid]
                print(f"[partrobust] {rid}: job {job.job_id} ended before the run finished ({job.state}); "
                      f"{'resubmitting' if attempt < cfg.max_resubmits else 'giving up'}", flush=True)
            else:
                reports[rid] = report
                print(f"[partrobust] {rid}: {report.state}" + (f" ({report.error.splitlines()[0]})" if report.error else ""), flush=True)
        pending = unfinished
    for rid, config in pending.items():
        reports[rid] = RunReport(rid, run_dir_for(config, experiment, runs_root), "failed",
                                 error=f"its job ended {cfg.max_resubmits + 1} times before the run finished (see {folder})")
    return [reports[run_id(c)] for c in configs]
