"""The authors' released checkpoints (``chawins/adv-part-model``, Zenodo record 8342614) in our key names.

A released file is the dict ``torch.save`` wrote in the reference's ``main.py`` (``state_dict``,
``optimizer``, ``scaler``, ``epoch``, ``best_acc1``, ``args``: an ``argparse.Namespace``), or a bare
state dict. Its ``state_dict`` is the wrapped model's: every key starts with one ``module.``
(DataParallel / DistributedDataParallel). Below that prefix the same weights were saved under
three historical layouts (`ERAS`):

==== ======================================= ============================================= ======================
era  normaliser (mean, std)                  network / segmenter                           part head
==== ======================================= ============================================= ======================
A    ``0.`` (baseline), ``segmenter.0.``     ``1.`` (baseline), ``segmenter.1.``            ``core_model.``
B    ``mean``, ``std``                       ``_model.``, ``_model.segmenter.``             ``_model.core_model.``
C    as B                                    as B, but the Downsampled model's segmenter    as B
                                             is ``_model._segmenter.``
==== ======================================= ============================================= ======================

Below those prefixes the names are timm's / torchvision's ResNet and smp's DeepLabV3+, exactly ours.
The heads are ``nn.Sequential`` with the reference's indices (`HEAD_INDEX`): the Downsampled head
starts with its ``AdaptiveAvgPool2d(P)`` (index 0; ours pools in the forward) and the Bounding-Box head
with an ``Identity``, so their layers sit one index later than ours.

`map_state_dict` maps every key strictly: no key left over on either side, every shape equal, the
normalisation buffers equal to ours; a wrong class or part count is named as such. The settings
that change the function come from the reference's experiment name (`experiment_settings`); no
silent ``strict=False`` (the reference's own loader drops what it cannot match).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .counts import PAPER_DATASETS
from .normalize import IMAGENET_MEAN, IMAGENET_STD

REFERENCE_MODELS = ("resnet", "downsampled", "bbox")
REFERENCE_DATASET_NAMES = {"part_imagenet": "part-imagenet", "cityscapes": "cityscapes", "pascal_part": "pascal-part"}
"""Our dataset name -> the reference's ``--dataset``; classes and parts are `PAPER_DATASETS`."""

TABLE1_EXPERIMENTS = {"resnet": "normal", "downsampled": "part-pooling-4-semi", "bbox": "part-wbbox-norm_img-semi"}
"""The reference's ``--experiment`` of each Table 1 model (used when a bare state dict has no ``args``)."""

TRAININGS = {"none": "normal", "pgd": "pgd", "trades": "trades"}
"""The reference's ``--adv-train`` -> our training label."""

HEAD_INDEX = {"downsampled": {1: 0, 2: 1, 5: 4, 6: 5, 8: 7}, "bbox": {2: 1, 3: 2, 5: 4, 6: 5}}
"""Reference ``core_model`` index -> our ``head.classifier`` index (layers with parameters or buffers)."""

LAST_LINEAR = {"resnet": "fc", "downsampled": "core_model.8", "bbox": "core_model.6"}
"""The reference's class-logit layer of each model (its weight is [C, ...])."""


@dataclass(frozen=True)
class Layout:
    """Where the parts of one model sit in one era (prefixes after the one ``module.``)."""

    era: str
    normalizer: str
    body: str  # the timm network (baseline) or the smp DeepLabV3+ (part models)
    head: str | None = None


ERAS: dict[str, tuple[Layout, ...]] = {
    "resnet": (Layout("A", "0.", "1."), Layout("B/C", "", "_model.")),
    "downsampled": (Layout("A", "segmenter.0.", "segmenter.1.", "core_model."),
                    Layout("B", "", "_model.segmenter.", "_model.core_model."),
                    Layout("C", "", "_model._segmenter.", "_model.core_model.")),
    "bbox": (Layout("A", "segmenter.0.", "segmenter.1.", "core_model."),
             Layout("B/C", "", "_model.segmenter.", "_model.core_model.")),
}
"""The layouts of each model; baseline and Bounding-Box keys are identical in eras B and C."""

_OUR_BODY = {"resnet": "net.", "downsampled": "segmenter.net.", "bbox": "segmenter.net."}
_WRAPPER = "module."


class ReferenceImportError(ValueError):
    """A released file does not fit the model, dataset or layout it is imported as (the message says which and why)."""


# --------------------------------------------------------------------------- the experiment name


