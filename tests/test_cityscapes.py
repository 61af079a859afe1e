"""Tests of partrobust.data.cityscapes on tiny Cityscapes-Panoptic-Parts releases written here.

The fixture follows dataset-formats.md 4.2: PNG photos under leftImg8bit/<split>/<city>/ and
int32 uid TIFFs (PIL mode "I") under gtFinePanopticParts/<split>/<city>/, with hand-placed
persons, riders, cars, trucks and buses with parts, an instance under min_area, a group region
(uid 24, iid -1), a bicycle (no parts) and a car without part annotations.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from partrobust.data import PartDataset, load_metadata, read_mask
from partrobust.data.sources import cityscapes as cs
from partrobust.data.sources.cityscapes import convert_cityscapes, decode_uids, encode_uids
from partrobust.data.convert import RawDatasetError
from partrobust.data.prepared import PreparedDatasetError, read_image

pytestmark = pytest.mark.filterwarnings("ignore:.*are empty:UserWarning")  # tiny fixtures

H, W = 64, 128

# Dense part ids (after conversion) of the hand-painted objects, row by row.
PERSON_PARTS = np.zeros((16, 10), dtype=np.int64)  # pids; dense = pid for humans
PERSON_PARTS[0:4] = 2  # head
PERSON_PARTS[4:10] = 3  # arms at the sides
PERSON_PARTS[4:10, 2:8] = 1  # torso
PERSON_PARTS[10:16] = 4  # legs
PERSON_PARTS[15, 5] = 0  # one void-part pixel (uid ...00)

CAR_PARTS = np.full((10, 20), 5, dtype=np.int64)  # pids; dense = pid + 4 for vehicles
CAR_PARTS[0:3] = 1  # windows
CAR_PARTS[4, 0] = CAR_PARTS[4, 19] = 3  # lights
CAR_PARTS[6, 8:12] = 4  # license plate
CAR_PARTS[8:10, 2:6] = CAR_PARTS[8:10, 14:18] = 2  # wheels


def _paint(uids: np.ndarray, top: int, left: int, sid: int, iid: int, pids: np.ndarray) -> None:
    """Writes part uids of one instance, clipped at the image border."""
    h, w = pids.shape
    region = encode_uids(np.full_like(pids, sid), np.full_like(pids, iid), pids)
    hh, ww = min(h, uids.shape[0] - top), min(w, uids.shape[1] - left)
    uids[top : top + hh, left : left + ww] = region[:hh, :ww]


def person(uids, top, left, iid, sid=24):
    _paint(uids, top, left, sid, iid, PERSON_PARTS)


def car(uids, top, left, iid, sid=26):
    _paint(uids, top, left, sid, iid, CAR_PARTS)


def human_dense() -> np.ndarray:
    return PERSON_PARTS.copy()


def vehicle_dense() -> np.ndarray:
    return np.where(CAR_PARTS > 0, CAR_PARTS + 4, 0)


def scene(index: int) -> np.ndarray:
    """uid map of fixture image `index` (0-2 train/aachen, 3 val/frankfurt)."""
    uids = np.full((H, W), 23, dtype=np.int32)  # sky
    uids[32:] = 7  # road
    uids[0, 0] = 0  # unlabeled
    person(uids, 4, 4, 0)
    person(uids, 4, 20, 1)
    person(uids, 4, 36, 0, sid=25)  # rider
    car(uids, 30, 4, 0)
    if index == 2:
        car(uids, 0, 60, 1)  # touches the top border: zero-padded crop
    else:
        car(uids, 30, 30, 1)
    car(uids, 30, 60, 0, sid=28 if index < 2 else 27)  # bus / truck
    uids[56:59, 90:93] = encode_uids(24, 2, 1)  # 9-pixel person, under min_area
    uids[4:20, 90:111] = 24  # group region (iid -1), 336 px
    uids[44:55, 4:21] = 33000  # bicycle, no parts
    if index == 3:
        uids[44:56, 100:120] = 26002  # car without part annotations
    return uids


def photo(index: int) -> np.ndarray:
    return np.random.default_rng(index).integers(1, 256, size=(H, W, 3), dtype=np.uint8)  # no zeros


FILES = [("train", "aachen", "aachen_000000_000019"), ("train", "aachen", "aachen_000001_000019"),
         ("train", "aachen", "aachen_000002_000019"), ("val", "frankfurt", "frankfurt_000000_000294")]


def write_pair(root: Path, split: str, city: str, base: str, image: np.ndarray, uids: np.ndarray) -> tuple[Path, Path]:
    p = root / "leftImg8bit" / split / city / f"{base}_leftImg8bit.png"
    t = root / "gtFinePanopticParts" / split / city / f"{base}_gtFinePanopticParts.tif"
    p.parent.mkdir(parents=True, exist_ok=True)
    t.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(p)
    Image.fromarray(uids.astype(np.int32)).save(t)
    return p, t


def write_release(root: Path) -> Path:
    for i, (split, city, base) in enumerate(FILES):
        write_pair(root, split, city, base, photo(i), scene(i))
    return root


def label_path(root: Path, i: int) -> Path:
    split, city, base = FILES[i]
    return root / "gtFinePanopticParts" / split / city / f"{base}_gtFinePanopticParts.tif"


def photo_path(root: Path, i: int) -> Path:
    split, city, base = FILES[i]
    return root / "leftImg8bit" / split / city / f"{base}_leftImg8bit.png"


def rows_of(out: Path) -> pd.DataFrame:
    """All rows of the three split CSVs (read directly: tiny fixtures leave val/test empty)."""
    df = pd.concat([pd.read_csv(out / f"{s}.csv").assign(split=s) for s in ("train", "val", "test")])
    return df.set_index(df["image"].str.slice(len("images/"), -len(".png")))


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return write_release(tmp_path_factory.mktemp("cityscapes") / "raw")


@pytest.fixture(scope="module")
def converted(release, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "cs"
    start = time.perf_counter()
    convert_cityscapes(release, out, pad=0.0, min_area=100, progress=False)
    print(f"converted {len(FILES)} images in {time.perf_counter() - start:.3f} s")
    return out


@pytest.fixture
def fresh(release, tmp_path) -> Path:
    """A private copy of the release that a test may break."""
    return Path(shutil.copytree(release, tmp_path / "raw"))


# --------------------------------------------------------------------------- decoder


def test_decode_uids_hand_encoded():
    uids = np.array([[7, 26, 26000, 2600003], [2401002, 2401000, 24010, 0]], dtype=np.int32)
    sids, iids, pids = decode_uids(uids)
    assert sids.tolist() == [[7, 26, 26, 26], [24, 24, 24, 0]]
    assert iids.tolist() == [[-1, -1, 0, 0], [10, 10, 10, -1]]
    assert pids.tolist() == [[-1, -1, -1, 3], [2, 0, -1, -1]]
    assert sids.dtype == iids.dtype == pids.dtype == np.int32
    # 4-digit (1-digit sid with instance), 6-digit (1-digit sid with parts), 7-digit maximum
    sids, iids, pids = decode_uids(np.array([5003, 512345, 9999999, 99]))
    assert sids.tolist() == [5, 5, 99, 99] and iids.tolist() == [3, 123, 999, -1]
    assert pids.tolist() == [-1, 45, 99, -1]
    encoded = encode_uids(np.array([24, 26, 7]), np.array([1, 0, -1]), np.array([2, -1, -1]))
    assert encoded.tolist() == [2400102, 26000, 7]
    u = np.array([0, 7, 24, 24000, 24999, 2400000, 2812345, 3312399])
    assert (encode_uids(*decode_uids(u)) == u).all()


@pytest.mark.parametrize("bad", [-1, 100, 999, 10_000_000])
def test_decode_uids_rejects_invalid(bad):
    with pytest.raises(ValueError, match=str(bad)):
        decode_uids(np.array([[7, bad]], dtype=np.int64))


def test_part_map():
    sids, _, pids = decode_uids(np.array([2400101, 2500104, 2400105, 2400100, 26000, 2600005, 2800003, 24, 7, 3300001]))
    dense, status = cs.part_map(sids, pids)
    assert dense.tolist() == [1, 4, 0, 0, 0, 9, 7, 0, 0, 0]
    assert status.tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0, 2]


# --------------------------------------------------------------------------- end to end


def test_metadata_and_counts(converted, release):
    meta = load_metadata(converted)
    assert meta.classes == ["human", "vehicle"]
    assert [p.name for p in meta.parts] == [
        "human/torso", "human/head", "human/arms", "human/legs", "vehicle/windows", "vehicle/wheels",
        "vehicle/lights", "vehicle/license plate", "vehicle/chassis"]
    assert meta.part_to_class() == [-1, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    assert meta.info["seed"] == 0 and meta.info["options"]["min_area"] == 100
    assert meta.info["options"]["instances"] == "all" and meta.info["label_dir"] == "gtFinePanopticParts"
    c = meta.info["counts"]
    assert c["source_images"] == 4 and c["samples"] == {"human": 12, "vehicle": 13}
    assert c["dropped_small"] == 4 and c["kept_without_parts"] == 1 and c["dropped_occluded"] == 0
    assert c["human_pid5_pixels"] == 0 and c["unknown_part_pixels"] == 0
    assert c["splits"] == {"train": 21, "val": 2, "test": 2}


def test_rows_labels_and_splits(converted):
    df = rows_of(converted)
    assert len(df) == 25 and df.index.is_unique
    # per class floor(10%) to val and test: human 12 -> 10/1/1, vehicle 13 -> 11/1/1
    assert df.groupby(["label", "split"]).size().to_dict() == {
        (0, "test"): 1, (0, "train"): 10, (0, "val"): 1, (1, "test"): 1, (1, "train"): 11, (1, "val"): 1}
    base = "aachen_000000_000019"
    expected = {f"{base}_person_000": (24, 0), f"{base}_person_001": (24, 0), f"{base}_rider_000": (25, 0),
                f"{base}_car_000": (26, 1), f"{base}_car_001": (26, 1), f"{base}_bus_000": (28, 1)}
    sub = df[df["source"] == f"gtFinePanopticParts/train/aachen/{base}_gtFinePanopticParts.tif"]
    assert {s: (int(r.sid), int(r.label)) for s, r in sub.iterrows()} == expected
    assert set(df.loc[df["city"] == "frankfurt", "cs_split"]) == {"val"}
    assert "frankfurt_000000_000294_car_002" in df.index  # the car without parts is kept ...
    assert df.loc["frankfurt_000000_000294_car_002", "part_pixels"] == 0
    assert not df.index.str.contains("group").any()  # ... group regions and the tiny person are not
    assert not df.index.str.endswith("person_002").any()
    assert (df["iid"] == 0).sum() == 4 * 4  # iid 0 is a real instance (decision 12)
    assert df.loc[f"{base}_person_000", "area"] == 160 and df.loc[f"{base}_car_000", "area"] == 200


def test_crop_boxes_and_known_pixels(converted):
    df = rows_of(converted)
    base = "aachen_000000_000019"
    # person 16x10 at (4, 4): square side 16, centred horizontally -> left 4 - 3
    r = df.loc[f"{base}_person_000"]
    assert (r.box_top, r.box_left, r.box_size) == (4, 1, 16)
    mask = read_mask(converted / r["mask"])
    expected = np.zeros((16, 16), dtype=np.int64)
    expected[:, 3:13] = human_dense()
    assert (mask == expected).all()
    assert mask[0, 5] == 2 and mask[6, 7] == 1 and mask[6, 3] == 3 and mask[12, 5] == 4 and mask[15, 8] == 0
    assert (read_image(converted / r["image"]) == photo(0)[4:20, 1:17]).all()
    # car 10x20 at (30, 4): side 20, centred vertically -> top 30 - 5
    r = df.loc[f"{base}_car_000"]
    assert (r.box_top, r.box_left, r.box_size) == (25, 4, 20)
    mask = read_mask(converted / r["mask"])
    expected = np.zeros((20, 20), dtype=np.int64)
    expected[5:15] = vehicle_dense()
    assert (mask == expected).all()
    assert mask[5, 0] == 5 and mask[13, 3] == 6 and mask[9, 0] == 7 and mask[11, 9] == 8 and mask[10, 10] == 9
    # the rider (sid 25) is a human: same part ids as a person
    r = df.loc[f"{base}_rider_000"]
    mask = read_mask(converted / r["mask"])
    assert r.box_left == 33 and (mask[:, 3:13] == human_dense()).all()
    # the bus is a vehicle: pids + 4
    assert (read_mask(converted / df.loc[f"{base}_bus_000", "mask"])[5:15] == vehicle_dense()).all()


def test_border_crop_is_zero_padded(converted):
    df = rows_of(converted)
    r = df.loc["aachen_000002_000019_car_001"]  # car at (0, 60): box starts 5 rows above the photo
    assert (r.box_top, r.box_left, r.box_size) == (-5, 60, 20)
    image = read_image(converted / r["image"])
    mask = read_mask(converted / r["mask"])
    assert image.shape == (20, 20, 3) and mask.shape == (20, 20)
    assert (image[:5] == 0).all() and (mask[:5] == 0).all()
    assert (image[5:] == photo(2)[0:15, 60:80]).all()
    assert (mask[5:15] == vehicle_dense()).all()


def test_loadable_by_part_dataset(converted):
    for split in ("train", "val", "test"):
        ds = PartDataset(converted, split)
        image, mask, label = ds[0]
        assert image.shape[0] == 3 and image.shape[1:] == mask.shape and label in (0, 1)
        assert int(mask.max()) <= 9 and ds.num_parts == 9 and ds.class_names == ["human", "vehicle"]


def occlusion_release(root: Path) -> Path:
    """One train image: a car (20x30 chassis) with two persons painted in front of it."""
    uids = np.full((H, W), 7, dtype=np.int32)
    _paint(uids, 10, 10, 26, 0, np.full((20, 30), 5))
    person(uids, 12, 12, 0)
    person(uids, 12, 24, 1)
    write_pair(root, "train", "ulm", "ulm_000000_000019", photo(7), uids)
    return root


def test_occlusion_filter_and_parts_of(tmp_path):
    raw = occlusion_release(tmp_path / "raw")
    kw = dict(pad=0.0, min_area=100, raw_splits=("train",), progress=False)
    convert_cityscapes(raw, tmp_path / "all", **kw)
    df = rows_of(tmp_path / "all")
    assert sorted(df.index) == [f"ulm_000000_000019_{n}" for n in ("car_000", "person_000", "person_001")]
    r = df.loc["ulm_000000_000019_car_000"]
    assert (r.box_top, r.box_left, r.box_size, r.area) == (5, 10, 30, 280)
    mask = read_mask(tmp_path / "all" / r["mask"])
    assert mask[5, 0] == 9 and mask[9, 6] == 2  # own chassis; the head of person 0 in front
    # only the target instance's parts
    convert_cityscapes(raw, tmp_path / "inst", parts_of="instance", **kw)
    mask = read_mask(tmp_path / "inst" / r["mask"])
    assert mask[5, 0] == 9 and mask[9, 6] == 0 and set(np.unique(mask).tolist()) == {0, 9}
    # the reference's occlusion filter: 320 person pixels > 280 / 2 car pixels -> car dropped
    meta = convert_cityscapes(raw, tmp_path / "occ", occlusion_filter=True, **kw)
    assert sorted(rows_of(tmp_path / "occ").index) == ["ulm_000000_000019_person_000", "ulm_000000_000019_person_001"]
    assert meta.info["counts"]["dropped_occluded"] == 1


def test_authors_instance_enumeration(release, tmp_path):
    meta = convert_cityscapes(release, tmp_path / "a", pad=0.0, min_area=100, instances="authors", progress=False)
    df = rows_of(tmp_path / "a")
    # iid 0 dropped, group regions (iid -1) kept as one instance each
    assert (df["iid"] != 0).all()
    assert sorted(df.index[df["city"] == "aachen"].str.slice(len("aachen_000000_000019_")).unique()) == [
        "car_001", "person_001", "person_group"]
    assert meta.info["counts"]["samples"] == {"human": 8, "vehicle": 5}
    r = df.loc["aachen_000000_000019_person_group"]
    assert (r.box_top, r.box_left, r.box_size, r.area, r.part_pixels) == (2, 90, 21, 336, 0)


def test_default_min_area_and_random_pad(tmp_path):
    uids = np.full((H, W), 23, dtype=np.int32)
    _paint(uids, 10, 10, 24, 0, np.tile(PERSON_PARTS, (3, 3))[:40, :30])  # 1200 px person
    _paint(uids, 10, 60, 26, 0, np.full((20, 40), 5))  # 800 px car, under 1000
    write_pair(tmp_path / "raw", "train", "ulm", "ulm_000000_000019", photo(5), uids)
    with pytest.warns(UserWarning, match=r"\['val', 'test'\] are empty"):
        meta = convert_cityscapes(tmp_path / "raw", tmp_path / "out", raw_splits=("train",), progress=False)
    df = rows_of(tmp_path / "out")
    assert list(df.index) == ["ulm_000000_000019_person_000"] and df["split"].tolist() == ["train"]
    r = df.iloc[0]
    assert r.label == 0 and 40 <= r.box_size <= 44  # 0-10 % of the side 40
    assert r.box_top <= 10 and r.box_top + r.box_size >= 50 and r.box_left <= 5 and r.box_left + r.box_size >= 45
    assert meta.info["options"]["pad"] == 0.1 and meta.info["counts"]["dropped_small"] == 1


def test_random_pad_deterministic_and_workers(release, tmp_path):
    kw = dict(pad=0.5, min_area=100, progress=False)
    convert_cityscapes(release, tmp_path / "w1", workers=1, **kw)
    convert_cityscapes(release, tmp_path / "w2", workers=2, **kw)
    assert tree(tmp_path / "w1") == tree(tmp_path / "w2")
    df = rows_of(tmp_path / "w1")
    tight = {"person": (16, 10), "rider": (16, 10), "car": (10, 20), "bus": (10, 20), "truck": (10, 20)}
    sizes = set()
    for stem, r in df[df["part_pixels"] > 0].iterrows():
        h, w = tight[r.cs_class]
        s = max(h, w)
        assert s <= r.box_size <= s + int(0.5 * s)
        sizes.add(int(r.box_size))
        mask = read_mask(tmp_path / "w1" / r["mask"])
        assert mask.shape == (r.box_size, r.box_size)
    assert len(sizes) > 3  # padding is random
    convert_cityscapes(release, tmp_path / "s1", seed=1, **kw)
    other = rows_of(tmp_path / "s1")
    assert (other.loc[df.index, "box_size"] != df["box_size"]).any()


def test_rerun_is_idempotent_and_resumes(release, tmp_path, monkeypatch):
    out = tmp_path / "out"
    kw = dict(pad=0.1, min_area=100, progress=False)
    convert_cityscapes(release, out, **kw)
    before = tree(out)
    rewritten = {"metadata.json", "train.csv", "val.csv", "test.csv"}  # crops and manifests are not
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name not in rewritten}

    def no_decoding(*args):
        raise AssertionError("a finished image was decoded again")

    with monkeypatch.context() as m:
        m.setattr(cs, "_read_pair", no_decoding)
        convert_cityscapes(release, out, **kw)
    assert tree(out) == before
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    # an interrupted run: one crop and its image's manifest missing -> only they are redone
    stem = "aachen_000001_000019_car_001"
    (out / "images" / f"{stem}.png").unlink()
    (out / cs.INDEX_DIR / "images" / "aachen_000001_000019.json").unlink()
    convert_cityscapes(release, out, **kw)
    assert tree(out) == before
    kept = out / "masks" / "aachen_000001_000019_person_000.png"
    assert kept.stat().st_mtime_ns == mtimes[kept]
    # a crop deleted after its image finished (manifest present) is redone too
    (out / "masks" / f"{stem}.png").unlink()
    convert_cityscapes(release, out, **kw)
    assert tree(out) == before
    # different crop options into the same folder: refused, naming the options file
    with pytest.raises(PreparedDatasetError, match="options.json"):
        convert_cityscapes(release, out, pad=0.2, min_area=100, progress=False)


# --------------------------------------------------------------------------- bad input


def test_missing_folders(fresh, tmp_path):
    with pytest.raises(RawDatasetError, match="nowhere"):
        convert_cityscapes(tmp_path / "nowhere", tmp_path / "out", progress=False)
    shutil.rmtree(fresh / "leftImg8bit" / "val")
    with pytest.raises(RawDatasetError, match=r"leftImg8bit.val"):
        convert_cityscapes(fresh, tmp_path / "out", progress=False)
    shutil.rmtree(fresh / "gtFinePanopticParts")
    with pytest.raises(RawDatasetError, match="gtFinePanopticParts"):
        convert_cityscapes(fresh, tmp_path / "out", progress=False)


def test_wrapped_label_folder(fresh, tmp_path):
    (fresh / "gtFinePanopticParts_trainval").mkdir()
    shutil.move(fresh / "gtFinePanopticParts", fresh / "gtFinePanopticParts_trainval" / "gtFinePanopticParts")
    meta = convert_cityscapes(fresh, tmp_path / "out", min_area=100, progress=False)
    assert meta.info["label_dir"] == "gtFinePanopticParts_trainval/gtFinePanopticParts"


def test_label_without_photo(fresh, tmp_path):
    photo_path(fresh, 1).unlink()
    with pytest.raises(RawDatasetError, match=label_path(fresh, 1).name) as e:
        convert_cityscapes(fresh, tmp_path / "out", progress=False)
    assert "without its photo" in str(e.value)


def test_photo_without_label(fresh, tmp_path):
    label_path(fresh, 3).unlink()
    with pytest.raises(RawDatasetError, match=photo_path(fresh, 3).name) as e:
        convert_cityscapes(fresh, tmp_path / "out", progress=False)
    assert "without its label" in str(e.value)
    meta = convert_cityscapes(fresh, tmp_path / "out", min_area=100, unlabeled_photos="skip", progress=False)
    assert meta.info["counts"]["unlabeled_photos_skipped"] == 1 and meta.info["counts"]["source_images"] == 3


@pytest.mark.parametrize("which", ["photo", "label"])
def test_unreadable_files(fresh, tmp_path, which):
    bad = photo_path(fresh, 2) if which == "photo" else label_path(fresh, 2)
    bad.write_bytes(b"not an image at all")
    with pytest.raises(RawDatasetError, match=bad.name):
        convert_cityscapes(fresh, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()  # found before any work


def test_truncated_photo_fails_in_job_naming_it(fresh, tmp_path):
    bad = photo_path(fresh, 2)
    bad.write_bytes(bad.read_bytes()[:200])  # header intact, pixel data cut
    with pytest.raises(RawDatasetError, match=bad.name):
        convert_cityscapes(fresh, tmp_path / "out", min_area=100, progress=False)


def test_label_wrong_mode_or_size(fresh, tmp_path):
    Image.fromarray(np.zeros((H, W), dtype=np.uint8)).save(label_path(fresh, 0))
    with pytest.raises(RawDatasetError, match=f"{label_path(fresh, 0).name}.*mode 'L'"):
        convert_cityscapes(fresh, tmp_path / "out", progress=False)
    Image.fromarray(scene(0)[:, :100]).save(label_path(fresh, 0))
    with pytest.raises(RawDatasetError, match=f"{label_path(fresh, 0).name}.*differs"):
        convert_cityscapes(fresh, tmp_path / "out", progress=False)


@pytest.mark.parametrize("uid,what", [(2600107, "part 7 of label id 26"), (3300101, "part 1 of label id 33"),
                                      (500, "invalid uid 500"), (4000000, "label id 40")])
def test_bad_uids_name_the_file(fresh, tmp_path, uid, what):
    uids = scene(1)
    uids[60, 120] = uid
    Image.fromarray(uids).save(label_path(fresh, 1))
    with pytest.raises(RawDatasetError, match=label_path(fresh, 1).name) as e:
        convert_cityscapes(fresh, tmp_path / "out", min_area=100, progress=False)
    assert what in str(e.value)


def test_unknown_parts_as_background_and_pid5_artefact(fresh, tmp_path):
    uids = scene(1)
    uids[60, 120] = 2600107  # unknown part
    uids[4, 4] = 2400005  # person 0's head pixel with the known pid-5 artefact
    Image.fromarray(uids).save(label_path(fresh, 1))
    meta = convert_cityscapes(fresh, tmp_path / "out", pad=0.0, min_area=100, unknown_parts="background",
                              progress=False)
    assert meta.info["counts"]["unknown_part_pixels"] == 1 and meta.info["counts"]["human_pid5_pixels"] == 1
    df = rows_of(tmp_path / "out")
    mask = read_mask(tmp_path / "out" / df.loc["aachen_000001_000019_person_000", "mask"])
    assert mask[0, 3] == 0 and mask[0, 4] == 2


class _FixedShifts:
    """Stands in for the per-stem generator: the two U(0, 2 pad) draws of the reference's shift."""

    def __init__(self, shift_x: float, shift_y: float) -> None:
        self.shifts = (shift_x, shift_y)

    def uniform(self, low, high, size):
        assert (low, size) == (0, 2) and all(low <= s <= high for s in self.shifts)
        return np.array(self.shifts)


