"""Shared fixtures: one torch thread per test process, a kernel of this interpreter for every notebook, a
tiny synthetic dataset in the prepared format (generated once per session), the values of a run on it
that trains in seconds, and the tiny runs the report notebooks read (trained once per session, in
this process)."""
import hashlib
import os

# Before torch is imported: one thread per test process, inherited by every subprocess and notebook
# kernel the tests start (pytest-xdist runs a test process per core; more threads only contend).
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from partrobust.data import SyntheticConfig, generate_synthetic  # noqa: E402
from partrobust.runs.notebooks import python_kernel  # noqa: E402
from partrobust.runs.run import execute_run  # noqa: E402
from partrobust.runs.runconfig import run_id  # noqa: E402
from partrobust.runs.sweep import expand, load_plan  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]

LONGEST_FIRST = (
    "test_notebooks.py::test_papermill_runs_the_pipeline_00_runs_02",
    "test_runs.py::test_killed_sweep_resumes_and_a_failing_run_does_not_stop_the_others",
    "test_figures.py::test_the_committed_figures_are_what_make_figures_gives",
    "test_distributed.py::test_torchrun_trains_resumes_with_one_process_and_evaluates_like_one",
    "test_launcher.py::test_submitit_jobs_a_killed_job_is_resubmitted_and_every_result_gathered",
    "test_figures.py::test_make_figures_is_byte_identical",
    "test_builtin_study.py::test_resnet_learns_the_builtin_data_with_the_study_recipe",
)
"""The longest tests (30 s to 2 minutes each on 2 CPU cores), longest first: their modules start first."""


def pytest_collection_modifyitems(config, items):
    """Modules in the order that shortens a parallel run, each module's tests in the order they were written:
    first the modules of `LONGEST_FIRST`'s tests (in its order), then those with other tests that execute
    notebooks, start processes or train the study's recipe, then the rest (in file order). ``make test`` runs
    them with ``-n 2 --dist loadfile --no-loadscope-reorder``: a module runs whole on one worker (its module
    fixtures are made once, its tests keep their order) and a free worker takes the next module, so the long
    modules start at once and the short ones fill the end. The order is the same in every worker, as
    pytest-xdist requires."""
    def rank(item) -> tuple[int, int]:
        name = f"{Path(str(item.path)).name}::{item.originalname}"
        if name in LONGEST_FIRST:
            return 0, LONGEST_FIRST.index(name)
        if item.get_closest_marker("slow") and any(item.get_closest_marker(m) for m in ("notebook", "subprocess", "study")):
            return 1, 0
        return 2, 0

    module_rank: dict[Path, tuple[int, int]] = {}
    for item in items:
        module_rank[item.path] = min(module_rank.get(item.path, (3, 0)), rank(item))
    items.sort(key=lambda item: module_rank[item.path])  # stable: the tests of a module keep their order


KERNEL = python_kernel()
"""The Jupyter kernel of this interpreter (registered in a private Jupyter path, first on JUPYTER_PATH): every
papermill call of the tests uses it, as `partrobust.runs.notebooks.execute` does."""


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """40/16/16 images of 32x32 pixels, 4 classes."""
    root = tmp_path_factory.mktemp("data") / "synthetic"
    generate_synthetic(root, SyntheticConfig(num_classes=4, image_size=32, n_train=40, n_val=16, n_test=16, seed=0), progress=False)
    return root


TINY_RUN = {
    "data": {"crop_size": 32, "resize_size": 32, "batch_size": 16, "train_limit": 32},
    "model": {"name": "bbox", "arch": "resnet10t", "encoder": "tu-resnet10t"},
    "train": {"epochs_clean": 1, "epochs_adv": 1, "steps": 1, "val_steps": 1, "val_limit": 16, "val_every": 1},
    "eval": {"limit": 8, "pgd_steps": 2, "pgd_restarts": 1, "autoattack": False},
    "device": "cpu",
    "progress": False,
}


