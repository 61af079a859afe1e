"""Centroid labels and the centroid loss (App. E.5, Table 14 "Centroids", decision 6)."""
import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_run_values
from partrobust.core.config import ParameterError
from partrobust.models.losses import UNLABELLED, CentroidLoss, centroid_loss_per_sample, centroid_targets, centroid_term_per_sample, part_class_term_per_sample, part_model_loss, trades_loss
from partrobust.models import ModelConfig, bbox_features, build_model
from partrobust.models.heads import EPS
from partrobust.runs.runconfig import make_run_config, run_id
from partrobust.train.loop import TrainConfig, training_loss


def _bbox_features_before_refactor(seg_logits: torch.Tensor, score: str = "logits") -> torch.Tensor:
    """`bbox_features` as it was before `part_geometry` was factored out (verbatim)."""
    _, _, height, width = seg_logits.shape
    part_logits = seg_logits[:, 1:]
    masks = F.softmax(seg_logits, dim=1)[:, 1:]
    fg = torch.sigmoid(part_logits.sum(1, keepdim=True) - seg_logits[:, :1])
    fg = fg / fg.sum((2, 3), keepdim=True).clamp_min(EPS)
    values = part_logits if score == "logits" else masks
    scores = (values * fg).sum((2, 3))
    mass = masks.sum((2, 3)) + EPS
    col = masks.sum(2) + EPS
    row = masks.sum(3) + EPS
    grid_x = torch.arange(width, dtype=masks.dtype, device=masks.device)
    grid_y = torch.arange(height, dtype=masks.dtype, device=masks.device)
    cx = (col * grid_x).sum(2) / mass
    cy = (row * grid_y).sum(2) / mass
    sdx = ((col * (grid_x - cx.unsqueeze(-1)) ** 2).sum(2) / mass).sqrt()
    sdy = ((row * (grid_y - cy.unsqueeze(-1)) ** 2).sum(2) / mass).sqrt()
    cx = cx / width * 2 - 1
    cy = cy / height * 2 - 1
    sdx = sdx / width * 2
    sdy = sdy / height * 2
    return torch.stack([scores, cx, cy, sdx, sdy], dim=2)


@pytest.mark.parametrize("shape, dtype", [((2, 5, 7, 9), torch.float32), ((1, 3, 6, 6), torch.float64)])
@pytest.mark.parametrize("score", ["logits", "probability"])
def test_bbox_features_bit_identical_after_refactor(shape, dtype, score) -> None:
    logits = torch.randn(*shape, generator=torch.Generator().manual_seed(1), dtype=dtype) * 4
    assert torch.equal(bbox_features(logits, score), _bbox_features_before_refactor(logits, score))


# ------------------------------------------------------------------------------ GT centroids
@pytest.fixture
def mask6() -> torch.Tensor:
    """6x6 mask: part 1 = rows 1-2 x cols 3-5, part 2 = pixel (row 4, col 0), part 3 absent."""
    mask = torch.zeros(6, 6, dtype=torch.long)
    mask[1:3, 3:6] = 1
    mask[4, 0] = 2
    return mask


def test_centroid_targets_hand_values(mask6: torch.Tensor) -> None:
    cx, cy, present = centroid_targets(mask6[None], num_parts=3)
    assert cx.shape == cy.shape == present.shape == (1, 3)
    assert present.tolist() == [[True, True, False]]
    # Part 1: columns 3,4,5 -> x = 4 -> 4/6*2-1 = 1/3; rows 1,2 -> y = 1.5 -> 1.5/6*2-1 = -1/2.
    # Part 2: column 0 -> x = -1; row 4 -> y = 4/6*2-1 = 1/3. Absent part 3: 0.
    torch.testing.assert_close(cx, torch.tensor([[1 / 3, -1.0, 0.0]]), atol=1e-5, rtol=0)
    torch.testing.assert_close(cy, torch.tensor([[-0.5, 1 / 3, 0.0]]), atol=1e-5, rtol=0)


