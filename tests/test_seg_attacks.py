"""SegPGD (PGD on CE + segmentation loss, Table 12) and the two-stage attacks (Table 13)."""
import math

import pytest
import torch
from partrobust.attacks.pgd import PGD
from partrobust.attacks.seg_pgd import SegPGD, seg_sum_objective
from partrobust.attacks.two_stage import NO_TARGET, TwoStage, choose_targets, confidence_ranking, score_guide_masks
from partrobust.models import ModelConfig, build_model
from torch import nn

C, K, S = 3, 3, 16
EPS = 8 / 255
LN2 = math.log(2.0)


def tiny_part_model(**overrides) -> nn.Module:
    torch.manual_seed(0)
    values = dict(name="downsampled", num_classes=C, num_parts=K, encoder="tu-resnet10t", image_size=S)
    values.update(overrides)
    return build_model(ModelConfig(**values)).eval()


@pytest.fixture(scope="module")
def setup():
    """A tiny untrained part model; labels = its clean predictions (clean accuracy 100%).

    Its BatchNorm statistics are set from one batch: with the initial (0, 1) statistics the
    class logits hardly depend on the input and nothing could be attacked.
    """
    model = tiny_part_model()
    g = torch.Generator().manual_seed(1)
    for bn in model.modules():
        if isinstance(bn, nn.modules.batchnorm._BatchNorm):
            bn.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(torch.rand(32, 3, S, S, generator=g))
    model.eval()
    x = torch.rand(6, 3, S, S, generator=g)
    masks = torch.randint(0, K + 1, (6, S, S), generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    pool_masks = torch.randint(0, K + 1, (6, S, S), generator=g)
    pool_labels = torch.tensor([0, 0, 1, 1, 2, 2])
    return model, x, y, masks, pool_masks, pool_labels


def robust(model, x_adv, y):
    with torch.no_grad():
        return model(x_adv).argmax(1) == y


# ----------------------------------------------------------------------------- objective
class FixedPartModel(nn.Module):
    """Returns fixed (class logits, part logits), plus 0 * x so gradients exist."""

    is_part_model = True
    num_parts = 1

    def __init__(self, logits, seg_logits):
        super().__init__()
        self.logits, self.seg_logits = logits, seg_logits

    def forward_with_parts(self, x):
        zero = 0.0 * x.sum()
        return self.logits + zero, self.seg_logits + zero

    def forward(self, x):
        return self.forward_with_parts(x)[0]


def test_seg_sum_objective_hand_values():
    ln3 = math.log(3.0)
    logits = torch.tensor([[0.0, 0.0], [ln3, 0.0]])
    y = torch.tensor([0, 1])  # CE: ln 2, ln 4
    seg = torch.zeros(2, 2, 1, 2)
    seg[0, 0, 0, 1] = ln3  # sample 0: pixel a uniform (target 0): ln 2; pixel b p(1)=1/4: ln 4
    seg[1, 0, 0, 0] = ln3  # sample 1: pixel a p(0)=3/4: ln 4/3; pixel b unlabelled
    masks = torch.tensor([[[0, 1]], [[0, -1]]])
    model, x = FixedPartModel(logits, seg), torch.zeros(2, 3, 1, 2)
    ce = torch.tensor([LN2, 2 * LN2])
    seg_loss = torch.tensor([1.5 * LN2, math.log(4 / 3)])
    for c in (0.0, 0.3, 0.5, 1.0):
        out_logits, loss = seg_sum_objective(c, y, masks)(model, x)
        assert torch.equal(out_logits, logits)
        torch.testing.assert_close(loss, (1 - c) * ce + c * seg_loss)
    _, loss = seg_sum_objective(1.0, None, masks, targeted=True)(model, x)
    torch.testing.assert_close(loss, -seg_loss)
    _, loss = seg_sum_objective(0.0, y, None, targeted=True)(model, x)
    torch.testing.assert_close(loss, -ce)
    with pytest.raises(ValueError, match="c_seg"):
        seg_sum_objective(1.5, y, masks)
    with pytest.raises(ValueError, match="masks"):
        seg_sum_objective(0.5, y, None)


# ------------------------------------------------------------------------------- SegPGD
def test_seg_pgd_with_c_seg_zero_is_pgd_bit_for_bit(setup):
    model, x, y, masks, *_ = setup
    torch.manual_seed(3)
    plain = PGD(eps=EPS, step_size=2 / 255, steps=2, restarts=2)(model, x, y)
    torch.manual_seed(3)
    seg0 = SegPGD(eps=EPS, step_size=2 / 255, steps=2, restarts=2, c_seg=0.0)(model, x, y, masks)
    assert torch.equal(plain, seg0)
    torch.manual_seed(3)
    seg_half = SegPGD(eps=EPS, step_size=2 / 255, steps=2, restarts=2, c_seg=0.5)(model, x, y, masks)
    assert not torch.equal(plain, seg_half), "the segmentation term must change the attack"


def test_seg_pgd_budget_mode_and_grads(setup):
    model, x, y, masks, *_ = setup
    model.train()
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    running = bn.running_mean.clone()
    x_adv = SegPGD(eps=EPS, step_size=2 / 255, steps=2, c_seg=0.7)(model, x, y, masks)
    assert model.training
    model.eval()
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(running, bn.running_mean)
    assert (x_adv - x).abs().max().item() <= EPS + 1e-6
    assert x_adv.min().item() >= 0.0 and x_adv.max().item() <= 1.0
    assert not x_adv.requires_grad


def test_attacks_on_the_segmenter_ask_for_masks():
    assert SegPGD(c_seg=0.5).needs_masks and TwoStage("untargeted").needs_masks and not PGD().needs_masks


def test_seg_pgd_refuses_bad_inputs(setup):
    model, x, y, masks, *_ = setup
    attack = SegPGD(steps=1, c_seg=0.5)
    plain = nn.Sequential(nn.Flatten(), nn.Linear(3 * S * S, C))
    with pytest.raises(ValueError, match="part model"):
        attack(plain, x, y, masks)
    with pytest.raises(ValueError, match="shape"):
        attack(model, x, y, masks[:, :8])
    with pytest.raises(ValueError, match="shape"):
        attack(model, x, y, masks[:3])
    with pytest.raises(ValueError, match="integer"):
        attack(model, x, y, masks.float())
    with pytest.raises(ValueError, match="part ids"):
        attack(model, x, y, masks + 1)
    with pytest.raises(ValueError, match="c_seg"):
        SegPGD(c_seg=1.5)
    with pytest.raises(TypeError, match="c_seg"):
        SegPGD()


# ------------------------------------------------------------------------ guide choice
POOL_LABELS = torch.tensor([0, 1, 1, 2, 2, 2])  # class 0: {0}, class 1: {1, 2}, class 2: {3, 4, 5}
CLEAN = torch.tensor([[5.0, 1.0, 3.0], [2.0, 4.0, 9.0], [1.0, 0.0, 0.5]])
Y = torch.tensor([0, 2, 1])  # incorrect classes by confidence: [2, 1], [1, 0], [0, 2]
HEAD = torch.tensor([  # predicted class / its score per pool mask
    [0.10, 0.70, 0.20],  # 1 / .7
    [0.20, 0.50, 0.30],  # 1 / .5
    [0.60, 0.30, 0.10],  # 0 / .6
    [0.10, 0.10, 0.80],  # 2 / .8
    [0.05, 0.05, 0.90],  # 2 / .9
    [0.30, 0.60, 0.10],  # 1 / .6
])


def test_confidence_ranking():
    assert confidence_ranking(CLEAN, Y).tolist() == [[2, 1], [1, 0], [0, 2]]


def test_untargeted_has_no_targets():
    targets, guides = choose_targets("untargeted", CLEAN, Y, restarts=2)
    assert (targets == NO_TARGET).all() and (guides == NO_TARGET).all() and targets.shape == (3, 2)


def test_mc_sorted_by_hand():
    targets, guides = choose_targets("mc_sorted", CLEAN, Y, POOL_LABELS, HEAD, restarts=3)
    # head-predicted groups sorted by score: 0: [2]; 1: [0 (.7), 5 (.6), 1 (.5)]; 2: [4 (.9), 3 (.8)]
    assert targets.tolist() == [[2, 2, 2], [1, 1, 1], [0, 0, 0]]
    assert guides.tolist() == [[4, 3, 4], [0, 5, 1], [2, 2, 2]]
    # nothing predicted as class 2: sample 0 falls back to its next class, 1
    head = HEAD.clone()
    head[[3, 4], 2] = 0.0
    targets, guides = choose_targets("mc_sorted", CLEAN[:1], Y[:1], POOL_LABELS, head, restarts=2)
    assert targets.tolist() == [[1, 1]]
    assert guides.tolist() == [[0, 5]]  # 4 (now predicted 0 with .05) never joins class 1
    # sample 1 (true class 2) when the head predicts every mask as 2: no guide
    targets, guides = choose_targets("mc_sorted", CLEAN, Y, POOL_LABELS, torch.eye(C)[[2] * 6], restarts=2)
    assert targets.tolist() == [[2, 2], [NO_TARGET] * 2, [2, 2]]
    assert guides.tolist() == [[0, 1], [NO_TARGET] * 2, [0, 1]]
    # a mask with label -1 (no part labels) is never a guide
    labels = POOL_LABELS.clone()
    labels[0] = -1
    _, guides = choose_targets("mc_sorted", CLEAN[1:2], Y[1:2], labels, HEAD, restarts=2)
    assert guides.tolist() == [[5, 1]]
    with pytest.raises(ValueError, match="scores"):
        choose_targets("mc_sorted", CLEAN, Y, POOL_LABELS, None, restarts=3)


def test_mc_random_by_hand():
    g = torch.Generator().manual_seed(0)
    targets, guides = choose_targets("mc_random", CLEAN, Y, POOL_LABELS, restarts=3, generator=g)
    assert targets.tolist() == [[2, 2, 2], [1, 1, 1], [0, 0, 0]]
    assert sorted(guides[0].tolist()) == [3, 4, 5]  # 3 masks of class 2, without replacement
    assert set(guides[1].tolist()) <= {1, 2}  # fewer than 3: with replacement
    assert guides[2].tolist() == [0, 0, 0]
    again = choose_targets("mc_random", CLEAN, Y, POOL_LABELS, restarts=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again[1], guides)
    # no mask of class 2 in the pool: sample 0 falls back to class 1
    targets, guides = choose_targets("mc_random", CLEAN[:1], Y[:1], torch.tensor([0, 1, 1, 1, 1, 1]), restarts=5,
                                     generator=g)
    assert targets.tolist() == [[1] * 5] and sorted(guides[0].tolist()) == [1, 2, 3, 4, 5]


def test_random_never_true_class_and_seeded():
    y = torch.tensor([0, 1, 2, 1])
    logits = torch.zeros(4, C)
    targets, guides = choose_targets("random", logits, y, POOL_LABELS, restarts=300, generator=torch.Generator().manual_seed(0))
    assert (targets != y[:, None]).all()
    assert torch.equal(POOL_LABELS[guides], targets)
    for i in range(4):  # every incorrect class and every mask of it gets drawn
        assert set(targets[i].tolist()) == set(range(C)) - {int(y[i])}
        assert set(guides[i].tolist()) == {j for j in range(6) if POOL_LABELS[j] != y[i]}
    same = choose_targets("random", logits, y, POOL_LABELS, restarts=300, generator=torch.Generator().manual_seed(0))
    other = choose_targets("random", logits, y, POOL_LABELS, restarts=300, generator=torch.Generator().manual_seed(1))
    assert torch.equal(same[0], targets) and torch.equal(same[1], guides)
    assert not torch.equal(other[1], guides)
    # classes without a pool mask are skipped: y = 1, no class-2 mask -> always class 0, mask 0
    targets, guides = choose_targets("random", logits[:1], torch.tensor([1]), torch.tensor([0, 1, 1]), restarts=4)
    assert targets.tolist() == [[0] * 4] and guides.tolist() == [[0] * 4]
    # no mask of any incorrect class: no guide, the sample is attacked untargeted
    targets, guides = choose_targets("random", logits[:2], torch.tensor([1, 0]), torch.tensor([1, 1]), restarts=2)
    assert targets.tolist() == [[NO_TARGET] * 2, [1, 1]]
    assert guides[0].tolist() == [NO_TARGET] * 2 and set(guides[1].tolist()) <= {0, 1}


def test_choose_targets_refuses_bad_strategy():
    with pytest.raises(ValueError, match="unknown two-stage strategy"):
        choose_targets("2nd_gt_random", CLEAN, Y, POOL_LABELS)


# ---------------------------------------------------------------------------- two-stage
def test_score_guide_masks(setup):
    model, *_, pool_masks, _ = setup
    pool = pool_masks.clone()
    pool[0, :4] = -1  # unlabelled pixels get an all-zero one-hot
    scores = score_guide_masks(model, pool, batch_size=4)
    assert scores.shape == (6, C)
    torch.testing.assert_close(scores.sum(1), torch.ones(6))
    for kwargs in (dict(name="two_headed", image_size=32), dict(concat_input=True)):
        with pytest.raises(ValueError, match="cannot score masks"):
            score_guide_masks(tiny_part_model(**kwargs), pool)


def test_two_stage_never_weaker_than_stage_two_alone(setup):
    model, x, y, masks, pool_masks, pool_labels = setup
    budget = dict(eps=1 / 255, step_size=0.5 / 255, steps=2, restarts=2, seed=0)  # small: some samples survive
    broken_any = 0
    for strategy in ("untargeted", "random", "mc_random", "mc_sorted"):
        two = TwoStage(strategy, **budget).with_guides(pool_masks, pool_labels)
        alone = TwoStage(strategy, first_stage=False, **budget).with_guides(pool_masks, pool_labels)
        x_two, x_alone = two(model, x, y, masks), alone(model, x, y, masks)
        assert (x_two - x).abs().max().item() <= EPS + 1e-6 and 0.0 <= x_two.min() and x_two.max() <= 1.0
        robust_two, robust_alone = robust(model, x_two, y), robust(model, x_alone, y)
        assert not (robust_two & ~robust_alone).any(), strategy  # per sample, hence in accuracy
        assert robust_two.float().mean() <= robust_alone.float().mean()
        broken_any += int((~robust_two).sum())
    assert broken_any > 0, "the attacks must break something for the comparison to mean anything"


def test_two_stage_chains_stages_and_is_seeded(setup, monkeypatch):
    """Stage 2 starts at the stage-1 result (decision 7), never at a fresh random point."""
    model, x, y, masks, pool_masks, pool_labels = setup
    model.train()
    attack = TwoStage("random", eps=EPS, step_size=2 / 255, steps=1, restarts=2, seed=5, include_plain=False)
    attack = attack.with_guides(pool_masks, pool_labels)
    calls = []
    original = attack._pgd.ascend

    def spy(model_, x_, y_, objective, x_start, worst=None):
        out = original(model_, x_, y_, objective, x_start, worst)
        calls.append((x_start, out))
        return out

    monkeypatch.setattr(attack._pgd, "ascend", spy)
    first = attack(model, x, y, masks)
    assert model.training and all(p.grad is None for p in model.parameters())
    model.eval()
    assert len(calls) == 4  # (stage 1, stage 2) per restart
    assert not torch.equal(calls[0][0], x) and not torch.equal(calls[2][0], calls[0][0]), "stage 1: random starts"
    for (_, out1), (start2, _) in (calls[:2], calls[2:]):
        assert start2 is out1
    second = attack(model, x, y, masks)
    assert torch.equal(first, second), "same seed, same result"


def test_two_stage_refuses_bad_inputs(setup):
    model, x, y, masks, pool_masks, pool_labels = setup
    with pytest.raises(ValueError, match="unknown two-stage strategy"):
        TwoStage("most_confident")
    with pytest.raises(ValueError, match="restarts"):
        TwoStage("random", restarts=0)
    plain = nn.Sequential(nn.Flatten(), nn.Linear(3 * S * S, C))
    with pytest.raises(ValueError, match="part model"):
        TwoStage("untargeted", steps=1)(plain, x, y, masks)
    with pytest.raises(ValueError, match="shape"):
        TwoStage("untargeted", steps=1)(model, x, y, masks[:, :, :5])
    with pytest.raises(ValueError, match="with_guides"):
        TwoStage("mc_random", steps=1)(model, x, y, masks)
    with pytest.raises(ValueError, match="resolution"):
        TwoStage("mc_random", steps=1).with_guides(pool_masks[:, :8, :8], pool_labels)(model, x, y, masks)
    with pytest.raises(ValueError, match="guide labels"):
        TwoStage("mc_random").with_guides(pool_masks, pool_labels[:3])
    with pytest.raises(ValueError, match="cannot score masks"):
        TwoStage("mc_sorted", steps=1).with_guides(pool_masks, pool_labels)(tiny_part_model(concat_input=True), x, y, masks)


def test_two_stage_rows_state_that_each_number_is_the_minimum_of_two_attacks(setup):
    """``include_plain`` (stage 2 also from the clean image) is a deviation from the paper: the rows' note says so."""
    from partrobust.eval.config import EvalConfig
    from partrobust.eval.evaluators import evaluate

    model, x, y, masks, _, _ = setup
    cfg = EvalConfig(pgd_steps=2, pgd_restarts=1, autoattack=False, masking_checks=False, evaluators=["two_stage"],
                     two_stage_strategies=["untargeted"], batch_size=8)
    rows, _ = evaluate(model, x, masks, y, cfg, progress=False)
    notes = [r["note"] for r in rows if r["metric"].startswith("two_stage_untargeted")]
    assert notes and all("include_plain" in n and "minimum of the two-stage attack and that plain PGD" in n for n in notes), notes
    assert "include_plain" not in TwoStage("untargeted", include_plain=False).note()
