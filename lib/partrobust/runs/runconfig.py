"""The configuration of one run, declared once, and the run's identity.

A run trains and evaluates one model. Its `RunConfig` has the sections ``data``, ``model``,
``train``, ``eval`` and ``speed`` plus ``seed``, ``device`` and ``progress``. Each key is declared once, in
the class that uses it (`DataConfig` here, `ModelSpec`, `TrainConfig`, `EvalConfig`), with its
default and its description; notebooks' parameters cells, params files (``config:`` blocks and
sweeps) and ``--set train.beta=2.0`` overrides all map onto those dotted keys.

Identity: `identity` is the flat ``key: value`` dict of everything that can change a result.
It leaves out runtime keys (`RUNTIME_KEYS`: device, progress bars, worker processes, the ``speed``
switches) and keys
that do not apply to this run (`inapplicable_keys`: TRADES beta in a PGD run, the pool size of
a Bounding-Box model, c_seg of the ResNet, ...), so two configs that train the same model get
the same id. `config_hash` is the SHA-256 of the identity; `run_id` is a readable prefix plus
its first 8 hex digits, e.g. ``bbox-trades-b2-3f9c1a2b``.
"""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any, Literal, Mapping

import torch
import yaml
from pydantic import Field, field_validator, model_validator

from ..core.config import ParameterError, Section, apply_overrides, flatten, to_dict, validate
from ..core.device import resolve_device
from ..core.fileio import CorruptCheckpointError, UnsafeCheckpointError, atomic_write_text, check_checkpoint
from ..data.loaders import LoaderConfig
from ..data.prepared import SPLITS, read_split, split_path
from ..eval.config import EvalConfig
from ..models.config import MODEL_OPTIONS, ModelSpec, uses_segmenter
from ..train.loop import TrainConfig
from ..train.speed import SpeedConfig

LABEL_KINDS = ("parts", "object", "bbox", "centroid")
PAPER_BACKBONES = ("resnet50",)
"""Backbones the paper always initialised from ImageNet: a run without weights must say `model.from_scratch`."""


class DataConfig(LoaderConfig):
    """Which prepared dataset and labels a run uses, and how they are loaded (section ``data``)."""

    root: str = Field(description="prepared dataset folder (notebook 00); label variants live beside it")
    scan: bool = Field(True, description="check every image and mask the run uses before training (cached by size and mtime; false skips it for huge data)")
    labels: Literal["parts", "object", "bbox", "centroid"] = Field(
        "parts", description="segmentation labels: part masks, object masks (Table 15) or part boxes (Table 14), read from the ROOT-object / ROOT-bbox variant folders (notebook 00), or part centroids (Table 14, model.name: bbox only), computed from ROOT's part masks and trained with the centroid loss (App. E.5, decision 6)")

    @property
    def labelled_root(self) -> str:
        """The prepared folder holding the chosen labels: ``root`` (parts, centroid) or its ``<root>-<labels>`` variant."""
        return self.root if self.labels in ("parts", "centroid") else f"{self.root.rstrip('/')}-{self.labels}"


