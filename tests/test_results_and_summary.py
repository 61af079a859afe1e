"""Tidy results CSV, manifests, dataset summaries and the evaluation helpers."""
import json

import pandas as pd
import pytest
import torch

from partrobust.data.summary import images_per_class, part_pixels, parts_per_class
from partrobust.eval.outcomes import pixel_accuracy
from partrobust.models.losses import UNLABELLED
from partrobust.core.results import RESULT_COLUMNS, gather_results, read_results, add_results
from partrobust.runs.records import result_rows, write_manifest
from partrobust.runs.runconfig import make_run_config, run_id


def _config(**overrides):
    return make_run_config({"data": {"root": "d"}, "model": {"from_scratch": True}}, overrides)


def test_result_rows_carry_the_run_id_and_the_table_index(tmp_path):
    pgd = _config(**{"model.name": "bbox", "train.lr": 0.05})
    rows = result_rows([{"metric": "clean_accuracy", "value": 50.0, "n": 10}], pgd, experiment="e", dataset="d")
    assert list(rows[0]) == RESULT_COLUMNS
    row = rows[0]
    assert row["run_id"] == run_id(pgd) and row["experiment"] == "e" and row["training"] == "pgd"
    assert row["lr"] == 0.05 and row["eps"] == "8/255" and row["seed"] == 0 and row["model"] == "bbox"
    assert row["beta"] is None and row["pool_size"] is None, "keys that do not apply to the run stay empty"
    trades = _config(**{"train.method": "trades", "train.beta": 2.0})
    assert result_rows([{"metric": "clean_accuracy", "value": 1.0, "n": 1}], trades, experiment="e", dataset="d")[0]["beta"] == 2.0


def test_two_runs_differing_only_in_beta_give_two_sets_of_rows(tmp_path):
    for beta in (1.0, 2.0):
        config = _config(**{"train.method": "trades", "train.beta": beta})
        rows = result_rows([{"metric": "clean_accuracy", "value": 10 * beta, "n": 4}], config, experiment="e", dataset="d")
        add_results(tmp_path / "e" / run_id(config) / "results.csv", rows)
    frame = gather_results(tmp_path / "e")
    assert len(frame) == 2 and sorted(frame.beta) == [1.0, 2.0] and frame.run_id.nunique() == 2
    assert sorted(frame.value) == [10.0, 20.0]


def test_reading_a_foreign_csv_fails(tmp_path):
    csv = tmp_path / "other.csv"
    pd.DataFrame({"a": [1]}).to_csv(csv, index=False)
    with pytest.raises(ValueError, match="not a results file"):
        read_results(csv)
    with pytest.raises(FileNotFoundError, match="no results"):
        gather_results(tmp_path / "missing")


def test_manifest_fields(tmp_path):
    manifest = write_manifest(tmp_path / "m.json", params={"lr": 0.1}, seed=3, device=torch.device("cpu"), wall_time_s=1.234)
    on_disk = json.loads((tmp_path / "m.json").read_text())
    assert on_disk["seed"] == 3 and on_disk["parameters"] == {"lr": 0.1} and on_disk["wall_time_s"] == 1.23
    assert "torch" in on_disk["packages"] and on_disk["device"].startswith("cpu")
    assert manifest["git_commit"]


def test_pixel_accuracy_ignores_unlabelled_pixels():
    true = torch.tensor([[[0, 1], [2, UNLABELLED]]])
    pred = torch.tensor([[[0, 1], [1, 2]]])
    assert pixel_accuracy(pred, true).item() == pytest.approx(2 / 3)


def test_dataset_summaries(tiny_dataset):
    table = images_per_class(tiny_dataset)
    assert table[["train", "val", "test"]].sum().tolist() == [40, 16, 16]
    assert (table["total"] == table[["train", "val", "test"]].sum(axis=1)).all()
    pixels = part_pixels(tiny_dataset, "train")
    assert pixels["pixel_share_%"].sum() == pytest.approx(100.0)
    assert pixels.loc[0, "name"] == "background"
    assert parts_per_class(tiny_dataset).sum() == len(pixels) - 1
