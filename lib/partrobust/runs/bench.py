"""``python -m partrobust.bench``: how fast this machine trains and attacks, through the library's own code.

One process, one model and one batch per measurement. For each model and *speed variant* (plain
fp32 eager, TF32, bf16, bf16 with the speed switches, optionally torch.compile) it times

* ``train_clean``: a normal training step (`partrobust.train.loop.train_one_epoch`),
* ``train_pgd``: a PGD-10 adversarial-training step (the same function),
* ``predict``: a forward pass in eval mode,
* ``eval_pgd``: one step of the evaluation PGD (fp32, as the test attacks run; rates per image-step),
* ``autoattack``: one APGD-CE iteration inside the AutoAttack adapter (pyautoattack; per image-iteration),

and prints img/s, peak memory, counted FLOPs (`torch.utils.flop_counter`), achieved TFLOP/s, MFU
against the detected GPU's dense bf16 peak (`GPU_PEAKS`, stated) and the ratio to the plain fp32
eager path measured in the same run. From the rates it estimates the GPU-hours of the paper's
Table 1 (`table1_hours`). Results go to a tidy CSV (one row per model x case x variant x metric).

On a CPU it runs tiny shapes (32 px, a 10-layer ResNet encoder) in seconds and says that its
numbers are not GPU numbers; the defaults on CUDA are Part-ImageNet's shapes (224 px, batch 128,
11 classes, 40 parts, ResNet-50).
"""
from __future__ import annotations

import argparse
import datetime
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from ..attacks import PGD
from ..attacks.autoattack import STANDARD_ITERATIONS, STANDARD_SQUARE_QUERIES, AutoAttack
from ..attacks.base import eval_mode
from ..core.device import float32_precision, resolve_device
from ..core.registry import Registry
from ..eval.config import EvalConfig
from ..models import ModelConfig, build_model
from ..train.loop import TrainConfig, parameter_groups, train_one_epoch
from ..train.speed import PLAIN, Speed, apply_speed, speed_settings, to_device

GPU_PEAKS: tuple[tuple[str, float], ...] = (
    ("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("H800", 989.0), ("A100", 312.0), ("A800", 312.0),
    ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0), ("A10", 125.0), ("RTX 4090", 165.0), ("RTX 3090", 71.0),
    ("V100", 125.0), ("T4", 65.0),
)
"""Dense (no sparsity) bf16 / fp16 tensor-core peak in TFLOP/s, by a substring of the CUDA device name, first match."""


def gpu_peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU named `device_name` (`GPU_PEAKS`), None if unknown."""
    return next((peak for key, peak in GPU_PEAKS if key.lower() in device_name.lower()), None)


@dataclass(frozen=True)
class Shape:
    """What one measurement runs on: the image side, the batch, and the model's sizes."""

    image_size: int
    batch: int
    num_classes: int
    num_parts: int
    encoder: str
    arch: str


GPU_SHAPE = Shape(image_size=224, batch=128, num_classes=11, num_parts=40, encoder="resnet50", arch="resnet50")
CPU_SHAPE = Shape(image_size=32, batch=8, num_classes=4, num_parts=6, encoder="tu-resnet10t", arch="resnet10t")


@dataclass(frozen=True)
class Variant:
    """A way to run the same computation: speed switches plus the training precision."""

    name: str
    speed: Speed = PLAIN
    bf16: bool = False
    tf32: bool = False

    @property
    def precision(self) -> str:
        return "bf16" if self.bf16 else ("tf32" if self.tf32 else "fp32")


_FAST = Speed(channels_last=True, cudnn_benchmark=True)
VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("fp32"),
    Variant("tf32", tf32=True),
    Variant("bf16", bf16=True),
    Variant("channels_last", speed=_FAST),
    Variant("bf16+channels_last", speed=_FAST, bf16=True),
    Variant("bf16+channels_last+compile", speed=replace(_FAST, compile=True), bf16=True),
)}
"""The variants by name; ``fp32`` is the plain eager path every ratio refers to."""
GPU_VARIANTS = ("fp32", "tf32", "bf16", "bf16+channels_last")
CPU_VARIANTS = ("fp32", "channels_last")


@dataclass
class Settings:
    """The knobs of one benchmark run."""

    shape: Shape
    device: torch.device
    iters: int = 5
    warmup: int = 2
    train_steps: int = 10
    eval_steps: int = 10
    aa_iterations: int = 10


