"""Tests of partrobust.data (prepared format, synthetic generator, transforms, PartDataset)."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from partrobust.data import SPLITS, DatasetMetadata, PartDataset, PartInfo, PreparedDatasetError, SyntheticConfig, eval_transform, generate_synthetic, load_metadata, read_split, train_transform, validate_prepared, write_metadata, write_split
from partrobust.data.prepared import read_mask, write_image, write_mask

SMALL = SyntheticConfig(num_classes=5, image_size=64, n_train=40, n_val=10, n_test=10, seed=0)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic") / "ds"
    generate_synthetic(root, SMALL, progress=False)
    return root


def _toy_metadata() -> DatasetMetadata:
    return DatasetMetadata(
        name="toy",
        classes=["a", "b"],
        parts=[PartInfo(1, "a/x", "a"), PartInfo(2, "a/y", "a"), PartInfo(3, "b/z", "b")],
        info={"source": "test", "nested": {"k": [1, 2]}},
    )


def _write_toy(root: Path, masks: list[np.ndarray], images: list[np.ndarray], labels: list[int]) -> None:
    """A minimal prepared dataset with the same rows in every split."""
    meta = _toy_metadata()
    rows = []
    for i, (im, m, lab) in enumerate(zip(images, masks, labels)):
        write_image(root / f"images/all/{i}.png", im)
        write_mask(root / f"masks/all/{i}.png", m, meta.num_parts)
        rows.append({"image": f"images/all/{i}.png", "mask": f"masks/all/{i}.png", "label": lab})
    for split in SPLITS:
        write_split(root, split, rows)
    write_metadata(root, meta)


# --------------------------------------------------------------------------- prepared format


def test_metadata_round_trip(tmp_path: Path) -> None:
    meta = _toy_metadata()
    write_metadata(tmp_path, meta)
    loaded = load_metadata(tmp_path)
    assert loaded == meta
    assert loaded.num_classes == 2 and loaded.num_parts == 3
    assert loaded.part_to_class() == [-1, 0, 0, 1]
    raw = json.loads((tmp_path / "metadata.json").read_text())
    assert raw["format_version"] == 1 and raw["parts"][2] == {"id": 3, "name": "b/z", "class": "b"}
    assert not [p for p in tmp_path.iterdir() if "tmp" in p.name]  # no temporary files left


def test_split_round_trip(tmp_path: Path) -> None:
    rows = [{"image": "images/t/0.png", "mask": "masks/t/0.png", "label": 1, "extra": "x"}]
    write_split(tmp_path, "train", rows)
    df = read_split(tmp_path, "train")
    assert list(df.columns)[:3] == ["image", "mask", "label"]
    assert df.loc[0, "image"] == "images/t/0.png" and int(df.loc[0, "label"]) == 1


def test_mask_16bit_round_trip(tmp_path: Path) -> None:
    mask = np.arange(20 * 30).reshape(20, 30) % 301
    write_mask(tmp_path / "m.png", mask, num_parts=300)
    back = read_mask(tmp_path / "m.png")
    assert back.dtype == np.uint16 and np.array_equal(back, mask)
    write_mask(tmp_path / "m8.png", mask % 200, num_parts=200)
    assert read_mask(tmp_path / "m8.png").dtype == np.uint8


def test_validate_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(PreparedDatasetError, match="nope"):
        validate_prepared(tmp_path / "nope")


def test_validate_missing_metadata_file(tmp_path: Path) -> None:
    with pytest.raises(PreparedDatasetError, match="metadata.json"):
        validate_prepared(tmp_path)


def test_validate_missing_metadata_key(tmp_path: Path, small_root: Path) -> None:
    raw = json.loads((small_root / "metadata.json").read_text())
    del raw["parts"]
    (tmp_path / "metadata.json").write_text(json.dumps(raw))
    with pytest.raises(PreparedDatasetError, match=r"metadata\.json.*'parts'"):
        validate_prepared(tmp_path)


def test_validate_bad_part_ids_and_classes(tmp_path: Path) -> None:
    raw = _toy_metadata().to_json()
    raw["parts"][1]["id"] = 5
    (tmp_path / "metadata.json").write_text(json.dumps(raw))
    with pytest.raises(PreparedDatasetError, match="contiguous"):
        load_metadata(tmp_path)
    raw = _toy_metadata().to_json()
    raw["parts"][2]["class"] = "c"
    (tmp_path / "metadata.json").write_text(json.dumps(raw))
    with pytest.raises(PreparedDatasetError, match="unknown class 'c'"):
        load_metadata(tmp_path)


def test_validate_missing_split_file(tmp_path: Path) -> None:
    _write_toy(tmp_path, [np.zeros((8, 8), np.uint8)], [np.zeros((8, 8, 3), np.uint8)], [0])
    (tmp_path / "val.csv").unlink()
    with pytest.raises(PreparedDatasetError, match="val.csv"):
        validate_prepared(tmp_path)
    validate_prepared(tmp_path, splits=("train",))  # other splits are fine


def test_validate_bad_columns_and_labels(tmp_path: Path) -> None:
    _write_toy(tmp_path, [np.zeros((8, 8), np.uint8)], [np.zeros((8, 8, 3), np.uint8)], [0])
    (tmp_path / "test.csv").write_text("image,label\nimages/all/0.png,0\n")
    with pytest.raises(PreparedDatasetError, match=r"test\.csv.*'mask'"):
        validate_prepared(tmp_path)
    write_split(tmp_path, "test", [{"image": "images/all/0.png", "mask": "masks/all/0.png", "label": 2}])
    with pytest.raises(PreparedDatasetError, match=r"test\.csv.*out of range"):
        validate_prepared(tmp_path)


def test_validate_missing_image(tmp_path: Path) -> None:
    _write_toy(tmp_path, [np.zeros((8, 8), np.uint8)], [np.zeros((8, 8, 3), np.uint8)], [0])
    (tmp_path / "images/all/0.png").unlink()
    with pytest.raises(PreparedDatasetError, match=r"images/all/0\.png"):
        validate_prepared(tmp_path)


# --------------------------------------------------------------------------- synthetic


def test_synthetic_deterministic(tmp_path: Path, small_root: Path) -> None:
    generate_synthetic(tmp_path / "same", SMALL, progress=False)
    assert _files(tmp_path / "same") == _files(small_root)
    generate_synthetic(tmp_path / "other", replace(SMALL, seed=1), progress=False)
    other = _files(tmp_path / "other")
    ref = _files(small_root)
    assert other.keys() == ref.keys()
    assert other["images/train/000000.png"] != ref["images/train/000000.png"]


def test_synthetic_workers_identical(tmp_path: Path, small_root: Path) -> None:
    generate_synthetic(tmp_path / "par", SMALL, workers=2, progress=False)
    assert _files(tmp_path / "par") == _files(small_root)


def test_synthetic_sizes_and_balance(small_root: Path) -> None:
    meta = validate_prepared(small_root)
    assert meta.num_classes == SMALL.num_classes
    assert meta.info["config"]["n_train"] == SMALL.n_train
    for split, n in SMALL.split_sizes().items():
        df = read_split(small_root, split)
        assert len(df) == n
        counts = np.bincount(df["label"], minlength=SMALL.num_classes)
        assert counts.max() - counts.min() <= 1


def test_synthetic_parts_class_specific(small_root: Path) -> None:
    meta = load_metadata(small_root)
    part_class = np.array(meta.part_to_class())
    assert len({p.class_name for p in meta.parts}) == meta.num_classes  # every class owns parts
    for split in SPLITS:
        df = read_split(small_root, split)
        for rel, label in zip(df["mask"], df["label"]):
            mask = read_mask(small_root / rel)
            fg = mask[mask > 0]
            assert fg.size > 0.02 * mask.size, rel
            assert np.all(part_class[fg] == label), rel
            counts = np.bincount(fg, minlength=meta.num_parts + 1)
            assert (counts >= 4).sum() >= 2, rel


def test_synthetic_idempotent(small_root: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in small_root.rglob("*")}
    meta = generate_synthetic(small_root, SMALL, progress=False)
    assert meta == load_metadata(small_root)
    assert {p: p.stat().st_mtime_ns for p in small_root.rglob("*")} == before


def test_synthetic_different_config_raises(small_root: Path) -> None:
    with pytest.raises(PreparedDatasetError, match="delete the folder"):
        generate_synthetic(small_root, replace(SMALL, n_train=42), progress=False)


def test_synthetic_refuses_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(PreparedDatasetError, match="notes.txt"):
        generate_synthetic(tmp_path, SMALL, progress=False)


def test_synthetic_interrupted_generation_is_redone(tmp_path: Path, small_root: Path) -> None:
    cfg = SMALL
    root = tmp_path / "ds"
    generate_synthetic(root, cfg, progress=False)
    (root / "metadata.json").unlink()  # as if interrupted before the last write
    (root / "images/val/000003.png").write_bytes(b"half")
    generate_synthetic(root, cfg, progress=False)
    assert _files(root) == _files(small_root)


def _stripe_orientation(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Unit vector (cos 2phi, sin 2phi) of the dominant gradient direction inside the parts."""
    grey = image.astype(np.float64).mean(axis=2)
    gy, gx = np.gradient(grey)
    interior = mask > 0
    for axis in (0, 1):
        for shift in (-1, 1):
            interior &= np.roll(mask, shift, axis=axis) == mask
    jxx, jyy, jxy = (gx * gx)[interior].sum(), (gy * gy)[interior].sum(), (gx * gy)[interior].sum()
    vec = np.array([jxx - jyy, 2 * jxy])
    return vec / (np.linalg.norm(vec) + 1e-12)