def experiment_settings(model: str, experiment: str) -> dict[str, Any]:
    """Our ``model`` settings for the reference's ``--experiment`` string, or `ReferenceImportError`.

    Only names whose every token we reproduce exactly are accepted: ``normal`` (baseline);
    ``part-pooling-<P>[-nobg][-semi]`` (Downsampled: pool size P, background dropped with ``nobg``);
    ``part-wbbox-norm_img[-semi]`` (Bounding-Box: logit scores, centroids normalised by the image
    size). ``-semi`` changes only the training loss. Anything else (``bn``, ``conv1d``, ``no_score``,
    ``centroid``, object masks, ...) changes the function in ways we do not build, and is refused.
    """
    if model not in REFERENCE_MODELS:
        raise ReferenceImportError(f"--model {model!r}: the released weights are one of {REFERENCE_MODELS}")
    tokens = experiment.split("-")
    kind = "resnet" if tokens == ["normal"] else {"pooling": "downsampled", "wbbox": "bbox"}.get(tokens[1] if len(tokens) > 1 else "")
    if kind != model:
        what = f"a {kind} model" if kind else "not a model this importer knows"
        raise ReferenceImportError(f"wrong model type: the file's experiment {experiment!r} is {what}, but --model {model} was given")
    settings: dict[str, Any] = {"name": model, "output_stride": 16}  # the reference's DeepLabV3+ is always built with stride 16
    if model == "resnet":
        return {"name": model}
    if tokens[0] != "part":
        raise ReferenceImportError(f"experiment {experiment!r}: segmentation type {tokens[0]!r} (not part masks) is not a Table 1 model")
    rest = tokens[2:]
    if model == "downsampled":
        if not rest or not rest[0].isdigit():
            raise ReferenceImportError(f"experiment {experiment!r}: no pool size after 'pooling'")
        settings.update(pool_size=int(rest[0]), drop_background="nobg" in rest[1:], concat_input=False)
        allowed = {"nobg", "semi"}
        rest = rest[1:]
    else:
        if "norm_img" not in rest:
            raise ReferenceImportError(f"experiment {experiment!r}: without 'norm_img' the reference feeds raw pixel centroids, "
                                       "which our Bounding-Box head does not build")
        settings.update(bbox_score="logits")  # the reference has no score switch: always the foreground-weighted logits
        allowed = {"norm_img", "semi"}
    unknown = [t for t in rest if t not in allowed]
    if unknown:
        raise ReferenceImportError(f"experiment {experiment!r}: option(s) {unknown} change the {model} model in ways "
                                   "partrobust does not build; refused rather than evaluated as something else")
    return settings


# --------------------------------------------------------------------------- the args namespace


@dataclass(frozen=True)
class ReferenceArgs:
    """What the file's ``args`` says, checked against what the user said (`check_args`)."""

    experiment: str
    training: str
    backbone: str
    shown: dict[str, Any]


ARGS_SHOWN = ("experiment", "dataset", "seg_labels", "num_classes", "epsilon", "adv_train", "adv_beta", "seg_const_trn",
              "arch", "seg_backbone", "seg_arch", "epochs", "lr", "wd", "seed")


