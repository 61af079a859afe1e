"""What the project promises when things go wrong, as a table a reader can scan.

1. A bad parameter (run config, params file, notebook parameter) is refused with an error that
   names the key (or the file and line) before anything is computed.
2. Bad data is found by the scan before training, and every bad file is listed.
3. Outputs never land in the source folders.
4. Concurrent or killed writers never lose or truncate a result; stale temporaries are removed.
5. Checkpoints never run code: a crafted pickle is refused and does nothing.
6. Evaluation refuses NaN / inf / out-of-range images and NaN logits instead of printing a number.
7. A failing notebook is reported by cell, line, error, executed copy and the command to rerun.
8. One error path: every bad input given to a command ends before any compute with exit 2 and one
   ``error:`` line naming the key or file (exit 3 and ``busy:`` for a run another process holds),
   quickly, writing nothing (`EXIT_CASES`, totals in `test_the_table_totals`).
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import partrobust.train.loop as training
import pytest
import torch
import torch.nn as nn
import yaml
from conftest import REPO, tiny_run_values
from partrobust.attacks import PGD, AutoAttack, InvalidInputError
from partrobust.core.config import ParameterError, parse_assignment
from partrobust.data.prepared import PreparedDatasetError, load_metadata, read_split
from partrobust.eval.config import EvalConfig
from partrobust.eval.evaluators import evaluate
from partrobust.data.preparation import DataPrepParams
from partrobust.core.fileio import CorruptCheckpointError, UnsafeCheckpointError, atomic_torch_save, load_checkpoint, remove_stale_temporaries, temporary_sibling
from partrobust.runs.notebooks import NotebookFailed, execute
from partrobust.runs.pipeline import run as run_pipeline
from partrobust.core.results import RESULT_COLUMNS, add_results, read_results
from partrobust.runs.run import Run, execute_run
from partrobust.runs.runconfig import make_run_config, run_id
from partrobust.runs.rundir import claim, locked
from PIL import Image


def tiny_values(dataset: Path | str = "runs/data/synthetic") -> dict:
    return tiny_run_values(dataset)


# --------------------------------------------------------------------------- 1. parameters

RUN_CONFIG_CASES = [
    # (dotted overrides, what the error must say)
    ({"train.eps": -0.1}, r"train\.eps: must be > 0"),
    ({"train.eps": 0}, r"train\.eps: must be > 0"),
    ({"train.eps": 8}, r"train\.eps: must be <= 1.*write 8/255"),
    ({"train.eps": "8/0"}, r"train\.eps: expected a number or a fraction"),
    ({"train.eps": "eight"}, r"train\.eps: expected a number or a fraction"),
    ({"train.eps": True}, r"train\.eps"),
    ({"train.step_size": 0}, r"train\.step_size: must be > 0"),
    ({"train.step_size": 2}, r"train\.step_size: must be <= 1.*write 2/255"),
    ({"train.val_step_size": -1}, r"train\.val_step_size: must be > 0"),
    ({"train.steps": 0}, r"train\.steps"),
    ({"train.steps": 1.5}, r"train\.steps"),
    ({"train.steps": "10"}, r"train\.steps"),
    ({"train.val_steps": 0}, r"train\.val_steps"),
    ({"train.val_every": 0}, r"train\.val_every"),
    ({"train.val_limit": 0}, r"train\.val_limit"),
    ({"train.epochs_clean": -1}, r"train\.epochs_clean"),
    ({"train.epochs_clean": 0, "train.epochs_adv": 0}, r"at least one epoch"),
    ({"train.lr": 0}, r"train\.lr"),
    ({"train.momentum": 1.0}, r"train\.momentum"),
    ({"train.weight_decay": -1e-4}, r"train\.weight_decay"),
    ({"train.c_seg": 1.5}, r"train\.c_seg"),
    ({"train.c_seg": 2.0}, r"train\.c_seg"),
    ({"train.beta": -1}, r"train\.beta"),
    ({"train.method": "fgsm"}, r"train\.method"),
    ({"train.bf16": "yes"}, r"train\.bf16"),
    ({"train.epohcs": 1}, r"train\.epohcs: unknown key; valid keys here: .*epochs_adv"),
    ({"eval.eps": 8}, r"eval\.eps: must be <= 1.*write 8/255"),
    ({"eval.eps": 1000}, r"eval\.eps: must be <= 1"),
    ({"eval.pgd_steps": 0}, r"eval\.pgd_steps"),
    ({"eval.pgd_restarts": 0}, r"eval\.pgd_restarts"),
    ({"eval.pgd_step_size": 0}, r"eval\.pgd_step_size: must be > 0"),
    ({"eval.limit": 0}, r"eval\.limit"),
    ({"eval.batch_size": 0}, r"eval\.batch_size"),
    ({"eval.autoattack_attacks": ["apgd-xx"]}, r"eval\.autoattack_attacks: unknown AutoAttack attack.*apgd-xx.*known: apgd-ce"),
    ({"eval.autoattack_attacks": []}, r"eval\.autoattack_attacks: empty list"),
    ({"eval.autoattack_attacks": ["square", "square"]}, r"eval\.autoattack_attacks: attacks listed twice"),
    ({"eval.autoattack": "yes"}, r"eval\.autoattack"),
    ({"model.name": "vit"}, r"model\.name: unknown model 'vit'; known models: bbox"),
    ({"model.pool_size": 0}, r"model\.pool_size"),
    ({"model.output_stride": 32}, r"model\.output_stride"),
    ({"model.bbox_score": "max"}, r"model\.bbox_score"),
    ({"model.bbox_score": "mass"}, r"model\.bbox_score"),
    ({"model.colour": "red"}, r"model\.colour: unknown key"),
    ({"data.crop_size": 0}, r"data\.crop_size"),
    ({"data.crop_size": 64, "data.resize_size": 32}, r"data: crop_size 64 > resize_size 32"),
    ({"data.batch_size": 0}, r"data\.batch_size"),
    ({"data.label_fraction": 0.0}, r"data\.label_fraction"),
    ({"data.label_fraction": 1.5}, r"data\.label_fraction"),
    ({"data.min_crop_scale": 0}, r"data\.min_crop_scale"),
    ({"data.num_workers": -1}, r"data\.num_workers"),
    ({"data.train_limit": 0}, r"data\.train_limit"),
    ({"data.labels": "boxes"}, r"data\.labels"),
    ({"data.labels": "points"}, r"data\.labels"),
    ({"data.root": 3}, r"data\.root"),
    ({"seed": -1}, r"seed"),
    ({"seed": 1.5}, r"seed"),
    ({"seed": "0"}, r"seed"),
    ({"device": "gpu"}, r"device: expected auto, cpu, cuda"),
    ({"trian": {}}, r"trian: unknown key"),
]


@pytest.mark.parametrize("overrides, message", RUN_CONFIG_CASES, ids=lambda v: json.dumps(v) if isinstance(v, dict) else None)
def test_bad_run_config_is_refused_naming_the_key(overrides, message):
    with pytest.raises(ParameterError, match=message):
        make_run_config(tiny_values(), overrides)


def _write(path: Path, doc) -> Path:
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


PREP = {"dataset": "synthetic", "output_root": "runs/x/data", "n_train": 8, "n_val": 4, "n_test": 4}
PARAMS_FILE_CASES = [
    # (params file contents, what the error must say); {file} is the file's path
    ("experiment: x\nconfig:\n  data: {root: d\n  train: 1\n", r"{file}, line 4, column \d+: not valid YAML"),
    ("- experiment: x\n", r"{file}: expected a mapping of keys to values, got list"),
    ("", r"experiment: required but missing"),
    ("experiment: [a, b]\n", r"experiment"),
    ({"experiment": "a/b"}, r"experiment: must be a plain folder name"),
    ({"experiment": "../escaped"}, r"experiment: must be a plain folder name"),
    ({"experiment": "x", "sweeps": {}}, r"sweeps: unknown key.*did you mean 'sweep'\?"),
    ({"experiment": "x", "sweeps": {}}, r"sweeps: unknown key"),
    ({"experiment": "x", "config": tiny_values(), "sweep": {"grid": {"model.name": []}}}, r"grid\.model\.name: empty list"),
    ({"experiment": "x", "config": tiny_values(), "sweep": {"zip": {"seed": [0, 1], "train.lr": [0.1]}}}, r"equal lengths"),
    ({"experiment": "x", "config": tiny_values(), "sweep": {"grid": {"train.btea": [1, 2]}}}, r"sweep block 1.*train\.btea: unknown key"),
    ({"experiment": "x", "config": tiny_values(), "sweep": {"grid": {"train.eps": [8]}}}, r"train\.eps: must be <= 1.*8/255"),
    ({"experiment": "x", "config": tiny_values(), "sweep": {"grid": {"model.name": ["resnet", "vit"]}}}, r"model\.name: unknown model 'vit'"),
    ({"experiment": "x", "config": tiny_values(), "sweep": [{"set": {"seed": "one"}}]}, r"seed: Input should be a valid integer"),
    ({"experiment": "x", "notebooks": {"07_nothing": {}}}, r"notebooks/07_nothing\.ipynb does not exist"),
    ({"experiment": "x", "prepare": {"00_data_prep": {"n_trian": 10}}}, r"00_data_prep has no parameter\(s\) \['n_trian'\]"),
    ({"experiment": "x", "prepare": {"00_data_prep": {**PREP, "num_classes": "five"}}}, r"00_data_prep parameters: num_classes"),
    ({"experiment": "x", "prepare": {"00_data_prep": {**PREP, "n_train": 0}}}, r"00_data_prep parameters: n_train"),
    ({"experiment": "x", "prepare": {"00_data_prep": {**PREP, "texture_cue_prob": 2}}}, r"texture_cue_prob"),
    ({"experiment": "x", "prepare": {"00_data_prep": {**PREP, "dataset": "imagenet"}}}, r"dataset: unknown dataset 'imagenet'"),
    ({"experiment": "x", "prepare": {"00_data_prep": {**PREP, "dataset": "part_imagenet", "raw_root": None}}}, r"raw_root: .* is required"),
    ({"experiment": "x", "prepare": {"00_data_prep": {**PREP, "dataset": "part_imagenet", "raw_root": "/nowhere/PartImageNet"}}},
     r"raw_root: folder /nowhere/PartImageNet does not exist"),
    ({"experiment": "x", "prepare": {"00_data_prep": {**PREP, "variants": ["mask"]}}}, r"variants: unknown label variant"),
    ({"experiment": "x", "prepare": {"00_data_prep": {**PREP, "output_root": "lib/data"}}}, r"output_root: lib/data is inside the source folder lib/"),
    ({"experiment": "x", "prepare": {"00_data_prep": {**PREP, "run_dir": "notebooks"}}}, r"run_dir: notebooks is inside the source folder notebooks/"),
    # notebook 02's parameters are checked before notebook 00 (listed first) runs
    ({"experiment": "x", "prepare": {"00_data_prep": PREP}, "notebooks": {"02_trades_sweep": {"jobs": "two"}}}, r"02_trades_sweep parameters: jobs"),
    ({"experiment": "x", "prepare": {"00_data_prep": PREP}, "notebooks": {"02_trades_sweep": {"adv_metric": "fgsm"}}}, r"adv_metric"),
]


@pytest.mark.parametrize("doc, message", PARAMS_FILE_CASES, ids=[f"params{i}" for i in range(len(PARAMS_FILE_CASES))])
def test_bad_params_file_is_refused_before_any_notebook_or_run(doc, message, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # relative paths in params files are relative to the repository root
    path = _write(tmp_path / "bad.yaml", doc)
    runs = tmp_path / "runs"
    with pytest.raises(ParameterError, match=message.replace("{file}", str(path))):
        run_pipeline(path, runs_root=runs, progress=False)
    assert not runs.exists() and not (REPO / "runs" / "x").exists(), "nothing may run or be written before validation passes"


def test_pipeline_refuses_a_runs_root_in_the_sources(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    path = _write(tmp_path / "ok.yaml", {"experiment": "x", "config": tiny_values()})
    for root in ("params", "notebooks/out", "."):
        with pytest.raises(ParameterError, match="runs root: .*outputs never go there"):
            run_pipeline(path, runs_root=root, progress=False)


@pytest.mark.subprocess
def test_pipeline_cli_names_the_file_and_exits_2(tmp_path):
    path = _write(tmp_path / "bad.yaml", "experiment: x\nconfig: [\n")
    done = subprocess.run([sys.executable, "-m", "partrobust.pipeline", str(path)], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {path}, line") and "Traceback" not in done.stderr


# --------------------------------------------------------------------------- 2. data, before training


@pytest.fixture()
def no_training(monkeypatch):
    """Fails the test if anything trains: errors must come before compute."""
    def refuse(*args, **kwargs):
        raise AssertionError("training started although the input was bad")

    monkeypatch.setattr(training, "fit_phase", refuse)
    monkeypatch.setattr(training, "train_one_epoch", refuse)


@pytest.fixture()
def dataset(tiny_dataset, tmp_path) -> Path:
    """A private copy of the tiny dataset to damage."""
    root = tmp_path / "synthetic"
    shutil.copytree(tiny_dataset, root, ignore=shutil.ignore_patterns(".scan*"))
    return root


def _row(root: Path, split: str = "train", index: int = 0) -> tuple[Path, Path, int]:
    row = read_split(root, split).iloc[index]
    return root / row["image"], root / row["mask"], int(row["label"])


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _truncated_jpeg(root: Path) -> None:
    image, _, _ = _row(root, "train", 1)
    jpeg = image.with_suffix(".jpg")
    Image.open(image).convert("RGB").save(jpeg, quality=90)
    _truncate(jpeg)
    split = read_split(root, "train")
    split.loc[1, "image"] = str(jpeg.relative_to(root))
    split.to_csv(root / "train.csv", index=False)


def _resized_mask(root: Path) -> None:
    _, mask, _ = _row(root, "val", 2)
    Image.fromarray(np.asarray(Image.open(mask))[:, :-3]).save(mask)


def _mask_value_above_k(root: Path) -> None:
    _, mask, _ = _row(root, "test", 0)
    array = np.asarray(Image.open(mask)).copy()
    array[0, 0] = load_metadata(root).num_parts + 1
    Image.fromarray(array).save(mask)


def _rgb_mask(root: Path) -> None:
    _, mask, _ = _row(root, "train", 3)
    Image.open(mask).convert("RGB").save(mask)


def _part_of_another_class(root: Path) -> None:
    _, mask, label = _row(root, "train", 4)
    meta = load_metadata(root)
    foreign = next(p.id for p in meta.parts if p.class_name != meta.classes[label])
    array = np.asarray(Image.open(mask)).copy()
    array[:2, :2] = foreign
    Image.fromarray(array).save(mask)


def _missing_image(root: Path) -> None:
    _row(root, "train", 5)[0].unlink()


def _missing_mask(root: Path) -> None:
    _row(root, "val", 0)[1].unlink()


def _edit_csv(split: str, column: str, value) -> callable:
    def edit(root: Path) -> None:
        frame = pd.read_csv(root / f"{split}.csv")
        frame[column] = frame[column].astype(object)
        frame.loc[0, column] = value
        frame.to_csv(root / f"{split}.csv", index=False)
    return edit


def _metadata(change) -> callable:
    def edit(root: Path) -> None:
        meta = json.loads((root / "metadata.json").read_text())
        change(meta)
        (root / "metadata.json").write_text(json.dumps(meta))
    return edit


DATA_CASES = [
    # (damage, what the error must say); every message names the file
    (lambda root: _truncate(_row(root, "train", 0)[0]), r"train row 0: .*train/\w+\.png: cannot decode image"),
    (_truncated_jpeg, r"train row 1: .*\.jpg: cannot decode image"),
    (_resized_mask, r"val row 2: .*masks/val/\w+\.png: mask size .* differs from image size"),
    (_mask_value_above_k, r"test row 0: .*masks/test/\w+\.png: mask value \d+ exceeds K="),
    (_rgb_mask, r"train row 3: .*masks/train/\w+\.png: mask must be single-channel, got mode 'RGB'"),
    (_part_of_another_class, r"train row 4: .*masks/train/\w+\.png: part \d+ belongs to class"),
    (_missing_image, r"train row 5: .*images/train/\w+\.png: file not found"),
    (_missing_mask, r"val row 0: .*masks/val/\w+\.png: file not found"),
    (lambda root: _truncate(_row(root, "test", 3)[1]), r"test row 3: .*masks/test/\w+\.png: cannot decode"),
    (_edit_csv("train", "label", 99), r"train\.csv: label 99 \(row 0\) out of range"),
    (_edit_csv("val", "label", "cat"), r"val\.csv: column 'label' must hold integers"),
    (_edit_csv("test", "mask", None), r"test\.csv: empty cells"),
    (lambda root: (root / "val.csv").write_text("image,mask,label\n"), r"val\.csv: split file has no rows"),
    (lambda root: (root / "test.csv").unlink(), r"test\.csv: split file not found"),
    (lambda root: (root / "train.csv").write_text("picture,label\na,1\n"), r"train\.csv: missing column"),
    (lambda root: (root / "metadata.json").unlink(), r"metadata\.json: metadata file not found"),
    (lambda root: (root / "metadata.json").write_text("{not json"), r"metadata\.json: cannot read JSON"),
    (_metadata(lambda m: m["parts"][1].update(id=7)), r"metadata\.json: part ids must be contiguous"),
    (_metadata(lambda m: m["parts"][0].update({"class": "unicorn"})), r"belongs to unknown class 'unicorn'"),
    (_metadata(lambda m: m.update(format_version=9)), r"unsupported format_version 9"),
    (lambda root: shutil.rmtree(root), r"dataset folder .*synthetic' does not exist"),
]


@pytest.mark.parametrize("damage, message", DATA_CASES, ids=[f"data{i}" for i in range(len(DATA_CASES))])
def test_bad_data_is_refused_before_training_naming_the_file(damage, message, dataset, tmp_path, no_training):
    damage(dataset)
    with pytest.raises(PreparedDatasetError, match=message):
        execute_run(make_run_config(tiny_values(dataset)), "exp", tmp_path / "runs")


def test_the_data_check_lists_every_bad_file_not_only_the_first(dataset, tmp_path, no_training):
    for damage in (lambda root: _truncate(_row(root, "train", 0)[0]), _resized_mask, _mask_value_above_k, _rgb_mask, _missing_image):
        damage(dataset)
    with pytest.raises(PreparedDatasetError) as err:
        execute_run(make_run_config(tiny_values(dataset)), "exp", tmp_path / "runs")
    message = str(err.value)
    assert message.startswith(f"{dataset}: 5 bad file(s)")
    for fragment in ("train row 0", "val row 2", "test row 0", "train row 3", "train row 5"):
        assert fragment in message


def test_the_data_check_can_be_skipped_for_huge_data(dataset, tmp_path, monkeypatch):
    """``data.scan: false`` skips the scan; the damage is then found when the sample is decoded, naming the file."""
    _mask_value_above_k(dataset)
    run = Run(make_run_config(tiny_values(dataset), {"data.scan": False}), "exp", tmp_path / "runs")
    assert run.metadata.num_parts > 0  # constructed without scanning
    with pytest.raises(PreparedDatasetError, match=r"masks/test/\w+\.png: mask value"):
        run.loaders["test"].dataset[0]


# --------------------------------------------------------------------------- 3. outputs never overwrite sources


@pytest.mark.parametrize("folder", ["notebooks", "lib/partrobust", "params/runs", "tests", "."])
def test_a_run_folder_inside_the_sources_is_refused(folder, tiny_dataset, no_training):
    with pytest.raises(ParameterError, match="run folder: .*outputs never go there"):
        Run(make_run_config(tiny_values(tiny_dataset)), "exp", run_dir=REPO / folder)


def test_an_executed_notebook_never_overwrites_a_source(tmp_path):
    with pytest.raises(ParameterError, match="executed notebook: .*inside the source folder notebooks/"):
        execute(REPO, "00_data_prep", {}, REPO / "notebooks" / "00_data_prep.ipynb")


def test_data_prep_outputs_inside_the_sources_are_refused():
    values = dict(run_dir="runs/x", dataset="synthetic", raw_root=None, cityscapes_crop="paper", output_root="runs/x/data", variants=[], num_classes=5,
                  image_size=64, n_train=1, n_val=1, n_test=1, texture_cue_prob=0.0, summary_limit=None, seed=0, workers=1,
                  progress=False)
    for key, value in (("run_dir", "notebooks"), ("output_root", str(REPO / "tests" / "data"))):
        with pytest.raises(ValueError, match=f"{key}: .*outputs never go there"):
            DataPrepParams(**{**values, key: value})


# --------------------------------------------------------------------------- 4. writes: concurrent, killed, stale


def _rows(run: str, n: int, start: int = 0) -> list[dict]:
    return [{**{c: "" for c in RESULT_COLUMNS}, "run_id": run, "metric": f"m{i}", "value": float(i), "n": 1}
            for i in range(start, start + n)]


_APPENDER = """
import sys
from partrobust.core.results import RESULT_COLUMNS, add_results
path, run = sys.argv[1], sys.argv[2]
for i in range(40):
    add_results(path, [{**{c: "" for c in RESULT_COLUMNS}, "run_id": run, "metric": f"m{i}", "value": float(i), "n": 1}])