def _class_orientation_consistency(root: Path, num_classes: int) -> float:
    """Mean over classes of the resultant length of per-image stripe orientations."""
    df = read_split(root, "train")
    vecs: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
    for rel_im, rel_m, label in zip(df["image"], df["mask"], df["label"]):
        from partrobust.data.prepared import read_image

        vecs[label].append(_stripe_orientation(read_image(root / rel_im), read_mask(root / rel_m)))
    return float(np.mean([np.linalg.norm(np.mean(v, axis=0)) for v in vecs]))


def test_texture_cue(tmp_path: Path) -> None:
    cfg = replace(SMALL, n_train=60, n_val=1, n_test=1)
    generate_synthetic(tmp_path / "p0", cfg, progress=False)
    generate_synthetic(tmp_path / "p1", replace(cfg, texture_cue_prob=1.0), progress=False)
    df0, df1 = read_split(tmp_path / "p0", "train"), read_split(tmp_path / "p1", "train")
    assert (df1["texture"] == df1["label"]).all()
    assert (df0["texture"] == df0["label"]).mean() < 0.5
    assert (df0["mask"] == df1["mask"]).all()
    # layouts are the same draws; only the textures change
    for rel in df0["mask"][:5]:
        assert np.array_equal(read_mask(tmp_path / "p0" / rel), read_mask(tmp_path / "p1" / rel))
    # image statistic: stripe orientation is consistent within a class only with the cue
    c1 = _class_orientation_consistency(tmp_path / "p1", cfg.num_classes)
    c0 = _class_orientation_consistency(tmp_path / "p0", cfg.num_classes)
    assert c1 > 0.8 and c0 < 0.6, (c0, c1)


