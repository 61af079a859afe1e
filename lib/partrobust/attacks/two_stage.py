"""Two-stage attacks on part models (paper App. E.4 "Two-staged attack", Table 13).

Stage 1 attacks the segmenter only (segmentation loss, c_seg = 1) from a random start:
"untargeted" ascends the loss w.r.t. the sample's true part mask, the targeted strategies
descend it toward a *guide* mask from a pool (the test set's true masks and labels). Stage 2
optimises the classification loss only and starts FROM THE STAGE-1 RESULT (decision 7; the
reference code restarted it from the clean image, discarding stage 1): untargeted CE ascent on
the true label for "untargeted", targeted CE descent toward the guide's class otherwise.
One guide per restart (5 restarts as the paper). Reference: ``seg_guide.py``
(``SegGuidedAttack``), reference-spec 3.5.

Usage::

    attack = TwoStage("mc_sorted", eps=8 / 255, step_size=0.001, steps=100, seed=0)
    attack = attack.with_guides(test_masks, test_labels, score_guide_masks(model, test_masks))
    x_adv = attack(model, x, y, masks)

Guide choice is a pure function, `choose_targets`, testable on hand-made pools.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..core.config import format_fraction
from ..data.prepared import UNLABELLED
from ..models.heads import TwoHeadedHead
from .base import eval_mode
from .pgd import PGD, Objective, WorstCase, cross_entropy_objective
from .seg_pgd import check_masks, check_part_model, seg_sum_objective

STRATEGIES = ("untargeted", "random", "mc_random", "mc_sorted")
"""Paper names: Untargeted, Random, Most-confident (random), Most-confident (sorted)."""

NO_TARGET = -1
"""Target class / guide index meaning "no guide": the sample is attacked as by "untargeted"
(the untargeted strategy everywhere; a targeted one for a sample without a usable guide)."""

ONE_HOT_SCALE = 1000.0
"""A guide mask enters the head as one-hot x this constant, i.e. near-certain part logits (reference: 1e3)."""


def _check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown two-stage strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")


def confidence_ranking(clean_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(N, C-1): every sample's incorrect classes by decreasing clean logit (ties: lower class first)."""
    order = torch.sort(clean_logits.detach().float().cpu(), dim=1, descending=True, stable=True).indices
    keep = order != y.detach().cpu().long()[:, None]
    return order[keep].view(order.shape[0], order.shape[1] - 1)


def _randint(high: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(high, (1,), generator=generator))


def _first_available(ranking: torch.Tensor, pools: dict[int, torch.Tensor]) -> int | None:
    return next((k for k in ranking.tolist() if k in pools), None)


