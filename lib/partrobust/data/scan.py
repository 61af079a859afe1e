"""Full scan of a prepared dataset before training, so that corrupt data fails at once.

``validate_prepared`` only checks metadata, split files and the first row's files, and
``PartDataset`` checks a sample when it first decodes it, mid-epoch. ``scan_prepared`` decodes
every image and mask of the chosen rows (in threads) and reports EVERY problem found: missing
or undecodable (e.g. truncated) files, masks that are not single-channel, of another size than
their image, with values outside 0..K, or, when ``metadata.info["own_class_parts_only"]`` is
true, holding parts of a class other than the row's label.

What is learnt from each file (decodable or the error, size, mask mode and values) is cached
in ``<root>/.scan-cache.json`` under its relative path, size and mtime, so a rescan of an
unchanged folder opens no image; the verdict is always recomputed from these facts and the
current metadata and labels.
"""
from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
from PIL import Image, ImageFile
from tqdm.auto import tqdm

from ..core.fileio import atomic_write_text, file_lock
from .prepared import SPLITS, DatasetMetadata, PreparedDatasetError, read_split, validate_prepared

CACHE_FILE = ".scan-cache.json"
CACHE_LOCK = ".scan-cache.lock"
REPORT_FILE = ".scan-report.txt"
CACHE_VERSION = 1
MASK_MODES = ("L", "P", "I", "I;16", "I;16B", "I;16L")
MAX_LISTED = 50  # problems listed in a DataScanError message; the rest go to REPORT_FILE

Facts = dict[str, Any]  # {"error": str} or {"mode": str, "shape": [h, w], "values": [...] (masks)}


class DataScanError(PreparedDatasetError):
    """`scan_prepared` found bad files; the message lists them (path and what is wrong)."""


@dataclass(frozen=True)
class ScanProblem:
    """One thing wrong with one file of one row."""

    split: str
    row: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.split} row {self.row}: {self.path}: {self.message}"


