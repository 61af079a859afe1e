"""Converter: the Part-ImageNet release (as the paper used it) -> the prepared format.

Raw layout expected under ``raw_root`` (the PartImageNet "OOD" release, arranged as the
authors' README says)::

    <raw_root>/JPEGImages/<synset>/<synset>_<n>.JPEG      all images of the three splits
    <raw_root>/train.json  val.json  test.json             COCO "instances" style annotations

The unzipped-but-not-moved layout ``<raw_root>/{train,val,test}/<synset>/<file>`` is accepted
too (used only when ``JPEGImages/`` does not exist; ``info["layout"]`` records which one).
Each JSON holds ``images`` (``id``, bare ``file_name``, ``height``, ``width``), ``annotations``
(``id``, ``image_id``, ``category_id``, ``segmentation``, ``area``; ``bbox``/``iscrowd`` are not
used) and ``categories`` (``id``, ``name`` = "<Super> <Part>", ``supercategory``). All three
files are read; the official by-synset split is ignored, as in the paper (it is kept in the
``source_split`` column).

Output: ``images/<stem>.jpg`` (the JPEG bytes copied unchanged, after checking that they
decode to the size given in the JSON), ``masks/<stem>.png`` (part ids, 8-bit), split CSVs with
the extra columns ``synset``, ``source_split``, ``image_id``, and ``metadata.json``.

Mapping (reference-spec 5.1, dataset-formats 1.3): classes are the 11 super-categories in
alphabetical order (label = index); part ids 1..40 visit the classes alphabetically and,
inside a class, the parts in the release's JSON category order (``CLASS_PARTS`` below, which
is that order). Categories are matched by name, so the ids do not depend on the JSON ids; a
name or super-category outside this table is an error. Mask painting follows the authors'
``prepare_part_imagenet.py``: start from background 0, paint the annotations of an image in
JSON list order, later ones overwriting earlier ones, and skip annotations whose ``area``
field is 0 (counted as ``zero_area_annotations_skipped`` in ``info["counts"]``).

Decisions where the spec leaves room:

* Rasteriser: pycocotools (``frPyObjects`` / ``merge`` / ``decode``), because it is the
  rasteriser the authors used, so masks match theirs pixel for pixel; PIL's ``ImageDraw``
  uses a different pixel-coverage rule (it fills boundary pixels), shifting part edges by up
  to one pixel. Defensive: RLE segmentations (``{"counts", "size"}``) are decoded as well.
* Short polygons (dataset-formats 1.2): stock pycocotools rejects a first polygon of 4
  numbers. A polygon of exactly 4 numbers is read as an ``[x, y, w, h]`` box, the authors'
  semantics (their patched ``annToRLE`` passes such a list to pycocotools as boxes). We apply
  it to every 4-number polygon; the authors' code did so only when it came first in its
  annotation (elsewhere pycocotools paints nothing for a 2-point segment): the number of
  such later boxes is recorded (``box_polygons_not_first``) so the deviation is visible.
  Polygons of 0 or 2 numbers (no area) paint nothing and are counted
  (``point_polygons_skipped``); other lengths below 6 or odd lengths are errors.
* Images with parts of two or more super-categories (reference-spec 8 item 23; the authors
  listed them under every such class, duplicating them across splits): ``multi_class``
  ``"majority"`` (default) keeps one sample labelled with the super-category of largest
  summed annotation ``area`` (ties: the first class alphabetically); ``"drop"`` leaves them
  out; ``"error"`` refuses them. Their masks keep every part (so ``info["own_class_parts_only"]``
  is false when such an image is kept). Stems are listed in ``info["multi_class_stems"]``.
* Images without any annotation are dropped (as the authors did) and counted. Images whose
  annotations all have ``area`` 0 are kept with an all-background mask (as the authors did).
* An image listed in a JSON whose file is absent is an error (the authors skipped it with a
  print); so is the same ``file_name`` in two JSON files, a file that is not a JPEG, and a
  decoded size different from the JSON ``height``/``width``.
* Split: ``stratified_split`` with ``rounding="floor"`` (the authors' ``int(0.1 n)``) over the
  samples sorted by stem, so it does not depend on JSON or file-system order; the authors'
  exact split is not reproducible (it depended on CPython set order, dataset-formats 1.6).

Resumable: a sample whose image and mask both exist is not redone; files are written
atomically and ``metadata.json`` last. Masks depend only on the raw data, never on
``seed``/``multi_class``/fractions, so rerunning with other split options reuses them.
"""
from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from ..convert import RawDatasetError, finish, require_dir, require_file, run_jobs, sample_done, sample_paths, stratified_split
from ..prepared import DatasetMetadata, PartInfo, atomic_write_bytes, write_mask

