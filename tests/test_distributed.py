"""Several processes (gloo on the CPU): evaluation split across ranks gives the one-process result."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

from partrobust import distributed
from partrobust.evaluation import EvalConfig, evaluate

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