class RunConfig(Section):
    """Everything that defines one run. Build it with `make_run_config` (values from `base_config`) or `validate(RunConfig, ...)`."""

    data: DataConfig
    model: ModelSpec = ModelSpec()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    speed: SpeedConfig = SpeedConfig()
    seed: int = Field(0, ge=0, description="seed of weights, data order, attacks' random starts and AutoAttack")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N (does not change the run id)")
    progress: bool = Field(True, description="progress bars and per-epoch lines")

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str) -> str:
        if device == "auto":
            return device
        try:
            torch.device(device)
        except RuntimeError:
            raise ValueError("expected auto, cpu, cuda, cuda:N or mps") from None
        return device

    @model_validator(mode="after")
    def _imagenet_weights_or_from_scratch(self) -> "RunConfig":
        spec = self.model
        key = f"model.{spec.pretrained_key}"
        if spec.weights is not None:  # imported weights: nothing is trained, nothing starts from ImageNet
            return self
        if spec.backbone in PAPER_BACKBONES and spec.pretrained_path is None and not spec.from_scratch:
            raise ValueError(
                f"{key}: a {spec.backbone} {'encoder' if self.is_part_model else 'baseline'} without ImageNet weights would "
                "train from scratch, not the paper's protocol (tens of points less clean accuracy). Fetch the weights "
                f"with `python -m partrobust.weights fetch` (make weights) and set {key}, or set model.from_scratch: true")
        if spec.from_scratch and spec.pretrained_path is not None:
            raise ValueError(f"model.from_scratch: true contradicts {key}: {spec.pretrained_path}")
        return self

    @model_validator(mode="after")
    def _centroid_labels_need_bbox(self) -> "RunConfig":
        if self.data.labels == "centroid" and self.model.name != "bbox":
            raise ValueError(
                f"data.labels: centroid trains the Bounding-Box model's centroid features (App. E.5); it needs "
                f"model.name: bbox, got model.name: {self.model.name}")
        return self

    @model_validator(mode="after")
    def _evaluators_fit_the_model(self) -> "RunConfig":
        segmenter_attacks = sorted({"seg_pgd", "two_stage"} & set(self.eval.evaluators))
        if segmenter_attacks and not self.is_part_model:
            raise ValueError(f"eval.evaluators: {segmenter_attacks} attack the segmenter, which model.name "
                             f"{self.model.name!r} does not have; list them for part models only")
        if "two_stage" in self.eval.evaluators and "mc_sorted" in self.eval.two_stage_strategies and (
                self.model.name == "two_headed" or (self.model.concat_input and self.model.name == "downsampled")):
            raise ValueError("eval.two_stage_strategies: mc_sorted scores guide masks with the head alone, which this model's "
                             "head cannot do (it also reads the image or the segmenter's features); leave mc_sorted out")
        return self

    @property
    def is_part_model(self) -> bool:
        return uses_segmenter(self.model.name)

    @property
    def imported(self) -> bool:
        """True when the run evaluates imported weights (``model.weights``) and trains nothing."""
        return self.model.weights is not None

    @property
    def training(self) -> str:
        """The training label of the evaluated weights: normal, pgd or trades (imported: ``model.weights_training``)."""
        return self.model.weights_training if self.model.weights_training is not None else self.train.training


def check_weights_file(config: RunConfig) -> None:
    """Refuses a run whose ImageNet weights file is absent, a folder, unsafe, damaged or not a state dict of
    tensors (`ParameterError` naming the key and the file); cheap: the file is memory-mapped, not read.
    Whether its keys fit the model is checked when the run builds it (`partrobust.runs.run.Run`).
    Imported weights (``model.weights``) must have been imported: their hash is the run's identity."""
    imported = config.model.weights
    if imported is not None and (not Path(imported).is_file() or config.model.weights_sha256 is None):
        raise ParameterError(f"model.weights: {imported} does not exist; write it with `python -m partrobust.weights "
                             "import-reference FILE --model M --dataset D` (the authors' released files)")
    path = config.model.pretrained_path
    if path is None:
        return
    key = f"model.{config.model.pretrained_key}"
    if Path(path).is_dir():
        raise ParameterError(f"{key}: {path} is a directory, not a weights file; give the .pt file itself")
    if not Path(path).is_file():
        raise ParameterError(f"{key}: weights file {path} does not exist; "
                             "`python -m partrobust.weights fetch` downloads the paper's (`... paths` lists them)")
    try:
        state = check_checkpoint(path)
    except (UnsafeCheckpointError, CorruptCheckpointError, OSError) as err:
        raise ParameterError(f"{key}: {err}") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ParameterError(f"{key}: {path} is not a state dict of tensors (got {type(state).__name__}); "
                             "give the backbone's state_dict saved with torch.save")


