"""Converter from PASCAL-Part (Chen et al., CVPR 2014) + VOC2010 images to the prepared format.

Raw layout expected (the authors' flattened layout; the two folders can be given explicitly
with ``images_dir=`` / ``annotations_dir=``, e.g. ``VOCdevkit/VOC2010/JPEGImages`` or
``trainval/Annotations_Part``; nothing is guessed)::

    <raw_root>/JPEGImages/<imname>.jpg          VOC2010 trainval JPEGs
    <raw_root>/Annotations_Part/<imname>.mat    one MATLAB 5 file per image, variable ``anno``

``anno`` is a 1x1 struct with ``imname`` (the file stem) and ``objects``, a 1xN struct array
with ``class`` (VOC name), ``class_ind`` (VOC index 1..20), ``mask`` (HxW, 0/1) and
``parts``, a 1xK struct array with ``part_name`` and ``mask``; objects without parts have an
empty (0x0) ``parts``. Struct arrays are read whatever their shape (MATLAB column-major order).

Mapping (the reference ``prepare_pascal_part.py``; dataset-formats.md 3.4-3.5):

* label = class of the object with the largest mask (non-zero pixels) among all objects of
  all 20 classes, strict ``>`` so the first of equal maxima wins; the image is kept only when
  that class is aeroplane, bird, car, cat or dog (``CLASSES``, sorted = label order). Images
  without an object of positive area are skipped; ``min_area`` (a fraction of the image,
  default 0 as in the paper's runs) skips images whose largest object is smaller.
* part mask: raw part names are grouped into 3 coarse parts per class (``PART_GROUPS``,
  ids 1..15 in class order, background 0) by *substring* match (``wheel_3`` matches
  ``wheel``); the first group in table order that matches a name takes it. The main object is
  painted first, then every other object of the five classes in file order, each with its own
  class' ids; within an object the groups are painted in table order (body last, so wheels and
  windows win over the panels they overlap) and a pixel keeps the first label it receives.
  Objects of other classes, and object pixels not covered by any part, stay 0.
* split: ``stratified_split(labels, seed, val_fraction, test_fraction, rounding="round")``
  over the kept images in sorted ``.mat`` order: per class (sorted), shuffled with
  ``RandomState(seed)``, val = first ``round(0.1 n)``, test = next ``round(0.1 n)``, rest
  train - the reference's procedure, so the same raw files give the same split.

Output: ``images/<imname>.jpg`` (the JPEG bytes copied unchanged, after checking that they
decode to the annotation's size), ``masks/<imname>.png`` (uint8 PNG, values 0..15), the split
CSVs with extra columns ``imname`` and ``class``, ``metadata.json`` last, and
``pascal_part_scan.json``: a cache of what the scan learned from each ``.mat`` (keyed by name,
size and mtime), so that rerunning a finished conversion reads no ``.mat`` again. A sample's
files, once written, are never rewritten (delete ``out_root`` to reconvert after editing raw
files); files of samples a later run no longer selects (other ``min_area``) stay in place,
unused, since the split CSVs are the only record of membership. A split that would be empty
(too few images for the fractions) gets a warning from ``convert.finish``; ``validate_prepared``
then refuses the dataset.

Decisions where the reference or the spec leave it open (the reference is silent in each case):

* a raw part name of a painted object (five classes, kept image) that matches no group raises
  ``RawDatasetError`` naming the ``.mat`` file and the name; the reference drops it silently.
  All scan errors are collected and reported together, before any image is written.
* a kept image whose JPEG is missing, is not a JPEG, does not decode, or whose size differs
  from the masks raises ``RawDatasetError`` naming the file (the reference skipped missing
  JPEGs silently). JPEGs of skipped images are not required.
* every ``.mat`` is checked structurally (fields present, all masks 2-D with one shape,
  ``imname`` equal to the file stem, ``class_ind`` equal to the VOC index for the five
  classes); violations raise naming the file, even for images that would be skipped.
* masks are stored as 8-bit PNG instead of the reference's int8 TIFF; the values are the same.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import scipy.io
from PIL import Image

from ..convert import RawDatasetError, finish, require_dir, run_jobs, sample_done, sample_paths, stratified_split
from ..prepared import SPLITS, DatasetMetadata, PartInfo, atomic_write_bytes, atomic_write_text, write_mask

NAME = "pascal_part"
CLASSES: tuple[str, ...] = ("aeroplane", "bird", "car", "cat", "dog")
IMAGE_EXT = ".jpg"
SCAN_CACHE_FILE = "pascal_part_scan.json"
_SCAN_VERSION = 1
_MAX_REPORTED = 20

#: class -> ((group, raw-name keywords matched as substrings), ...), in painting order.
PART_GROUPS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "aeroplane": (
        ("tail", ("tail", "stern")),
        ("wing", ("lwing", "rwing", "engine")),
        ("body", ("body", "wheel")),
    ),
    "bird": (
        ("head", ("head", "beak", "leye", "reye", "neck")),
        ("legs", ("lleg", "rleg", "lfoot", "rfoot")),
        ("body", ("torso", "lwing", "rwing", "tail")),
    ),
    "car": (
        ("wheel", ("wheel",)),
        ("window", ("window",)),
        ("body", (
            "bliplate", "backside", "door", "fliplate", "frontside", "headlight",
            "leftmirror", "leftside", "rightmirror", "rightside", "roofside",
        )),
    ),
    "cat": (
        ("head", ("head", "nose", "leye", "reye", "lear", "rear", "neck")),
        ("legs", ("lfleg", "rfleg", "lbleg", "rbleg", "lfpa", "rfpa", "lbpa", "rbpa")),
        ("body", ("torso", "tail")),
    ),
    "dog": (
        ("head", ("head", "nose", "leye", "reye", "lear", "rear", "neck", "muzzle")),
        ("legs", ("lfleg", "rfleg", "lbleg", "rbleg", "lfpa", "rfpa", "lbpa", "rbpa")),
        ("body", ("torso", "tail")),
    ),
}

#: VOC2010 ``class_ind`` of the five classes (checked against ``class``).
VOC_CLASS_IND: dict[str, int] = {"aeroplane": 1, "bird": 3, "car": 7, "cat": 8, "dog": 12}

_ANNO_FIELDS = ("imname", "objects")
_OBJECT_FIELDS = ("class", "class_ind", "mask", "parts")
_PART_FIELDS = ("part_name", "mask")


# --------------------------------------------------------------------------- table


def part_infos() -> list[PartInfo]:
    """The 15 parts (ids 1..15): classes in ``CLASSES`` order, groups in table order."""
    infos = []
    for cls in CLASSES:
        for group, _ in PART_GROUPS[cls]:
            infos.append(PartInfo(id=len(infos) + 1, name=f"{cls}/{group}", class_name=cls))
    return infos


def _class_offsets() -> dict[str, int]:
    """Part id of a class' first group minus 1 (0 aeroplane, 3 bird, ...)."""
    offsets, total = {}, 0
    for cls in CLASSES:
        offsets[cls] = total
        total += len(PART_GROUPS[cls])
    return offsets


