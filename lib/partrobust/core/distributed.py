"""Several processes on one run (``torchrun``): who this process is, and the few collectives the library uses.

    torchrun --nproc_per_node 4 -m partrobust.run CONFIG.yaml

`setup` reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), joins the
process group (NCCL on GPUs, gloo on CPUs) and returns a `Dist`; without torchrun it returns the
single-process `Dist` and nothing else changes. Work that is split across processes is split by
item index (``j % world_size == rank``: `Dist.owns`), and every item carries its own seed, so the
gathered result does not depend on the number of processes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class Dist:
    """This process's place among the processes of one run (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files (checkpoints, results, figures, status); the others only compute."""
        return self.rank == 0

    def owns(self, index: int) -> bool:
        """Whether item `index` of a split piece of work is this process's."""
        return index % self.world_size == self.rank

    def mine(self, count: int) -> Iterator[int]:
        """The indices of `count` items this process works on."""
        return iter(range(self.rank, count, self.world_size))

    def gather(self, obj: Any) -> list[Any]:
        """Every process's `obj` (picklable, CPU tensors inside), in rank order; ``[obj]`` alone."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch_dist.all_gather_object(out, obj)
        return out

    def merge(self, items: dict[int, Any]) -> dict[int, Any]:
        """{index: result} of all processes, from each process's share (`mine`)."""
        merged: dict[int, Any] = {}
        for part in self.gather(items):
            merged.update(part)
        return merged

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum of `values` over the processes (float64, so counts stay exact)."""
        if not self.enabled:
            return [float(v) for v in values]
        tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self._device())
        torch_dist.all_reduce(tensor)
        return tensor.cpu().tolist()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` in every process."""
        if not self.enabled:
            return obj
        box = [obj]
        torch_dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            torch_dist.barrier()

    def _device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if torch_dist.get_backend() == "nccl" else torch.device("cpu")


SINGLE = Dist()


def from_environment() -> Dist:
    """The `Dist` torchrun describes in the environment (the single process without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    return Dist(rank=int(os.environ["RANK"]), world_size=world, local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def setup(device: str = "auto") -> Dist:
    """Joins torchrun's process group (once) and returns this process's `Dist`.

    On CUDA (``device`` auto or cuda) each process takes the GPU of its local rank and the group
    uses NCCL; on CPU it uses gloo.
    """
    dist = from_environment()
    if not dist.enabled or torch_dist.is_initialized():
        return dist
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(dist.local_rank)
    torch_dist.init_process_group(backend="nccl" if cuda else "gloo", rank=dist.rank, world_size=dist.world_size)
    return dist


def teardown() -> None:
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def current() -> Dist:
    """The `Dist` of the joined process group (the single process if none was joined)."""
    if not torch_dist.is_initialized():
        return SINGLE
    return Dist(rank=torch_dist.get_rank(), world_size=torch_dist.get_world_size(),
                local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def item_seed(seed: int, index: int) -> int:
    """The seed of item `index` of a split piece of work (a batch of an attack)."""
    return (int(seed) * 1_000_003 + int(index)) % (2**63 - 1)
