"""The notebooks as a JupyterLab user runs them: cells executed in one live kernel (nbclient), a parameter edited in
the parameters cell and everything run again in the same kernel, training interrupted and rerun; the executed
notebook's progress bars are widgets (one output each), and what Lab would save cleans to the committed file."""
import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from partrobust.runs.nbclean import clean, dumps
from partrobust.runs.rundir import lock_held, read_status

from conftest import KERNEL, TINY_RUN, write_params

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.notebook]


class Kernel:
    """One kernel of this interpreter in which notebooks' cells run one after another, as in a Lab session."""

    def __init__(self) -> None:
        self.client = NotebookClient(nbformat.v4.new_notebook(), kernel_name=KERNEL, timeout=600,
                                     resources={"metadata": {"path": str(REPO)}})
        self._session = self.client.setup_kernel()
        self._session.__enter__()

    def run(self, nb: nbformat.NotebookNode, cells: range | list[int] | None = None) -> nbformat.NotebookNode:
        """Executes `cells` of `nb` (default: all, "Run All") in this kernel; raises CellExecutionError."""
        self.client.nb = nb
        for index in cells if cells is not None else range(len(nb.cells)):
            if nb.cells[index].cell_type == "code":
                self.client.execute_cell(nb.cells[index], index)
        return nb

    def interrupt(self) -> None:
        """The stop button: SIGINT to the kernel process."""
        os.kill(self.client.km.provisioner.process.pid, signal.SIGINT)

    def close(self) -> None:
        self._session.__exit__(None, None, None)


@pytest.fixture(scope="module")
def kernel():
    k = Kernel()
    yield k
    k.close()


def notebook(stem: str) -> nbformat.NotebookNode:
    return nbformat.read(REPO / "notebooks" / f"{stem}.ipynb", as_version=4)


def parameters_index(nb: nbformat.NotebookNode) -> int:
    return next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))


def edit_parameters(nb: nbformat.NotebookNode, **values) -> nbformat.NotebookNode:
    """Edits lines ``name = ...`` of the parameters cell, as a user does in Lab (every name must be there)."""
    cell = nb.cells[parameters_index(nb)]
    for name, value in values.items():
        cell.source, n = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", cell.source, flags=re.MULTILINE)
        assert n == 1, f"{name} is not a parameter of the cell"
    return nb


