"""Test-time evaluators behind one registry (name -> evaluator), run in order by `run_evaluators`.

An evaluator takes the `EvalContext` of one evaluation (model, test images, masks, labels, the
run's `EvalConfig`, seed, processes) and records per-sample outcomes and tidy rows in it. Every
evaluation runs ``clean`` first, then ``pgd`` (``eval.pgd``) and ``autoattack``
(``eval.autoattack``), then the attack-side evaluators listed in ``eval.evaluators`` (notebook 03),
then the gradient-masking checks (`partrobust.eval.masking`, ``eval.masking_checks``), which read the
outcomes of everything that ran before them.

Attack-side evaluators (paper Appendix E.4):

* ``eps_sweep``: PGD and AutoAttack at each eps of ``eval.eps_sweep`` (Table 11). The PGD step
  scales with eps (``pgd_step_size * eps' / eps``), so the attack covers every ball the same way
  (the reference used ``max(0.001, eps / 40)``).
* ``seg_pgd``: PGD on ``(1 - c) CE + c L_seg`` for each c of ``eval.c_seg_attack`` (Table 12).
* ``two_stage``: the two-stage attacks of ``eval.two_stage_strategies`` (Table 13), the guide
  masks drawn from the evaluated test images, as the reference drew them from the test loader.
  Stage 2 also runs from the clean image (``include_plain``), so each number is the minimum of two
  attacks; the rows' note says so (`TwoStage.note`).
* ``rays``: the hard-label RayS attack with ``eval.rays_queries`` queries per image (E.4), at the
  reference's binary-search tolerance (`partrobust.attacks.rays.reference_tolerance`).

Parametrised metrics carry their parameter after an ``@``: ``autoattack_accuracy@eps=16/255``,
``pgd_accuracy@c_seg_attack=0.5``; reading results turns them into evaluations of their own
(`partrobust.core.results.expand_evaluations`), which the paper's tables index by eps and c_seg_attack.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from ..attacks import RayS, SegPGD, TwoStage, check_images
from ..attacks.rays import reference_tolerance
from ..attacks.two_stage import score_guide_masks
from ..core.config import format_fraction
from ..core.device import float32_precision
from ..core.distributed import SINGLE, Dist
from ..core.registry import Registry
from .config import EvalConfig
from .context import EvalContext, pgd_note, setting_name
from .masking import masking_checks
from .outcomes import sample_outcomes

EVALUATORS: Registry[Callable[[EvalContext], None]] = Registry("evaluator")
"""Evaluator name -> function(context) that records its outcomes and rows in the context."""

NEEDS_PART_MODEL = ("seg_pgd", "two_stage")
"""Evaluators that attack the segmenter, so only part models can be evaluated with them."""


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
        ctx.record(f"two_stage_{strategy}", ctx.attack_outcomes(attack, f"two-stage {strategy}"), attack.note())


@EVALUATORS.register("rays")
def evaluate_rays(ctx: EvalContext) -> None:
    """RayS, the hard-label black-box attack (Appendix E.4), ``eval.rays_queries`` queries per image."""
    cfg = ctx.cfg
    attack = RayS(eps=cfg.eps, query_limit=cfg.rays_queries, seed=ctx.seed)
    tolerance = format(reference_tolerance(ctx.x.shape[1:]), ".2g")
    ctx.record("rays", ctx.attack_outcomes(attack, "RayS"),
               f"{cfg.rays_queries} queries per image; binary-search tolerance {tolerance} pixel units (the reference's 1e-3 / sqrt(C*H*W))")


def evaluator_sequence(cfg: EvalConfig) -> list[str]:
    """The evaluators one evaluation runs, in order."""
    return ["clean", *(["pgd"] if cfg.pgd else []), *(["autoattack"] if cfg.autoattack else []), *cfg.evaluators]


def run_evaluators(ctx: EvalContext) -> list[dict[str, Any]]:
    """Runs `evaluator_sequence` and then the gradient-masking checks; returns the rows."""
    names = evaluator_sequence(ctx.cfg)
    segmenter_attacks = [name for name in names if name in NEEDS_PART_MODEL]
    if segmenter_attacks and not ctx.is_part_model:  # before any attack runs
        raise ValueError(f"eval.evaluators: {segmenter_attacks} attack the segmenter; {type(ctx.model).__name__} is not a part model")
    for name in names:
        EVALUATORS.get(name)(ctx)
    if ctx.cfg.masking_checks:
        ctx.rows.extend(masking_checks(ctx))
    return ctx.rows


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    masks: torch.Tensor,
    y: torch.Tensor,
    cfg: EvalConfig,
    state_dir: Path | None = None,
    seed: int = 0,
    progress: bool = True,
    dist: Dist = SINGLE,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, torch.Tensor]]]:
    """Evaluates clean, PGD and (optionally) AutoAttack accuracy on (x, y), in eval mode and full
    fp32 (TF32 off for matmuls and convolutions whatever training used; restored afterwards).

    With several processes (`dist`), each attacks its share of the batches (PGD) or chunks
    (AutoAttack); the per-sample outcomes are gathered, and since every batch and chunk is seeded
    by its index, they equal those of one process.

    Returns:
        rows: one dict per metric (``metric``, ``value`` in %, ``n``, ``note``).
        outcomes: per setting ("clean", "pgd", "autoattack"), per-sample ``correct`` (bool) and,
            for part models, ``pixel`` (pixel accuracy of the predicted mask).
    """
    with float32_precision(tf32=False):
        return _evaluate(model, x, masks, y, cfg, state_dir, seed, progress, dist)


def _evaluate(model, x, masks, y, cfg: EvalConfig, state_dir, seed: int, progress: bool, dist: Dist):
    model.eval()
    check_images(x, "test images")
    ctx = EvalContext(model, x, masks, y, cfg, seed=seed, progress=progress and dist.is_main, dist=dist, state_dir=state_dir)
    return run_evaluators(ctx), ctx.outcomes
