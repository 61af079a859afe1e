"""Label variants of a prepared dataset for the label ablations (paper App. E.5, Tables 14-15).

``make_label_variant(src, dst, kind)`` turns ANY prepared dataset (synthetic or converted) into
a new prepared dataset at ``dst`` that shares the source images and holds coarser masks:

* ``kind="object"``: object-level masks. Every part id k is replaced by ``class(k) + 1``, so
  K becomes C; part j (id j) is named ``"<class j-1>/object"`` and belongs to class j-1, so
  ``metadata.part_to_class()`` stays consistent (Table 15, the reference's ``object`` seg type).
* ``kind="bbox"``: part bounding-box masks (Table 14). Each part id present in a mask is
  replaced by its tight filled bounding rectangle (one box per part id per image, covering
  all its pixels, also when the part is split into several blobs or objects). Boxes are
  painted **largest area first** (ties: increasing part id, so the larger id wins a tie),
  so a smaller box painted later stays visible inside a larger one. The reference instead
  painted one box per *annotation* in annotation file order (later overwrites), which needs
  the raw annotations; from a prepared mask only the union per part id is known, and the
  largest-first order loses as few small parts as possible. Same part list as the source.

Layout of ``dst``: the split CSVs keep every column and row of the source, with ``image``
rewritten as a path relative to ``dst`` that points at the source image (``os.path.relpath``,
e.g. ``../synthetic/images/train/00000.png``; no image is copied, so moving one folder
without the other breaks the variant), ``mask`` pointing at the new mask (same relative path
as the source mask, e.g. ``masks/train/00000.png``) and an extra ``source_mask`` column (the
source mask, relative to ``dst``). ``metadata.json`` "info" records ``label_variant`` (the
kind), ``source`` (absolute path), ``source_name``, ``source_info`` and ``source_fingerprint``
(SHA-256 of the source's metadata.json and split CSVs), and copies the source's
``own_class_parts_only`` (object ids and boxes keep each part's class).

Resumable and idempotent like the converters: masks are written atomically and skipped when
they exist, metadata.json is written last; a complete variant of the same source version is
returned untouched. A marker file ``.label_variant.json`` is written before any mask, so a
folder holding (part of) a variant of another kind or source version is refused rather than
silently mixed; delete ``dst`` to rebuild it.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .convert import finish, run_jobs
from .prepared import (
    METADATA_FILE,
    SPLITS,
    DatasetMetadata,
    PartInfo,
    PreparedDatasetError,
    atomic_write_text,
    load_metadata,
    read_mask,
    read_split,
    split_path,
    validate_prepared,
    write_mask,
)

LABEL_VARIANTS: tuple[str, ...] = ("object", "bbox")
GENERATOR = "partrobust.data.variants"
MARKER_FILE = ".label_variant.json"
BBOX_PAINT_ORDER = "largest box area first, ties by increasing part id (later paint wins)"


# --------------------------------------------------------------------------- mask transforms


def object_mask(mask: np.ndarray, part_to_class: list[int]) -> np.ndarray:
    """Object-level mask: part id k -> class(k) + 1, background stays 0 (values 0..C)."""
    lut = np.asarray(part_to_class, dtype=np.int64) + 1  # entry 0 (background, -1) -> 0
    if mask.size and int(mask.max()) >= len(lut):
        raise ValueError(f"mask value {int(mask.max())} exceeds K={len(lut) - 1}")
    return lut[mask.astype(np.int64)]


def part_boxes(mask: np.ndarray) -> dict[int, tuple[int, int, int, int]]:
    """Tight box ``(y0, y1, x0, x1)`` (inclusive) of every non-zero part id of `mask`."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return {}
    vals = mask[ys, xs].astype(np.int64)
    order = np.argsort(vals, kind="stable")
    vals, ys, xs = vals[order], ys[order], xs[order]
    starts = np.flatnonzero(np.r_[True, vals[1:] != vals[:-1]])
    y0, y1 = np.minimum.reduceat(ys, starts), np.maximum.reduceat(ys, starts)
    x0, x1 = np.minimum.reduceat(xs, starts), np.maximum.reduceat(xs, starts)
    return {
        int(vals[s]): (int(a), int(b), int(c), int(d))
        for s, a, b, c, d in zip(starts, y0, y1, x0, x1)
    }


