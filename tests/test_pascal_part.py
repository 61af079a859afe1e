"""PASCAL-Part converter on tiny fixtures written in the raw format (.mat struct arrays + JPEGs)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from partrobust.data import PartDataset, PreparedDatasetError, load_metadata, read_mask, read_split, validate_prepared
from partrobust.data.convert import RawDatasetError
from partrobust.data.sources import pascal_part
from partrobust.data.sources.pascal_part import convert_pascal_part

H, W = 24, 32
_PART_DT = [("part_name", "O"), ("mask", "O")]
_OBJ_DT = [("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")]
VOC_IND = {"aeroplane": 1, "bird": 3, "boat": 4, "car": 7, "cat": 8, "dog": 12, "person": 15}


# --------------------------------------------------------------------------- raw fixture writers


def box(y0: int, y1: int, x0: int, x1: int, h: int = H, w: int = W) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def obj(cls: str, mask: np.ndarray, parts: list[tuple[str, np.ndarray]] = (), class_ind: int | None = None) -> dict:
    return {"class": cls, "class_ind": VOC_IND[cls] if class_ind is None else class_ind, "mask": mask, "parts": list(parts)}


def struct_array(records: list[dict], dtype: list, fields: list[str]) -> np.ndarray:
    """A (1, N) struct array, or (0, 0) when empty (as in real files), for scipy.io.savemat."""
    arr = np.zeros((1, len(records)) if records else (0, 0), dtype=dtype)
    for j, rec in enumerate(records):
        for f in fields:
            arr[0, j][f] = rec[f]
    return arr


def write_mat(root: Path, stem: str, objects: list[dict], imname: str | None = None, drop: str | None = None) -> Path:
    """``Annotations_Part/<stem>.mat``; `drop` removes one object field (for the bad-input tests)."""
    obj_fields = [f for f, _ in _OBJ_DT if f != drop]
    recs = []
    for o in objects:
        parts = struct_array([{"part_name": n, "mask": m} for n, m in o["parts"]], _PART_DT, ["part_name", "mask"])
        recs.append({"class": o["class"], "class_ind": np.array([[o["class_ind"]]], np.uint8), "mask": o["mask"], "parts": parts})
    objs = struct_array(recs, [(f, "O") for f in obj_fields], obj_fields)
    anno = np.zeros((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0]["imname"] = stem if imname is None else imname
    anno[0, 0]["objects"] = objs
    path = root / "Annotations_Part" / f"{stem}.mat"
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"anno": anno})
    return path


def write_jpg(root: Path, stem: str, h: int = H, w: int = W, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path = root / "JPEGImages" / f"{stem}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, format="JPEG", quality=90)
    return path


def dog(mask: np.ndarray) -> dict:
    return obj("dog", mask, [("torso", mask)])


def build_raw(root: Path) -> Path:
    """8 hand-made images (2 skipped, 1 without objects) + 9 plain dogs + 5 plain cats."""
    # dog image (main) with a smaller cat overlapping it and a person (other class, part names unchecked)
    write_mat(root, "2008_000001", [
        obj("person", box(20, 24, 0, 10), [("hair", box(20, 22, 0, 4))]),
        obj("dog", box(0, 20, 0, 20), [
            ("head", box(0, 6, 0, 8)), ("lear", box(0, 2, 0, 2)), ("muzzle", box(6, 8, 0, 4)),
            ("lfleg", box(14, 20, 0, 4)), ("lfpa", box(18, 20, 4, 6)),
            ("torso", box(6, 14, 4, 20)), ("tail", box(14, 16, 16, 20)),
        ]),
        obj("cat", box(10, 24, 18, 32), [("head", box(10, 14, 18, 24)), ("torso", box(14, 24, 24, 32))]),
    ])
    # car: leftside overlaps window and wheel, which win
    write_mat(root, "2008_000002", [obj("car", box(4, 20, 2, 30), [
        ("leftside", box(4, 20, 2, 30)), ("window_1", box(6, 10, 8, 16)),
        ("wheel_1", box(16, 20, 4, 10)), ("door_1", box(10, 16, 16, 24)),
    ])])
    # largest object is a person: skipped (its JPEG is not needed, its dog's unknown part ignored)
    write_mat(root, "2008_000003", [obj("person", box(0, 24, 0, 20)), obj("dog", box(0, 10, 20, 30), [("wing", box(0, 5, 20, 30))])])
    # aeroplane: stern (tail group) painted before body
    write_mat(root, "2008_000004", [obj("aeroplane", box(0, 20, 0, 32), [
        ("body", box(8, 12, 0, 32)), ("lwing", box(0, 8, 10, 20)), ("engine_1", box(4, 6, 12, 14)),
        ("stern", box(8, 12, 28, 32)), ("wheel_1", box(12, 14, 4, 6)),
    ])])
    # bird without parts (0x0 parts struct)
    write_mat(root, "2008_000005", [obj("bird", box(2, 10, 2, 10))])
    # cat and dog of equal area: the first (cat) wins
    write_mat(root, "2008_000006", [
        obj("cat", box(0, 8, 0, 8), [("head", box(0, 4, 0, 8))]),
        obj("dog", box(0, 8, 16, 24), [("head", box(0, 4, 16, 24))]),
    ])
    write_mat(root, "2008_000007", [obj("boat", box(0, 20, 0, 30))])  # skipped (boat)
    write_mat(root, "2008_000008", [])  # no object: skipped
    for stem in ["2008_000001", "2008_000002", "2008_000004", "2008_000005", "2008_000006", "2008_000007", "2008_000008"]:
        write_jpg(root, stem, seed=int(stem[-3:]))
    for i in range(9):
        write_mat(root, f"2009_{i:06d}", [dog(box(2, 20, 2, 20 + i))])
        write_jpg(root, f"2009_{i:06d}", seed=100 + i)
    for i in range(5):
        write_mat(root, f"2010_{i:06d}", [obj("cat", box(2, 20, 2, 20 + i), [("torso", box(2, 20, 2, 20 + i))])])
        write_jpg(root, f"2010_{i:06d}", seed=200 + i)
    return root


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    return build_raw(tmp_path_factory.mktemp("pascal") / "raw")


@pytest.fixture(scope="module")
def converted(raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pascal") / "out"
    convert_pascal_part(raw, out, seed=0, workers=1, progress=False)
    return out


def all_rows(out: Path) -> dict[str, dict]:
    rows = {}
    for split in ("train", "val", "test"):
        for r in read_split(out, split).to_dict("records"):
            rows[r["imname"]] = {**r, "split": split}
    return rows


def files_of(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- end to end


def test_labels_parts_and_splits(raw, converted):
    meta = load_metadata(converted)
    assert meta.classes == ["aeroplane", "bird", "car", "cat", "dog"]
    assert [p.name for p in meta.parts][:3] == ["aeroplane/tail", "aeroplane/wing", "aeroplane/body"]
    assert [(p.id, p.name) for p in meta.parts][-3:] == [(13, "dog/head"), (14, "dog/legs"), (15, "dog/body")]
    assert meta.info["seed"] == 0 and meta.info["skipped"] == {"no_object": 1, "other_class": 2, "too_small": 0}

    rows = all_rows(converted)
    assert "2008_000003" not in rows and "2008_000007" not in rows and "2008_000008" not in rows
    labels = {k: meta.classes[r["label"]] for k, r in rows.items()}
    assert labels["2008_000001"] == "dog" and labels["2008_000002"] == "car"
    assert labels["2008_000004"] == "aeroplane" and labels["2008_000005"] == "bird"
    assert labels["2008_000006"] == "cat"  # equal areas: first object wins
    assert all(r["class"] == labels[k] for k, r in rows.items())

    def mask(stem: str) -> np.ndarray:
        m = read_mask(converted / rows[stem]["mask"])
        assert m.shape == (H, W) and m.dtype == np.uint8
        return m

    m = mask("2008_000001")
    assert m[1, 1] == 13 and m[3, 5] == 13 and m[7, 1] == 13  # head, lear, muzzle -> dog head
    assert m[16, 1] == 14 and m[19, 5] == 14  # leg, paw -> dog legs
    assert m[10, 10] == 15 and m[15, 17] == 15  # torso, tail -> dog body
    assert m[16, 10] == 0  # dog pixel covered by no part
    assert m[12, 19] == 15  # cat head under the dog's torso: the main object wins
    assert m[12, 22] == 10 and m[20, 28] == 12  # the cat keeps cat ids
    assert m[22, 2] == 0  # person: background
    assert set(np.unique(m)) == {0, 10, 12, 13, 14, 15}

    m = mask("2008_000002")
    assert m[8, 10] == 8 and m[18, 6] == 7 and m[12, 20] == 9 and m[5, 3] == 9 and m[22, 0] == 0
    m = mask("2008_000004")
    assert m[10, 30] == 1 and m[5, 13] == 2 and m[2, 11] == 2 and m[10, 5] == 3 and m[13, 5] == 3 and m[18, 0] == 0
    assert not mask("2008_000005").any()  # object without parts
    m = mask("2008_000006")
    assert m[1, 1] == 10 and m[1, 20] == 13

    # 80/10/10 per class with round(): dog 10 -> 1/1/8, cat 6 -> 1/1/4, singletons -> train
    sizes = {s: len(read_split(converted, s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 15, "val": 2, "test": 2}
    for s in ("val", "test"):
        assert sorted(meta.classes[x] for x in read_split(converted, s)["label"]) == ["cat", "dog"]

    # JPEG bytes copied unchanged
    for stem, r in rows.items():
        assert (converted / r["image"]).read_bytes() == (raw / "JPEGImages" / f"{stem}.jpg").read_bytes()

    ds = PartDataset(converted, "train")
    image, target, label = ds[0]
    assert image.shape == (3, H, W) and target.shape == (H, W) and 0 <= label < 5 and int(target.max()) <= 15


def test_rerun_redoes_nothing(raw, converted, monkeypatch):
    before = {k: p.stat().st_mtime_ns for k, p in files_of(converted).items()}

    def fail(*args, **kwargs):
        raise AssertionError("a .mat file was read again")

    monkeypatch.setattr(pascal_part, "load_annotation", fail)
    convert_pascal_part(raw, converted, seed=0, workers=1, progress=False)
    assert {k: p.stat().st_mtime_ns for k, p in files_of(converted).items()} == before


def test_resume_and_workers(raw, converted, tmp_path):
    # an interrupted run (some samples missing) resumes; workers=2 gives identical bytes
    out = tmp_path / "out"
    shutil.copytree(converted, out)
    (out / "masks" / "2009_000003.png").unlink()
    (out / "images" / "2008_000002.jpg").unlink()
    (out / "metadata.json").unlink()
    kept = out / "masks" / "2008_000001.png"
    mtime = kept.stat().st_mtime_ns
    convert_pascal_part(raw, out, seed=0, workers=2, progress=False)
    assert kept.stat().st_mtime_ns == mtime
    out2 = tmp_path / "out2"
    convert_pascal_part(raw, out2, seed=0, workers=2, progress=False)
    for other in (out, out2):
        a, b = files_of(converted), files_of(other)
        assert a.keys() == b.keys()
        assert all(a[k].read_bytes() == b[k].read_bytes() for k in a), other


def test_min_area_fractions_and_seed(raw, converted, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(converted, out)  # files are reused, only the selection and split change
    meta = convert_pascal_part(raw, out, seed=1, min_area=0.53, val_fraction=0.5, test_fraction=0.25, progress=False)
    rows = all_rows(out)
    # kept: aeroplane 640/768 px, car 448/768, dogs 18 x (18 + i) px for i >= 5; dog 2008_000001 has 400/768 < 0.53
    assert sorted(rows) == ["2008_000002", "2008_000004"] + [f"2009_{i:06d}" for i in range(5, 9)]
    assert meta.info["skipped"]["too_small"] == len(all_rows(converted)) - len(rows)
    assert meta.info["seed"] == 1 and meta.info["min_area"] == 0.53
    # dogs: val round(2.0) = 2, test round(1.0) = 1; singletons: round(0.5) = 0 (banker's rounding)
    assert {s: len(read_split(out, s)) for s in ("train", "val", "test")} == {"train": 3, "val": 2, "test": 1}


def test_empty_split_warns_and_is_refused_by_validation(raw, tmp_path):
    with pytest.warns(UserWarning, match="are empty"):
        convert_pascal_part(raw, tmp_path / "out", min_area=0.7, progress=False)
    with pytest.raises(PreparedDatasetError, match="val"):
        validate_prepared(tmp_path / "out")


# --------------------------------------------------------------------------- bad inputs


def minimal_raw(root: Path) -> Path:
    write_mat(root, "2008_000001", [dog(box(0, 20, 0, 20))])
    write_jpg(root, "2008_000001")
    return root


def run_bad(root: Path, tmp_path: Path, *, expect_no_output: bool = True) -> str:
    out = tmp_path / "out"
    with pytest.raises(RawDatasetError) as info:
        convert_pascal_part(root, out, progress=False)
    if expect_no_output:
        assert not (out / "images").exists() and not (out / "masks").exists()
    assert not (out / "metadata.json").exists()
    return str(info.value)


@pytest.mark.parametrize("folder", ["JPEGImages", "Annotations_Part"])
def test_missing_folder(tmp_path, folder):
    root = minimal_raw(tmp_path / "raw")
    shutil.rmtree(root / folder)
    assert str(root / folder) in run_bad(root, tmp_path)


def test_missing_image(tmp_path):
    root = minimal_raw(tmp_path / "raw")
    write_mat(root, "2008_000002", [dog(box(0, 20, 0, 20))])
    assert str(root / "JPEGImages" / "2008_000002.jpg") in run_bad(root, tmp_path)


def test_unreadable_image(tmp_path):
    root = minimal_raw(tmp_path / "raw")
    write_mat(root, "2008_000002", [dog(box(0, 20, 0, 20))])
    bad = root / "JPEGImages" / "2008_000002.jpg"
    bad.write_bytes(b"this is not a jpeg")
    assert str(bad) in run_bad(root, tmp_path)


def test_truncated_image_fails_decode(tmp_path):
    root = minimal_raw(tmp_path / "raw")
    write_mat(root, "2008_000002", [dog(box(0, 20, 0, 20))])
    bad = write_jpg(root, "2008_000002", seed=5)
    bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])
    message = run_bad(root, tmp_path, expect_no_output=False)
    assert str(bad) in message and "decode" in message
    assert not (tmp_path / "out" / "images" / "2008_000002.jpg").exists()


def test_image_size_mismatch(tmp_path):
    root = minimal_raw(tmp_path / "raw")
    write_mat(root, "2008_000002", [dog(box(0, 20, 0, 20))])
    bad = write_jpg(root, "2008_000002", h=H + 1)
    assert str(bad) in run_bad(root, tmp_path)


@pytest.mark.parametrize("case", ["garbage", "no_anno", "no_parts_field", "no_mask_field", "imname", "class_ind", "mask_shape"])
def test_bad_mat(tmp_path, case):
    root = minimal_raw(tmp_path / "raw")
    stem = "2008_000002"
    write_jpg(root, stem)
    path = root / "Annotations_Part" / f"{stem}.mat"
    if case == "garbage":
        path.write_bytes(b"\x00garbage")
    elif case == "no_anno":
        scipy.io.savemat(path, {"other": np.zeros((2, 2))})
    elif case in ("no_parts_field", "no_mask_field"):
        write_mat(root, stem, [dog(box(0, 20, 0, 20))], drop=case.split("_")[1])
    elif case == "imname":
        write_mat(root, stem, [dog(box(0, 20, 0, 20))], imname="2008_999999")
    elif case == "class_ind":
        write_mat(root, stem, [obj("dog", box(0, 20, 0, 20), class_ind=8)])
    elif case == "mask_shape":
        write_mat(root, stem, [obj("dog", box(0, 20, 0, 20), [("torso", box(0, 5, 0, 5, h=H - 1))])])
    message = run_bad(root, tmp_path)
    assert str(path) in message
    if case.startswith("no_") and case != "no_anno":
        assert case.split("_")[1] in message


def test_unknown_part_names_are_reported(tmp_path):
    root = minimal_raw(tmp_path / "raw")
    for stem, part in [("2008_000002", "wing"), ("2008_000003", "snout")]:
        write_jpg(root, stem)
        write_mat(root, stem, [dog(box(0, 20, 0, 20)), obj("cat", box(0, 5, 20, 25), [(part, box(0, 5, 20, 25))])])
    message = run_bad(root, tmp_path)
    for stem, part in [("2008_000002", "wing"), ("2008_000003", "snout")]:
        assert str(root / "Annotations_Part" / f"{stem}.mat") in message and repr(part) in message
    assert "2 raw part name(s)" in message
