"""Sweeps through submitit (its local executor stands in for SLURM): jobs, a killed job resubmitted, results gathered."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, tiny_run_values, train_in_process
from partrobust.core.config import ParameterError
from partrobust.runs.launcher import LauncherConfig, launcher_config
from partrobust.runs.pipeline import run
from partrobust.core.results import gather_results
from partrobust.runs.runconfig import make_run_config, run_id


def write_plan(path: Path, dataset: Path, launcher: dict) -> Path:
    values = tiny_run_values(dataset)
    values["train"] = {**values["train"], "epochs_clean": 3, "epochs_adv": 0}
    plan = {"experiment": "jobs", "config": values, "sweep": {"grid": {"seed": [1, 2, 3]}}, "launcher": launcher}
    path.write_text(yaml.safe_dump(plan))
    return path


def test_launcher_settings_come_from_the_file_then_the_flags():
    cfg = launcher_config({"partition": "gpu", "gpus_per_node": 4, "setup": ["module load cuda"]}, {"gpus_per_node": 2, "mem_gb": None})
    assert (cfg.partition, cfg.gpus_per_node, cfg.mem_gb, cfg.setup) == ("gpu", 2, LauncherConfig().mem_gb, ["module load cuda"])
    with pytest.raises(ParameterError, match="launcher: timeout_min"):
        launcher_config({"timeout_min": 0})
    with pytest.raises(ParameterError, match="launcher: nodes"):
        launcher_config({"nodes": 2})


@pytest.mark.slow
@pytest.mark.subprocess
def test_submitit_jobs_a_killed_job_is_resubmitted_and_every_result_gathered(tiny_dataset, tmp_path):
    """One real job: seeds 1 and 3 finished before (trained in this process), so they submit no job; the job of
    seed 2 is killed after its first epoch, resubmitted, resumes from its checkpoint, and all three results are gathered."""
    import psutil  # installed with ipykernel

    params = write_plan(tmp_path / "jobs.yaml", tiny_dataset, {"gpus_per_node": 0, "cpus_per_task": 1, "mem_gb": 1,
                                                                "timeout_min": 30, "poll_s": 0.5})
    runs = tmp_path / "runs"
    victim = runs / "jobs" / run_id(make_run_config(tiny_run_values(tiny_dataset), {"seed": 2, "train.epochs_clean": 3,
                                                                                      "train.epochs_adv": 0}))
    finished = {run_id(make_run_config(tiny_run_values(tiny_dataset), {"seed": seed, "train.epochs_clean": 3, "train.epochs_adv": 0}))
                for seed in (1, 3)}
    assert sorted(train_in_process(params, runs, finished)) == sorted(finished)
    proc = subprocess.Popen([sys.executable, "-m", "partrobust.pipeline", str(params), "--runs-root", str(runs),
                             "--launcher", "submitit-local"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not (victim / "train" / "clean" / "last.pt").exists():  # the victim's job has trained an epoch
        assert proc.poll() is None and time.time() < deadline, "the sweep ended before run 2 checkpointed"
        time.sleep(0.05)
    runners = [p for p in psutil.process_iter(["cmdline"]) if str(victim / "config.yaml") in " ".join(p.info["cmdline"] or [])]
    assert len(runners) == 1, "one process trains the run"
    job = runners[0].parent()  # the submitit job; the run dies with it
    job.kill()
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    assert f"{victim.name}: job" in out and "resubmitting" in out and "(resubmission 1)" in out, out
    assert out.count(": job ") == 3, "one job, killed (its line says so), then resubmitted once: " + out
    assert not any(f"{rid}: job" in out for rid in finished), "finished runs submit no job"
    assert "resuming" in (victim / "log.txt").read_text(), "the resubmitted job continued from the checkpoint"
    results = gather_results(runs / "jobs")
    assert sorted(results.seed.unique()) == [1, 2, 3] and results.run_id.nunique() == 3
    assert {"clean_accuracy", "pgd_accuracy"} <= set(results.metric)

    again = run(params, runs_root=runs, launcher="submitit-local", progress=False, repo=REPO)
    assert [r.state for r in again] == ["skipped"] * 3, "finished runs submit no job"