CUDA_ONLY_KEYS = ("train.bf16", "train.sync_bn")
"""Switches that act on CUDA only: refused (when true) for a run on another device, where they would
change nothing but the run id."""


def check_device(config: RunConfig) -> torch.device:
    """The device the run computes on (`resolve_device`), refusing the `CUDA_ONLY_KEYS` set off CUDA."""
    device = resolve_device(config.device)
    if device.type != "cuda":
        flat = flatten(to_dict(config))
        on = [key for key in CUDA_ONLY_KEYS if flat[key]]
        if on:
            raise ParameterError(f"{on[0]}: true acts on CUDA only, but this run computes on {device.type} "
                                 f"(device: {config.device}); set it to false (it would change the run id, not the run)")
    return device


@functools.lru_cache(maxsize=64)
def _split_sizes(root: str, mtimes: tuple[float, ...]) -> dict[str, int]:
    return {split: len(read_split(root, split)) for split in SPLITS}


def split_sizes(root: str | Path) -> dict[str, int]:
    """Split -> number of rows of a prepared dataset (cached while its split files are unchanged)."""
    mtimes = tuple(split_path(root, split).stat().st_mtime if split_path(root, split).is_file() else -1.0 for split in SPLITS)
    return dict(_split_sizes(str(root), mtimes))


def check_limits(config: RunConfig, rows: Mapping[str, int]) -> None:
    """Refuses a limit larger than its split (`rows`: split -> number of rows): the run would read fewer
    images than its id says."""
    keys = {"train": "data.train_limit", "val": "train.val_limit", "test": "eval.limit"}
    for split, limit in used_rows(config).items():
        if limit is not None and split in rows and limit > rows[split]:
            raise ParameterError(f"{keys[split]}: {limit} is more than the {rows[split]} images of the {split} split of "
                                 f"{config.data.labelled_root}; give at most {rows[split]}, or null for all")


def used_rows(config: RunConfig) -> dict[str, int | None]:
    """How many leading rows of each split the run reads (None: all), for the data scan."""
    if config.imported:
        return {"test": config.eval.limit}  # nothing is trained
    return {"train": config.data.train_limit, "val": config.train.val_limit, "test": config.eval.limit}


RUNTIME_KEYS = frozenset({"device", "progress", "data.num_workers", "data.prefetch_factor", "data.preload", "data.scan",
                          "train.log_every", "model.from_scratch", "model.weights", *(f"speed.{key}" for key in SpeedConfig.model_fields)})
"""Keys that never change a result: left out of the identity, free to change when resuming
(``model.from_scratch`` only confirms that a missing weights file is intended; ``model.weights`` is where the
imported weights are, their identity is ``model.weights_sha256``; the ``speed``
switches change kernels, not results, beyond float tolerance)."""

_ADVERSARIAL_KEYS = ("train.method", "train.beta", "train.step_size", "train.steps", "train.val_steps", "train.val_step_size",
                     "train.attack_precision")
_AUTOATTACK_KEYS = ("eval.autoattack_attacks", "eval.autoattack_iterations", "eval.autoattack_square_queries",
                    "eval.autoattack_batch_size")
_PGD_KEYS = ("eval.pgd_steps", "eval.pgd_step_size", "eval.pgd_restarts")
_BENCHMARK_KEYS = {
    "common_corruption": ("eval.corruptions", "eval.corruption_severities"),
    "spurious_correlation": ("eval.imagenet9_root",),
    "shape_vs_texture": ("eval.style_encoder", "eval.style_decoder", "eval.style_alpha"),
}
_EVALUATOR_KEYS = {
    "eps_sweep": ("eval.eps_sweep",),
    "seg_pgd": ("eval.c_seg_attack",),
    "two_stage": ("eval.two_stage_strategies",),
    "rays": ("eval.rays_queries",),
}
_PART_MODEL_KEYS = ("train.c_seg", "data.labels", "data.label_fraction", "data.label_seed")