"""


@pytest.mark.subprocess
def test_two_processes_adding_results_to_one_file_lose_no_row(tmp_path):
    path = tmp_path / "results.csv"
    procs = [subprocess.Popen([sys.executable, "-c", _APPENDER, str(path), run], stderr=subprocess.PIPE, text=True) for run in "ab"]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    frame = read_results(path)
    assert len(frame) == 80 and frame.groupby("run_id").size().to_dict() == {"a": 40, "b": 40}


def test_a_rerun_replaces_its_own_rows_and_keeps_the_others(tmp_path):
    path = tmp_path / "results.csv"
    add_results(path, _rows("a", 3))
    add_results(path, [{**_rows("a", 1)[0], "value": 99.0}, *_rows("b", 1)])
    frame = read_results(path)
    assert len(frame) == 4 and frame.set_index(["run_id", "metric"]).loc[("a", "m0"), "value"] == 99.0


_BIG_WRITER = """
import sys
from partrobust.core.results import RESULT_COLUMNS, add_results
rows = [{**{c: "" for c in RESULT_COLUMNS}, "run_id": "new", "metric": f"m{i}", "value": float(i), "n": 1} for i in range(400_000)]
print("ready", flush=True)
add_results(sys.argv[1], rows)
"""


@pytest.mark.subprocess
def test_a_kill_during_a_results_write_leaves_the_previous_file_intact(tmp_path):
    path = tmp_path / "results.csv"
    add_results(path, _rows("old", 158))
    before = path.read_bytes()
    killed_mid_write = 0
    for delay in (0.05, 0.3, 0.8):
        proc = subprocess.Popen([sys.executable, "-c", _BIG_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        after = read_results(path)  # always a whole file: the old one, or the new one if the rename happened
        if path.read_bytes() == before:
            killed_mid_write += 1
        else:
            assert len(after) == 400_158
            path.write_bytes(before)
    assert killed_mid_write >= 1, "no kill landed before the rename; the test proved nothing"
    leftovers = list(tmp_path.glob(".results.csv.tmp-*"))
    removed = remove_stale_temporaries(tmp_path)
    assert set(removed) == set(leftovers) and not list(tmp_path.glob(".results.csv.tmp-*"))


@pytest.mark.subprocess
def test_stale_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path, tiny_dataset):
    config = make_run_config(tiny_values(tiny_dataset))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = temporary_sibling(run_dir / "results.csv").with_name(
        temporary_sibling(run_dir / "results.csv").name.replace(f"-{os.getpid()}-", f"-{dead.pid}-"))
    stale.write_text("half a file")
    live = temporary_sibling(run_dir / "status.json")  # this process's: a writer still at work
    live.write_text("{")
    claim(run_dir, config, "exp")
    assert not stale.exists() and live.exists()


def test_concurrent_checkpoint_writers_never_share_a_temporary_file(tmp_path):
    path = tmp_path / "last.pt"
    errors = []

    def write(i):
        try:
            for _ in range(5):
                atomic_torch_save({"writer": torch.tensor([i] * 1000)}, path)
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and load_checkpoint(path)["writer"].unique().numel() == 1
    assert not list(tmp_path.glob(".last.pt.tmp-*"))


def test_a_failed_write_leaves_no_temporary_file_and_the_old_file_intact(tmp_path):
    path = tmp_path / "last.pt"
    atomic_torch_save({"epoch": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        atomic_torch_save({"epoch": 2, "bad": Unpicklable()}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"] and load_checkpoint(path) == {"epoch": 1}


# --------------------------------------------------------------------------- 5. checkpoints never run code


class _Payload:
    """Unpickling this creates the marker file: what a crafted checkpoint could do with any command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _crafted(path: Path, marker: Path, wrap=lambda payload: payload) -> Path:
    torch.save(wrap(_Payload(marker)), path)
    return path


