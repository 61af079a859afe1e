"""The authors' released Table 1 weights: imported exactly (three layout eras, three datasets), refused by
name when they do not fit, loaded without running code, and evaluated by runs that train nothing."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, tiny_run_values
from partrobust.core.config import ParameterError
from partrobust.core.fileio import UnsafeCheckpointError, load_checkpoint
from partrobust.data import validate_prepared
from partrobust.models import ModelConfig, build_model
from partrobust.models.imported import load_imported, read_imported, write_imported
from partrobust.models.reference import ReferenceImportError, experiment_settings
from partrobust.models.weights import import_reference
from partrobust.models.weights import main as weights_main
from partrobust.runs import pipeline
from partrobust.runs.run import Run, execute_run
from partrobust.runs.runconfig import make_run_config, run_id
from partrobust.runs.sweep import expand, load_plan
from reference_fixtures import checkpoint, namespace, our_model, reference_model

TINY = {"resnet": "resnet10t", "downsampled": "tu-resnet10t", "bbox": "tu-resnet10t"}
DATASETS = ("part_imagenet", "cityscapes", "pascal_part")
ERA_FOUND = {("resnet", "B"): "B/C", ("resnet", "C"): "B/C", ("bbox", "B"): "B/C", ("bbox", "C"): "B/C"}


def _import(tmp_path, kind, dataset, era="B", args=True, seed=0, backbone=None, size=224, **kwargs):
    """Our random model -> a file in the reference's layout -> imported; returns (source model, imported model, result)."""
    backbone = backbone or TINY[kind]
    ours = our_model(kind, dataset, backbone, seed)
    reference = reference_model(ours, kind, era).eval()
    source = tmp_path / f"{kind}-{era}-{dataset}.pth"
    torch.save(checkpoint(reference, namespace(kind, dataset, backbone) if args else None), source)
    result = import_reference(source, kind, dataset, out=tmp_path / "out" / f"{kind}-{era}-{dataset}.pt", **kwargs)
    state = read_imported(result.checkpoint)
    imported = load_imported(build_model(ModelConfig(**state["model_config"])), state)
    return reference, imported, result


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("era", ["A", "B", "C"])
@pytest.mark.parametrize("kind", ["resnet", "downsampled", "bbox"])
def test_an_imported_file_gives_the_logits_of_the_model_it_was_saved_from(tmp_path, kind, era, dataset):
    """Random weights and BN statistics, module. prefixes, the full checkpoint dict with its Namespace;
    logits on random inputs equal the reference-layout model's (its own forward, float64). 64 px keeps this
    fast: the mapping does not depend on the size (the paper-size test below runs at 224 px)."""
    reference, imported, result = _import(tmp_path, kind, dataset, era)
    assert result.era == ERA_FOUND.get((kind, era), era)
    assert result.training == "pgd" and result.model_settings["name"] == kind
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        expected, got = reference.double()(x), imported.double()(x)
    assert expected.shape == (2, {"part_imagenet": 11, "cityscapes": 2, "pascal_part": 5}[dataset])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    config = yaml.safe_load(result.config.read_text())
    assert config["model"]["weights_sha256"] == hashlib.sha256(result.checkpoint.read_bytes()).hexdigest()
    assert config["model"]["weights_training"] == "pgd" and config["eval"]["pgd_restarts"] == 5


def test_swapped_layers_of_equal_shape_change_the_logits(tmp_path):
    """Cityscapes' Downsampled head has BN(5D) = BN(50): a file with those two swapped imports (names and shapes
    fit) but gives other logits, which is what the logits test above would catch in the mapping."""
    ours = our_model("downsampled", "cityscapes", TINY["downsampled"])
    reference = reference_model(ours, "downsampled", "B").eval()
    state = checkpoint(reference, None)
    for name in ("weight", "bias", "running_mean", "running_var"):
        a, b = f"module._model.core_model.2.{name}", f"module._model.core_model.6.{name}"
        state[a], state[b] = state[b].clone(), state[a].clone()
    torch.save(state, tmp_path / "swapped.pth")
    result = import_reference(tmp_path / "swapped.pth", "downsampled", "cityscapes", out=tmp_path / "s.pt", training="pgd",
                              backbone=TINY["downsampled"])
    imported = load_imported(build_model(ModelConfig(**read_imported(result.checkpoint)["model_config"])), read_imported(result.checkpoint))
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        assert not torch.allclose(imported.double()(x), reference.double()(x), atol=1e-3)