def probe(kernel: Kernel, code: str) -> str:
    """Runs `code` in the kernel; returns what it printed."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    kernel.run(nb)
    return "".join(o.get("text", "") for o in nb.cells[0].outputs if o.output_type == "stream")


def stderr(nb: nbformat.NotebookNode) -> list[str]:
    return [o.text for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "stream" and o.name == "stderr"]


def test_00_reruns_with_an_edited_parameter(kernel, tmp_path):
    nb = edit_parameters(notebook("00_data_prep"), run_dir=str(tmp_path), num_classes=3, image_size=16, n_train=6, n_val=3,
                         n_test=3, output_root=str(tmp_path / "a"))
    kernel.run(nb)
    kernel.run(edit_parameters(nb, n_train=9, output_root=str(tmp_path / "b")))  # Run All again, one parameter changed
    assert probe(kernel, "print(params.n_train, len(PartDataset(params.dataset_root, 'train')))").split() == ["9", "9"]
    assert not stderr(nb), "no warnings on a normal run"


def test_01_reruns_with_an_edited_parameter_and_its_progress_bars_are_widgets(kernel, tmp_path):
    config = {**TINY_RUN, "data": {**TINY_RUN["data"], "root": None}, "progress": True,
              "eval": {**TINY_RUN["eval"], "masking_checks": False}}
    nb = notebook("01_pgd_training")
    data = edit_parameters(notebook("00_data_prep"), run_dir=str(tmp_path), num_classes=3, image_size=32, n_train=32, n_val=16,
                           n_test=8, output_root=str(tmp_path / "data"), progress=False)
    kernel.run(data)
    config["data"]["root"] = str(tmp_path / "data" / "synthetic")
    params_file = write_params(tmp_path / "tiny.yaml", {"experiment": "tiny", "config": config})
    edit_parameters(nb, config=str(params_file), runs_root=str(tmp_path / "runs"))
    kernel.run(nb)
    kernel.client.set_widgets_metadata()  # the bars' final states, saved with the notebook
    lab_save = json.loads(nbformat.writes(nb))  # what Lab writes after a run: outputs, widget state, its metadata
    kernel.run(edit_parameters(nb, overrides={"model.name": "resnet"}))
    states = {p.name.split("-")[0]: read_status(p)["state"] for p in (tmp_path / "runs" / "tiny").glob("*-pgd-*")}
    assert states == {"downsampled": "done", "resnet": "done"}

    train = nb.cells[next(i for i, c in enumerate(nb.cells) if c.source.startswith("fit = run.train()"))]
    kinds = [o.output_type for o in train.outputs]
    bars = [o for o in train.outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(bars) == 2 and kinds.count("display_data") == 2, "one widget output per training phase's bar"
    assert "stream" in kinds and '"epoch": 1' in "".join(o.get("text", "") for o in train.outputs), "epoch lines"
    assert not stderr(nb), "no warnings, no text progress bars"

    lab_save["metadata"]["language_info"] = {"name": "python", "version": sys.version.split()[0], "mimetype": "text/x-python"}
    lab_save["cells"][parameters_index(nb)]["source"] = notebook("01_pgd_training").cells[parameters_index(nb)].source
    assert lab_save["metadata"].get("widgets") and any(c.get("outputs") for c in lab_save["cells"])
    assert dumps(clean(lab_save)) == (REPO / "notebooks" / "01_pgd_training.ipynb").read_text(), "git sees it unchanged"


def test_01_interrupted_training_reruns_in_the_same_kernel(kernel, tmp_path):
    nb = notebook("01_pgd_training")
    kernel.run(edit_parameters(notebook("00_data_prep"), run_dir=str(tmp_path), num_classes=3, image_size=32, n_train=32,
                               n_val=16, n_test=8, output_root=str(tmp_path / "data"), progress=False))
    config = {**TINY_RUN, "data": {**TINY_RUN["data"], "root": str(tmp_path / "data" / "synthetic")},
              "model": {**TINY_RUN["model"], "name": "resnet"}, "train": {**TINY_RUN["train"], "epochs_clean": 12, "epochs_adv": 0},
              "eval": {**TINY_RUN["eval"], "masking_checks": False}}
    edit_parameters(nb, config=str(write_params(tmp_path / "long.yaml", {"experiment": "long", "config": config})),
                    runs_root=str(tmp_path / "runs"), overrides={})
    train = next(i for i, c in enumerate(nb.cells) if c.source.startswith("fit = run.train()"))
    kernel.run(nb, range(train))
    (run_dir,) = (tmp_path / "runs" / "long").glob("resnet-*")
    history = run_dir / "train" / "clean" / "history.jsonl"

    def stop_after_the_first_epoch():
        while not (history.is_file() and history.read_text().strip()):
            time.sleep(0.02)
        kernel.interrupt()

    stopper = threading.Thread(target=stop_after_the_first_epoch)
    stopper.start()
    with pytest.raises(CellExecutionError, match="KeyboardInterrupt"):
        kernel.run(nb, [train])
    stopper.join()
    epochs = len(history.read_text().splitlines())
    assert 1 <= epochs < 12 and not lock_held(run_dir) and read_status(run_dir)["state"] == "interrupted"

    kernel.run(nb, range(parameters_index(nb), len(nb.cells)))  # rerun from the parameters cell: resumes, finishes
    assert read_status(run_dir)["state"] == "done" and len(history.read_text().splitlines()) == 12


def sweep_params(tmp_path: Path) -> Path:
    config = {**TINY_RUN, "data": {**TINY_RUN["data"], "root": str(tmp_path / "data")}}
    return write_params(tmp_path / "sweep.yaml", {"experiment": "sweep", "config": config,
                                                  "sweep": [{"section": "part_labels", "grid": {"model.name": ["resnet", "bbox"]}}]})


@pytest.mark.parametrize("stem, first, second, shown", [
    ("02_trades_sweep", {"adv_metric": "autoattack_accuracy"}, {"adv_metric": "pgd_accuracy"}, "params.adv_metric"),
    ("03_ablations", {"sections": None}, {"sections": ["part_labels"]}, "params.sections"),
    ("04_nonadversarial_robustness", {"examples": 8}, {"examples": 3}, "params.examples"),
])
def test_the_sweep_notebooks_parameters_rerun(kernel, tmp_path, stem, first, second, shown):
    """Notebooks 02-04 up to their parameters check and run plan (what they do after it is the runs' and the
    report's, tested with papermill in test_notebooks.py), twice in one kernel with a parameter edited."""
    (tmp_path / "data").mkdir()
    nb = edit_parameters(notebook(stem), params_file=str(sweep_params(tmp_path)), runs_root=str(tmp_path / "runs"),
                         run_missing=False, **first)
    check = parameters_index(nb) + 1
    kernel.run(nb, range(check + 1))
    kernel.run(edit_parameters(nb, **second), range(check + 1))
    assert probe(kernel, f"print(repr({shown}))").strip() == repr(next(iter(second.values())))
    edit_parameters(nb, jobs=0)
    with pytest.raises(CellExecutionError, match="jobs"):
        kernel.run(nb, range(check + 1))


def test_05_reruns_and_a_misspelt_parameter_is_refused(kernel, tmp_path):
    nb = edit_parameters(notebook("05_figures"), inputs=[str(tmp_path / "none")], output_dir=str(tmp_path / "figs"))
    check = parameters_index(nb) + 1
    nb.cells[check].source = nb.cells[check].source.split("\nout = ")[0]  # the check and the inputs, not the regeneration
    kernel.run(nb, range(check + 1))
    probe(kernel, "out = object()")  # what the regeneration leaves in the namespace
    kernel.run(edit_parameters(nb, output_dir=str(tmp_path / "other")), range(check + 1))
    assert probe(kernel, "print(params.output_dir)").strip() == str(tmp_path / "other")
    nb.cells[parameters_index(nb)].source += "\noutput_dri = 'typo'\n"
    with pytest.raises(CellExecutionError, match="output_dri"):
        kernel.run(nb, range(check + 1))