def part_group(class_name: str, part_name: str) -> int | None:
    """Index of the first group of `class_name` with a keyword inside `part_name`, else None."""
    for index, (_, keywords) in enumerate(PART_GROUPS[class_name]):
        if any(k in part_name for k in keywords):
            return index
    return None


# --------------------------------------------------------------------------- .mat parsing


class _Part:
    __slots__ = ("name", "mask")

    def __init__(self, name: str, mask: np.ndarray) -> None:
        self.name, self.mask = name, mask


class _Object:
    __slots__ = ("class_name", "class_ind", "mask", "parts")

    def __init__(self, class_name: str, class_ind: int, mask: np.ndarray, parts: list[_Part]) -> None:
        self.class_name, self.class_ind, self.mask, self.parts = class_name, class_ind, mask, parts


def _records(array: Any, fields: Sequence[str], where: str) -> list[np.void]:
    """Elements of a MATLAB struct array (any shape, column-major), checking its fields.

    An empty array (e.g. the 0x0 ``parts`` of objects without parts) gives [] whatever its
    dtype, since MATLAB may store empty structs without fields.
    """
    if not isinstance(array, np.ndarray):
        raise RawDatasetError(f"{where}: expected a struct array, got {type(array).__name__}")
    if array.size == 0:
        return []
    names = array.dtype.names or ()
    missing = [f for f in fields if f not in names]
    if missing:
        raise RawDatasetError(f"{where}: struct lacks field(s) {missing} (has {list(names)})")
    return list(array.ravel(order="F"))