# --------------------------------------------------------------------------- dataset + transforms


def test_dataset_no_transform(small_root: Path) -> None:
    ds = PartDataset(small_root, "train", limit=7)
    assert len(ds) == 7 and ds.labels == [int(x) for x in read_split(small_root, "train")["label"][:7]]
    image, mask, label = ds[0]
    assert image.dtype == torch.float32 and image.shape == (3, 64, 64)
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert mask.dtype == torch.int64 and mask.shape == (64, 64)
    assert isinstance(label, int) and label == ds.labels[0]
    assert type(image) is torch.Tensor and type(mask) is torch.Tensor
    ds.preload()
    again = ds[0]
    assert torch.equal(again[0], image) and torch.equal(again[1], mask)


@pytest.mark.parametrize("kind", ["train", "eval"])
def test_dataset_transforms(small_root: Path, kind: str) -> None:
    torch.manual_seed(0)
    t = train_transform(48) if kind == "train" else eval_transform(56, 48)
    raw = PartDataset(small_root, "val")
    ds = PartDataset(small_root, "val", transform=t)
    for i in range(len(ds)):
        image, mask, label = ds[i]
        assert image.shape == (3, 48, 48) and image.dtype == torch.float32
        assert 0.0 <= image.min() and image.max() <= 1.0
        assert mask.shape == (48, 48) and mask.dtype == torch.int64
        assert set(mask.unique().tolist()) <= set(raw[i][1].unique().tolist())
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch[0].shape == (4, 3, 48, 48) and batch[1].shape == (4, 48, 48) and batch[2].dtype == torch.int64


