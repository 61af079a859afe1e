"""Several processes (gloo on the CPU): evaluation split across ranks gives the one-process result."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
import yaml

from conftest import REPO, tiny_run_values
from partrobust.core import distributed
from partrobust.eval.config import EvalConfig
from partrobust.eval.evaluators import evaluate
from partrobust.core.results import gather_results
from partrobust.runs.run import Run
from partrobust.runs.runconfig import make_run_config, run_id

WORLD = 2
EVAL = EvalConfig(eps="2/255", pgd_steps=3, pgd_step_size=1 / 255, pgd_restarts=2, autoattack=True, autoattack_attacks=["apgd-ce", "apgd-t"],
                  autoattack_iterations=5, batch_size=4)


class ToyPartModel(torch.nn.Module):
    """A part model in the library's interface: masks from a conv, classes from a linear layer on them."""

    is_part_model = True

    def __init__(self) -> None:
        super().__init__()
        self.segmenter = torch.nn.Conv2d(3, 6, 3, padding=1)
        self.classifier = torch.nn.Linear(6 * 32 * 32, 4)

    def forward_with_parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seg = self.segmenter(x)
        return self.classifier(seg.flatten(1)), seg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_parts(x)[0]


def tiny_part_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return ToyPartModel().eval()


def tiny_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(18, 3, 32, 32, generator=generator)  # 5 batches of 4 (the last one short)
    masks = torch.randint(0, 6, (18, 32, 32), generator=generator)
    with torch.no_grad():  # labels the model gets right, so that the attacks have work on every rank
        y = tiny_part_model()(x).argmax(1)
    return x, masks, y


def _evaluate_worker(rank: int, world: int, init_file: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch_dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        dist = distributed.current()
        x, masks, y = tiny_data()
        rows, outcomes = evaluate(tiny_part_model(), x, masks, y, EVAL, state_dir=Path(out).parent, seed=3, progress=False,
                                  dist=dist)
        torch.save({"rows": rows, "outcomes": outcomes, "rank": dist.rank}, f"{out}.{rank}")
    finally:
        torch_dist.destroy_process_group()


def spawn(worker, *args) -> None:
    mp.start_processes(worker, args=(WORLD, *args), nprocs=WORLD, join=True, start_method="spawn")


@pytest.mark.slow
@pytest.mark.subprocess
def test_two_processes_evaluate_exactly_like_one(tmp_path):
    torch.set_num_threads(1)
    x, masks, y = tiny_data()
    rows, outcomes = evaluate(tiny_part_model(), x, masks, y, EVAL, state_dir=None, seed=3, progress=False)
    spawn(_evaluate_worker, str(tmp_path / "init"), str(tmp_path / "out.pt"))
    for rank in range(WORLD):
        other = torch.load(tmp_path / f"out.pt.{rank}", weights_only=False)
        assert other["rows"] == rows, "every rank reports the one-process numbers"
        for setting, outcome in outcomes.items():
            for key, values in outcome.items():
                assert torch.equal(other["outcomes"][setting][key], values), f"{setting} {key}: per-sample results differ"
    assert (tmp_path / "autoattack_state.pt").is_file(), "rank 0 writes the AutoAttack state"
    values = {r["metric"]: r["value"] for r in rows}
    assert values["clean_accuracy"] == 100 and 0 < values["autoattack_accuracy"] <= values["pgd_accuracy"] < 100


def test_the_single_process_dist_does_nothing():
    dist = distributed.SINGLE
    assert not dist.enabled and dist.is_main and list(dist.mine(3)) == [0, 1, 2]
    assert dist.merge({0: "a"}) == {0: "a"} and dist.sum([1, 2]) == [1.0, 2.0] and dist.broadcast(5) == 5
    split = [list(distributed.Dist(rank=r, world_size=3).mine(7)) for r in range(3)]
    assert sorted(sum(split, [])) == list(range(7)) and split[1] == [1, 4]


def kill_tree(pid: int) -> None:
    import psutil  # installed with ipykernel

    parent = psutil.Process(pid)
    processes = [*parent.children(recursive=True), parent]
    for process in processes:
        process.kill()
    psutil.wait_procs(processes, timeout=60)


def torchrun(*args: str, processes: int = WORLD) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", "-m", "partrobust.run",
            *args]


@pytest.mark.slow
@pytest.mark.subprocess
def test_torchrun_trains_resumes_with_one_process_and_evaluates_like_one(tiny_dataset, tmp_path):
    """2 gloo processes train a run and are killed mid-phase; 1 process resumes it; 2 processes then
    train and evaluate a second run, whose results equal a one-process evaluation of its weights."""
    values = tiny_run_values(tiny_dataset)
    values["train"] = {**values["train"], "epochs_clean": 6, "epochs_adv": 0}
    values["eval"] = {**values["eval"], "autoattack": True, "autoattack_attacks": ["apgd-ce"], "autoattack_iterations": 3,
                      "batch_size": 4}
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(values))
    runs = tmp_path / "runs"
    common = [str(config_file), "--runs-root", str(runs), "--experiment", "ddp"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    proc = subprocess.Popen(torchrun(*common), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    history = None
    while history is None or not history.read_text().strip():
        assert proc.poll() is None and time.time() < deadline, "the 2-process run ended before its first epoch was written"
        found = sorted(runs.glob("ddp/_train/*/history.jsonl"))
        history = found[0] if found else None
        time.sleep(0.05)
    kill_tree(proc.pid)  # the agent and its workers (torchrun starts them in sessions of their own)
    proc.wait()
    written = len(history.read_text().splitlines())
    assert 1 <= written < 6, "killed mid-phase"

    resumed = subprocess.run([sys.executable, "-m", "partrobust.run", *common], cwd=REPO, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"at epoch {written + 1}/6" in resumed.stdout + resumed.stderr, "one process resumes the 2-process checkpoint"
    epochs = [json.loads(line)["epoch"] for line in history.read_text().splitlines()]
    assert epochs == [1, 2, 3, 4, 5, 6]

    second = subprocess.run(torchrun(*common, "--set", "train.epochs_adv=1"), cwd=REPO, env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "on 2 processes, 8 images each per step" in second.stdout + second.stderr
    config = make_run_config(values, {"train.epochs_adv": 1})
    folder = runs / "ddp" / run_id(config)
    written_results = gather_results(folder).set_index("metric")["value"]
    assert json.loads((folder / "status.json").read_text())["state"] == "done"
    assert not list(folder.rglob(".*.tmp-*")), "no temporaries left by the other rank"

    run = Run(config, "ddp", runs, dist=distributed.SINGLE)
    run.train()  # reloads the selected weights the two processes wrote
    x, masks, y = run.test_set
    rows, _ = evaluate(run.model, x, masks, y, config.eval, state_dir=None, seed=config.seed, progress=False)
    assert {r["metric"]: r["value"] for r in rows} == pytest.approx(written_results.to_dict(), abs=1e-9)