def check_args(args: Mapping[str, Any] | None, model: str, dataset: str, eps: float, training: str | None,
               backbone: str | None) -> ReferenceArgs:
    """Checks the file's ``args`` (None for a bare state dict) against the user's model, dataset, eps,
    training and backbone; returns what the import uses. Every disagreement is refused, naming both sides."""
    num_classes, num_parts = PAPER_DATASETS[dataset]
    part_model = model != "resnet"
    if args is None:
        if training is None:
            raise ReferenceImportError("a bare state dict does not say how it was trained: give --training normal|pgd|trades")
        return ReferenceArgs(TABLE1_EXPERIMENTS[model], training, backbone or "resnet50", {})
    shown = {k: args[k] for k in ARGS_SHOWN if k in args}
    missing = [k for k in ("experiment", "dataset", "adv_train") if k not in args]
    if missing:
        raise ReferenceImportError(f"the file's args lack {missing}; it does not look like a checkpoint of the reference's main.py")
    if args["dataset"] != REFERENCE_DATASET_NAMES[dataset]:
        raise ReferenceImportError(f"wrong dataset: the file's args.dataset is {args['dataset']!r}, but --dataset {dataset} "
                                   f"(the reference's {REFERENCE_DATASET_NAMES[dataset]!r}) was given")
    expected = {"num_classes": num_classes, **({"seg_labels": num_parts + 1} if part_model else {})}
    for key, value in expected.items():
        if key in args and args[key] != value:
            what = "class count" if key == "num_classes" else "part count"
            raise ReferenceImportError(f"wrong {what}: the file's args.{key} is {args[key]}, but {dataset} has {value} "
                                       + ("classes" if key == "num_classes" else f"segmenter channels ({num_parts} parts + background)"))
    if "epsilon" in args and not math.isclose(float(args["epsilon"]), eps, abs_tol=1e-6):
        raise ReferenceImportError(f"the file's args.epsilon is {float(args['epsilon']):.6f} = {float(args['epsilon']) * 255:.2f}/255, "
                                   f"not the expected {eps * 255:.2f}/255 (--eps)")
    adv = str(args["adv_train"])
    if adv not in TRAININGS:
        raise ReferenceImportError(f"the file's args.adv_train is {adv!r}; Table 1's weights are trained with {sorted(TRAININGS)}")
    if training is not None and TRAININGS[adv] != training:
        raise ReferenceImportError(f"the file's args.adv_train is {adv!r} ({TRAININGS[adv]} training), but --training {training} was given")
    if part_model and args.get("seg_arch", "deeplabv3plus") != "deeplabv3plus":
        raise ReferenceImportError(f"the file's args.seg_arch is {args['seg_arch']!r}; only deeplabv3plus is built here")
    key = "seg_backbone" if part_model else "arch"
    file_backbone = str(args.get(key, "resnet50"))
    if backbone is not None and backbone != file_backbone:
        raise ReferenceImportError(f"the file's args.{key} is {file_backbone!r}, but --backbone {backbone} was given")
    return ReferenceArgs(str(args["experiment"]), TRAININGS[adv], file_backbone, shown)


# --------------------------------------------------------------------------- the state dict


