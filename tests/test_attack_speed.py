"""Attacks that do less work for the same result: PGD without boolean-mask syncs and with early
stopping, AutoAttack's batch size from free GPU memory."""
import pytest
import torch
import torch.nn.functional as F
from partrobust.attacks import PGD, AutoAttack, eval_mode
from partrobust.attacks.autoattack import AUTO_BATCH_SIZE_OFF_CUDA, batch_size_for_memory, probe_per_sample_bytes
from partrobust.attacks.pgd import CrossEntropyObjective, WorstCase, cross_entropy_objective
from torch import nn

EPS = 8 / 255


class RowCounter(nn.Module):
    """Wraps a model and counts the rows (samples) of every forward pass."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.rows = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        return self.model(x)


@pytest.fixture(scope="module")
def task():
    """A small CNN (16x16 inputs, 10 classes) trained briefly on grey + class pattern + noise; 64 test images."""
    g = torch.Generator().manual_seed(0)
    patterns = torch.randn(10, 3, 16, 16, generator=g).sign()
    y = torch.randint(0, 10, (576,), generator=g)
    x = (0.5 + 0.1 * patterns[y] + 0.1 * torch.randn(576, 3, 16, 16, generator=g)).clamp(0, 1)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, stride=2), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(512, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(30):
        idx = torch.randint(0, 512, (64,))
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return RowCounter(model).eval(), x[512:], y[512:]


# ----------------------------------------------------------------------------- WorstCase without boolean masks
class BooleanMaskWorstCase(WorstCase):
    """The former `WorstCase` updates, by boolean-mask assignment: the reference."""

    def offer_iterate(self, x_adv, logits, y, index=None):
        if self.track_fooling:
            wrong = (logits.argmax(1) != y) & ~self.fooled
            self.best_x[wrong] = x_adv[wrong]
            self.fooled |= wrong

    def offer_final(self, x_adv, logits, y, score, index=None):
        wrong = (logits.argmax(1) != y) if self.track_fooling else torch.zeros_like(self.fooled)
        take = ~self.fooled & (wrong | (score > self.best_score))
        self.best_x[take] = x_adv[take]
        self.best_score = torch.where(take, score, self.best_score)
        self.fooled |= wrong


def random_offers(n: int, seed: int, count: int = 12):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    for k in range(count):
        logits = torch.randn(n, 3, generator=g) + 3 * F.one_hot(y, 3)  # mostly right: few fool per offer
        score = torch.randint(0, 4, (n,), generator=g).float()  # ties happen
        yield k % 3 == 2, torch.rand(n, 3, 5, 5, generator=g), logits, y, score


def assert_same_state(a: WorstCase, b: WorstCase) -> None:
    assert torch.equal(a.best_x, b.best_x) and torch.equal(a.best_score, b.best_score) and torch.equal(a.fooled, b.fooled)


@pytest.mark.parametrize("track_fooling", [True, False])
def test_worst_case_torch_where_equals_boolean_mask_assignment(track_fooling):
    x = torch.rand(40, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    ours, reference = WorstCase(x, track_fooling), BooleanMaskWorstCase(x, track_fooling)
    for final, x_adv, logits, y, score in random_offers(len(x), seed=1):
        for worst in (ours, reference):
            if final:
                worst.offer_final(x_adv, logits, y, score)
            else:
                worst.offer_iterate(x_adv, logits, y)
        assert_same_state(ours, reference)
    assert 0 < int(ours.fooled.sum()) < len(x) or not track_fooling


def test_worst_case_offers_for_a_subset_touch_only_its_rows():
    """An offer with `index` equals the same offer to the worst case of those rows alone."""
    x = torch.rand(40, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(2)
    ours = WorstCase(x)
    for final, x_adv, logits, y, score in random_offers(len(x), seed=3):
        index = torch.randperm(len(x), generator=g)[:15]
        alone = BooleanMaskWorstCase(x[index])
        alone.best_x, alone.best_score, alone.fooled = ours.best_x[index], ours.best_score[index], ours.fooled[index]
        before = (ours.best_x.clone(), ours.best_score.clone(), ours.fooled.clone())
        if final:
            ours.offer_final(x_adv[index], logits[index], y[index], score[index], index)
            alone.offer_final(x_adv[index], logits[index], y[index], score[index])
        else:
            ours.offer_iterate(x_adv[index], logits[index], y[index], index)
            alone.offer_iterate(x_adv[index], logits[index], y[index])
        assert torch.equal(ours.best_x[index], alone.best_x) and torch.equal(ours.best_score[index], alone.best_score)
        assert torch.equal(ours.fooled[index], alone.fooled)
        rest = torch.ones(len(x), dtype=torch.bool)
        rest[index] = False
        for now, then in zip((ours.best_x, ours.best_score, ours.fooled), before):
            assert torch.equal(now[rest], then[rest])


# ----------------------------------------------------------------------------- early-stopped PGD
def cross_entropy_without_select(labels: torch.Tensor):
    """Cross-entropy as a plain function: no ``select``, so PGD cannot early-stop on it."""
    objective = cross_entropy_objective(labels)
    return lambda model, x: objective(model, x)


def attack_both_ways(model, x, y, generator_seed=None, objective=cross_entropy_objective, **settings):
    """(x_adv, rows seen, global RNG state after, generator state after) with early_stop True and False."""
    out = {}
    for early_stop in (True, False):
        torch.manual_seed(5)
        model.rows = 0
        attack = PGD(**{"eps": EPS, "step_size": 1 / 255, **settings}, early_stop=early_stop)
        generator = None if generator_seed is None else torch.Generator().manual_seed(generator_seed)
        with eval_mode(model):
            x_adv = attack.run(model, x, y, objective(y), generator)
        out[early_stop] = (x_adv, model.rows, torch.get_rng_state(), None if generator is None else generator.get_state())
    return out


def fooled(model, x_adv, y):
    with torch.no_grad():
        return model(x_adv).argmax(1) != y


@pytest.mark.parametrize("restarts, generator_seed", [(1, None), (3, None), (3, 7)])
def test_early_stopped_pgd_equals_full_pgd(task, restarts, generator_seed):
    model, x, y = task
    out = attack_both_ways(model, x, y, generator_seed, cross_entropy_objective, steps=25, restarts=restarts)
    (early, early_rows, early_rng, early_gen), (full, full_rows, full_rng, full_gen) = out[True], out[False]
    broken = fooled(model, full, y)
    assert 0 < int(broken.sum()) < len(y), "the test needs both fooled and unfooled samples"
    assert torch.equal(fooled(model, early, y), broken)
    assert torch.equal(early, full), "same first fooling iterates and same worst cases"
    assert torch.equal(early_rng, full_rng), "the global random stream must not depend on early stopping"
    if generator_seed is not None:
        assert torch.equal(early_gen, full_gen)
    assert full_rows == restarts * 26 * len(y)  # 25 steps + the final scoring, per restart
    assert early_rows < full_rows


def test_early_stopped_pgd_call_restores_mode_and_leaves_no_grads(task):
    model, x, y = task
    model.train()
    torch.manual_seed(5)
    early = PGD(eps=EPS, step_size=1 / 255, steps=12, restarts=2)(model, x, y)
    assert model.training
    model.eval()
    torch.manual_seed(5)
    assert torch.equal(early, PGD(eps=EPS, step_size=1 / 255, steps=12, restarts=2, early_stop=False)(model, x, y))
    assert all(p.grad is None for p in model.parameters())


def test_early_stopped_pgd_stops_once_all_are_fooled(task):
    """At a large eps everything falls within a few steps: the later restarts only draw their noise."""
    model, x, y = task
    out = attack_both_ways(model, x, y, None, cross_entropy_objective, steps=25, restarts=3, eps=32 / 255, step_size=4 / 255)
    (early, early_rows, early_rng, _), (full, full_rows, full_rng, _) = out[True], out[False]
    assert fooled(model, full, y).all()
    assert torch.equal(early, full) and torch.equal(early_rng, full_rng)
    assert early_rows <= 10 * len(y) < full_rows  # nothing after the first compaction (step 10)


def test_objectives_without_select_and_the_training_attack_run_on_the_full_batch(task):
    model, x, y = task
    for objective, track_fooling in ((cross_entropy_without_select, True), (cross_entropy_objective, False)):
        out = attack_both_ways(model, x, y, None, objective, steps=12, restarts=2, track_fooling=track_fooling)
        assert torch.equal(out[True][0], out[False][0])
        assert out[True][1] == out[False][1] == 2 * 13 * len(y)


def test_cross_entropy_objective_select(task):
    model, x, y = task
    objective = cross_entropy_objective(y, targeted=True)
    assert isinstance(objective, CrossEntropyObjective)
    index = torch.tensor([3, 0, 7])
    logits, loss = objective.select(index)(model, x[index])
    full_logits, full_loss = objective(model, x)
    assert torch.allclose(logits, full_logits[index]) and torch.allclose(loss, full_loss[index])
    assert (loss <= 0).all(), "targeted: negated cross-entropy"


# ----------------------------------------------------------------------------- AutoAttack batch size
def test_batch_size_for_memory():
    gib = 2**30
    assert batch_size_for_memory(10 * gib, gib // 10) == 70
    assert batch_size_for_memory(10 * gib, gib // 10, fraction=0.5) == 50
    assert batch_size_for_memory(1000, 7, fraction=1.0) == 142  # floor(1000 / 7)
    assert batch_size_for_memory(100, 1000) == 1  # clamped to the minimum
    assert batch_size_for_memory(100, 1000, minimum=4) == 4
    assert batch_size_for_memory(10**12, 1) == 4096  # clamped to the maximum
    assert batch_size_for_memory(10**12, 1, maximum=512) == 512
    for bad in ({"free_bytes": 0}, {"per_sample_bytes": -1}, {"fraction": 0.0}, {"fraction": 1.5},
                {"minimum": 0}, {"minimum": 8, "maximum": 4}):
        with pytest.raises(ValueError):
            batch_size_for_memory(**{"free_bytes": gib, "per_sample_bytes": 1000, **bad})


def test_autoattack_auto_batch_size_off_cuda_is_128(task):
    model, x, y = task
    x, y = x[:24], y[:24]
    settings = {"eps": EPS, "seed": 0, "attacks": ["apgd-ce", "square"], "iterations": 5, "square_queries": 20, "progress": False}
    auto = AutoAttack(batch_size="auto", **settings).run(model, x, y)
    fixed = AutoAttack(batch_size=AUTO_BATCH_SIZE_OFF_CUDA, **settings).run(model, x, y)
    assert torch.equal(auto.x_adv, fixed.x_adv) and torch.equal(auto.robust, fixed.robust)
    assert auto.note == f"{fixed.note}; batch 128 (auto: not on CUDA, the former default)"
    with pytest.raises(ValueError, match="batch_size"):
        AutoAttack(batch_size="big")
    with pytest.raises(ValueError, match="batch_size"):
        AutoAttack(batch_size=0)


def test_autoattack_auto_batch_size_resumes_with_the_state_files_batch(task, tmp_path):
    """A resumed "auto" run keeps the batch of the run it resumes (its chunks and fingerprint)."""
    model, x, y = task
    x, y = x[:24], y[:24]
    settings = {"eps": EPS, "seed": 0, "attacks": ["apgd-ce"], "iterations": 3, "progress": False, "state_path": tmp_path / "aa.pt"}
    first = AutoAttack(batch_size=8, **settings).run(model, x, y)
    resumed = AutoAttack(batch_size="auto", **settings).run(model, x, y)
    assert torch.equal(resumed.robust, first.robust)
    assert resumed.note.endswith("batch 8 (auto, from the state file)")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_autoattack_auto_batch_size_on_cuda(task):
    model, x, y = task
    model, x, y = model.cuda(), x[:24].cuda(), y[:24].cuda()
    try:
        per_sample = probe_per_sample_bytes(model, x[0])
        assert per_sample > 0
        result = AutoAttack(eps=EPS, seed=0, batch_size="auto", attacks=["apgd-ce"], iterations=3, progress=False).run(model, x, y)
        assert "(auto, from free GPU memory)" in result.note
        assert all(p.grad is None for p in model.parameters())
    finally:
        model.cpu()