def _string(value: Any, where: str) -> str:
    """A MATLAB char row vector (loadmat gives a 1-element unicode array) as str."""
    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind == "U" and value.size <= 1:
        return str(value.ravel()[0]) if value.size else ""
    raise RawDatasetError(f"{where}: expected a string, got {type(value).__name__} {getattr(value, 'shape', '')}")


def _integer(value: Any, where: str) -> int:
    """A MATLAB integer scalar (a 1x1 array) as int."""
    arr = np.asarray(value)
    ok = arr.size == 1 and arr.dtype.kind in "iuf"
    if ok and arr.dtype.kind == "f":
        x = float(arr.ravel()[0])
        ok = bool(np.isfinite(x)) and x == int(x)
    if not ok:
        raise RawDatasetError(f"{where}: expected an integer scalar, got {arr.dtype} {arr.shape}")
    return int(arr.ravel()[0])


def _mask(value: Any, shape: tuple[int, int] | None, where: str) -> np.ndarray:
    """A 2-D mask as bool (non-zero = inside), checking it has the image's shape."""
    if not isinstance(value, np.ndarray) or value.ndim != 2 or value.dtype.kind not in "biuf":
        raise RawDatasetError(f"{where}: expected a 2-D numeric mask, got {type(value).__name__} {getattr(value, 'shape', '')}")
    if shape is not None and value.shape != shape:
        raise RawDatasetError(f"{where}: mask shape {value.shape} differs from the file's first object mask {shape}")
    return value != 0


def load_annotation(path: str | os.PathLike) -> tuple[str, list[_Object], tuple[int, int] | None]:
    """Read one ``Annotations_Part`` file: (imname, objects, (H, W) or None without objects).

    Checks the structure (fields, strings, masks of one shape, ``class_ind`` of the five
    classes) and raises ``RawDatasetError`` naming the file.
    """
    path = Path(path)
    try:
        content = scipy.io.loadmat(str(path), variable_names=["anno"])
    except Exception as e:  # scipy raises ValueError, TypeError, MatReadError, NotImplementedError (v7.3) ...
        raise RawDatasetError(f"{path}: cannot read .mat file ({type(e).__name__}: {e})") from e
    if "anno" not in content:
        raise RawDatasetError(f"{path}: no variable 'anno'")
    annos = _records(content["anno"], _ANNO_FIELDS, f"{path} anno")
    if len(annos) != 1:
        raise RawDatasetError(f"{path}: 'anno' must be a 1x1 struct, has {len(annos)} elements")
    anno = annos[0]
    imname = _string(anno["imname"], f"{path} anno.imname")
    shape: tuple[int, int] | None = None
    objects = []
    for j, obj in enumerate(_records(anno["objects"], _OBJECT_FIELDS, f"{path} anno.objects")):
        where = f"{path} anno.objects({j + 1})"
        class_name = _string(obj["class"], f"{where}.class")
        class_ind = _integer(obj["class_ind"], f"{where}.class_ind")
        if class_name in VOC_CLASS_IND and class_ind != VOC_CLASS_IND[class_name]:
            raise RawDatasetError(
                f"{where}: class {class_name!r} but class_ind {class_ind} "
                f"(expected {VOC_CLASS_IND[class_name]})"
            )
        mask = _mask(obj["mask"], shape, f"{where}.mask")
        shape = mask.shape
        parts = []
        for k, part in enumerate(_records(obj["parts"], _PART_FIELDS, f"{where}.parts")):
            pwhere = f"{where}.parts({k + 1})"
            parts.append(_Part(_string(part["part_name"], f"{pwhere}.part_name"), _mask(part["mask"], shape, f"{pwhere}.mask")))
        objects.append(_Object(class_name, class_ind, mask, parts))
    return imname, objects, shape


def main_object(objects: Sequence[_Object]) -> int | None:
    """Index of the object with the largest area (first of equal maxima), None if all are empty."""
    best, best_area = None, 0
    for j, obj in enumerate(objects):
        area = int(np.count_nonzero(obj.mask))
        if area > best_area:
            best, best_area = j, area
    return best


