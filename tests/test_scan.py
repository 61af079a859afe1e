"""Tests of partrobust.data.scan: full dataset scan, every bad file listed, the scan cache."""
from __future__ import annotations

import io
import os
import shutil
import stat
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from partrobust.data import DataScanError, PreparedDatasetError, SyntheticConfig, generate_synthetic, load_metadata, read_split, scan_prepared, write_metadata, write_split
from partrobust.data import scan as scan_module
from partrobust.data.prepared import read_image, read_mask, write_mask

TINY = SyntheticConfig(num_classes=3, image_size=16, n_train=6, n_val=3, n_test=3, seed=0)
N_FILES = 2 * (6 + 3 + 3)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scan") / "tiny"
    generate_synthetic(root, TINY, progress=False)
    return root


@pytest.fixture
def ds(pristine: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny dataset that a test may damage."""
    return Path(shutil.copytree(pristine, tmp_path / "ds"))


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The paths scan_prepared decodes (the real decoder still runs)."""
    calls: list[Path] = []
    real = scan_module._file_facts

    def counting(path: Path, kind: str) -> dict:
        calls.append(Path(path))
        return real(path, kind)

    monkeypatch.setattr(scan_module, "_file_facts", counting)
    return calls


def _scan(root: Path, **kw) -> scan_module.ScanReport:
    return scan_prepared(root, progress=False, **kw)


def _file(root: Path, split: str, row: int, col: str) -> Path:
    return root / read_split(root, split)[col].iloc[row]


def _set_cell(root: Path, split: str, row: int, col: str, value) -> None:
    df = read_split(root, split)
    df.loc[row, col] = value
    write_split(root, split, df)


def _errors(root: Path, **kw) -> str:
    with pytest.raises(DataScanError) as info:
        _scan(root, **kw).raise_if_bad()
    return str(info.value)


def _set_flag(root: Path, value: bool | None) -> None:
    meta = load_metadata(root)
    info = {k: v for k, v in meta.info.items() if k != "own_class_parts_only"}
    if value is not None:
        info["own_class_parts_only"] = value
    write_metadata(root, replace(meta, info=info))


def _foreign_part_mask(root: Path, split: str, row: int) -> tuple[int, str]:
    """Paint a part of another class into a row's mask; returns (that part id, its class name)."""
    meta = load_metadata(root)
    label = int(read_split(root, split)["label"].iloc[row])
    owner = meta.part_to_class()
    part = next(p for p in range(1, meta.num_parts + 1) if owner[p] != label)
    path = _file(root, split, row, "mask")
    mask = read_mask(path).copy()
    mask[:2, :2] = part
    write_mask(path, mask, meta.num_parts)
    return part, meta.classes[owner[part]]


# --------------------------------------------------------------------------- clean data


def test_clean_dataset_passes(ds: Path) -> None:
    report = _scan(ds)
    assert report.ok and report.problems == []
    assert report.rows == {"train": 6, "val": 3, "test": 3}
    assert report.decoded == N_FILES and report.from_cache == 0
    assert load_metadata(ds).info["own_class_parts_only"] is True
    assert "12 rows, 0 problems" in report.summary() and "skipped" not in report.summary()
    report.raise_if_bad()  # no error
    assert issubclass(DataScanError, PreparedDatasetError)


# --------------------------------------------------------------------------- one bad file each


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _jpeg_then_cut(root: Path) -> Path:
    src = _file(root, "train", 1, "image")
    buf = io.BytesIO()
    Image.fromarray(read_image(src)).save(buf, format="JPEG", quality=90)
    jpg = src.with_suffix(".jpg")
    jpg.write_bytes(buf.getvalue()[:-30])  # loses the end of the scan data and the EOI marker
    _set_cell(root, "train", 1, "image", jpg.relative_to(root).as_posix())
    return jpg


def _bad_size(root: Path) -> Path:
    path = _file(root, "train", 1, "mask")
    write_mask(path, np.zeros((16, 15), dtype=np.uint8), load_metadata(root).num_parts)
    return path


def _value_above_k(root: Path) -> Path:
    path = _file(root, "train", 1, "mask")
    mask = read_mask(path).copy()
    mask[0, 0] = load_metadata(root).num_parts + 1
    Image.fromarray(mask).save(path)
    return path


def _rgb_mask(root: Path) -> Path:
    path = _file(root, "train", 1, "mask")
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(path)
    return path


def _delete(col: str):
    def damage(root: Path) -> Path:
        path = _file(root, "train", 1, col)
        path.unlink()
        return path
    return damage


def _truncate_image(root: Path) -> Path:
    path = _file(root, "train", 1, "image")
    _truncate(path)
    return path


K = 2 + 3 + 4  # parts of the three first templates


@pytest.mark.parametrize(
    "damage, expected",
    [
        (_truncate_image, "cannot decode image (Truncated File Read)"),
        (_jpeg_then_cut, "cannot decode image (image file is truncated"),
        (_delete("image"), "file not found"),
        (_delete("mask"), "file not found"),
        (_bad_size, "mask size (16, 15) differs from image size (16, 16)"),
        (_value_above_k, f"mask value {K + 1} exceeds K={K}"),
        (_rgb_mask, "mask must be single-channel, got mode 'RGB'"),
    ],
    ids=["truncated-png", "truncated-jpeg", "missing-image", "missing-mask", "mask-size", "value-above-k", "rgb-mask"],
)
def test_each_bad_file_is_named(ds: Path, monkeypatch: pytest.MonkeyPatch, damage, expected: str) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # must not hide truncation
    path = damage(ds)
    report = _scan(ds)
    assert [(p.split, p.row, p.path) for p in report.problems] == [("train", 1, str(path))]
    assert report.problems[0].message.startswith(expected), report.problems[0].message
    message = _errors(ds)
    assert message.startswith(f"{ds}: 1 bad file(s) in 1 row(s)")
    assert f"  train row 1: {path}: {expected}" in message
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored after the scan


def test_png_without_its_final_chunk_is_truncated(ds: Path) -> None:
    path = _file(ds, "val", 2, "mask")
    path.write_bytes(path.read_bytes()[:-12])  # every pixel is there, the IEND chunk is not
    (problem,) = _scan(ds).problems
    assert problem.path == str(path) and problem.message.startswith("cannot decode mask (truncated PNG file")


def test_part_of_another_class_depends_on_the_flag(ds: Path) -> None:
    part, owner = _foreign_part_mask(ds, "train", 1)
    label = int(read_split(ds, "train")["label"].iloc[1])
    own = load_metadata(ds).classes[label]
    (problem,) = _scan(ds).problems
    assert problem.path == str(_file(ds, "train", 1, "mask"))
    assert problem.message == f"part {part} belongs to class {owner!r}, the image's class is {own!r} (label {label})"

    for flag in (False, None):  # false or absent: other objects' parts are legitimate
        _set_flag(ds, flag)
        report = _scan(ds)
        assert report.ok
        assert "part-class check skipped" in report.summary() and report.summary().count("\n") == 0


# --------------------------------------------------------------------------- several at once


def test_every_bad_file_is_listed_in_one_error(ds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = [_file(ds, "train", 2, "image"), _file(ds, "train", 5, "mask"), _file(ds, "val", 1, "mask"),
           _file(ds, "test", 2, "image")]
    _truncate(bad[0])
    bad[1].unlink()
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(bad[2])
    _truncate(bad[3])
    message = _errors(ds)
    assert message.startswith(f"{ds}: 4 bad file(s) in 4 row(s)\n")
    for where, path in zip(["train row 2", "train row 5", "val row 1", "test row 2"], bad):
        assert f"  {where}: {path}: " in message

    monkeypatch.setattr(scan_module, "MAX_LISTED", 2)  # long lists: the rest go to a file
    message = _errors(ds)
    report_file = ds / scan_module.REPORT_FILE
    assert message.count("\n  ") == 3 and f"and 2 more; full list in {report_file}" in message
    assert all(str(path) in report_file.read_text() for path in bad)


def test_row_limit_per_split(ds: Path, decodes: list[Path]) -> None:
    _truncate(_file(ds, "train", 3, "image"))
    report = _scan(ds, splits={"train": 3, "val": None})
    assert report.ok and report.rows == {"train": 3, "val": 3}
    assert len(decodes) == 2 * (3 + 3)
    assert not any("/test/" in p.as_posix() for p in decodes)
    assert [p.row for p in _scan(ds, splits={"train": 4}).problems] == [3]
    with pytest.raises(ValueError, match="row limit"):
        _scan(ds, splits={"train": -1})


# --------------------------------------------------------------------------- cache


def test_rerun_decodes_nothing(ds: Path, decodes: list[Path]) -> None:
    _value_above_k(ds)
    first = _scan(ds)
    assert len(decodes) == N_FILES and first.decoded == N_FILES and (ds / scan_module.CACHE_FILE).is_file()
    decodes.clear()
    again = _scan(ds, workers=1)
    assert decodes == [] and again.decoded == 0 and again.from_cache == N_FILES
    assert again.problems == first.problems  # a cached bad file is still reported
    decodes.clear()
    assert _scan(ds, cache=False).decoded == N_FILES and len(decodes) == N_FILES


def test_rewritten_file_is_rescanned(ds: Path, decodes: list[Path]) -> None:
    assert _scan(ds).ok
    decodes.clear()
    path = _value_above_k(ds)
    st = path.stat()  # the rewrite may fall in the same mtime tick: move it on explicitly
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    report = _scan(ds)
    assert decodes == [path] and report.decoded == 1 and report.from_cache == N_FILES - 1
    assert [p.path for p in report.problems] == [str(path)]


def test_label_change_is_checked_without_decoding(ds: Path, decodes: list[Path]) -> None:
    assert _scan(ds).ok
    decodes.clear()
    label = int(read_split(ds, "train")["label"].iloc[1])
    _set_cell(ds, "train", 1, "label", (label + 1) % TINY.num_classes)
    report = _scan(ds)
    assert decodes == []
    (problem,) = report.problems
    assert (problem.split, problem.row) == ("train", 1) and "belongs to class" in problem.message


def test_read_only_folder_still_scans(ds: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    _truncate(_file(ds, "test", 1, "image"))
    mode = ds.stat().st_mode
    ds.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        if os.access(ds, os.W_OK):  # root ignores permissions: make the write fail as it would
            def refuse(path, text):
                raise PermissionError(13, "Permission denied", str(path))
            monkeypatch.setattr(scan_module, "atomic_write_text", refuse)
        report = _scan(ds)
    finally:
        ds.chmod(mode)
    assert report.decoded == N_FILES and [p.row for p in report.problems] == [1]
    err = capsys.readouterr().err
    assert "could not write the scan cache" in err and err.count("\n") == 1
    assert not (ds / scan_module.CACHE_FILE).exists()
