"""ImageNet weights as a first-class input: a verified local cache, and runs that refuse to start without them."""
from __future__ import annotations

import hashlib
import json

import pytest
import torch
import yaml
from conftest import REPO

import partrobust.models.weights as weights
from partrobust.core.config import ParameterError
from partrobust.runs.pipeline import run as run_pipeline
from partrobust.runs.runconfig import identity, make_run_config
from partrobust.models.weights import WEIGHTS, WeightsError, WeightsFile, fetch, params_lines, status


def _published(tmp_path, name: str = "tiny-{}.pth", corrupt_prefix: bool = False) -> WeightsFile:
    """A local 'published' checkpoint whose file name carries its SHA-256 prefix, served by file://."""
    source = tmp_path / "server" / "tmp.pth"
    source.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"conv1.weight": torch.arange(12.0).reshape(1, 3, 2, 2)}, source)
    prefix = hashlib.sha256(source.read_bytes()).hexdigest()[:8]
    published = source.with_name(name.format("00000000" if corrupt_prefix else prefix))
    source.rename(published)
    return WeightsFile("baseline", "model.pretrained_baseline", published.as_uri(), "00000000" if corrupt_prefix else prefix, "test")


def test_fetch_downloads_verifies_records_and_does_not_download_twice(tmp_path):
    item = _published(tmp_path)
    cache = tmp_path / "cache"
    path = fetch(item, cache, progress=False, check_architecture=False)
    assert path == cache / item.filename and torch.load(path, weights_only=True)["conv1.weight"].shape == (1, 3, 2, 2)
    record = json.loads((cache / "weights.json").read_text())[item.filename]
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() and record["sha256"].startswith(item.sha256_prefix)
    assert status(item, cache) == "verified"
    (tmp_path / "server" / item.filename).unlink()  # the source is gone: a verified cached copy needs no download
    assert fetch(item, cache, progress=False, check_architecture=False) == path
    path.write_bytes(path.read_bytes() + b"x")
    assert status(item, cache).startswith("wrong checksum")


def test_a_download_with_the_wrong_checksum_is_not_kept(tmp_path):
    item = _published(tmp_path, corrupt_prefix=True)
    item = WeightsFile(item.role, item.config_key, item.url, "deadbeef", item.description)
    with pytest.raises(WeightsError, match="does not start with deadbeef"):
        fetch(item, tmp_path / "cache", progress=False, check_architecture=False)
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_download_that_does_not_fit_the_architecture_is_not_kept(tmp_path, monkeypatch):
    item = _published(tmp_path)

    def wrong_architecture(item, path):
        raise KeyError(f"{path} does not match ResNet: missing keys ['bn1.weight']")

    monkeypatch.setattr(weights, "verify_architecture", wrong_architecture)
    with pytest.raises(KeyError, match="missing keys"):
        fetch(item, tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache").iterdir()) == []


def test_an_unreachable_url_says_how_to_place_the_file_by_hand(tmp_path):
    item = WeightsFile("encoder", "model.pretrained_encoder", (tmp_path / "absent-12345678.pth").as_uri(), "12345678", "x")
    with pytest.raises(WeightsError, match=r"cannot download .*copy absent-12345678\.pth into"):
        fetch(item, tmp_path / "cache", progress=False)


def test_the_paper_params_files_point_at_the_cached_weights():
    lines = yaml.safe_load("config:\n" + params_lines())["config"]["model"]
    for name in ("part_imagenet", "cityscapes", "pascal_part", "part_imagenet_sweep"):
        model = yaml.safe_load((REPO / "params" / f"{name}.yaml").read_text())["config"]["model"]
        assert model["pretrained_baseline"] == lines["pretrained_baseline"] == f"runs/weights/{WEIGHTS['baseline'].filename}"
        assert model["pretrained_encoder"] == lines["pretrained_encoder"] == f"runs/weights/{WEIGHTS['encoder'].filename}"
    assert WEIGHTS["baseline"].filename == "resnet50_ram-a26f946b.pth" and WEIGHTS["encoder"].filename == "resnet50-19c8e357.pth"


@pytest.mark.parametrize("model", [{"name": "resnet", "arch": "resnet50"}, {"name": "bbox", "encoder": "resnet50"}])
def test_a_resnet50_without_imagenet_weights_is_refused_unless_from_scratch(model):
    key = "pretrained_baseline" if model["name"] == "resnet" else "pretrained_encoder"
    values = {"data": {"root": "d"}, "model": model}
    with pytest.raises(ParameterError, match=rf"model\.{key}: a resnet50 .* without ImageNet weights.*partrobust\.weights fetch"):
        make_run_config(values)
    scratch = make_run_config(values, {"model.from_scratch": True})
    assert "model.from_scratch" not in identity(scratch)  # a confirmation, not a different run
    with pytest.raises(ParameterError, match=rf"model\.from_scratch: true contradicts model\.{key}"):
        make_run_config(values, {"model.from_scratch": True, f"model.{key}": "w.pth"})
    make_run_config(values, {f"model.{key}": "w.pth"})  # the paper's way


def test_a_params_file_whose_weights_are_missing_is_refused_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    doc = {"experiment": "w", "config": {"data": {"root": str(tmp_path / "nowhere")},
                                         "model": {"name": "resnet", "pretrained_baseline": str(tmp_path / "absent.pth")}}}
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ParameterError, match=r"model\.pretrained_baseline: weights file .*absent\.pth does not exist"):
        run_pipeline(path, runs_root=tmp_path / "runs", progress=False)
    doc["config"]["model"] = {"name": "resnet"}
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ParameterError, match="without ImageNet weights"):
        run_pipeline(path, runs_root=tmp_path / "runs", progress=False)
    assert not (tmp_path / "runs").exists()


def test_the_architecture_check_accepts_the_reference_layouts_and_names_what_is_missing(tmp_path):
    """The published files are a timm resnet50 and a torchvision resnet50 state dict (with their
    1000-way fc): both load completely; a file without a key is refused, naming it."""
    import timm
    import torchvision

    layouts = {"baseline": timm.create_model("resnet50", pretrained=False).state_dict(),
               "encoder": torchvision.models.resnet50(weights=None).state_dict()}
    for role, state in layouts.items():
        path = tmp_path / f"{role}.pth"
        torch.save(state, path)
        weights.verify_architecture(WEIGHTS[role], path)
        state.pop("layer3.2.bn2.running_var")
        torch.save(state, path)
        with pytest.raises(KeyError, match=r"missing keys \['layer3\.2\.bn2\.running_var'\]"):
            weights.verify_architecture(WEIGHTS[role], path)