@dataclass
class ScanReport:
    """Result of `scan_prepared`: rows checked per split, files decoded / from cache, problems."""

    root: Path
    metadata: DatasetMetadata
    rows: dict[str, int]
    decoded: int
    from_cache: int
    problems: list[ScanProblem]
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One line, e.g. "scan runs/x: 2800 rows, 0 problems, 10 decoded, 5590 from cache, 0.3 s"."""
        line = (
            f"scan {self.root}: {sum(self.rows.values())} rows, {len(self.problems)} problems, "
            f"{self.decoded} decoded, {self.from_cache} from cache, {self.seconds:.1f} s"
        )
        return "; ".join([line, *self.notes])

    def raise_if_bad(self) -> None:
        """Raise DataScanError listing every problem (the first MAX_LISTED, the rest in a file)."""
        if self.ok:
            return
        n_files = len({p.path for p in self.problems})
        n_rows = len({(p.split, p.row) for p in self.problems})
        head = f"{self.root}: {n_files} bad file(s) in {n_rows} row(s)"
        lines = [f"  {p}" for p in self.problems]
        if len(lines) > MAX_LISTED:
            path = self.root / REPORT_FILE
            try:
                atomic_write_text(path, "\n".join([head, *lines]) + "\n")
                lines = lines[:MAX_LISTED] + [f"  ... and {len(lines) - MAX_LISTED} more; full list in {path}"]
            except OSError as e:
                lines.append(f"  (could not write the list to {path}: {e})")
        raise DataScanError("\n".join([head, *lines]))


# --------------------------------------------------------------------------- file facts


@contextlib.contextmanager
def _strict_decoding() -> Iterator[None]:
    """Make PIL raise on truncated files while scanning, whatever LOAD_TRUNCATED_IMAGES was."""
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before


def _unique_values(arr: np.ndarray) -> list[int]:
    """Sorted distinct values of an integer array (bincount for unsigned types: faster)."""
    if arr.dtype.kind == "u":
        return np.flatnonzero(np.bincount(arr.ravel())).tolist()
    return np.unique(arr).tolist()


def _file_facts(path: Path, kind: str) -> Facts:
    """Decode one file completely and return what the checks need ("image" or "mask")."""
    try:
        with Image.open(path) as im:
            if im.format == "PNG":
                im.verify()  # checksums and the final IEND chunk, which load() does not need
        with Image.open(path) as im:
            im.load()
            facts: Facts = {"mode": im.mode, "shape": [im.height, im.width]}
            if kind == "mask" and im.mode in MASK_MODES:
                facts["values"] = _unique_values(np.asarray(im))
            return facts
    except Exception as e:  # noqa: BLE001 - a corrupt file can make PIL raise almost anything
        return {"error": f"cannot decode {kind} ({e})"}


def _stat_key(path: Path) -> list[int] | None:
    """[size, mtime_ns] of a regular file, None if there is none."""
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns] if stat.S_ISREG(st.st_mode) else None


# --------------------------------------------------------------------------- cache


def _load_cache(root: Path) -> dict[str, Any]:
    """Cached entries "<kind>:<relative path>" -> {"stat": [size, mtime_ns], "facts": ...}."""
    try:
        data = json.loads((root / CACHE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {}
    entries = data.get("files")
    return entries if isinstance(entries, dict) else {}


def _save_cache(root: Path, entries: dict[str, Any]) -> None:
    path = root / CACHE_FILE
    text = json.dumps({"version": CACHE_VERSION, "files": entries}, sort_keys=True, separators=(",", ":"))
    try:
        atomic_write_text(path, text + "\n")
    except OSError as e:
        print(f"scan {root}: could not write the scan cache {path} ({e}); continuing without it", file=sys.stderr)


@contextlib.contextmanager
def _cache_lock(root: Path, cache: bool) -> Iterator[None]:
    """Holds ``<root>/.scan-cache.lock`` while the cache is read, extended and written."""
    with contextlib.ExitStack() as stack:
        if cache:
            try:
                stack.enter_context(file_lock(root / CACHE_LOCK))
            except OSError:
                pass  # a read-only folder: no cache can be written either (_save_cache says so)
        yield


# --------------------------------------------------------------------------- verdict


def _join_values(values: list[int]) -> str:
    return ", ".join(str(v) for v in values)


def _mask_problems(mask: Facts, image: Facts | None, label: int, meta: DatasetMetadata, own_class: bool) -> list[str]:
    """What is wrong with a decoded mask, given its image's facts, the row's label and metadata."""
    out = [] if mask["mode"] in MASK_MODES else [f"mask must be single-channel, got mode {mask['mode']!r}"]
    if image is not None and "error" not in image and mask["shape"] != image["shape"]:
        out.append(f"mask size {tuple(mask['shape'])} differs from image size {tuple(image['shape'])}")
    values = mask.get("values", [])
    k = meta.num_parts
    below = [v for v in values if v < 0]
    if below:
        out.append(f"negative mask value(s) {_join_values(below)}")
    above = [v for v in values if v > k]
    if above:
        out.append(f"mask value {above[0]} exceeds K={k}" if len(above) == 1 else f"mask values {_join_values(above)} exceed K={k}")
    if own_class:
        owner = meta.part_to_class()
        foreign = [v for v in values if 1 <= v <= k and owner[v] != label]
        if foreign:
            parts = ", ".join(f"part {v} belongs to class {meta.classes[owner[v]]!r}" for v in foreign)
            out.append(f"{parts}, the image's class is {meta.classes[label]!r} (label {label})")
    return out


def _row_problems(
    split: str, row: int, paths: tuple[Path, Path], facts: tuple[Facts | None, Facts | None],
    label: int, meta: DatasetMetadata, own_class: bool,
) -> list[ScanProblem]:
    """Problems of one row from its (image, mask) facts; None facts mean the file is missing."""
    (image_path, mask_path), (image, mask) = paths, facts
    found: list[tuple[Path, str]] = []
    for path, f in ((image_path, image), (mask_path, mask)):
        if f is None:
            found.append((path, "file not found"))
        elif "error" in f:
            found.append((path, f["error"]))
    if mask is not None and "error" not in mask:
        found += [(mask_path, m) for m in _mask_problems(mask, image, label, meta, own_class)]
    return [ScanProblem(split, row, str(path), message) for path, message in found]


# --------------------------------------------------------------------------- entry point


def _full(root: Path, rel: str) -> Path:
    """The path of a file named in a split CSV (normalised: variants point at ../<source>/...)."""
    return Path(os.path.normpath(root / rel))


def _rows(root: Path, splits: Mapping[str, int | None]) -> list[tuple[str, int, str, str, int]]:
    """(split, row, image, mask, label) of the first n rows of every split."""
    out = []
    for split, n in splits.items():
        if n is not None and n < 0:
            raise ValueError(f"row limit of split {split!r} must be >= 0 or None, got {n}")
        df = read_split(root, split).iloc[:n]
        out += [(split, i, im, m, int(lab)) for i, (im, m, lab) in enumerate(zip(df["image"], df["mask"], df["label"]))]
    return out


def _gather_facts(
    root: Path, files: set[tuple[str, str]], entries: dict[str, Any], workers: int, progress: bool
) -> tuple[dict[tuple[str, str], Facts | None], int]:
    """Facts of every (kind, relative path): from `entries` when size and mtime match, else decoded.

    Updates `entries` in place; returns the facts and the number of files decoded.
    """
    facts: dict[tuple[str, str], Facts | None] = {}
    todo: dict[tuple[str, str], list[int]] = {}
    for kind, rel in files:
        key, st = f"{kind}:{rel}", _stat_key(root / rel)
        cached = entries.get(key)
        if st is None:
            facts[kind, rel] = None
            entries.pop(key, None)
        elif isinstance(cached, dict) and cached.get("stat") == st and isinstance(cached.get("facts"), dict):
            facts[kind, rel] = cached["facts"]
        else:
            todo[kind, rel] = st
    with _strict_decoding(), ThreadPoolExecutor(max_workers=workers) as pool, tqdm(
        total=len(todo), desc=f"scan {root.name}", disable=not progress or not todo, unit="file"
    ) as bar:
        futures = {pool.submit(_file_facts, root / rel, kind): (kind, rel) for kind, rel in todo}
        for future in as_completed(futures):
            kind, rel = futures[future]
            facts[kind, rel] = future.result()
            entries[f"{kind}:{rel}"] = {"stat": todo[kind, rel], "facts": facts[kind, rel]}
            bar.update(1)
    return facts, len(todo)


def scan_prepared(
    root: str | os.PathLike,
    splits: Mapping[str, int | None] | None = None,
    *,
    workers: int | None = None,
    progress: bool = True,
    cache: bool = True,
) -> ScanReport:
    """Decode every image and mask of the chosen rows and check them (see the module docstring).

    `splits` maps a split name to the number of its first rows to check (None: all rows);
    None checks all rows of train, val and test. `validate_prepared` runs first (its errors
    are raised as they are). Returns a ScanReport; call ``report.raise_if_bad()`` to fail.
    """
    start = time.perf_counter()
    root = Path(root)
    splits = dict.fromkeys(SPLITS) if splits is None else dict(splits)
    meta = validate_prepared(root, splits=tuple(splits), check_files=False)
    rows = _rows(root, splits)
    files = {("image", r[2]) for r in rows} | {("mask", r[3]) for r in rows}
    workers = workers if workers is not None else min(8, os.cpu_count() or 1)
    with _cache_lock(root, cache):  # concurrent scans of one folder: one decodes, the others read its cache
        entries = _load_cache(root) if cache else {}
        facts, decoded = _gather_facts(root, files, entries, workers, progress)
        if cache:
            _save_cache(root, entries)

    own_class = meta.info.get("own_class_parts_only") is True
    problems = [
        p
        for split, i, image, mask, label in rows
        for p in _row_problems(
            split, i, (_full(root, image), _full(root, mask)), (facts["image", image], facts["mask", mask]),
            label, meta, own_class,
        )
    ]
    notes = [] if own_class else [
        "part-class check skipped (metadata info.own_class_parts_only is not true: masks may hold other objects' parts)"
    ]
    missing = sum(f is None for f in facts.values())
    return ScanReport(
        root=root,
        metadata=meta,
        rows={split: sum(r[0] == split for r in rows) for split in splits},
        decoded=decoded,
        from_cache=len(facts) - decoded - missing,
        problems=problems,
        seconds=time.perf_counter() - start,
        notes=notes,
    )
