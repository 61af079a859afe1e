"""Runs as data: one folder per config, refusal of foreign checkpoints, resumable and parallel sweeps, scoped precision."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import partrobust.eval.evaluators as evaluators
import partrobust.runs.run as run_module
import partrobust.train.loop as training
import pytest
import torch
import yaml
from conftest import REPO, tiny_run_values
from partrobust.data.loaders import LoaderConfig, build_loaders
from partrobust.models import ModelConfig, build_model
from partrobust.core.results import gather_results
from partrobust.runs.pipeline import main as pipeline_main
from partrobust.runs.run import Run, execute_run
from partrobust.runs.run import main as run_main
from partrobust.runs.runconfig import identity, make_run_config, run_id
from partrobust.train.loop import ConfigMismatchError, TrainConfig, fit


def tiny_config(dataset: Path, **overrides):
    return make_run_config(tiny_run_values(dataset), overrides)


def write_plan(path: Path, dataset: Path, sweep, experiment: str = "sweep") -> Path:
    plan = {"experiment": experiment, "config": tiny_run_values(dataset), "sweep": sweep}
    path.write_text(yaml.safe_dump(plan))
    return path


def pipeline(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "partrobust.pipeline", *args], cwd=REPO, capture_output=True, text=True, **kwargs)


@pytest.mark.slow
def test_finished_run_is_not_redone_and_a_changed_config_is_refused(tiny_dataset, tmp_path, monkeypatch, capsys):
    config = tiny_config(tiny_dataset)
    run = execute_run(config, "exp", tmp_path)
    assert run.dir == tmp_path / "exp" / run_id(config) and run.done
    assert {p.name for p in run.dir.iterdir()} >= {"config.yaml", "run.json", "status.json", "results.csv", "manifest.json", "train", "figures"}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run must not train again")

    monkeypatch.setattr(training, "fit_phase", no_training)
    execute_run(config, "exp", tmp_path)
    assert "already finished" in capsys.readouterr().out

    # The same folder under another config (an explicit --run-dir) is refused, naming the changed keys.
    code = run_main([str(run.dir / "config.yaml"), "--set", "train.lr=0.05", "--set", "seed=3", "--run-dir", str(run.dir)])
    err = capsys.readouterr().err
    assert code == 2 and "train.lr: 0.1 -> 0.05" in err and "seed: 0 -> 3" in err
    # Runtime keys may change: same run, nothing to do.
    assert run_main([str(run.dir / "config.yaml"), "--set", "data.num_workers=1", "--experiment", "exp", "--runs-root", str(tmp_path)]) == 0


@pytest.mark.slow
def test_checkpoint_written_by_another_config_is_not_resumed(tiny_dataset, tmp_path):
    """fit() itself refuses a last.pt whose recorded config differs (e.g. a reused folder)."""
    loaders = build_loaders(str(tiny_dataset), LoaderConfig(crop_size=32, resize_size=32, batch_size=16, train_limit=16), seed=0)
    model = build_model(ModelConfig(name="downsampled", num_classes=4, num_parts=14, encoder="tu-resnet10t", image_size=32))
    cfg = TrainConfig(epochs_clean=1, epochs_adv=0, val_limit=16)
    first = identity(tiny_config(tiny_dataset))
    fit(model, loaders["train"], loaders["val"], cfg, tmp_path, torch.device("cpu"), fingerprint=first, progress=False)
    (tmp_path / "clean" / "last.pt").replace(tmp_path / "clean" / "keep.pt")
    state = torch.load(tmp_path / "clean" / "keep.pt", weights_only=False)
    state["epoch"] = 0  # make it resumable
    torch.save(state, tmp_path / "clean" / "last.pt")
    changed = identity(tiny_config(tiny_dataset, **{"train.c_seg": 0.9}))
    with pytest.raises(ConfigMismatchError, match=r"train\.c_seg: 0\.5 -> 0\.9"):
        fit(model, loaders["train"], loaders["val"], cfg, tmp_path, torch.device("cpu"), fingerprint=changed, progress=False)


@pytest.mark.slow
def test_training_precision_is_scoped_and_evaluation_runs_in_fp32(tiny_dataset, tmp_path, monkeypatch):
    seen = {}
    original_epoch, original_eval = training.train_one_epoch, evaluators._evaluate

    def flags():
        return torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision

    def recording_epoch(*args, **kwargs):
        seen["train"] = flags()
        return original_epoch(*args, **kwargs)

    def recording_eval(*args, **kwargs):
        seen["eval"] = flags()
        return original_eval(*args, **kwargs)

    original_predict = run_module.predict

    def recording_predict(*args, **kwargs):
        seen["figures"] = flags()
        return original_predict(*args, **kwargs)

    monkeypatch.setattr(training, "train_one_epoch", recording_epoch)
    monkeypatch.setattr(evaluators, "_evaluate", recording_eval)
    monkeypatch.setattr(run_module, "predict", recording_predict)
    before = flags()
    execute_run(tiny_config(tiny_dataset, **{"train.tf32": True}), "exp", tmp_path)
    assert seen["train"] == ("tf32", "tf32"), "TF32 inside training"
    assert seen["eval"] == ("ieee", "ieee"), "evaluation in full fp32 after a TF32 training"
    assert seen["figures"] == ("ieee", "ieee"), "the mask panel's predictions too"
    assert flags() == before, "settings restored after the run"


@pytest.mark.slow
@pytest.mark.subprocess
def test_killed_sweep_resumes_and_a_failing_run_does_not_stop_the_others(tiny_dataset, tmp_path, monkeypatch, capsys):
    params = write_plan(tmp_path / "sweep.yaml", tiny_dataset, [
        {"grid": {"seed": [1, 2, 3]}, "set": {"train.epochs_clean": 2}},
        {"set": {"seed": 4, "train.lr": 1e30}},  # valid input that diverges: fails while training (bad input is refused up front)
    ])
    runs = tmp_path / "runs"
    args = [str(params), "--runs-root", str(runs), "--runner", "process"]
    second = runs / "sweep" / run_id(tiny_config(tiny_dataset, seed=2, **{"train.epochs_clean": 2}))

    proc = subprocess.Popen([sys.executable, "-m", "partrobust.pipeline", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not (second / "train" / "clean" / "last.pt").exists():
        assert proc.poll() is None and time.time() < deadline, "the sweep ended before its second run checkpointed"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # kill the batch and its runs, mid-run 2
    proc.wait()
    assert json.loads((second / "status.json").read_text())["state"] == "running"
    assert not (second / "results.csv").exists()

    done = pipeline(*args, timeout=600)
    assert done.returncode == 1, done.stdout + done.stderr  # one run failed
    summary = done.stdout
    states = {line.split()[0]: line.split()[1] for line in summary.splitlines() if line.startswith(("bbox-", "resnet-"))}
    assert sorted(states.values()) == ["done", "done", "failed", "skipped"], summary
    assert states[second.name] == "done"
    assert "resuming" in (second / "log.txt").read_text(), "run 2 continued from its checkpoint"
    history = [json.loads(line) for line in (second / "train" / "clean" / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2]
    failed = [line for line in summary.splitlines() if line.startswith("bbox-") and " failed " in line]
    assert len(failed) == 1 and "FloatingPointError" in failed[0], summary
    results = gather_results(runs / "sweep")
    assert sorted(results.seed.unique()) == [1, 2, 3]

    monkeypatch.chdir(REPO)  # the listing in this process (the same command's main)
    assert pipeline_main([*args, "--dry-run"]) == 0
    listing = capsys.readouterr().out
    statuses = [line.split()[-1] for line in listing.splitlines() if line.startswith(("bbox-", "resnet-"))]
    assert sorted(statuses) == ["done", "done", "done", "failed"], listing


@pytest.mark.slow
@pytest.mark.subprocess
def test_runs_finishing_together_lose_no_rows(tiny_dataset, tmp_path):
    params = write_plan(tmp_path / "par.yaml", tiny_dataset, {"grid": {"seed": [1, 2]}}, experiment="par")
    done = pipeline(str(params), "--runs-root", str(tmp_path / "runs"), "--runner", "process", "--jobs", "2", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    results = gather_results(tmp_path / "runs" / "par")
    per_run = results.groupby("run_id").size()
    assert len(per_run) == 2 and per_run.nunique() == 1 and per_run.iloc[0] >= 4


def test_run_checks_its_inputs_before_any_compute(tiny_dataset, tmp_path):
    from partrobust.core.config import ParameterError
    from partrobust.data.prepared import PreparedDatasetError

    with pytest.raises(PreparedDatasetError, match="does not exist"):
        Run(tiny_config(tmp_path / "nowhere"), "exp", tmp_path)
    with pytest.raises(ParameterError, match=r"model\.pretrained_encoder: weights file .*missing\.pt"):
        Run(tiny_config(tiny_dataset, **{"model.pretrained_encoder": str(tmp_path / "missing.pt")}), "exp", tmp_path)
    with pytest.raises(PreparedDatasetError, match="-object"):
        Run(tiny_config(tiny_dataset, **{"data.labels": "object"}), "exp", tmp_path)


@pytest.mark.slow
@pytest.mark.notebook
def test_a_run_failing_in_its_notebook_reports_the_cell(tiny_dataset, tmp_path):
    from partrobust.runs.run import RunFailed, execute_run_notebook

    config = tiny_config(tiny_dataset, **{"train.lr": 1e30})  # valid input that diverges in the training cell
    with pytest.raises(RunFailed, match=r"failed in cell \[\d+\], at: .*\n.*\n  executed notebook: .*01_pgd_training\.ipynb") as err:
        execute_run_notebook(config, "exp", tmp_path, stream=False)
    status = json.loads((tmp_path / "exp" / run_id(config) / "status.json").read_text())
    assert status["state"] == "failed" and status["cell"] >= 1 and status["notebook"].endswith("01_pgd_training.ipynb")
    assert status["error"].startswith("FloatingPointError") and "non-finite loss" in str(err.value)
    assert "rerun: python -m partrobust.run" in str(err.value)


@pytest.mark.slow
def test_runs_share_the_training_phases_they_have_in_common(tiny_dataset, tmp_path, monkeypatch):
    """A TRADES beta sweep trains its clean phase once; an eval-only change trains nothing."""
    epochs = []
    original = training.train_one_epoch

    def counting(model, loader, optimizer, method, *args, **kwargs):
        epochs.append(method)
        return original(model, loader, optimizer, method, *args, **kwargs)

    monkeypatch.setattr(training, "train_one_epoch", counting)
    first = execute_run(tiny_config(tiny_dataset, **{"train.method": "trades", "train.beta": 1.0}), "exp", tmp_path)
    assert epochs == ["normal", "trades"]
    second = execute_run(tiny_config(tiny_dataset, **{"train.method": "trades", "train.beta": 3.0}), "exp", tmp_path)
    assert epochs == ["normal", "trades", "trades"], "the second beta reuses the clean phase"
    third = execute_run(tiny_config(tiny_dataset, **{"train.method": "trades", "train.beta": 3.0, "eval.eps": "16/255"}), "exp", tmp_path)
    assert epochs == ["normal", "trades", "trades"], "another evaluation eps trains nothing"
    assert len({first.id, second.id, third.id}) == 3
    assert (second.dir / "train" / "clean").resolve() == (first.dir / "train" / "clean").resolve()
    assert (third.dir / "train" / "trades").resolve() == (second.dir / "train" / "trades").resolve()
    results = gather_results(tmp_path / "exp")
    assert sorted(round(e * 255) for e in results.eps.unique()) == [8, 16] and results.run_id.nunique() == 3


def test_listing_reads_progress_without_loading_checkpoints(tmp_path):
    from partrobust.runs.rundir import describe_progress, locked, read_status, write_status

    run_dir = tmp_path / "run"
    assert describe_progress(run_dir) == "new"
    (run_dir / "train" / "clean").mkdir(parents=True)
    with locked(run_dir):
        write_status(run_dir, "running")
        assert describe_progress(run_dir) == "started"
    assert read_status(run_dir)["state"] == "interrupted", "running, but nobody holds the lock: a dead or interrupted holder"
    assert describe_progress(run_dir) == "interrupted"
    (run_dir / "train" / "clean" / "history.jsonl").write_text('{"epoch": 1}\n{"epoch": 2}\n')
    (run_dir / "train" / "clean" / "last.pt").write_bytes(b"not read by a listing")
    assert describe_progress(run_dir) == "interrupted (clean epoch 2)"
    with locked(run_dir):
        assert describe_progress(run_dir) == "partial (clean epoch 2)"
    write_status(run_dir, "failed", error="x")
    assert describe_progress(run_dir) == "failed"


def test_the_lock_belongs_to_the_run_object(tiny_dataset, tmp_path, monkeypatch):
    """A KeyboardInterrupt in a step marks the run interrupted and releases its lock; a newer Run of the same folder
    in this process (a rerun notebook cell) takes the lock over; another process is refused while it is held; a
    garbage-collected Run lets go of it."""
    import gc

    from partrobust.runs.rundir import lock_held, read_status

    config = tiny_config(tiny_dataset)
    first = Run(config, "exp", tmp_path).start()
    assert read_status(first.dir)["state"] == "running" and lock_held(first.dir)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        first.train()
    assert read_status(first.dir)["state"] == "interrupted" and not lock_held(first.dir)
    monkeypatch.undo()

    second = Run(config, "exp", tmp_path).start()  # the interrupted cell rerun in the same kernel
    third = Run(config, "exp", tmp_path).start()  # the start cell rerun while `second` still holds the lock
    assert second._stack is None and third._stack is not None and read_status(third.dir)["state"] == "running"
    probe = ("import sys; from pathlib import Path; from partrobust.runs.rundir import locked, RunBusyError\n"
             "try:\n    locked(Path(sys.argv[1])).__enter__()\nexcept RunBusyError:\n    sys.exit(3)")
    assert subprocess.run([sys.executable, "-c", probe, str(third.dir)]).returncode == 3, "another process is refused"
    del third
    gc.collect()
    assert not lock_held(first.dir) and read_status(first.dir)["state"] == "interrupted"
