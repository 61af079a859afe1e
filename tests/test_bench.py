"""The speed benchmark (partrobust.runs.bench): runs in seconds on tiny CPU shapes; its formulas by hand."""
import math

import pandas as pd
import pytest
import torch
from torch import nn

from partrobust.runs import bench
from partrobust.runs.bench import DatasetSize, FlopCount, Protocol, gpu_peak_tflops, run_seconds, table1_hours


def test_gpu_peaks_match_the_most_specific_name():
    assert gpu_peak_tflops("NVIDIA H200") == 989.0
    assert gpu_peak_tflops("NVIDIA H100 PCIe") == 756.0 and gpu_peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert gpu_peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0 and gpu_peak_tflops("NVIDIA A10") == 125.0
    assert gpu_peak_tflops("NVIDIA L40S") == 362.0 and gpu_peak_tflops("NVIDIA L4") == 121.0
    assert gpu_peak_tflops("Some New Accelerator") is None


def test_flop_count_of_a_linear_layer_and_its_input_gradient():
    layer, x = nn.Linear(8, 4, bias=False), torch.rand(3, 8, requires_grad=True)
    with FlopCount() as forward:
        out = layer(x)
    assert forward.total == 2 * 3 * 8 * 4
    with FlopCount() as backward:
        torch.autograd.grad(out.sum(), x)
    assert backward.total == 2 * 3 * 8 * 4, "the input gradient only: no weight gradient is computed"


def test_run_seconds_by_hand():
    rates = {"train_clean": 100.0, "train_pgd": 10.0, "predict": 1000.0, "eval_pgd": 50.0, "autoattack": 25.0}
    data, p = DatasetSize(train=1000, val=100, test=200, classes=11), Protocol(epochs_clean=2, epochs_adv=4, val_every=2)
    clean = 2 * 1000 / 100 + 1 * 100 / 1000
    adversarial = 4 * 1000 / 10 + 2 * 100 * (100 / 50 + 1 / 1000)
    pgd_test = 200 * 100 * 5 / 50
    autoattack = 200 * ((100 + 0.4 * (9 * 100 + 9 * 100)) / 25 + 0.4 * 5000 / 1000)
    assert run_seconds(rates, data, "pgd", p) == pytest.approx(clean + adversarial + pgd_test + autoattack)
    trades_extra = 4 * 1000 / (10 / 1.1) - 4 * 1000 / 10
    assert run_seconds(rates, data, "trades", p) == pytest.approx(clean + adversarial + pgd_test + autoattack + trades_extra)
    two_classes = DatasetSize(train=1000, val=100, test=200, classes=2)  # apgd-ce, untargeted fab, square
    aa_two = 200 * ((100 + 0.4 * 100) / 25 + 0.4 * 5000 / 1000)
    assert run_seconds(rates, two_classes, "pgd", p) == pytest.approx(clean + adversarial + pgd_test + aa_two)
    hours = table1_hours({"resnet": rates, "downsampled": rates}, p)
    per_dataset = [sum(run_seconds(rates, d, m, p) for m in ("pgd", "trades")) * 3 for d in bench.TABLE1_DATASETS.values()]
    assert hours == pytest.approx(sum(per_dataset) / 3600)


@pytest.mark.slow
def test_benchmark_runs_on_tiny_cpu_shapes(tmp_path, capsys):
    out = tmp_path / "bench.csv"
    assert bench.main(["--device", "cpu", "--batch", "2", "--iters", "1", "--warmup", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "NOT GPU numbers" in printed and "Table 1 estimate" in printed and "MFU: not computed" in printed
    results = pd.read_csv(out)
    assert set(results["model"]) == {"downsampled", "resnet"} and set(results["case"]) == set(bench.UNITS)
    assert set(results["variant"]) == set(bench.CPU_VARIANTS)
    assert len(results) == results[["model", "case", "variant", "metric"]].drop_duplicates().shape[0], "tidy: one row per metric"
    rate = results[results["metric"] == "rate"]
    assert (rate["value"] > 0).all()
    ratio = results[results["metric"] == "ratio_to_fp32"].set_index(["model", "case", "variant"])["value"]
    assert (ratio.xs("fp32", level="variant") == 1.0).all()
    flops = results[results["metric"] == "flops"].set_index(["model", "case", "variant"])["value"]
    # a PGD-10 training step = 10 input-gradient steps + one training step (forward and backward)
    for model in ("downsampled", "resnet"):
        expected = 10 * flops[(model, "eval_pgd", "fp32")] + flops[(model, "train_clean", "fp32")]
        assert flops[(model, "train_pgd", "fp32")] == pytest.approx(expected, rel=0.02)
        assert flops[(model, "eval_pgd", "fp32")] > 2 * flops[(model, "predict", "fp32")]
    assert results.query("metric == 'mfu'")["value"].isna().all(), "no GPU peak on a CPU"
    assert results["device"].eq("cpu").all() and not math.isnan(results.query("metric == 'tflops'")["value"].iloc[0])


def test_readme_shows_the_committed_cpu_benchmark():
    from pathlib import Path

    from partrobust.report.readme import block_text

    root = Path(__file__).resolve().parents[1]
    shown, report = block_text("bench-cpu", root), (root / "figures/bench/bench-cpu.md").read_text()
    assert shown.strip() == report.strip(), ("the documentation's benchmark block differs from figures/bench/bench-cpu.md: run "
                                             "`python -m partrobust.report.readme figures/bench/bench-cpu.md bench-cpu`")
