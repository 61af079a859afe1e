"""The evaluation of a run (section ``eval``): which attacks and benchmarks run on the test split, with what budget.

Defaults are the paper's: eps 8/255; PGD with 100 steps of 0.001 and 5 restarts; the standard
AutoAttack. `EvalConfig.pgd_attack` and `EvalConfig.autoattack_adapter` build the attacks it names.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from ..attacks import PGD, AutoAttack
from ..attacks.autoattack import KNOWN_ATTACKS, STANDARD_ITERATIONS, STANDARD_SQUARE_QUERIES
from ..core.config import Fraction, Section
from .benchmarks.corruptions import CORRUPTIONS, SEVERITIES


class EvalConfig(Section):
    """Which attacks run on the test split and with what budget (section ``eval``; paper defaults)."""

    eps: Fraction = Field("8/255", description="L-inf budget of the test attacks")
    pgd: bool = Field(True, description="run the test PGD (false: e.g. normally trained models scored only on the benchmarks)")
    pgd_steps: int = Field(100, ge=1, description="test PGD steps")
    pgd_step_size: Fraction = Field(0.001, description="test PGD step")
    pgd_restarts: int = Field(5, ge=1, description="test PGD restarts (a sample is broken if any restart fools the model)")
    autoattack: bool = Field(True, description="run AutoAttack (standard version)")
    autoattack_attacks: list[str] | None = Field(None, description="None: the standard suite for the class count; or a list, e.g. [apgd-ce, apgd-t]")
    autoattack_iterations: int = Field(STANDARD_ITERATIONS, ge=1, description="APGD and FAB iterations (standard 100; fewer for CPU runs on the built-in data, noted in the results)")
    autoattack_square_queries: int = Field(STANDARD_SQUARE_QUERIES, ge=1, description="Square attack queries (standard 5000; fewer for CPU runs on the built-in data, noted in the results)")
    autoattack_batch_size: int | Literal["auto"] | None = Field(
        None, description="AutoAttack's chunk size (None: eval.batch_size; auto: the largest that fits in free GPU memory, "
        "measured, written in the result's note; the chunking changes AutoAttack's random draws, so it is part of the run id)")
    limit: int | None = Field(None, ge=1, description="evaluate the first N test images (None: all)")
    batch_size: int = Field(128, ge=1, description="evaluation batch size")
    benchmarks: list[Literal["common_corruption", "spurious_correlation", "shape_vs_texture"]] = Field(
        [], description="non-adversarial benchmarks made from the first `limit` test images and scored (notebook 04)")
    corruptions: list[str] | None = Field(None, description="common_corruption: ImageNet-C types (None: all 15)")
    corruption_severities: list[int] = Field(list(SEVERITIES), description="common_corruption: severities (1-5)")
    benchmark_seed: int = Field(0, ge=0, description="seed of the benchmarks' random draws (the same images for every model and training seed)")
    imagenet9_root: str | None = Field(None, description="spurious_correlation: an ImageNet-9 folder (only_fg/, only_bg_t/) to use the paper's source instead of the dataset's own masks")
    style_encoder: str | None = Field(None, description="shape_vs_texture: local AdaIN encoder weights (vgg_normalised.pth); needed for real datasets")
    style_decoder: str | None = Field(None, description="shape_vs_texture: local AdaIN decoder weights (decoder.pth)")
    style_alpha: float = Field(1.0, ge=0, le=1, description="shape_vs_texture: AdaIN style strength")
    evaluators: list[Literal["eps_sweep", "seg_pgd", "two_stage", "rays"]] = Field(
        [], description="attack-side evaluations after PGD and AutoAttack (notebook 03; partrobust.eval.evaluators)")
    eps_sweep: list[Fraction] = Field(["16/255", "24/255", "32/255"], description="eps_sweep: further budgets for PGD and AutoAttack (Table 11); the PGD step scales with eps")
    c_seg_attack: list[float] = Field([0.1, 0.3, 0.5, 0.7, 0.9], description="seg_pgd: weights of the segmentation loss in the PGD objective (Table 12)")
    two_stage_strategies: list[Literal["untargeted", "random", "mc_random", "mc_sorted"]] = Field(
        ["untargeted", "random", "mc_random", "mc_sorted"], description="two_stage: first-stage strategies (Table 13)")
    rays_queries: int = Field(10_000, ge=1, description="rays: query budget per image of the hard-label RayS attack (Appendix E.4)")
    masking_checks: bool = Field(True, description="gradient-masking checks after the attacks (result rows gradient_masking_*; a failure warns loudly)")
    masking_check_limit: int = Field(512, ge=1, description="masking checks: the extra PGD runs use the first N evaluated images")

    @field_validator("benchmarks", "evaluators", "two_stage_strategies")
    @classmethod
    def _once_each(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError(f"listed twice: {sorted({n for n in names if names.count(n) > 1})}")
        return names

    @field_validator("autoattack_batch_size")
    @classmethod
    def _positive_batch(cls, size: int | str | None) -> int | str | None:
        if isinstance(size, int) and size < 1:
            raise ValueError(f"expected a batch size >= 1, auto or null, got {size}")
        return size

    @field_validator("corruptions")
    @classmethod
    def _known_corruptions(cls, names: list[str] | None) -> list[str] | None:
        unknown = sorted(set(names or ()) - set(CORRUPTIONS))
        if unknown:
            raise ValueError(f"unknown corruption(s) {unknown}; known: {', '.join(CORRUPTIONS)}")
        if names is not None and not names:
            raise ValueError("empty list: name at least one corruption, or null for all 15")
        return names

    @field_validator("corruption_severities")
    @classmethod
    def _known_severities(cls, severities: list[int]) -> list[int]:
        if not severities or set(severities) - set(SEVERITIES):
            raise ValueError(f"severities must be a non-empty subset of {list(SEVERITIES)}")
        return severities

    @field_validator("c_seg_attack")
    @classmethod
    def _weights(cls, weights: list[float]) -> list[float]:
        if not weights or any(not 0.0 <= w <= 1.0 for w in weights):
            raise ValueError(f"expected a non-empty list of weights in [0, 1], got {weights}")
        return weights

    @field_validator("eps_sweep")
    @classmethod
    def _budgets(cls, budgets: list[float]) -> list[float]:
        if not budgets:
            raise ValueError("expected at least one eps")
        return budgets

    def benchmark_options(self) -> dict[str, Any]:
        """The options the benchmarks' images depend on (recorded in their folders' hash)."""
        options: dict[str, Any] = {}
        if "common_corruption" in self.benchmarks:
            options.update(corruptions=self.corruptions or list(CORRUPTIONS), severities=self.corruption_severities)
        if "spurious_correlation" in self.benchmarks and self.imagenet9_root:
            options["imagenet9_root"] = self.imagenet9_root
        if "shape_vs_texture" in self.benchmarks and (self.style_encoder or self.style_decoder):
            options.update(style_encoder=self.style_encoder, style_decoder=self.style_decoder, style_alpha=self.style_alpha)
        return options

    @field_validator("autoattack_attacks")
    @classmethod
    def _known_attacks(cls, attacks: list[str] | None) -> list[str] | None:
        if attacks is None:
            return None
        if not attacks:
            raise ValueError("empty list: name at least one attack, or null for the standard suite")
        unknown = [a for a in attacks if a not in KNOWN_ATTACKS]
        if unknown:
            raise ValueError(f"unknown AutoAttack attack(s) {unknown}; known: {', '.join(KNOWN_ATTACKS)}")
        if len(set(attacks)) != len(attacks):
            raise ValueError(f"attacks listed twice: {sorted({a for a in attacks if attacks.count(a) > 1})}")
        return attacks

    def pgd_attack(self, eps: float | None = None, steps: int | None = None, restarts: int | None = None) -> PGD:
        """The test PGD, or a variant of it: at another `eps` (the step scales with it, ``pgd_step_size * eps /
        eval.eps``), with fewer `steps` or `restarts` (the eps sweep and the gradient-masking checks)."""
        step = self.pgd_step_size if eps is None else self.pgd_step_size * eps / self.eps
        return PGD(eps=self.eps if eps is None else eps, step_size=step, steps=self.pgd_steps if steps is None else steps,
                   restarts=self.pgd_restarts if restarts is None else restarts)

    def autoattack_adapter(self, state_path: Path | None, seed: int = 0, progress: bool = True, eps: float | None = None) -> AutoAttack:
        """The AutoAttack of this config, at `eps` (default: ``eval.eps``)."""
        return AutoAttack(
            eps=self.eps if eps is None else eps,
            seed=seed,
            batch_size=self.batch_size if self.autoattack_batch_size is None else self.autoattack_batch_size,
            attacks=self.autoattack_attacks,
            state_path=state_path,
            progress=progress,
            iterations=self.autoattack_iterations,
            square_queries=self.autoattack_square_queries,
        )
