"""The prepared dataset format: the one on-disk layout every dataset of the project uses.

Every dataset (the built-in synthetic one, and Part-ImageNet / Cityscapes / PASCAL-Part
once converted) is stored as::

    <root>/
      metadata.json
      images/<split>/<stem>.png      RGB image (real datasets may use .jpg)
      masks/<split>/<stem>.png       single-channel integer part mask (same height/width)

(The synthetic generator uses these split sub-folders; the converters of real datasets write
``images/<stem>.<ext>`` and ``masks/<stem>.png`` without them, see ``partrobust.data.convert``.
Loaders only follow the paths in the split CSVs.)
      train.csv  val.csv  test.csv   one row per sample

``metadata.json``::

    {
      "format_version": 1,
      "name": "<dataset name>",
      "classes": ["<class 0>", "<class 1>", ...],          # index in this list = label
      "parts": [                                           # ids 1..K, contiguous, in order
        {"id": 1, "name": "<class>/<part>", "class": "<class name>"},
        ...
      ],
      "info": {...}                                        # free-form: source, generator settings
    }

Part id 0 is the background and is implicit (not listed). K = len(parts). Part ids are
class-specific, as in Part-ImageNet: every part belongs to exactly one class, so the part
mask of an object determines its class (``DatasetMetadata.part_to_class``).

``info["own_class_parts_only"]`` (optional, default false): true when the generator or
converter guarantees that every part id in a row's mask belongs to that row's class (the
synthetic generator; Cityscapes with ``parts_of="instance"``; Part-ImageNet unless an image
holds parts of several classes; label variants copy it from their source). It is false where
masks may also label other objects in the image (PASCAL-Part, default Cityscapes crops).
``partrobust.data.scan.scan_prepared`` checks the part classes only when it is true.

Masks: value = part id (0 = background, 1..K = parts). Stored as an 8-bit "L" PNG when
K <= 255, else as a 16-bit greyscale PNG. No other values may appear.

Split files (``train.csv``, ``val.csv``, ``test.csv``): CSV with a header and at least the
columns ``image,mask,label``. ``image`` and ``mask`` are paths relative to ``<root>``
(forward slashes), ``label`` is the integer class index of the (single) object class of
the image. Extra columns are allowed and ignored by the loaders (the synthetic generator
adds ``texture``, the index of the texture class used to fill the object).

All files are written atomically (`partrobust.core.fileio`: a temporary file in the same folder,
then ``os.replace``), and generators write ``metadata.json`` last, so a folder without
``metadata.json`` is an incomplete dataset.

``validate_prepared`` checks a folder cheaply (metadata, split files, labels, first row's
files) so that mistakes surface before any long computation; it raises
``PreparedDatasetError`` naming the offending file or key.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from ..core.fileio import atomic_write_bytes, atomic_write_text  # noqa: F401 (the format's writers use them)

FORMAT_VERSION = 1
SPLITS: tuple[str, ...] = ("train", "val", "test")
UNLABELLED = -1
"""The mask value of a sample without part labels (the fewer-labels ablation): `PartDataset` fills such
masks with it, and the losses and pixel accuracies skip its pixels."""
SPLIT_COLUMNS: tuple[str, ...] = ("image", "mask", "label")
METADATA_FILE = "metadata.json"
_METADATA_KEYS = ("format_version", "name", "classes", "parts", "info")
_PART_KEYS = ("id", "name", "class")


class PreparedDatasetError(ValueError):
    """A prepared dataset folder is missing, incomplete or inconsistent (message names the path)."""


@dataclass(frozen=True)
class PartInfo:
    """One part: its id in the masks (1..K), its name ("<class>/<part>") and owning class."""

    id: int
    name: str
    class_name: str


@dataclass(frozen=True)
class DatasetMetadata:
    """Contents of ``metadata.json``: class names (index = label), parts (ids 1..K), free info."""

    name: str
    classes: list[str]
    parts: list[PartInfo]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_parts(self) -> int:
        """K, the number of parts, excluding the background."""
        return len(self.parts)

    def part_to_class(self) -> list[int]:
        """Class index of every mask value: entry 0 (background) is -1, entry k is part k's class."""
        index = {name: i for i, name in enumerate(self.classes)}
        return [-1] + [index[p.class_name] for p in self.parts]

    def to_json(self) -> dict[str, Any]:
        """The ``metadata.json`` dictionary for this metadata."""
        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "classes": list(self.classes),
            "parts": [{"id": p.id, "name": p.name, "class": p.class_name} for p in self.parts],
            "info": self.info,
        }


