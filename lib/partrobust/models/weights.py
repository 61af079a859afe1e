"""The ImageNet weights the paper's models start from, fetched once into a local cache and verified.

    python -m partrobust.weights fetch            # download (needs internet), verify, print the params lines
    python -m partrobust.weights paths            # where the files are (or would be) and whether they verify
    python -m partrobust.weights fetch --dir D    # another cache folder (default runs/weights)

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
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..core.fileio import atomic_write_text, temporary_sibling
from ..core.paths import find_repo_root
from . import ModelConfig, build_model, load_backbone_weights

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


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("fetch", "paths"))
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"cache folder (default {DEFAULT_DIR})")
    args = parser.parse_args(argv)

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
