"""Part-ImageNet converter on a tiny release written in the raw format (dataset-formats.md 4.1)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from partrobust.data import PartDataset, load_metadata, read_mask, read_split
from partrobust.data.sources import part_imagenet
from partrobust.data.convert import RawDatasetError
from partrobust.data.sources.part_imagenet import CLASSES, convert_part_imagenet

H, W = 24, 32
# JSON category ids and names exactly as the release (dataset-formats.md 1.3).
CATEGORIES = [
    (0, "Quadruped", "Head"), (1, "Quadruped", "Body"), (2, "Quadruped", "Foot"), (3, "Quadruped", "Tail"),
    (4, "Biped", "Head"), (5, "Biped", "Body"), (6, "Biped", "Hand"), (7, "Biped", "Foot"), (8, "Biped", "Tail"),
    (9, "Fish", "Head"), (10, "Fish", "Body"), (11, "Fish", "Fin"), (12, "Fish", "Tail"),
    (13, "Bird", "Head"), (14, "Bird", "Body"), (15, "Bird", "Wing"), (16, "Bird", "Foot"), (17, "Bird", "Tail"),
    (18, "Snake", "Head"), (19, "Snake", "Body"),
    (20, "Reptile", "Head"), (21, "Reptile", "Body"), (22, "Reptile", "Foot"), (23, "Reptile", "Tail"),
    (24, "Car", "Body"), (25, "Car", "Tier"), (26, "Car", "Side Mirror"),
    (27, "Bicycle", "Body"), (28, "Bicycle", "Head"), (29, "Bicycle", "Seat"), (30, "Bicycle", "Tier"),
    (31, "Boat", "Body"), (32, "Boat", "Sail"),
    (33, "Aeroplane", "Head"), (34, "Aeroplane", "Body"), (35, "Aeroplane", "Engine"), (36, "Aeroplane", "Wing"),
    (37, "Aeroplane", "Tail"),
    (38, "Bottle", "Mouth"), (39, "Bottle", "Body"),
]
CAT = {f"{s} {p}": i for i, s, p in CATEGORIES}
LABEL = {c: i for i, c in enumerate(CLASSES)}


def rect(x0: int, y0: int, x1: int, y1: int) -> list[int]:
    """Polygon of a rectangle; pycocotools fills columns x0..x1-1 and rows y0..y1-1."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def ann(name: str, *polygons: list, area: float = 10.0) -> tuple[str, list, float]:
    return (name, list(polygons), area)


FISH_BODY_THEN_HEAD = [ann("Fish Body", rect(4, 4, 20, 16)), ann("Fish Head", rect(14, 6, 20, 12))]
FISH_HEAD_THEN_BODY = FISH_BODY_THEN_HEAD[::-1]
PLANE = [
    ann("Aeroplane Body", rect(2, 8, 30, 16)),
    ann("Aeroplane Wing", [10, 2, 20, 2, 15, 22]),
    ann("Aeroplane Head", rect(26, 9, 31, 15)),
]
CAR = [ann("Car Body", rect(2, 6, 30, 20)), ann("Car Tier", rect(4, 16, 10, 22))]
FISH_EDGE_CASES = FISH_BODY_THEN_HEAD + [
    ann("Fish Tail", rect(0, 0, 4, 4), area=0),  # zero area: not painted
    ann("Fish Fin", [24, 2, 4, 6]),  # 4-number polygon = [x, y, w, h] box
    ann("Fish Tail", [30, 20], rect(26, 16, 30, 22)),  # a 2-number polygon, then a real one
]