# --------------------------------------------------------------------------- metadata


def _require(obj: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(obj, Mapping) or key not in obj:
        raise PreparedDatasetError(f"{where}: missing required key {key!r}")
    return obj[key]


def _check_metadata(meta: DatasetMetadata, where: str) -> None:
    """Consistency checks shared by load and write: unique classes, parts 1..K, known classes."""
    if not meta.classes:
        raise PreparedDatasetError(f"{where}: 'classes' is empty")
    if len(set(meta.classes)) != len(meta.classes):
        raise PreparedDatasetError(f"{where}: 'classes' contains duplicate names")
    known = set(meta.classes)
    for expected, part in enumerate(meta.parts, start=1):
        if part.id != expected:
            raise PreparedDatasetError(
                f"{where}: part ids must be contiguous 1..K in order; "
                f"entry {expected - 1} ({part.name!r}) has id {part.id}, expected {expected}"
            )
        if part.class_name not in known:
            raise PreparedDatasetError(
                f"{where}: part {part.id} ({part.name!r}) belongs to unknown class "
                f"{part.class_name!r}; known classes: {meta.classes}"
            )


def folder_problem(root: str | os.PathLike) -> str:
    """Why `root` is not a dataset folder: a file where the folder should be, or nothing there."""
    if Path(root).exists():
        return f"data.root: {str(root)!r} is a file, not a dataset folder (give the folder notebook 00 prepared)"
    return f"dataset folder {str(root)!r} does not exist"


def load_metadata(root: str | os.PathLike) -> DatasetMetadata:
    """Read and check ``<root>/metadata.json``."""
    path = Path(root) / METADATA_FILE
    if not Path(root).is_dir():
        raise PreparedDatasetError(folder_problem(root))
    if not path.is_file():
        raise PreparedDatasetError(
            f"{path}: metadata file not found (an incomplete or unprepared dataset folder)"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PreparedDatasetError(f"{path}: cannot read JSON ({e})") from e
    where = str(path)
    for key in _METADATA_KEYS:
        _require(raw, key, where)
    if raw["format_version"] != FORMAT_VERSION:
        raise PreparedDatasetError(
            f"{where}: unsupported format_version {raw['format_version']!r} "
            f"(this code reads version {FORMAT_VERSION})"
        )
    if not isinstance(raw["classes"], list) or not all(isinstance(c, str) for c in raw["classes"]):
        raise PreparedDatasetError(f"{where}: 'classes' must be a list of strings")
    if not isinstance(raw["parts"], list):
        raise PreparedDatasetError(f"{where}: 'parts' must be a list")
    if not isinstance(raw["info"], dict):
        raise PreparedDatasetError(f"{where}: 'info' must be an object")
    parts = []
    for i, p in enumerate(raw["parts"]):
        pw = f"{where} parts[{i}]"
        values = [_require(p, k, pw) for k in _PART_KEYS]
        if not isinstance(values[0], int) or isinstance(values[0], bool):
            raise PreparedDatasetError(f"{pw}: 'id' must be an integer, got {values[0]!r}")
        parts.append(PartInfo(id=values[0], name=str(values[1]), class_name=str(values[2])))
    meta = DatasetMetadata(
        name=str(raw["name"]), classes=list(raw["classes"]), parts=parts, info=raw["info"]
    )
    _check_metadata(meta, where)
    return meta


def write_metadata(root: str | os.PathLike, meta: DatasetMetadata) -> None:
    """Check `meta` and write it atomically to ``<root>/metadata.json``."""
    path = Path(root) / METADATA_FILE
    _check_metadata(meta, str(path))
    atomic_write_text(path, json.dumps(meta.to_json(), indent=2, sort_keys=False) + "\n")


# --------------------------------------------------------------------------- split files


def split_path(root: str | os.PathLike, split: str) -> Path:
    return Path(root) / f"{split}.csv"


def read_split(root: str | os.PathLike, split: str) -> pd.DataFrame:
    """Read ``<root>/<split>.csv``; checks the required columns and integer labels."""
    path = split_path(root, split)
    if not path.is_file():
        raise PreparedDatasetError(f"{path}: split file not found")
    try:
        df = pd.read_csv(path, dtype={"image": str, "mask": str})
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise PreparedDatasetError(f"{path}: cannot read CSV ({e})") from e
    missing = [c for c in SPLIT_COLUMNS if c not in df.columns]
    if missing:
        raise PreparedDatasetError(
            f"{path}: missing column(s) {missing}; expected columns {list(SPLIT_COLUMNS)}"
        )
    if df[["image", "mask", "label"]].isna().any().any():
        raise PreparedDatasetError(f"{path}: empty cells in columns image/mask/label")
    if len(df) and not pd.api.types.is_integer_dtype(df["label"]):
        raise PreparedDatasetError(f"{path}: column 'label' must hold integers")
    return df


def write_split(
    root: str | os.PathLike, split: str, rows: pd.DataFrame | Iterable[Mapping[str, Any]]
) -> None:
    """Write ``<root>/<split>.csv`` atomically; `rows` hold at least image, mask, label."""
    path = split_path(root, split)
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if df.empty and not len(df.columns):
        df = pd.DataFrame(columns=list(SPLIT_COLUMNS))
    missing = [c for c in SPLIT_COLUMNS if c not in df.columns]
    if missing:
        raise PreparedDatasetError(f"{path}: rows lack column(s) {missing}")
    cols = list(SPLIT_COLUMNS) + [c for c in df.columns if c not in SPLIT_COLUMNS]
    atomic_write_text(path, df[cols].to_csv(index=False, lineterminator="\n"))


# --------------------------------------------------------------------------- image/mask files


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of an RGB (H,W,3) uint8 image or an (H,W) uint8/uint16 mask."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def mask_dtype(num_parts: int) -> np.dtype:
    """On-disk mask dtype: uint8 ("L" PNG) when K <= 255, else uint16."""
    return np.dtype(np.uint8) if num_parts <= 255 else np.dtype(np.uint16)


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an RGB uint8 (H,W,3) image as PNG, atomically."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{path}: image must be uint8 (H,W,3), got {image.dtype} {image.shape}")
    atomic_write_bytes(path, encode_png(image))


def write_mask(path: str | os.PathLike, mask: np.ndarray, num_parts: int) -> None:
    """Write an (H,W) part mask as an 8-bit (K <= 255) or 16-bit PNG, atomically."""
    if mask.ndim != 2:
        raise ValueError(f"{path}: mask must be (H,W), got shape {mask.shape}")
    if mask.size and (mask.min() < 0 or mask.max() > num_parts):
        raise ValueError(f"{path}: mask values must lie in 0..{num_parts}")
    atomic_write_bytes(path, encode_png(mask.astype(mask_dtype(num_parts))))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to RGB uint8 (H,W,3); unreadable files raise PreparedDatasetError."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as e:
        raise PreparedDatasetError(f"{path}: cannot read image ({e})") from e


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Decode a single-channel mask PNG to an (H,W) integer array (uint8, uint16 or int32)."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
                raise PreparedDatasetError(
                    f"{path}: mask must be a single-channel integer image, got mode {im.mode!r}"
                )
            arr = np.asarray(im)
    except PreparedDatasetError:
        raise
    except (OSError, ValueError, SyntaxError) as e:
        raise PreparedDatasetError(f"{path}: cannot read mask ({e})") from e
    if arr.ndim != 2:
        raise PreparedDatasetError(f"{path}: mask must be 2-D, got shape {arr.shape}")
    return arr


# --------------------------------------------------------------------------- validation


def validate_prepared(
    root: str | os.PathLike, splits: Sequence[str] = SPLITS, check_files: bool = True
) -> DatasetMetadata:
    """Cheap checks of a prepared folder, meant to run before any long computation.

    Checks: folder and metadata.json (all keys, parts 1..K, known classes), each split file
    (columns, labels in 0..C-1, non-empty) and, with `check_files`, that the first row's image and
    mask exist.
    Returns the metadata; raises PreparedDatasetError naming the offending path or key.
    """
    root = Path(root)
    if not root.is_dir():
        raise PreparedDatasetError(folder_problem(root))
    meta = load_metadata(root)
    for split in splits:
        path = split_path(root, split)
        df = read_split(root, split)
        if len(df) == 0:
            raise PreparedDatasetError(f"{path}: split file has no rows")
        bad = df[(df["label"] < 0) | (df["label"] >= meta.num_classes)]
        if len(bad):
            raise PreparedDatasetError(
                f"{path}: label {int(bad['label'].iloc[0])} (row {bad.index[0]}) out of range "
                f"0..{meta.num_classes - 1}"
            )
        if not check_files:  # the caller checks every file (`scan_prepared`)
            continue
        first = df.iloc[0]
        for col in ("image", "mask"):
            file = root / first[col]
            if not file.is_file():
                raise PreparedDatasetError(f"{path}: row 0 {col} file {str(file)!r} not found")
    return meta