def tiny_run_values(dataset: Path | str) -> dict:
    """Run-config values of a seconds-long CPU run on `dataset` (import with ``from conftest import ...``)."""
    return {**TINY_RUN, "data": {**TINY_RUN["data"], "root": str(dataset)}}


def digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under `folder`, by relative path (byte-identity checks of generated outputs)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_params(path: Path, plan: dict) -> Path:
    path.write_text(yaml.safe_dump(plan))
    return path


def train_in_process(params_file: Path, runs_root: Path, run_ids: set[str] | None = None) -> list[str]:
    """Trains and evaluates the runs of a params file (those in `run_ids`, or all) in this process, with the
    steps the pipeline's runners take (`execute_run`), into ``<runs_root>/<experiment>/``; returns their ids.
    A pipeline or notebook given the same params file then finds them finished and skips them."""
    plan = load_plan(params_file)
    configs = [c for c in expand(plan, str(params_file)) if run_ids is None or run_id(c) in run_ids]
    return [execute_run(config, plan.experiment, runs_root).id for config in configs]


def copy_experiment(source: Path, runs_root: Path) -> Path:
    """A test's own copy of a session fixture's experiment folder (its training-phase links kept)."""
    target = runs_root / source.name
    shutil.copytree(source, target, symlinks=True)
    return target


PAPER_TABLE_HEADERS = {
    1: "epsilon,attack", 2: "benchmark", 3: "benchmark", 4: "benchmark", 5: "seg_labels,epsilon,attack",
    6: "hparam_set,benchmark", 7: "benchmark,printed_row,corruption", 8: "lr,weight_decay,trades_beta,epsilon,attack",
    9: "lr,weight_decay,c_seg,trades_beta,epsilon,attack", 10: "lr,weight_decay,c_seg,trades_beta,epsilon,attack",
    11: "epsilon,attack", 12: "c_seg_attack,epsilon,attack", 13: "epsilon,attack", 14: "label_type,epsilon,attack",
    15: "seg_label_level,selection,c_seg,epsilon,attack", 16: "background,benchmark",
    17: "lr,weight_decay,c_seg,downsample_size,epsilon,attack", 18: "selection,c_seg,epsilon,attack",
    19: "concat_input,selection,c_seg,epsilon,attack",
}
"""The columns of each transcribed paper table between ``model`` and ``metric`` (lib/partrobust/report/paper_data)."""


def write_mini_paper_tables(folder: Path) -> Path:
    """All 19 paper tables in the transcribed CSV format, two made-up rows each (clean and AutoAttack,
    or two benchmark rows), for tests that pass their own paper-tables folder."""
    folder.mkdir(parents=True, exist_ok=True)
    fill = {"epsilon": "", "benchmark": "common_corruption", "printed_row": "1", "corruption": "fog", "hparam_set": "A",
            "seg_labels": "n/a", "label_type": "none", "seg_label_level": "part", "selection": "best", "background": "",
            "concat_input": "no", "lr": "0.1", "weight_decay": "5e-4", "downsample_size": "4x4", "c_seg_attack": "0"}
    for number, middle in PAPER_TABLE_HEADERS.items():
        keys = middle.split(",")
        benchmark = "attack" not in keys
        lines = [",".join(["table", "dataset", "training", "model", *keys, "metric", "value", "ci95", "note"])]
        for adversarial in (False, True):
            row = {k: fill.get(k, "") for k in keys}
            if not benchmark:
                row.update(attack="autoattack" if adversarial else "clean", epsilon="8/255" if adversarial else "")
            metric = "robust_accuracy" if benchmark else "adversarial_accuracy" if adversarial else "clean_accuracy"
            values = [str(number), "part_imagenet", "normal" if benchmark else "pgd", "resnet50", *row.values(), metric,
                      "30.0" if adversarial else "70.0", "", "made up for tests"]
            lines.append(",".join(values))
        (folder / f"table{number:02d}.csv").write_text("\n".join(lines) + "\n")
    return folder
