"""One evaluation's context: model, test images, config, and the outcomes and rows its evaluators recorded."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from ..attacks import PGD
from ..attacks.autoattack import AutoAttackResult
from ..core.config import format_fraction
from ..core.distributed import SINGLE, Dist
from ..core.metrics import parametrised_metric
from .config import EvalConfig
from .outcomes import sample_outcomes


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


def pgd_note(attack: PGD) -> str:
    """How a PGD ran, for its rows' note: ``100 steps, step 0.001, 5 restarts``."""
    return f"{attack.steps} steps, step {format_fraction(attack.step_size)}, {attack.restarts} restarts"


def setting_name(attack: str, **param: Any) -> str:
    """``attack`` or ``attack@key=value`` (eps written as x/255 where it is a multiple of 1/255)."""
    if not param:
        return attack
    ((key, value),) = param.items()
    return parametrised_metric(attack, key, format_fraction(value) if key == "eps" else value)
