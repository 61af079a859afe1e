"""One run: train and evaluate one model from a `RunConfig`, in its own folder.

    python -m partrobust.run CONFIG.yaml [--set train.beta=2.0 ...] [--experiment NAME]
                             [--runs-root runs] [--run-dir DIR] [--notebook]

CONFIG.yaml is a run config (a run folder's ``config.yaml``) or a params file (its ``config:``
block, and its ``experiment`` as the default experiment). The run lands in
``<runs-root>/<experiment>/<run id>/`` (see `partrobust.runs.rundir`). A finished run is not redone;
an unfinished one resumes from its last epoch; a folder written by another config is refused.
``--notebook`` executes notebook 01 for the run (the executed copy lands in the run folder), as
the batch runner does; notebook 01 calls the same `Run` steps as this command.

Several GPUs (or CPU processes) on one run: ``torchrun --nproc_per_node N -m partrobust.run
CONFIG.yaml``. ``data.batch_size`` stays the global batch (each process takes 1/N of it), the
gradients are averaged by DistributedDataParallel, the evaluation attacks are split across the
processes with the one-process result, and rank 0 writes every file (`partrobust.core.distributed`).

Exit status (`partrobust.runs.errors`): 0 done (or already done), 1 the run failed, 2 bad
configuration or input (one ``error:`` line naming the key or file, before any compute), 3 busy.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import weakref
from pathlib import Path
from typing import Any, Iterator, Mapping

import pandas as pd
import torch
import torch.nn as nn

from ..attacks import select_attacks
from ..core import distributed
from ..core.config import ParameterError, parse_assignment, to_dict
from ..core.device import float32_precision
from ..core.distributed import Dist
from ..core.fileio import check_checkpoint, check_writable
from ..core.metrics import SUMMARY_METRICS
from ..core.paths import check_plain_name, find_repo_root
from ..core.results import RESULTS_FILE, add_results, gather_results
from ..core.seeding import seed_everything
from ..data import scan_prepared, validate_prepared
from ..data.loaders import build_loaders, per_process_batch
from ..data.prepared import PreparedDatasetError
from ..eval.benchmarks import (
    BenchmarkSettings,
    check_benchmarks,
    evaluate_benchmarks,
    prepare_benchmark,
    run_benchmark_folders,
    run_benchmark_settings,
)
from ..eval.evaluators import evaluate
from ..eval.outcomes import collect, pgd_examples, predict
from ..models import ModelConfig, build_model, count_parameters
from ..models.imported import ImportedWeightsError, check_imported, load_imported, read_imported
from ..models.losses import CentroidLoss, PartLoss
from ..report.figures import plot_training_history
from ..report.masks import EXAMPLES_FILE, load_examples, plot_examples, save_examples
from ..report.style import save_figure
from ..train.loop import FitResult, check_phase_files, fit
from ..train.speed import apply_speed, compile_report, resolve_speed, speed_settings
from .errors import InputRefused, is_busy_error, is_input_error, report_exit
from .notebooks import NotebookFailed, execute
from .records import result_rows, write_manifest
from .runconfig import (
    RunConfig,
    base_config,
    check_device,
    check_limits,
    check_weights_file,
    config_hash,
    identity,
    make_run_config,
    phase_id,
    phase_identity,
    run_id,
    split_sizes,
    used_rows,
)
from .rundir import CONFIG_FILE, RUN_FILE, STATUS_FILE, TRAIN_DIR, RunBusyError, check_folder, claim, locked, read_status, write_status

RUN_NOTEBOOK = "01_pgd_training"
PHASES_DIR = "_train"  # <experiment>/_train/<model>-<phase>-<hash>/: training phases shared by runs
DEFAULT_EXPERIMENT = "default"


def _log(message: str) -> None:
    print(f"[partrobust] {message}", flush=True)


_HOLDERS: dict[Path, "weakref.ref[Run]"] = {}
"""Run folder -> the `Run` object of this process that holds its lock (a newer one takes it over)."""


class Run:
    """The steps of one run (notebook 01 and `execute_run` call the same ones).

    Construction checks everything that can be checked without compute (the experiment name,
    dataset folder and metadata, limits against the splits, weights and AdaIN files, model
    options, the device and CUDA-only keys, and, for an unfinished run, its existing checkpoints
    and AutoAttack state, and that its folder is writable with room for the checkpoints) and
    raises an error naming the key or file.

    The run's lock belongs to this object (`start` takes it): it is released by `finish`, `fail`,
    a KeyboardInterrupt in `train`, `evaluate` or `save_figures` (status "interrupted"), a newer
    `Run` of the same folder started in this process (a notebook cell rerun), or garbage collection.
    So an interrupted notebook reruns in the same kernel; another process still gets `RunBusyError`.
    """

    def __init__(self, config: RunConfig, experiment: str = DEFAULT_EXPERIMENT, runs_root: str | Path = "runs",
                 run_dir: str | Path | None = None, dist: Dist | None = None) -> None:
        self.dist = dist if dist is not None else distributed.current()
        try:
            self.batch_per_process = per_process_batch(config.data, self.dist)
        except ValueError as err:
            raise ParameterError(str(err)) from None
        self.config = config
        self.experiment = check_plain_name(experiment, "experiment")
        self.id = run_id(config)
        self.dir = Path(run_dir) if run_dir is not None else Path(runs_root) / experiment / self.id
        check_folder(self.dir, config)
        if config.data.labelled_root != config.data.root and not Path(config.data.labelled_root).is_dir():
            raise PreparedDatasetError(f"data.labels: {config.data.labels!r} labels are read from {config.data.labelled_root}, which does "
                                       f"not exist; derive it with notebook 00 (variants: [{config.data.labels}])")
        if config.data.scan:  # every file the run reads, before any compute (cached: instant on reruns)
            scan = scan_prepared(config.data.labelled_root, used_rows(config), progress=config.progress)
            scan.raise_if_bad()
            self.metadata = scan.metadata
        else:
            self.metadata = validate_prepared(config.data.labelled_root)
        if config.eval.benchmarks:
            try:
                check_benchmarks(config.eval.benchmarks, config.data.root, self.benchmark_settings)
            except (ValueError, FileNotFoundError) as err:
                raise ParameterError(str(err)) from None
        if config.eval.autoattack:
            try:
                select_attacks(self.metadata.num_classes, config.eval.autoattack_attacks)
            except ValueError as err:
                raise ParameterError(f"eval.autoattack_attacks: {err}") from None
        self.model_config = self._model_config()
        self.part_loss = self._part_loss()
        check_weights_file(config)
        self._imported = self._check_imported()
        self.device = check_device(config)
        check_limits(config, split_sizes(config.data.labelled_root))
        if not self.done:
            self._check_before_training()
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)  # one GPU per process
        self.speed = resolve_speed(config.speed, self.device)
        self.model: nn.Module | None = None
        self.fit_result: FitResult | None = None
        self._loaders: dict[str, Any] | None = None
        self._test: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._stack: contextlib.ExitStack | None = None
        self._t0 = time.time()

    def _check_before_training(self) -> None:
        """The checks of an unfinished run: its weights fit the model, its checkpoints and AutoAttack state load
        safely and match this config, and its folder is writable with room for the checkpoints."""
        try:
            model = build_model(self.model_config)  # loads the ImageNet weights: their keys and shapes must fit
        except (KeyError, ValueError, RuntimeError) as err:
            if self.config.model.pretrained_path is None:
                raise
            key = f"model.{self.config.model.pretrained_key}"
            raise ParameterError(f"{key}: {err.args[0] if err.args else err}") from None
        for phase in ("clean", "adversarial"):
            check_phase_files(self.phase_dir(phase), phase_identity(self.config, phase))
        for state in sorted(self.dir.glob("autoattack_state*.pt")):
            check_checkpoint(state)
        for name in (RESULTS_FILE, STATUS_FILE, CONFIG_FILE, RUN_FILE, "manifest.json"):
            if (self.dir / name).is_dir():
                raise ParameterError(f"run folder: {self.dir / name} is a folder where the run writes a file; remove it")
        phases = int(self.config.train.epochs_clean > 0) + int(self.config.train.epochs_adv > 0)
        checkpoint = 4 * count_parameters(model, trainable_only=False)  # fp32 weights; last.pt adds SGD momentum
        check_writable(self.dir, "run folder", need_bytes=checkpoint * (3 * phases + 2))

    @classmethod
    def from_file(cls, path: str | Path, overrides: Mapping[str, Any] | None = None, experiment: str | None = None,
                  runs_root: str | Path = "runs", run_dir: str | Path | None = None) -> "Run":
        """A run from a run config or params file plus dotted-key overrides."""
        values, file_experiment = base_config(path)
        config = make_run_config(values, overrides, where=str(path))
        return cls(config, experiment or file_experiment or DEFAULT_EXPERIMENT, runs_root, run_dir)

    # ---- description -----------------------------------------------------------------------
    @property
    def dataset_name(self) -> str:
        return self.metadata.name

    def _model_config(self) -> ModelConfig:
        meta, spec = self.metadata, self.config.model
        part_model = self.config.is_part_model
        return ModelConfig(
            **spec.model_dump(),
            num_classes=meta.num_classes,
            num_parts=meta.num_parts if part_model else 0,
            image_size=self.config.data.crop_size,
            part_to_class=meta.part_to_class() if part_model else None,
        )

    def _part_loss(self) -> PartLoss | None:
        """The part-label term of the training loss: None (segmentation cross-entropy) except the
        centroid loss for ``data.labels: centroid`` (App. E.5, decision 6)."""
        if self.config.data.labels != "centroid":
            return None
        try:
            return CentroidLoss(self.metadata.part_to_class(), self.metadata.num_classes)
        except ValueError as err:
            raise ParameterError(f"data.labels: centroid: {err}") from None

    def _check_imported(self) -> dict[str, Any] | None:
        """The imported weights file of an evaluation-only run (``model.weights``), checked against the run; else None."""
        if not self.config.imported:
            return None
        try:
            state = read_imported(self.config.model.weights)
            check_imported(state, self.model_config, self.config.training, self.config.model.weights)
        except ImportedWeightsError as err:
            raise ParameterError(str(err)) from None
        if state["dataset"] != self.dataset_name:
            raise ParameterError(f"model.weights: {self.config.model.weights} holds weights for {state['dataset']}, "
                                 f"but data.root is {self.dataset_name} data")
        return state

    def describe(self) -> pd.Series:
        """Run id, folder, dataset, model size and device, for the first cell of notebook 01."""
        return pd.Series({
            "run id": self.id, "folder": str(self.dir), "config hash": config_hash(self.config)[:16],
            "dataset": f"{self.dataset_name} ({self.metadata.num_classes} classes, {self.metadata.num_parts} parts)",
            "model": self.config.model.name, "parameters": f"{count_parameters(build_model(self.model_config)):,}",
            "training": self.config.training + (f" (imported: {self.config.model.weights})" if self.config.imported else ""),
            "device": str(self.device), "speed": self.speed.describe(),
            "state": read_status(self.dir)["state"],
        })

    @property
    def done(self) -> bool:
        return read_status(self.dir)["state"] == "done" and (self.dir / RESULTS_FILE).is_file()

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> "Run":
        """Claims the folder (config.yaml, run.json), takes the run's lock and marks it running (rank 0)."""
        if not self.dist.is_main:
            return self
        claim(self.dir, self.config, self.experiment)
        key = self.dir.resolve()
        earlier = _HOLDERS.get(key, lambda: None)()
        if earlier is not None and earlier is not self and earlier._stack is not None:
            _log(f"run {self.id}: an earlier Run of this folder in this process gave up its lock to this one")
            earlier.interrupt()
        if self._stack is None:
            self._stack = contextlib.ExitStack()
            self._stack.enter_context(locked(self.dir))
            _HOLDERS[key] = weakref.ref(self)
        if not self.done:
            write_status(self.dir, "running", started=time.strftime("%Y-%m-%dT%H:%M:%S"))
        return self

    def finish(self) -> dict[str, Any]:
        """Writes the manifest, marks the run done with its key metrics and releases the lock (rank 0)."""
        if not self.dist.is_main:
            return {}
        if not self.done:
            self.write_manifest()
            results = self.results()
            metrics = results[results["run_id"] == self.id].set_index("metric")["value"].to_dict()
            write_status(self.dir, "done", wall_time_s=round(time.time() - self._t0, 1),
                         metrics={m: metrics[m] for m in SUMMARY_METRICS if m in metrics})
        self.release()
        return read_status(self.dir)

    def fail(self, error: BaseException) -> None:
        """Marks the run failed with the error (interrupted for a KeyboardInterrupt), and releases the lock (rank 0)."""
        if not self.dist.is_main:
            return
        if isinstance(error, KeyboardInterrupt):
            self.interrupt()
            return
        write_status(self.dir, "failed", error=f"{type(error).__name__}: {error}", wall_time_s=round(time.time() - self._t0, 1))
        self.release()

    def interrupt(self) -> None:
        """Marks a run this object holds as interrupted (resumable from its last epoch) and releases its lock."""
        if self._stack is not None and self.dist.is_main and read_status(self.dir)["state"] == "running":
            write_status(self.dir, "interrupted", wall_time_s=round(time.time() - self._t0, 1))
        self.release()

    def release(self) -> None:
        """Releases the run's lock if this object holds it."""
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.release()

    @contextlib.contextmanager
    def _interruptible(self) -> Iterator[None]:
        """A step that a KeyboardInterrupt (a notebook's stop button) leaves resumable: status interrupted, lock released."""
        try:
            yield
        except KeyboardInterrupt:
            self.interrupt()
            raise

    # ---- data ------------------------------------------------------------------------------
    @property
    def loaders(self) -> dict[str, Any]:
        if self._loaders is None:
            self._loaders = build_loaders(self.config.data.labelled_root, self.config.data, seed=self.config.seed, dist=self.dist,
                                         progress=self.config.progress)
        return self._loaders

    @property
    def benchmark_settings(self) -> BenchmarkSettings:
        return run_benchmark_settings(self.config)

    @property
    def test_set(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(images, masks, labels) of the evaluated test images (first ``eval.limit``)."""
        if self._test is None:
            self._test = collect(self.loaders["test"], self.config.eval.limit)
        return self._test

    def phase_dir(self, phase: str) -> Path:
        """A training phase's folder, shared by the experiment's runs with the same `phase_identity`."""
        return self.dir.parent / PHASES_DIR / phase_id(self.config, phase)

    # ---- steps -----------------------------------------------------------------------------
    def train(self) -> FitResult:
        """Trains (or resumes, or reloads when finished); the selected weights stay in ``self.model``.

        Both phases live in the experiment's ``_train/`` folder, shared with runs of the same
        phase identity; ``train/clean`` and ``train/<method>`` in the run folder link to them.
        A run of imported weights (``model.weights``) trains nothing: it loads them.
        """
        with self._interruptible():
            return self._train()

    def _train(self) -> FitResult:
        seed_everything(self.config.seed)
        if self._imported is not None:
            self.model = load_imported(build_model(self.model_config), self._imported).to(self.device)
            apply_speed(self.model, self.speed)  # as training would leave it for the evaluation (channels_last, compile)
            self.fit_result = FitResult(best_checkpoint=Path(self.config.model.weights), history=[])
            return self.fit_result
        self.loaders["train"].generator.manual_seed(self.config.seed)
        model = build_model(self.model_config)
        train = self.config.train
        phases = {"clean": "clean"} if train.epochs_clean > 0 else {}
        if train.epochs_adv > 0:
            phases["adversarial"] = train.method
        shared = {}
        for phase, name in phases.items():
            folder = self.phase_dir(phase)
            link = self.dir / TRAIN_DIR / name
            if self.dist.is_main and not os.path.lexists(link):
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(os.path.relpath(folder, link.parent), target_is_directory=True)
            shared[phase] = (folder, phase_identity(self.config, phase))
        self.fit_result = fit(model, self.loaders["train"], self.loaders["val"], train, self.dir / TRAIN_DIR, self.device,
                              fingerprint=identity(self.config), progress=self.config.progress, shared_phases=shared,
                              dist=self.dist, seed=self.config.seed, part_loss=self.part_loss, speed=self.speed)
        self.model = model
        return self.fit_result

    def evaluate(self) -> pd.DataFrame:
        """Clean / PGD / AutoAttack accuracy (and pixel accuracy) on the test split -> ``results.csv``.

        A finished run's results are read back, not recomputed.
        """
        with self._interruptible():
            return self._evaluate()

    def _evaluate(self) -> pd.DataFrame:
        if self.done:
            return self.results()
        if self.model is None:
            raise RuntimeError("train() first: evaluate() needs the trained model")
        x, masks, y = self.test_set
        with speed_settings(self.speed):
            rows, _ = evaluate(self.model, x, masks, y, self.config.eval, self.dir, seed=self.config.seed,
                               progress=self.config.progress, dist=self.dist)
        report = compile_report(self.model)
        if report and self.config.progress and self.dist.is_main:
            _log(f"{report} (training and evaluation)")
        if self.config.eval.benchmarks:
            rows += self.evaluate_benchmarks()
        tidy = result_rows(rows, self.config, experiment=self.experiment, dataset=self.dataset_name)
        return add_results(self.dir / RESULTS_FILE, tidy) if self.dist.is_main else pd.DataFrame(tidy)

    def evaluate_benchmarks(self) -> list[dict[str, Any]]:
        """The ``eval.benchmarks`` rows (rank 0 makes the benchmark folders, cached beside the dataset; every
        process scores all images, which costs one forward pass each)."""
        settings = self.benchmark_settings
        workers = max(1, self.config.data.num_workers)
        if self.dist.is_main:
            for name in self.config.eval.benchmarks:
                prepare_benchmark(name, self.config.data.root, settings, workers, self.config.progress)
        self.dist.barrier()
        return evaluate_benchmarks(self.model, run_benchmark_folders(self.config), settings.options, self.config.eval.batch_size,
                                   progress=self.config.progress and self.dist.is_main)

    def results(self) -> pd.DataFrame:
        return gather_results(self.dir / RESULTS_FILE)

    def history(self) -> pd.DataFrame:
        """Per-epoch training and validation records of both phases."""
        records = [json.loads(line) for path in sorted((self.dir / TRAIN_DIR).glob("*/history.jsonl"))
                   for line in path.read_text().splitlines() if line]
        order = {"clean": 0}
        return pd.DataFrame(sorted(records, key=lambda r: (order.get(r["phase"], 1), r["epoch"])))

    def examples(self, n: int = 8) -> dict[str, Any]:
        """Images, true masks and predictions on clean and PGD inputs (test PGD) for a Fig. 5-style panel."""
        if self.model is None:
            raise RuntimeError("train() first: examples() needs the trained model")
        x, masks, y = (t[:n] for t in self.test_set)
        torch.manual_seed(self.config.seed)  # the PGD start: the same panel whenever it is drawn
        with float32_precision(tf32=False):  # like evaluate(): full fp32 whatever training used
            x_adv = pgd_examples(self.model, self.config.eval.pgd_attack(), x, y, self.config.eval.batch_size, progress=False)
            clean_pred, clean_masks = predict(self.model, x)
            adv_pred, adv_masks = predict(self.model, x_adv)
        return {"images": x, "true_masks": masks, "labels": y, "clean_pred": clean_pred, "clean_masks": clean_masks,
                "pgd_images": x_adv, "pgd_pred": adv_pred, "pgd_masks": adv_masks}

    def save_figures(self) -> list[Path]:
        """Training curves and, for part models, the predicted-mask panel and its data (``examples.npz``, read by
        notebook 05), under ``figures/``."""
        with self._interruptible():
            return self._save_figures()

    def _save_figures(self) -> list[Path]:
        history = self.history()
        paths = [] if history.empty else [save_figure(plot_training_history(history, self.id), self.dir / "figures" / "training.png")]
        if self.config.is_part_model:
            stored = save_examples(self.examples(), self.dir / "figures" / EXAMPLES_FILE, self.metadata.classes,
                                   self.metadata.num_parts, title=self.id)
            paths += [stored, save_figure(plot_examples(load_examples(stored)), self.dir / "figures" / "masks.png")]
        return paths

    def write_manifest(self) -> dict[str, Any]:
        selected = [r for r in (self.fit_result.history if self.fit_result else []) if r.get("selected")][-1:]
        return write_manifest(
            self.dir / "manifest.json", params=to_dict(self.config), seed=self.config.seed, device=self.device,
            wall_time_s=time.time() - self._t0,
            extra={"run_id": self.id, "config_hash": config_hash(self.config), "experiment": self.experiment,
                   "dataset": self.dataset_name, "num_classes": self.metadata.num_classes, "num_parts": self.metadata.num_parts,
                   "test_samples": len(self.test_set[2]), "selected_epoch": selected,
                   **({"imported_weights": {"file": self.config.model.weights, "sha256": self.config.model.weights_sha256,
                                            "source": self._imported["source"]}} if self._imported is not None else {})},
        )


def execute_run(config: RunConfig, experiment: str = DEFAULT_EXPERIMENT, runs_root: str | Path = "runs",
                run_dir: str | Path | None = None) -> Run:
    """Trains and evaluates one run (the same steps as notebook 01); a finished run is left alone.

    Under torchrun every process calls this: all train and evaluate their share, rank 0 alone
    claims the folder and writes status, results, manifest and figures.
    """
    run = Run(config, experiment, runs_root, run_dir)
    dist = run.dist
    if dist.broadcast(run.done):
        if dist.is_main:
            _log(f"run {run.id} is already finished ({run.dir}): nothing to do")
        return run
    run.start()
    dist.barrier()  # the folder is claimed before anyone trains
    if dist.is_main:
        where = f" on {dist.world_size} processes, {run.batch_per_process} images each per step" if dist.enabled else ""
        _log(f"run {run.id} -> {run.dir}{where}")
    try:
        run.train()
        run.evaluate()
        if dist.is_main:
            run.save_figures()
    except BaseException as err:
        run.fail(err)
        raise
    status = run.finish()
    dist.barrier()
    if dist.is_main:
        _log(f"run {run.id} done in {status.get('wall_time_s', 0):.0f} s: {status.get('metrics', {})}")
    return run


class RunFailed(RuntimeError):
    """A run executed as a notebook raised; the run's status.json has the details."""


def execute_run_notebook(config: RunConfig, experiment: str = DEFAULT_EXPERIMENT, runs_root: str | Path = "runs",
                         run_dir: str | Path | None = None, stream: bool = True) -> Run:
    """Like `execute_run`, but executes notebook 01 for the run; the executed copy lands in the run folder."""
    run = Run(config, experiment, runs_root, run_dir)
    if run.done:
        _log(f"run {run.id} is already finished ({run.dir}): nothing to do")
        return run
    claim(run.dir, config, experiment)
    output = run.dir / f"{RUN_NOTEBOOK}.ipynb"
    _log(f"run {run.id} -> {output}")
    t0 = time.time()
    parameters = {"config": str(run.dir / "config.yaml"), "overrides": {}, "experiment": experiment,
                  "runs_root": str(runs_root), "folder": str(run.dir)}
    rerun = f"python -m partrobust.run {run.dir / 'config.yaml'} --notebook"
    try:
        execute(find_repo_root(), RUN_NOTEBOOK, parameters, output, stream=stream, rerun=rerun)
    except NotebookFailed as err:
        if is_busy_error(err.error):
            raise RunBusyError(err.error.split(": ", 1)[1]) from None
        if is_input_error(err.error):  # bad input found inside the notebook: the same exit status as without it
            raise InputRefused(f"run {run.id}: {err}") from None
        write_status(run.dir, "failed", error=err.error, cell=err.cell, line=err.line, notebook=str(output),
                     wall_time_s=round(time.time() - t0, 1))
        raise RunFailed(f"run {run.id}: {err}") from None
    status = read_status(run.dir)
    _log(f"run {run.id} done in {time.time() - t0:.0f} s: {status.get('metrics', {})}")
    return run


def write_examples(run_dir: str | Path, progress: bool = False) -> Path | None:
    """Writes ``figures/examples.npz`` of a finished part-model run that lacks it (runs finished
    before the file existed): reloads the run's selected weights (no training) and draws the
    Fig. 5 samples. Returns the file, or None for a ResNet run. Needs the run's dataset and checkpoints."""
    run_dir = Path(run_dir)
    record = json.loads((run_dir / RUN_FILE).read_text())
    values, _ = base_config(run_dir / CONFIG_FILE)
    run = Run(make_run_config(values, {"progress": progress}, where=str(run_dir / CONFIG_FILE)), record["experiment"],
              run_dir=run_dir)
    if not run.done:
        raise RuntimeError(f"{run_dir} is not finished: its examples are written when it finishes")
    if not run.config.is_part_model:
        return None
    run.train()  # finished phases reload their selected weights
    return save_examples(run.examples(), run_dir / "figures" / EXAMPLES_FILE, run.metadata.classes,
                         run.metadata.num_parts, title=run.id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train and evaluate one run.", epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="run config YAML or params file (its config: block)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a dotted key, e.g. --set train.beta=2.0 (repeatable)")
    parser.add_argument("--experiment", help="experiment folder name (default: the params file's, else 'default')")
    parser.add_argument("--runs-root", default="runs", help="where experiments live (default runs/)")
    parser.add_argument("--run-dir", help="an explicit run folder instead of <runs-root>/<experiment>/<run id>")
    parser.add_argument("--notebook", action="store_true", help="execute notebook 01 for the run (executed copy in the run folder)")
    args = parser.parse_args(argv)
    try:
        config_file = Path(args.config).resolve()
        run_dir = Path(args.run_dir).resolve() if args.run_dir else None
        os.chdir(find_repo_root())  # paths inside configs are relative to the repository root
        if args.experiment is not None:
            check_plain_name(args.experiment, "--experiment")
        overrides = dict(parse_assignment(a) for a in args.overrides)
        values, file_experiment = base_config(config_file)
        config = make_run_config(values, overrides, where=args.config)
        experiment = args.experiment or file_experiment or DEFAULT_EXPERIMENT
        if args.notebook and distributed.from_environment().enabled:
            raise ParameterError("--notebook runs one process; under torchrun run without it")
        distributed.setup(config.device)
        runner = execute_run_notebook if args.notebook else execute_run
        runner(config, experiment, args.runs_root, run_dir)
    except Exception as err:  # noqa: BLE001 - one line and an exit status for every error (partrobust.runs.errors)
        return report_exit(err)
    finally:
        distributed.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