def strip_wrapper(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Removes the one ``module.`` prefix of a DataParallel / DDP model (all keys or none)."""
    wrapped = [k.startswith(_WRAPPER) for k in state]
    if all(wrapped) and state:
        return {k[len(_WRAPPER):]: v for k, v in state.items()}
    if any(wrapped):
        odd = [k for k in state if not k.startswith(_WRAPPER)][:3]
        raise ReferenceImportError(f"some keys start with 'module.' and some do not (e.g. {odd}): not one saved model")
    return dict(state)


def _fits(layout: Layout, keys: set[str], model: str) -> bool:
    if not {f"{layout.normalizer}mean", f"{layout.normalizer}std"} <= keys:
        return False
    if not any(k.startswith(layout.body) for k in keys):
        return False
    if layout.head is None:  # the baseline: no part head; its body is a ResNet with its class layer fc
        return f"{layout.body}fc.weight" in keys
    if f"{layout.body}segmentation_head.0.weight" not in keys or not any(k.startswith(layout.head) for k in keys):
        return False
    return (f"{layout.head}8.weight" in keys) == (model == "downsampled")  # the Downsampled head's class layer is index 8


def detect_layout(state: Mapping[str, torch.Tensor], model: str) -> Layout:
    """The era whose layout `state` (``module.`` stripped) has, for `model`; refuses naming the file's actual model."""
    keys = set(state)
    for layout in ERAS[model]:
        if _fits(layout, keys, model):
            return layout
    others = [(m, layout.era) for m in REFERENCE_MODELS if m != model for layout in ERAS[m] if _fits(layout, keys, m)]
    if others:
        found, era = others[0]
        raise ReferenceImportError(f"wrong model type: the file holds a {found} model (era {era} layout), not a {model} model; "
                                   f"import it with --model {found}")
    tops = sorted({k.split(".")[0] + ("." + k.split(".")[1] if k.split(".")[0] in ("_model", "segmenter") else "") for k in keys})
    expected = "; ".join(f"era {lay.era}: {lay.normalizer}mean, {lay.body}..." + (f", {lay.head}..." if lay.head else "")
                         for lay in ERAS[model])
    raise ReferenceImportError(f"no layout era of the reference's {model} model fits the file (its keys start with {tops[:8]}); "
                               f"expected {expected}")


def _our_key(key: str, layout: Layout, model: str) -> str | None:
    """Our name of one reference key, or None when the key has no place in `model`'s layout."""
    if key in (f"{layout.normalizer}mean", f"{layout.normalizer}std"):
        return f"normalize.{key.rsplit('.', 1)[-1]}" if "." in key else f"normalize.{key}"
    if layout.head is not None and key.startswith(layout.head):
        index, _, name = key[len(layout.head):].partition(".")
        if not index.isdigit() or int(index) not in HEAD_INDEX[model] or not name:
            return None
        return f"head.classifier.{HEAD_INDEX[model][int(index)]}.{name}"
    if key.startswith(layout.body):
        return _OUR_BODY[model] + key[len(layout.body):]
    return None


def _reference_key(ours: str, layout: Layout, model: str) -> str:
    """The file key that `ours` expects (for messages about missing keys)."""
    if ours.startswith("normalize."):
        return layout.normalizer + ours.split(".", 1)[1]
    if ours.startswith("head.classifier."):
        index, _, name = ours[len("head.classifier."):].partition(".")
        back = {v: k for k, v in HEAD_INDEX[model].items()}
        return f"{layout.head}{back.get(int(index), '?')}.{name}"
    return layout.body + ours[len(_OUR_BODY[model]):]


def _shape(state: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...] | None:
    return tuple(state[key].shape) if key in state else None


def check_counts(state: Mapping[str, torch.Tensor], layout: Layout, model: str, dataset: str) -> None:
    """Refuses a file whose classifier has another class count, or whose segmenter another part count, than `dataset`."""
    num_classes, num_parts = PAPER_DATASETS[dataset]
    last = LAST_LINEAR[model]
    key = f"{layout.body}{last}.weight" if model == "resnet" else f"{layout.head}{last.split('.', 1)[1]}.weight"
    shape = _shape(state, key)
    if shape is not None and shape[0] != num_classes:
        raise ReferenceImportError(f"wrong class count: the file's class layer {key} has {shape[0]} outputs {list(shape)}, "
                                   f"but {dataset} has {num_classes} classes")
    if model != "resnet":
        key = f"{layout.body}segmentation_head.0.weight"
        shape = _shape(state, key)
        if shape is not None and shape[0] != num_parts + 1:
            raise ReferenceImportError(f"wrong part count: the file's segmenter {key} has {shape[0]} channels {list(shape)}, but "
                                       f"{dataset} has {num_parts} parts + background = {num_parts + 1}")


def map_state_dict(state: Mapping[str, torch.Tensor], model: str, dataset: str,
                   ours: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], Layout]:
    """`state` (a released ``state_dict``, with or without ``module.``) in the names of `ours` (our model's state dict).

    Strict: every key of the file lands on one of ours, every one of ours is filled, shapes and dtypes
    agree, and the normalisation buffers equal ours. Returns the mapped dict and the era found.
    """
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ReferenceImportError(f"state dict entries that are not tensors: {bad[:5]}")
    state = strip_wrapper(state)
    layout = detect_layout(state, model)
    check_counts(state, layout, model, dataset)
    mapped: dict[str, torch.Tensor] = {}
    sources: dict[str, str] = {}
    unexpected = []
    for key, value in state.items():
        target = _our_key(key, layout, model)
        if target is None or target not in ours:
            unexpected.append(key)
            continue
        if target in mapped:
            raise ReferenceImportError(f"keys {sources[target]!r} and {key!r} both map to {target!r}")
        mapped[target], sources[target] = value, key
    missing = sorted(k for k in ours if k not in mapped)
    if unexpected or missing:
        raise ReferenceImportError(
            f"the file does not fit the {model} model (era {layout.era} layout): "
            + (f"{len(unexpected)} unexpected key(s) {sorted(unexpected)[:6]}" if unexpected else "")
            + ("; " if unexpected and missing else "")
            + (f"{len(missing)} missing key(s) {[_reference_key(k, layout, model) for k in missing][:6]}" if missing else ""))
    wrong = [f"{sources[k]} {list(v.shape)} -> {k} {list(ours[k].shape)}" for k, v in mapped.items() if v.shape != ours[k].shape]
    if wrong:
        raise ReferenceImportError(f"shape mismatch for {len(wrong)} key(s): {wrong[:6]}")
    kinds = [f"{sources[k]} ({v.dtype} vs {ours[k].dtype})" for k, v in mapped.items() if v.is_floating_point() != ours[k].is_floating_point()]
    if kinds:
        raise ReferenceImportError(f"dtype mismatch for {kinds[:6]}")
    for name, values in (("mean", IMAGENET_MEAN), ("std", IMAGENET_STD)):
        found = mapped[f"normalize.{name}"].double().flatten()
        if not torch.allclose(found, torch.tensor(values, dtype=torch.float64), atol=1e-6):
            raise ReferenceImportError(f"normalisation buffer {sources[f'normalize.{name}']} is {found.tolist()}, ours is "
                                       f"{list(values)}: the model would see differently scaled images")
    return {k: v.to(ours[k].dtype).contiguous() for k, v in mapped.items()}, layout
