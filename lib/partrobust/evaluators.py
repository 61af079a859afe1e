"""Test-time evaluators behind one registry (name -> evaluator), run in order by `run_evaluators`.

An evaluator takes the `EvalContext` of one evaluation (model, test images, masks, labels, the
run's `EvalConfig`, seed, processes) and records per-sample outcomes and tidy rows in it. Every
evaluation runs ``clean`` first, then ``pgd`` (``eval.pgd``) and ``autoattack``
(``eval.autoattack``), then the attack-side evaluators listed in ``eval.evaluators`` (notebook 03),
then the gradient-masking checks (`partrobust.masking`, ``eval.masking_checks``), which read the
outcomes of everything that ran before them.

Attack-side evaluators (paper Appendix E.4):

* ``eps_sweep``: PGD and AutoAttack at each eps of ``eval.eps_sweep`` (Table 11). The PGD step
  scales with eps (``pgd_step_size * eps' / eps``), so the attack covers every ball the same way
  (the reference used ``max(0.001, eps / 40)``).
* ``seg_pgd``: PGD on ``(1 - c) CE + c L_seg`` for each c of ``eval.c_seg_attack`` (Table 12).
* ``two_stage``: the two-stage attacks of ``eval.two_stage_strategies`` (Table 13), the guide
  masks drawn from the evaluated test images, as the reference drew them from the test loader.
* ``rays``: the hard-label RayS attack with ``eval.rays_queries`` queries per image (E.4).

Parametrised metrics carry their parameter after an ``@``: ``autoattack_accuracy@eps=16/255``,
``pgd_accuracy@c_seg_attack=0.5``; reading results turns them into evaluations of their own
(`partrobust.results.expand_evaluations`), which the paper's tables index by eps and c_seg_attack.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from .attacks import PGD, RayS, SegPGD, TwoStage
from .attacks.autoattack import AutoAttackResult
from .attacks.two_stage import score_guide_masks
from .config import format_fraction
from .distributed import SINGLE, Dist
from .evaluation import EvalConfig, sample_outcomes
from .registry import Registry
from .results import parametrised_metric


@dataclass
class EvalContext:
    """One evaluation's inputs and what its evaluators found so far.

    outcomes: setting -> per-sample ``correct`` (bool, (N,)) and for part models ``pixel``.
    rows: tidy rows (``metric``, ``value`` in %, ``n``, ``note``) in the order they were recorded.
    """

    model: nn.Module
    x: torch.Tensor
    masks: torch.Tensor
    y: torch.Tensor
    cfg: EvalConfig
    seed: int = 0
    progress: bool = True
    dist: Dist = SINGLE
    state_dir: Path | None = None
    outcomes: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    autoattack: dict[str, AutoAttackResult] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_part_model(self) -> bool:
        return bool(getattr(self.model, "is_part_model", False))

    def attack_outcomes(self, attack: Callable[..., torch.Tensor] | None, desc: str = "", limit: int | None = None) -> dict[str, torch.Tensor]:
        """Per-sample outcomes of `attack` (None: clean) on the first `limit` images (None: all)."""
        x, masks, y = (t[:limit] for t in (self.x, self.masks, self.y))
        return sample_outcomes(self.model, x, masks, y, attack, self.cfg.batch_size, self.seed, self.dist,
                               self.progress and self.dist.is_main, desc)

    def record(self, setting: str, outcome: dict[str, torch.Tensor], note: str = "") -> None:
        """Stores `outcome` under `setting` and adds its accuracy (and pixel accuracy) rows.

        The metric of setting ``pgd@eps=16/255`` is ``pgd_accuracy@eps=16/255``.
        """
        self.outcomes[setting] = outcome
        base, _, params = setting.partition("@")
        suffix = f"@{params}" if params else ""
        n = len(outcome["correct"])
        self.rows.append({"metric": f"{base}_accuracy{suffix}", "value": 100.0 * outcome["correct"].float().mean().item(),
                          "n": n, "note": note})
        if "pixel" in outcome:
            self.rows.append({"metric": f"{base}_pixel_accuracy{suffix}", "value": 100.0 * outcome["pixel"].mean().item(),
                              "n": n, "note": note})


EVALUATORS: Registry[Callable[[EvalContext], None]] = Registry("evaluator")
"""Evaluator name -> function(context) that records its outcomes and rows in the context."""

NEEDS_PART_MODEL = ("seg_pgd", "two_stage")
"""Evaluators that attack the segmenter, so only part models can be evaluated with them."""


def pgd_note(attack: PGD) -> str:
    """How a PGD ran, for its rows' note: ``100 steps, step 0.001, 5 restarts``."""
    return f"{attack.steps} steps, step {format_fraction(attack.step_size)}, {attack.restarts} restarts"


def setting_name(attack: str, **param: Any) -> str:
    """``attack`` or ``attack@key=value`` (eps written as x/255 where it is a multiple of 1/255)."""
    if not param:
        return attack
    ((key, value),) = param.items()
    return parametrised_metric(attack, key, format_fraction(value) if key == "eps" else value)


# --------------------------------------------------------------------------- the standard evaluators


@EVALUATORS.register("clean")
def evaluate_clean(ctx: EvalContext) -> None:
    """Accuracy on the unperturbed images (NaN logits fail here, before any attack)."""
    ctx.record("clean", ctx.attack_outcomes(None))


