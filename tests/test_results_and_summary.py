"""Tidy results CSV, manifests, dataset summaries and the evaluation helpers."""
import json

import pandas as pd
import pytest
import torch

from partrobust.data.summary import images_per_class, part_pixels, parts_per_class
from partrobust.evaluation import pixel_accuracy
from partrobust.losses import UNLABELLED
from partrobust.results import RESULT_COLUMNS, append_results, result_rows, write_manifest


def _rows(value):
    return result_rows([{"metric": "clean_accuracy", "value": value, "n": 10}], run="r", dataset="d", model="m",
                       training="pgd", hparams={"eps": "8/255"})


def test_results_are_tidy_and_reruns_replace_rows(tmp_path):
    csv = tmp_path / "results.csv"
    append_results(csv, _rows(50.0))
    other = result_rows([{"metric": "pgd_accuracy", "value": 20.0, "n": 10}], run="r", dataset="d", model="m", training="pgd", hparams={"eps": "8/255"})
    append_results(csv, other)
    df = append_results(csv, _rows(60.0))
    assert list(df.columns) == RESULT_COLUMNS
    assert len(df) == 2
    assert df.set_index("metric").loc["clean_accuracy", "value"] == 60.0
    assert json.loads(df.hparams.iloc[0]) == {"eps": "8/255"}


def test_appending_to_a_foreign_csv_fails(tmp_path):
    csv = tmp_path / "other.csv"
    pd.DataFrame({"a": [1]}).to_csv(csv, index=False)
    with pytest.raises(ValueError, match="not a results file"):
        append_results(csv, _rows(1.0))


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