def test_centroid_targets_match_bbox_features_x_is_the_column(mask6: torch.Tensor) -> None:
    logits = 50.0 * F.one_hot(mask6, 4).permute(2, 0, 1)[None].float()
    features = bbox_features(logits)[0]  # (K, 5): s, cx, cy, sdx, sdy
    cx, cy, _ = centroid_targets(mask6[None], num_parts=3)
    torch.testing.assert_close(cx[0, :2], features[:2, 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(cy[0, :2], features[:2, 2], atol=1e-5, rtol=0)
    # Transposing the mask swaps x and y.
    cx_t, cy_t, _ = centroid_targets(mask6.T[None], num_parts=3)
    torch.testing.assert_close(cx_t, cy, atol=1e-6, rtol=0)
    torch.testing.assert_close(cy_t, cx, atol=1e-6, rtol=0)


def test_centroid_targets_ignore_unlabelled_pixels_and_check_range(mask6: torch.Tensor) -> None:
    partial = mask6.clone()
    partial[5, :] = UNLABELLED  # unlabelled pixels belong to no part
    torch.testing.assert_close(centroid_targets(partial[None], 3)[0], centroid_targets(mask6[None], 3)[0])
    cx, cy, present = centroid_targets(torch.full((1, 6, 6), UNLABELLED), 3)
    assert not present.any() and (cx == 0).all() and (cy == 0).all()
    with pytest.raises(ValueError, match="mask values"):
        centroid_targets(mask6[None], num_parts=1)


# ------------------------------------------------------------------------------ loss terms
# Two samples, 2x2 pixels, K = 2 parts (part 1 -> class 0, part 2 -> class 1). Logits = log of
# these probabilities, so softmax gives them back exactly:
#   M1 = [[.25, .5], [.25, .5]]: mass 1.5, x = 1/1.5 = 2/3 -> -1/3, y = .75/1.5 = .5 -> -.5
#   M2 = [[.25, .25], [.5, .25]]: mass 1.25, x = .5/1.25 = .4 -> -.6, y = .75/1.25 = .6 -> -.4
M1 = torch.tensor([[0.25, 0.5], [0.25, 0.5]])
M2 = torch.tensor([[0.25, 0.25], [0.5, 0.25]])
PART_TO_CLASS = [-1, 0, 1]


def _tiny_logits(n: int = 2) -> torch.Tensor:
    probs = torch.stack([1 - M1 - M2, M1, M2])  # (3, 2, 2), background = [[.5, .25], [.25, .25]]
    return probs.log()[None].repeat(n, 1, 1, 1).requires_grad_(True)


TINY_MASKS = torch.tensor([
    [[0, 1], [0, 1]],  # part 1 at column 1 -> (x, y) = (0, -.5); part 2 absent
    [[2, 1], [0, 0]],  # part 1 at (row 0, col 1) -> (0, -1); part 2 at (0, 0) -> (-1, -1)
])


def test_centroid_term_hand_values() -> None:
    term = centroid_term_per_sample(_tiny_logits(), TINY_MASKS)
    first = (-1 / 3 - 0) ** 2 + (-0.5 + 0.5) ** 2  # only part 1 is present
    second = ((-1 / 3 - 0) ** 2 + (-0.5 + 1) ** 2 + (-0.6 + 1) ** 2 + (-0.4 + 1) ** 2) / 2
    torch.testing.assert_close(term, torch.tensor([first, second]), atol=1e-5, rtol=0)


def test_class_term_hand_values() -> None:
    # p_0 = 1.5 / (1.5 + 1.25) = 6/11, p_1 = 5/11.
    term = part_class_term_per_sample(_tiny_logits(), TINY_MASKS, torch.tensor([0, 1]), PART_TO_CLASS)
    torch.testing.assert_close(term, torch.tensor([-math.log(6 / 11), -math.log(5 / 11)]), atol=1e-5, rtol=0)
    total = centroid_loss_per_sample(_tiny_logits(), TINY_MASKS, torch.tensor([0, 1]), PART_TO_CLASS)
    torch.testing.assert_close(total, term + centroid_term_per_sample(_tiny_logits(), TINY_MASKS))


def test_class_term_groups_parts_by_class() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 4, 6, generator=g) * 3
    masks = torch.randint(0, 5, (3, 4, 6), generator=g)
    labels = torch.tensor([0, 1, 2])
    p2c = [-1, 2, 0, 2, 1]
    mass = F.softmax(logits, 1)[:, 1:].sum((2, 3))  # (N, K)
    by_class = torch.stack([mass[:, 1], mass[:, 3], mass[:, 0] + mass[:, 2]], dim=1)
    expected = -(by_class / by_class.sum(1, keepdim=True)).gather(1, labels[:, None]).squeeze(1).log()
    torch.testing.assert_close(part_class_term_per_sample(logits, masks, labels, p2c), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="classes without parts: \\[1\\]"):
        part_class_term_per_sample(logits, masks, labels, [-1, 0, 0, 2, 2])
    with pytest.raises(ValueError, match="length K\\+1"):
        CentroidLoss([0, 1, 1])


def test_unlabelled_samples_contribute_only_their_class_term() -> None:
    logits, y = torch.tensor([[2.0, -1.0], [0.5, 0.3]]), torch.tensor([0, 1])
    masks = TINY_MASKS.clone()
    masks[1] = UNLABELLED
    seg = _tiny_logits()
    loss_fn = CentroidLoss(PART_TO_CLASS, num_classes=2)
    per_sample = loss_fn(seg, masks, y)
    assert per_sample[1].item() == 0.0 and per_sample[0].item() > 0
    ce = F.cross_entropy(logits, y, reduction="none")
    c = 0.3
    expected = ((1 - c) * ce[0] + c * per_sample[0] + (1 - c) * ce[1]) / 2  # the unlabelled sample counts in the mean
    assert part_model_loss(logits, y, seg, masks, c, part_loss=loss_fn).item() == pytest.approx(expected.item(), rel=1e-6)
    # No part present (all background) but labelled: centroid term 0, the class term stays.
    background = torch.zeros(1, 2, 2, dtype=torch.long)
    assert centroid_term_per_sample(_tiny_logits(1), background).item() == 0.0
    assert part_class_term_per_sample(_tiny_logits(1), background, y[:1], PART_TO_CLASS).item() > 0


def test_gradient_reaches_the_seg_logits_and_trades_uses_the_adversarial_half() -> None:
    seg = _tiny_logits()
    logits = torch.randn(2, 2, requires_grad=True)
    y = torch.tensor([0, 1])
    loss_fn = CentroidLoss(PART_TO_CLASS)
    part_model_loss(logits, y, seg, TINY_MASKS, 0.5, part_loss=loss_fn).backward()
    assert torch.isfinite(seg.grad).all() and seg.grad.abs().sum() > 0
    # TRADES: (1-c) CE(clean) + c * mean over labelled samples of L_cen(x*) + beta KL.
    clean, adv = torch.randn(2, 2), torch.randn(2, 2)
    masks = TINY_MASKS.clone()
    masks[0] = UNLABELLED
    seg_adv = _tiny_logits()
    expected = trades_loss(clean, adv, y, 2.0) - F.cross_entropy(clean, y) * 0.5 + 0.5 * loss_fn(seg_adv, masks, y)[1]
    got = trades_loss(clean, adv, y, 2.0, seg_adv, masks, 0.5, part_loss=loss_fn)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


# ------------------------------------------------------------------------------ config
CONFIG_ROOT = "data/prepared/synthetic"
RUN_IDS_BEFORE_CENTROID = {  # run_id of these configs at d02bfe5, before data.labels: centroid existed
    "{}": "bbox-pgd-48681cbc",
    '{"model.name": "downsampled"}': "downsampled-pgd-bcc9f74f",
    '{"model.name": "resnet"}': "resnet-pgd-87175b55",
    '{"train.method": "trades", "train.beta": 2.0}': "bbox-trades-b2-fab26c6b",
    '{"data.labels": "object", "model.name": "downsampled"}': "downsampled-pgd-93a15156",
    '{"data.labels": "bbox"}': "bbox-pgd-399500c6",
    '{"data.label_fraction": 0.5}': "bbox-pgd-864f893d",
}


@pytest.mark.parametrize("overrides", list(RUN_IDS_BEFORE_CENTROID))
def test_existing_run_ids_unchanged(overrides: str) -> None:
    config = make_run_config(tiny_run_values(CONFIG_ROOT), json.loads(overrides))
    assert run_id(config) == RUN_IDS_BEFORE_CENTROID[overrides]


def test_centroid_labels_need_the_bbox_model() -> None:
    with pytest.raises(ParameterError, match=r"data\.labels: centroid.*model\.name: bbox.*model\.name: downsampled"):
        make_run_config(tiny_run_values(CONFIG_ROOT), {"data.labels": "centroid", "model.name": "downsampled"})
    config = make_run_config(tiny_run_values(CONFIG_ROOT), {"data.labels": "centroid"})
    assert config.data.labelled_root == CONFIG_ROOT  # the ordinary part masks
    assert run_id(config).startswith("bbox-pgd-") and run_id(config) != RUN_IDS_BEFORE_CENTROID["{}"]


# ------------------------------------------------------------------------------ training
@pytest.mark.parametrize("method", ["normal", "trades"])
def test_training_loss_with_the_centroid_loss_trains(method: str) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="bbox", num_classes=2, num_parts=2, encoder="tu-resnet10t",
                                    part_to_class=PART_TO_CLASS, image_size=32))
    x = torch.rand(4, 3, 32, 32)
    y = torch.tensor([0, 1, 0, 1])
    masks = torch.zeros(4, 32, 32, dtype=torch.long)
    masks[:, 4:12, 20:30] = 1
    masks[:, 20:28, 2:10] = 2
    masks[3] = UNLABELLED
    # normal: the centroid loss alone (c_seg = 1) goes down steadily on a fixed batch (the class term of
    # the tiny head, BatchNorm over 4 samples, is too jumpy to test); trades: finite gradients.
    cfg = TrainConfig(steps=1, c_seg=1.0 if method == "normal" else 0.5)
    attack = cfg.train_attack() if method == "trades" else None
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = CentroidLoss(PART_TO_CLASS, num_classes=2)
    model.train()
    losses = []
    for _ in range(4):
        loss, logits = training_loss(model, x, y, masks, method, cfg, attack, part_loss=loss_fn)
        optimizer.zero_grad()
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        optimizer.step()
        losses.append(loss.item())
    assert logits.shape == (4, 2) and all(math.isfinite(v) for v in losses)
    if method == "normal":
        assert losses == sorted(losses, reverse=True), losses
    with pytest.raises(ValueError, match="part_loss"):
        training_loss(nn_resnet(), x, y, masks, "normal", cfg, part_loss=loss_fn)


def nn_resnet() -> torch.nn.Module:
    return build_model(ModelConfig(name="resnet", num_classes=2, arch="resnet10t"))


def test_a_centroid_run_trains_with_the_centroid_loss(tiny_dataset, tmp_path, monkeypatch) -> None:
    import partrobust.runs.run as run_module

    seen = {}

    def fake_fit(*args, **kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt("stop before training")

    monkeypatch.setattr(run_module, "fit", fake_fit)
    values = tiny_run_values(tiny_dataset)
    parts = run_module.Run(make_run_config(values), "exp", tmp_path)
    assert parts.part_loss is None
    run = run_module.Run(make_run_config(values, {"data.labels": "centroid"}), "exp", tmp_path)
    assert run.part_loss == CentroidLoss(tuple(run.metadata.part_to_class()), run.metadata.num_classes)
    with pytest.raises(KeyboardInterrupt):
        run.train()
    assert seen["part_loss"] is run.part_loss