def release_spec() -> dict[str, list[tuple[str, list]]]:
    """{json split: [(file_name, annotations)]}: Fish 10, Aeroplane 10, Car 4 kept images."""
    train = [("n01440764_1.JPEG", FISH_EDGE_CASES)]
    train += [(f"n01440764_{n}.JPEG", FISH_BODY_THEN_HEAD) for n in range(2, 7)]
    train += [("n01440764_99.JPEG", [])]  # no annotation: dropped
    train += [(f"n02690373_{n}.JPEG", PLANE) for n in range(1, 8)]
    val = [(f"n01484850_{n}.JPEG", FISH_HEAD_THEN_BODY) for n in range(1, 5)]
    test = [(f"n04552348_{n}.JPEG", PLANE) for n in range(1, 4)]
    test += [(f"n03100240_{n}.JPEG", CAR) for n in range(1, 4)]
    # Car and Fish parts in one image: majority area -> Car; Fish head painted last.
    test += [("n03100240_4.JPEG", [ann("Car Body", rect(2, 6, 30, 20), area=392),
                                   ann("Fish Head", rect(0, 0, 6, 6), area=36)])]
    return {"train": train, "val": val, "test": test}


def write_release(root: Path, layout: str = "JPEGImages") -> Path:
    """Writes JPEGs and train/val/test.json under `root` in the release format."""
    rng = np.random.default_rng(0)
    categories = [{"id": i, "name": f"{s} {p}", "supercategory": s} for i, s, p in CATEGORIES]
    for split, entries in release_spec().items():
        images, annotations = [], []
        for image_id, (file_name, anns) in enumerate(entries):
            synset = file_name.split("_")[0]
            folder = root / ("JPEGImages" if layout == "JPEGImages" else split) / synset
            folder.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
            im = Image.fromarray(pixels)
            if file_name == "n02690373_1.JPEG":
                im = im.convert("L")  # a greyscale JPEG
            im.save(folder / file_name, format="JPEG")
            images.append({"id": image_id, "file_name": file_name, "height": H, "width": W})
            for name, polygons, area in anns:
                annotations.append({
                    "id": len(annotations), "image_id": image_id, "category_id": CAT[name],
                    "segmentation": polygons, "area": area, "bbox": [0, 0, 1, 1], "iscrowd": 0,
                })
        doc = {"images": images, "annotations": annotations, "categories": categories}
        (root / f"{split}.json").write_text(json.dumps(doc))
    return root


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    return write_release(tmp_path / "raw")


def convert(raw: Path, out: Path, **kw) -> object:
    return convert_part_imagenet(raw, out, progress=False, **kw)


def rows_by_stem(out: Path) -> dict[str, tuple[str, int]]:
    """stem -> (split, label) over the three split files."""
    result = {}
    for split in ("train", "val", "test"):
        for _, row in read_split(out, split).iterrows():
            result[Path(row["image"]).stem] = (split, int(row["label"]))
    return result


def mask(out: Path, stem: str) -> np.ndarray:
    return read_mask(out / "masks" / f"{stem}.png")


def all_files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def edit_json(path: Path, fn) -> None:
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


# --------------------------------------------------------------------------- end to end