def _fill_most_confident(targets: torch.Tensor, guides: torch.Tensor, ranking: torch.Tensor,
                         pools: dict[int, torch.Tensor], pick: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Sample i's target: its most confident incorrect class with a pool (`_first_available`), and
    its guides per restart `pick(pool)`, drawn in sample order; `NO_TARGET` where no class has one."""
    for i in range(len(targets)):
        k = _first_available(ranking[i], pools)
        if k is None:
            targets[i] = guides[i] = NO_TARGET
            continue
        targets[i] = k
        guides[i] = pick(pools[k])


def choose_targets(
    strategy: str,
    clean_logits: torch.Tensor,
    y: torch.Tensor,
    guide_labels: torch.Tensor | None = None,
    head_scores: torch.Tensor | None = None,
    restarts: int = 5,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Target class and guide mask of every (sample, restart); pure, on the CPU.

    Args:
        strategy: one of `STRATEGIES`.
        clean_logits: (N, C) class logits of the clean images.
        y: (N,) true labels.
        guide_labels: (P,) class of every pool mask; entries < 0 mark masks that are no guide.
        head_scores: (P, C) the head's softmax on every pool mask (`score_guide_masks`);
            "mc_sorted" only.
        restarts: R, one guide per restart.
        generator: random draws ("random", "mc_random"); torch's global RNG when None.

    Returns:
        (targets, guides), both (N, R) int64: the target class and the pool index of the guide
        mask; `NO_TARGET` everywhere for "untargeted", and for every restart of a sample
        that has no usable guide (no pool mask of any incorrect class; for "mc_sorted", none
        that the head classifies as one), which `TwoStage` then attacks untargeted. Per strategy:

        * random: per restart a uniformly random incorrect class among those with a pool
          mask (decision 7; the reference took the r-th most confident), then a uniformly
          random pool mask of that class. Draw order: sample by sample, restart by restart,
          class then mask.
        * mc_random: the most-confident incorrect class (clean logits; the next one in that
          ranking if it has no pool mask); R of its pool masks drawn without replacement,
          or with replacement if it has fewer than R.
        * mc_sorted: pool masks are grouped by the head's predicted class and sorted by the
          head's score of that class (descending; ties keep pool order); the target is the
          first class of the confidence ranking (true class excluded) with such a mask; its
          top R masks, repeated cyclically if fewer.
    """
    _check_strategy(strategy)
    if restarts < 1:
        raise ValueError(f"need restarts >= 1, got {restarts}")
    if clean_logits.ndim != 2 or y.shape != clean_logits.shape[:1]:
        raise ValueError(f"need clean logits (N, C) and labels (N,), got {tuple(clean_logits.shape)} and {tuple(y.shape)}")
    n, num_classes = clean_logits.shape
    if strategy == "untargeted":
        none = torch.full((n, restarts), NO_TARGET, dtype=torch.long)
        return none, none.clone()
    if num_classes < 2:
        raise ValueError("targeted strategies need at least 2 classes")
    if guide_labels is None or guide_labels.ndim != 1:
        raise ValueError(f"strategy {strategy!r} needs the guide pool's labels (P,)")
    labels = guide_labels.detach().cpu().long()
    y = y.detach().cpu().long()
    targets = torch.empty((n, restarts), dtype=torch.long)
    guides = torch.empty((n, restarts), dtype=torch.long)
    by_label = {k: idx for k in range(num_classes) if len(idx := torch.nonzero(labels == k).flatten())}

    if strategy == "random":
        for i in range(n):
            classes = [k for k in by_label if k != y[i]]
            if not classes:
                targets[i] = guides[i] = NO_TARGET
                continue
            for r in range(restarts):
                k = classes[_randint(len(classes), generator)]
                targets[i, r] = k
                guides[i, r] = by_label[k][_randint(len(by_label[k]), generator)]
        return targets, guides

    ranking = confidence_ranking(clean_logits, y)
    if strategy == "mc_random":
        def random_guides(pool: torch.Tensor) -> torch.Tensor:
            if len(pool) >= restarts:
                return pool[torch.randperm(len(pool), generator=generator)[:restarts]]
            return pool[torch.randint(len(pool), (restarts,), generator=generator)]

        _fill_most_confident(targets, guides, ranking, by_label, random_guides)
        return targets, guides

    # mc_sorted
    if head_scores is None or head_scores.shape != (len(labels), num_classes):
        shape = None if head_scores is None else tuple(head_scores.shape)
        raise ValueError(f"'mc_sorted' needs the head's scores of the pool masks, shape (P, C) = {(len(labels), num_classes)}, got {shape}")
    scores = head_scores.detach().float().cpu()
    predicted = scores.argmax(1)
    by_prediction = {}
    for k in range(num_classes):
        idx = torch.nonzero((predicted == k) & (labels >= 0)).flatten()
        if len(idx):
            by_prediction[k] = idx[torch.sort(scores[idx, k], descending=True, stable=True).indices]
    _fill_most_confident(targets, guides, ranking, by_prediction,
                         lambda pool: pool.repeat(math.ceil(restarts / len(pool)))[:restarts])
    return targets, guides


def _check_head_scorable(model: nn.Module) -> None:
    # imported here: keeps `import partrobust.attacks` free of the model stack

    head = getattr(model, "head", None)
    if head is None:
        raise ValueError("'mc_sorted' scores guide masks with the model's head (model.head), which this model lacks")
    if isinstance(head, TwoHeadedHead):
        raise ValueError("'mc_sorted' cannot score masks with the two_headed head: it classifies decoder features, not masks")
    if getattr(head, "concat_input", False):
        raise ValueError("'mc_sorted' cannot score masks with a concat_input head: it also needs the image")


def score_guide_masks(model: nn.Module, guide_masks: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """(P, C) softmax of ``model.head(one_hot(mask) * 1000, image=None, features=None)`` per pool mask.

    Runs in eval mode (mode restored) without gradients. UNLABELLED pixels get an all-zero
    one-hot. Heads that need the image or the decoder features (concat_input, two_headed)
    are refused. Compute once per model and pass to `TwoStage.with_guides`.
    """
    check_part_model(model, "score_guide_masks")
    _check_head_scorable(model)
    if guide_masks.ndim != 3 or guide_masks.is_floating_point():
        raise ValueError(f"guide masks must be integer part ids (P, H, W), got {tuple(guide_masks.shape)} {guide_masks.dtype}")
    if not isinstance(getattr(model, "num_parts", None), int):
        raise ValueError("score_guide_masks needs model.num_parts (K) to one-hot the masks")
    channels = model.num_parts + 1
    if guide_masks.numel() and (int(guide_masks.min()) < UNLABELLED or int(guide_masks.max()) >= channels):
        raise ValueError(f"guide masks must hold part ids in [{UNLABELLED}, {channels - 1}]")
    device = next(model.parameters()).device
    out = []
    with eval_mode(model), torch.no_grad():
        for chunk in guide_masks.split(batch_size):
            chunk = chunk.to(device).long()
            onehot = F.one_hot(chunk.clamp_min(0), channels) * (chunk >= 0).unsqueeze(-1)
            logits = model.head(onehot.permute(0, 3, 1, 2).float() * ONE_HOT_SCALE, image=None, features=None)
            out.append(F.softmax(logits.float(), dim=1).cpu())
    return torch.cat(out) if out else torch.empty(0, getattr(model, "num_classes", 0))


@dataclass
class TwoStage:
    """Two-stage attack (Table 13), called ``attack(model, x, y, masks)`` after `with_guides`.

    Per restart r (one guide each, see `choose_targets`): stage 1 = `steps` PGD steps on the
    segmentation loss from a random start; stage 2 = `steps` PGD steps on the classification
    loss from the stage-1 result (no random start). eps / step_size are shared.

    Result, per sample (decision 9): broken if ANY iterate of ANY stage of ANY run is
    misclassified; otherwise the run whose final CE w.r.t. the TRUE label is highest.
    A sample without a usable guide in the pool (`choose_targets` gives `NO_TARGET`) is
    attacked as by "untargeted" within the same runs, with a warning.

    Never weaker than stage 2 alone (by construction): with ``include_plain`` (default) the
    runs also include the plain stage 2 started at the clean image (what the reference's
    numbers effectively measured, its stage 1 being discarded), once per distinct target
    column, on the same targets. Every fooled sample of stage 2 alone is therefore fooled
    here, so the accuracy is <= that of ``first_stage=False`` with the same seed. Cost: up to
    R * 2 * steps + R * steps gradient steps.

    Args:
        strategy: "untargeted", "random", "mc_random" or "mc_sorted" (`STRATEGIES`).
        eps, step_size, steps: L-inf budget in [0, 1] pixels; steps per stage (paper: 8/255,
            0.001, 100).
        restarts: R, one guide per restart (paper: 5).
        seed: None draws from torch's global RNG (the caller seeds it, as evaluation does
            per batch); an int makes every call reproducible on its own (a fresh
            torch.Generator, used for the guide choice and the stage-1 random starts).
        include_plain: also run stage 2 alone from the clean image (see above).
        first_stage: False runs stage 2 alone (the reference's effective attack); with the
            same seed it picks the same targets.
        guide_masks, guide_labels, guide_scores: the pool, set by `with_guides`.
    """

    needs_masks: ClassVar[bool] = True  # called as attack(model, x, y, masks)
    strategy: str
    eps: float = 8 / 255
    step_size: float = 0.001
    steps: int = 100
    restarts: int = 5
    seed: int | None = None
    include_plain: bool = True
    first_stage: bool = True
    guide_masks: torch.Tensor | None = field(default=None, repr=False, compare=False)
    guide_labels: torch.Tensor | None = field(default=None, repr=False, compare=False)
    guide_scores: torch.Tensor | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_strategy(self.strategy)
        self._pgd = PGD(eps=self.eps, step_size=self.step_size, steps=self.steps, restarts=self.restarts)  # validates

    def note(self) -> str:
        """How this attack ran, for its result rows' note, with the deviation from the paper stated:
        with ``include_plain`` each sample's result is the worst case of the two-stage attack and a
        plain PGD on the same targets started from the clean image (the minimum of two attacks)."""
        budget = f"{self.restarts} guides, {self.steps} steps per stage, step {format_fraction(self.step_size)}"
        if not self.first_stage:
            return f"{budget}; stage 2 alone from the clean image (the reference's effective attack)"
        note = f"{budget}; stage 2 starts from the stage-1 result (decision 7)"
        if self.include_plain:
            note += ("; deviation: stage 2 also runs from the clean image on the same targets (include_plain), so each number "
                     "is the minimum of the two-stage attack and that plain PGD")
        return note

    def with_guides(
        self, guide_masks: torch.Tensor, guide_labels: torch.Tensor, head_scores: torch.Tensor | None = None
    ) -> TwoStage:
        """A copy using the guide pool: masks (P, H, W) at the input's resolution, labels (P,).

        Masks whose pixels are all UNLABELLED are never chosen (their label is set to -1).
        `head_scores` (P, C) from `score_guide_masks` ("mc_sorted"): computed at every call
        if omitted.
        """
        if not isinstance(guide_masks, torch.Tensor) or guide_masks.ndim != 3 or guide_masks.is_floating_point():
            raise ValueError(f"guide masks must be integer part ids of shape (P, H, W), got {getattr(guide_masks, 'shape', guide_masks)}")
        if not isinstance(guide_labels, torch.Tensor) or guide_labels.shape != guide_masks.shape[:1] or guide_labels.is_floating_point():
            raise ValueError(f"guide labels must be integer classes of shape (P,) = ({len(guide_masks)},), got {getattr(guide_labels, 'shape', guide_labels)}")
        if head_scores is not None and (head_scores.ndim != 2 or len(head_scores) != len(guide_masks)):
            raise ValueError(f"head scores must have shape (P, C) with P = {len(guide_masks)}, got {tuple(head_scores.shape)}")
        labelled = (guide_masks != UNLABELLED).flatten(1).any(1).to(guide_labels.device)
        labels = torch.where(labelled, guide_labels.long(), torch.full_like(guide_labels.long(), -1))
        return dataclasses.replace(self, guide_masks=guide_masks, guide_labels=labels, guide_scores=head_scores)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Returns adversarial examples; model runs in eval mode, mode restored."""
        check_part_model(model, "TwoStage")
        masks = check_masks(masks, x, model, "TwoStage")
        targeted = self.strategy != "untargeted"
        if targeted:
            if self.guide_masks is None or self.guide_labels is None:
                raise ValueError(f"strategy {self.strategy!r} needs a guide pool: call attack.with_guides(masks, labels) first")
            if self.guide_masks.shape[-2:] != x.shape[-2:]:
                raise ValueError(f"guide masks are {tuple(self.guide_masks.shape[-2:])}, the images {tuple(x.shape[-2:])}: "
                                 "the pool must have the input's resolution")
            pool, top = self.guide_masks, getattr(model, "num_parts", None)
            if pool.numel() and (int(pool.min()) < UNLABELLED or (top is not None and int(pool.max()) > top)):
                raise ValueError(f"guide masks must hold part ids in [{UNLABELLED}, {top if top is not None else 'K'}], "
                                 f"got [{int(pool.min())}, {int(pool.max())}]")
        generator = None if self.seed is None else torch.Generator().manual_seed(self.seed)
        x = x.detach()
        with eval_mode(model):
            scores = self.guide_scores
            if self.strategy == "mc_sorted" and scores is None:
                scores = score_guide_masks(model, self.guide_masks)
            with torch.no_grad():
                clean_logits = model(x).float()
            targets, guides = choose_targets(self.strategy, clean_logits, y, self.guide_labels, scores, self.restarts, generator)
            unguided = int((targets[:, 0] == NO_TARGET).sum())
            if self.strategy != "untargeted" and unguided:
                warnings.warn(f"TwoStage({self.strategy!r}): {unguided} of {len(y)} sample(s) have no usable guide "
                              "in the pool; they are attacked untargeted", stacklevel=2)
            return self._run(model, x, y, masks, targets.to(x.device), guides, generator)

    def _run(self, model, x, y, masks, targets, guides, generator) -> torch.Tensor:
        pgd = self._pgd
        score = cross_entropy_objective(y)  # the final pick: CE w.r.t. the true label
        worst = WorstCase(x, track_fooling=True)
        plain_done: list[torch.Tensor] = []
        for r in range(self.restarts):
            guided = targets[:, r] != NO_TARGET  # per sample: descend toward the guide, else ascend (untargeted)
            sign = torch.where(guided, -1.0, 1.0)
            stage2 = _signed(cross_entropy_objective(torch.where(guided, targets[:, r], y)), sign)
            if self.first_stage:
                goal = masks
                if guided.any():
                    index = guides[:, r].clamp_min(0).to(self.guide_masks.device)
                    goal = torch.where(guided[:, None, None], self.guide_masks[index].to(x.device), masks)
                stage1 = _signed(seg_sum_objective(1.0, None, goal), sign)
                x1 = pgd.ascend(model, x, y, stage1, pgd.start(x, generator), worst)
                pgd.finish(model, pgd.ascend(model, x, y, stage2, x1, worst), y, score, worst)
            if (self.include_plain or not self.first_stage) and not any(torch.equal(targets[:, r], t) for t in plain_done):
                plain_done.append(targets[:, r])  # deterministic from x: one run per distinct target column
                pgd.finish(model, pgd.ascend(model, x, y, stage2, x, worst), y, score, worst)
        return worst.best_x.detach()


def _signed(objective: Objective, sign: torch.Tensor) -> Objective:
    """`objective` with its per-sample loss times `sign` (-1: descend, i.e. targeted)."""

    def signed(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, loss = objective(model, x)
        return logits, loss * sign

    return signed
