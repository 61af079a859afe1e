"""Speed switches (partrobust.train.speed, train.attack_precision): same results as the plain fp32 eager path."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import tiny_run_values
from partrobust.attacks import PGD
from partrobust.data.loaders import LoaderConfig, build_loaders
from partrobust.models import ModelConfig, build_model
from partrobust.models.heads import pool_to
from partrobust.runs.runconfig import make_run_config, phase_id, run_id
from partrobust.train.speed import PLAIN, Speed, SpeedConfig, apply_speed, compile_report, resolve_speed, speed_settings
from partrobust.train.loop import TrainConfig, attack_precision, fit, training_loss
from partrobust.core.seeding import seed_everything

COMPILED = Speed(compile=True, compile_backend="aot_eager")  # inductor needs minutes of C++ compiling on a CPU
SWITCHES = [Speed(channels_last=True), Speed(cudnn_benchmark=True), COMPILED, Speed(channels_last=True, cudnn_benchmark=True, compile=True,
                                                                                     compile_backend="aot_eager")]


def _model() -> nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(name="downsampled", num_classes=4, num_parts=14, encoder="tu-resnet10t")).eval()


def test_auto_turns_switches_on_for_cuda_only():
    auto = SpeedConfig()
    assert resolve_speed(auto, torch.device("cpu")) == PLAIN
    on_gpu = resolve_speed(auto, torch.device("cuda", 0))
    assert on_gpu.channels_last and on_gpu.cudnn_benchmark and not on_gpu.compile
    forced = resolve_speed(SpeedConfig(channels_last=True, cudnn_benchmark=False, compile=True), torch.device("cpu"))
    assert forced == Speed(channels_last=True, compile=True)
    assert forced.describe() == "channels_last, compile(default, inductor)" and PLAIN.describe() == "plain"
    with pytest.raises(ValueError, match="channels_last"):
        SpeedConfig(channels_last="yes")


def test_cudnn_benchmark_is_set_inside_and_restored():
    before = torch.backends.cudnn.benchmark
    with speed_settings(Speed(cudnn_benchmark=not before)):
        assert torch.backends.cudnn.benchmark is (not before)
    assert torch.backends.cudnn.benchmark is before


@pytest.mark.parametrize("speed", SWITCHES, ids=lambda s: s.describe())
def test_switch_gives_the_same_predictions_and_pgd_result(speed):
    plain, fast = _model(), apply_speed(_model(), speed)
    x, y = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(1)), torch.arange(16) % 4
    with torch.no_grad(), speed_settings(speed):
        torch.testing.assert_close(fast(x), plain(x), rtol=1e-5, atol=1e-6)
    attack = PGD(eps=8 / 255, step_size=2 / 255, steps=5)
    torch.manual_seed(2)
    x_plain = attack(plain, x, y)
    torch.manual_seed(2)
    with speed_settings(speed):
        x_fast = attack(fast, x, y)
    assert torch.equal(x_fast, x_plain), "the signed-gradient steps agree, so the adversarial images are the same"
    assert sorted(fast.state_dict()) == sorted(plain.state_dict()), "checkpoints keep their keys"
    if speed.compile:
        assert compile_report(fast).startswith("torch.compile: ")
        assert fast.forward_with_parts.graphs >= 1
    if speed.channels_last:
        conv = next(m for m in fast.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("size", [1, 2, 4, 5, 7, 8, (4, 2)])
def test_pool_to_is_the_adaptive_pool(size):
    x = torch.randn(2, 6, 28, 28, requires_grad=True)
    torch.testing.assert_close(pool_to(x, size), F.adaptive_avg_pool2d(x, size))
    grad_fast, = torch.autograd.grad(pool_to(x, size).square().sum(), x)
    grad_ref, = torch.autograd.grad(F.adaptive_avg_pool2d(x, size).square().sum(), x)
    torch.testing.assert_close(grad_fast, grad_ref)


class _AutocastProbe(nn.Module):
    """A linear classifier recording whether CPU autocast was on at each call, and the train/eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 4 * 4, 3)
        self.calls: list[tuple[bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((torch.is_autocast_enabled("cpu"), self.training))
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("precision, outer, attack_autocast", [
    ("as_train", False, False), ("as_train", True, True), ("bf16", False, True), ("fp32", True, False)])
def test_attack_precision_inside_training(precision, outer, attack_autocast):
    model, x, y = _AutocastProbe().train(), torch.rand(4, 3, 4, 4), torch.tensor([0, 1, 2, 0])
    cfg = TrainConfig(attack_precision=precision, steps=2)
    context = torch.autocast("cpu", dtype=torch.bfloat16) if outer else attack_precision("as_train", x.device)
    with context:
        training_loss(model, x, y, torch.zeros(4, 4, 4, dtype=torch.long), "pgd", cfg, cfg.train_attack())
    attack_calls = [autocast for autocast, training in model.calls if not training]
    loss_calls = [autocast for autocast, training in model.calls if training]
    assert attack_calls and set(attack_calls) == {attack_autocast}
    assert loss_calls == [outer], "the loss pass keeps the training precision"


def test_attack_precision_is_part_of_the_run_id_and_speed_is_not(tiny_dataset):
    base = make_run_config(tiny_run_values(tiny_dataset))
    same = make_run_config(tiny_run_values(tiny_dataset), {"speed.channels_last": True, "speed.compile": True,
                                                           "speed.cudnn_benchmark": False, "data.prefetch_factor": 4})
    assert run_id(same) == run_id(base)
    explicit_default = make_run_config(tiny_run_values(tiny_dataset), {"train.attack_precision": "as_train"})
    assert run_id(explicit_default) == run_id(base), "earlier run ids stay valid"
    bf16 = make_run_config(tiny_run_values(tiny_dataset), {"train.attack_precision": "bf16"})
    assert run_id(bf16) != run_id(base)
    assert phase_id(bf16, "clean") == phase_id(base, "clean"), "normal training runs no attack"
    assert phase_id(bf16, "adversarial") != phase_id(base, "adversarial")


def _fit(dataset, out_dir, speed: Speed):
    """One clean and one PGD step: a longer run at lr 0.1 amplifies float rounding chaotically."""
    seed_everything(0)
    loaders = build_loaders(str(dataset), LoaderConfig(crop_size=32, resize_size=32, min_crop_scale=0.5, batch_size=16, train_limit=16),
                            seed=0)
    model = build_model(ModelConfig(name="downsampled", num_classes=4, num_parts=14, encoder="tu-resnet10t"))
    for module in model.modules():  # the ASPP's dropout draws its mask in memory order: NHWC draws other units
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    cfg = TrainConfig(epochs_clean=1, epochs_adv=1, steps=2, val_every=1, val_steps=2, val_limit=16)
    result = fit(model, loaders["train"], loaders["val"], cfg, out_dir, torch.device("cpu"), progress=False, speed=speed)
    return model, result


@pytest.mark.slow
@pytest.mark.parametrize("speed, rel", [
    # aot_eager runs the same kernels: rounding-level agreement. NHWC convolutions round differently, and a
    # pixel whose input gradient is 0 on one path and 1e-12 on the other gets another sign in the training
    # PGD: the PGD step's loss agrees to 1 %, the clean step's to rounding.
    (COMPILED, 1e-5), (Speed(channels_last=True, cudnn_benchmark=True), 1e-2)], ids=["compile", "channels_last"])
def test_training_with_the_switches_matches_the_plain_path(tiny_dataset, tmp_path, speed, rel):
    plain_model, plain = _fit(tiny_dataset, tmp_path / "plain", PLAIN)
    fast_model, fast = _fit(tiny_dataset, tmp_path / "fast", speed)
    assert [r["phase"] for r in fast.history] == ["clean", "pgd"]
    clean_plain, clean_fast = plain.history[0], fast.history[0]
    assert clean_fast["train_loss"] == pytest.approx(clean_plain["train_loss"], rel=1e-5)
    assert clean_fast["train_acc"] == clean_plain["train_acc"] and clean_fast["val_clean_acc"] == clean_plain["val_clean_acc"]
    assert fast.history[1]["train_loss"] == pytest.approx(plain.history[1]["train_loss"], rel=rel)
    if speed.compile:
        assert [r.get("val_adv_acc") for r in fast.history] == [r.get("val_adv_acc") for r in plain.history]
        for (name, p), q in zip(plain_model.state_dict().items(), fast_model.state_dict().values()):
            torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=name)
        assert compile_report(fast_model).startswith("torch.compile: "), "the model keeps its speed-ups for the evaluation"
    else:
        conv = next(m for m in fast_model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last), "the model keeps its speed-ups for the evaluation"


def test_non_finite_loss_is_reported_with_its_step(tiny_dataset, tmp_path):
    loaders = build_loaders(str(tiny_dataset), LoaderConfig(crop_size=32, resize_size=32, batch_size=8, train_limit=24), seed=0)
    model = build_model(ModelConfig(name="downsampled", num_classes=4, num_parts=14, encoder="tu-resnet10t"))
    with torch.no_grad():
        model.head.classifier[-1].weight.fill_(float("nan"))
    cfg = TrainConfig(epochs_clean=1, epochs_adv=0, log_every=50)
    with pytest.raises(FloatingPointError, match="non-finite loss at step 0"):
        fit(model, loaders["train"], loaders["val"], cfg, tmp_path / "nan", torch.device("cpu"), progress=False)
    assert not (tmp_path / "nan" / "clean" / "last.pt").exists(), "the broken epoch leaves no checkpoint"


def test_autoattack_batch_size_key(tiny_dataset):
    base = make_run_config(tiny_run_values(tiny_dataset), {"eval.autoattack": True})
    assert base.eval.autoattack_adapter(None).batch_size == base.eval.batch_size
    auto = make_run_config(tiny_run_values(tiny_dataset), {"eval.autoattack": True, "eval.autoattack_batch_size": "auto"})
    assert auto.eval.autoattack_adapter(None).batch_size == "auto" and run_id(auto) != run_id(base)
    assert run_id(make_run_config(tiny_run_values(tiny_dataset), {"eval.autoattack_batch_size": 512})) == run_id(
        make_run_config(tiny_run_values(tiny_dataset))), "inapplicable without AutoAttack"
    with pytest.raises(ValueError, match="autoattack_batch_size"):
        make_run_config(tiny_run_values(tiny_dataset), {"eval.autoattack_batch_size": 0})
