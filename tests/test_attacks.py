"""PGD, TRADES-KL and the AutoAttack adapter on small, quickly trained classifiers."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from partrobust.attacks import PGD, AutoAttack, TradesKL, build_attack, select_attacks
from partrobust.attacks.autoattack import FEW_CLASS_ATTACKS, STANDARD_ATTACKS

EPS = 8 / 255


def make_task(num_classes: int = 4, n: int = 512, seed: int = 0):
    """Images = grey + a faint class pattern + noise: easy to learn, easy to attack."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randn(num_classes, 3, 12, 12, generator=g).sign()
    y = torch.randint(0, num_classes, (n,), generator=g)
    x = (0.5 + 0.08 * patterns[y] + 0.05 * torch.randn(n, 3, 12, 12, generator=g)).clamp(0, 1)
    return x, y


def small_net(num_classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(256, num_classes),
    )


def train_undefended(num_classes: int = 4, seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    x, y = make_task(num_classes, seed=seed)
    model = small_net(num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        idx = torch.randint(0, len(x), (64,))
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    model.eval()
    return model, x[:128], y[:128]


@pytest.fixture(scope="module")
def trained():
    return train_undefended()


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_pgd_respects_budget_and_box(trained):
    model, x, y = trained
    x_adv = PGD(eps=EPS, step_size=2 / 255, steps=5, restarts=2)(model, x, y)
    assert (x_adv - x).abs().max().item() <= EPS + 1e-6
    assert x_adv.min().item() >= 0.0 and x_adv.max().item() <= 1.0
    assert not x_adv.requires_grad


@pytest.mark.parametrize("training", [True, False])
def test_pgd_restores_mode_and_leaves_no_parameter_grads(trained, training):
    model, x, y = trained
    model.train(training)
    PGD(steps=2)(model, x[:8], y[:8])
    assert model.training is training
    assert all(p.grad is None for p in model.parameters())
    model.eval()


def test_pgd_uses_eval_mode_batchnorm(trained):
    model, x, y = trained
    model.train()
    running = model[1].running_mean.clone()
    PGD(steps=2)(model, x[:8], y[:8])
    assert torch.equal(running, model[1].running_mean), "attack must not update BN statistics"
    model.eval()


def test_pgd_works_under_no_grad_but_not_inference_mode(trained):
    model, x, y = trained
    with torch.no_grad():
        x_adv = PGD(steps=3)(model, x[:16], y[:16])
    assert (x_adv != x[:16]).any()
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        PGD(steps=1)(model, x[:4], y[:4])


def test_pgd_breaks_undefended_model_at_large_eps(trained):
    model, x, y = trained
    clean = accuracy(model, x, y)
    assert clean > 0.9, f"the test classifier should learn the task (clean {clean:.2f})"
    noise = (x + torch.empty_like(x).uniform_(-32 / 255, 32 / 255).sign() * 32 / 255).clamp(0, 1)
    assert accuracy(model, noise, y) > 0.5, "random noise of the same size should not break it"
    x_adv = PGD(eps=32 / 255, step_size=4 / 255, steps=20)(model, x, y)
    assert accuracy(model, x_adv, y) < 0.05


def test_pgd_restarts_keep_per_sample_worst_case(trained):
    model, x, y = trained
    torch.manual_seed(1)
    one = PGD(eps=2 / 255, step_size=0.5 / 255, steps=3, restarts=1)(model, x, y)
    torch.manual_seed(1)  # the first restart of the longer run repeats the short run
    five = PGD(eps=2 / 255, step_size=0.5 / 255, steps=3, restarts=5)(model, x, y)
    with torch.no_grad():
        fooled_one = model(one).argmax(1) != y
        fooled_five = model(five).argmax(1) != y
    assert (fooled_five | ~fooled_one).all(), "a sample broken by restart 1 must stay broken"
    assert fooled_five.sum() >= fooled_one.sum()


def test_trades_attack_increases_kl(trained):
    model, x, _ = trained
    x_adv = TradesKL(eps=EPS, step_size=2 / 255, steps=5)(model, x)
    assert (x_adv - x).abs().max().item() <= EPS + 1e-6
    noise = (x + torch.empty_like(x).uniform_(-EPS, EPS)).clamp(0, 1)
    with torch.no_grad():
        p = F.log_softmax(model(x), 1)

        def kl(z):
            return F.kl_div(F.log_softmax(model(z), 1), p, log_target=True, reduction="batchmean").item()

        assert kl(x_adv) > 2 * kl(noise)


def test_attack_registry():
    assert isinstance(build_attack("pgd", steps=3), PGD)
    with pytest.raises(KeyError, match="known attacks"):
        build_attack("fgsm-typo")
    with pytest.raises(ValueError, match="eps"):
        PGD(eps=8.0)


def test_attack_selection_for_few_classes():
    attacks, note = select_attacks(2)
    assert attacks == list(FEW_CLASS_ATTACKS) and "C=2" in note
    assert select_attacks(11)[0] == list(STANDARD_ATTACKS)
    assert "n_target_classes=4" in select_attacks(5)[1]
    with pytest.raises(ValueError, match="at least 4 classes"):
        select_attacks(3, ["apgd-ce", "apgd-t"])


@pytest.mark.slow
def test_autoattack_adapter_agrees_with_pyautoattack(trained):
    from pyautoattack import AutoAttack as PyAutoAttack

    model, x, y = trained
    x, y = x[:32], y[:32]
    ours = AutoAttack(eps=EPS, seed=0, batch_size=64, progress=False).run(model, x, y)
    direct = PyAutoAttack(model, eps=EPS, seed=0, version="standard")
    direct.apgd_targeted.n_target_classes = 3
    direct.fab.n_target_classes = 3
    x_direct, _ = direct.run_standard_evaluation(x, y, batch_size=64)
    with torch.no_grad():
        robust_direct = model(x_direct).argmax(1) == y
    assert torch.equal(ours.robust, robust_direct)
    assert ours.robust_accuracy < accuracy(model, x, y)
    assert (ours.x_adv - x).abs().max().item() <= EPS + 1e-5
    assert list(ours.robust_after) == list(STANDARD_ATTACKS)


def test_autoattack_reduced_budget_equals_attacks_built_with_it(trained):
    """set_budget must leave pyautoattack's attacks as if constructed with the smaller budget
    (APGD derives its step-size checkpoints from n_iter in its constructor)."""
    from pyautoattack import AutoAttack as PyAutoAttack
    from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted

    from partrobust.attacks.autoattack import set_budget

    model, x, y = trained
    x, y = x[:32], y[:32]
    adversary = PyAutoAttack(model, eps=EPS, seed=0, version="standard")
    set_budget(adversary, 12, 300)
    for ours, fresh in ((adversary.apgd, APGDAttack(model, n_iter=12, eps=EPS)), (adversary.apgd_targeted, APGDAttack_targeted(model, n_iter=12, eps=EPS))):
        for name in ("n_iter", "n_iter_orig", "n_iter_2", "n_iter_min", "size_decr"):
            assert getattr(ours, name) == getattr(fresh, name), name
    assert (adversary.fab.n_iter, adversary.square.n_queries) == (12, 300)

    result = AutoAttack(eps=EPS, seed=0, batch_size=64, attacks=["apgd-ce", "apgd-t"], iterations=12, progress=False).run(model, x, y)
    direct = PyAutoAttack(model, eps=EPS, seed=0, version="custom", attacks=["apgd-ce", "apgd-t"])
    direct.apgd = APGDAttack(model, n_restarts=1, n_iter=12, eps=EPS, norm="Linf", eot_iter=1, rho=.75, seed=0, device=x.device)
    direct.apgd_targeted = APGDAttack_targeted(model, n_restarts=1, n_iter=12, eps=EPS, norm="Linf", eot_iter=1, rho=.75, seed=0,
                                               device=x.device)
    direct.apgd_targeted.n_target_classes = 3
    x_direct, _ = direct.run_standard_evaluation(x, y, batch_size=64)
    with torch.no_grad():
        assert torch.equal(result.robust, model(x_direct).argmax(1) == y)
    assert "reduced budget: 12 APGD/FAB iterations" in result.note
    assert "reduced" not in AutoAttack(eps=EPS, progress=False).budget_note
    with pytest.raises(ValueError, match="iterations"):
        AutoAttack(iterations=0)


def test_autoattack_clean_correct_is_not_overwritten_by_the_robust_mask():
    """On a CPU ``.cpu()`` returns the same tensor: the robust mask once aliased clean_correct, so
    clean accuracy read from the result silently became the robust accuracy."""
    model, x, y = train_undefended(num_classes=4, seed=2)
    x, y = x[:24], y[:24]
    result = AutoAttack(eps=0.3, seed=0, batch_size=24, attacks=["apgd-ce"], progress=False).run(model, x, y)
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    assert result.clean_correct.data_ptr() != result.robust.data_ptr()
    assert torch.equal(result.clean_correct, clean)
    assert result.robust.sum() < result.clean_correct.sum(), "the attack must break some points for the test to mean anything"


@pytest.mark.slow
def test_autoattack_resumes_after_interruption(tmp_path, monkeypatch):
    import pyautoattack

    model, x, y = train_undefended(num_classes=3, seed=1)
    x, y = x[:40], y[:40]
    full = AutoAttack(eps=EPS, seed=0, batch_size=8, progress=False).run(model, x, y)
    assert full.attacks == list(FEW_CLASS_ATTACKS)

    original = pyautoattack.AutoAttack.run_standard_evaluation
    calls = {"n": 0}

    def dying(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated kill")
        return original(self, *args, **kwargs)

    state = tmp_path / "aa_state.pt"
    monkeypatch.setattr(pyautoattack.AutoAttack, "run_standard_evaluation", dying)
    with pytest.raises(KeyboardInterrupt):
        AutoAttack(eps=EPS, seed=0, batch_size=8, state_path=state, progress=False).run(model, x, y)
    assert state.exists()
    monkeypatch.setattr(pyautoattack.AutoAttack, "run_standard_evaluation", original)
    resumed = AutoAttack(eps=EPS, seed=0, batch_size=8, state_path=state, progress=False).run(model, x, y)
    assert torch.equal(resumed.robust, full.robust)

    with pytest.raises(ValueError, match="belongs to another evaluation"):
        AutoAttack(eps=4 / 255, seed=0, batch_size=8, state_path=state, progress=False).run(model, x, y)