DATASET_NAME = "part_imagenet"
IMAGE_EXT = ".jpg"
JSON_SPLITS: tuple[str, ...] = ("train", "val", "test")
MULTI_CLASS_POLICIES: tuple[str, ...] = ("majority", "drop", "error")

#: Super-category -> its parts in the release's JSON category order (dataset-formats 1.3).
#: Keys are alphabetical: the class label is the index in this order.
CLASS_PARTS: dict[str, tuple[str, ...]] = {
    "Aeroplane": ("Head", "Body", "Engine", "Wing", "Tail"),
    "Bicycle": ("Body", "Head", "Seat", "Tier"),
    "Biped": ("Head", "Body", "Hand", "Foot", "Tail"),
    "Bird": ("Head", "Body", "Wing", "Foot", "Tail"),
    "Boat": ("Body", "Sail"),
    "Bottle": ("Mouth", "Body"),
    "Car": ("Body", "Tier", "Side Mirror"),
    "Fish": ("Head", "Body", "Fin", "Tail"),
    "Quadruped": ("Head", "Body", "Foot", "Tail"),
    "Reptile": ("Head", "Body", "Foot", "Tail"),
    "Snake": ("Head", "Body"),
}
CLASSES: tuple[str, ...] = tuple(CLASS_PARTS)
assert list(CLASSES) == sorted(CLASSES)
#: (class, part) -> mask value 1..40.
PART_IDS: dict[tuple[str, str], int] = {
    key: i
    for i, key in enumerate(((c, p) for c in CLASSES for p in CLASS_PARTS[c]), start=1)
}
NUM_PARTS = len(PART_IDS)


def part_infos() -> list[PartInfo]:
    """The 40 parts of the metadata, ids 1..40, named "<Class>/<Part>"."""
    return [PartInfo(id=i, name=f"{c}/{p}", class_name=c) for (c, p), i in PART_IDS.items()]


# --------------------------------------------------------------------------- reading the JSON


@dataclass(frozen=True)
class RawSample:
    """One kept image: where it comes from, its label and the annotations to paint."""

    stem: str
    source: Path
    source_split: str
    image_id: int
    height: int
    width: int
    label: int
    paint: tuple[tuple[int, Any], ...]  # (part id, segmentation) in JSON order, area > 0


def _field(obj: Any, key: str, where: str) -> Any:
    """obj[key], or RawDatasetError naming `where` (file + entry) and the missing key."""
    if not isinstance(obj, dict) or key not in obj:
        raise RawDatasetError(f"{where}: missing field {key!r}")
    return obj[key]


def _int_field(obj: Any, key: str, where: str, minimum: int | None = None) -> int:
    value = _field(obj, key, where)
    if not isinstance(value, int) or isinstance(value, bool) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise RawDatasetError(f"{where}: field {key!r} must be an integer{bound}, got {value!r}")
    return value


