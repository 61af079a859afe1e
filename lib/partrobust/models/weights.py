"""The ImageNet weights the paper's models start from, fetched once into a local cache and verified.

    python -m partrobust.weights fetch            # download (needs internet), verify, print the params lines
    python -m partrobust.weights paths            # where the files are (or would be) and whether they verify
    python -m partrobust.weights fetch --dir D    # another cache folder (default runs/weights)
    python -m partrobust.weights import-reference FILE --model {resnet,downsampled,bbox} --dataset {part_imagenet,cityscapes,pascal_part}
                                                  # one of the authors' released Table 1 files -> our checkpoint + run config

The reference used two different ImageNet checkpoints (reference-spec 1.2, 1.3 and note 14):

* the **baseline** (``model.pretrained_baseline``): timm 0.4.12's default ``resnet50`` weights,
  ``resnet50_ram-a26f946b.pth`` (timm's own recipe, 79.0 % ImageNet top-1);
* the segmenter's **encoder** (``model.pretrained_encoder``): smp's ``"imagenet"`` weights for
  ``resnet50``, i.e. torchvision's v1 ``resnet50-19c8e357.pth`` (76.1 %).

Checksums: each published file name ends in the first 8 hex digits of the file's SHA-256 (the
torch.hub convention), which `fetch` checks; it then records the full SHA-256 in
``<dir>/weights.json`` and `paths` re-checks it. A fetched file is also loaded into the
architecture it is for (every key accounted for, `load_backbone_weights`) before it is kept.
Nothing else in the project downloads anything, and no test or smoke run calls `fetch`.

``import-reference`` (`import_reference`) reads one of the authors' released checkpoints (Zenodo
record 8342614: the Table 1 weights; the full checkpoint dict with its ``argparse.Namespace``, or a
bare state dict), maps every key to ours (`partrobust.models.reference`: three layout eras, strict),
and writes a plain partrobust checkpoint (`partrobust.models.imported`) and beside it a run config
that evaluates it (``python -m partrobust.run THAT.yaml``: nothing is trained).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from ..core.checksum import sha256_of
from ..core.config import ParameterError, parse_fraction
from ..core.fileio import atomic_write_text, load_checkpoint, temporary_sibling
from ..core.paths import find_repo_root
from . import ModelConfig, build_model, load_backbone_weights
from .config import TRAININGS
from .counts import PAPER_DATASETS
from .imported import write_imported
from .reference import REFERENCE_MODELS, ReferenceImportError, check_args, experiment_settings, map_state_dict

DEFAULT_DIR = Path("runs/weights")
MANIFEST = "weights.json"


class WeightsError(RuntimeError):
    """A download failed, or a file does not match its checksum or its architecture."""


@dataclass(frozen=True)
class WeightsFile:
    """One published checkpoint: where it comes from, what it is for and its checksum prefix."""

    role: str  # "baseline" or "encoder"
    config_key: str
    url: str
    sha256_prefix: str
    description: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


WEIGHTS: dict[str, WeightsFile] = {
    "baseline": WeightsFile(
        "baseline", "model.pretrained_baseline",
        "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/resnet50_ram-a26f946b.pth",
        "a26f946b", "timm 0.4.12 resnet50 (the reference's baseline; 79.0% ImageNet top-1)"),
    "encoder": WeightsFile(
        "encoder", "model.pretrained_encoder",
        "https://download.pytorch.org/models/resnet50-19c8e357.pth",
        "19c8e357", "torchvision ResNet-50 v1 (smp's 'imagenet' encoder weights; 76.1% top-1)"),
}


def verify_architecture(item: WeightsFile, path: Path) -> None:
    """Loads `path` into the ResNet-50 it is for; raises if any key is missing or unexpected."""
    name = "resnet" if item.role == "baseline" else "downsampled"
    model = build_model(ModelConfig(name=name, num_classes=2, num_parts=1, part_to_class=[-1, 0], arch="resnet50", encoder="resnet50"))
    if item.role == "baseline":
        load_backbone_weights(model.net, path, ignore_prefixes=("fc",))
    else:
        load_backbone_weights(model.segmenter.encoder, path, ignore_prefixes=("fc",))


def _download(url: str, target: Path, progress: bool) -> None:
    from tqdm.auto import tqdm

    with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=target.name.split(".tmp-")[0].lstrip("."), disable=not progress) as bar:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                bar.update(len(block))


def fetch(item: WeightsFile, folder: Path = DEFAULT_DIR, progress: bool = True, check_architecture: bool = True) -> Path:
    """Downloads `item` into `folder` (unless a verified copy is there), checks it, returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / item.filename
    records = read_manifest(folder)
    if path.is_file() and records.get(item.filename, {}).get("sha256") == sha256_of(path):
        return path
    tmp = temporary_sibling(path)
    try:
        try:
            _download(item.url, tmp, progress)
        except OSError as err:
            raise WeightsError(f"cannot download {item.url} ({err}); on a machine without internet access, copy "
                               f"{item.filename} into {folder} by hand and run `python -m partrobust.weights paths`") from None
        digest = sha256_of(tmp)
        if not digest.startswith(item.sha256_prefix):
            raise WeightsError(f"{item.url}: SHA-256 {digest[:16]}... does not start with {item.sha256_prefix} "
                               "(the checksum in the published file name): the download is damaged or not that file")
        if check_architecture:
            verify_architecture(item, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    records[item.filename] = {"url": item.url, "sha256": digest, "bytes": path.stat().st_size, "role": item.role,
                              "config_key": item.config_key, "fetched": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic_write_text(folder / MANIFEST, json.dumps(records, indent=2) + "\n")
    return path


def read_manifest(folder: Path) -> dict[str, dict]:
    path = folder / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {}


def status(item: WeightsFile, folder: Path = DEFAULT_DIR) -> str:
    """"verified", "missing", or what is wrong with the file in `folder`."""
    path = folder / item.filename
    if not path.is_file():
        return "missing"
    digest = sha256_of(path)
    if not digest.startswith(item.sha256_prefix):
        return f"wrong checksum ({digest[:8]}, expected {item.sha256_prefix}...)"
    recorded = read_manifest(folder).get(item.filename, {}).get("sha256")
    if recorded not in (None, digest):
        return "changed since it was fetched"
    return "verified"


def params_lines(folder: Path = DEFAULT_DIR) -> str:
    """The ``model:`` lines that point a params file at the cached weights."""
    lines = ["  model:"]
    for item in WEIGHTS.values():
        lines.append(f"    {item.config_key.split('.', 1)[1]}: {(folder / item.filename).as_posix()}  # {item.description}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the authors' released weights

RELEASED_DIR = Path("runs/released")
TABLE1_EVAL = {"eps": "8/255", "pgd_steps": 100, "pgd_step_size": 0.001, "pgd_restarts": 5, "autoattack": True}
"""Table 1's evaluation (paper B.1): PGD-100 with step 0.001 and 5 restarts, and standard AutoAttack, at 8/255."""


@dataclass
class ImportResult:
    """What `import_reference` read and wrote (`lines` is what the command prints)."""

    checkpoint: Path
    config: Path
    sha256: str
    era: str
    training: str
    model_settings: dict[str, Any]
    lines: list[str] = field(default_factory=list)


def _plain(value: Any) -> Any:
    """An args value as a plain YAML/pickle-safe value (anything else as its text)."""
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def read_reference_file(path: Path) -> tuple[Mapping[str, torch.Tensor], dict[str, Any] | None, dict[str, Any]]:
    """(state dict, the file's args or None, other entries shown) of a released file.

    Loaded with ``weights_only=True`` and ``argparse.Namespace`` allow-listed for this file only:
    any other object (a crafted pickle) is refused by `load_checkpoint`."""
    obj = load_checkpoint(path, allow=(argparse.Namespace,))
    if isinstance(obj, Mapping) and "state_dict" in obj:
        args = obj.get("args")
        if isinstance(args, argparse.Namespace):
            args = vars(args)
        elif args is not None and not isinstance(args, Mapping):
            raise ReferenceImportError(f"{path}: 'args' is a {type(args).__name__}, expected an argparse.Namespace")
        info = {k: _plain(obj[k]) for k in ("epoch", "best_acc1") if k in obj}
        form = f"checkpoint dict {'with' if args is not None else 'without'} args" + "".join(f", {k} {v}" for k, v in info.items())
        return obj["state_dict"], (dict(args) if args is not None else None), {**info, "form": form}
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, None, {"form": "bare state dict"}
    raise ReferenceImportError(f"{path}: neither a checkpoint dict with 'state_dict' nor a bare state dict "
                               f"(top-level keys {list(obj)[:6] if isinstance(obj, Mapping) else type(obj).__name__})")


def import_reference(path: str | Path, model: str, dataset: str, out: str | Path | None = None,
                     data_root: str | None = None, eps: float = 8 / 255, training: str | None = None,
                     backbone: str | None = None) -> ImportResult:
    """Imports one of the authors' released files as `model` for `dataset`; writes our checkpoint and a run config.

    Args:
        path: the released file (full checkpoint dict with ``args``, or a bare state dict).
        model: ``resnet``, ``downsampled`` or ``bbox``; dataset: ``part_imagenet``, ``cityscapes`` or ``pascal_part``.
        out: our checkpoint (default ``runs/released/<dataset>/<model>-<training>.pt``); the run config is
            written beside it with the suffix ``.yaml``.
        data_root: the prepared dataset the run config evaluates on (default ``data/prepared/<dataset>``).
        eps: the budget the file's ``args.epsilon`` must have (Table 1: 8/255).
        training, backbone: required / checked for bare state dicts (no ``args``): normal, pgd or trades;
            the timm / smp ResNet (default resnet50). With ``args`` they must agree with it.

    Raises `ReferenceImportError` naming what does not fit (model type, dataset, class or part count,
    layout, key, shape, normaliser), before anything is written.
    """
    if model not in REFERENCE_MODELS:
        raise ReferenceImportError(f"--model {model!r}: expected one of {REFERENCE_MODELS}")
    if dataset not in PAPER_DATASETS:
        raise ReferenceImportError(f"--dataset {dataset!r}: expected one of {tuple(PAPER_DATASETS)}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    source_sha = sha256_of(path)
    state, args, info = read_reference_file(path)
    ref = check_args(args, model, dataset, eps, training, backbone)
    settings = experiment_settings(model, ref.experiment)
    num_classes, num_parts = PAPER_DATASETS[dataset]
    backbone_key = "arch" if model == "resnet" else "encoder"
    spec = {**settings, backbone_key: ref.backbone}
    config = ModelConfig(**spec, num_classes=num_classes, num_parts=0 if model == "resnet" else num_parts)
    net = build_model(config)
    mapped, layout = map_state_dict(state, model, dataset, net.state_dict())
    net.load_state_dict(mapped, strict=True)

    out = Path(out) if out is not None else RELEASED_DIR / dataset / f"{model}-{ref.training}.pt"
    source = {"file": path.name, "sha256": source_sha, "era": layout.era, "experiment": ref.experiment,
              "args": {k: _plain(v) for k, v in ref.shown.items()}, **{k: v for k, v in info.items() if k != "form"}}
    write_imported(out, mapped, config, ref.training, dataset, source)
    digest = sha256_of(out)
    run_config = {
        "data": {"root": data_root or f"data/prepared/{dataset}", "crop_size": 224, "resize_size": 256},
        "model": {**spec, "weights": out.as_posix(), "weights_sha256": digest, "weights_training": ref.training},
        "eval": dict(TABLE1_EVAL),
        "device": "auto",
    }
    config_path = out.with_suffix(".yaml")
    header = (f"# Evaluation-only run of {path.name} (SHA-256 {source_sha}), imported as {model} for {dataset}.\n"
              f"#   python -m partrobust.run {config_path.as_posix()}\n")
    atomic_write_text(config_path, header + yaml.safe_dump(run_config, sort_keys=False))

    form = info.pop("form")
    lines = [f"read      {path} ({form}; SHA-256 {source_sha[:16]}...)",
             f"layout    era {layout.era}: {len(state)} keys, every one mapped onto {len(mapped)} of ours "
             f"({sum(v.numel() for k, v in mapped.items() if 'num_batches' not in k):,} numbers); normaliser checked"]
    if ref.shown:
        lines.append("args      " + ", ".join(f"{k}={v}" for k, v in ref.shown.items()))
    lines += [f"model     {model} for {dataset} ({num_classes} classes" + (f", {num_parts} parts" if model != "resnet" else "")
              + f"), {ref.training} training, from experiment {ref.experiment!r}: "
              + ", ".join(f"{k}={v}" for k, v in spec.items() if k != "name"),
              f"wrote     {out} (SHA-256 {digest[:16]}...)",
              f"          {config_path}: python -m partrobust.run {config_path.as_posix()}"]
    return ImportResult(out, config_path, digest, layout.era, ref.training, spec, lines)


def _budget(text: str) -> float:
    """``--eps``: a budget as the run configs take it (``8/255`` or a number), refused by argparse otherwise."""
    try:
        return parse_fraction(text, "--eps")
    except ParameterError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _add_dir(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument("--dir", type=Path, default=default, help=f"cache folder (default {DEFAULT_DIR})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_dir(parser, DEFAULT_DIR)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("fetch", "download, verify and cache the ImageNet weights"), ("paths", "where the cached files are")):
        _add_dir(commands.add_parser(name, help=text), argparse.SUPPRESS)
    imp = commands.add_parser("import-reference", help="import one of the authors' released Table 1 files")
    imp.add_argument("file", type=Path, help="the released .pth/.pt file (checkpoint dict or bare state dict)")
    imp.add_argument("--model", required=True, choices=REFERENCE_MODELS)
    imp.add_argument("--dataset", required=True, choices=tuple(PAPER_DATASETS))
    imp.add_argument("--out", type=Path, help="our checkpoint (default runs/released/<dataset>/<model>-<training>.pt)")
    imp.add_argument("--data-root", help="prepared dataset of the run config (default data/prepared/<dataset>)")
    imp.add_argument("--training", choices=TRAININGS, help="required for a bare state dict; else checked")
    imp.add_argument("--backbone", help="ResNet of a bare state dict (default resnet50); else checked")
    imp.add_argument("--eps", type=_budget, default="8/255", help="the budget args.epsilon must have (default 8/255)")
    args = parser.parse_args(argv)

    if args.command == "import-reference":
        source = args.file.resolve()
        out = args.out.resolve() if args.out else None
        os.chdir(find_repo_root())  # default outputs and the config's paths are relative to the repository root
        try:
            result = import_reference(source, args.model, args.dataset, out, args.data_root, args.eps, args.training, args.backbone)
        except (ReferenceImportError, FileNotFoundError) as err:
            print(f"error: {source}: {err}", file=sys.stderr)
            return 2
        print("\n".join(result.lines))
        return 0

    os.chdir(find_repo_root())  # the default cache path is relative to the repository root, like params files
    failed = False
    for item in WEIGHTS.values():
        if args.command == "fetch":
            try:
                path = fetch(item, args.dir)
                print(f"{item.role}: {path} verified ({item.description})")
            except WeightsError as err:
                print(f"error: {err}", file=sys.stderr)
                failed = True
        else:
            print(f"{item.role}: {args.dir / item.filename}: {status(item, args.dir)} ({item.url})")
    print("\nIn a params file (the paper's params/*.yaml already point there):\nconfig:\n" + params_lines(args.dir))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
