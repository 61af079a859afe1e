"""Gradient-masking checks, run after every adversarial evaluation (Carlini et al. 2019, "On Evaluating
Adversarial Robustness"; Athalye et al. 2018).

A model that hides its gradients (rounding, randomness, saturated softmax) looks robust to
gradient attacks without being robust. These checks look for the symptoms, on the outcomes the
evaluation already has plus two cheap extra PGD runs on the first ``eval.masking_check_limit``
images:

* ``high_eps``: PGD at 4x the evaluation eps (32/255 for 8/255) must bring accuracy near 0
  (at most `HIGH_EPS_MAX_ACCURACY` %): an attack that may change the image that much and still
  fails is not following a useful gradient.
* ``more_steps``: the evaluation PGD (all its steps and restarts) must not leave more images
  correct than a coarse PGD with a tenth of the steps and one restart, whose step
  (`COARSE_STEP_FACTOR` x eps / steps, Madry et al.'s rule) lets it cross the whole eps-ball. Many
  small steps losing to a few large ones means the gradient is only locally informative (shattered
  gradients, e.g. a model that quantises its input through a differentiable staircase): the small
  steps get stuck. (Before, the coarse run took the evaluation's own step, 10 x 0.001 < 8/255, from
  the same random start as the evaluation's first restart: the prefix of that restart, it could
  never break more images, so the check could never fail.) A model whose gradient is zero
  everywhere (hard rounding) moves neither run; ``high_eps`` and ``black_box`` catch that one.
* ``black_box``: no black-box attack may break images that the white-box attacks left correct:
  Square inside AutoAttack (it runs last, on the images APGD and FAB left correct) and RayS
  (``eval.evaluators: [rays]``) against PGD and AutoAttack.
* ``eps_monotone`` (with ``eval.evaluators: [eps_sweep]``): accuracy must not rise with eps.

Each check is a result row ``gradient_masking_<check>`` whose value is the measured quantity in
percent and whose note starts with ``passed`` or ``FAILED``. A failed check is also raised as a
`GradientMaskingWarning` and printed to stderr: never hidden. Differences of one image or one
percentage point (`MARGIN`) are within the noise of independent random starts.
"""
from __future__ import annotations

import sys
import warnings
from typing import Any

import torch

from ..attacks import PGD
from ..core.config import format_fraction
from .config import EvalConfig
from .context import EvalContext, setting_name

HIGH_EPS_FACTOR = 4
HIGH_EPS_MAX_ACCURACY = 5.0
"""Accuracy (%) above which PGD at 4x eps is said not to have broken the model."""
MARGIN = 1.0
"""Percentage points of slack in the comparisons (at least one image)."""
FEWER_STEPS_DIVISOR = 10
COARSE_STEP_FACTOR = 2.5
"""The ``more_steps`` run's step is this x eps / its steps: its steps add up to 2.5 eps, more than the ball's width."""


class GradientMaskingWarning(UserWarning):
    """A gradient-masking check failed: the evaluation's robust accuracy may be overestimated."""


def _margin(n: int) -> float:
    return max(MARGIN, 100.0 / max(n, 1))


def _accuracy(correct: torch.Tensor) -> float:
    return 100.0 * correct.float().mean().item()


def _row(check: str, value: float, n: int, passed: bool, detail: str) -> dict[str, Any]:
    return {"metric": f"gradient_masking_{check}", "value": value, "n": n,
            "note": f"{'passed' if passed else 'FAILED'}: {detail}"}


def check_high_eps(ctx: EvalContext, limit: int) -> dict[str, Any]:
    """PGD (one restart, the evaluation's steps, step scaled with eps) at `HIGH_EPS_FACTOR` x eps."""
    cfg = ctx.cfg
    eps = min(1.0, HIGH_EPS_FACTOR * cfg.eps)
    outcome = ctx.attack_outcomes(cfg.pgd_attack(eps=eps, restarts=1), "masking check: PGD 4x eps", limit)
    acc = _accuracy(outcome["correct"])
    passed = acc <= HIGH_EPS_MAX_ACCURACY
    detail = (f"PGD at eps {format_fraction(eps)} ({HIGH_EPS_FACTOR}x the evaluation's; {cfg.pgd_steps} steps, 1 restart) "
              f"leaves {acc:.1f} % correct (at most {HIGH_EPS_MAX_ACCURACY:g} % expected)")
    return _row("high_eps", acc, len(outcome["correct"]), passed, detail)


