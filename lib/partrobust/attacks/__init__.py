"""Attacks in [0, 1] pixel space; each is called as ``attack(model, x, y) -> x_adv``."""
from __future__ import annotations

from typing import Any, Callable

from ..registry import Registry
from .autoattack import AutoAttack, AutoAttackResult, select_attacks
from .base import InvalidInputError, check_images, check_logits, eval_mode
from .pgd import PGD
from .trades import TradesKL

ATTACKS: Registry[Callable[..., Any]] = Registry("attack")
ATTACKS.register("pgd")(PGD)
ATTACKS.register("trades_kl")(TradesKL)
ATTACKS.register("autoattack")(AutoAttack)


def build_attack(name: str, **kwargs: Any) -> Callable[..., Any]:
    """Builds a registered attack by name (``pgd``, ``trades_kl``, ``autoattack``)."""
    return ATTACKS.build(name, **kwargs)


__all__ = ["ATTACKS", "AutoAttack", "AutoAttackResult", "InvalidInputError", "PGD", "TradesKL", "build_attack", "check_images",
           "check_logits", "eval_mode", "select_attacks"]
