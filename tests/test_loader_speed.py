"""Loader speed-ups that must not change a batch: persistent, prefetching workers and splits preloaded
into memory before the workers fork (partrobust.data.loaders)."""
from __future__ import annotations

import random
import signal
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from partrobust.data import PartDataset
from partrobust.data import loaders as loaders_module
from partrobust.data.loaders import PRELOAD_MEMORY_FRACTION, LoaderConfig, PersistentTrainLoader, available_memory, build_loaders, should_preload

SMALL = {"crop_size": 32, "resize_size": 32, "batch_size": 8, "min_crop_scale": 0.5}


@pytest.fixture
def deadline() -> Iterator[None]:
    """Fails a test that starts worker processes instead of letting it hang."""
    def expire(signum: int, frame: object) -> None:
        raise TimeoutError("DataLoader workers took over 120 s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _epochs(loader: DataLoader, n: int) -> list[list[tuple[torch.Tensor, ...]]]:
    return [[tuple(batch) for batch in loader] for _ in range(n)]


def _assert_same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for epoch_a, epoch_b in zip(a, b):
        assert len(epoch_a) == len(epoch_b) > 0
        for batch_a, batch_b in zip(epoch_a, epoch_b):
            assert all(torch.equal(x, y) for x, y in zip(batch_a, batch_b))


def test_should_preload_rule() -> None:
    gib = 2**30
    assert should_preload(True, 0, 100 * gib, 0) and should_preload(True, 4, 100 * gib, gib)
    assert not should_preload(False, 4, 1, 100 * gib)
    assert not should_preload("auto", 0, 1, 100 * gib)  # no workers: the main process caches as it reads
    assert should_preload("auto", 2, 1 * gib, 8 * gib)
    assert not should_preload("auto", 2, 3 * gib, 8 * gib)
    limit = int(PRELOAD_MEMORY_FRACTION * 8 * gib)
    assert should_preload("auto", 2, limit - 1, 8 * gib) and not should_preload("auto", 2, limit, 8 * gib)
    assert not should_preload("auto", 2, 1, 0)  # available memory unknown
    if sys.platform == "linux":
        assert available_memory() > 0


def test_decoded_bytes_cache_and_threaded_preload(tiny_dataset: Path) -> None:
    ds = PartDataset(tiny_dataset, "train")
    assert ds.decoded_bytes() == len(ds) * (3 * 32 * 32 + 32 * 32)  # uint8 image + uint8 mask, all 32x32
    ds.preload(workers=3)
    fresh = PartDataset(tiny_dataset, "train", cache=False)
    for i in range(len(ds)):
        image, mask = ds._cache[i]
        assert image.dtype == torch.uint8 and mask.dtype == torch.uint8
        assert torch.equal(image, fresh._decode(i)[0]) and torch.equal(mask, fresh._decode(i)[1])
    assert ds.cache and not fresh.cache
    ds.cache = False
    assert ds._cache is None and ds.preload() is ds and ds._cache is None
    ds.cache = True
    assert ds._cache == [None] * len(ds)


def test_loader_options_and_auto_preload(tiny_dataset: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture) -> None:
    """No worker starts here: only the options and the preload decision are checked."""
    plain = build_loaders(str(tiny_dataset), LoaderConfig(**SMALL))
    for loader in plain.values():
        assert loader.num_workers == 0 and not loader.persistent_workers
        assert loader.dataset.cache and None in loader.dataset._cache  # filled as it is read
    loaders = build_loaders(str(tiny_dataset), LoaderConfig(**SMALL, num_workers=2, prefetch_factor=3))
    for loader in loaders.values():
        assert loader.num_workers == 2 and loader.persistent_workers and loader.prefetch_factor == 3
        assert None not in loader.dataset._cache  # "auto" preloaded the tiny splits
        if sys.platform == "linux":
            assert loader.multiprocessing_context.get_start_method() == "fork"
    assert isinstance(loaders["train"], PersistentTrainLoader) and len(loaders["train"]) == 40 // 8
    monkeypatch.setattr(loaders_module, "available_memory", lambda: 10_000)
    declined = build_loaders(str(tiny_dataset), LoaderConfig(**SMALL, num_workers=2))
    assert not any(loader.dataset.cache for loader in declined.values())
    assert capsys.readouterr().out.count("data.preload auto: not decoding") == 3
    forced = build_loaders(str(tiny_dataset), LoaderConfig(**SMALL, num_workers=2, preload=True))
    assert all(None not in loader.dataset._cache for loader in forced.values())
    assert capsys.readouterr().out == ""


def test_preloaded_workers_never_decode(tiny_dataset: Path, monkeypatch: pytest.MonkeyPatch, deadline: None) -> None:
    loaders = build_loaders(str(tiny_dataset), LoaderConfig(**SMALL, num_workers=2, preload=True))

    def refuse(self: PartDataset, index: int) -> None:
        raise AssertionError(f"a worker decoded {self.split} sample {index}")

    monkeypatch.setattr(PartDataset, "_decode", refuse)  # the workers fork after this
    for loader in loaders.values():
        for epoch in _epochs(loader, 2):  # the second epoch runs in the same (persistent) workers
            assert sum(len(labels) for _, _, labels in epoch) == len(loader) * 8


def test_same_batches_with_preload_workers_and_persistence(tiny_dataset: Path, deadline: None) -> None:
    """Preload on or off gives the same batches; val and test do not depend on the workers; the persistent
    train workers give the batches fresh workers gave before (shuffle and augmentations) every epoch."""
    on = build_loaders(str(tiny_dataset), LoaderConfig(**SMALL, num_workers=2, preload=True))
    off = build_loaders(str(tiny_dataset), LoaderConfig(**SMALL, num_workers=2, preload=False))
    none = build_loaders(str(tiny_dataset), LoaderConfig(**SMALL, num_workers=0))
    train = _epochs(on["train"], 3)
    _assert_same(train, _epochs(off["train"], 3))
    fresh = DataLoader(off["train"].dataset, batch_size=8, shuffle=True, drop_last=True, num_workers=2,
                       generator=torch.Generator().manual_seed(0))
    _assert_same(train, _epochs(fresh, 3))
    single = _epochs(none["train"], 3)  # augmentations differ (one RNG, not one per worker), not the order
    assert [[b[2].tolist() for b in e] for e in single] == [[b[2].tolist() for b in e] for e in train]
    for split in ("val", "test"):
        batches = _epochs(on[split], 2)
        _assert_same(batches, _epochs(off[split], 2))
        _assert_same(batches, _epochs(none[split], 2))


class _Draws(Dataset):
    """Each sample: one draw from each RNG a transform might use (Python's, numpy's, torch's)."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([index, random.random(), np.random.rand(), torch.rand(()).item()], dtype=torch.float64)


def test_persistent_workers_reseed_like_fresh_ones(deadline: None) -> None:
    """Every epoch (also after one abandoned midway) and after a resume from the generator's state."""
    def loader(persistent: bool, generator: torch.Generator) -> DataLoader:
        cls = PersistentTrainLoader if persistent else DataLoader
        return cls(_Draws(), batch_size=3, shuffle=True, num_workers=2, persistent_workers=persistent, generator=generator)

    def run(data: DataLoader, epochs: int, abandon_first: bool) -> list[list[torch.Tensor]]:
        out = []
        for epoch in range(epochs):
            batches = []
            for batch in data:
                batches.append(batch)
                if abandon_first and epoch == 0 and len(batches) == 2:
                    break
            out.append(batches)
        return out

    persistent = loader(True, torch.Generator().manual_seed(3))
    expected = run(loader(False, torch.Generator().manual_seed(3)), 3, abandon_first=True)
    got = run(persistent, 1, abandon_first=True)
    after_first = persistent.generator.get_state()
    got += run(persistent, 2, abandon_first=False)
    assert all(len(e) == n for e, n in zip(got, (2, 4, 4)))
    for epoch_got, epoch_expected in zip(got, expected):
        assert all(torch.equal(a, b) for a, b in zip(epoch_got, epoch_expected))
    resumed = loader(True, torch.Generator().set_state(after_first))
    for batch, again in zip(got[1], list(resumed), strict=True):
        assert torch.equal(batch, again)