@pytest.fixture(scope="module")
def full_size(tmp_path_factory):
    """One paper-size file per model (ResNet-50 / DeepLabv3+ ResNet-50, Part-ImageNet), built once."""
    folder = tmp_path_factory.mktemp("full")
    return {kind: _import(folder, kind, "part_imagenet", era, backbone="resnet50")
            for kind, era in (("resnet", "B"), ("downsampled", "C"), ("bbox", "A"))}


@pytest.mark.parametrize("kind", ["resnet", "downsampled", "bbox"])
def test_the_paper_size_models_import_with_every_key(full_size, kind):
    reference, imported, result = full_size[kind]
    expected_keys = {"resnet": 322, "downsampled": 397, "bbox": 395}[kind]  # reference-checkpoints.md 2.2-2.5
    assert len(reference.state_dict()) == expected_keys and len(read_imported(result.checkpoint)["model"]) == expected_keys
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(imported(x), reference(x), rtol=1e-5, atol=1e-5)


def test_the_command_prints_what_it_read_and_wrote(tmp_path, capsys, monkeypatch):
    ours = our_model("bbox", "pascal_part", TINY["bbox"])
    torch.save(checkpoint(reference_model(ours, "bbox", "C"), namespace("bbox", "pascal_part", TINY["bbox"], "trades")),
               tmp_path / "bbox.pth")
    out = tmp_path / "imported" / "bbox-trades.pt"
    done = subprocess.run([sys.executable, "-m", "partrobust.weights", "import-reference", str(tmp_path / "bbox.pth"), "--model", "bbox",
                           "--dataset", "pascal_part", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "era B/C" in done.stdout and "experiment=part-wbbox-norm_img-semi" in done.stdout and "trades training" in done.stdout
    assert out.is_file() and out.with_suffix(".yaml").is_file()
    monkeypatch.chdir(REPO)  # main() moves to the repository root; monkeypatch moves back
    assert weights_main(["import-reference", str(tmp_path / "bbox.pth"), "--model", "downsampled", "--dataset", "pascal_part",
                         "--out", str(tmp_path / "x.pt")]) == 2
    assert "wrong model type" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()
    base = ["import-reference", str(tmp_path / "bbox.pth"), "--model", "bbox", "--dataset", "pascal_part", "--out", str(tmp_path / "x.pt")]
    assert weights_main([*base, "--eps", "16/255"]) == 2  # --eps is read as the run configs read budgets
    assert "args.epsilon is 0.031373 = 8.00/255, not the expected 16.00/255" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        weights_main([*base, "--eps", "eight"])
    assert stop.value.code == 2 and "--eps: expected a number or a fraction string like '8/255', got 'eight'" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


# --------------------------------------------------------------------------- refused by name


def _file(tmp_path, kind="downsampled", dataset="part_imagenet", era="B", args=True, edit=None, **changes):
    ours = our_model(kind, dataset, TINY[kind])
    data = checkpoint(reference_model(ours, kind, era), namespace(kind, dataset, TINY[kind], **changes) if args else None)
    if edit is not None:
        edit(data["state_dict"] if args else data)
    path = tmp_path / "file.pth"
    torch.save(data, path)
    return path


def _refused(path, kind, dataset, match, **kwargs):
    with pytest.raises(ReferenceImportError, match=match):
        import_reference(path, kind, dataset, out=path.with_name("out.pt"), **kwargs)
    assert not path.with_name("out.pt").exists()


def _swap(a, b):
    def edit(state):
        state[a], state[b] = state[b], state[a]
    return edit


def test_a_missing_an_extra_and_a_permuted_key_are_refused_by_name(tmp_path):
    _refused(_file(tmp_path, edit=lambda s: s.pop("module._model.core_model.6.running_var")), "downsampled", "part_imagenet",
             r"1 missing key\(s\) \['_model\.core_model\.6\.running_var'\]")
    _refused(_file(tmp_path, edit=lambda s: s.pop("module._model.segmenter.segmentation_head.0.bias")), "downsampled", "part_imagenet",
             r"missing key\(s\) \['_model\.segmenter\.segmentation_head\.0\.bias'\]")
    _refused(_file(tmp_path, "bbox", edit=lambda s: s.update({"module._model.core_model.1.weight": torch.zeros(5)})), "bbox",
             "part_imagenet", r"unexpected key\(s\) \['_model\.core_model\.1\.weight'\]")
    _refused(_file(tmp_path, edit=_swap("module._model.core_model.1.weight", "module._model.core_model.5.weight")), "downsampled",
             "part_imagenet", r"shape mismatch for 2 key\(s\): \['_model\.core_model\.1\.weight \[50, 205\] -> head\.classifier\.0\.weight "
             r"\[205, 41, 4, 4\]")

    def rename(state):
        state["module._model.5.core_model.weight"] = state.pop("module._model.core_model.5.weight")
    _refused(_file(tmp_path, edit=rename), "downsampled", "part_imagenet",
             r"unexpected key\(s\) \['_model\.5\.core_model\.weight'\].*missing key\(s\) \['_model\.core_model\.5\.weight'\]")
    _refused(_file(tmp_path, edit=lambda s: s["module.mean"].add_(0.1)), "downsampled", "part_imagenet", r"normalisation buffer mean")
    _refused(_file(tmp_path, edit=lambda s: s.update({"extra": torch.zeros(1)})), "downsampled", "part_imagenet",
             r"some keys start with 'module\.' and some do not")


def test_a_wrong_class_or_part_count_model_type_or_dataset_is_refused_saying_which(tmp_path):
    cityscapes = _file(tmp_path, dataset="cityscapes", args=False)
    _refused(cityscapes, "downsampled", "part_imagenet", r"wrong class count: .*core_model\.8\.weight has 2 outputs.*11 classes",
             training="pgd", backbone=TINY["downsampled"])
    _refused(_file(tmp_path, num_classes=12), "downsampled", "part_imagenet", r"wrong class count: the file's args\.num_classes is 12")
    _refused(_file(tmp_path, seg_labels=40), "downsampled", "part_imagenet", r"wrong part count: the file's args\.seg_labels is 40")
    other = build_model(ModelConfig(name="downsampled", encoder=TINY["downsampled"], num_classes=11, num_parts=20))
    torch.save(checkpoint(reference_model(other, "downsampled", "B"), None), tmp_path / "parts.pth")
    _refused(tmp_path / "parts.pth", "downsampled", "part_imagenet", r"wrong part count: .*segmentation_head\.0\.weight has 21 channels",
             training="pgd", backbone=TINY["downsampled"])
    resnet = _file(tmp_path, "resnet", args=False)
    _refused(resnet, "downsampled", "part_imagenet", r"wrong model type: the file holds a resnet model .*--model resnet", training="pgd")
    _refused(_file(tmp_path, "bbox", era="A", args=False), "downsampled", "part_imagenet", r"wrong model type: the file holds a bbox model",
             training="pgd")
    _refused(_file(tmp_path, "resnet"), "bbox", "part_imagenet", r"wrong model type: the file's experiment 'normal' is a resnet model")
    _refused(_file(tmp_path), "downsampled", "pascal_part", r"wrong dataset: the file's args\.dataset is 'part-imagenet'")
    _refused(_file(tmp_path, epsilon=16 / 255), "downsampled", "part_imagenet", r"args\.epsilon .* 16\.00/255")
    _refused(_file(tmp_path, adv_train="trades"), "downsampled", "part_imagenet", r"adv_train is 'trades'.*--training pgd", training="pgd")
    _refused(_file(tmp_path, args=False), "downsampled", "part_imagenet", r"bare state dict .* --training")


def test_function_changing_settings_come_from_the_experiment_name():
    assert experiment_settings("downsampled", "part-pooling-4-semi") == {
        "name": "downsampled", "output_stride": 16, "pool_size": 4, "drop_background": False, "concat_input": False}
    assert experiment_settings("downsampled", "part-pooling-8-nobg-semi")["drop_background"] is True
    assert experiment_settings("downsampled", "part-pooling-8-nobg-semi")["pool_size"] == 8
    assert experiment_settings("bbox", "part-wbbox-norm_img-semi") == {"name": "bbox", "output_stride": 16, "bbox_score": "logits"}
    for kind, name, match in [("downsampled", "part-pooling-4-bn-semi", r"\['bn'\]"), ("bbox", "part-wbbox-norm_img-conv1d-semi", "conv1d"),
                              ("bbox", "part-wbbox-semi", "norm_img"), ("downsampled", "object-pooling-4-semi", "'object'"),
                              ("resnet", "part-pooling-4-semi", "wrong model type")]:
        with pytest.raises(ReferenceImportError, match=match):
            experiment_settings(kind, name)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_crafted_pickle_in_such_a_file_does_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ours = our_model("resnet", "cityscapes", TINY["resnet"])
    for payload in ({"extra": _RunsCode()}, {"args": argparse.Namespace(experiment=_RunsCode())}):
        data = checkpoint(reference_model(ours, "resnet", "B"), namespace("resnet", "cityscapes", TINY["resnet"]))
        data.update(payload)
        torch.save(data, tmp_path / "evil.pth")
        with pytest.raises(UnsafeCheckpointError, match="posix.system|os.system|refused"):
            import_reference(tmp_path / "evil.pth", "resnet", "cityscapes", out=tmp_path / "o.pt")
        assert not (tmp_path / "pwned").exists()
    torch.save({"args": argparse.Namespace(a=1), "x": torch.zeros(1)}, tmp_path / "ns.pt")
    with pytest.raises(UnsafeCheckpointError):  # the allow-list is for the importer's call only
        load_checkpoint(tmp_path / "ns.pt")


# --------------------------------------------------------------------------- evaluation-only runs


def _imported_tiny(path, dataset, seed, training="pgd"):
    meta = validate_prepared(dataset)
    config = ModelConfig(name="bbox", encoder="tu-resnet10t", num_classes=meta.num_classes, num_parts=meta.num_parts)
    model = build_model(config)
    torch.manual_seed(seed)
    for p in model.parameters():
        p.data.add_(0.01 * torch.randn_like(p))
    return write_imported(path, model.state_dict(), config, training, meta.name, {"file": f"seed{seed}"})


def _config_file(tmp_path, dataset, weights, name="run.yaml", **model):
    values = tiny_run_values(dataset)
    values["model"] = {"name": "bbox", "encoder": "tu-resnet10t", "weights": str(weights), "weights_training": "pgd", **model}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return path


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "partrobust.run", *map(str, args)], capture_output=True, text=True, timeout=600, cwd=REPO)


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.notebook
def test_an_evaluation_only_run_trains_nothing_and_its_rows_carry_the_weights_hash(tmp_path, tiny_dataset):
    first, second = _imported_tiny(tmp_path / "a.pt", tiny_dataset, 0), _imported_tiny(tmp_path / "b.pt", tiny_dataset, 1)
    runs = tmp_path / "runs"
    done = _cli(_config_file(tmp_path, tiny_dataset, first), "--runs-root", runs, "--experiment", "released", "--notebook")
    assert done.returncode == 0, done.stderr[-3000:]
    values = yaml.safe_load(_config_file(tmp_path, tiny_dataset, second, "second.yaml").read_text())
    execute_run(make_run_config(values), "released", runs)  # the pipeline's in-process runner
    folders = sorted((runs / "released").glob("bbox-pgd-imported-*"))
    assert len(folders) == 2  # a second file gives a second run
    for folder, weights in zip(folders, sorted([first, second], key=lambda w: run_id(make_run_config(
            yaml.safe_load(_config_file(tmp_path, tiny_dataset, w, "check.yaml").read_text()))))):
        results = pd.read_csv(folder / "results.csv")
        assert set(results["weights_sha256"]) == {hashlib.sha256(weights.read_bytes()).hexdigest()}
        assert {"clean_accuracy", "pgd_accuracy", "clean_pixel_accuracy"} <= set(results["metric"]) and set(results["training"]) == {"pgd"}
        assert results["lr"].isna().all() and not (folder / "train").exists()  # nothing trained, training keys empty
        assert json.loads((folder / "status.json").read_text())["state"] == "done"
    assert sum((folder / "01_pgd_training.ipynb").exists() for folder in folders) == 1  # the first ran as notebook 01


