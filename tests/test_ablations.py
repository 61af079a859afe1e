"""Notebook 03's machinery: evaluators, gradient-masking checks, parametrised metrics, sections, verdicts."""
import math
import warnings

import pandas as pd
import pytest
import torch
from torch import nn

from partrobust.report.ablations import ABLATIONS, ablation_table, chosen_sections, masking_table, section_results, verdict
from partrobust.core.config import ParameterError
from partrobust.eval.config import EvalConfig
from partrobust.eval.evaluators import evaluate
from partrobust.eval.evaluators import EVALUATORS, evaluator_sequence
from partrobust.eval.masking import GradientMaskingWarning
from partrobust.core.results import expand_evaluations
from partrobust.core.metrics import parametrised_metric, split_metric
from partrobust.runs.runconfig import identity, make_run_config, run_id
from partrobust.runs.sweep import Plan, expand

from conftest import tiny_run_values


class Linear(nn.Module):
    """Binary linear classifier on 3x4x4 images: logits (0, w.x + b). PGD's sign step is optimal for it."""

    def __init__(self, w: torch.Tensor, b: float, rounding: int = 0) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.b = b
        self.rounding = rounding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rounding:  # deliberately masked: rounding has zero gradient almost everywhere
            x = torch.round(x * self.rounding) / self.rounding
        score = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(score), score], dim=1)


def linear_problem(rounding: int = 0):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(48, generator=g)
    x = 0.3 + 0.4 * torch.rand(64, 3, 4, 4, generator=g)
    scores = x.flatten(1) @ w
    model = Linear(w, -float(scores.median()), rounding)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, torch.zeros(64, 4, 4, dtype=torch.long), y


def checks_of(rows):
    return {r["metric"]: r for r in rows if r["metric"].startswith("gradient_masking_")}


CHECK_CONFIG = dict(eps="8/255", pgd_steps=10, pgd_step_size="2/255", pgd_restarts=1, autoattack=False, evaluators=["rays"],
                    rays_queries=300, batch_size=64)


def test_masking_checks_stay_quiet_on_a_normal_model():
    model, x, masks, y = linear_problem()
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientMaskingWarning)
        rows, outcomes = evaluate(model, x, masks, y, EvalConfig(**CHECK_CONFIG), progress=False)
    checks = checks_of(rows)
    assert set(checks) == {"gradient_masking_high_eps", "gradient_masking_more_steps", "gradient_masking_black_box_rays"}
    assert all(r["note"].startswith("passed") for r in checks.values()), checks
    assert checks["gradient_masking_high_eps"]["value"] <= 5.0
    assert 0 < outcomes["pgd"]["correct"].float().mean() < 1  # a real test: eps 8/255 breaks some, not all


def test_masking_checks_fire_on_a_model_that_rounds_its_input():
    model, x, masks, y = linear_problem(rounding=4)
    with pytest.warns(GradientMaskingWarning, match="high_eps"):
        rows, _ = evaluate(model, x, masks, y, EvalConfig(**CHECK_CONFIG), progress=False)
    checks = checks_of(rows)
    assert checks["gradient_masking_high_eps"]["note"].startswith("FAILED")
    assert checks["gradient_masking_high_eps"]["value"] > 5.0
    assert checks["gradient_masking_black_box_rays"]["note"].startswith("FAILED")  # RayS needs no gradient


def test_eps_sweep_rows_and_monotone_check():
    model, x, masks, y = linear_problem()
    cfg = EvalConfig(**{**CHECK_CONFIG, "evaluators": ["eps_sweep"], "eps_sweep": ["16/255", "32/255"]})
    rows, outcomes = evaluate(model, x, masks, y, cfg, progress=False)
    values = {r["metric"]: r["value"] for r in rows}
    assert values["pgd_accuracy"] >= values["pgd_accuracy@eps=16/255"] >= values["pgd_accuracy@eps=32/255"]
    assert "2 steps" not in [r["note"] for r in rows if r["metric"] == "pgd_accuracy@eps=32/255"][0]
    assert "step 8/255" in [r["note"] for r in rows if r["metric"] == "pgd_accuracy@eps=32/255"][0]  # step scales with eps
    assert checks_of(rows)["gradient_masking_eps_monotone_pgd"]["note"].startswith("passed")


def test_evaluators_are_one_registry_and_run_in_order():
    assert {"clean", "pgd", "autoattack", "eps_sweep", "seg_pgd", "two_stage", "rays"} <= set(EVALUATORS.names())
    cfg = EvalConfig(autoattack=False, evaluators=["rays", "eps_sweep"])
    assert evaluator_sequence(cfg) == ["clean", "pgd", "rays", "eps_sweep"]
    with pytest.raises(ValueError, match="listed twice"):
        EvalConfig(evaluators=["rays", "rays"])
    with pytest.raises(ValueError):
        EvalConfig(evaluators=["hopskipjump"])


def test_segmenter_attacks_need_a_part_model(tiny_dataset):
    values = tiny_run_values(tiny_dataset)
    with pytest.raises(ParameterError, match="eval.evaluators"):
        make_run_config(values, {"model.name": "resnet", "eval.evaluators": ["two_stage"]})
    with pytest.raises(ParameterError, match="mc_sorted"):
        make_run_config(values, {"model.name": "two_headed", "eval.evaluators": ["two_stage"]})
    make_run_config(values, {"model.name": "two_headed", "eval.evaluators": ["two_stage"],
                             "eval.two_stage_strategies": ["untargeted", "random"]})