def test_a_crafted_checkpoint_is_refused_and_runs_nothing(tmp_path, tiny_dataset):
    marker = tmp_path / "pwned"
    config = make_run_config(tiny_values(tiny_dataset), {"train.epochs_adv": 0})
    run = Run(config, "exp", tmp_path / "runs")
    phase = run.phase_dir("clean")
    phase.mkdir(parents=True)
    _crafted(phase / "last.pt", marker, wrap=lambda p: {"model": p, "config": {}})
    run.start()
    with pytest.raises(UnsafeCheckpointError, match=r"last\.pt: refused to load.*run code"):
        run.train()
    run.release()
    assert not marker.exists()
    torch.load(phase / "last.pt", weights_only=False)  # the file is really dangerous: an unsafe load runs it
    assert marker.exists()


@pytest.mark.parametrize("name", ["autoattack_state.pt", "pretrained.pt"])
def test_crafted_attack_state_and_pretrained_weights_are_refused(name, tmp_path):
    marker = tmp_path / "pwned"
    path = _crafted(tmp_path / name, marker)
    with pytest.raises(UnsafeCheckpointError, match=name):
        if name == "pretrained.pt":
            from partrobust.models.baseline import load_backbone_weights
            load_backbone_weights(nn.Linear(2, 2), path)
        else:
            AutoAttack(state_path=path, progress=False, attacks=["apgd-ce"]).run(_Constant(4), torch.rand(2, 3, 8, 8), torch.tensor([0, 1]))
    assert not marker.exists()


