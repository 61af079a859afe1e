"""Notebooks: committed clean, params files match them, papermill runs the pipeline end to end, in a kernel of
the interpreter that runs the tests."""
import json
import os
import sys
from pathlib import Path

import nbformat
import pandas as pd
import papermill as pm
import pytest
import yaml

from partrobust.core.config import ParameterError
from partrobust.runs.notebooks import KERNELS_ENV, execute, python_kernel
from partrobust.runs.pipeline import notebook_plan, run
from partrobust.core.results import gather_results
from partrobust.runs.runconfig import run_id
from partrobust.runs.sweep import expand, load_plan
from partrobust.runs.texture_cue import texture_cue_configs
from partrobust.runs.run import execute_run

from conftest import KERNEL, copy_experiment, train_in_process, write_mini_paper_tables, write_params

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
PARAM_FILES = sorted((REPO / "params").glob("*.yaml"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_committed_without_outputs_with_one_parameters_cell(path):
    from partrobust.core.config import PARAMETERS_MARKER
    from partrobust.runs.nbclean import clean, dumps

    nb = json.loads(path.read_text())
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    assert "".join(tagged[0]["source"]).startswith(PARAMETERS_MARKER + " ("), "from_namespace finds the cell by its first line"
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb["cells"] if c["cell_type"] == "code")
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert dumps(clean(nb)) == path.read_text(), "stored as the git filter (and Jupyter) writes it"


def test_git_stores_notebooks_without_outputs(tmp_path):
    """With the filter make install configures, a notebook run and saved in Lab (outputs, execution counts, Lab's
    metadata) is unchanged for git (git status may list it until `git add`, which then stages nothing), and what
    git stores has no outputs."""
    import subprocess

    def git(*args):
        return subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    git("config", "user.email", "t@example.org")
    git("config", "user.name", "t")
    git("config", "filter.partrobust-notebook.clean", f"'{sys.executable}' -m partrobust.runs.nbclean")
    git("config", "filter.partrobust-notebook.smudge", "cat")
    (tmp_path / ".gitattributes").write_text((REPO / ".gitattributes").read_text())
    source = REPO / "notebooks" / "01_pgd_training.ipynb"
    (tmp_path / "nb.ipynb").write_text(source.read_text())
    git("add", ".")
    git("commit", "-qm", "x")
    nb = json.loads(source.read_text())
    nb["metadata"]["language_info"] = {"name": "python", "version": "3.11.7", "mimetype": "text/x-python", "file_extension": ".py"}
    nb["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2, "version_minor": 0}}
    for i, cell in enumerate(c for c in nb["cells"] if c["cell_type"] == "code"):
        cell.update(execution_count=i + 1, outputs=[{"name": "stdout", "output_type": "stream", "text": ["x\n"]}])
        cell["metadata"]["execution"] = {"iopub.status.busy": "2026-01-01T00:00:00"}
    (tmp_path / "nb.ipynb").write_text(json.dumps(nb, indent=2))
    assert git("diff") == "", "the saved notebook's content is unchanged for git"
    git("add", "nb.ipynb")
    assert git("status", "--porcelain") == "", "nothing to commit"
    assert '"outputs": []' in git("show", "HEAD:nb.ipynb") and git("show", "HEAD:nb.ipynb") == source.read_text()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_has_a_parameters_class_its_defaults_satisfy(path, monkeypatch):
    """The parameters cell and its `Section` (NOTEBOOK_PARAMS) declare the same names, and the
    defaults validate, so a params file can be checked before the notebook runs."""
    from partrobust.core.config import validate
    from partrobust.runs.notebooks import notebook_defaults, params_class

    monkeypatch.chdir(REPO)
    cls = params_class(path.stem)
    defaults = notebook_defaults(REPO, path.stem)
    assert set(defaults) == set(cls.model_fields)
    validate(cls, defaults)


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: p.name)
def test_params_files_are_valid_whole(path, tmp_path, monkeypatch):
    """Every notebook parameter (name, type, range) and every run config of every params file validates.

    The real datasets' raw folders are not on this machine, so they are created empty (relative
    paths resolve against a temporary working folder); their absence is tested separately.
    """
    plan = load_plan(path)
    monkeypatch.chdir(tmp_path)
    for values in plan.prepare.values():
        if (values or {}).get("raw_root"):
            (tmp_path / values["raw_root"]).mkdir(parents=True)
    notebook_plan(plan, path, "runs", REPO)
    configs = expand(plan, str(path))
    assert configs or plan.notebooks or plan.prepare


def test_pipeline_rejects_bad_params_before_running(tmp_path):
    def write(name, doc):
        path = tmp_path / name
        path.write_text(yaml.safe_dump(doc))
        return path

    runs = tmp_path / "runs"
    cases = [
        (write("nb.yaml", {"experiment": "x", "prepare": {"00_data_prep": {"n_trian": 10}}}), "n_trian"),
        (write("missing.yaml", {"experiment": "x", "notebooks": {"07_nothing": {}}}), "07_nothing"),
        (write("key.yaml", {"experiment": "x", "config": {"data": {"root": "d"}}, "sweep": {"grid": {"train.btea": [1, 2]}}}),
         r"sweep block 1.*train\.btea: unknown key"),
        (write("top.yaml", {"experiment": "x", "sweeps": {}}), "sweeps: unknown key"),
        (write("zip.yaml", {"experiment": "x", "config": {"data": {"root": "d"}}, "sweep": {"zip": {"seed": [0, 1], "train.lr": [0.1]}}}),
         "equal lengths"),
    ]
    for path, message in cases:
        with pytest.raises(ParameterError, match=message):
            run(path, runs_root=runs, repo=REPO, progress=False)
    assert not runs.exists(), "nothing ran"



@pytest.mark.slow
@pytest.mark.notebook
def test_dry_run_and_data_conversion_need_no_weights(tmp_path, capsys):
    """The runs' ImageNet weights are needed to train, not to preview a params file or convert its data: --dry-run
    lists the missing files as something to fetch, --notebooks 00 prepares the data, a real run is refused first."""
    data, runs, missing = tmp_path / "data", tmp_path / "runs", tmp_path / "weights" / "resnet50.pth"
    plan = {"experiment": "noweights",
            "prepare": {"00_data_prep": {"dataset": "synthetic", "num_classes": 3, "image_size": 16, "n_train": 6, "n_val": 3,
                                         "n_test": 3, "output_root": str(data), "progress": False}},
            "config": {**TINY_RUN, "data": {**TINY_RUN["data"], "root": str(data / "synthetic")},
                       "model": {**TINY_RUN["model"], "name": "resnet", "pretrained_baseline": str(missing)}}}
    params_file = write_params(tmp_path / "noweights.yaml", plan)
    assert run(params_file, runs_root=runs, repo=REPO, dry_run=True) == []
    assert f"to fetch before training (`make weights`, i.e. python -m partrobust.weights fetch): {missing}" in capsys.readouterr().out
    with pytest.raises(ParameterError, match="weights file .* does not exist"):
        run(params_file, runs_root=runs, repo=REPO, progress=False)
    assert not data.exists(), "refused before the data notebook"
    run(params_file, runs_root=runs, repo=REPO, progress=False, notebooks=["00"])
    assert (data / "synthetic" / "metadata.json").is_file()

@pytest.mark.slow
@pytest.mark.notebook
def test_wrong_parameter_type_fails_in_the_notebook_with_the_key(tmp_path):
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(
            str(REPO / "notebooks" / "00_data_prep.ipynb"), str(tmp_path / "out.ipynb"),
            parameters={"n_train": "many", "run_dir": str(tmp_path)}, kernel_name=KERNEL, cwd=str(REPO), progress_bar=False,
        )
    assert err.value.ename == "ParameterError" and "n_train" in err.value.evalue


TINY_RUN = {
    "data": {"crop_size": 32, "resize_size": 32, "batch_size": 16, "train_limit": 32},
    "model": {"arch": "resnet10t", "encoder": "tu-resnet10t"},
    "train": {"epochs_clean": 1, "epochs_adv": 1, "steps": 1, "val_steps": 1, "val_limit": 16, "val_every": 1},
    "eval": {"limit": 8, "pgd_steps": 2, "pgd_restarts": 2, "autoattack": True, "autoattack_attacks": ["apgd-ce", "apgd-t"],
             "autoattack_iterations": 10},
    "device": "cpu",
    "progress": False,
}


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.subprocess
def test_papermill_runs_the_pipeline_00_runs_02(tmp_path):
    """Notebook 00 makes data; one run goes through each runner (the process runner: ``python -m partrobust.run``;
    the notebook runner: notebook 01 executed in its folder) and the sweep's other five runs, finished before
    (trained in this process with the same steps), are skipped; notebook 02 reports on all seven, notebook 05 draws."""
    data = tmp_path / "data"
    runs = tmp_path / "runs"
    plan = {
        "experiment": "tiny",
        "prepare": {"00_data_prep": {"dataset": "synthetic", "num_classes": 4, "image_size": 32, "n_train": 48, "n_val": 16,
                                     "n_test": 16, "workers": 1, "variants": ["object", "bbox"], "output_root": str(data),
                                     "progress": False}},
        "config": {**TINY_RUN, "data": {**TINY_RUN["data"], "root": str(data / "synthetic")}},
        "sweep": [{"grid": {"model.name": ["resnet", "downsampled", "bbox"]}},
                  {"set": {"train.method": "trades", "model.name": "bbox"}, "grid": {"train.beta": [0.5, 2.0]}},
                  {"set": {"model.name": "resnet"}, "grid": {"seed": [1, 2]}}],  # 3 seeds of the PGD ResNet
        "notebooks": {"02_trades_sweep": {"run_missing": True}},
    }
    paper_tables = str(write_mini_paper_tables(tmp_path / "paper-tables"))  # notebook 05 with a paper_tables folder of its own
    plan["notebooks"]["05_figures"] = {"output_dir": str(tmp_path / "figs"), "paper_tables": paper_tables}
    params_file = write_params(tmp_path / "tiny.yaml", plan)
    ids = [run_id(c) for c in expand(load_plan(params_file), str(params_file))]
    assert len(ids) == 7
    by_process, by_notebook = ids[0], ids[2]  # the ResNet (seed 0) and the Bounding-Box model
    first = run(params_file, runs_root=runs, repo=REPO, progress=False, notebooks=["00"], only=[by_process], runner="process")
    assert [(r.run_id, r.state) for r in first] == [(by_process, "done")]
    earlier = set(ids) - {by_process, by_notebook}
    assert sorted(train_in_process(params_file, runs, earlier)) == sorted(earlier)
    reports = run(params_file, runs_root=runs, repo=REPO, progress=False)
    assert [r.state for r in reports] == ["done" if r.run_id == by_notebook else "skipped" for r in reports]
    assert [r.run_id for r in reports] == ids

    experiment = runs / "tiny"
    results = gather_results(experiment)
    assert results.run_id.nunique() == 7 and set(results.model) == {"resnet", "downsampled", "bbox"}
    assert sorted(results[results.training == "trades"].beta.unique()) == [0.5, 2.0]
    for _, group in results.groupby("run_id"):
        metrics = dict(zip(group.metric, group.value))
        assert {"clean_accuracy", "pgd_accuracy", "autoattack_accuracy"} <= set(metrics)
        assert metrics["autoattack_accuracy"] <= metrics["clean_accuracy"]
        if group.model.iloc[0] != "resnet":
            assert "clean_pixel_accuracy" in metrics
    assert (results.n == 8).all()
    for report in reports:
        folder = report.run_dir
        assert (folder / "01_pgd_training.ipynb").is_file() == (report.run_id == by_notebook) and (folder / "config.yaml").is_file()
        assert (folder / "log.txt").is_file() == (report.run_id in (by_process, by_notebook)), "a runner's output is in log.txt"
        assert (folder / "figures" / "training.png").is_file()
        manifest = json.loads((folder / "manifest.json").read_text())
        assert {"git_commit", "parameters", "packages", "device", "seed", "wall_time_s", "run_id", "config_hash"} <= set(manifest)
        assert json.loads((folder / "status.json").read_text())["state"] == "done"
    assert (experiment / "00_data_prep.ipynb").is_file() and (experiment / "02_trades_sweep.ipynb").is_file()
    assert (experiment / "figures" / "02_sweep_tradeoff.png").is_file()
    summary = pd.read_csv(experiment / "figures" / "seeds" / "summary.csv")  # notebook 02's across-seeds section
    resnet = summary[(summary.model == "resnet") & (summary.metric == "clean_accuracy")].iloc[0]
    assert resnet.seeds == 3 and resnet["mean"] == pytest.approx(results[(results.model == "resnet") & (results.metric == "clean_accuracy")].value.mean())
    assert set(summary[summary.model != "resnet"].seeds) == {1}
    assert (experiment / "figures" / "seeds" / "clean_vs_autoattack.png").is_file()
    assert {"00_synthetic_samples.png", "00_synthetic_bbox_samples.png"} <= {p.name for p in (experiment / "figures").glob("*.png")}

    figs = tmp_path / "figs"  # notebook 05 on the tiny runs: the paper's figures and the report
    assert (experiment / "05_figures.ipynb").is_file() and (figs / "REPORT.md").is_file()
    drawn = {p.name for p in (figs / "paper").glob("*.png")}
    assert {"fig04_tradeoff.png", "fig05_masks_builtin_tiny_bbox.png", "fig05_masks_builtin_tiny_downsampled.png"} <= drawn
    assert "built-in data (tiny)" in (figs / "paper" / "tables" / "table01.md").read_text()
    assert all((folder / "figures" / "examples.npz").is_file() for folder in experiment.glob("*-pgd-*") if "resnet" not in folder.name)

    again = run(params_file, runs_root=runs, repo=REPO, progress=False)
    assert [r.state for r in again] == ["skipped"] * 7, "a finished sweep does no work"


@pytest.mark.slow
@pytest.mark.notebook
def test_execute_streams_what_the_notebook_prints(tmp_path, capsys):
    """A terminal user of the batch runner sees the notebook's own output as it runs, not a cell counter."""
    parameters = {"dataset": "synthetic", "num_classes": 3, "image_size": 16, "n_train": 6, "n_val": 3, "n_test": 3,
                  "output_root": str(tmp_path / "data"), "run_dir": str(tmp_path), "progress": False}
    execute(REPO, "00_data_prep", parameters, tmp_path / "streamed.ipynb", stream=True)
    assert "synthetic-parts: 3 classes" in capsys.readouterr().out
    execute(REPO, "00_data_prep", parameters, tmp_path / "quiet.ipynb", stream=False)
    assert "synthetic-parts" not in capsys.readouterr().out


def test_parallel_runs_show_finished_lines_not_progress_bars():
    """With several jobs the runs' output is interleaved: each shows its finished lines (epoch
    records, messages), prefixed by the run id, and none of its progress-bar states."""
    from partrobust.runs.sweep import finished_lines

    chunk = ("\rclean 1/7:  50%|█████     | 60/125 [00:10<00:10,  5.9it/s, acc=41.0%]\r" + " " * 60 + "\r"
             '{"phase": "clean", "epoch": 1, "val_clean_acc": 44.0}\n'
             "AutoAttack:   0%|          | 0/2 [00:00<?, ?attack/s]\rAutoAttack: 100%|██████████| 2/2 [00:03<00:00,  1.5s/it]\n"
             "\n[partrobust] run resnet-normal-1a2b3c4d done in 12 s\n")
    assert finished_lines(chunk) == ['{"phase": "clean", "epoch": 1, "val_clean_acc": 44.0}',
                                     "[partrobust] run resnet-normal-1a2b3c4d done in 12 s"]


def robustness_plan(dataset: Path) -> dict:
    """Notebook 04's tiny study: two models x two seeds and a background-dropped Downsampled model, scored on the three benchmarks."""
    config = {**TINY_RUN, "data": {**TINY_RUN["data"], "root": str(dataset)},
              "train": {**TINY_RUN["train"], "epochs_adv": 0},
              "eval": {"limit": 8, "pgd": False, "pgd_steps": 2, "pgd_restarts": 1, "autoattack": False, "corruptions": ["fog", "contrast"], "corruption_severities": [1, 3],
                       "benchmarks": ["common_corruption", "spurious_correlation", "shape_vs_texture"]}}
    return {"experiment": "tiny_robust", "config": config,
            "sweep": [{"grid": {"model.name": ["resnet", "downsampled"], "seed": [0, 1]}},
                      {"set": {"model.name": "downsampled", "model.drop_background": True}, "grid": {"seed": [0]}}]}


ROBUSTNESS_PARAMETERS = {"texture_cue_probs": [1.0], "texture_cue_models": ["resnet"], "examples": 3}


@pytest.fixture(scope="session")
def tiny_robustness_runs(tiny_dataset, tmp_path_factory) -> tuple[Path, list[Path]]:
    """Notebook 04's runs and its texture-cue run, trained once in this process: (params file, experiment folders)."""
    folder = tmp_path_factory.mktemp("robustness")
    params_file = write_params(folder / "tiny_robust.yaml", robustness_plan(tiny_dataset))
    train_in_process(params_file, folder / "runs")
    configs = expand(load_plan(params_file), str(params_file))
    for config in texture_cue_configs(configs, ROBUSTNESS_PARAMETERS["texture_cue_probs"], ROBUSTNESS_PARAMETERS["texture_cue_models"],
                                      progress=False):
        execute_run(config, "tiny_robust_texture_cue", folder / "runs")
    return params_file, [folder / "runs" / "tiny_robust", folder / "runs" / "tiny_robust_texture_cue"]


@pytest.mark.slow
@pytest.mark.notebook
def test_papermill_runs_notebook_04_benchmarks_statistics_and_texture_cue(tmp_path, tiny_robustness_runs):
    """Notebook 04 on tiny runs: every run scored on the three benchmarks, the tables and figures drawn,
    and the texture-cue runs trained on the redrawn data. The runs are the session's (finished: the notebook skips them)."""
    runs, figs = tmp_path / "runs", tmp_path / "figs"
    params_file, experiments = tiny_robustness_runs
    for experiment in experiments:
        copy_experiment(experiment, runs)
    output = tmp_path / "04.ipynb"
    execute(REPO, "04_nonadversarial_robustness", {"params_file": str(params_file), "runs_root": str(runs), "runner": "process",
                                                   **ROBUSTNESS_PARAMETERS, "figures_dir": str(figs)}, output, stream=False)
    results = gather_results(runs / "tiny_robust")
    assert results.run_id.nunique() == 5
    per_run = results.groupby("run_id").metric.apply(set)
    wanted = {"clean_accuracy", "common_corruption_accuracy", "common_corruption_fog_accuracy", "common_corruption_severity3_accuracy",
              "spurious_correlation_accuracy", "shape_vs_texture_accuracy", "shape_vs_texture_texture_rate"}
    assert all(wanted <= metrics and "pgd_accuracy" not in metrics for metrics in per_run)
    assert (results[results.metric == "common_corruption_accuracy"].n == 8 * 2 * 2).all()
    cue = gather_results(runs / "tiny_robust_texture_cue")
    assert set(cue.dataset) == {"synthetic-parts-texture1"} and set(cue.model) == {"resnet"}
    assert {p.name for p in figs.glob("*.png")} == {"04_benchmark_examples.png", "04_benchmarks_vs_clean.png", "04_severity.png",
                                                    "04_texture_cue.png"}
    text = output.read_text()
    assert "p vs ResNet" in text and "not compared cell by cell" in text


def ablations_plan(dataset: Path) -> dict:
    """Notebook 03's tiny study: a training-side section (part labels, 3 trainings) and the four attack-side
    sections, which share one evaluation-only run of the trained Downsampled model."""
    config = {**TINY_RUN, "data": {**TINY_RUN["data"], "root": str(dataset)},
              "eval": {"limit": 8, "pgd_steps": 2, "pgd_restarts": 1, "autoattack": False, "eps_sweep": ["32/255"],
                       "c_seg_attack": [0.5], "rays_queries": 30}}
    attacks = {"model.name": "downsampled", "eval.evaluators": ["eps_sweep", "seg_pgd", "two_stage", "rays"]}
    return {"experiment": "tiny_ablations", "config": config,
            "sweep": [{"section": "part_labels", "grid": {"model.name": ["resnet", "downsampled"]}},
                      {"section": "part_labels", "set": {"model.name": "downsampled", "train.c_seg": 0.0}},
                      *({"section": s, "set": attacks} for s in ("eps_sweep", "seg_attack", "two_stage", "rays"))]}


@pytest.fixture(scope="session")
def tiny_ablation_runs(tiny_dataset, tmp_path_factory) -> tuple[Path, Path]:
    """Notebook 03's runs, trained once in this process: (params file, experiment folder)."""
    folder = tmp_path_factory.mktemp("ablations")
    params_file = write_params(folder / "tiny_ablations.yaml", ablations_plan(tiny_dataset))
    train_in_process(params_file, folder / "runs")
    return params_file, folder / "runs" / "tiny_ablations"


@pytest.mark.slow
@pytest.mark.notebook
def test_papermill_runs_notebook_03_ablations_training_and_attack_sections(tmp_path, tiny_ablation_runs):
    """Notebook 03 on tiny runs: a training-side section (part labels, 3 trainings) and the four attack-side
    sections, which share one evaluation-only run of the trained Downsampled model. The runs are the session's
    (finished: the notebook skips them)."""
    runs, figs = tmp_path / "runs", tmp_path / "figs"
    params_file, experiment = tiny_ablation_runs
    copy_experiment(experiment, runs)
    output = tmp_path / "03.ipynb"
    execute(REPO, "03_ablations", {"params_file": str(params_file), "runs_root": str(runs), "runner": "process",
                                   "figures_dir": str(figs)}, output, stream=False)
    stored = pd.concat([pd.read_csv(f) for f in (runs / "tiny_ablations").glob("*/results.csv")])
    assert stored.run_id.nunique() == 4
    attacked = stored[stored.metric.str.startswith("two_stage_")].run_id.unique()
    assert len(attacked) == 1
    metrics = set(stored[stored.run_id == attacked[0]].metric)
    assert {"pgd_accuracy@eps=32/255", "pgd_accuracy@c_seg_attack=0.5", "two_stage_untargeted_accuracy", "two_stage_mc_sorted_accuracy",
            "rays_accuracy", "gradient_masking_high_eps", "gradient_masking_more_steps", "gradient_masking_black_box_rays",
            "gradient_masking_eps_monotone_pgd"} <= metrics
    assert len(list((runs / "tiny_ablations" / "_train").iterdir())) == 6  # 3 models x (clean, pgd): the attack run trained nothing
    assert {p.name for p in figs.glob("*.png")} == {"03_part_labels.png", "03_eps_sweep.png", "03_seg_attack.png", "03_two_stage.png",
                                                    "03_rays.png"}
    text = output.read_text()
    assert text.count("**Verdict.**") == 5 and "not the paper's dataset" in text and "section c_seg not shown" in text


@pytest.mark.slow
@pytest.mark.notebook
def test_notebooks_run_in_the_interpreter_that_started_them(tmp_path, monkeypatch):
    """A kernel spec named python3 first on JUPYTER_PATH, pointing at an interpreter that does not exist, changes
    nothing: `execute` registers a kernel of sys.executable in its private Jupyter path and runs the notebook there."""
    from jupyter_client.kernelspec import KernelSpecManager

    decoy = tmp_path / "decoy"
    (decoy / "kernels" / "python3").mkdir(parents=True)
    nowhere = str(tmp_path / "no-such-env" / "bin" / "python")
    (decoy / "kernels" / "python3" / "kernel.json").write_text(json.dumps(
        {"argv": [nowhere, "-m", "ipykernel_launcher", "-f", "{connection_file}"], "display_name": "decoy", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(decoy))
    monkeypatch.setenv(KERNELS_ENV, str(tmp_path / "private"))  # not registered yet: execute does it
    assert KernelSpecManager().get_kernel_spec("python3").argv[0] == nowhere, "python3 means the decoy here"

    repo = tmp_path / "checkout"  # a checkout with one notebook that prints its interpreter
    (repo / "notebooks").mkdir(parents=True)
    (repo / "pyproject.toml").write_text("")
    probe = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    probe.cells = [nbformat.v4.new_code_cell("marker = None", metadata={"tags": ["parameters"]}),
                   nbformat.v4.new_code_cell("import sys\nprint(sys.executable, marker)")]
    nbformat.write(probe, repo / "notebooks" / "probe.ipynb")
    output = tmp_path / "out" / "probe.ipynb"
    execute(repo, "probe", {"marker": "probed"}, output, stream=False)

    executed = nbformat.read(output, as_version=4)
    assert executed.cells[-1].outputs[0]["text"].strip() == f"{sys.executable} probed"
    assert os.environ["JUPYTER_PATH"].split(os.pathsep) == [str(tmp_path / "private"), str(decoy)], "the private path comes first"
    name = python_kernel()
    assert name != "python3" and (tmp_path / "private" / "kernels" / name / "kernel.json").is_file()
    assert KernelSpecManager().get_kernel_spec(name).argv[0] == sys.executable
