"""What the gradient-masking checks of a source's runs allow its "Not gradient masking" claims to say.

A run whose own checks failed (`partrobust.eval.masking`: result rows ``gradient_masking_<check>``
with a note starting ``FAILED``) may have its robust accuracy overestimated, whatever else its numbers
show: a model that quantises its input leaves PGD at 57.8 % and AutoAttack at 18.8 %, so
"AutoAttack is not weaker than PGD" holds on it, yet it masks its gradients. A large gap between
PGD and AutoAttack on one run (`LARGE_GAP` points or more; the paper's largest is 6.0, Downsampled on
Part-ImageNet, 45.4 vs 39.4) is the same symptom: the gradient attack is far weaker than the suite
with a black-box attack in it.

`cap_masking_claim` applies this to one claim of one source: a "Not gradient masking" claim (its name
starts with `MASKING_CLAIM_PREFIX`) whose source has such runs is at most ``direction only``, and its
evidence lists every failing run with its check and every large gap.
"""
from __future__ import annotations

import pandas as pd

MASKING_CLAIM_PREFIX = "Not gradient masking"
"""Claims whose name starts with this are the ones the masking checks can overrule."""
CAPPED_STATUS = "direction only"
"""The best status a masking claim can have when a run of its source fails a check."""
ABOVE_CAP = ("reproduced",)
"""Statuses above `CAPPED_STATUS` (lowered to it)."""
LARGE_GAP = 10.0
"""PGD minus AutoAttack accuracy (percentage points) on one run from which the gap is flagged."""
CHECK_PREFIX = "gradient_masking_"


def failed_checks(results: pd.DataFrame) -> pd.DataFrame:
    """The failed masking checks among `results`: run_id, check, value (%), detail; one row each."""
    columns = ["run_id", "check", "value", "detail"]
    if results.empty or "note" not in results.columns:
        return pd.DataFrame(columns=columns)
    metric = results["metric"].astype(str)
    note = results["note"].fillna("").astype(str)
    failed = (metric.str.startswith(CHECK_PREFIX) & note.str.startswith("FAILED")).to_numpy()
    rows = results[failed]
    return pd.DataFrame({"run_id": rows["run_id"].astype(str).to_numpy(), "check": metric[failed].str.removeprefix(CHECK_PREFIX).to_numpy(),
                         "value": rows["value"].astype(float).to_numpy(), "detail": note[failed].str.removeprefix("FAILED: ").to_numpy()},
                        columns=columns).drop_duplicates(["run_id", "check"]).reset_index(drop=True)


def large_gaps(results: pd.DataFrame, threshold: float = LARGE_GAP) -> pd.DataFrame:
    """Runs whose PGD accuracy exceeds their AutoAttack accuracy by `threshold` points or more:
    run_id, pgd, autoattack, gap (at the evaluation eps: the plain ``pgd_accuracy`` and ``autoattack_accuracy`` rows)."""
    columns = ["run_id", "pgd", "autoattack", "gap"]
    rows = results[results["metric"].isin(["pgd_accuracy", "autoattack_accuracy"])] if not results.empty else results
    if rows.empty:
        return pd.DataFrame(columns=columns)
    wide = rows.pivot_table(index="run_id", columns="metric", values="value", aggfunc="mean")
    if not {"pgd_accuracy", "autoattack_accuracy"} <= set(wide.columns):
        return pd.DataFrame(columns=columns)
    wide = wide.dropna(subset=["pgd_accuracy", "autoattack_accuracy"])
    gap = wide["pgd_accuracy"] - wide["autoattack_accuracy"]
    big = wide[gap >= threshold]
    return pd.DataFrame({"run_id": big.index.astype(str), "pgd": big["pgd_accuracy"].to_numpy(float),
                         "autoattack": big["autoattack_accuracy"].to_numpy(float), "gap": gap[big.index].to_numpy(float)},
                        columns=columns).reset_index(drop=True)


def masking_evidence(results: pd.DataFrame) -> str:
    """One sentence listing the failed checks and large gaps of `results` ("" when there are none)."""
    failed, gaps = failed_checks(results), large_gaps(results)
    parts = []
    if len(failed):
        by_run = failed.groupby("run_id", sort=True)["check"].agg(lambda c: ", ".join(sorted(c)))
        parts.append(f"gradient-masking checks FAILED on {len(by_run)} run(s): "
                     + "; ".join(f"{run} ({checks})" for run, checks in by_run.items()))
    if len(gaps):
        parts.append(f"PGD - AutoAttack gap of {LARGE_GAP:g} points or more on {len(gaps)} run(s): "
                     + "; ".join(f"{g.run_id} (PGD {g.pgd:.1f}, AutoAttack {g.autoattack:.1f}, gap {g.gap:.1f})"
                                 for g in gaps.sort_values("run_id").itertuples()))
    return ". ".join(parts)


def cap_masking_claim(claim: str, status: str, evidence: str, results: pd.DataFrame) -> tuple[str, str]:
    """(status, evidence) of `claim` on one source's `results`, overruled by their masking checks.

    Other claims pass through unchanged. A masking claim whose runs fail a check or show a large
    PGD - AutoAttack gap is lowered from ``reproduced`` to `CAPPED_STATUS`; its evidence then names
    the runs (also when its status was already lower: the reader sees why).
    """
    if not claim.startswith(MASKING_CLAIM_PREFIX):
        return status, evidence
    flags = masking_evidence(results)
    if not flags:
        return status, evidence
    if status in ABOVE_CAP:
        status = CAPPED_STATUS
        flags += f"; so at most {CAPPED_STATUS}"
    return status, f"{evidence}. {flags}" if evidence else flags