def test_a_truncated_checkpoint_is_reported_by_name(tmp_path):
    path = tmp_path / "last.pt"
    buffer = io.BytesIO()
    torch.save({"model": {"w": torch.ones(1000)}}, buffer)
    path.write_bytes(buffer.getvalue()[:500])
    with pytest.raises(CorruptCheckpointError, match=r"last\.pt: cannot read this checkpoint"):
        load_checkpoint(path)


# --------------------------------------------------------------------------- 6. nonsense never becomes a number


class _Constant(nn.Module):
    """A tiny classifier: logits from the mean colour (so attacks have a gradient)."""

    def __init__(self, num_classes: int = 4, value: float | None = None) -> None:
        super().__init__()
        self.linear = nn.Linear(3, num_classes)
        self.value = value

    def forward(self, x):
        logits = self.linear(x.mean((2, 3)))
        return logits if self.value is None else logits * 0 + self.value


def _images(n: int = 4) -> torch.Tensor:
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(0))


EVAL_INPUT_CASES = [
    (lambda x: x.index_put_((torch.tensor([1]),), torch.tensor(float("nan"))), _Constant(), r"test images: 1 image\(s\) hold NaN or inf"),
    (lambda x: x.index_put_((torch.tensor([2]),), torch.tensor(float("inf"))), _Constant(), r"test images: 1 image\(s\) hold NaN or inf"),
    (lambda x: x * 255, _Constant(), r"test images: pixel values must lie in \[0, 1\].*0-255 pixel values: divide by 255"),
    (lambda x: x - 0.5, _Constant(), r"test images: pixel values must lie in \[0, 1\], got \[-"),
    (lambda x: (x * 255).to(torch.uint8), _Constant(), r"test images: expected float images .*uint8"),
    (lambda x: x, _Constant(value=float("nan")), r"model returned NaN or infinite logits for 4 of 4"),
    (lambda x: x, _Constant(value=float("inf")), r"model returned NaN or infinite logits"),
]