def test_reference_crop_box_matches_the_reference_by_hand():
    from partrobust.data.sources.cityscapes import reference_crop_box

    # photo 100 x 200: zero pre-pad P = int(0.1 * 200) = 20. Tight box rows 30..59, cols 50..89
    # -> padded (50, 70, 79, 109); w = 39, h = 29, s = 39; offsets x 0, y int(10 / 2) = 5;
    # S = 39 + 2 * int(0.2 * 39) = 53; shifts int(0.1 * 53) = 5 (x), int(0.3 * 53) = 15 (y);
    # left = 70 - 0 - 5 = 65, top = 50 - 5 - 15 = 30 -> photo (10, 45), 53 x 53.
    assert reference_crop_box((30, 50, 59, 89), 0.2, _FixedShifts(0.1, 0.3), (100, 200)) == (10, 45, 53, 53)
    # The whole photo as the object: padded (20, 20, 119, 219); w = 199, h = 99, s = 199; offsets
    # x 0, y 50; S = 199 + 2 * 39 = 277; shifts int(0.3 * 277) = 83, int(0.2 * 277) = 55: both
    # corners clip at 0 of the padded photo, and the window is cut short by its far edges
    # (140 x 240) -> photo (-20, -20), 140 x 240: the reference's non-square edge crop.
    assert reference_crop_box((0, 0, 99, 199), 0.2, _FixedShifts(0.3, 0.2), (100, 200)) == (-20, -20, 140, 240)


