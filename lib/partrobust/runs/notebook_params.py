"""Each notebook's parameters, as a `Section` that mirrors its ``parameters`` cell (`NOTEBOOK_PARAMS`).

A notebook validates the names its parameters cell (and papermill's injected cell) assigns with its
class (`partrobust.core.config.from_namespace`; the notebook's other globals are ignored, so it reruns
in one kernel), and the pipeline validates a params file's values for every notebook with the same classes before the
first notebook starts (`partrobust.runs.notebooks.check_parameters`). A test checks that each class
declares exactly the names of its notebook's parameters cell and that the defaults validate.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from ..core.config import Section
from ..data.preparation import DataPrepParams
from ..report.ablations import ABLATIONS


class RunNotebookParams(Section):
    """Parameters of notebook 01 (defaults live in its `parameters` cell)."""

    config: str
    overrides: dict[str, Any]
    experiment: str | None
    runs_root: str
    folder: str | None


class SweepRunParams(Section):
    """The parameters of a notebook that runs (or reads) the sweep of a params file (notebooks 02 and 04)."""

    params_file: str
    runs_root: str
    run_missing: bool
    jobs: int = Field(ge=1)
    runner: Literal["notebook", "process"]


class SweepNotebookParams(SweepRunParams):
    """Parameters of notebook 02 (defaults live in its `parameters` cell)."""

    adv_metric: Literal["autoattack_accuracy", "pgd_accuracy"]
    figures_dir: str | None


class AblationsNotebookParams(SweepRunParams):
    """Parameters of notebook 03 (defaults live in its `parameters` cell)."""

    sections: list[str] | None
    figures_dir: str | None

    @field_validator("sections")
    @classmethod
    def _known_sections(cls, sections: list[str] | None) -> list[str] | None:
        unknown = sorted(set(sections or ()) - set(ABLATIONS))
        if unknown:
            raise ValueError(f"unknown section(s) {unknown}; sections: {', '.join(ABLATIONS)}")
        return sections


class RobustnessNotebookParams(SweepRunParams):
    """Parameters of notebook 04 (defaults live in its `parameters` cell)."""

    texture_cue_probs: list[float] = Field(description="built-in data only: also train on datasets whose objects carry their class's texture with these probabilities")
    texture_cue_models: list[str]
    examples: int = Field(ge=1, le=15)
    figures_dir: str | None

    @field_validator("texture_cue_probs")
    @classmethod
    def _probabilities(cls, probs: list[float]) -> list[float]:
        bad = [p for p in probs if not 0 <= p <= 1]
        if bad:
            raise ValueError(f"probabilities must lie in [0, 1], got {bad}")
        return probs


class FiguresNotebookParams(Section):
    """Parameters of notebook 05 (defaults live in its `parameters` cell)."""

    inputs: list[str]
    run_dir: str
    output_dir: str
    paper_tables: str | None


NOTEBOOK_PARAMS: dict[str, type[Section]] = {
    "00_data_prep": DataPrepParams,
    "01_pgd_training": RunNotebookParams,
    "02_trades_sweep": SweepNotebookParams,
    "03_ablations": AblationsNotebookParams,
    "04_nonadversarial_robustness": RobustnessNotebookParams,
    "05_figures": FiguresNotebookParams,
}
"""Notebook stem -> the `Section` its parameters cell is validated with."""