@pytest.mark.parametrize("corrupt, model, message", EVAL_INPUT_CASES, ids=[f"eval{i}" for i in range(len(EVAL_INPUT_CASES))])
def test_evaluation_refuses_nonsense_instead_of_reporting_a_number(corrupt, model, message, monkeypatch):
    import partrobust.eval.outcomes as evaluation

    monkeypatch.setattr(evaluation, "pgd_examples", lambda *a, **k: pytest.fail("an attack ran on nonsense input"))
    cfg = EvalConfig(pgd_steps=1, pgd_restarts=1, autoattack=False)
    x = corrupt(_images())
    with pytest.raises(InvalidInputError, match=message):
        evaluate(model, x, torch.zeros(4, 8, 8, dtype=torch.long), torch.tensor([0, 1, 2, 3]), cfg)


def test_a_model_that_breaks_only_under_attack_is_caught(monkeypatch):
    class NanOffClean(_Constant):
        def forward(self, x):
            logits = super().forward(x)
            return logits + (0 if getattr(self, "clean", True) else float("nan"))

    model = NanOffClean()
    cfg = EvalConfig(pgd_steps=1, pgd_restarts=1, autoattack=False)
    real = cfg.pgd_attack()

    def attack_then_break(*args, **kwargs):
        out = real(*args, **kwargs)
        model.clean = False
        return out

    monkeypatch.setattr(EvalConfig, "pgd_attack", lambda self: attack_then_break)
    with pytest.raises(InvalidInputError, match="NaN or infinite logits"):
        evaluate(model, _images(), torch.zeros(4, 8, 8, dtype=torch.long), torch.tensor([0, 1, 2, 3]), cfg)


def test_attacks_refuse_nonsense_inputs_too():
    x = _images()
    x[0] = float("nan")
    with pytest.raises(InvalidInputError, match="AutoAttack inputs"):
        AutoAttack(progress=False, attacks=["apgd-ce"]).run(_Constant(), x, torch.tensor([0, 1, 2, 3]))
    from partrobust.eval.outcomes import pgd_examples

    with pytest.raises(InvalidInputError, match="PGD inputs"):
        pgd_examples(_Constant(), PGD(steps=1), x * 0 + 2, torch.tensor([0, 1, 2, 3]), batch_size=4, progress=False)


def test_autoattack_needing_more_classes_is_refused_before_training(tmp_path, no_training):
    from partrobust.data import SyntheticConfig, generate_synthetic

    three = generate_synthetic(tmp_path / "three", SyntheticConfig(num_classes=3, image_size=16, n_train=3, n_val=3, n_test=3),
                               progress=False)
    assert three.num_classes == 3
    config = make_run_config(tiny_values(tmp_path / "three"), {"eval.autoattack": True, "eval.autoattack_attacks": ["apgd-t"]})
    with pytest.raises(ParameterError, match=r"eval\.autoattack_attacks: \['apgd-t'\] need at least 4 classes"):
        execute_run(config, "exp", tmp_path / "runs")


# --------------------------------------------------------------------------- 7. readable notebook failures


