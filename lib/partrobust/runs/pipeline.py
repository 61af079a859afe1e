"""Runs a params file: its `prepare` notebooks, every unfinished run of its sweep, then its report notebooks.

    python -m partrobust.pipeline params/smoke.yaml                  # everything
    python -m partrobust.pipeline params/X.yaml --dry-run            # list the runs, their ids and status
    python -m partrobust.pipeline params/X.yaml --only 'bbox-*'      # only matching runs (no notebooks)
    python -m partrobust.pipeline params/X.yaml --notebooks 00       # only notebook 00 (no runs)
    python -m partrobust.pipeline params/X.yaml --jobs 4             # 4 runs at a time (one GPU each)
    python -m partrobust.pipeline params/X.yaml --launcher slurm     # one SLURM job per run (partrobust.runs.launcher)

Layout of a params file: see `partrobust.runs.sweep`. Outputs: ``<runs_root>/<experiment>/`` holds
the executed prepare/report notebooks and one folder per run (``<run id>/``, see
`partrobust.runs.rundir`), each with its executed notebook 01 (or, with ``--runner process``, just
its results), its ``log.txt`` and ``results.csv``. The terminal shows what the notebooks print as
it happens: with one job, everything (epoch lines, training and attack progress bars); with
several, each run's finished lines (epoch records, messages) prefixed by its run id, its full
output staying in its ``log.txt``. Everything in the file (notebook parameter
names, every run's config) is validated before the first notebook starts. A killed batch rerun
with the same command skips finished runs and resumes the unfinished one from its last epoch; a
failed run is reported and the others go on. A run that another process (another pipeline) is
working on is waited for and counts as done when that process finishes it.

Exit status (`partrobust.runs.errors`): 0 every run done; 1 a run or notebook failed; 2 bad input
(the params file, its runs, the runs root: one ``error:`` line naming the key or file, before
anything runs; or, with no failure, a run that refused its input); 3 a run stayed busy.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Iterable

from ..core.config import ParameterError
from ..core.fileio import check_writable
from ..core.paths import find_repo_root, refuse_source_location
from ..data import scan_prepared
from .errors import EXIT_BUSY, EXIT_FAILED, EXIT_INPUT, EXIT_OK, InputRefused, is_input_error, report_exit
from .launcher import LAUNCHERS, launcher_config, run_jobs
from .notebooks import NotebookFailed, check_parameters, execute
from .runconfig import RunConfig, check_device, check_limits, check_weights_file, split_sizes, used_rows
from .sweep import Plan, RunReport, expand, load_plan, run_sweep, select, status_table, summary_table, swept_keys

# Values the pipeline passes to a notebook that declares these parameters (unless the file sets them).
INJECTED = ("params_file", "run_dir", "runs_root", "experiment")


def notebook_plan(plan: Plan, params_file: str | Path, runs_root: str | Path, repo: Path) -> dict[str, dict[str, Any]]:
    """{stem: parameters} of the prepare and report notebooks, each validated as the notebook will (names, types, ranges)."""
    injected = {"params_file": str(params_file), "run_dir": str(Path(runs_root) / plan.experiment),
                "runs_root": str(runs_root), "experiment": plan.experiment}
    out = {}
    for stem, values in [*plan.prepare.items(), *plan.notebooks.items()]:
        out[stem] = check_parameters(repo, stem, dict(values or {}), where=str(params_file), injected=injected)
    return out


def scan_data(configs: list[RunConfig], progress: bool = True) -> None:
    """Scans every dataset the runs read (the rows they use) once, before the first run starts,
    so a bad file stops the batch at once instead of failing each run (see `partrobust.data.scan`)."""
    needs: dict[str, dict[str, int | None]] = {}
    for config in (c for c in configs if c.data.scan):
        rows = needs.setdefault(config.data.labelled_root, {})
        for split, n in used_rows(config).items():
            rows[split] = n if split not in rows else (None if rows[split] is None or n is None else max(rows[split], n))
    for root, rows in needs.items():
        report = scan_prepared(root, rows, progress=progress)
        print(f"[partrobust] {report.summary()}", flush=True)
        report.raise_if_bad()
    for config in configs:  # a limit above its split: the run would read fewer images than its id says
        check_limits(config, split_sizes(config.data.labelled_root))


def missing_files(paths: Iterable[str | None]) -> list[str]:
    """The named files (None: none named) that are not on disk, sorted, each once: the ImageNet weights to
    fetch (``model.pretrained_*``) or the imported weights to import (``model.weights``) of a preview."""
    return sorted({str(p) for p in paths if p is not None and not Path(p).is_file()})


def _rerun_command(params_file: str | Path, stem: str) -> str:
    return f"python -m partrobust.pipeline {params_file} --notebooks {stem}"


def run(params_file: str | Path, *, only: list[str] | None = None, notebooks: list[str] | None = None, jobs: int = 1,
        runner: str = "notebook", runs_root: str | Path = "runs", dry_run: bool = False, progress: bool = True,
        repo: Path | None = None, launcher: str = "local", launcher_flags: dict[str, Any] | None = None) -> list[RunReport]:
    """Executes a params file (see the module docstring); returns the runs' reports."""
    repo = repo or find_repo_root()
    refuse_source_location(runs_root, "runs root")
    plan = load_plan(params_file)
    if launcher not in LAUNCHERS:
        raise ParameterError(f"--launcher must be one of {', '.join(LAUNCHERS)}, got {launcher!r}")
    job_settings = launcher_config(plan.launcher, launcher_flags, where=f"{params_file}: launcher")
    if launcher == "slurm" and not dry_run and shutil.which("sbatch") is None:
        raise ParameterError("--launcher slurm submits with sbatch, which is not on PATH here (run it on the cluster's login "
                             "node); --launcher submitit-local runs the same jobs on this machine")
    configs: list[RunConfig] = expand(plan, str(params_file))
    nb_params = notebook_plan(plan, params_file, runs_root, repo)
    if only is not None or notebooks is not None:  # an explicit selection runs only what it names
        configs = select(configs, only) if only is not None else []
        nb_params = {s: p for s, p in nb_params.items() if notebooks and any(s.startswith(n) for n in notebooks)}
        if not configs and not nb_params:
            raise ParameterError(f"--only {only} / --notebooks {notebooks} select nothing in {params_file}")
    experiment_dir = Path(runs_root) / plan.experiment
    if dry_run:
        print(f"experiment {plan.experiment}: {len(configs)} run(s) under {experiment_dir}")
        for stem in nb_params:
            print(f"  notebook {stem} -> {experiment_dir / (stem + '.ipynb')}")
        if configs:
            print(status_table(configs, plan.experiment, runs_root, swept_keys(plan)).to_string(index=False, na_rep="-"))
        missing = missing_files(c.model.pretrained_path for c in configs)
        if missing:
            print("to fetch before training (`make weights`, i.e. python -m partrobust.weights fetch): " + ", ".join(missing))
        unimported = missing_files(c.model.weights for c in configs)
        if unimported:
            print("to import before evaluating (python -m partrobust.weights import-reference FILE --model M --dataset D; "
                  "their run ids then include the files' SHA-256): " + ", ".join(unimported))
        return []
    for config in configs:  # what the runs need to train (not to be listed): checked before the prepare notebooks
        check_weights_file(config)
        if launcher == "local":  # jobs of a cluster launcher run on other machines, with other devices
            check_device(config)
    check_writable(experiment_dir, "runs root")
    for stem in (s for s in plan.prepare if s in nb_params):
        _execute(repo, stem, nb_params[stem], experiment_dir, progress, params_file)
    scan_data(configs, progress)
    if not configs:
        reports = []
    elif launcher == "local":
        reports = run_sweep(configs, plan.experiment, runs_root, jobs, runner)
    else:
        reports = run_jobs(configs, plan.experiment, runs_root, launcher, job_settings)
    if reports:
        print(f"[partrobust] {plan.experiment}: {len(reports)} run(s)\n" + summary_table(reports).to_string(index=False), flush=True)
    failed = [r for r in reports if r.state in ("failed", "refused", "busy")]
    if failed:
        print(f"[partrobust] {len(failed)} run(s) did not finish; rerun the same command to retry them "
              "(finished runs are skipped). Report notebooks are not run.", flush=True)
        return reports
    for stem in (s for s in plan.notebooks if s in nb_params):
        _execute(repo, stem, nb_params[stem], experiment_dir, progress, params_file)
    return reports


