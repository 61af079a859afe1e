"""Imported weights: a plain partrobust checkpoint of weights trained elsewhere, evaluated but never trained.

The file (written by `partrobust.models.weights.import_reference`) holds tensors and plain values
only, so `load_checkpoint` reads it without any allow-list:

* ``model``: our state dict; ``model_config``: the `ModelSpec` keys that change the function
  (name, backbone, output stride, pool size, background, box score) and the class and part counts;
* ``training``: normal, pgd or trades; ``dataset``: the dataset the weights are for;
* ``source``: where they came from (file name, its SHA-256, layout era, experiment name, the file's args).

A run config with ``model.weights`` names such a file; `check_imported` compares it with the run's
`ModelConfig` before any compute, and `load_imported` loads it strictly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from torch import nn

from ..core.fileio import atomic_torch_save, load_checkpoint
from .config import TRAININGS, ModelConfig

FORMAT = "partrobust-imported/1"
FUNCTION_KEYS = {"resnet": ("arch",), "downsampled": ("encoder", "output_stride", "pool_size", "drop_background", "concat_input"),
                 "bbox": ("encoder", "output_stride", "bbox_score")}
"""The `ModelSpec` keys each imported model's function depends on (besides its name and sizes)."""


class ImportedWeightsError(ValueError):
    """An imported weights file that is not one, or does not fit the run that names it."""


def function_config(config: ModelConfig) -> dict[str, Any]:
    """What an imported file records of `config`, and what a run must match: name, sizes and `FUNCTION_KEYS`."""
    return {"name": config.name, "num_classes": config.num_classes, "num_parts": config.num_parts,
            **{k: getattr(config, k) for k in FUNCTION_KEYS.get(config.name, ())}}


def write_imported(path: str | Path, state_dict: Mapping[str, Any], config: ModelConfig, training: str, dataset: str,
                   source: Mapping[str, Any]) -> Path:
    """Writes weights trained elsewhere as an imported checkpoint for `config` (only its function keys are kept)."""
    if training not in TRAININGS:
        raise ImportedWeightsError(f"training must be one of {TRAININGS}, got {training!r}")
    atomic_torch_save({"format": FORMAT, "model": dict(state_dict), "model_config": function_config(config), "training": training,
                       "dataset": dataset, "source": dict(source)}, path)
    return Path(path)


def read_imported(path: str | Path) -> dict[str, Any]:
    """The imported checkpoint at `path` (refused when it is not one)."""
    state = load_checkpoint(path)
    if not isinstance(state, Mapping) or state.get("format") != FORMAT:
        raise ImportedWeightsError(f"model.weights: {path} is not an imported weights file ({FORMAT}); write one with "
                                   "`python -m partrobust.weights import-reference FILE --model M --dataset D`")
    return dict(state)


def check_imported(state: Mapping[str, Any], config: ModelConfig, training: str, path: str | Path) -> None:
    """Refuses `state` when its model, sizes, function-changing settings or training differ from the run's."""
    stored, wanted = state["model_config"], function_config(config)
    if stored.get("name") != config.name:
        raise ImportedWeightsError(f"model.name: {path} holds a {stored.get('name')} model, the run says {config.name}")
    diff = [f"{'model.' if k not in ('num_classes', 'num_parts') else 'dataset '}{k}: file {stored.get(k)!r}, run {v!r}"
            for k, v in wanted.items() if stored.get(k) != v]
    if diff:
        raise ImportedWeightsError(f"{path} does not fit this run: " + "; ".join(diff))
    if state["training"] != training:
        raise ImportedWeightsError(f"model.weights_training: {path} holds {state['training']} training, the run says {training}")


def load_imported(model: nn.Module, state: Mapping[str, Any]) -> nn.Module:
    """Loads the imported state dict into `model` (every key, strictly) and puts it in eval mode."""
    model.load_state_dict(state["model"], strict=True)
    return model.eval()