def test_end_to_end(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    meta = convert(raw, out)
    assert meta.classes == ["Aeroplane", "Bicycle", "Biped", "Bird", "Boat", "Bottle", "Car", "Fish",
                            "Quadruped", "Reptile", "Snake"]
    assert meta.num_parts == 40
    names = {p.id: p.name for p in meta.parts}
    assert names[1] == "Aeroplane/Head" and names[4] == "Aeroplane/Wing" and names[26] == "Car/Side Mirror"
    assert [names[i] for i in (27, 28, 29, 30)] == ["Fish/Head", "Fish/Body", "Fish/Fin", "Fish/Tail"]
    assert names[40] == "Snake/Body" and meta.parts[39].class_name == "Snake"
    # reference-spec.md 5.1: the first id of every class, alphabetically
    first = {p.class_name: p.id for p in reversed(meta.parts)}
    assert list(first.values())[::-1] == [1, 6, 10, 15, 20, 22, 24, 27, 31, 35, 39]
    assert load_metadata(out) == meta

    rows = rows_by_stem(out)
    assert len(rows) == 24 and "n01440764_99" not in rows  # image without annotation dropped
    assert {s: lab for s, (_, lab) in rows.items() if s.startswith("n0144")} == {
        f"n01440764_{n}": LABEL["Fish"] for n in range(1, 7)}
    assert rows["n01484850_3"][1] == LABEL["Fish"] == 7
    assert rows["n02690373_1"][1] == rows["n04552348_2"][1] == LABEL["Aeroplane"] == 0
    assert rows["n03100240_1"][1] == rows["n03100240_4"][1] == LABEL["Car"] == 6
    # floor(10 %) per class: Fish 10 -> 8/1/1, Aeroplane 10 -> 8/1/1, Car 4 -> 4/0/0
    sizes = {s: [lab for sp, lab in rows.values() if sp == s] for s in ("train", "val", "test")}
    assert sorted(sizes["val"]) == sorted(sizes["test"]) == [0, 7]
    assert len(sizes["train"]) == 20 and sizes["train"].count(6) == 4
    df = read_split(out, "train")
    assert {"synset", "source_split", "image_id"} <= set(df.columns)

    m = mask(out, "n01440764_1")  # edge cases
    assert m.shape == (H, W) and m.dtype == np.uint8
    assert m[8, 16] == 27  # head painted after body wins
    assert m[5, 6] == 28  # body
    assert m[1, 1] == 0  # zero-area tail not painted
    assert m[2, 24] == m[7, 27] == 29 and m[8, 27] == 0 and m[4, 28] == 0  # [24, 2, 4, 6] box
    assert m[18, 27] == 30  # polygon after the 2-number one
    assert m[20, 2] == 0
    assert set(np.unique(m)) == {0, 27, 28, 29, 30}
    assert mask(out, "n01484850_1")[8, 16] == 28  # body painted after head wins
    p = mask(out, "n02690373_1")
    assert (p[14, 4], p[10, 15], p[12, 28], p[0, 0]) == (2, 4, 1, 0)
    c = mask(out, "n03100240_2")
    assert (c[18, 6], c[10, 15], c[23, 31]) == (25, 24, 0)
    mc = mask(out, "n03100240_4")
    assert (mc[2, 2], mc[10, 15]) == (27, 24)  # both classes' parts are kept

    # images copied byte for byte (greyscale included)
    for stem in ("n02690373_1", "n01484850_4"):
        src = raw / "JPEGImages" / stem.split("_")[0] / f"{stem}.JPEG"
        assert (out / "images" / f"{stem}.jpg").read_bytes() == src.read_bytes()

    counts = meta.info["counts"]
    assert counts["images_listed"] == 25 and counts["images_without_annotations"] == 1
    assert counts["zero_area_annotations_skipped"] == 1 and counts["box_polygons"] == 1
    assert counts["box_polygons_not_first"] == 0 and counts["point_polygons_skipped"] == 1
    assert counts["samples"] == 24 and counts["multi_class_images"] == 1
    assert meta.info["multi_class_stems"] == ["n03100240_4"]
    assert meta.info["seed"] == 0 and meta.info["layout"] == "JPEGImages"

    for split, n in (("train", 20), ("val", 2), ("test", 2)):
        ds = PartDataset(out, split)
        assert len(ds) == n
        image, target, label = ds[0]
        assert image.shape == (3, H, W) and target.shape == (H, W)
        assert int(target.max()) <= 40


def test_rerun_resume_and_workers(raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Which samples a run converts is observed with a spy (workers=1 runs in this process):
    # on some file systems a replaced file keeps its reported inode/mtime, so mtimes can only
    # show that nothing was rewritten, not that something was.
    done: list[str] = []
    original = part_imagenet._convert_sample

    def spy(job):
        done.append(job[1].stem)
        return original(job)

    monkeypatch.setattr(part_imagenet, "_convert_sample", spy)
    out1, out2 = tmp_path / "w1", tmp_path / "w2"
    meta = convert(raw, out1, workers=1)
    assert len(done) == 24
    files = {k: p.read_bytes() for k, p in all_files(out1).items()}
    samples = {k: p for k, p in all_files(out1).items() if k.startswith(("images/", "masks/"))}
    mtimes = {k: p.stat().st_mtime_ns for k, p in samples.items()}
    done.clear()
    assert convert(raw, out1) == meta  # nothing redone
    assert done == []
    assert {k: p.stat().st_mtime_ns for k, p in samples.items()} == mtimes

    # resume: only the incomplete samples are redone, identically
    (out1 / "masks" / "n01484850_2.png").unlink()
    (out1 / "images" / "n02690373_3.jpg").unlink()
    (out1 / "metadata.json").unlink()
    convert(raw, out1)
    assert done == ["n01484850_2", "n02690373_3"]
    assert {k: p.read_bytes() for k, p in all_files(out1).items()} == files

    monkeypatch.setattr(part_imagenet, "_convert_sample", original)  # the spy does not pickle
    convert(raw, out2, workers=2)
    f1, f2 = all_files(out1), all_files(out2)
    assert f1.keys() == f2.keys()
    assert all(f1[k].read_bytes() == f2[k].read_bytes() for k in f1)

    # another seed reuses the sample files and only re-splits
    monkeypatch.setattr(part_imagenet, "_convert_sample", spy)
    done.clear()
    meta3 = convert(raw, out1, seed=1)
    assert done == [] and meta3.info["seed"] == 1
    assert [len(read_split(out1, s)) for s in ("train", "val", "test")] == [20, 2, 2]


def test_split_folder_layout(tmp_path: Path) -> None:
    """The unzipped layout <split>/<synset>/ gives the same masks and labels."""
    a = convert(write_release(tmp_path / "raw_a"), tmp_path / "a")
    b = convert(write_release(tmp_path / "raw_b", layout="splits"), tmp_path / "b")
    assert b.info["layout"] == "splits"
    assert rows_by_stem(tmp_path / "a") == rows_by_stem(tmp_path / "b")
    for stem in ("n01440764_1", "n03100240_4", "n01484850_1"):
        np.testing.assert_array_equal(mask(tmp_path / "a", stem), mask(tmp_path / "b", stem))
    assert a.info["counts"] == b.info["counts"]


def test_multi_class_policies(raw: Path, tmp_path: Path) -> None:
    meta = convert(raw, tmp_path / "drop", multi_class="drop")
    rows = rows_by_stem(tmp_path / "drop")
    assert "n03100240_4" not in rows and len(rows) == 23
    assert meta.info["multi_class_stems"] == ["n03100240_4"]
    with pytest.raises(RawDatasetError, match=r"test\.json.*n03100240_4\.JPEG.*\['Car', 'Fish'\]"):
        convert(raw, tmp_path / "err", multi_class="error")


# --------------------------------------------------------------------------- bad input


def test_missing_folders_and_files(raw: Path, tmp_path: Path) -> None:
    with pytest.raises(RawDatasetError, match="nowhere"):
        convert(tmp_path / "nowhere", tmp_path / "o1")
    (raw / "val.json").unlink()
    with pytest.raises(RawDatasetError, match=r"val\.json"):
        convert(raw, tmp_path / "o2")
    shutil.rmtree(raw / "JPEGImages")
    with pytest.raises(RawDatasetError, match="JPEGImages"):
        convert(raw, tmp_path / "o3")


def test_listed_image_absent(raw: Path, tmp_path: Path) -> None:
    (raw / "JPEGImages" / "n01484850" / "n01484850_2.JPEG").unlink()
    with pytest.raises(RawDatasetError, match=r"n01484850_2\.JPEG.*val\.json"):
        convert(raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # checked before any work


@pytest.mark.parametrize("content", ["garbage", "truncated", "png"])
def test_unreadable_image(raw: Path, tmp_path: Path, content: str) -> None:
    path = raw / "JPEGImages" / "n04552348" / "n04552348_2.JPEG"
    if content == "garbage":
        path.write_bytes(b"this is not an image")
    elif content == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    else:
        Image.new("RGB", (W, H)).save(path, format="PNG")
    with pytest.raises(RawDatasetError, match=r"n04552348_2\.JPEG"):
        convert(raw, tmp_path / "out")


def test_image_size_differs_from_json(raw: Path, tmp_path: Path) -> None:
    edit_json(raw / "train.json", lambda d: d["images"][3].update(width=W + 1))
    with pytest.raises(RawDatasetError, match=r"n01440764_4\.JPEG.*differs"):
        convert(raw, tmp_path / "out")


@pytest.mark.parametrize(
    "file, edit, pattern",
    [
        ("test.json", lambda d: d["annotations"][2].pop("area"), r"test\.json annotations\[2\]: missing field 'area'"),
        ("train.json", lambda d: d["images"][1].pop("height"), r"train\.json images\[1\]: missing field 'height'"),
        ("val.json", lambda d: d["annotations"][0].pop("segmentation"), r"val\.json.*'segmentation'"),
        ("val.json", lambda d: d.pop("categories"), r"val\.json: missing field 'categories'"),
        ("train.json", lambda d: d["categories"][5].pop("supercategory"), r"train\.json categories\[5\]"),
        ("test.json", lambda d: d["annotations"][0].update(image_id=999), r"test\.json.*image_id 999"),
        ("train.json", lambda d: d["annotations"][0]["segmentation"][0].append(3), r"train\.json.*9 numbers"),
    ],
)
def test_malformed_json(raw: Path, tmp_path: Path, file: str, edit, pattern: str) -> None:
    edit_json(raw / file, edit)
    with pytest.raises(RawDatasetError, match=pattern):
        convert(raw, tmp_path / "out")


def test_invalid_json_syntax(raw: Path, tmp_path: Path) -> None:
    (raw / "test.json").write_text("{not json")
    with pytest.raises(RawDatasetError, match=r"test\.json: cannot read JSON"):
        convert(raw, tmp_path / "out")


@pytest.mark.parametrize(
    "change, pattern",
    [
        ({"name": "Fish Whisker"}, r"val\.json categories\[11\]: part name 'Fish Whisker' not in the grouping table"),
        ({"name": "Dragon Fin", "supercategory": "Dragon"}, r"val\.json categories\[11\]: super-category 'Dragon'"),
    ],
)
def test_unknown_part_name(raw: Path, tmp_path: Path, change: dict, pattern: str) -> None:
    edit_json(raw / "val.json", lambda d: d["categories"][11].update(change))
    with pytest.raises(RawDatasetError, match=pattern):
        convert(raw, tmp_path / "out")


def test_same_file_in_two_json_files(raw: Path, tmp_path: Path) -> None:
    edit_json(raw / "test.json", lambda d: d["images"][0].update(file_name="n01440764_2.JPEG"))
    with pytest.raises(RawDatasetError, match=r"n01440764_2\.JPEG.*also listed"):
        convert(raw, tmp_path / "out")


def test_rle_segmentations_match_polygons() -> None:
    """RLE segmentations (supported defensively) paint the same pixels as their polygon."""
    from pycocotools import mask as mask_utils

    from partrobust.data.sources.part_imagenet import rasterize_parts

    poly = [10, 2, 20, 2, 15, 22]
    expected = rasterize_parts(H, W, [(4, [poly])])
    compressed = mask_utils.merge(mask_utils.frPyObjects([poly], H, W))
    compressed["counts"] = compressed["counts"].decode("ascii")  # as stored in JSON
    binary = np.asfortranarray(expected > 0).astype(np.uint8)
    runs, value, count = [], 0, 0
    for v in binary.flatten(order="F"):  # uncompressed RLE: column-major run lengths from 0
        if v != value:
            runs.append(count)
            value, count = v, 0
        count += 1
    runs.append(count)
    uncompressed = {"counts": runs, "size": [H, W]}
    for rle in (compressed, uncompressed):
        np.testing.assert_array_equal(rasterize_parts(H, W, [(4, rle)]), expected)
    assert expected.sum() > 20