def test_a_run_of_imported_weights_is_refused_before_compute_when_they_do_not_fit(tmp_path, tiny_dataset):
    weights = _imported_tiny(tmp_path / "a.pt", tiny_dataset, 0)
    values = yaml.safe_load(_config_file(tmp_path, tiny_dataset, weights).read_text())
    config = make_run_config(values)
    assert config.model.weights_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest() and run_id(config).startswith("bbox-pgd-imported-")
    other = _imported_tiny(tmp_path / "b.pt", tiny_dataset, 1)
    assert run_id(make_run_config(values, {"model.weights": str(other)})) != run_id(config)
    with pytest.raises(ParameterError, match=r"model\.weights_sha256: .* the file changed"):
        make_run_config(values, {"model.weights_sha256": "0" * 64})
    absent = make_run_config(values, {"model.weights": str(tmp_path / "absent.pt")})  # a preview may list it ...
    with pytest.raises(ParameterError, match=r"model\.weights: .*absent\.pt does not exist.*import-reference"):
        Run(absent, runs_root=tmp_path / "runs")  # ... a run refuses it before compute
    with pytest.raises(ParameterError, match=r"model\.weights_training: .* holds pgd training, the run says trades"):
        Run(make_run_config(values, {"model.weights_training": "trades"}), runs_root=tmp_path / "runs")
    with pytest.raises(ParameterError, match=r"model\.name: .* holds a bbox model, the run says downsampled"):
        Run(make_run_config(values, {"model.name": "downsampled"}), runs_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("dataset", DATASETS)
def test_the_released_params_files_sweep_nine_imported_files(tmp_path, monkeypatch, dataset):
    plan = load_plan(REPO / "params" / f"{dataset}_released.yaml")
    monkeypatch.chdir(tmp_path)
    for block in plan.blocks:
        for point in block.points():
            path = tmp_path / point["model.weights"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(point["model.weights"].encode())  # distinct contents: only the hash is read here
    configs = expand(plan)
    labels = sorted((c.model.name, c.training) for c in configs)
    assert labels == sorted((m, t) for m in ("resnet", "downsampled", "bbox") for t in ("normal", "pgd", "trades"))
    assert len({run_id(c) for c in configs}) == 9 and all(c.imported and c.eval.autoattack for c in configs)
    assert all(c.model.weights == f"runs/released/{dataset}/{c.model.name}-{c.training}.pt" for c in configs)
    assert "05_figures" in plan.notebooks


def test_released_runs_are_their_own_source_in_table_1(tmp_path):
    """A released run and one of ours with the same dataset, model and training: table 1 shows ours alone in
    its main part and the released one in its own section, each beside the paper's number, never averaged."""
    from partrobust.core.results import RESULT_COLUMNS, add_results, gather_results
    from partrobust.report.paper import released_table, settings, side_by_side
    from partrobust.report.regenerate import table_markdown

    def rows(run, value, weights):
        base = dict.fromkeys(RESULT_COLUMNS)
        base.update(experiment="x", run_id=run, dataset="part_imagenet", training="pgd", model="downsampled", pool_size=4,
                    drop_background=False, concat_input=False, labels="parts", label_fraction=1.0, seed=0, evaluators="none",
                    weights_sha256=weights, n=100, note="", config_hash=run)
        return [{**base, "metric": "clean_accuracy", "value": value},
                {**base, "metric": "autoattack_accuracy", "value": value / 2, "eps": "8/255"}]

    add_results(tmp_path / "ours" / "results.csv", rows("downsampled-pgd-1", 80.0, None))
    add_results(tmp_path / "released" / "results.csv", rows("downsampled-pgd-imported-2", 86.0, "ab" * 32))
    results = gather_results(tmp_path / "ours", tmp_path / "released")
    ours = settings(results)
    assert set(ours["source"]) == {"part_imagenet", "released:part_imagenet"}
    side, released = side_by_side(results, 1, ours=ours), released_table(results, 1, ours=ours)
    cell = (side["dataset"] == "part_imagenet") & (side["model"] == "downsampled") & (side["training"] == "pgd") & (side["metric"] == "clean_accuracy")
    assert side.loc[cell, "ours"].tolist() == [80.0] and side.loc[cell, "run_ids"].tolist() == ["downsampled-pgd-1"]
    cell = (released["model"] == "downsampled") & (released["training"] == "pgd") & (released["metric"] == "clean_accuracy") & (released["status"] == "ours")
    assert released.loc[cell, "ours"].tolist() == [86.0] and released.loc[cell, "paper"].tolist() == [85.6]
    text = table_markdown(side, side.iloc[:0], 1, released)
    assert "## Released weights, evaluated here" in text and "released weights, evaluated here (Part-ImageNet)" in text


def test_the_run_id_follows_the_weights_hash_not_their_path(tmp_path, tiny_dataset):
    weights = _imported_tiny(tmp_path / "a.pt", tiny_dataset, 0)
    values = yaml.safe_load(_config_file(tmp_path, tiny_dataset, weights).read_text())
    moved = tmp_path / "elsewhere.pt"
    moved.write_bytes(weights.read_bytes())
    assert run_id(make_run_config(values)) == run_id(make_run_config(values, {"model.weights": str(moved)}))


def test_a_preview_of_the_released_sweep_lists_the_files_to_import(tmp_path, capsys):
    """`--dry-run` works before anything is imported: it lists the nine files to import instead of refusing."""
    assert pipeline.run(REPO / "params" / "part_imagenet_released.yaml", runs_root=tmp_path, dry_run=True, repo=REPO) == []
    shown = capsys.readouterr().out
    listed = shown.split("to import before evaluating", 1)[1]
    assert all(f"runs/released/part_imagenet/{m}-{t}.pt" in listed for m in ("resnet", "downsampled", "bbox")
               for t in ("normal", "pgd", "trades"))
