"""Notebook 04's extra runs on the built-in data: the same models trained on data whose objects wear
their class's texture with a given probability, to check that the shape-vs-texture benchmark
measures what it claims to (`partrobust.report.robustness.plot_texture_cue` draws them)."""
from __future__ import annotations

from typing import Sequence

from ..core.config import ParameterError, apply_overrides, to_dict
from ..data.prepared import load_metadata
from ..data.synthetic import synthetic_config, texture_cue_variant
from .runconfig import RunConfig, make_run_config


def texture_cue_configs(configs: Sequence[RunConfig], probs: Sequence[float], models: Sequence[str],
                        progress: bool = True) -> list[RunConfig]:
    """For each cue probability and model: the model's lowest-seed config of `configs` (background kept)
    trained on the built-in data generated again with that texture cue (made here if missing), scored on
    the shape-vs-texture benchmark. Empty for a dataset that is not the built-in one."""
    base = {}
    for config in sorted(configs, key=lambda c: c.seed):
        if config.model.name in models and not config.model.drop_background:
            base.setdefault(config.model.name, config)
    missing = [m for m in models if m not in base]
    if missing:
        raise ParameterError(f"texture_cue_models: no run of model(s) {missing} in the params file")
    if not probs or not models or synthetic_config(load_metadata(base[models[0]].data.root)) is None:
        return []
    out = []
    for p in probs:
        for model in models:
            config = base[model]
            root = texture_cue_variant(config.data.root, p, workers=max(1, config.data.num_workers), progress=progress)
            values = apply_overrides(to_dict(config), {"data.root": str(root), "eval.benchmarks": ["shape_vs_texture"]})
            out.append(make_run_config(values, where=f"texture cue {p:g}, {model}"))
    return out
