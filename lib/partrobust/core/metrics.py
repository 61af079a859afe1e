"""Metric names: the one list of what a result row can measure, and how a metric carries an evaluation parameter.

A result row's ``metric`` is ``<setting>_accuracy`` (``clean``, ``pgd``, ``autoattack``, ``rays``,
``two_stage_<strategy>``), ``<setting>_pixel_accuracy`` for part models, a benchmark's
(`benchmark_metric`), or ``gradient_masking_<check>``. An evaluation at another eps or attack
weight carries its parameter after an ``@``: ``autoattack_accuracy@eps=16/255``
(`parametrised_metric`); reading results turns those into evaluations of their own
(`partrobust.core.results.expand_evaluations`).
"""
from __future__ import annotations

import re
from typing import Any

EVALUATION_COLUMNS = ("c_seg_attack",)
"""Evaluation parameters that are no config key, read off parametrised metrics (`expand_evaluations`)."""


SUMMARY_METRICS = ("clean_accuracy", "pgd_accuracy", "autoattack_accuracy")
"""The headline metrics of a run (its status line, the seed tables)."""


_PARAMETRISED = re.compile(r"^(?P<metric>[^@]+)@(?P<key>[a-z_]+)=(?P<value>[^,]+)$")


EVALUATION_PARAMETERS = ("eps", *EVALUATION_COLUMNS)
"""Parameters a metric may carry after ``@`` (notebook 03's evaluators): the results column each one fills."""


def parametrised_metric(metric: str, key: str, value: Any) -> str:
    """``autoattack_accuracy@eps=16/255``: a metric of an evaluation at another eps, or with another attack weight."""
    if key not in EVALUATION_PARAMETERS:
        raise ValueError(f"unknown evaluation parameter {key!r}; known: {EVALUATION_PARAMETERS}")
    return f"{metric}@{key}={value}"


def split_metric(metric: str) -> tuple[str, str | None, str | None]:
    """``autoattack_accuracy@eps=16/255`` -> (``autoattack_accuracy``, ``eps``, ``16/255``); a plain metric -> (metric, None, None)."""
    match = _PARAMETRISED.match(metric)
    if match is None or match["key"] not in EVALUATION_PARAMETERS:
        return metric, None, None
    return match["metric"], match["key"], match["value"]


METRIC_ORDER = [
    "clean_accuracy", "pgd_accuracy", "autoattack_accuracy",
    "clean_pixel_accuracy", "pgd_pixel_accuracy", "autoattack_pixel_accuracy",
]
"""Metric names, in display order (tables and sweeps)."""


def benchmark_metric(benchmark: str, corruption: str | None = None) -> str:
    """Our metric name for a non-adversarial benchmark (Tables 2-4, 6, 7, 16): ``common_corruption_accuracy``,
    ``spurious_correlation_accuracy``, ``shape_vs_texture_accuracy``; one corruption type:
    ``common_corruption_<type>_accuracy`` (e.g. ``common_corruption_fog_accuracy``)."""
    return f"{benchmark}_{corruption}_accuracy" if corruption else f"{benchmark}_accuracy"


BENCHMARK_METRICS = ("shape_vs_texture_accuracy", "spurious_correlation_accuracy", "common_corruption_accuracy")
"""The headline metric of each non-adversarial benchmark (Tables 2-4, 6, 16; Fig. 8), in the paper's order."""