def _execute(repo: Path, stem: str, parameters: dict[str, Any], experiment_dir: Path, progress: bool, params_file: str | Path) -> None:
    output = experiment_dir / f"{stem}.ipynb"
    print(f"[partrobust] {stem} -> {output}", flush=True)
    try:
        seconds = execute(repo, stem, parameters, output, stream=progress, rerun=_rerun_command(params_file, stem))
    except NotebookFailed as err:
        if is_input_error(err.error):  # the notebook refused its input: exit 2, as the same error outside a notebook
            raise InputRefused(str(err)) from None
        raise
    print(f"[partrobust] {stem} done in {seconds:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("params_file", help="YAML file under params/")
    parser.add_argument("--dry-run", action="store_true", help="list the runs with their ids and status; run nothing")
    parser.add_argument("--only", nargs="+", metavar="PATTERN", help="run only the runs whose id matches (glob or substring)")
    parser.add_argument("--notebooks", nargs="+", metavar="STEM", help="run only these notebooks (stems or prefixes such as 00)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (one GPU each if there are GPUs)")
    parser.add_argument("--runner", choices=("notebook", "process"), default="notebook",
                        help="execute each run as notebook 01 (default) or as `python -m partrobust.run`")
    parser.add_argument("--runs-root", default="runs", help="where experiments live (default runs/)")
    parser.add_argument("--no-progress", action="store_true", help="do not stream notebook output")
    parser.add_argument("--launcher", choices=LAUNCHERS, default="local",
                        help="local: runs on this machine (default); slurm: one SLURM job per run (submitit); "
                             "submitit-local: the same jobs on this machine")
    cluster = parser.add_argument_group("job settings (override the params file's launcher: block)")
    cluster.add_argument("--partition", help="SLURM partition")
    cluster.add_argument("--gpus", type=int, dest="gpus_per_node", help="GPUs per job (> 1: torchrun on all of them)")
    cluster.add_argument("--time", type=int, dest="timeout_min", help="minutes per job (timed-out jobs are requeued and resume)")
    cluster.add_argument("--mem", type=int, dest="mem_gb", help="memory per job in GB")
    args = parser.parse_args(argv)
    try:
        params_file = Path(args.params_file).resolve()
        os.chdir(find_repo_root())  # paths inside params files are relative to the repository root
        flags = {k: getattr(args, k) for k in ("partition", "gpus_per_node", "timeout_min", "mem_gb")}
        reports = run(params_file, only=args.only, notebooks=args.notebooks, jobs=args.jobs, runner=args.runner,
                      runs_root=args.runs_root, dry_run=args.dry_run, progress=not args.no_progress,
                      launcher=args.launcher, launcher_flags=flags)
    except Exception as err:  # noqa: BLE001 - one line and an exit status for every error (partrobust.runs.errors)
        return report_exit(err)
    return exit_code(reports)


def exit_code(reports: list[RunReport]) -> int:
    """The batch's exit status from its runs' states: failed wins over refused, refused over busy."""
    states = {r.state for r in reports}
    return EXIT_FAILED if "failed" in states else EXIT_INPUT if "refused" in states else EXIT_BUSY if "busy" in states else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