def bbox_mask(mask: np.ndarray) -> np.ndarray:
    """Each part id replaced by its filled tight box, painted largest area first (see module doc)."""
    boxes = part_boxes(mask)
    out = np.zeros(mask.shape, dtype=mask.dtype)

    def key(item: tuple[int, tuple[int, int, int, int]]) -> tuple[int, int]:
        part, (y0, y1, x0, x1) = item
        return -(y1 - y0 + 1) * (x1 - x0 + 1), part

    for part, (y0, y1, x0, x1) in sorted(boxes.items(), key=key):
        out[y0 : y1 + 1, x0 : x1 + 1] = part
    return out


def _variant_mask_job(job: tuple[str, str, str, int, int, list[int]]) -> bool:
    """Write one variant mask (module-level for multiprocessing); False if it already existed."""
    src, dst, kind, num_parts, num_classes, part_to_class = job
    if Path(dst).is_file():
        return False
    mask = read_mask(src)
    top = int(mask.max()) if mask.size else 0
    if top > num_parts:
        raise PreparedDatasetError(f"{src}: mask value {top} exceeds the number of parts K={num_parts}")
    if kind == "object":
        out, k_out = object_mask(mask, part_to_class), num_classes
    else:
        out, k_out = bbox_mask(mask), num_parts
    write_mask(dst, out, k_out)
    return True


# --------------------------------------------------------------------------- metadata


def variant_metadata(meta: DatasetMetadata, kind: str, info: dict[str, Any]) -> DatasetMetadata:
    """Metadata of the `kind` variant of a dataset with metadata `meta`."""
    if kind == "object":
        parts = [PartInfo(id=i + 1, name=f"{c}/object", class_name=c) for i, c in enumerate(meta.classes)]
    else:
        parts = list(meta.parts)
    return DatasetMetadata(name=f"{meta.name}-{kind}-labels", classes=list(meta.classes), parts=parts, info=info)


def source_fingerprint(root: Path) -> str:
    """SHA-256 of a prepared dataset's metadata.json and split CSVs (cheap change detection)."""
    h = hashlib.sha256()
    for path in [root / METADATA_FILE] + [split_path(root, s) for s in SPLITS]:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _check_kind(kind: str) -> None:
    if kind not in LABEL_VARIANTS:
        raise ValueError(f"unknown label variant kind {kind!r}; expected one of {list(LABEL_VARIANTS)}")


def _claim(dst: Path, claim: dict[str, Any]) -> None:
    """Write (or check) the marker saying which variant of which source `dst` holds."""
    marker = dst / MARKER_FILE
    if marker.is_file():
        try:
            existing = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise PreparedDatasetError(f"{marker}: cannot read JSON ({e}); delete {dst} to rebuild") from e
        if existing != claim:
            raise PreparedDatasetError(
                f"{marker}: {dst} holds (part of) a different label variant or source version "
                f"({existing}); delete it to build {claim['label_variant']!r} from {claim['source']}"
            )
        return
    atomic_write_text(marker, json.dumps(claim, indent=2) + "\n")


def _check_finished(dst: Path, claim: dict[str, Any]) -> DatasetMetadata | None:
    """The metadata of a complete variant matching `claim` at dst, None if unfinished; raises on mismatch."""
    if not (dst / METADATA_FILE).is_file():
        return None
    meta = load_metadata(dst)
    found = {k: meta.info.get(k) for k in claim}
    if found != claim:
        raise PreparedDatasetError(
            f"{dst / METADATA_FILE}: {dst} already holds another dataset ({found}); "
            f"refusing to overwrite it with {claim}"
        )
    return meta


# --------------------------------------------------------------------------- rows


def _posix_rel(path: str, start: str) -> str:
    return PurePosixPath(*Path(os.path.relpath(path, start)).parts).as_posix()


