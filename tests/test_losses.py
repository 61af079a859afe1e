"""Losses of Appendix C.4 against direct computations."""
import math

import pytest
import torch
import torch.nn.functional as F

from partrobust.models.losses import UNLABELLED, kl_clean_to_adv, part_model_loss, segmentation_loss_per_sample, trades_loss


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, generator=g)
    seg = torch.randn(4, 5, 6, 7, generator=g)
    masks = torch.randint(0, 5, (4, 6, 7), generator=g)
    y = torch.tensor([0, 2, 1, 2])
    return logits, seg, masks, y


def test_segmentation_loss_is_pixel_mean_ce(batch):
    _, seg, masks, _ = batch
    per_sample = segmentation_loss_per_sample(seg, masks)
    for i in range(4):
        logp = F.log_softmax(seg[i], dim=0)  # (K+1, H, W)
        expected = -logp.gather(0, masks[i][None]).mean()
        assert per_sample[i].item() == pytest.approx(expected.item(), rel=1e-5)


def test_unlabelled_sample_has_no_segmentation_loss(batch):
    _, seg, masks, _ = batch
    masks = masks.clone()
    masks[1] = UNLABELLED
    per_sample = segmentation_loss_per_sample(seg, masks)
    assert per_sample[1].item() == 0.0
    assert (per_sample[[0, 2, 3]] > 0).all()


def test_part_model_loss_weights_terms(batch):
    logits, seg, masks, y = batch
    ce = F.cross_entropy(logits, y, reduction="none")
    segl = segmentation_loss_per_sample(seg, masks)
    for c in (0.0, 0.3, 1.0):
        expected = ((1 - c) * ce + c * segl).mean()
        assert part_model_loss(logits, y, seg, masks, c).item() == pytest.approx(expected.item(), rel=1e-6)
    assert part_model_loss(logits, y).item() == pytest.approx(ce.mean().item(), rel=1e-6)


def test_unlabelled_sample_keeps_class_term_and_counts_in_mean(batch):
    logits, seg, masks, y = batch
    masks = masks.clone()
    masks[0] = UNLABELLED
    ce = F.cross_entropy(logits, y, reduction="none")
    segl = segmentation_loss_per_sample(seg, masks)
    expected = (0.5 * ce + 0.5 * segl).sum() / 4
    assert part_model_loss(logits, y, seg, masks, 0.5).item() == pytest.approx(expected.item(), rel=1e-6)


def test_kl_matches_definition(batch):
    logits, _, _, _ = batch
    adv = logits + torch.randn_like(logits)
    p, q = F.softmax(logits, 1), F.softmax(adv, 1)
    expected = (p * (p.log() - q.log())).sum(1).mean()
    assert kl_clean_to_adv(logits, adv).item() == pytest.approx(expected.item(), rel=1e-5)
    assert kl_clean_to_adv(logits, logits).item() == pytest.approx(0.0, abs=1e-6)


def test_trades_loss(batch):
    logits, seg, masks, y = batch
    adv = logits.flip(0)
    beta, c = 2.0, 0.5
    ce = F.cross_entropy(logits, y)
    kl = kl_clean_to_adv(logits, adv)
    seg_mean = segmentation_loss_per_sample(seg, masks).mean()
    got = trades_loss(logits, adv, y, beta, seg, masks, c)
    assert got.item() == pytest.approx(((1 - c) * ce + c * seg_mean + beta * kl).item(), rel=1e-5)
    # plain TRADES for a classifier without parts
    assert trades_loss(logits, adv, y, beta).item() == pytest.approx((ce + beta * kl).item(), rel=1e-5)
    # segmentation term averages over labelled samples only
    masks = masks.clone()
    masks[2:] = UNLABELLED
    seg_lab = segmentation_loss_per_sample(seg, masks)[:2].mean()
    got = trades_loss(logits, adv, y, beta, seg, masks, c)
    assert got.item() == pytest.approx(((1 - c) * ce + c * seg_lab + beta * kl).item(), rel=1e-5)


def test_trades_gradient_flows_through_both_halves(batch):
    logits, _, _, y = batch
    clean = logits.clone().requires_grad_(True)
    adv = (logits + 1).requires_grad_(True)
    trades_loss(clean, adv, y, beta=1.0).backward()
    assert clean.grad.abs().sum() > 0 and adv.grad.abs().sum() > 0


def test_bad_inputs():
    with pytest.raises(ValueError, match="c_seg"):
        part_model_loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), torch.zeros(2, 4, 3, 3), torch.zeros(2, 3, 3, dtype=torch.long), 1.5)
    with pytest.raises(ValueError, match="do not match"):
        segmentation_loss_per_sample(torch.zeros(2, 4, 3, 3), torch.zeros(2, 5, 5, dtype=torch.long))
    assert math.isfinite(segmentation_loss_per_sample(torch.zeros(1, 2, 2, 2), torch.full((1, 2, 2), UNLABELLED)).item())