def paint_parts(objects: Sequence[_Object], main: int, shape: tuple[int, int], mat_path: str | os.PathLike) -> np.ndarray:
    """The (H, W) uint8 part mask: main object first, then the other objects of the five classes.

    Within an object groups are painted in table order; only still-0 pixels are painted.
    An unknown part name raises (it is also reported by the scan, before any writing).
    """
    offsets = _class_offsets()
    label = np.zeros(shape, dtype=np.uint8)
    order = [main] + [j for j in range(len(objects)) if j != main]
    for j in order:
        obj = objects[j]
        if obj.class_name not in PART_GROUPS:
            continue
        groups = [part_group(obj.class_name, p.name) for p in obj.parts]
        for p, g in zip(obj.parts, groups):
            if g is None:
                raise RawDatasetError(_unknown_part_message(mat_path, obj.class_name, p.name))
        for g in range(len(PART_GROUPS[obj.class_name])):
            region = np.zeros(shape, dtype=bool)
            for p, pg in zip(obj.parts, groups):
                if pg == g:
                    region |= p.mask
            label[region & (label == 0)] = offsets[obj.class_name] + g + 1
    return label


def _unknown_part_message(mat_path: str | os.PathLike, class_name: str, part_name: str) -> str:
    return (
        f"{mat_path}: part name {part_name!r} of a {class_name!r} object matches no group of the "
        f"grouping table (PART_GROUPS[{class_name!r}])"
    )


# --------------------------------------------------------------------------- scan (parallel)


def _scan_file(mat_path: str) -> dict[str, Any]:
    """What the selection needs from one ``.mat``; errors are returned, not raised, to report all."""
    path = Path(mat_path)
    record: dict[str, Any] = {"stem": path.stem, "height": 0, "width": 0, "main_class": None,
                              "main_area": 0, "unknown_parts": [], "error": None}
    try:
        imname, objects, shape = load_annotation(path)
        if imname != path.stem:
            raise RawDatasetError(f"{path}: anno.imname {imname!r} differs from the file name {path.stem!r}")
    except RawDatasetError as e:
        record["error"] = str(e)
        return record
    if shape is not None:
        record["height"], record["width"] = int(shape[0]), int(shape[1])
    main = main_object(objects)
    if main is not None:
        record["main_class"] = objects[main].class_name
        record["main_area"] = int(np.count_nonzero(objects[main].mask))
    record["unknown_parts"] = [
        [obj.class_name, p.name]
        for obj in objects if obj.class_name in PART_GROUPS
        for p in obj.parts if part_group(obj.class_name, p.name) is None
    ]
    return record


def _file_key(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _cache_header(annotations_dir: Path) -> dict[str, Any]:
    """Cache entries are valid only for the same folder, scan code version and grouping table."""
    return {"version": _SCAN_VERSION, "annotations_dir": str(annotations_dir.resolve()),
            "groups": {c: [[g, list(k)] for g, k in PART_GROUPS[c]] for c in CLASSES}}


def _load_cache(out_root: Path, header: dict[str, Any]) -> dict[str, Any]:
    """The cached scan entries (name -> {size, mtime_ns, record}); {} if absent or stale."""
    path = out_root / SCAN_CACHE_FILE
    if not path.is_file():
        return {}
    try:
        cache = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}  # a damaged cache only costs a rescan
    if not isinstance(cache, dict) or cache.get("header") != header or not isinstance(cache.get("files"), dict):
        return {}
    return cache["files"]