def _variant_mask_rel(mask_rel: str, where: Path) -> str:
    """Relative path of a variant mask: the source mask's own relative path, as PNG, inside dst."""
    norm = os.path.normpath(mask_rel)
    if os.path.isabs(norm) or norm == ".." or norm.startswith(".." + os.sep):
        raise PreparedDatasetError(
            f"{where}: mask path {mask_rel!r} lies outside the dataset folder; label variants "
            "need masks inside it (their relative path is reused under the variant folder)"
        )
    return str(PurePosixPath(*Path(norm).parts).with_suffix(".png"))


def _variant_rows(src: Path, dst: Path) -> tuple[list[dict[str, Any]], list[str], list[tuple[str, str]]]:
    """Rows of every split with rewritten paths, their split, and unique (src mask, dst mask) pairs.

    Checks (cheaply, before any decoding) that every source image and mask exists.
    """
    rows: list[dict[str, Any]] = []
    splits: list[str] = []
    pairs: dict[str, str] = {}
    for split in SPLITS:
        df = read_split(src, split)
        where = split_path(src, split)
        for i, row in enumerate(df.to_dict("records")):
            image = os.path.normpath(os.path.join(src, row["image"]))
            mask = os.path.normpath(os.path.join(src, row["mask"]))
            for col, file in (("image", image), ("mask", mask)):
                if not os.path.isfile(file):
                    raise PreparedDatasetError(f"{where}: row {i} {col} file {file!r} not found")
            mask_rel = _variant_mask_rel(row["mask"], where)
            dst_mask = str(dst / mask_rel)
            if pairs.setdefault(dst_mask, mask) != mask:
                raise PreparedDatasetError(
                    f"{where}: row {i}: masks {pairs[dst_mask]!r} and {mask!r} would both be written to {dst_mask!r}"
                )
            row.update(image=_posix_rel(image, dst), mask=mask_rel, source_mask=_posix_rel(mask, dst))
            rows.append(row)
            splits.append(split)
    return rows, splits, [(s, d) for d, s in pairs.items()]


# --------------------------------------------------------------------------- entry point


def make_label_variant(
    src_root: str | os.PathLike,
    dst_root: str | os.PathLike,
    kind: str,
    *,
    workers: int = 1,
    progress: bool = True,
) -> DatasetMetadata:
    """Build the `kind` ("object" or "bbox") label variant of the prepared dataset at src_root.

    Writes a prepared dataset at dst_root whose split CSVs point at the source images and
    whose masks are object-level or part-bounding-box masks (see module docstring). Resumable
    (existing masks are skipped) and idempotent (a finished variant of the same source version
    is returned untouched). Raises ValueError for an unknown kind, PreparedDatasetError (naming
    the file) for an invalid source, dst == src, or a dst holding a different dataset.
    """
    _check_kind(kind)
    src = Path(os.path.abspath(src_root))
    dst = Path(os.path.abspath(dst_root))
    meta = validate_prepared(src)
    if src == dst or dst.resolve() == src.resolve():
        raise PreparedDatasetError(f"{dst}: the label variant must go to a folder other than its source")
    claim = {"label_variant": kind, "source": str(src), "source_fingerprint": source_fingerprint(src)}
    finished = _check_finished(dst, claim)
    if finished is not None:
        return finished

    rows, splits, pairs = _variant_rows(src, dst)
    dst.mkdir(parents=True, exist_ok=True)
    _claim(dst, claim)
    part_to_class = meta.part_to_class()
    jobs = [(s, d, kind, meta.num_parts, meta.num_classes, part_to_class) for s, d in pairs]
    run_jobs(_variant_mask_job, jobs, workers=workers, desc=f"{kind} labels -> {dst}", progress=progress)

    info: dict[str, Any] = {
        "generator": GENERATOR,
        **claim,
        "source_name": meta.name,
        "source_info": meta.info,
        # object ids map to the part's class and boxes keep part ids: the source's guarantee holds
        "own_class_parts_only": meta.info.get("own_class_parts_only") is True,
    }
    if kind == "bbox":
        info["bbox_paint_order"] = BBOX_PAINT_ORDER
    return finish(dst, variant_metadata(meta, kind, info), rows, splits)