@pytest.mark.slow
@pytest.mark.notebook
def test_a_failing_prepare_notebook_names_cell_line_error_output_and_rerun(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    raw = tmp_path / "PartImageNet"
    raw.mkdir()  # exists (so validation passes) but holds no release: the converter fails inside the notebook
    path = _write(tmp_path / "prep.yaml", {"experiment": "x", "prepare": {"00_data_prep": {
        "dataset": "part_imagenet", "raw_root": str(raw), "output_root": str(tmp_path / "data"), "progress": False}}})
    with pytest.raises(NotebookFailed) as err:
        run_pipeline(path, runs_root=tmp_path / "runs", progress=False)
    message = str(err.value)
    assert err.value.cell is not None and f"cell [{err.value.cell}], at: meta = prepare(params)" in message
    assert "Error" in err.value.error and "PartImageNet" in err.value.error
    assert f"executed notebook: {tmp_path / 'runs' / 'x' / '00_data_prep.ipynb'}" in message
    assert f"rerun: python -m partrobust.pipeline {path} --notebooks 00_data_prep" in message
    assert (tmp_path / "runs" / "x" / "00_data_prep.ipynb").is_file()


# --------------------------------------------------------------------------- 8. one error path: exit status, key or file, nothing written
#
# Every row is one bad input given to a command (``python -m partrobust.run`` or ``partrobust.pipeline``, called
# in this process unless the row says otherwise). Each must end before any compute with the documented exit
# status (2: ``error: ...``; 3: ``busy: ...``) and one stderr line naming the key or the file, quickly, and
# leave no file behind (no checkpoint, no results, nothing else either). `test_the_table_totals` adds them up.


class Setup:
    """What a row works with: a private folder, the tiny dataset, a run config file on it, and the runs root."""

    def __init__(self, tmp: Path, dataset: Path) -> None:
        self.tmp, self.dataset, self.runs = tmp, dataset, tmp / "runs"
        self.config = _write(tmp / "run.yaml", tiny_values(dataset))
        self.marker = tmp / "pwned"  # a crafted pickle would create it

    def run_config(self, *sets: str):
        return make_run_config(tiny_values(self.dataset), dict(parse_assignment(a) for a in sets))

    def run_dir(self, *sets: str) -> Path:
        return self.runs / "exp" / run_id(self.run_config(*sets))

    def file(self, name: str, content) -> Path:
        path = self.tmp / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content == "crafted":
            _crafted(path, self.marker)
        elif content == "dir":
            path.mkdir()
        else:
            torch.save(content, path)
        return path

    def params(self, doc: dict) -> Path:
        return _write(self.tmp / "params.yaml", {"experiment": "exp", "config": tiny_values(self.dataset), **doc})


def _cli(*sets: str, extra=()) -> callable:
    """A `python -m partrobust.run` row: the config file with ``--set`` overrides."""
    return lambda s: [str(s.config), *[a for kv in sets for a in ("--set", kv)], "--experiment", "exp", "--runs-root", str(s.runs),
                      *extra]


def _with(make_file, *sets: str, extra=()) -> callable:
    """A row whose ``--set`` values name a file `make_file(setup)` creates."""
    return lambda s: _cli(*[kv.format(file=make_file(s)) for kv in sets], extra=extra)(s)


def _in_phase(name: str, content, phase: str = "clean") -> callable:
    """A row whose run already has `name` in its clean phase folder (or its run folder for AutoAttack state)."""
    def build(s: Setup) -> list[str]:
        run = Run(s.run_config(), "exp", s.runs)
        folder = run.phase_dir(phase) if name.endswith(("last.pt", "best.pt")) else run.dir
        folder.mkdir(parents=True)
        path = folder / name
        if content == "crafted":
            _crafted(path, s.marker, wrap=lambda p: {"model": p})
        elif content == "truncated":
            buffer = io.BytesIO()
            torch.save({"model": {"w": torch.ones(1000)}}, buffer)
            path.write_bytes(buffer.getvalue()[:500])
        else:
            torch.save(content, path)
        return _cli()(s)
    return build


def _immutable(folder: Path) -> None:
    """Makes `folder` unwritable, for root too (``chattr +i``; root ignores permission bits)."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o555)
    if os.geteuid() == 0 and subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("cannot make a folder read-only for root here (no chattr)")


def _read_only_root(s: Setup) -> list[str]:
    _immutable(s.runs)
    return _cli()(s)


def _root_is_a_file(s: Setup) -> list[str]:
    s.runs.write_text("a file where the runs root should be")
    return _cli()(s)


def _disk_full(s: Setup) -> list[str]:
    import partrobust.core.fileio as fileio

    s.monkeypatch.setattr(fileio.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 10**12 - 1024, 1024))
    return _cli()(s)


def _results_is_a_folder(s: Setup) -> list[str]:
    (s.run_dir() / "results.csv").mkdir(parents=True)
    return _cli()(s)


def _data_root_is_a_file(s: Setup) -> list[str]:
    return _cli(f"data.root={s.file('data.txt', b'not a folder')}")(s)


def _busy(s: Setup) -> list[str]:
    config = s.run_config()
    folder = s.run_dir()
    claim(folder, config, "exp")
    s.stack.enter_context(locked(folder))  # "another process" works on it: the lock is held till the row ends
    return _cli()(s)


def _adain(bad: str, content) -> callable:
    """A shape-vs-texture row with a valid AdaIN pair except the `bad` file ("encoder" or "decoder")."""
    def build(s: Setup) -> list[str]:
        from test_benchmarks import _tiny_adain_weights

        encoder, decoder = _tiny_adain_weights(s.tmp)
        if bad == "decoder" and content == "encoder":
            decoder = encoder  # a real AdaIN file, of the other network
        elif bad == "encoder":
            encoder = s.file("bad_enc.pth", content)
        else:
            decoder = s.file("bad_dec.pth", content)
        return _cli("eval.benchmarks=[shape_vs_texture]", f"eval.style_encoder={encoder}", f"eval.style_decoder={decoder}")(s)
    return build


def _pipeline(doc: dict, *args: str, before=None) -> callable:
    def build(s: Setup) -> list[str]:
        if before is not None:
            before(s)
        return [str(s.params(doc)), "--runs-root", str(s.runs), "--runner", "process", "--no-progress", *args]
    return build


def _weights(content) -> callable:
    return _with(lambda s: s.file("weights.pt", content), "model.pretrained_encoder={file}")


_FINGERPRINT = {"model": {}, "epoch": 1, "metrics": {}, "config": {"train.lr": 0.5}}
CUDA_DEVICE = f"cuda:{torch.cuda.device_count()}"  # no such GPU: cuda:0 on a machine without CUDA

EXIT_CASES = [
    # (id, command, argv builder, exit status, what the stderr line must name (regex))
    # 1. every float key finite
    ("lr-inf", "run", _cli("train.lr=.inf"), 2, r"train\.lr: Input should be a finite number"),
    ("weight-decay-inf", "run", _cli("train.weight_decay=.inf"), 2, r"train\.weight_decay: .*finite"),
    ("beta-inf", "run", _cli("train.method=trades", "train.beta=.inf"), 2, r"train\.beta: .*finite"),
    ("momentum-nan", "run", _cli("train.momentum=.nan"), 2, r"train\.momentum: .*finite"),
    ("eps-inf", "run", _cli("train.eps=.inf"), 2, r"train\.eps: must be a finite number"),
    ("style-alpha-nan", "run", _cli("eval.style_alpha=.nan"), 2, r"eval\.style_alpha: .*finite"),
    ("min-crop-nan", "run", _cli("data.min_crop_scale=.nan"), 2, r"data\.min_crop_scale: .*finite"),
    ("c-seg-attack-inf", "run", _cli("eval.c_seg_attack=[.inf]"), 2, r"eval\.c_seg_attack\[0\]: .*finite"),
    # 2. AdaIN files through the one safe loader, before training
    ("style-encoder-crafted", "run", _adain("encoder", "crafted"), 2, r"eval\.style_encoder: .*bad_enc\.pth: refused to load"),
    ("style-decoder-garbage", "run", _adain("decoder", b"garbage" * 50), 2, r"eval\.style_decoder: .*bad_dec\.pth: cannot read"),
    ("style-encoder-folder", "run", _adain("encoder", "dir"), 2, r"eval\.style_encoder: .*bad_enc\.pth is a directory"),
    ("style-decoder-wrong-net", "run", _adain("decoder", "encoder"), 2, r"eval\.style_decoder: .*enc\.pth"),
    ("style-encoder-not-tensors", "run", _adain("encoder", [1, 2]), 2, r"eval\.style_encoder: .*bad_enc\.pth: expected a state dict"),
    # 3. experiment names: one validator, no escape from the runs root
    ("experiment-escape", "run", _cli(extra=["--experiment", "../../escaped"]), 2, r"--experiment must be a plain folder name"),
    ("experiment-nested", "run", _cli(extra=["--experiment", "a/b"]), 2, r"--experiment must be a plain folder name"),
    ("experiment-hidden", "run", _cli(extra=["--experiment", ".x"]), 2, r"--experiment must be a plain folder name"),
    ("experiment-empty", "run", _cli(extra=["--experiment", ""]), 2, r"--experiment must be a plain folder name"),
    ("params-experiment-escape", "pipeline", _pipeline({"experiment": "../escaped"}), 2, r"experiment: must be a plain folder name"),
    # 4. compile backends
    ("compile-backend", "run", _cli("speed.compile_backend=nonexistent"), 2, r"speed\.compile_backend: unknown torch\.compile backend"),
    # 5. CUDA-only keys off CUDA, limits larger than the split
    ("bf16-on-cpu", "run", _cli("train.bf16=true"), 2, r"train\.bf16: true acts on CUDA only"),
    ("sync-bn-on-cpu", "run", _cli("train.sync_bn=true"), 2, r"train\.sync_bn: true acts on CUDA only"),
    ("train-limit", "run", _cli("data.train_limit=100000"), 2, r"data\.train_limit: 100000 is more than the 40 images"),
    ("eval-limit", "run", _cli("eval.limit=1000"), 2, r"eval\.limit: 1000 is more than the 16 images"),
    ("val-limit", "run", _cli("train.val_limit=1000"), 2, r"train\.val_limit: 1000 is more than the 16 images"),
    # 6. the error line and exit 2, not a traceback
    ("no-such-gpu", "run", _cli(f"device={CUDA_DEVICE}"), 2, r"device: .*cuda:\d"),
    ("weights-missing", "run", _cli("model.pretrained_encoder=/nowhere/w.pt"), 2, r"model\.pretrained_encoder: weights file /nowhere/w\.pt"),
    ("weights-crafted", "run", _weights("crafted"), 2, r"model\.pretrained_encoder: .*weights\.pt: refused to load"),
    ("weights-garbage", "run", _weights(b"not a checkpoint"), 2, r"model\.pretrained_encoder: .*weights\.pt: cannot read"),
    ("weights-not-a-state-dict", "run", _weights([torch.ones(2)]), 2, r"model\.pretrained_encoder: .*weights\.pt is not a state dict"),
    ("weights-wrong-keys", "run", _weights({"w": torch.ones(2)}), 2, r"model\.pretrained_encoder: .*weights\.pt does not match"),
    ("last-crafted", "run", _in_phase("last.pt", "crafted"), 2, r"clean-\w+/last\.pt: refused to load"),
    ("last-truncated", "run", _in_phase("last.pt", "truncated"), 2, r"clean-\w+/last\.pt: cannot read this checkpoint"),
    ("last-incomplete", "run", _in_phase("last.pt", {"model": {}}), 2, r"last\.pt: not a checkpoint of this project"),
    ("best-other-config", "run", _in_phase("best.pt", _FINGERPRINT), 2, r"best\.pt was written by a different configuration"),
    ("adv-last-crafted", "run", _in_phase("last.pt", "crafted", "adversarial"), 2, r"pgd-\w+/last\.pt: refused to load"),
    ("autoattack-crafted", "run", _in_phase("autoattack_state.pt", "crafted"), 2, r"autoattack_state\.pt: refused to load"),
    ("autoattack-truncated", "run", _in_phase("autoattack_state.pt", "truncated"), 2, r"autoattack_state\.pt: cannot read"),
    ("notebook-last-crafted", "run", lambda s: [*_in_phase("last.pt", "crafted")(s), "--notebook"], 2, r"last\.pt: refused to load"),
    ("runs-root-read-only", "run", _read_only_root, 2, r"run folder: .*runs/exp/bbox-pgd-\w+ is not writable"),
    ("runs-root-a-file", "run", _root_is_a_file, 2, r"run folder: .*runs is a file"),
    ("pipeline-read-only", "pipeline", _pipeline({}, before=lambda s: _immutable(s.runs)), 2, r"runs root: .*runs/exp is not writable"),
    # 8. readable errors: no pydantic internals, "did you mean", folders and files told apart
    ("sweep-typo", "pipeline", _pipeline({"sweep": {"grdi": {"seed": [1, 2]}}}), 2, r"sweep block 1: grdi: unknown key.*did you mean 'grid'"),
    ("sweep-list-typo", "pipeline", _pipeline({"sweep": [{"set": {}}, {"zpi": {}}]}), 2, r"sweep block 2: zpi: unknown key.*did you mean 'zip'"),
    ("sweep-inf", "pipeline", _pipeline({"sweep": {"grid": {"train.lr": [0.1, float("inf")]}}}), 2, r"train\.lr: .*finite"),
    ("set-typo", "run", _cli("trian.lr=0.1"), 2, r"trian: unknown key.*did you mean 'train'"),
    ("key-typo", "run", _cli("train.weight_decy=0.1"), 2, r"train\.weight_decy: unknown key.*did you mean 'weight_decay'"),
    ("weights-a-folder", "run", _weights("dir"), 2, r"model\.pretrained_encoder: .*weights\.pt is a directory"),
    ("data-root-a-file", "run", _data_root_is_a_file, 2, r"data\.root: .*data\.txt' is a file, not a dataset folder"),
    ("config-a-folder", "run", lambda s: [str(s.tmp), "--runs-root", str(s.runs)], 2, r"config file .* is a directory"),
    ("pipeline-bf16", "pipeline", _pipeline({"sweep": {"set": {"train.bf16": True}}}), 2, r"train\.bf16: true acts on CUDA only"),
    ("pipeline-limit", "pipeline", _pipeline({"sweep": {"set": {"eval.limit": 1000}}}), 2, r"eval\.limit: 1000 is more than"),
    ("pipeline-weights-crafted", "pipeline", lambda s: _pipeline({"sweep": {"set": {
        "model.pretrained_encoder": str(s.file("weights.pt", "crafted"))}}})(s), 2, r"model\.pretrained_encoder: .*refused to load"),
    # 9. writability and free space before training
    ("disk-full", "run", _disk_full, 2, r"run folder: .* has 0 MiB free, but the run writes about"),
    ("results-a-folder", "run", _results_is_a_folder, 2, r"run folder: .*results\.csv is a folder"),
    # busy: another process holds the run
    ("busy", "run", _busy, 3, r"busy: run .*bbox-pgd-\w+ is being worked on by another process"),
]
"""The bad inputs of the second hardening round (issue 27), one row each."""

_OUTCOMES: dict[str, dict] = {}


def _files(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file() or p.is_symlink()}


@pytest.mark.parametrize("case", EXIT_CASES, ids=[c[0] for c in EXIT_CASES])
def test_each_bad_input_ends_with_its_exit_status_and_line_before_any_compute(case, tiny_dataset, tmp_path, monkeypatch, capsys, no_training):
    import contextlib

    from partrobust.runs.pipeline import main as pipeline_main
    from partrobust.runs.run import main as run_main

    name, command, build, code, names = case
    monkeypatch.chdir(REPO)  # the commands chdir to the repository root; monkeypatch restores the test's folder
    monkeypatch.setattr("partrobust.runs.sweep.execute_one", lambda *a, **k: pytest.fail("the pipeline started a run"))
    work = tmp_path / "work"
    work.mkdir()
    setup = Setup(work, tiny_dataset)
    setup.monkeypatch = monkeypatch
    with contextlib.ExitStack() as stack:
        setup.stack = stack
        try:
            argv = build(setup)
            before = _files(tmp_path)
            capsys.readouterr()
            t0 = time.perf_counter()
            status = (run_main if command == "run" else pipeline_main)(argv)
            seconds = time.perf_counter() - t0
            err = capsys.readouterr().err
            after = _files(tmp_path)
        finally:
            if setup.runs.is_dir() and os.geteuid() == 0:
                subprocess.run(["chattr", "-i", str(setup.runs)], capture_output=True)
            if setup.runs.is_dir():
                os.chmod(setup.runs, 0o755)
    prefix = "busy: " if code == 3 else "error: "
    message = err[err.find(prefix):] if prefix in err else ""  # the line (and the lines of a multi-line message)
    assert status == code, f"{name}: exit {status}, expected {code}\n{err[-3000:]}"
    assert message and message.count(prefix) == 1 and not message.startswith(prefix + "\n"), err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert re.search(names, message.splitlines()[0]) or re.search(names, message, re.S), f"{name}: {message!r} does not match {names!r}"
    assert after == before, f"{name}: files written or changed: {sorted(set(after.items()) ^ set(before.items()))}"
    assert not setup.marker.exists(), "a crafted pickle ran"
    assert not (tmp_path.parent / "escaped").exists() and not (REPO / "runs" / "escaped").exists()
    assert seconds < 30, f"{name}: the error took {seconds:.1f} s"
    _OUTCOMES[name] = {"exit": status, "seconds": seconds, "before_compute": True}


@pytest.mark.subprocess
def test_a_command_started_outside_the_checkout_says_so_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "partrobust.run", str(REPO / "params" / "smoke.yaml")], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: no partrobust checkout") and str(tmp_path) in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_notebook_experiment_parameter_cannot_escape_the_runs_root(tiny_dataset, tmp_path, no_training):
    """Notebook 01 builds its run with `Run.from_file(config, overrides, experiment, runs_root, folder)`."""
    config = _write(tmp_path / "run.yaml", tiny_values(tiny_dataset))
    runs = tmp_path / "nested" / "runs"
    for experiment in ("../../escaped", "a/b", "..", ".hidden", "/abs"):
        with pytest.raises(ParameterError, match=r"experiment must be a plain folder name"):
            Run.from_file(config, {}, experiment, runs)
    assert not (tmp_path / "nested").exists() and not (tmp_path / "escaped").exists()


def test_a_failed_write_names_the_file(tmp_path, monkeypatch):
    import errno

    def full(obj, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError, match=r"cannot write .*last\.pt: No space left on device"):
        atomic_torch_save({"w": torch.ones(1)}, tmp_path / "last.pt")
    assert list(tmp_path.iterdir()) == []


def test_the_table_totals():
    """The totals of `EXIT_CASES` (printed with ``-s``): bad inputs, refused before compute, exit-2 share."""
    if len(_OUTCOMES) < len(EXIT_CASES):
        pytest.skip("only part of the table ran")
    refused = sum(o["before_compute"] for o in _OUTCOMES.values())
    exit2 = sum(o["exit"] == 2 for o in _OUTCOMES.values())
    slowest = max(_OUTCOMES.items(), key=lambda item: item[1]["seconds"])
    print(f"\nreliability table: {len(_OUTCOMES)} bad inputs, {refused} refused before compute, exit 2: {exit2}/{len(_OUTCOMES)} "
          f"({100 * exit2 / len(_OUTCOMES):.0f}%), exit 3 (busy): {len(_OUTCOMES) - exit2}; slowest error: {slowest[0]} "
          f"{slowest[1]['seconds']:.2f} s")
    assert refused == len(EXIT_CASES) and all(o["exit"] in (2, 3) for o in _OUTCOMES.values())


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_busy_run_is_reported_in_its_own_words_and_counts_as_done_when_the_other_process_finishes_it(tiny_dataset, tmp_path):
    """The batch runner's report of a run another process holds: its own child's ``busy:`` line (never the
    other process's log lines), and, once the other process has finished the run, done: two pipelines that
    together finished every run both exit 0."""
    from partrobust.runs.pipeline import exit_code
    from partrobust.runs.rundir import read_status, write_status
    from partrobust.runs.sweep import execute_one, run_sweep

    runs = tmp_path / "runs"
    config = make_run_config(tiny_values(tiny_dataset))
    folder = runs / "exp" / run_id(config)
    claim(folder, config, "exp")
    (folder / "log.txt").write_text("OTHER PROCESS: clean 3/50 loss 1.234\n")
    held, release = threading.Event(), threading.Event()

    def other_process():
        with locked(folder):
            held.set()
            release.wait(300)
            write_status(folder, "done", metrics={"clean_accuracy": 50.0})

    other = threading.Thread(target=other_process)
    other.start()
    try:
        assert held.wait(60)
        report = execute_one(config, "exp", runs, "process", None, echo=False)
        assert report.state == "busy" and report.error.startswith("busy: run ") and "OTHER PROCESS" not in report.error, report
        assert exit_code([report]) == 3

        def finish_when_the_batch_waits():
            deadline = time.time() + 300
            while (folder / "log.txt").read_text().count("busy: run") < 2 and time.time() < deadline:
                time.sleep(0.1)  # the batch's second child found the run busy too: now the batch waits for the lock
            release.set()

        threading.Thread(target=finish_when_the_batch_waits, daemon=True).start()
        reports = run_sweep([config], "exp", runs, jobs=1, runner="process")
    finally:
        release.set()
        other.join()
    assert [(r.state, r.error, r.metrics) for r in reports] == [("done", "", {"clean_accuracy": 50.0})]
    assert exit_code(reports) == 0 and read_status(folder)["state"] == "done"
    assert not list(folder.rglob("*.pt")), "the batch trained nothing: the other process did"


def test_one_error_path_sorts_errors_and_notebook_failures_alike():
    """`partrobust.runs.errors`: the same error ends a command with the same status whether it was raised
    here or inside a notebook (where only its ``ClassName: message`` line comes back)."""
    from partrobust.core.fileio import CorruptCheckpointError
    from partrobust.runs.errors import InputRefused, exit_status, is_busy_error, is_input_error
    from partrobust.runs.rundir import RunBusyError
    from partrobust.train.loop import ConfigMismatchError

    for err in (ParameterError("train.lr: x"), UnsafeCheckpointError("a.pt: refused"), CorruptCheckpointError("a.pt: damaged"),
                ConfigMismatchError("a.pt: other config"), PreparedDatasetError("d: bad"), FileNotFoundError("f"),
                InputRefused("run r: 01 failed")):
        code, line = exit_status(err)
        assert code == 2 and line == f"error: {err}"
        assert is_input_error(f"{type(err).__name__}: {err}")
    assert exit_status(RunBusyError("run r is being worked on")) == (3, "busy: run r is being worked on")
    assert is_busy_error("RunBusyError: run r") and not is_input_error("RunBusyError: run r")
    assert exit_status(FloatingPointError("clean 1/1: non-finite loss")) == (1, "failed: FloatingPointError: clean 1/1: non-finite loss")
    assert not is_input_error("FloatingPointError: clean 1/1: non-finite loss")


def test_both_commands_end_an_error_the_same_way(capsys):
    """`report_exit`, the one ``except`` of ``partrobust.run`` and ``partrobust.pipeline``: a traceback only for an
    unexpected failure, then the one line."""
    from partrobust.runs.errors import report_exit
    from partrobust.runs.notebooks import NotebookFailed
    from partrobust.runs.run import RunFailed

    def ended_with(err: BaseException) -> tuple[int, str]:
        try:
            raise err
        except Exception as caught:  # noqa: BLE001 - as the commands catch it
            code = report_exit(caught)
        return code, capsys.readouterr().err

    code, err = ended_with(FloatingPointError("clean 1/1: non-finite loss"))
    assert code == 1 and "Traceback" in err and err.endswith("failed: FloatingPointError: clean 1/1: non-finite loss\n")
    for described in (RunFailed("run r: see status.json"), NotebookFailed("01", 3, "x = 1 / 0", "ZeroDivisionError", Path("o.ipynb"))):
        code, err = ended_with(described)
        assert code == 1 and err == f"failed: {described}\n"
    code, err = ended_with(ParameterError("train.lr: must be > 0"))
    assert code == 2 and err == "error: train.lr: must be > 0\n"


def test_a_run_report_quotes_the_run_s_closing_message():
    from partrobust.runs.sweep import _last_message

    output = "epoch 1\nTraceback (most recent call last):\n  x\nerror: a.pt was written by a different configuration; changed keys:\n" \
             "  train.lr: 0.1 -> 0.2\nUse a new run folder"
    assert _last_message(output) == "error: a.pt was written by a different configuration; changed keys:\n  train.lr: 0.1 -> 0.2\nUse a new run folder"
    assert _last_message("epoch 1\nbusy: run r is being worked on") == "busy: run r is being worked on"
    assert _last_message("only progress\nlast words") == "last words" and _last_message("") == ""