@dataclass
class Timing:
    """One measurement: seconds per timed call, the units (images or image-steps) per call, peak memory."""

    seconds: float
    units: int
    peak_gib: float = math.nan
    first_call_s: float = math.nan


Case = Callable[[nn.Module, tuple[torch.Tensor, torch.Tensor, torch.Tensor], Variant, Settings], Callable[[], int]]
CASES: Registry[Callable[[], int]] = Registry("benchmark case")
UNITS = {"train_clean": "img", "train_pgd": "img", "predict": "img", "eval_pgd": "img-step", "autoattack": "img-iteration"}
EVAL_CASES = ("predict", "eval_pgd", "autoattack")
"""Cases that run in IEEE fp32 whatever the variant's training precision (as the test attacks do): timed once per speed."""


def _train_case(method: str) -> Case:
    def make(model, batch, variant, settings):
        cfg = TrainConfig(bf16=variant.bf16, tf32=variant.tf32, steps=settings.train_steps, log_every=10**9)
        optimizer = torch.optim.SGD(parameter_groups(model, cfg.weight_decay), lr=1e-4, momentum=cfg.momentum)

        def step() -> int:  # lr 1e-4: random data must not diverge; speed does not depend on it
            with float32_precision(tf32=variant.tf32):
                train_one_epoch(model, [batch], optimizer, method, cfg, settings.device, "bench", progress=False, speed=variant.speed)
            return len(batch[2])
        return step
    return make


CASES.register("train_clean")(_train_case("normal"))
CASES.register("train_pgd")(_train_case("pgd"))


@CASES.register("predict")
def _predict_case(model, batch, variant, settings):
    def step() -> int:
        with eval_mode(model), torch.no_grad(), float32_precision(tf32=False):
            model(batch[0])
        return len(batch[0])
    return step


@CASES.register("eval_pgd")
def _eval_pgd_case(model, batch, variant, settings):
    attack = PGD(eps=8 / 255, step_size=0.001, steps=settings.eval_steps, early_stop=False)

    def step() -> int:
        with float32_precision(tf32=False):
            attack(model, batch[0], batch[2])
        return len(batch[0]) * settings.eval_steps
    return step


