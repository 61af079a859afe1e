"""Training loop: optimiser groups, checkpoint selection, exact resume after a kill."""
import pytest
import torch
import torch.nn as nn

import partrobust.train.loop as training
from partrobust.data.loaders import LoaderConfig, build_loaders
from partrobust.models import ModelConfig, build_model
from partrobust.train.loop import TrainConfig, _is_better, fit, parameter_groups
from partrobust.core.seeding import seed_everything


def test_weight_decay_only_on_weights():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.rand(1, 3, 8, 8))
    decay, no_decay = parameter_groups(model, 5e-4)
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    decayed = {id(p) for p in decay["params"]}
    assert id(model[0].weight) in decayed and id(model[3].weight) in decayed
    for p in (model[0].bias, model[1].weight, model[1].bias, model[3].bias):
        assert id(p) not in decayed
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_checkpoint_selection_rule():
    assert _is_better({"val_clean_acc": 50, "val_adv_acc": 30}, None, adversarial=True)
    assert not _is_better({"val_clean_acc": 20, "val_adv_acc": 30}, None, adversarial=True), "clean < adv is never selected"
    best = {"val_clean_acc": 50, "val_adv_acc": 30}
    assert not _is_better({"val_clean_acc": 90, "val_adv_acc": 30}, best, adversarial=True)
    assert _is_better({"val_clean_acc": 40, "val_adv_acc": 31}, best, adversarial=True)
    assert _is_better({"val_clean_acc": 51}, {"val_clean_acc": 50}, adversarial=False)


def test_bad_train_config():
    with pytest.raises(ValueError, match="method"):
        TrainConfig(method="fgsm")
    with pytest.raises(ValueError, match="c_seg"):
        TrainConfig(c_seg=2.0)
    with pytest.raises(ValueError, match="at least one epoch"):
        TrainConfig(epochs_clean=0, epochs_adv=0)


def _run(dataset, out_dir, method="pgd"):
    seed_everything(0)
    loaders = build_loaders(str(dataset), LoaderConfig(crop_size=32, resize_size=32, min_crop_scale=0.5, batch_size=16), seed=0)
    model = build_model(ModelConfig(name="downsampled", num_classes=4, num_parts=14, encoder="tu-resnet10t"))
    cfg = TrainConfig(epochs_clean=2, epochs_adv=2, method=method, steps=1, val_every=1, val_steps=1)
    result = fit(model, loaders["train"], loaders["val"], cfg, out_dir, torch.device("cpu"), progress=False)
    return model, result


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", [2, 3])  # 2: at the start of the adversarial phase, 3: inside it
def test_killed_run_resumes_to_identical_weights(tiny_dataset, tmp_path, monkeypatch, kill_at):
    reference, ref_result = _run(tiny_dataset, tmp_path / "uninterrupted")

    original = training.train_one_epoch
    calls = {"n": 0}

    def dying(*args, **kwargs):
        if calls["n"] == kill_at:
            raise KeyboardInterrupt("simulated kill")
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "train_one_epoch", dying)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_dataset, tmp_path / "killed")
    monkeypatch.setattr(training, "train_one_epoch", original)
    resumed, res_result = _run(tiny_dataset, tmp_path / "killed")

    ref_state, res_state = reference.state_dict(), resumed.state_dict()
    for key in ref_state:
        assert torch.equal(ref_state[key], res_state[key]), f"{key} differs after resume"
    assert [r["train_loss"] for r in ref_result.history] == [r["train_loss"] for r in res_result.history]
    assert len(res_result.history) == 4 and (tmp_path / "killed" / "pgd" / "best.pt").exists()


@pytest.mark.slow
def test_trades_training_runs(tiny_dataset, tmp_path):
    model, result = _run(tiny_dataset, tmp_path / "trades", method="trades")
    assert [r["phase"] for r in result.history] == ["clean", "clean", "trades", "trades"]
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in result.history)
    assert any(r["selected"] for r in result.history if r["phase"] == "trades")