def test_new_eval_keys_leave_existing_run_ids_alone(tiny_dataset):
    values = tiny_run_values(tiny_dataset)
    plain = make_run_config(values, {})
    assert not any(k.startswith(("eval.evaluators", "eval.eps_sweep", "eval.c_seg_attack", "eval.rays", "eval.masking", "eval.two_stage"))
                   for k in identity(plain))
    swept = make_run_config(values, {"eval.evaluators": ["eps_sweep"]})
    assert run_id(swept) != run_id(plain) and "eval.eps_sweep" in identity(swept) and "eval.rays_queries" not in identity(swept)


def test_parametrised_metrics_become_evaluations_of_their_own():
    assert split_metric("autoattack_accuracy@eps=16/255") == ("autoattack_accuracy", "eps", "16/255")
    assert split_metric("pgd_accuracy") == ("pgd_accuracy", None, None)
    assert parametrised_metric("pgd_accuracy", "c_seg_attack", 0.5) == "pgd_accuracy@c_seg_attack=0.5"
    with pytest.raises(ValueError):
        parametrised_metric("pgd_accuracy", "steps", 3)
    frame = pd.DataFrame({"run_id": ["r", "r", "r"], "eps": [8 / 255] * 3, "value": [40.0, 10.0, 30.0],
                          "metric": ["autoattack_accuracy", "autoattack_accuracy@eps=16/255", "pgd_accuracy@c_seg_attack=0.5"]})
    out = expand_evaluations(frame)
    assert list(out["metric"]) == ["autoattack_accuracy", "autoattack_accuracy", "pgd_accuracy"]
    assert list(out["run_id"]) == ["r", "r@eps=16/255", "r@c_seg_attack=0.5"]
    assert list(out["eps"] * 255) == pytest.approx([8, 16, 8]), "budgets are numbers"
    assert math.isnan(out["c_seg_attack"][0]) and out["c_seg_attack"][2] == 0.5
    assert list(section_results(out, ["r"])["run_id"]) == list(out["run_id"])


def test_sweep_sections_select_blocks(tiny_dataset):
    values = tiny_run_values(tiny_dataset)
    plan = Plan(experiment="x", config=values, sweep=[
        {"section": "part_labels", "grid": {"model.name": ["resnet", "downsampled"]}},
        {"section": "c_seg", "grid": {"model.name": ["downsampled"], "train.c_seg": [0.5, 0.9]}},
    ])
    assert plan.sections == ["part_labels", "c_seg"]
    assert len(expand(plan)) == 3  # the c_seg 0.5 Downsampled run is shared
    assert [c.model.name for c in expand(plan, sections=["part_labels"])] == ["resnet", "downsampled"]
    assert chosen_sections(plan.sections, None) == ["part_labels", "c_seg"]
    with pytest.raises(ParameterError, match="rays"):
        chosen_sections(plan.sections, ["rays"])
    with pytest.raises(ParameterError, match="rays"):
        expand(plan, sections=["rays"])


def _results(rows):
    base = {"experiment": "e", "dataset": "synthetic-parts", "training": "pgd", "eps": 8 / 255, "seed": 0, "n": 64, "note": "",
            "config_hash": "h", "labels": "parts", "label_fraction": 1.0, "drop_background": False, "pool_size": 4, "concat_input": False}
    return expand_evaluations(pd.DataFrame([{**base, **r} for r in rows]))


def test_part_label_verdict_and_table_follow_the_numbers():
    rows = []
    for model, c_seg, clean, adv in [("resnet", None, 60, 20), ("downsampled", 0.5, 70, 30), ("downsampled", 0.0, 62, 22)]:
        rid = f"{model}-{c_seg}"
        rows += [{"run_id": rid, "model": model, "c_seg": c_seg, "metric": "clean_accuracy", "value": clean},
                 {"run_id": rid, "model": model, "c_seg": c_seg, "metric": "autoattack_accuracy", "value": adv}]
    results = _results(rows)
    table = ablation_table(results, ABLATIONS["part_labels"])
    assert table.loc[("downsampled", "yes"), "AutoAttack"] == 30 and table.loc[("downsampled", "no"), "clean"] == 62
    assert "+8.0 clean, +8.0 adversarial" in verdict(results, ABLATIONS["part_labels"])
    assert verdict(results, ABLATIONS["part_labels"]).endswith("holds.")
    worse = _results([{**r, "value": 80} if r["run_id"] == "downsampled-0.0" else r for r in rows])
    assert verdict(worse, ABLATIONS["part_labels"]).endswith("does not hold.")


def test_eps_sweep_verdict_reads_the_expanded_evaluations():
    rows = [{"run_id": "d", "model": "downsampled", "c_seg": 0.5, "metric": m, "value": v} for m, v in
            [("clean_accuracy", 70), ("autoattack_accuracy", 30), ("autoattack_accuracy@eps=16/255", 9),
             ("autoattack_accuracy@eps=32/255", 0.0)]]
    results = _results(rows)
    table = ablation_table(results, ABLATIONS["eps_sweep"])
    assert list(table["AutoAttack"]) == [30.0, 9.0, 0.0]
    assert verdict(results, ABLATIONS["eps_sweep"]).endswith("holds.")


def test_masking_table_lists_failures():
    results = _results([{"run_id": "d", "model": "downsampled", "c_seg": 0.5, "metric": "gradient_masking_high_eps", "value": 40.0,
                         "note": "FAILED: PGD at eps 32/255 leaves 40.0 % correct"},
                        {"run_id": "d", "model": "downsampled", "c_seg": 0.5, "metric": "clean_accuracy", "value": 70.0}])
    table = masking_table(results)
    assert list(table["check"]) == ["high_eps"] and not table["passed"].any() and table["detail"][0].startswith("PGD at eps")