def coarse_pgd(cfg: EvalConfig) -> PGD:
    """The ``more_steps`` check's attack: a tenth of the evaluation's steps, one restart, each step
    `COARSE_STEP_FACTOR` x eps / steps (so it can reach any point of the eps-ball)."""
    steps = max(1, cfg.pgd_steps // FEWER_STEPS_DIVISOR)
    return PGD(eps=cfg.eps, step_size=COARSE_STEP_FACTOR * cfg.eps / steps, steps=steps, restarts=1)


def check_more_steps(ctx: EvalContext, limit: int) -> dict[str, Any]:
    """The evaluation PGD against `coarse_pgd` on the same images: many small steps must not lose to a few large ones."""
    cfg = ctx.cfg
    coarse = coarse_pgd(cfg)
    weak = ctx.attack_outcomes(coarse, "masking check: fewer, larger steps", limit)
    strong = ctx.outcomes["pgd"]["correct"][:limit]
    n = len(strong)
    rise = _accuracy(strong) - _accuracy(weak["correct"])
    passed = rise <= _margin(n)
    detail = (f"PGD with {cfg.pgd_steps} steps of {format_fraction(cfg.pgd_step_size)} x {cfg.pgd_restarts} restart(s) leaves "
              f"{_accuracy(strong):.1f} % correct, {coarse.steps} step(s) of {format_fraction(coarse.step_size)} x 1 restart "
              f"{_accuracy(weak['correct']):.1f} %")
    return _row("more_steps", rise, n, passed, detail)


def _white_box_correct(ctx: EvalContext) -> torch.Tensor:
    correct = ctx.outcomes["pgd"]["correct"].clone()
    if "autoattack" in ctx.outcomes:
        correct &= ctx.outcomes["autoattack"]["correct"]
    return correct


def check_black_box(ctx: EvalContext) -> list[dict[str, Any]]:
    """Images broken by Square (inside AutoAttack) or RayS but by no white-box attack."""
    rows = []
    result = ctx.autoattack.get("autoattack")
    if result is not None and "square" in result.attacks and result.attacks.index("square") > 0:
        before = result.attacks[result.attacks.index("square") - 1]
        share = 100.0 * (result.robust_after[before] - result.robust_after["square"])
        n = len(result.robust)
        rows.append(_row("black_box_square", share, n, share <= _margin(n),
                         f"Square broke {share:.1f} % of the images that {', '.join(result.attacks[:result.attacks.index('square')])} left correct"))
    if "rays" in ctx.outcomes:
        white = _white_box_correct(ctx)
        only_rays = white & ~ctx.outcomes["rays"]["correct"]
        share = _accuracy(only_rays)
        n = len(white)
        rows.append(_row("black_box_rays", share, n, share <= _margin(n),
                         f"RayS broke {share:.1f} % of the images that PGD{' and AutoAttack' if 'autoattack' in ctx.outcomes else ''} "
                         "left correct"))
    return rows


def check_eps_monotone(ctx: EvalContext) -> list[dict[str, Any]]:
    """Accuracy at the eps of the eps sweep (and the evaluation's) must not rise with eps."""
    rows = []
    budgets = sorted({ctx.cfg.eps, *ctx.cfg.eps_sweep})
    for attack in ("pgd", "autoattack"):
        settings = [attack if eps == ctx.cfg.eps else setting_name(attack, eps=eps) for eps in budgets]
        if not all(s in ctx.outcomes for s in settings):
            continue
        accuracies = [_accuracy(ctx.outcomes[s]["correct"]) for s in settings]
        rise = max([later - earlier for earlier, later in zip(accuracies, accuracies[1:])], default=0.0)
        n = len(ctx.outcomes[settings[0]]["correct"])
        listing = ", ".join(f"{format_fraction(e)}: {a:.1f}" for e, a in zip(budgets, accuracies))
        rows.append(_row(f"eps_monotone_{attack}", rise, n, rise <= _margin(n), f"{attack} accuracy (%) by eps: {listing}"))
    return rows


def masking_checks(ctx: EvalContext) -> list[dict[str, Any]]:
    """Every check that applies to what the evaluation ran (none without the test PGD); warns on failures."""
    if "pgd" not in ctx.outcomes:
        return []
    limit = min(ctx.cfg.masking_check_limit, len(ctx.y))
    rows = [check_high_eps(ctx, limit), check_more_steps(ctx, limit), *check_black_box(ctx), *check_eps_monotone(ctx)]
    for row in rows:
        if row["note"].startswith("FAILED"):
            message = f"gradient-masking check {row['metric']} FAILED: {row['note'][len('FAILED: '):]}"
            warnings.warn(message, GradientMaskingWarning, stacklevel=2)
            if ctx.dist.is_main:
                print(f"[partrobust] WARNING {message}", file=sys.stderr, flush=True)
    return rows
