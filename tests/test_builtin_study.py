"""The built-in study: its recipe lets the ResNet learn, its sweep is what the README says, and
the README shows the committed table, not a hand-typed one."""
from pathlib import Path

import pytest

from partrobust.data import SyntheticConfig, generate_synthetic
from partrobust.runs.run import execute_run
from partrobust.runs.runconfig import base_config, make_run_config
from partrobust.runs.sweep import expand, load_plan

REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "params" / "builtin_study.yaml"
STUDY_FIGURES = REPO / "figures" / "builtin_study"


@pytest.mark.slow
@pytest.mark.study
def test_resnet_learns_the_builtin_data_with_the_study_recipe(tmp_path):
    """The regression of issue 11: with the paper's lr 0.1 and strong crops the ResNet sat at chance.
    Here the study's recipe, shortened to 250 SGD steps, must reach more than twice chance."""
    classes = 5
    root = tmp_path / "synthetic"
    generate_synthetic(root, SyntheticConfig(num_classes=classes, image_size=32, n_train=800, n_val=50, n_test=200), progress=False)
    values, _ = base_config(STUDY)
    config = make_run_config(values, {"data.root": str(root), "model.name": "resnet", "seed": 0, "progress": False,
                                      "train.epochs_clean": 10, "train.epochs_adv": 0, "train.val_limit": 50,
                                      "eval.limit": 200, "eval.pgd_steps": 1, "eval.autoattack": False}, where="test")
    run = execute_run(config, "learns", tmp_path / "runs")
    clean = run.results().set_index("metric").value["clean_accuracy"]
    assert clean > 2 * 100 / classes, f"ResNet clean accuracy {clean:.1f}% is not clearly above chance ({100 / classes:.0f}%)"


def test_study_sweep_is_three_models_three_trainings_three_seeds():
    configs = expand(load_plan(STUDY), str(STUDY))
    settings = {(c.model.name, c.train.training, c.seed) for c in configs}
    assert len(configs) == len(settings) == 27
    assert {s[0] for s in settings} == {"resnet", "downsampled", "bbox"}
    assert {s[1] for s in settings} == {"normal", "pgd", "trades"} and {s[2] for s in settings} == {0, 1, 2}
    recipes = {(c.train.epochs_clean, c.train.lr, c.data.batch_size, c.eval.limit) for c in configs}
    assert len(recipes) == 1, "every model gets the same recipe"


def test_readme_shows_the_committed_study_table():
    table = (STUDY_FIGURES / "table.md").read_text()
    readme = (REPO / "README.md").read_text()
    start, end = "<!-- builtin-study-table:start -->\n", "<!-- builtin-study-table:end -->"
    assert start in readme and end in readme, "README lacks the built-in study table markers"
    shown = readme.split(start, 1)[1].split(end, 1)[0]
    assert shown.strip() == table.strip(), "README's study table differs from figures/builtin_study/table.md: run `python -m partrobust.report.readme figures/builtin_study/table.md builtin-study-table` (make study does)"
    assert (STUDY_FIGURES / "clean_vs_autoattack.png").is_file()
