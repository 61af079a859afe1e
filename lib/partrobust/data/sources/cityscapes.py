"""Cityscapes-Panoptic-Parts -> a human-vs-vehicle part-segmentation classification set.

Raw layout expected under ``raw_root`` (the two official Cityscapes packages, unzipped)::

    leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png        RGB photo
    gtFinePanopticParts/{train,val}/<city>/<city>_<seq>_<frame>_gtFinePanopticParts.tif

(``gtFinePanopticParts_trainval/gtFinePanopticParts/...``, the folder the label zip unpacks to, is
accepted too when ``gtFinePanopticParts/`` is absent; ``info["label_dir"]`` records which one was
read.) Each TIFF is a single-channel int32 (PIL mode "I") map of "universal ids" of the photo's
size: ``sid`` (1-2 digits, Cityscapes label id), ``sid*1000 + iid`` or ``sid*100000 + iid*100 +
pid``; iid -1 / pid -1 mean "absent" (``decode_uids``; the official ``panoptic_parts`` toolkit
does not import on Python >= 3.10, so we decode ourselves).

What is produced (one sample per object instance, prepared format of ``prepared``):

* classes ``["human", "vehicle"]`` (sorted, as the reference): sids 24 person, 25 rider -> human;
  26 car, 27 truck, 28 bus -> vehicle.
* parts 1-9: human torso 1, head 2, arms 3, legs 4 (pids 1-4 of sids 24/25); vehicle windows 5,
  wheels 6, lights 7, license plate 8, chassis 9 (pids 1-5 of sids 26-28). Everything else is 0:
  other classes, pid 0 ("void part") and -1 (no part info), zero padding. As in the reference
  loader the mask labels every pixel of the crop, so parts of other humans/vehicles inside the
  crop are labelled too (``parts_of="instance"`` keeps only the target instance's parts;
  ``info["own_class_parts_only"]`` is true only then).
* a square crop around every instance of at least ``min_area`` pixels (whole instance, all of its
  parts and void-part pixels), images ``images/<stem>.png`` (crops of the PNG photo, not
  resized), masks ``masks/<stem>.png``; stem ``<city>_<seq>_<frame>_<class>_<iid:03d>`` (e.g.
  ``aachen_000000_000019_car_000``; ``..._person_group`` for the reference's group regions).
* split 80/10/10 per class with ``stratified_split(labels, seed)`` over the samples in order
  (raw split train then val, files sorted, sid ascending, iid ascending). The CSVs carry extra
  columns: ``source`` (label file relative to ``raw_root``), ``cs_split``, ``city``, ``sid``,
  ``cs_class``, ``iid``, ``area``, ``part_pixels`` (instance pixels with a part label) and the
  crop box ``box_top, box_left, box_size`` in photo coordinates (may be negative / exceed the
  photo: see zero padding below).

Crop geometry (decision 12: square, 0-10 % random padding of the crop side). From the instance's
tight box (inclusive pixel extent ``h x w``), ``s = max(h, w)``; the object is centred in an
``s x s`` square (offsets ``(s-h)//2``, ``(s-w)//2``). With ``u ~ U(0, pad)`` the crop side is
``S = s + int(u*s)``, and the square is placed at a uniformly random integer offset in
``[0, S-s]`` inside the crop, independently per axis, so the object is always entirely inside
the crop. The generator is ``numpy.random.default_rng([seed, *stem bytes])``: a sample's crop
depends only on the seed and its own stem, not on file order or ``workers``. ``pad=0`` gives the
tight centred square. Where the box reaches beyond the photo it is padded with zeros (black
pixels, mask 0) so every crop is square and the object keeps its place in it; the reference
zero-pads the photo by 10 % too, but clips its box at the top/left and lets it run short at the
bottom/right. (The paper says "0-10 % of the image size"; decision 12 reads it as the crop
side, as here.) The reference itself (its paper runs) used ``--pad 0.2 --rand-pad``: a fixed side
``s + 2*int(0.2*s)`` with a random shift of up to ``0.4*S`` that can cut the object off. That
is ``crop="reference"`` (`reference_crop_box`, pad 0.2 by default): the data behind the paper's
published Cityscapes numbers, so a Table 1 comparison should use it (``params/cityscapes.yaml``
does). Its crops are rectangles where the padded photo ends (rows ``box_height``/``box_width``
instead of ``box_size``); its random draws come from the same per-stem generator, so the crops
equal the reference's in distribution, not sample by sample (the reference drew them from
numpy's global generator in file order). The default ``crop="paper"`` follows the paper text.

The reference's quirks ([A] ``prepare_cityscapes.py``, dataset-formats.md 2.5) and what we do:

* instance enumeration: the reference uses the image's unique iids minus 0, so it drops the first
  instance (iid 0) of every class and treats "group" regions (iid -1, e.g. a crowd of people
  without instance ids) as one instance. Default ``instances="all"``: every iid >= 0 is an
  instance (Cityscapes numbers instances from 0; decision 12) and group regions are not objects.
  ``instances="authors"`` reproduces the reference (iids != 0 of each sid, -1 included).
* occlusion filter: the reference drops an instance when, inside its tight box, the pixels of any
  single sid of the *other* class exceed half the pixels of the instance's own sid. The paper
  mentions only the area filter, so it is off by default; ``occlusion_filter=True`` applies it.
* instances with no part pixel: the reference runs with ``--allow-missing-parts`` and keeps them
  (default here too); ``require_parts=True`` drops them (the paper says "instance with part
  annotations"). ``info["counts"]`` reports how many were kept without parts.
* the known artefact of the release (pid 5 on ~10 person/rider files) maps to 0, as the toolkit's
  dataset spec does; its pixel count is reported in ``info["counts"]["human_pid5_pixels"]``.
  Any other part on a class or pid outside the table above, a Cityscapes label id above 33, or an
  invalid uid raises ``RawDatasetError`` naming the file (``unknown_parts="background"`` maps
  unknown parts to 0 instead and counts them).
* split: the reference shuffles all samples once (not stratified); we use ``stratified_split``
  (decision 15). Sample order, hence the split, depends on the sorted file list, not glob order.
  With fewer than 10 samples of every class (tiny test inputs) val/test get header-only CSVs
  and a warning (``convert.finish``).

Checks before the parallel work: the folders exist, every label TIFF has its photo and every
photo of the listed splits has its label TIFF (``unlabeled_photos="skip"`` ignores photos
without a label), the TIFF is mode "I" and of its photo's size, both files open. Resuming: each
source image's job writes its crops atomically and then a small manifest
``_cityscapes_index/images/<base>.json`` with its rows; a rerun skips images with a manifest
(no decoding; an image is redone if one of its listed crops was deleted) and crops already
written, so rerunning a finished conversion only rewrites the CSVs and metadata. The options
that change the crops (``CropOptions``, the seed included since it draws the padding) are stored
in ``_cityscapes_index/options.json``; converting into the same folder with different ones is an
error (use a new folder).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image

from ..convert import RawDatasetError, finish, require_dir, run_jobs, sample_done, sample_paths, stratified_split
from ..prepared import SPLITS, DatasetMetadata, PartInfo, PreparedDatasetError, atomic_write_text, read_image, write_image, write_mask

CLASSES: tuple[str, ...] = ("human", "vehicle")
HUMAN_SIDS: tuple[int, ...] = (24, 25)
VEHICLE_SIDS: tuple[int, ...] = (26, 27, 28)
SID_NAMES: dict[int, str] = {24: "person", 25: "rider", 26: "car", 27: "truck", 28: "bus"}
HUMAN_PARTS: tuple[str, ...] = ("torso", "head", "arms", "legs")
VEHICLE_PARTS: tuple[str, ...] = ("windows", "wheels", "lights", "license plate", "chassis")
NUM_PARTS = len(HUMAN_PARTS) + len(VEHICLE_PARTS)
MAX_SID = 33  # largest Cityscapes label id
_STRIDE = 101  # pids -1..99 per sid in the lookup tables
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFinePanopticParts.tif"
INDEX_DIR = "_cityscapes_index"
MANIFEST_VERSION = 1


# --------------------------------------------------------------------------- uid codec


def decode_uids(uids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split panoptic-parts uids into int32 (sids, iids, pids); -1 marks an absent iid / pid.

    uid ``sid`` (<= 99) -> (sid, -1, -1); ``sid*1000 + iid`` (1000..99999) -> (sid, iid, -1);
    ``sid*100000 + iid*100 + pid`` (100000..9999999) -> (sid, iid, pid). Same rules as the
    toolkit's ``decode_uids``. Negative, 3-digit and > 7-digit uids raise ValueError.
    """
    u = np.asarray(uids)
    if not np.issubdtype(u.dtype, np.integer):
        raise ValueError(f"uids must be integers, got dtype {u.dtype}")
    if (u.size and (u.min() < 0 or u.max() > 9_999_999)) or ((u >= 100) & (u < 1000)).any():
        bad = (u < 0) | ((u >= 100) & (u < 1000)) | (u > 9_999_999)
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"invalid uid {int(u[where])} at index {where} (negative, 3-digit or > 7 digits)")
    u = u.astype(np.int32)
    part = u >= 100_000
    semantic = u < 100
    divisor = np.where(part, 100_000, np.where(semantic, 1, 1000)).astype(np.int32)
    sids = u // divisor
    rest = u - sids * divisor  # iid*100 + pid (parts), iid (instances), 0 (semantic only)
    iids = np.where(part, rest // 100, rest)
    iids[semantic] = -1
    pids = np.where(part, rest % 100, -1)
    return sids, iids.astype(np.int32, copy=False), pids.astype(np.int32, copy=False)


def encode_uids(sids: np.ndarray, iids: np.ndarray, pids: np.ndarray) -> np.ndarray:
    """Inverse of `decode_uids` (int32); iid -1 gives a semantic-only uid, pid -1 no part digits."""
    s, i, p = (np.asarray(a, dtype=np.int64) for a in np.broadcast_arrays(sids, iids, pids))
    if ((i < 0) & (p >= 0)).any():
        raise ValueError("a part id needs an instance id (iid >= 0)")
    uid = np.where(i < 0, s, np.where(p < 0, s * 1000 + i, s * 100_000 + i * 100 + p))
    return uid.astype(np.int32)


# --------------------------------------------------------------------------- part mapping


def _part_tables() -> tuple[np.ndarray, np.ndarray]:
    """Lookup tables indexed by ``sid*101 + pid + 1`` (pid -1..99): dense part id, and status.

    Status: 0 valid, 1 the known pid-5-on-humans artefact, 2 a part not in the grouping table.
    """
    n = (MAX_SID + 1) * _STRIDE
    dense = np.zeros(n, dtype=np.uint8)
    status = np.full(n, 2, dtype=np.uint8)  # every pid >= 0 unknown unless listed below
    for sid in range(MAX_SID + 1):
        base = sid * _STRIDE + 1  # index of pid 0
        status[base - 1] = 0  # pid -1: no part information
        if sid in HUMAN_SIDS or sid in VEHICLE_SIDS:
            first, names = (1, HUMAN_PARTS) if sid in HUMAN_SIDS else (1 + len(HUMAN_PARTS), VEHICLE_PARTS)
            status[base] = 0  # pid 0: void part
            for pid in range(1, len(names) + 1):
                status[base + pid] = 0
                dense[base + pid] = first + pid - 1
        if sid in HUMAN_SIDS:
            status[base + 5] = 1
    return dense, status


_DENSE, _STATUS = _part_tables()


def part_map(sids: np.ndarray, pids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense part ids 0..9 of decoded (sids, pids), and the status (0/1/2, see `_part_tables`)."""
    if sids.size and (sids.max() > MAX_SID):
        raise ValueError(f"Cityscapes label id {int(sids.max())} > {MAX_SID}")
    key = sids.astype(np.int64) * _STRIDE + pids + 1
    return _DENSE[key], _STATUS[key]


def metadata_parts() -> list[PartInfo]:
    """The 9 parts of the prepared dataset, ids 1..9."""
    names = [("human", p) for p in HUMAN_PARTS] + [("vehicle", p) for p in VEHICLE_PARTS]
    return [PartInfo(i, f"{c}/{p}", c) for i, (c, p) in enumerate(names, start=1)]


# --------------------------------------------------------------------------- options and jobs


CROP_MODES = ("paper", "reference")
CROP_DEFAULT_PAD = {"paper": 0.1, "reference": 0.2}


@dataclass(frozen=True)
class CropOptions:
    """Everything that changes the written crops (stored in ``_cityscapes_index/options.json``)."""

    seed: int = 0
    min_area: int = 1000
    pad: float = 0.1
    instances: str = "all"
    occlusion_filter: bool = False
    parts_of: str = "all"
    require_parts: bool = False
    unknown_parts: str = "error"
    crop: str = "paper"

    def check(self) -> None:
        if self.min_area < 0:
            raise ValueError(f"min_area must be >= 0, got {self.min_area}")
        if not 0 <= self.pad <= 1:
            raise ValueError(f"pad must lie in [0, 1], got {self.pad}")
        for name, allowed in (("instances", ("all", "authors")), ("parts_of", ("all", "instance")),
                              ("unknown_parts", ("error", "background")), ("crop", CROP_MODES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class _Source:
    """One raw photo / label pair."""

    cs_split: str
    city: str
    base: str  # <city>_<seq>_<frame>
    photo: Path
    label: Path
    source: str  # label path relative to raw_root, forward slashes


@dataclass(frozen=True)
class _Job:
    src: _Source
    out_root: Path
    opts: CropOptions


def _stem(base: str, sid: int, iid: int) -> str:
    return f"{base}_{SID_NAMES[sid]}_{'group' if iid < 0 else f'{iid:03d}'}"


def _manifest_path(out_root: Path, base: str) -> Path:
    return out_root / INDEX_DIR / "images" / f"{base}.json"


def crop_box(tight: tuple[int, int, int, int], pad: float, rng: np.random.Generator) -> tuple[int, int, int]:
    """(top, left, side) of the square crop around the tight box (y0, x0, y1, x1), inclusive.

    Side ``S = s + int(u*s)`` with ``s = max(h, w)``, ``u ~ U(0, pad)``; the object's centred
    ``s x s`` square sits at a random offset in ``[0, S-s]`` per axis (see the module docstring).
    """
    y0, x0, y1, x1 = tight
    h, w = y1 - y0 + 1, x1 - x0 + 1
    s = max(h, w)
    extra = int(rng.uniform(0.0, pad) * s) if pad > 0 else 0
    oy, ox = (int(v) for v in rng.integers(0, extra + 1, size=2))
    return y0 - (s - h) // 2 - oy, x0 - (s - w) // 2 - ox, s + extra


def reference_crop_box(tight: tuple[int, int, int, int], pad: float, rng: np.random.Generator,
                       photo_shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, height, width) in photo coordinates of the reference's crop (``crop="reference"``).

    The reference zero-pads the photo by ``P = int(0.1 * max(H, W))`` on every side, then (its
    ``get_box_square(mask, pad, rand=True)``) takes the tight box's extents ``w = x1 - x0``,
    ``h = y1 - y0`` (max minus min), ``s = max(w, h)``, centring offsets ``int((s - w) / 2)``,
    ``int((s - h) / 2)``, side ``S = s + 2 * int(pad * s)``, and moves the top-left corner up and
    left by ``int(u * S)`` with ``(u_x, u_y) ~ U(0, 2 * pad)`` (clipped at 0 of the padded photo);
    the window ``S`` long is cut short by the padded photo's bottom/right edge. The shift can
    exceed the padding, so the object may be cut off: that is the reference's data.
    """
    height, width = photo_shape
    pre = int(0.1 * max(height, width))
    y0, x0, y1, x1 = (v + pre for v in tight)
    w, h = x1 - x0, y1 - y0
    side = max(w, h)
    xpad, ypad = int((side - w) / 2), int((side - h) / 2)
    side += 2 * int(pad * side)
    shift_x, shift_y = rng.uniform(0, pad * 2, size=2)
    left = max(0, x0 - xpad - int(shift_x * side))
    top = max(0, y0 - ypad - int(shift_y * side))
    bottom, right = min(top + side, height + 2 * pre), min(left + side, width + 2 * pre)
    return top - pre, left - pre, bottom - top, right - left


def crop_zero_pad(array: np.ndarray, top: int, left: int, size: int, width: int | None = None) -> np.ndarray:
    """The ``size x size`` (or ``size x width``) window at (top, left) of `array`; outside the array: zeros."""
    width = size if width is None else width
    out = np.zeros((size, width) + array.shape[2:], dtype=array.dtype)
    h, w = array.shape[:2]
    ys, ye = max(top, 0), min(top + size, h)
    xs, xe = max(left, 0), min(left + width, w)
    if ys < ye and xs < xe:
        out[ys - top : ye - top, xs - left : xe - left] = array[ys:ye, xs:xe]
    return out


def _read_pair(src: _Source) -> tuple[np.ndarray, np.ndarray]:
    """Photo (H,W,3 uint8) and uid map (H,W int32); errors name the file."""
    try:
        photo = read_image(src.photo)
    except PreparedDatasetError as e:
        raise RawDatasetError(str(e)) from e
    try:
        with Image.open(src.label) as im:
            uids = np.array(im)
    except (OSError, ValueError, SyntaxError) as e:
        raise RawDatasetError(f"{src.label}: cannot read label TIFF ({e})") from e
    if uids.dtype != np.int32 or uids.ndim != 2:
        raise RawDatasetError(f"{src.label}: expected an int32 (H,W) uid map, got {uids.dtype} {uids.shape}")
    if uids.shape != photo.shape[:2]:
        raise RawDatasetError(
            f"{src.label}: size {uids.shape} differs from its photo {src.photo} size {photo.shape[:2]}"
        )
    return photo, uids


@dataclass(frozen=True)
class _Instance:
    """One candidate instance: its flat pixel indices, area, tight box and part-pixel count."""

    sid: int
    iid: int
    pixels: np.ndarray  # flat indices into the (H, W) maps
    tight: tuple[int, int, int, int]  # y0, x0, y1, x1 (inclusive)
    part_pixels: int

    @property
    def area(self) -> int:
        return int(self.pixels.size)


def _instances(sids: np.ndarray, iids: np.ndarray, dense: np.ndarray, mode: str) -> Iterable[_Instance]:
    """Every candidate instance, sid then iid ascending (one full-image scan per class)."""
    width = sids.shape[1]
    for sid in HUMAN_SIDS + VEHICLE_SIDS:
        flat = np.flatnonzero(sids == sid)
        if not flat.size:
            continue
        ids = iids.ravel()[flat]
        order = np.argsort(ids, kind="stable")
        flat, ids = flat[order], ids[order]
        values, starts = np.unique(ids, return_index=True)
        for iid, start, stop in zip(values.tolist(), starts.tolist(), starts[1:].tolist() + [ids.size]):
            if (mode == "all" and iid < 0) or (mode == "authors" and iid == 0):
                continue
            pixels = flat[start:stop]
            ys, xs = pixels // width, pixels % width
            tight = (int(ys.min()), int(xs.min()), int(ys.max()), int(xs.max()))
            yield _Instance(sid, iid, pixels, tight, int((dense.ravel()[pixels] > 0).sum()))


def _occluded(sids: np.ndarray, sid: int, tight: tuple[int, int, int, int]) -> bool:
    """The reference's filter: some sid of the other class covers > half of `sid`'s pixels in the box."""
    y0, x0, y1, x1 = tight
    box = sids[y0 : y1 + 1, x0 : x1 + 1]
    own = int((box == sid).sum())
    others = VEHICLE_SIDS if sid in HUMAN_SIDS else HUMAN_SIDS
    return any(int((box == o).sum()) > own / 2 for o in others)


def _parts_for(dense: np.ndarray, inst: _Instance, parts_of: str) -> np.ndarray:
    """The part map to crop: every pixel's parts ("all") or only those of the instance."""
    if parts_of == "all":
        return dense
    only = np.zeros(dense.size, dtype=dense.dtype)
    only[inst.pixels] = dense.ravel()[inst.pixels]
    return only.reshape(dense.shape)


def _finished(out: Path, manifest: Path) -> dict[str, Any] | None:
    """The manifest of an image converted before, or None when it must be (re)done.

    Redone when the manifest is absent or unreadable, of another version, or lists a crop whose
    files were deleted since (crops still present are not rewritten).
    """
    if not manifest.is_file():
        return None
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
        return None
    if not all((out / r["image"]).is_file() and (out / r["mask"]).is_file() for r in data["rows"]):
        return None
    return data


def _convert_image(job: _Job) -> dict[str, Any]:
    """Crops every kept instance of one photo; returns (and stores in its manifest) rows + counts."""
    src, out, opts = job.src, job.out_root, job.opts
    manifest = _manifest_path(out, src.base)
    done = _finished(out, manifest)
    if done is not None:
        return done
    photo, uids = _read_pair(src)
    try:
        sids, iids, pids = decode_uids(uids)
        dense, status = part_map(sids, pids)
    except ValueError as e:
        raise RawDatasetError(f"{src.label}: {e}") from e
    counts = {"candidates": 0, "dropped_small": 0, "dropped_occluded": 0, "dropped_no_parts": 0,
              "kept_without_parts": 0, "human_pid5_pixels": int((status == 1).sum()),
              "unknown_part_pixels": int((status == 2).sum())}
    if counts["unknown_part_pixels"] and opts.unknown_parts == "error":
        y, x = (int(v) for v in np.argwhere(status == 2)[0])
        raise RawDatasetError(
            f"{src.label}: uid {int(uids[y, x])} at pixel (y={y}, x={x}) is part {int(pids[y, x])} of "
            f"label id {int(sids[y, x])}, not in the part table ({counts['unknown_part_pixels']} such pixels; "
            "unknown_parts='background' maps them to 0)"
        )
    rows = []
    for inst in _instances(sids, iids, dense, opts.instances):
        counts["candidates"] += 1
        if inst.area < opts.min_area:
            counts["dropped_small"] += 1
            continue
        if opts.occlusion_filter and _occluded(sids, inst.sid, inst.tight):
            counts["dropped_occluded"] += 1
            continue
        if inst.part_pixels == 0:
            if opts.require_parts:
                counts["dropped_no_parts"] += 1
                continue
            counts["kept_without_parts"] += 1
        stem = _stem(src.base, inst.sid, inst.iid)
        rng = np.random.default_rng([opts.seed, *stem.encode("utf-8")])
        if opts.crop == "reference":
            top, left, height, width = reference_crop_box(inst.tight, opts.pad, rng, photo.shape[:2])
            box = {"box_top": top, "box_left": left, "box_height": height, "box_width": width}
        else:
            top, left, height = crop_box(inst.tight, opts.pad, rng)
            width = height
            box = {"box_top": top, "box_left": left, "box_size": height}
        image_path, mask_path = sample_paths(out, stem)
        if not sample_done(out, stem):
            write_mask(mask_path, crop_zero_pad(_parts_for(dense, inst, opts.parts_of), top, left, height, width), NUM_PARTS)
            write_image(image_path, crop_zero_pad(photo, top, left, height, width))
        rows.append({
            "image": image_path.relative_to(out).as_posix(), "mask": mask_path.relative_to(out).as_posix(),
            "label": 0 if inst.sid in HUMAN_SIDS else 1, "source": src.source, "cs_split": src.cs_split,
            "city": src.city, "sid": inst.sid, "cs_class": SID_NAMES[inst.sid], "iid": inst.iid,
            "area": inst.area, "part_pixels": inst.part_pixels, **box,
        })
    data = {"version": MANIFEST_VERSION, "source": src.source, "rows": rows, "counts": counts}
    atomic_write_text(manifest, json.dumps(data, indent=1) + "\n")
    return data


# --------------------------------------------------------------------------- listing / checks


def _label_root(raw_root: Path) -> Path:
    """``gtFinePanopticParts/`` or, when absent, the zip's ``gtFinePanopticParts_trainval/...``."""
    direct = raw_root / "gtFinePanopticParts"
    wrapped = raw_root / "gtFinePanopticParts_trainval" / "gtFinePanopticParts"
    if not direct.is_dir() and wrapped.is_dir():
        return wrapped
    return require_dir(direct, "Cityscapes-Panoptic-Parts labels, package gtFinePanopticParts_trainval.zip")


def _list_sources(
    raw_root: Path, label_root: Path, splits: Sequence[str], unlabeled_photos: str
) -> tuple[list[_Source], int]:
    """Sorted photo/label pairs of the splits and the number of photos skipped without a label."""
    image_root = require_dir(raw_root / "leftImg8bit", "Cityscapes photos, package leftImg8bit_trainvaltest.zip")
    sources: list[_Source] = []
    skipped = 0
    for split in splits:
        lab_dir = require_dir(label_root / split, f"{split} label TIFFs <city>/*{LABEL_SUFFIX}")
        img_dir = require_dir(image_root / split, f"{split} photos <city>/*{IMAGE_SUFFIX}")
        labels = {p.relative_to(lab_dir).as_posix()[: -len(LABEL_SUFFIX)]: p
                  for p in lab_dir.glob(f"*/*{LABEL_SUFFIX}")}
        photos = {p.relative_to(img_dir).as_posix()[: -len(IMAGE_SUFFIX)]: p
                  for p in img_dir.glob(f"*/*{IMAGE_SUFFIX}")}
        for key in sorted(labels):
            if key not in photos:
                raise RawDatasetError(
                    f"{labels[key]}: label TIFF without its photo (expected {img_dir / (key + IMAGE_SUFFIX)})"
                )
            city, base = key.split("/")
            sources.append(_Source(split, city, base, photos[key], labels[key],
                                   labels[key].relative_to(raw_root).as_posix()))
        missing = sorted(set(photos) - set(labels))
        if missing and unlabeled_photos == "error":
            raise RawDatasetError(
                f"{photos[missing[0]]}: photo without its label TIFF (expected "
                f"{lab_dir / (missing[0] + LABEL_SUFFIX)}; {len(missing)} such photo(s) in {img_dir}; "
                "unlabeled_photos='skip' ignores them)"
            )
        skipped += len(missing)
    if not sources:
        raise RawDatasetError(f"{label_root}: no *{LABEL_SUFFIX} files in splits {list(splits)}")
    bases = [s.base for s in sources]
    if len(set(bases)) != len(bases):
        dup = next(b for b in bases if bases.count(b) > 1)
        raise RawDatasetError(f"{label_root}: {dup} appears in more than one split")
    return sources, skipped


def _check_headers(src: _Source) -> None:
    """Cheap header checks (no pixel decoding): photo opens, TIFF is mode "I" of the same size."""
    try:
        with Image.open(src.photo) as im:
            photo_size = im.size
    except (OSError, ValueError, SyntaxError) as e:
        raise RawDatasetError(f"{src.photo}: cannot read image ({e})") from e
    try:
        with Image.open(src.label) as im:
            mode, label_size = im.mode, im.size
    except (OSError, ValueError, SyntaxError) as e:
        raise RawDatasetError(f"{src.label}: cannot read label TIFF ({e})") from e
    if mode != "I":
        raise RawDatasetError(f"{src.label}: label TIFF must be int32 (PIL mode 'I'), got mode {mode!r}")
    if photo_size != label_size:
        raise RawDatasetError(
            f"{src.label}: size {label_size} (w,h) differs from its photo {src.photo} size {photo_size}"
        )


def _check_options_file(out_root: Path, opts: CropOptions) -> None:
    """Records the crop options, or refuses a folder converted with different ones."""
    path = out_root / INDEX_DIR / "options.json"
    wanted = asdict(opts)
    if path.is_file():
        defaults = {f.name: f.default for f in fields(CropOptions)}  # options added later keep their default
        stored = {**defaults, **json.loads(path.read_text(encoding="utf-8"))}
        if stored != wanted:
            raise PreparedDatasetError(
                f"{path}: {out_root} holds a Cityscapes conversion with options {stored}, not {wanted}; "
                "use a new output folder"
            )
        return
    atomic_write_text(path, json.dumps(wanted, indent=1) + "\n")


# --------------------------------------------------------------------------- entry point


def convert_cityscapes(
    raw_root: str | os.PathLike,
    out_root: str | os.PathLike,
    *,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
    min_area: int = 1000,
    pad: float | None = None,
    crop: str = "paper",
    instances: str = "all",
    occlusion_filter: bool = False,
    parts_of: str = "all",
    require_parts: bool = False,
    unknown_parts: str = "error",
    raw_splits: Sequence[str] = ("train", "val"),
    unlabeled_photos: str = "error",
) -> DatasetMetadata:
    """Converts Cityscapes-Panoptic-Parts to the prepared human-vs-vehicle dataset (module docstring).

    seed: crop randomness and split; min_area: smallest instance kept (pixels); crop: "paper"
    (decision 12, `crop_box`) or "reference" (the reference's crops behind the paper's Table 1,
    `reference_crop_box`); pad: for "paper" the maximum random padding as a fraction of the
    object's square side (default 0.1), for "reference" the reference's ``--pad`` (default 0.2);
    instances: "all" (iid >= 0) or
    "authors" (iid != 0, groups included); occlusion_filter / require_parts: the optional
    filters; parts_of: "all" pixels of the crop or only the target "instance"; unknown_parts:
    "error" or "background"; raw_splits: Cityscapes splits read; unlabeled_photos: "error" or
    "skip" for photos without a label TIFF. Returns the written metadata.
    """
    if pad is None:
        pad = CROP_DEFAULT_PAD.get(crop, 0.1)
    opts = CropOptions(int(seed), int(min_area), float(pad), instances, bool(occlusion_filter), parts_of,
                       bool(require_parts), unknown_parts, crop)
    opts.check()
    if unlabeled_photos not in ("error", "skip"):
        raise ValueError(f"unlabeled_photos must be 'error' or 'skip', got {unlabeled_photos!r}")
    raw_root = require_dir(raw_root, "Cityscapes release root with leftImg8bit/ and gtFinePanopticParts/")
    out_root = Path(out_root)
    label_root = _label_root(raw_root)
    sources, skipped = _list_sources(raw_root, label_root, raw_splits, unlabeled_photos)
    for src in sources:
        _check_headers(src)
    out_root.mkdir(parents=True, exist_ok=True)
    _check_options_file(out_root, opts)

    jobs = [_Job(src, out_root, opts) for src in sources]
    results = run_jobs(_convert_image, jobs, workers=workers, desc="Cityscapes", progress=progress)
    rows = [row for r in results for row in r["rows"]]
    if not rows:
        raise RawDatasetError(f"{label_root}: no instance passed the filters (min_area={min_area})")
    counts: dict[str, Any] = {"source_images": len(sources), "unlabeled_photos_skipped": skipped}
    for r in results:
        for k, v in r["counts"].items():
            counts[k] = counts.get(k, 0) + v
    counts["samples"] = {c: sum(1 for row in rows if row["label"] == i) for i, c in enumerate(CLASSES)}
    splits = stratified_split([row["label"] for row in rows], seed=opts.seed)
    counts["splits"] = {split: splits.count(split) for split in SPLITS}
    meta = DatasetMetadata(
        name="cityscapes",
        classes=list(CLASSES),
        parts=metadata_parts(),
        info={
            "source": "Cityscapes-Panoptic-Parts (leftImg8bit + gtFinePanopticParts), converted by "
                      "partrobust.data.cityscapes.convert_cityscapes",
            "raw_root": str(Path(raw_root).resolve()),
            "label_dir": label_root.relative_to(raw_root).as_posix(),
            "raw_splits": list(raw_splits),
            "seed": opts.seed,
            "options": asdict(opts),
            "own_class_parts_only": opts.parts_of == "instance",  # "all" labels other instances too
            "split": "stratified per class 80/10/10 (floor), convert.stratified_split",
            "counts": counts,
        },
    )
    finish(out_root, meta, rows, splits)
    return meta