def scan_annotations(
    mat_paths: Sequence[Path], out_root: Path, annotations_dir: Path, workers: int, progress: bool
) -> list[dict[str, Any]]:
    """Scan records of all ``.mat`` files (in order), reusing the cache for unchanged files."""
    header = _cache_header(annotations_dir)
    cached = _load_cache(out_root, header)
    keys = [_file_key(p) for p in mat_paths]
    records: list[dict[str, Any] | None] = []
    todo = []
    for i, (p, key) in enumerate(zip(mat_paths, keys)):
        entry = cached.get(p.name)
        if isinstance(entry, dict) and entry.get("size") == key["size"] and entry.get("mtime_ns") == key["mtime_ns"]:
            records.append(entry["record"])
        else:
            records.append(None)
            todo.append(i)
    fresh = run_jobs(_scan_file, [str(mat_paths[i]) for i in todo], workers, "scanning PASCAL-Part .mat", progress)
    for i, record in zip(todo, fresh):
        records[i] = record
    # failed files are not cached: they are few, and a transient read error must not stick
    files = {p.name: {**key, "record": r} for p, key, r in zip(mat_paths, keys, records) if not r["error"]}
    new_cache = {"header": header, "files": files}
    if todo or files != cached:
        atomic_write_text(out_root / SCAN_CACHE_FILE, json.dumps(new_cache) + "\n")
    return records  # type: ignore[return-value]


# --------------------------------------------------------------------------- selection and checks


def _raise_all(problems: list[str], what: str) -> None:
    """One RawDatasetError listing (up to _MAX_REPORTED of) the problems, each naming its file."""
    if not problems:
        return
    shown = "\n  ".join(problems[:_MAX_REPORTED])
    more = f"\n  ... and {len(problems) - _MAX_REPORTED} more" if len(problems) > _MAX_REPORTED else ""
    raise RawDatasetError(f"{len(problems)} {what}:\n  {shown}{more}")