@EVALUATORS.register("pgd")
def evaluate_pgd(ctx: EvalContext) -> None:
    """The test PGD (paper: 100 steps of 0.001, 5 restarts; a sample is broken if any iterate fools the model)."""
    attack = ctx.cfg.pgd_attack()
    ctx.record("pgd", ctx.attack_outcomes(attack, "PGD"), pgd_note(attack))


def _autoattack(ctx: EvalContext, eps: float, state_name: str, setting: str) -> None:
    cfg = ctx.cfg
    state_path = ctx.state_dir / state_name if ctx.state_dir is not None else None
    device = next(ctx.model.parameters()).device
    adapter = cfg.autoattack_adapter(state_path, ctx.seed, ctx.progress and ctx.dist.is_main, eps=eps)
    result = adapter.run(ctx.model, ctx.x.to(device), ctx.y.to(device), dist=ctx.dist)
    outcome = sample_outcomes(ctx.model, result.x_adv.cpu(), ctx.masks, ctx.y, None, cfg.batch_size, ctx.seed, ctx.dist)
    outcome["correct"] = result.robust.cpu()  # pointwise worst case as AutoAttack scored it
    ctx.autoattack[setting] = result
    ctx.record(setting, outcome, result.note)


@EVALUATORS.register("autoattack")
def evaluate_autoattack(ctx: EvalContext) -> None:
    """AutoAttack (standard version, resumable; `partrobust.attacks.autoattack`)."""
    _autoattack(ctx, ctx.cfg.eps, "autoattack_state.pt", "autoattack")


# --------------------------------------------------------------------------- attack-side evaluators (notebook 03)


@EVALUATORS.register("eps_sweep")
def evaluate_eps_sweep(ctx: EvalContext) -> None:
    """PGD and (with ``eval.autoattack``) AutoAttack at every eps of ``eval.eps_sweep`` (Table 11)."""
    cfg = ctx.cfg
    for eps in cfg.eps_sweep:
        attack = cfg.pgd_attack(eps=eps)
        ctx.record(setting_name("pgd", eps=eps), ctx.attack_outcomes(attack, f"PGD eps {format_fraction(eps)}"), pgd_note(attack))
        if cfg.autoattack:
            _autoattack(ctx, eps, f"autoattack_state_eps{round(eps * 255)}.pt", setting_name("autoattack", eps=eps))


@EVALUATORS.register("seg_pgd")
def evaluate_seg_pgd(ctx: EvalContext) -> None:
    """PGD whose objective adds the segmentation loss, one weight of ``eval.c_seg_attack`` at a time (Table 12)."""
    cfg = ctx.cfg
    for c in cfg.c_seg_attack:
        attack = SegPGD(eps=cfg.eps, step_size=cfg.pgd_step_size, steps=cfg.pgd_steps, restarts=cfg.pgd_restarts, c_seg=c)
        ctx.record(setting_name("pgd", c_seg_attack=c), ctx.attack_outcomes(attack, f"PGD c_seg {c}"),
                   f"objective (1 - {c}) CE + {c} L_seg; {pgd_note(attack)}")


@EVALUATORS.register("two_stage")
def evaluate_two_stage(ctx: EvalContext) -> None:
    """The two-stage attacks of ``eval.two_stage_strategies`` (Table 13), guides from the evaluated test images."""
    cfg = ctx.cfg
    device = next(ctx.model.parameters()).device
    scores = score_guide_masks(ctx.model, ctx.masks.to(device)) if "mc_sorted" in cfg.two_stage_strategies else None
    for strategy in cfg.two_stage_strategies:
        # seed None: the random draws come from the generator `sample_outcomes` seeds per batch
        attack = TwoStage(strategy=strategy, eps=cfg.eps, step_size=cfg.pgd_step_size, steps=cfg.pgd_steps,
                          restarts=cfg.pgd_restarts, seed=None).with_guides(ctx.masks.to(device), ctx.y.to(device), scores)
        ctx.record(f"two_stage_{strategy}", ctx.attack_outcomes(attack, f"two-stage {strategy}"),
                   f"{cfg.pgd_restarts} guides, {cfg.pgd_steps} steps per stage, step {format_fraction(cfg.pgd_step_size)}")


@EVALUATORS.register("rays")
def evaluate_rays(ctx: EvalContext) -> None:
    """RayS, the hard-label black-box attack (Appendix E.4), ``eval.rays_queries`` queries per image."""
    cfg = ctx.cfg
    attack = RayS(eps=cfg.eps, query_limit=cfg.rays_queries, seed=ctx.seed)
    ctx.record("rays", ctx.attack_outcomes(attack, "RayS"), f"{cfg.rays_queries} queries per image")


def evaluator_sequence(cfg: EvalConfig) -> list[str]:
    """The evaluators one evaluation runs, in order."""
    return ["clean", *(["pgd"] if cfg.pgd else []), *(["autoattack"] if cfg.autoattack else []), *cfg.evaluators]


def run_evaluators(ctx: EvalContext) -> list[dict[str, Any]]:
    """Runs `evaluator_sequence` and then the gradient-masking checks; returns the rows."""
    from .masking import masking_checks

    names = evaluator_sequence(ctx.cfg)
    segmenter_attacks = [name for name in names if name in NEEDS_PART_MODEL]
    if segmenter_attacks and not ctx.is_part_model:  # before any attack runs
        raise ValueError(f"eval.evaluators: {segmenter_attacks} attack the segmenter; {type(ctx.model).__name__} is not a part model")
    for name in names:
        EVALUATORS.get(name)(ctx)
    if ctx.cfg.masking_checks:
        ctx.rows.extend(masking_checks(ctx))
    return ctx.rows