def inapplicable_keys(config: RunConfig) -> set[str]:
    """Keys whose value cannot change this run's result (they are shown as empty in results)."""
    used = set(MODEL_OPTIONS[config.model.name])
    every_option = set().union(*MODEL_OPTIONS.values())
    keys = {f"model.{k}" for k in every_option - used}
    if config.imported:  # evaluation only: training keys and ImageNet weights do not apply
        keys.update(f"train.{k}" for k in TrainConfig.model_fields)
        keys.update({"model.pretrained_baseline", "model.pretrained_encoder", "data.label_fraction", "data.label_seed",
                     "data.train_limit"})
    if not config.is_part_model:
        keys.update(_PART_MODEL_KEYS)
    elif config.data.label_fraction == 1.0:
        keys.add("data.label_seed")
    if config.train.epochs_adv == 0:
        keys.update(_ADVERSARIAL_KEYS)
    elif config.train.method != "trades":
        keys.add("train.beta")
    if not config.eval.autoattack:
        keys.update(_AUTOATTACK_KEYS)
    if not config.eval.pgd:
        keys.update(_PGD_KEYS)
    for benchmark, benchmark_keys in _BENCHMARK_KEYS.items():
        if benchmark not in config.eval.benchmarks:
            keys.update(benchmark_keys)
    if not config.eval.benchmarks:
        keys.add("eval.benchmark_seed")
    for evaluator, evaluator_keys in _EVALUATOR_KEYS.items():
        if evaluator not in config.eval.evaluators:
            keys.update(evaluator_keys)
    if not (config.eval.masking_checks and config.eval.pgd):
        keys.add("eval.masking_check_limit")
    return keys


def resolved(config: RunConfig) -> dict[str, Any]:
    """Flat ``dotted key: value`` of every key, with inapplicable keys set to None."""
    flat = flatten(to_dict(config))
    for key in inapplicable_keys(config):
        flat[key] = None
    return flat


LATER_KEYS: dict[str, Any] = {"train.sync_bn": False, "eval.pgd": True, "eval.benchmarks": [], "eval.evaluators": [],
                               "eval.masking_checks": True, "eval.masking_check_limit": 512,
                               "train.attack_precision": "as_train", "eval.autoattack_batch_size": None,
                               "model.weights": None, "model.weights_sha256": None, "model.weights_training": None}
"""Keys added after runs existed, left out of the identity at these values (their behaviour before
they existed), so that the ids of earlier runs stay valid."""


def identity(config: RunConfig) -> dict[str, Any]:
    """Flat ``dotted key: value`` of what defines the run's result (no runtime or inapplicable keys)."""
    skip = RUNTIME_KEYS | inapplicable_keys(config)
    return {k: v for k, v in flatten(to_dict(config)).items() if k not in skip and not (k in LATER_KEYS and v == LATER_KEYS[k])}