def select_samples(
    records: Sequence[dict[str, Any]], annotations_dir: Path, min_area: float
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Kept records (largest object of the five classes, area >= min_area) and skip counts.

    Raises for unreadable/malformed ``.mat`` files (any image) and for unknown part names in
    kept images.
    """
    _raise_all([r["error"] for r in records if r["error"]], "invalid PASCAL-Part annotation file(s)")
    kept, counts = [], {"no_object": 0, "other_class": 0, "too_small": 0}
    unknown = []
    for r in records:
        if r["main_class"] is None:
            counts["no_object"] += 1
        elif r["main_class"] not in CLASSES:
            counts["other_class"] += 1
        elif r["main_area"] / (r["height"] * r["width"]) < min_area:
            counts["too_small"] += 1
        else:
            kept.append(r)
            mat = annotations_dir / f"{r['stem']}.mat"
            unknown += [_unknown_part_message(mat, c, p) for c, p in r["unknown_parts"]]
    _raise_all(unknown, "raw part name(s) not in the grouping table")
    return kept, counts


def image_header_problem(image_path: Path, height: int, width: int) -> str | None:
    """Cheap check (header only) that a kept image exists, is a JPEG and has the masks' size.

    Returns the problem (naming the file) or None.
    """
    if not image_path.is_file():
        return f"{image_path}: missing image (annotated in the .mat of the same name)"
    try:
        with Image.open(image_path) as im:
            fmt, size = im.format, im.size
    except (OSError, ValueError, SyntaxError) as e:
        return f"{image_path}: cannot read image ({e})"
    if fmt != "JPEG":
        return f"{image_path}: expected a JPEG image, got format {fmt!r}"
    if size != (width, height):
        return (f"{image_path}: image size {size[1]}x{size[0]} (HxW) differs from its annotation's "
                f"masks {height}x{width}")
    return None


# --------------------------------------------------------------------------- conversion (parallel)


def _convert_sample(job: tuple[str, str, str, str]) -> str:
    """Write one sample's image (bytes copied after a full decode check) and part mask."""
    mat_path, image_path, out_root, stem = job
    if sample_done(out_root, stem, IMAGE_EXT):
        return "skipped"
    _, objects, shape = load_annotation(mat_path)
    main = main_object(objects)
    if main is None or shape is None:  # cannot happen for a kept image unless the file changed
        raise RawDatasetError(f"{mat_path}: no object of positive area (file changed since the scan?)")
    label = paint_parts(objects, main, shape, mat_path)
    try:
        data = Path(image_path).read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            size = im.size
    except (OSError, ValueError, SyntaxError) as e:
        raise RawDatasetError(f"{image_path}: cannot decode image ({e})") from e
    if size != (shape[1], shape[0]):
        raise RawDatasetError(f"{image_path}: image size {size[1]}x{size[0]} differs from masks {shape[0]}x{shape[1]}")
    out_image, out_mask = sample_paths(out_root, stem, IMAGE_EXT)
    write_mask(out_mask, label, len(part_infos()))
    atomic_write_bytes(out_image, data)
    return "written"


# --------------------------------------------------------------------------- entry point


def convert_pascal_part(
    raw_root: str | os.PathLike,
    out_root: str | os.PathLike,
    *,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
    min_area: float = 0.0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    images_dir: str | os.PathLike | None = None,
    annotations_dir: str | os.PathLike | None = None,
) -> DatasetMetadata:
    """Convert PASCAL-Part (five classes, 3 coarse parts each) to the prepared format in `out_root`.

    `images_dir` / `annotations_dir` default to ``<raw_root>/JPEGImages`` and
    ``<raw_root>/Annotations_Part``. Resumable and idempotent: samples already written are
    skipped, unchanged ``.mat`` files are not read again and a finished conversion is not
    rewritten. Raises ``RawDatasetError`` naming the file for every problem found in the raw
    data, before writing any image when the problem is detectable without decoding pixels.
    """
    if not 0.0 <= min_area < 1.0:
        raise ValueError(f"min_area must be a fraction in [0, 1), got {min_area}")
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ValueError(f"need val_fraction, test_fraction >= 0 with sum < 1, got {val_fraction}, {test_fraction}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    raw_root = Path(raw_root)
    require_dir(raw_root, "PASCAL-Part raw root")
    img_dir = require_dir(images_dir if images_dir is not None else raw_root / "JPEGImages", "VOC2010 JPEG images")
    ann_dir = require_dir(
        annotations_dir if annotations_dir is not None else raw_root / "Annotations_Part",
        "PASCAL-Part .mat annotations",
    )
    mat_paths = sorted(p for p in ann_dir.glob("*.mat") if p.is_file())
    if not mat_paths:
        raise RawDatasetError(f"{ann_dir}: no .mat annotation files")
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)

    records = scan_annotations(mat_paths, out_root, ann_dir, workers, progress)
    kept, skipped = select_samples(records, ann_dir, min_area)
    if not kept:
        raise RawDatasetError(f"{ann_dir}: no image whose largest object is one of {list(CLASSES)}")
    problems = [image_header_problem(img_dir / f"{r['stem']}{IMAGE_EXT}", r["height"], r["width"]) for r in kept]
    _raise_all([p for p in problems if p], "problem(s) with the images of kept annotations")

    jobs = [
        (str(ann_dir / f"{r['stem']}.mat"), str(img_dir / f"{r['stem']}{IMAGE_EXT}"), str(out_root), r["stem"])
        for r in kept if not sample_done(out_root, r["stem"], IMAGE_EXT)
    ]
    run_jobs(_convert_sample, jobs, workers, "converting PASCAL-Part", progress)

    labels = [CLASSES.index(r["main_class"]) for r in kept]
    splits = stratified_split(labels, seed, val_fraction, test_fraction, rounding="round")
    rows = []
    for r, label in zip(kept, labels):
        image, mask = sample_paths(out_root, r["stem"], IMAGE_EXT)
        rows.append({"image": image.relative_to(out_root).as_posix(), "mask": mask.relative_to(out_root).as_posix(),
                     "label": label, "imname": r["stem"], "class": r["main_class"]})
    meta = DatasetMetadata(
        name=NAME,
        classes=list(CLASSES),
        parts=part_infos(),
        info={
            "source": "PASCAL-Part (Chen et al. 2014) Annotations_Part + PASCAL VOC2010 JPEGImages",
            "converter": "partrobust.data.pascal_part.convert_pascal_part",
            "images_dir": str(img_dir.resolve()),
            "annotations_dir": str(ann_dir.resolve()),
            "seed": seed,
            "min_area": min_area,
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
            "split_rounding": "round",
            "own_class_parts_only": False,  # other objects of the five classes are painted too
            "part_groups": {c: {g: list(k) for g, k in PART_GROUPS[c]} for c in CLASSES},
            "num_annotation_files": len(mat_paths),
            "num_samples": len(kept),
            "class_counts": {c: labels.count(i) for i, c in enumerate(CLASSES)},
            "split_counts": {s: splits.count(s) for s in SPLITS},
            "skipped": skipped,
        },
    )
    return finish(out_root, meta, rows, splits)
