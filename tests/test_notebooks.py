"""Notebooks: committed clean, parameter files match them, papermill runs them end to end."""
import json
from pathlib import Path

import pandas as pd
import papermill as pm
import pytest
import yaml

from partrobust.config import ParameterError
from partrobust.pipeline import check_parameters, load_plan, run

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
PARAM_FILES = sorted((REPO / "params").glob("*.yaml"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_committed_without_outputs_with_one_parameters_cell(path):
    nb = json.loads(path.read_text())
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb["cells"] if c["cell_type"] == "code")
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: p.name)
def test_parameter_files_name_only_real_parameters(path):
    _, plan = load_plan(path, REPO)
    check_parameters(REPO, plan, str(path))


def test_pipeline_rejects_unknown_parameters_before_running(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"common": {"run_dir": str(tmp_path / "run")}, "notebooks": {"00_data_prep": {"n_trian": 10}}}))
    with pytest.raises(ParameterError, match="n_trian"):
        run(bad, repo=REPO, progress=False)
    assert not (tmp_path / "run" / "00_data_prep.ipynb").exists()
    missing = tmp_path / "missing.yaml"
    missing.write_text(yaml.safe_dump({"common": {"run_dir": "x"}, "notebooks": {"07_nothing": {}}}))
    with pytest.raises(ParameterError, match="07_nothing"):
        run(missing, repo=REPO, progress=False)


@pytest.mark.slow
def test_wrong_parameter_type_fails_in_the_notebook_with_the_key(tmp_path):
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(
            str(REPO / "notebooks" / "00_data_prep.ipynb"), str(tmp_path / "out.ipynb"),
            parameters={"n_train": "many", "run_dir": str(tmp_path)}, kernel_name="python3", cwd=str(REPO), progress_bar=False,
        )
    assert err.value.ename == "ParameterError" and "n_train" in err.value.evalue


TINY = {
    "00_data_prep": {"dataset": "synthetic", "num_classes": 4, "image_size": 32, "n_train": 48, "n_val": 16, "n_test": 16,
                     "workers": 1, "variants": ["object", "bbox"]},
    "01_pgd_training": {
        "models": ["resnet", "downsampled", "bbox"], "arch": "resnet10t", "encoder": "tu-resnet10t",
        "crop_size": 32, "resize_size": 32, "batch_size": 16, "train_limit": 32, "epochs_clean": 1, "epochs_adv": 1,
        "train_steps": 1, "val_steps": 1, "val_limit": 16, "test_limit": 8, "test_pgd_steps": 2, "test_pgd_restarts": 2,
        "autoattack": True, "autoattack_attacks": ["apgd-ce", "apgd-t"], "device": "cpu",
    },
}


@pytest.mark.slow
def test_papermill_runs_notebooks_00_and_01(tmp_path):
    run_dir = tmp_path / "run"
    data = tmp_path / "data"
    plan = {
        "common": {"run_dir": str(run_dir), "seed": 0, "progress": False},
        "notebooks": {
            "00_data_prep": {**TINY["00_data_prep"], "output_root": str(data)},
            "01_pgd_training": {**TINY["01_pgd_training"], "dataset_root": str(data / "synthetic")},
        },
    }
    params_file = tmp_path / "tiny.yaml"
    params_file.write_text(yaml.safe_dump(plan))
    outputs = run(params_file, repo=REPO, progress=False)
    assert [p.name for p in outputs] == ["00_data_prep.ipynb", "01_pgd_training.ipynb"]

    results = pd.read_csv(run_dir / "results.csv")
    assert set(results.model) == {"resnet", "downsampled", "bbox"}
    for model, group in results.groupby("model"):
        metrics = dict(zip(group.metric, group.value))
        assert {"clean_accuracy", "pgd_accuracy", "autoattack_accuracy"} <= set(metrics)
        assert metrics["autoattack_accuracy"] <= metrics["clean_accuracy"]
        if model != "resnet":
            assert "clean_pixel_accuracy" in metrics
    assert (results.n == 8).all()
    figures = {p.name for p in (run_dir / "figures").glob("*.png")}
    assert {"00_synthetic_samples.png", "00_synthetic_object_samples.png", "00_synthetic_bbox_samples.png",
            "01_clean_vs_adversarial.png", "01_bbox_masks.png"} <= figures
    assert (data / "synthetic-bbox" / "metadata.json").exists()
    manifest = json.loads((run_dir / "01_pgd_training" / "manifest.json").read_text())
    assert {"git_commit", "parameters", "packages", "device", "seed", "wall_time_s"} <= set(manifest)
    for model in ("resnet", "downsampled", "bbox"):
        assert (run_dir / "01_pgd_training" / model / "pgd" / "best.pt").exists()
