"""Label variants (object / part bounding-box masks) and the fewer-labels fraction option."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from partrobust.data import SPLITS, DatasetMetadata, PartDataset, PartInfo, PreparedDatasetError, load_metadata, read_mask, read_split, train_transform, write_image, write_mask, write_metadata, write_split
from partrobust.data.dataset import labelled_rows
from partrobust.data.loaders import LoaderConfig, build_loaders
from partrobust.data.variants import MARKER_FILE, bbox_mask, make_label_variant, part_boxes
from partrobust.models.losses import UNLABELLED


def _files(root: Path) -> dict[str, tuple[int, bytes]]:
    """mtime_ns and bytes of every file under root."""
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _rows(root: Path):
    for split in SPLITS:
        yield from read_split(root, split).to_dict("records")


# --------------------------------------------------------------------------- hand-made dataset

# 12x10 masks. Image 0 (class "a"): body (2) an L shape spanning rows 2-9, cols 1-7; head (1) two
# blobs at (3,3) and (5,5) inside the body's box. Image 1 (class "b"): part 3 in two blobs.
_M0 = np.zeros((12, 10), np.uint8)
_M0[2:10, 1:3] = 2
_M0[8:10, 1:8] = 2
_M0[3, 3] = 1
_M0[5, 5] = 1
_M1 = np.zeros((12, 10), np.uint8)
_M1[1:3, 1:3] = 3
_M1[6, 7] = 3


def _expected_bbox_m0() -> np.ndarray:
    out = np.zeros((12, 10), np.uint8)
    out[2:10, 1:8] = 2  # body box painted first (largest)
    out[3:6, 3:6] = 1  # head box (both blobs) painted over it
    return out


def _expected_bbox_m1() -> np.ndarray:
    out = np.zeros((12, 10), np.uint8)
    out[1:7, 1:8] = 3
    return out


@pytest.fixture()
def handmade(tmp_path) -> Path:
    """Prepared dataset: classes a (parts 1, 2) and b (part 3); masks _M0/_M1 in every split."""
    root = tmp_path / "src"
    rng = np.random.default_rng(0)
    for split in SPLITS:
        rows = []
        for i, (mask, label) in enumerate(((_M0, 0), (_M1, 1))):
            stem = f"{split}_{i}"
            write_image(root / "images" / f"{stem}.png", rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
            write_mask(root / "masks" / f"{stem}.png", mask, 3)
            rows.append({"image": f"images/{stem}.png", "mask": f"masks/{stem}.png", "label": label, "extra": i})
        write_split(root, split, rows)
    parts = [PartInfo(1, "a/head", "a"), PartInfo(2, "a/body", "a"), PartInfo(3, "b/x", "b")]
    write_metadata(root, DatasetMetadata(name="hand", classes=["a", "b"], parts=parts, info={"k": 1}))
    return root


def test_bbox_functions():
    assert part_boxes(_M0) == {1: (3, 5, 3, 5), 2: (2, 9, 1, 7)}
    assert part_boxes(np.zeros((3, 3), np.uint8)) == {}
    np.testing.assert_array_equal(bbox_mask(_M0), _expected_bbox_m0())
    np.testing.assert_array_equal(bbox_mask(_M1), _expected_bbox_m1())
    # equal areas: the larger id is painted last and wins the overlap
    m = np.zeros((4, 4), np.uint8)
    m[0, 1], m[1, 0], m[1, 1], m[2, 2] = 2, 2, 1, 1  # two 2x2 boxes overlapping at (1, 1)
    np.testing.assert_array_equal(bbox_mask(m)[:3, :3], [[2, 2, 0], [2, 2, 1], [0, 1, 1]])


def test_bbox_variant_handmade(handmade, tmp_path):
    dst = tmp_path / "bbox"
    meta = make_label_variant(handmade, dst, "bbox", progress=False)
    assert meta == load_metadata(dst)
    assert meta.parts == load_metadata(handmade).parts and meta.classes == ["a", "b"]
    assert meta.info["label_variant"] == "bbox" and meta.info["source"] == str(handmade.resolve())
    assert meta.info["source_info"] == {"k": 1} and "bbox_paint_order" in meta.info
    for split in SPLITS:
        df = read_split(dst, split)
        assert df["label"].tolist() == [0, 1] and df["extra"].tolist() == [0, 1]
        assert df["image"].tolist() == [f"../src/images/{split}_{i}.png" for i in range(2)]
        np.testing.assert_array_equal(read_mask(dst / df["mask"][0]), _expected_bbox_m0())
        np.testing.assert_array_equal(read_mask(dst / df["mask"][1]), _expected_bbox_m1())
        ds, src_ds = PartDataset(dst, split), PartDataset(handmade, split)
        for i in range(2):
            assert torch.equal(ds[i][0], src_ds[i][0])
    # several processes give the same files
    dst2 = tmp_path / "bbox2"
    make_label_variant(handmade, dst2, "bbox", workers=2, progress=False)
    a, b = _files(dst), _files(dst2)
    assert a.keys() == b.keys()
    for name in a:
        if name != "metadata.json":
            assert a[name][1] == b[name][1], name


def test_variant_errors(handmade, tmp_path):
    with pytest.raises(ValueError, match="unknown label variant kind 'boxes'"):
        make_label_variant(handmade, tmp_path / "x", "boxes", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PreparedDatasetError, match="metadata.json"):
        make_label_variant(tmp_path / "empty", tmp_path / "x", "object", progress=False)
    with pytest.raises(PreparedDatasetError, match="does not exist"):
        make_label_variant(tmp_path / "nowhere", tmp_path / "x", "object", progress=False)
    with pytest.raises(PreparedDatasetError, match="other than its source"):
        make_label_variant(handmade, handmade, "object", progress=False)
    (handmade / "masks" / "val_1.png").unlink()
    with pytest.raises(PreparedDatasetError, match=r"val\.csv: row 1 mask file .*val_1\.png"):
        make_label_variant(handmade, tmp_path / "x", "object", progress=False)
    assert not (tmp_path / "x").exists()  # checked before anything is written


def test_variant_refuses_other_content(handmade, tmp_path):
    dst = tmp_path / "v"
    make_label_variant(handmade, dst, "object", progress=False)
    with pytest.raises(PreparedDatasetError, match="already holds another dataset"):
        make_label_variant(handmade, dst, "bbox", progress=False)
    # an interrupted run (no metadata.json yet) of another kind is refused too
    (dst / "metadata.json").unlink()
    with pytest.raises(PreparedDatasetError, match=MARKER_FILE):
        make_label_variant(handmade, dst, "bbox", progress=False)


# --------------------------------------------------------------------------- synthetic dataset


def test_object_variant(tiny_dataset, tmp_path):
    src_meta = load_metadata(tiny_dataset)
    dst = tmp_path / "object"
    meta = make_label_variant(tiny_dataset, dst, "object", progress=False)
    assert meta.num_parts == meta.num_classes == src_meta.num_classes
    assert [p.name for p in meta.parts] == [f"{c}/object" for c in src_meta.classes]
    assert meta.part_to_class() == [-1] + list(range(meta.num_classes))
    lut = np.array(src_meta.part_to_class()) + 1
    src_rows, dst_rows = list(_rows(tiny_dataset)), list(_rows(dst))
    assert len(src_rows) == len(dst_rows) == 72
    for s, d in zip(src_rows, dst_rows):
        assert s["label"] == d["label"] and s["texture"] == d["texture"]
        assert os.path.samefile(dst / d["image"], tiny_dataset / s["image"])
        src_mask, dst_mask = read_mask(tiny_dataset / s["mask"]), read_mask(dst / d["mask"])
        assert (src_mask > 0).any()
        np.testing.assert_array_equal(dst_mask, lut[src_mask])
        assert set(np.unique(dst_mask)) <= {0, s["label"] + 1}
    ds, src_ds = PartDataset(dst, "test"), PartDataset(tiny_dataset, "test")
    image, mask, label = ds[3]
    assert torch.equal(image, src_ds[3][0]) and label == src_ds[3][2]
    assert torch.equal(mask, torch.where(src_ds[3][1] > 0, label + 1, 0))

    # idempotent: a rerun touches nothing
    before = _files(dst)
    assert make_label_variant(tiny_dataset, dst, "object", progress=False) == meta
    assert _files(dst) == before
    # resumable: an interrupted run (no metadata.json, a mask missing) redoes only what is missing
    mask_file = dst / dst_rows[5]["mask"]
    mask_file.unlink()
    (dst / "metadata.json").unlink()
    make_label_variant(tiny_dataset, dst, "object", progress=False)
    after = _files(dst)
    assert after.keys() == before.keys()
    for name, (mtime, data) in before.items():
        assert after[name][1] == data, name
        if name.startswith("masks/") and dst / name != mask_file:
            assert after[name][0] == mtime, name

    # a variant of a variant still points at the original images
    dst2 = tmp_path / "nested" / "bbox_of_object"
    make_label_variant(dst, dst2, "bbox", progress=False)
    for s, d in zip(src_rows, _rows(dst2)):
        assert os.path.samefile(dst2 / d["image"], tiny_dataset / s["image"])


def test_bbox_variant_synthetic(tiny_dataset, tmp_path):
    dst = tmp_path / "bbox"
    make_label_variant(tiny_dataset, dst, "bbox", progress=False)
    for s, d in zip(_rows(tiny_dataset), _rows(dst)):
        src_mask, dst_mask = read_mask(tiny_dataset / s["mask"]), read_mask(dst / d["mask"])
        boxes = part_boxes(src_mask)
        union = np.zeros(src_mask.shape, bool)
        for y0, y1, x0, x1 in boxes.values():
            union[y0 : y1 + 1, x0 : x1 + 1] = True
        np.testing.assert_array_equal(dst_mask > 0, union)
        for part, (y0, y1, x0, x1) in boxes.items():
            inside = dst_mask == part
            ys, xs = np.nonzero(inside)
            assert ys.min() >= y0 and ys.max() <= y1 and xs.min() >= x0 and xs.max() <= x1
        # the smallest box (ties: the larger id, painted last) stays whole
        smallest = min(boxes, key=lambda p: ((boxes[p][1] - boxes[p][0] + 1) * (boxes[p][3] - boxes[p][2] + 1), -p))
        y0, y1, x0, x1 = boxes[smallest]
        assert (dst_mask[y0 : y1 + 1, x0 : x1 + 1] == smallest).all()


# --------------------------------------------------------------------------- label fraction


def test_labelled_rows():
    n = 40
    for f in (0.0, 0.1, 0.25, 0.5, 0.77, 1.0):
        keep = labelled_rows(n, f, 0)
        assert (~keep).sum() == int((1 - f) * n)
        dropped = np.random.RandomState(3).permutation(n)[: int((1 - f) * n)]
        np.testing.assert_array_equal(np.flatnonzero(~labelled_rows(n, f, 3)), np.sort(dropped))
    np.testing.assert_array_equal(labelled_rows(n, 0.5, 1), labelled_rows(n, 0.5, 1))
    assert not np.array_equal(labelled_rows(n, 0.5, 1), labelled_rows(n, 0.5, 2))
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="label_fraction"):
            labelled_rows(n, bad)


def test_label_fraction_dataset(tiny_dataset):
    full = PartDataset(tiny_dataset, "train", transform=train_transform(16, scale=(0.5, 1.0)))
    part = PartDataset(tiny_dataset, "train", transform=train_transform(16, scale=(0.5, 1.0)), label_fraction=0.25, label_seed=7)
    assert full.labelled.all() and part.labelled.sum() == 40 - int(0.75 * 40)
    np.testing.assert_array_equal(part.labelled, labelled_rows(40, 0.25, 7))
    for i in range(len(part)):
        torch.manual_seed(i)
        image, mask, label = part[i]
        torch.manual_seed(i)
        ref_image, ref_mask, ref_label = full[i]
        assert torch.equal(image, ref_image) and label == ref_label and mask.shape == (16, 16)
        if part.labelled[i]:
            assert torch.equal(mask, ref_mask)
        else:
            assert mask.dtype == torch.int64 and (mask == UNLABELLED).all()
    limited = PartDataset(tiny_dataset, "train", limit=10, label_fraction=0.5)
    assert len(limited.labelled) == 10 and limited.labelled.sum() == 5


def test_loader_label_fraction(tiny_dataset):
    cfg = LoaderConfig(crop_size=16, resize_size=16, batch_size=8, label_fraction=0.5, label_seed=1)
    loaders = build_loaders(str(tiny_dataset), cfg)
    assert loaders["train"].dataset.labelled.sum() == 20
    assert loaders["val"].dataset.labelled.all() and loaders["test"].dataset.labelled.all()
    n_unlabelled = sum(int((m == UNLABELLED).flatten(1).all(1).sum()) for _, m, _ in loaders["train"])
    assert n_unlabelled == 20  # 40 rows, batches of 8, none dropped