@CASES.register("autoattack")
def _autoattack_case(model, batch, variant, settings):
    x = batch[0]
    with eval_mode(model), torch.no_grad():
        y = model(x).argmax(1)  # the model's own predictions: every image starts correct and is attacked
    attack = AutoAttack(eps=8 / 255, seed=0, batch_size=len(x), attacks=["apgd-ce"], progress=False,
                        iterations=settings.aa_iterations)

    def step() -> int:
        attack.run(model, x, y)
        return len(x) * settings.aa_iterations
    return step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_batch(shape: Shape, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random images in [0, 1], part masks and labels (seeded): speed does not depend on the values."""
    n, g = shape.batch, torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, shape.image_size, shape.image_size, generator=g)
    masks = torch.randint(0, shape.num_parts + 1, (n, shape.image_size, shape.image_size), generator=g)
    y = torch.randint(0, shape.num_classes, (n,), generator=g)
    return x.to(device), masks.to(device), y.to(device)


def make_model(name: str, shape: Shape, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    config = ModelConfig(name=name, num_classes=shape.num_classes, num_parts=0 if name == "resnet" else shape.num_parts,
                         encoder=shape.encoder, arch=shape.arch, image_size=shape.image_size)
    return build_model(config).to(device)


def time_case(case: str, model_name: str, variant: Variant, settings: Settings) -> Timing:
    """Warm-up calls (compiling, cudnn.benchmark's search), then `settings.iters` timed calls."""
    device = settings.device
    model = apply_speed(make_model(model_name, settings.shape, device), variant.speed)
    x, masks, y = make_batch(settings.shape, device)
    batch = (to_device(x, device, variant.speed), masks, y)  # as train_one_epoch feeds it
    with speed_settings(variant.speed):
        step = CASES.build(case, model, batch, variant, settings)
        t0 = time.perf_counter()
        for i in range(max(settings.warmup, 1)):
            step()
            _sync(device)
            if i == 0:
                first = time.perf_counter() - t0
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        units = 0
        t0 = time.perf_counter()
        for _ in range(settings.iters):
            units += step()
        _sync(device)
        seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else math.nan
    return Timing(seconds=seconds / settings.iters, units=units // settings.iters, peak_gib=peak, first_call_s=first)


class FlopCount(TorchDispatchMode):
    """Counts matmul / convolution FLOPs (forward and backward) with torch's own formulas (`flop_registry`).

    `torch.utils.flop_counter.FlopCounterMode` would do, but its per-module hooks break
    ``torch.autograd.grad`` (the attacks' input gradients), so this counts without them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def count_flops(case: str, model_name: str, settings: Settings, images: int = 2) -> float:
    """FLOPs per unit (image, image-step or image-iteration) of `case`, counted on `images` images, plain fp32."""
    small = replace(settings, shape=replace(settings.shape, batch=images))
    model = make_model(model_name, small.shape, settings.device)
    step = CASES.build(case, model, make_batch(small.shape, settings.device), VARIANTS["fp32"], small)
    step()  # optimiser state and lazy initialisation outside the count
    with FlopCount() as counter:
        units = step()
    return counter.total / units


# --------------------------------------------------------------------------- Table 1 estimate
@dataclass(frozen=True)
class DatasetSize:
    train: int
    val: int
    test: int
    classes: int


TABLE1_DATASETS = {
    "part_imagenet": DatasetSize(train=19_276, val=2_409, test=2_410, classes=11),
    "cityscapes": DatasetSize(train=23_784, val=2_972, test=2_972, classes=2),
    "pascal_part": DatasetSize(train=2_930, val=366, test=366, classes=5),
}
"""The paper's totals (24,095; 29,728; 3,662 samples) split 80/10/10 as the authors' scripts do (approximate counts)."""


_TRAIN, _EVAL = TrainConfig(), EvalConfig()  # the library's defaults are the paper's recipe (B.1) and evaluation


@dataclass(frozen=True)
class Protocol:
    """The paper's schedule and evaluation (the run config's defaults), and the assumptions the estimate makes."""

    epochs_clean: int = _TRAIN.epochs_clean
    epochs_adv: int = _TRAIN.epochs_adv
    val_every: int = _TRAIN.val_every
    val_steps: int = _TRAIN.val_steps
    test_steps: int = _EVAL.pgd_steps
    test_restarts: int = _EVAL.pgd_restarts
    trades_factor: float = 1.1
    robust_fraction: float = 0.4
    aa_iterations: int = STANDARD_ITERATIONS
    square_queries: int = STANDARD_SQUARE_QUERIES

    @property
    def notes(self) -> tuple[str, ...]:
        return (
            f"18 runs: 3 datasets x {{ResNet-50, Downsampled, Bounding-Box}} x {{PGD, TRADES}}, {self.epochs_clean} clean + "
            f"{self.epochs_adv} adversarial epochs",
            f"validation every {self.val_every} epochs (PGD-{self.val_steps} in the adversarial phase), test PGD-{self.test_steps} "
            f"x {self.test_restarts} and standard AutoAttack",
            f"Bounding-Box timed as Downsampled (same segmenter); a TRADES step costs {self.trades_factor:g} PGD steps",
            f"test PGD without early stopping (an upper bound); AutoAttack: {self.robust_fraction:.0%} of test images robust "
            "after APGD-CE, a FAB iteration costs an APGD iteration, Square costs one forward per query",
        )


def run_seconds(rates: dict[str, float], data: DatasetSize, method: str, p: Protocol = Protocol()) -> float:
    """Seconds of one Table-1 run from the measured `rates` (units/s per case; eval cases at fp32)."""
    validations = p.epochs_adv // p.val_every
    clean = p.epochs_clean * data.train / rates["train_clean"] + (p.epochs_clean // p.val_every) * data.val / rates["predict"]
    step = rates["train_pgd"] / (p.trades_factor if method == "trades" else 1.0)
    adversarial = p.epochs_adv * data.train / step + validations * data.val * (p.val_steps / rates["eval_pgd"] + 1 / rates["predict"])
    pgd_test = data.test * p.test_steps * p.test_restarts / rates["eval_pgd"]
    if data.classes >= 4:  # APGD-T and FAB-T on the robust images, each over min(9, C - 1) target classes
        robust_iterations = 2 * min(9, data.classes - 1) * p.aa_iterations
    else:  # C < 4: untargeted FAB only
        robust_iterations = p.aa_iterations
    aa_iterations = p.aa_iterations + p.robust_fraction * robust_iterations
    autoattack = data.test * (aa_iterations / rates["autoattack"] + p.robust_fraction * p.square_queries / rates["predict"])
    return clean + adversarial + pgd_test + autoattack


def table1_hours(rates: dict[str, dict[str, float]], p: Protocol = Protocol()) -> float:
    """GPU-hours of Table 1 from per-model rates (``{"resnet": {...}, "downsampled": {...}}``)."""
    seconds = 0.0
    for data in TABLE1_DATASETS.values():
        for method in ("pgd", "trades"):
            seconds += run_seconds(rates["resnet"], data, method, p) + 2 * run_seconds(rates["downsampled"], data, method, p)
    return seconds / 3600


# --------------------------------------------------------------------------- the benchmark
def benchmark(models: list[str], cases: list[str], variants: list[str], settings: Settings, progress: bool = True) -> pd.DataFrame:
    """Measures every model x case x variant; returns tidy rows (model, case, variant, metric, value, unit)."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise KeyError(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    for case in cases:
        CASES.get(case)
    device = settings.device
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    peak = gpu_peak_tflops(gpu) if gpu else None
    rows = []
    for model_name in models:
        for case in cases:
            flops = count_flops(case, model_name, settings)
            baseline, timings = None, {}
            for name in (["fp32"] if "fp32" not in variants else []) + variants:
                variant = VARIANTS[name]
                key = variant.speed if case in EVAL_CASES else name
                if key not in timings:
                    timings[key] = time_case(case, model_name, variant, settings)
                timing = timings[key]
                rate = timing.units / timing.seconds
                baseline = rate if name == "fp32" else baseline
                if name not in variants:
                    continue
                tflops = flops * rate / 1e12
                values = {
                    "rate": (rate, f"{UNITS[case]}/s"), "peak_memory": (timing.peak_gib, "GiB"),
                    "flops": (flops / 1e9, f"GFLOP/{UNITS[case]}"), "tflops": (tflops, "TFLOP/s"),
                    "mfu": (100 * tflops / peak if peak else math.nan, "% of dense bf16 peak"),
                    "ratio_to_fp32": (rate / baseline, "x"),
                    "first_call": (timing.first_call_s, "s (compile, cudnn search)"),
                }
                precision = "fp32" if case in EVAL_CASES else variant.precision
                rows += [{"model": model_name, "case": case, "variant": name, "precision": precision,
                          "speed": variant.speed.describe(), "metric": metric, "value": value, "unit": unit}
                         for metric, (value, unit) in values.items()]
                if progress:
                    print(f"  {model_name:12s} {case:12s} {name:28s} {rate:10.1f} {UNITS[case]}/s", flush=True)
    frame = pd.DataFrame(rows)
    context = {"device": gpu or "cpu", "peak_tflops": peak, "torch": torch.__version__, "image_size": settings.shape.image_size,
               "batch": settings.shape.batch, "date": datetime.date.today().isoformat()}
    return frame.assign(**context)


def summary_table(results: pd.DataFrame) -> pd.DataFrame:
    """One line per model x case x variant: rate, memory, TFLOP/s, MFU and the ratio to fp32."""
    wide = results.pivot_table(index=["model", "case", "variant"], columns="metric", values="value", sort=False, dropna=False)
    order = ["rate", "peak_memory", "flops", "tflops", "mfu", "ratio_to_fp32", "first_call"]
    return wide[[c for c in order if c in wide.columns]].round(3)


def markdown_report(results: pd.DataFrame, header: str) -> str:
    """`header`, then the summary as a markdown table (rate, GFLOP per unit, TFLOP/s, MFU, peak memory, ratio to fp32)."""
    table = summary_table(results).reset_index()
    lines = [header, "", "| model | case | variant | rate (unit/s) | GFLOP/unit | TFLOP/s | MFU % | peak GiB | x fp32 |",
             "|---|---|---|---|---|---|---|---|---|"]

    def cell(value: float, digits: int) -> str:
        return "-" if pd.isna(value) else f"{value:.{digits}f}"

    for row in table.itertuples(index=False):
        lines.append(f"| {row.model} | {row.case} | {row.variant} | {cell(row.rate, 1)} {UNITS[row.case]}/s | {cell(row.flops, 3)} "
                     f"| {cell(row.tflops, 3)} | {cell(row.mfu, 1)} | {cell(row.peak_memory, 1)} | {cell(row.ratio_to_fp32, 2)} |")
    return "\n".join(lines) + "\n"


def rates_of(results: pd.DataFrame, variant: str, eval_variant: str) -> dict[str, dict[str, float]]:
    """Per-model rates for `table1_hours`: training cases from `variant`, evaluation cases (fp32) from `eval_variant`."""
    rate = results[results["metric"] == "rate"]
    out: dict[str, dict[str, float]] = {}
    for model, group in rate.groupby("model"):
        by = group.set_index(["case", "variant"])["value"]
        keys = {case: (case, eval_variant if case in EVAL_CASES else variant) for case in UNITS}
        out[str(model)] = {case: float(by[key]) for case, key in keys.items() if key in by.index}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="Variants: " + ", ".join(VARIANTS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--models", nargs="+", default=["downsampled", "resnet"])
    parser.add_argument("--cases", nargs="+", default=list(UNITS))
    parser.add_argument("--variants", nargs="+", default=None, help=f"default: {' '.join(GPU_VARIANTS)} on CUDA, {' '.join(CPU_VARIANTS)} on a CPU")
    parser.add_argument("--compile", action="store_true", help="also time bf16+channels_last+compile (compiling takes minutes)")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--iters", type=int, default=None, help="timed calls per measurement (default: 5 on CUDA, 2 on a CPU)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", default=None, help="CSV path (default: runs/bench/bench-<device>.csv); a markdown summary goes beside it (.md)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    shape = GPU_SHAPE if gpu else CPU_SHAPE
    shape = replace(shape, batch=args.batch or shape.batch, image_size=args.image_size or shape.image_size)
    variants = list(args.variants or (GPU_VARIANTS if gpu else CPU_VARIANTS))
    if args.compile and "bf16+channels_last+compile" not in variants:
        variants.append("bf16+channels_last+compile")
    settings = Settings(shape=shape, device=device, iters=args.iters or (5 if gpu else 2), warmup=args.warmup)
    where = torch.cuda.get_device_name(device) if gpu else "CPU"
    header = (f"partrobust.bench on {where}, torch {torch.__version__}, {datetime.date.today().isoformat()}: {shape.image_size} px, "
              f"batch {shape.batch}, {shape.num_classes} classes, {shape.num_parts} parts, encoder {shape.encoder}")
    print(header)
    if not gpu:
        print("NOTE: a CPU with tiny shapes: these are NOT GPU numbers; they check that the benchmark runs.")
    results = benchmark(args.models, args.cases, variants, settings)
    out = Path(args.out or f"runs/bench/bench-{'cuda' if gpu else 'cpu'}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    results.to_csv(out, index=False)
    note = "" if gpu else " (a CPU with tiny shapes: not GPU numbers)"
    out.with_suffix(".md").write_text(markdown_report(results, f"{header}{note}."))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(summary_table(results).to_string())
    peak = gpu_peak_tflops(where) if gpu else None
    print(f"MFU: achieved TFLOP/s over the dense bf16 peak of {where}, {peak} TFLOP/s (GPU_PEAKS)" if peak
          else "MFU: not computed (no known GPU peak for this device)")
    _print_table1(results, variants, gpu)
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


def _print_table1(results: pd.DataFrame, variants: list[str], gpu: bool) -> None:
    cases_needed = set(UNITS)
    if not {"resnet", "downsampled"} <= set(results["model"]) or not cases_needed <= set(results["case"]):
        print("Table 1 estimate: needs both models (resnet, downsampled) and every case")
        return
    fastest_eval = max((v for v in variants if not VARIANTS[v].bf16 and not VARIANTS[v].tf32),
                       key=lambda v: results.query("metric == 'rate' and case == 'eval_pgd' and variant == @v")["value"].mean())
    label = "GPU-hours" if gpu else "hours on this CPU at tiny shapes (not an estimate of anything)"
    print(f"Table 1 estimate ({label}); evaluation attacks in fp32 with {fastest_eval!r}:")
    for variant in variants:
        hours = table1_hours(rates_of(results, variant, fastest_eval if variant != "fp32" else "fp32"))
        print(f"  training {variant:28s} {hours:10.1f}")
    for note in Protocol().notes:
        print(f"  - {note}")


if __name__ == "__main__":
    raise SystemExit(main())
