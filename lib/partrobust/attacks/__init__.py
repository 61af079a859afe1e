"""Attacks in [0, 1] pixel space; each is called as ``attack(model, x, y) -> x_adv`` (the attacks on the
segmenter, whose ``needs_masks`` is True, as ``attack(model, x, y, masks)``)."""
from __future__ import annotations

from typing import Any, Callable

from ..core.registry import Registry
from .autoattack import AutoAttack, AutoAttackResult, select_attacks
from .base import InvalidInputError, check_images, check_logits, eval_mode
from .pgd import PGD
from .rays import RayS, RaySResult
from .seg_pgd import SegPGD
from .trades import TradesKL
from .two_stage import TwoStage

ATTACKS: Registry[Callable[..., Any]] = Registry("attack")
ATTACKS.register("pgd")(PGD)
ATTACKS.register("trades_kl")(TradesKL)
ATTACKS.register("autoattack")(AutoAttack)
ATTACKS.register("seg_pgd")(SegPGD)
ATTACKS.register("two_stage")(TwoStage)
ATTACKS.register("rays")(RayS)


def build_attack(name: str, **kwargs: Any) -> Callable[..., Any]:
    """Builds a registered attack by name (``pgd``, ``trades_kl``, ``autoattack``, ``seg_pgd``, ``two_stage``, ``rays``)."""
    return ATTACKS.build(name, **kwargs)


__all__ = ["ATTACKS", "AutoAttack", "AutoAttackResult", "InvalidInputError", "PGD", "RayS", "RaySResult", "SegPGD", "TradesKL",
           "TwoStage", "build_attack", "check_images", "check_logits", "eval_mode", "select_attacks"]
