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
  correct than a PGD with a tenth of the steps and one restart, started elsewhere.
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

from ..core.config import format_fraction
from .context import EvalContext, setting_name

HIGH_EPS_FACTOR = 4
HIGH_EPS_MAX_ACCURACY = 5.0
"""Accuracy (%) above which PGD at 4x eps is said not to have broken the model."""
MARGIN = 1.0
"""Percentage points of slack in the comparisons (at least one image)."""
FEWER_STEPS_DIVISOR = 10


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


def check_more_steps(ctx: EvalContext, limit: int) -> dict[str, Any]:
    """The evaluation PGD against one restart of a tenth of its steps, on the same images."""
    cfg = ctx.cfg
    steps = max(1, cfg.pgd_steps // FEWER_STEPS_DIVISOR)
    weak = ctx.attack_outcomes(cfg.pgd_attack(steps=steps, restarts=1), "masking check: fewer steps", limit)
    strong = ctx.outcomes["pgd"]["correct"][:limit]
    n = len(strong)
    rise = _accuracy(strong) - _accuracy(weak["correct"])
    passed = rise <= _margin(n)
    detail = (f"PGD with {cfg.pgd_steps} steps x {cfg.pgd_restarts} restart(s) leaves {_accuracy(strong):.1f} % correct, "
              f"{steps} step(s) x 1 restart {_accuracy(weak['correct']):.1f} %")
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
