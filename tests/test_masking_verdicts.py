"""Gradient masking in the evaluation and in the claims: the ``more_steps`` check can fire, and a
source whose runs fail a masking check cannot have a "Not gradient masking" claim above "direction only"."""
import math
import warnings

import pandas as pd
import pytest
import torch
from torch import nn

from partrobust.eval.config import EvalConfig
from partrobust.eval.evaluators import evaluate
from partrobust.eval.masking import GradientMaskingWarning, coarse_pgd
from partrobust.report import claims, paper
from partrobust.report.masking_verdicts import LARGE_GAP, cap_masking_claim, failed_checks, large_gaps

from test_ablations import CHECK_CONFIG, checks_of, linear_problem
from test_analysis import frame, run_rows


class Staircase(nn.Module):
    """`inner` on its input quantised by a differentiable, non-monotone staircase with `k` steps per
    unit: x - a sin(2 pi k x) / (2 pi k). For a > 1 the slope turns negative near each step's middle, so
    a gradient ascent with steps much smaller than 1/k climbs to the nearest local top and stays there
    (shattered gradients, Athalye et al. 2018), while steps across the ball jump over the tops."""

    def __init__(self, inner: nn.Module, k: int = 64, a: float = 1.5) -> None:
        super().__init__()
        self.inner, self.k, self.a = inner, k, a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x - self.a * torch.sin(2 * math.pi * self.k * x) / (2 * math.pi * self.k))


PAPER_PGD = dict(eps="8/255", pgd_steps=100, pgd_step_size=0.001, pgd_restarts=1, autoattack=False, evaluators=[], batch_size=64)
"""The paper's test PGD (one restart, to keep it short): 100 steps of 0.001."""


def _more_steps(model, x, masks, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GradientMaskingWarning)
        rows, _ = evaluate(model, x, masks, y, EvalConfig(**PAPER_PGD), progress=False)
    return checks_of(rows)["gradient_masking_more_steps"]


def test_coarse_pgd_can_cross_the_ball():
    attack = coarse_pgd(EvalConfig(**PAPER_PGD))
    assert attack.steps == 10 and attack.restarts == 1
    assert attack.steps * attack.step_size >= 2 * attack.eps  # the old 10 x 0.001 = 0.01 could not (8/255 = 0.031)


def test_more_steps_fires_on_a_staircase_quantiser_and_not_on_a_plain_model():
    model, x, masks, y = linear_problem()
    plain = _more_steps(model, x, masks, y)
    assert plain["note"].startswith("passed"), plain
    assert plain["value"] <= 1.0

    masked = Staircase(model)
    with torch.no_grad():
        y_masked = masked(x).argmax(1)
    check = _more_steps(masked, x, masks, y_masked)
    assert check["note"].startswith("FAILED"), check
    assert check["value"] > 10.0  # small steps leave > 10 points more images correct than 10 steps of 2/255
    assert "10 step(s) of 2/255" in check["note"]


# --------------------------------------------------------------------------- the claims


def _evaluated_run(run_id: str, rounding: int, experiment: str) -> list[dict]:
    """Result rows of one evaluation (PGD, a reduced AutoAttack, masking checks) of the linear model,
    rounding its input to 1/`rounding` (0: plain), as rows of a built-in-data run."""
    model, x, masks, y = linear_problem(rounding=rounding)
    cfg = {**CHECK_CONFIG, "autoattack": True, "autoattack_iterations": 10, "autoattack_square_queries": 200, "evaluators": []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GradientMaskingWarning)
        rows, _ = evaluate(model, x, masks, y, EvalConfig(**cfg), progress=False)
    base = run_rows(run_id, "resnet", "pgd", {"clean_accuracy": 0.0}, experiment=experiment)[0]
    return [{**base, **{k: row[k] for k in ("metric", "value", "n", "note")}} for row in rows]


@pytest.fixture(scope="module")
def masked_and_plain():
    return paper.with_source(frame(_evaluated_run("quantising", 4, "masked"), _evaluated_run("plain", 0, "plain")))


def test_a_quantising_model_fails_its_checks_and_the_claim_says_so(masked_and_plain):
    results = masked_and_plain
    masked = results[results["source"] == "builtin:masked"]
    value = masked.set_index("metric")["value"]
    assert value["pgd_accuracy"] - value["autoattack_accuracy"] >= LARGE_GAP  # PGD 87.5, AutoAttack 43.8
    assert set(failed_checks(masked)["check"]) >= {"high_eps", "black_box_square"}
    assert failed_checks(results[results["source"] == "builtin:plain"]).empty

    # the claim's own test reads only "AutoAttack <= PGD": it holds on the quantising model ...
    name = "Not gradient masking: AutoAttack is not weaker than PGD"
    status, _ = claims.no_masking_aa_below_pgd(results, None, None, "builtin:masked")
    assert status == "reproduced"
    # ... and the report, which reads the masking checks, says at most "direction only" and names the run
    side = paper.all_side_by_side(results, numbers=(1,))
    builtin = paper.builtin_table(results, 1)
    table = claims.evaluate_claims(results, side, builtin).set_index(["claim", "source"])
    row = table.loc[(name, "builtin:masked")]
    assert row["status"] == "direction only", row["evidence"]
    assert "quantising (black_box_square, high_eps)" in row["evidence"]
    assert "gap" in row["evidence"] and "PGD 87.5" in row["evidence"]
    assert table.loc[(name, "builtin:plain"), "status"] == claims.BUILTIN_STATUS["reproduced"]  # "built-in check holds"
    for claim in table.index.get_level_values("claim").unique():  # only the masking claims are overruled
        if not claim.startswith("Not gradient masking"):
            assert "quantising" not in table.loc[(claim, "builtin:masked"), "evidence"]


def test_cap_masking_claim():
    failing = frame(run_rows("r1", "resnet", "pgd", {"gradient_masking_high_eps": 40.0}),
                    run_rows("r2", "resnet", "pgd", {"pgd_accuracy": 45.0, "autoattack_accuracy": 40.0}))
    failing.loc[0, "note"] = "FAILED: PGD at eps 32/255 leaves 40.0 % correct"
    assert failed_checks(failing).to_dict("records") == [
        {"run_id": "r1", "check": "high_eps", "value": 40.0, "detail": "PGD at eps 32/255 leaves 40.0 % correct"}]
    assert large_gaps(failing).empty  # a 5-point gap is the paper's kind (45.4 vs 39.4)
    name = "Not gradient masking: accuracy near 0 at eps 32/255"
    assert cap_masking_claim(name, "reproduced", "e", failing) == ("direction only", "e. gradient-masking checks FAILED on 1 run(s): "
                                                                   "r1 (high_eps); so at most direction only")
    assert cap_masking_claim(name, "not reproduced", "e", failing)[0] == "not reproduced"
    assert cap_masking_claim("Part models beat the ResNet", "reproduced", "e", failing) == ("reproduced", "e")
    passing = failing.assign(note="passed: fine")
    assert cap_masking_claim(name, "reproduced", "e", passing) == ("reproduced", "e")
    gap = frame(run_rows("r3", "resnet", "pgd", {"pgd_accuracy": 57.8, "autoattack_accuracy": 18.8}))
    status, evidence = cap_masking_claim(name, "reproduced", "e", gap)
    assert status == "direction only" and "r3 (PGD 57.8, AutoAttack 18.8, gap 39.0)" in evidence
    assert list(large_gaps(pd.concat([gap, failing]))["run_id"]) == ["r3"]
