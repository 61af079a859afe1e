"""Notebook 01: adversarial (PGD or TRADES) training of the baseline and part models, then
clean / PGD / AutoAttack evaluation on the test split, with tidy results and figures."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn as nn
import yaml

from ..config import ParameterError, parse_fraction, to_dict
from ..data import load_metadata, validate_prepared
from ..data.loaders import LoaderConfig, build_loaders
from ..evaluation import EvalConfig, collect, evaluate, predict
from ..models import MODELS, ModelConfig, build_model, count_parameters
from ..results import append_results, result_rows, write_manifest
from ..training import ADV_METHODS, FitResult, TrainConfig, fit
from ..utils import resolve_device, seed_everything

NOTEBOOK = "01_pgd_training"


@dataclass
class PGDTrainingParams:
    """Parameters of notebook 01 (defaults live in the notebook's `parameters` cell)."""

    run_dir: str
    dataset_root: str
    models: list[str]
    arch: str
    encoder: str
    pretrained_baseline: str | None
    pretrained_encoder: str | None
    pool_size: int
    crop_size: int
    resize_size: int
    min_crop_scale: float
    batch_size: int
    num_workers: int
    train_limit: int | None
    epochs_clean: int
    epochs_adv: int
    adv_method: str
    lr: float
    weight_decay: float
    c_seg: float
    trades_beta: float
    eps: float | str
    train_step_size: float | str
    train_steps: int
    val_every: int
    val_steps: int
    val_step_size: float | str
    val_limit: int | None
    test_limit: int | None
    test_pgd_steps: int
    test_pgd_step_size: float | str
    test_pgd_restarts: int
    autoattack: bool
    autoattack_attacks: list[str] | None
    device: str
    bf16: bool
    tf32: bool
    seed: int
    progress: bool

    def __post_init__(self) -> None:
        unknown = [m for m in self.models if m not in MODELS]
        if unknown:
            raise ParameterError(f"models: unknown model(s) {unknown}; known: {MODELS.names()}")
        if self.adv_method not in ADV_METHODS:
            raise ParameterError(f"adv_method must be one of {ADV_METHODS}, got {self.adv_method!r}")
        for key in ("eps", "train_step_size", "val_step_size", "test_pgd_step_size"):
            parse_fraction(getattr(self, key), key)
        for key in ("pretrained_baseline", "pretrained_encoder"):
            path = getattr(self, key)
            if path is not None and not Path(path).is_file():
                raise ParameterError(f"{key}: weights file {path} does not exist")


class PGDTrainingExperiment:
    """Holds the data, device and output folders of one notebook-01 run."""

    def __init__(self, params: PGDTrainingParams) -> None:
        self.params = params
        validate_prepared(params.dataset_root)  # fail before any compute, naming the file
        self.metadata = load_metadata(params.dataset_root)
        self.device = resolve_device(params.device)
        self.run_dir = Path(params.run_dir)
        self.out_dir = self.run_dir / NOTEBOOK
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.results_csv = self.run_dir / "results.csv"
        (self.out_dir / "params.yaml").write_text(yaml.safe_dump(to_dict(params), sort_keys=False))
        seed_everything(params.seed)
        self.loaders = build_loaders(
            params.dataset_root,
            LoaderConfig(
                crop_size=params.crop_size,
                resize_size=params.resize_size,
                min_crop_scale=params.min_crop_scale,
                batch_size=params.batch_size,
                num_workers=params.num_workers,
                train_limit=params.train_limit,
                seed=params.seed,
            ),
        )
        self.test_x, self.test_masks, self.test_y = collect(self.loaders["test"], params.test_limit)
        self.models: dict[str, nn.Module] = {}
        self.fits: dict[str, FitResult] = {}
        self.eval_inputs: dict[str, dict[str, torch.Tensor]] = {}
        self._t0 = time.time()

    # ---- configuration -------------------------------------------------------------------
    @property
    def dataset_name(self) -> str:
        return self.metadata.name

    def model_config(self, name: str) -> ModelConfig:
        p = self.params
        return ModelConfig(
            name=name,
            num_classes=self.metadata.num_classes,
            num_parts=0 if name == "resnet" else self.metadata.num_parts,
            arch=p.arch,
            encoder=p.encoder,
            pool_size=p.pool_size,
            image_size=p.crop_size,
            part_to_class=self.metadata.part_to_class() if name == "pixel" else None,
            pretrained_path=p.pretrained_baseline if name == "resnet" else p.pretrained_encoder,
        )

    def train_config(self) -> TrainConfig:
        p = self.params
        return TrainConfig(
            epochs_clean=p.epochs_clean, epochs_adv=p.epochs_adv, adv_method=p.adv_method, lr=p.lr,
            weight_decay=p.weight_decay, c_seg=p.c_seg, trades_beta=p.trades_beta, eps=p.eps,
            train_step_size=p.train_step_size, train_steps=p.train_steps, val_every=p.val_every,
            val_steps=p.val_steps, val_step_size=p.val_step_size, val_limit=p.val_limit,
            bf16=p.bf16, tf32=p.tf32, seed=p.seed, progress=p.progress,
        )

    def eval_config(self) -> EvalConfig:
        p = self.params
        return EvalConfig(
            eps=p.eps, pgd_steps=p.test_pgd_steps, pgd_step_size=p.test_pgd_step_size,
            pgd_restarts=p.test_pgd_restarts, autoattack=p.autoattack,
            autoattack_attacks=p.autoattack_attacks, batch_size=p.batch_size,
            seed=p.seed, progress=p.progress,
        )

    def hparams(self) -> dict[str, Any]:
        p = self.params
        return {"eps": p.eps, "c_seg": p.c_seg, "lr": p.lr, "wd": p.weight_decay, "epochs": [p.epochs_clean, p.epochs_adv],
                "train_steps": p.train_steps, "train_step_size": p.train_step_size,
                **({"beta": p.trades_beta} if p.adv_method == "trades" else {})}

    # ---- steps ---------------------------------------------------------------------------
    def describe_models(self) -> pd.DataFrame:
        """Parameter counts of the models this run trains (built without weights)."""
        rows = [{"model": n, "parameters": count_parameters(build_model(self.model_config(n)))} for n in self.params.models]
        return pd.DataFrame(rows)

    def train(self, name: str) -> FitResult:
        """Trains (or resumes) one model; the selected weights stay loaded in ``self.models``."""
        seed_everything(self.params.seed)
        self.loaders["train"].generator.manual_seed(self.params.seed)
        model = build_model(self.model_config(name))
        result = fit(model, self.loaders["train"], self.loaders["val"], self.train_config(), self.out_dir / name, self.device)
        self.models[name], self.fits[name] = model, result
        return result

    def evaluate(self, name: str) -> pd.DataFrame:
        """Clean / PGD / AutoAttack accuracy (and pixel accuracy) of a trained model on the test split."""
        model = self.models[name]
        rows, inputs = evaluate(model, self.test_x, self.test_masks, self.test_y, self.eval_config(), self.out_dir / name)
        self.eval_inputs[name] = inputs
        tidy = result_rows(rows, run=self.run_dir.name, dataset=self.dataset_name, model=name,
                           training=self.params.adv_method, hparams=self.hparams())
        append_results(self.results_csv, tidy)
        return pd.DataFrame(tidy)

    def results(self) -> pd.DataFrame:
        """This run's rows of the results CSV."""
        df = pd.read_csv(self.results_csv, keep_default_na=False)
        return df[(df.run == self.run_dir.name) & (df.dataset == self.dataset_name) & (df.model.isin(self.params.models))]

    def history(self) -> pd.DataFrame:
        """Per-epoch training and validation records of every trained model."""
        frames = [pd.DataFrame(fit.history).assign(model=name) for name, fit in self.fits.items()]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def examples(self, name: str, n: int = 8) -> dict[str, Any]:
        """Images, true masks and predictions on clean and PGD inputs, for a Fig. 5-style plot."""
        inputs = self.eval_inputs[name]
        model = self.models[name]
        clean_pred, clean_masks = predict(model, inputs["clean"][:n])
        adv_pred, adv_masks = predict(model, inputs["pgd"][:n])
        return {"images": inputs["clean"][:n], "true_masks": self.test_masks[:n], "labels": self.test_y[:n],
                "clean_pred": clean_pred, "clean_masks": clean_masks, "pgd_images": inputs["pgd"][:n],
                "pgd_pred": adv_pred, "pgd_masks": adv_masks}

    def write_manifest(self) -> dict[str, Any]:
        return write_manifest(
            self.out_dir / "manifest.json",
            params=to_dict(self.params),
            seed=self.params.seed,
            device=self.device,
            wall_time_s=time.time() - self._t0,
            extra={"dataset": self.dataset_name, "num_classes": self.metadata.num_classes,
                   "num_parts": self.metadata.num_parts, "test_samples": len(self.test_y),
                   "selected_epochs": {n: [r for r in f.history if r.get("selected")][-1:] for n, f in self.fits.items()}},
        )