def test_joint_transform_alignment(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    masks, images = [], []
    for _ in range(2):
        mask = np.kron(rng.integers(0, 4, (8, 10)), np.ones((8, 8), np.int64)).astype(np.uint8)  # 64x80
        image = np.stack([mask * 60, 255 - mask * 60, np.zeros_like(mask)], axis=2).astype(np.uint8)
        masks.append(mask)
        images.append(image)
    _write_toy(tmp_path, masks, images, [0, 1])
    torch.manual_seed(0)
    for t in (train_transform(32, scale=(0.2, 1.0)), eval_transform(40, 32)):
        ds = PartDataset(tmp_path, "train", transform=t)
        for _ in range(10):
            for i in range(len(ds)):
                image, mask, _ = ds[i]
                decoded = torch.round(image[0] * 255 / 60).long()
                # away from block edges (where bilinear image resizing blends) colour == mask
                interior = torch.ones_like(mask, dtype=torch.bool)
                for dim in (0, 1):
                    for shift in (-1, 1):
                        interior &= torch.roll(mask, shift, dim) == mask
                assert interior.float().mean() > 0.3
                assert (decoded == mask)[interior].float().mean() > 0.99


def test_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(PreparedDatasetError, match="metadata.json"):
        PartDataset(tmp_path, "train")
    mask = np.zeros((8, 8), np.uint8)
    _write_toy(tmp_path, [mask, mask], [np.zeros((8, 8, 3), np.uint8)] * 2, [0, 1])
    (tmp_path / "images/all/1.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    ds = PartDataset(tmp_path, "train")
    ds[0]
    with pytest.raises(PreparedDatasetError, match=r"images/all/1\.png"):
        ds[1]
    bad = mask.copy()
    bad[0, 0] = 7  # K = 3
    write_mask(tmp_path / "masks/all/0.png", bad, num_parts=255)
    with pytest.raises(PreparedDatasetError, match=r"masks/all/0\.png.*K=3"):
        PartDataset(tmp_path, "train", cache=False)[0]


# --------------------------------------------------------------------------- visualize


def test_visualize(small_root: Path) -> None:
    from matplotlib.figure import Figure

    from partrobust.report.masks import mask_to_rgb, plot_image_mask_grid, plot_samples

    mask = np.array([[0, 1], [2, 16]])
    rgb = mask_to_rgb(torch.as_tensor(mask), 16)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8 and (rgb[0, 0] == 0).all()
    assert len({tuple(c) for c in rgb.reshape(-1, 3)}) == 4
    with pytest.raises(ValueError):
        mask_to_rgb(mask, 3)
    ds = PartDataset(small_root, "test")
    fig = plot_image_mask_grid(ds, n=5, seed=0, ncols=3)
    assert isinstance(fig, Figure)
    items = [ds[i] for i in range(3)]
    images = torch.stack([x[0] for x in items])
    masks = torch.stack([x[1] for x in items])
    fig = plot_samples(images, [("true", masks), ("pred", masks)], [x[2] for x in items],
                       ds.metadata.classes, ds.metadata.num_parts, preds=[0, 1, 2])
    assert len(fig.axes) == 9
    import matplotlib.pyplot as plt

    plt.close("all")