def _load_json(path: Path) -> dict[str, list]:
    """Parses one annotation file and checks its three top-level lists."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RawDatasetError(f"{path}: cannot read JSON ({e})") from e
    for key in ("images", "annotations", "categories"):
        if not isinstance(_field(data, key, str(path)), list):
            raise RawDatasetError(f"{path}: field {key!r} must be a list")
    return data


def _category_parts(path: Path, categories: list) -> dict[int, int]:
    """JSON category id -> part id (1..40), by name; unknown names or classes are errors."""
    mapping: dict[int, int] = {}
    for i, cat in enumerate(categories):
        where = f"{path} categories[{i}]"
        cat_id = _int_field(cat, "id", where)
        name, sup = _field(cat, "name", where), _field(cat, "supercategory", where)
        if sup not in CLASS_PARTS:
            raise RawDatasetError(
                f"{where}: super-category {sup!r} is not one of the 11 classes {list(CLASSES)}"
            )
        part = name[len(sup) + 1 :] if isinstance(name, str) and name.startswith(f"{sup} ") else None
        if part not in CLASS_PARTS[sup]:
            raise RawDatasetError(
                f"{where}: part name {name!r} not in the grouping table; expected '{sup} <part>' "
                f"with <part> one of {list(CLASS_PARTS[sup])}"
            )
        if cat_id in mapping:
            raise RawDatasetError(f"{where}: duplicate category id {cat_id}")
        mapping[cat_id] = PART_IDS[(sup, part)]
    return mapping


def _check_segmentation(seg: Any, height: int, width: int, where: str, counts: dict[str, int]) -> None:
    """Validates polygons / RLE cheaply and counts the short-polygon cases (see module doc)."""
    if isinstance(seg, dict):
        size = _field(seg, "size", where)
        if not isinstance(_field(seg, "counts", where), (list, str)):
            raise RawDatasetError(f"{where}: RLE 'counts' must be a list or a string")
        if not isinstance(size, list) or size != [height, width]:
            raise RawDatasetError(f"{where}: RLE size {size} differs from image size {[height, width]}")
        counts["rle_segmentations"] += 1
        return
    if not isinstance(seg, list):
        raise RawDatasetError(f"{where}: segmentation must be a list of polygons or an RLE dict")
    for k, poly in enumerate(seg):
        if not isinstance(poly, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in poly
        ):
            raise RawDatasetError(f"{where}: polygon {k} must be a flat list of numbers")
        n = len(poly)
        if n in (0, 2):
            counts["point_polygons_skipped"] += 1
        elif n == 4:
            counts["box_polygons"] += 1
            counts["box_polygons_not_first"] += int(k > 0)
        elif n < 6 or n % 2:
            raise RawDatasetError(f"{where}: polygon {k} has {n} numbers (need an even count >= 6, or 4 for a box)")


def _image_source(raw_root: Path, layout: str, split: str, file_name: str) -> Path:
    """Path of a raw image: JPEGImages/<synset>/<file> or <split>/<synset>/<file>."""
    folder = "JPEGImages" if layout == "JPEGImages" else split
    return raw_root / folder / file_name.split("_")[0] / file_name


def _choose_label(areas: dict[int, float], policy: str, where: str) -> int | None:
    """Class of an image from the summed annotation area per class (module doc, multi_class)."""
    if len(areas) == 1:
        return next(iter(areas))
    if policy == "error":
        names = [CLASSES[c] for c in sorted(areas)]
        raise RawDatasetError(
            f"{where}: image has parts of several classes {names} (multi_class='error'; "
            f"use 'majority' or 'drop')"
        )
    if policy == "drop":
        return None
    return min(areas, key=lambda c: (-areas[c], c))


def _collect_split(
    raw_root: Path, layout: str, split: str, policy: str, counts: dict[str, int], multi: list[str]
) -> list[RawSample]:
    """Reads and checks one JSON file; returns its kept samples (not yet checked on disk)."""
    path = require_file(raw_root / f"{split}.json", f"Part-ImageNet {split} annotations")
    data = _load_json(path)
    cat_to_part = _category_parts(path, data["categories"])
    part_to_class = {pid: CLASSES.index(c) for (c, _), pid in PART_IDS.items()}
    images: dict[int, dict] = {}
    for i, img in enumerate(data["images"]):
        where = f"{path} images[{i}]"
        image_id = _int_field(img, "id", where)
        file_name = _field(img, "file_name", where)
        if not isinstance(file_name, str) or "/" in file_name or "\\" in file_name or "_" not in file_name:
            raise RawDatasetError(f"{where}: file_name must be a bare '<synset>_<n>.JPEG', got {file_name!r}")
        _int_field(img, "height", where, minimum=1)
        _int_field(img, "width", where, minimum=1)
        if image_id in images:
            raise RawDatasetError(f"{where}: duplicate image id {image_id}")
        images[image_id] = img
    anns: dict[int, list[dict]] = {}
    for i, ann in enumerate(data["annotations"]):
        where = f"{path} annotations[{i}]"
        image_id = _int_field(ann, "image_id", where)
        cat = _int_field(ann, "category_id", where)
        area = _field(ann, "area", where)
        seg = _field(ann, "segmentation", where)
        if image_id not in images:
            raise RawDatasetError(f"{where}: image_id {image_id} is not in 'images'")
        if cat not in cat_to_part:
            raise RawDatasetError(f"{where}: category_id {cat} is not in 'categories'")
        if not isinstance(area, (int, float)) or isinstance(area, bool):
            raise RawDatasetError(f"{where}: field 'area' must be a number, got {area!r}")
        img = images[image_id]
        # polygons of zero-area annotations are checked but not counted: they are never painted
        tally = counts if area != 0 else dict.fromkeys(counts, 0)
        _check_segmentation(seg, img["height"], img["width"], where, tally)
        anns.setdefault(image_id, []).append(ann)
    samples = []
    for image_id, img in images.items():
        counts["images_listed"] += 1
        if image_id not in anns:
            counts["images_without_annotations"] += 1
            continue
        areas: dict[int, float] = {}
        paint = []
        for ann in anns[image_id]:
            part = cat_to_part[ann["category_id"]]
            areas[part_to_class[part]] = areas.get(part_to_class[part], 0.0) + float(ann["area"])
            if ann["area"] == 0:
                counts["zero_area_annotations_skipped"] += 1
            else:
                paint.append((part, ann["segmentation"]))
        stem = Path(img["file_name"]).stem
        label = _choose_label(areas, policy, f"{path} image {img['file_name']!r}")
        if len(areas) > 1:
            multi.append(stem)
        if label is None:
            continue
        samples.append(
            RawSample(
                stem=stem,
                source=_image_source(raw_root, layout, split, img["file_name"]),
                source_split=split,
                image_id=image_id,
                height=img["height"],
                width=img["width"],
                label=label,
                paint=tuple(paint),
            )
        )
    return samples


def _detect_layout(raw_root: Path) -> str:
    """'JPEGImages' (the authors' layout) or 'splits' (<split>/<synset>/ as unzipped)."""
    require_dir(raw_root, "Part-ImageNet raw root")
    if (raw_root / "JPEGImages").is_dir():
        return "JPEGImages"
    if all((raw_root / s).is_dir() for s in JSON_SPLITS):
        return "splits"
    raise RawDatasetError(
        f"{raw_root / 'JPEGImages'}: missing folder (Part-ImageNet images, "
        f"JPEGImages/<synset>/<synset>_<n>.JPEG; or train/, val/, test/ as unzipped)"
    )


def collect_samples(raw_root: str | os.PathLike, multi_class: str = "majority") -> tuple[list[RawSample], dict[str, Any]]:
    """Reads the three JSON files and checks everything cheap (files exist, fields, names).

    Returns the kept samples sorted by stem and a dict of counts/decisions for ``info``.
    """
    if multi_class not in MULTI_CLASS_POLICIES:
        raise ValueError(f"multi_class must be one of {MULTI_CLASS_POLICIES}, got {multi_class!r}")
    raw_root = Path(raw_root)
    layout = _detect_layout(raw_root)
    counts = dict.fromkeys(
        ("images_listed", "images_without_annotations", "zero_area_annotations_skipped",
         "box_polygons", "box_polygons_not_first", "point_polygons_skipped", "rle_segmentations"),
        0,
    )
    multi: list[str] = []
    samples: list[RawSample] = []
    for split in JSON_SPLITS:
        samples.extend(_collect_split(raw_root, layout, split, multi_class, counts, multi))
    seen: dict[str, RawSample] = {}
    for s in samples:
        if s.stem in seen:
            raise RawDatasetError(
                f"{raw_root / (s.source_split + '.json')}: image {s.source.name!r} is also listed in "
                f"{raw_root / (seen[s.stem].source_split + '.json')}"
            )
        seen[s.stem] = s
    for s in samples:
        if not s.source.is_file():
            raise RawDatasetError(
                f"{s.source}: image listed in {raw_root / (s.source_split + '.json')} "
                f"(image id {s.image_id}) is missing"
            )
    samples.sort(key=lambda s: s.stem)
    info = {"layout": layout, "counts": counts, "multi_class_stems": sorted(multi)}
    return samples, info


# --------------------------------------------------------------------------- rasterising


def segmentation_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Boolean (H, W) region of one annotation's segmentation (pycocotools; module doc).

    Polygons of >= 6 numbers are filled, 4-number polygons are ``[x, y, w, h]`` boxes,
    0/2-number polygons cover nothing; RLE dicts are decoded.
    """
    if isinstance(segmentation, dict):
        rle = segmentation
        if isinstance(rle["counts"], list):
            rle = mask_utils.frPyObjects(rle, height, width)
        return _decode(rle)
    polygons = [[float(v) for v in p] for p in segmentation if len(p) >= 6]
    boxes = [p for p in segmentation if len(p) == 4]
    rles = []
    if polygons:
        rles += mask_utils.frPyObjects(polygons, height, width)
    if boxes:
        rles += mask_utils.frPyObjects(np.asarray(boxes, dtype=np.float64), height, width)
    if not rles:
        return np.zeros((height, width), dtype=bool)
    return _decode(mask_utils.merge(rles))


def _decode(rle: dict) -> np.ndarray:
    """Boolean mask of one RLE; hides pycocotools' numpy-2 ``copy=False`` DeprecationWarning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*copy keyword", category=DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


def rasterize_parts(height: int, width: int, paint: Sequence[tuple[int, Any]]) -> np.ndarray:
    """uint8 part mask: background 0, each (part id, segmentation) painted in order (later wins)."""
    mask = np.zeros((height, width), dtype=np.uint8)
    for part_id, segmentation in paint:
        mask[segmentation_mask(segmentation, height, width)] = part_id
    return mask


def _check_jpeg(data: bytes, path: Path, height: int, width: int) -> None:
    """Decodes the bytes fully; raises naming `path` if unreadable, not JPEG or of wrong size."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format
            im.load()
            size = im.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise RawDatasetError(f"{path}: cannot read image ({e})") from e
    if fmt != "JPEG":
        raise RawDatasetError(f"{path}: not a JPEG file (format {fmt})")
    if size != (width, height):
        raise RawDatasetError(
            f"{path}: image size {size[1]}x{size[0]} (HxW) differs from the annotation's "
            f"height x width {height}x{width}"
        )


def _convert_sample(job: tuple[str, RawSample]) -> None:
    """Worker: check and copy the JPEG, rasterise and write the mask (both atomic)."""
    out_root, sample = job
    try:
        data = sample.source.read_bytes()
    except OSError as e:
        raise RawDatasetError(f"{sample.source}: cannot read image ({e})") from e
    _check_jpeg(data, sample.source, sample.height, sample.width)
    try:
        mask = rasterize_parts(sample.height, sample.width, sample.paint)
    except Exception as e:  # pycocotools raises bare Exception/TypeError on malformed input
        raise RawDatasetError(
            f"{sample.source}: cannot rasterise its annotations in {sample.source_split}.json ({e})"
        ) from e
    image_path, mask_path = sample_paths(out_root, sample.stem, IMAGE_EXT)
    write_mask(mask_path, mask, NUM_PARTS)
    atomic_write_bytes(image_path, data)


# --------------------------------------------------------------------------- entry point


def convert_part_imagenet(
    raw_root: str | os.PathLike,
    out_root: str | os.PathLike,
    *,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    multi_class: str = "majority",
) -> DatasetMetadata:
    """Converts a Part-ImageNet release under `raw_root` into the prepared format at `out_root`.

    Checks the whole release cheaply first (JSON fields, category names, image files present),
    then copies images and writes masks in `workers` processes (skipping samples already
    done), then splits stratified per class (``floor``; fractions default 10 %/10 %) with
    `seed` and writes the split CSVs and metadata.json. See the module docstring for the
    mapping and the decisions; `multi_class` is "majority", "drop" or "error".
    """
    raw_root, out_root = Path(raw_root), Path(out_root)
    samples, found = collect_samples(raw_root, multi_class)
    if not samples:
        raise RawDatasetError(f"{raw_root}: no annotated image in {', '.join(s + '.json' for s in JSON_SPLITS)}")
    jobs = [(str(out_root), s) for s in samples if not sample_done(out_root, s.stem, IMAGE_EXT)]
    run_jobs(_convert_sample, jobs, workers=workers, desc="Part-ImageNet", progress=progress)
    rows = []
    for s in samples:
        image, mask = sample_paths(out_root, s.stem, IMAGE_EXT)
        rows.append({
            "image": image.relative_to(out_root).as_posix(),
            "mask": mask.relative_to(out_root).as_posix(),
            "label": s.label,
            "synset": s.stem.split("_")[0],
            "source_split": s.source_split,
            "image_id": s.image_id,
        })
    splits = stratified_split([s.label for s in samples], seed, val_fraction, test_fraction, "floor")
    info = {
        "source": "PartImageNet OOD release (COCO JSON polygons), all three JSON files re-split",
        "converter": "partrobust.data.part_imagenet.convert_part_imagenet",
        "raw_root": str(raw_root.resolve()),
        "layout": found["layout"],
        "seed": seed,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "rounding": "floor",
        "split_order": "samples sorted by stem, then stratified_split per class",
        "multi_class": multi_class,
        # masks keep every part: only images with parts of several classes ("majority") break this
        "own_class_parts_only": multi_class != "majority" or not found["multi_class_stems"],
        "rasterizer": f"pycocotools {version('pycocotools')}",
        "short_polygons": "4 numbers = [x, y, w, h] box; 0 or 2 numbers paint nothing",
        "zero_area": "annotations with area == 0 are not painted",
        "counts": {**found["counts"], "samples": len(samples),
                   "multi_class_images": len(found["multi_class_stems"])},
        "multi_class_stems": found["multi_class_stems"],
    }
    meta = DatasetMetadata(name=DATASET_NAME, classes=list(CLASSES), parts=part_infos(), info=info)
    return finish(out_root, meta, rows, splits)
