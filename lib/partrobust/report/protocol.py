"""How each result was measured, and whether that is how the paper measured its printed numbers.

A result row says how it was measured in its ``note`` (the attack's own words: AutoAttack's attack
list and budget, PGD's steps and restarts) and in ``eval_limit`` (the first N test images, empty for
the whole test split). `attack_text` turns that into a short label for every number shown;
`protocol_gap` says why a row is *not* comparable with the paper's number ('' when it is): the
paper ran the standard AutoAttack (its full attack list for the class count, 100 APGD/FAB
iterations, 5,000 Square queries), its PGD (`PAPER_PGD`: 100 steps, 5 restarts) and the whole test
split. A row that is not comparable is still shown, next to the paper's cell, never in it.
"""
from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd

from ..attacks.autoattack import STANDARD_ITERATIONS, STANDARD_SQUARE_QUERIES, select_attacks
from ..core.results import UNKNOWN_LIMIT as UNKNOWN
from ..eval.config import EvalConfig
from ..eval.context import pgd_note

PAPER_PGD = (EvalConfig().pgd_steps, EvalConfig().pgd_restarts)
"""The paper's evaluation PGD: (steps, restarts); fewer of either is a weaker attack."""

LIMIT_COLUMN = "eval_limit"

_PGD = re.compile(r"(\d+) steps, step ([^,;]+), (\d+) restarts")
_CUSTOM = re.compile(r"custom attack list: ([^;]+)")
_FEW = re.compile(r"C=(\d+) < 4: .*? running ([^;]+?) instead")
_STANDARD = re.compile(r"standard AutoAttack: ([^;(]+)")
_REDUCED = re.compile(r"reduced budget: (\d+) APGD/FAB iterations \(standard \d+\), (\d+) Square queries")


def is_autoattack(metric: str) -> bool:
    return str(metric).startswith("autoattack_")


def is_pgd(metric: str) -> bool:
    return str(metric).startswith(("pgd_", "seg_pgd_"))


def _text(note: Any) -> str:
    return "" if note is None or (isinstance(note, float) and math.isnan(note)) else str(note)


def autoattack_protocol(note: Any) -> tuple[str, str]:
    """(label, gap) of an AutoAttack row from its note: e.g. ('AutoAttack standard', '') or
    ('AutoAttack apgd-ce, apgd-t, 20 it.', 'custom AutoAttack list (apgd-ce, apgd-t); reduced budget (20 iterations)')."""
    note = _text(note)
    gaps, label = [], "AutoAttack"
    if (found := _STANDARD.search(note)) is not None:
        label += " standard"
    elif (found := _FEW.search(note)) is not None:
        label += f" standard for C={found[1]} ({found[2].strip()})"
    elif (found := _CUSTOM.search(note)) is not None:
        label += f" {found[1].strip()} (custom list)"
        gaps.append(f"custom AutoAttack list ({found[1].strip()})")
    else:
        label += " (attack list not recorded)"
        gaps.append("AutoAttack attack list not recorded")
    if (budget := _REDUCED.search(note)) is not None:
        iterations, queries = int(budget[1]), int(budget[2])
        label += f", {iterations} it./{queries} queries"
        weaker = [f"{iterations} APGD/FAB iterations < {STANDARD_ITERATIONS}"] if iterations < STANDARD_ITERATIONS else []
        weaker += [f"{queries} Square queries < {STANDARD_SQUARE_QUERIES}"] if queries < STANDARD_SQUARE_QUERIES else []
        if weaker:
            gaps.append(f"reduced AutoAttack budget ({', '.join(weaker)})")
    return label, "; ".join(gaps)


def pgd_protocol(note: Any) -> tuple[str, str]:
    """(label, gap) of a PGD row from its note (``100 steps, step 0.001, 5 restarts``)."""
    found = _PGD.search(_text(note))
    if found is None:
        return "PGD (steps not recorded)", "PGD steps and restarts not recorded"
    steps, step, restarts = int(found[1]), found[2].strip(), int(found[3])
    label = f"PGD {steps} steps of {step}, {restarts} restarts"
    if steps >= PAPER_PGD[0] and restarts >= PAPER_PGD[1]:
        return label, ""
    return label, f"weaker PGD ({steps} steps, {restarts} restarts < the paper's {PAPER_PGD[0]} steps, {PAPER_PGD[1]} restarts)"


def limit_gap(limit: Any) -> str:
    """'' for the whole test split (empty ``eval_limit``), else why the test set differs."""
    if limit is None or (isinstance(limit, float) and math.isnan(limit)):
        return ""
    if str(limit).strip().lower() in {"", "nan"}:
        return ""
    if str(limit) == UNKNOWN:
        return "test-set size not recorded"
    return f"first {int(float(limit))} test images only (eval.limit)"


def attack_text(metric: str, note: Any) -> str:
    """A short label of how a number was measured: ``clean``, ``AutoAttack standard``, ``PGD 100 steps of 0.001, 5 restarts``, ..."""
    if is_autoattack(metric):
        return autoattack_protocol(note)[0]
    if is_pgd(metric):
        return pgd_protocol(note)[0]
    if str(metric).startswith("clean"):
        return "clean"
    return str(metric).replace("_accuracy", "").replace("_", " ")


def protocol_gap(metric: str, note: Any, limit: Any) -> str:
    """Why a row is not measured as the paper measured it ('' when it is): attack list, budget, test set."""
    gaps = [limit_gap(limit)]
    if is_autoattack(metric):
        gaps.append(autoattack_protocol(note)[1])
    elif is_pgd(metric):
        gaps.append(pgd_protocol(note)[1])
    return "; ".join(g for g in gaps if g)


def with_protocol(results: pd.DataFrame) -> pd.DataFrame:
    """`results` with ``attack`` (`attack_text`) and ``protocol_gap`` (`protocol_gap`) columns; a frame
    without ``eval_limit`` has an unknown test-set size."""
    limits = results[LIMIT_COLUMN] if LIMIT_COLUMN in results.columns else pd.Series(UNKNOWN, index=results.index)
    notes = results["note"] if "note" in results.columns else pd.Series("", index=results.index)
    return results.assign(
        attack=[attack_text(m, n) for m, n in zip(results["metric"], notes)],
        protocol_gap=[protocol_gap(m, n, lim) for m, n, lim in zip(results["metric"], notes, limits)],
    )


def paper_note(metric: str, num_classes: int = 10) -> str:
    """The note our evaluation writes for `metric` when it measures as the paper did (the standard AutoAttack
    for `num_classes`, the paper's PGD; '' otherwise): for the paper's own numbers made into runs."""
    if is_autoattack(metric):
        return select_attacks(num_classes)[1]
    if is_pgd(metric):
        return pgd_note(EvalConfig().pgd_attack())
    return ""