def test_reference_crop_mode_writes_its_boxes_and_records_the_option(release, tmp_path):
    out = tmp_path / "reference"
    meta = convert_cityscapes(release, out, crop="reference", min_area=100, progress=False)
    rows = rows_of(out)
    assert {"box_height", "box_width"} <= set(rows.columns) and "box_size" not in rows.columns
    for row in rows.itertuples():
        image = np.asarray(Image.open(out / row.image))
        assert image.shape[:2] == (row.box_height, row.box_width)
    options = json.loads((out / "_cityscapes_index" / "options.json").read_text())
    assert options["crop"] == "reference" and options["pad"] == 0.2 and meta.num_classes == 2
    with pytest.raises(PreparedDatasetError, match="options"):
        convert_cityscapes(release, out, min_area=100, progress=False)  # the paper's crops never mix into this folder


def test_a_folder_converted_before_the_crop_option_existed_is_still_accepted(release, tmp_path):
    out = tmp_path / "old"
    convert_cityscapes(release, out, min_area=100, progress=False)
    path = out / "_cityscapes_index" / "options.json"
    options = json.loads(path.read_text())
    del options["crop"]  # what earlier versions wrote
    path.write_text(json.dumps(options))
    convert_cityscapes(release, out, min_area=100, progress=False)
    with pytest.raises(PreparedDatasetError, match="options"):
        convert_cityscapes(release, out, crop="reference", min_area=100, progress=False)