def _digest(values: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of `values` as canonical JSON."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def config_hash(config: RunConfig) -> str:
    """SHA-256 (hex) of the identity, as canonical JSON."""
    return _digest(identity(config))


_NOT_IN_CLEAN_PHASE = ("train.epochs_adv", *_ADVERSARIAL_KEYS, "train.eps")
PHASES = ("clean", "adversarial")


def phase_identity(config: RunConfig, phase: str) -> dict[str, Any]:
    """The identity of one training phase: the keys that can change its checkpoints.

    ``clean``: data, model, seed and the keys normal training reads. ``adversarial``: everything
    but the evaluation keys. Runs of an experiment with the same phase identity share that
    phase (`partrobust.runs.run`): a TRADES beta sweep trains its clean phase once (as the reference
    fine-tuned every adversarial run from one clean checkpoint), and runs that differ only in
    their evaluation (an eps sweep, another attack) train nothing twice.
    """
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    skip = _NOT_IN_CLEAN_PHASE if phase == "clean" else ()
    return {k: v for k, v in identity(config).items() if not k.startswith("eval.") and k not in skip}


def phase_id(config: RunConfig, phase: str) -> str:
    """``<model>-<clean|pgd|trades>-<8 hex digits>``: the folder name of a shared training phase."""
    name = "clean" if phase == "clean" else config.train.method
    return f"{config.model.name}-{name}-{_digest(phase_identity(config, phase))[:8]}"


def run_id(config: RunConfig) -> str:
    """Readable prefix + 8 hex digits of the config hash: ``downsampled-pgd-1a2b3c4d``, ``bbox-trades-b2-...``,
    ``bbox-trades-imported-...`` (imported weights; their SHA-256 is part of the hash)."""
    parts = [config.model.name, config.training]
    if config.imported:
        parts.append("imported")
    elif config.train.training == "trades":
        parts.append(f"b{config.train.beta:g}")
    return "-".join(parts + [config_hash(config)[:8]])


# --------------------------------------------------------------------------- loading


def read_yaml(path: str | Path) -> Any:
    """Safe-loads a YAML file; errors name the file."""
    path = Path(path)
    if path.is_dir():
        raise ParameterError(f"config file {path} is a directory; give a YAML file")
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else str(path)
        problem = " ".join(str(p) for p in (getattr(err, "context", None), getattr(err, "problem", None)) if p) or str(err)
        raise ParameterError(f"{where}: not valid YAML: {problem}") from None
    except UnicodeDecodeError as err:
        raise ParameterError(f"{path}: not a text file ({err.reason} at byte {err.start})") from None


def base_config(path: str | Path) -> tuple[dict[str, Any], str | None]:
    """The run-config values in `path` and the experiment it names (if any).

    `path` is either a run config (sections ``data``, ``model``, ... at the top, like a run
    folder's ``config.yaml``) or a params file, whose ``config:`` block is used and whose
    ``experiment`` names the experiment.
    """
    doc = read_yaml(path) or {}
    if not isinstance(doc, Mapping):
        raise ParameterError(f"{path}: expected a mapping of keys, got {type(doc).__name__}")
    if "config" in doc:
        return dict(doc["config"] or {}), doc.get("experiment")
    return dict(doc), None


def make_run_config(values: Mapping[str, Any], overrides: Mapping[str, Any] | None = None, where: str = "run config") -> RunConfig:
    """Validates `values` with dotted-key `overrides` applied into a `RunConfig`."""
    return validate(RunConfig, apply_overrides(values, overrides or {}), where=where)


def save_run_config(config: RunConfig, path: str | Path) -> None:
    """Writes the full config (every key, defaults included) as YAML, loadable by `base_config` + `make_run_config`."""
    atomic_write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))


def describe_keys() -> list[dict[str, Any]]:
    """Every dotted key with its type, default and description, for docs and ``--help``."""
    rows = []

    def walk(model: type[Section], prefix: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, Section):
                walk(annotation, f"{prefix}{name}.")
                continue
            default = None if field.is_required() else field.get_default(call_default_factory=True)
            rows.append({
                "key": f"{prefix}{name}",
                "default": "(required)" if field.is_required() else json.dumps(default),
                "description": field.description or "",
                "runtime": f"{prefix}{name}" in RUNTIME_KEYS,
            })

    walk(RunConfig, "")
    return rows


def keys_markdown() -> str:
    """params/README.md's table of run-config keys (``python -m partrobust.runconfig`` prints it)."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for row in describe_keys():
        note = " *(runtime: not part of the run id)*" if row["runtime"] else ""
        lines.append(f"| `{row['key']}` | `{row['default']}` | {row['description']}{note} |")
    return "\n".join(lines)


def main() -> int:
    """``python -m partrobust.runconfig``: prints `keys_markdown`."""
    print(keys_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
