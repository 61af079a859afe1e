"""Seed statistics: mean and Student-t interval against hand-computed values, grouping, the report files."""
import math

import pandas as pd
import pytest

from partrobust.report.figures import save_seed_report
from partrobust.report.stats import format_mean_ci, mean_ci, seed_summary, seed_table


def test_mean_ci_matches_hand_computation():
    # values 80, 82, 84: mean 82, sd 2, sem 2 / sqrt(3); t(0.975, 2 df) = 4.302653
    mean, half = mean_ci([80.0, 82.0, 84.0])
    assert mean == pytest.approx(82.0)
    assert half == pytest.approx(4.302653 * 2 / math.sqrt(3), rel=1e-6)
    mean, half = mean_ci([80.0, 82.0, 84.0], confidence=0.9)  # t(0.95, 2 df) = 2.919986
    assert half == pytest.approx(2.919986 * 2 / math.sqrt(3), rel=1e-6)


def test_mean_ci_edge_cases():
    assert math.isnan(mean_ci([70.0])[1])
    assert mean_ci([5.0, 5.0, 5.0]) == (5.0, 0.0)
    with pytest.raises(ValueError, match="at least one"):
        mean_ci([])
    with pytest.raises(ValueError, match="confidence"):
        mean_ci([1.0, 2.0], confidence=95)
    assert format_mean_ci(85.25, 1.234) == "85.2 ± 1.2"
    assert format_mean_ci(85.0, math.nan) == "85.0"


def _results(rows):
    """Tidy result rows: (run_id, model, training, beta, seed, metric, value)."""
    frame = pd.DataFrame(rows, columns=["run_id", "model", "training", "beta", "seed", "metric", "value"])
    return frame.assign(experiment="study", dataset="synthetic-parts", n=200, note="")


def _study():
    rows = []
    for model, base in (("resnet", 80.0), ("bbox", 90.0)):
        for training in ("normal", "pgd"):
            for seed in range(3):
                rid = f"{model}-{training}-{seed}"
                rows.append((rid, model, training, None, seed, "clean_accuracy", base + seed))
                rows.append((rid, model, training, None, seed, "autoattack_accuracy", base / 4 + 2 * seed))
    return _results(rows)


def test_seed_summary_groups_seeds_and_orders_rows():
    summary = seed_summary(_study())
    assert len(summary) == 8  # 2 models x 2 trainings x 2 metrics
    assert list(summary.training.unique()) == ["normal", "pgd"] and list(summary.model.unique()) == ["resnet", "bbox"]
    cell = summary[(summary.model == "bbox") & (summary.training == "pgd") & (summary.metric == "autoattack_accuracy")].iloc[0]
    mean, half = mean_ci([22.5, 24.5, 26.5])
    assert (cell["mean"], cell.half_width, cell.seeds, cell.test_images) == (pytest.approx(mean), pytest.approx(half), 3, 200)
    assert cell.ci_low == pytest.approx(mean - half) and cell.ci_high == pytest.approx(mean + half)
    assert cell.run_ids == "bbox-pgd-0 bbox-pgd-1 bbox-pgd-2"
    table = seed_table(summary)
    assert table.loc[("pgd", "bbox"), "clean"] == format_mean_ci(*mean_ci([90.0, 91.0, 92.0]))
    assert list(table.columns) == ["clean", "AutoAttack", "seeds"]


def test_seed_summary_keeps_a_beta_sweep_apart_and_refuses_ambiguous_groups():
    rows = [(f"bbox-trades-b{b}-{s}", "bbox", "trades", b, s, "clean_accuracy", 80.0 + b + s) for b in (1.0, 2.0) for s in range(2)]
    summary = seed_summary(_results(rows))
    assert sorted(summary.beta) == [1.0, 2.0] and set(summary.seeds) == {2}
    assert list(seed_table(summary).index.names) == ["training", "model", "beta"]
    with pytest.raises(ValueError, match="share a seed"):
        seed_summary(_results(rows), by=["model", "training"])


def test_seed_report_files_are_byte_identical_across_runs(tmp_path):
    results = _study()
    first = save_seed_report(results, tmp_path / "a", source="params/x.yaml")
    second = save_seed_report(results, tmp_path / "b", source="params/x.yaml")
    assert set(first) == {"summary", "table", "png", "pdf"}
    for key in first:
        assert first[key].read_bytes() == second[key].read_bytes(), key
    table = first["table"].read_text()
    header = [cell.strip() for cell in table.splitlines()[0].strip("|").split("|")]
    assert header == ["training", "model", "clean", "AutoAttack", "seeds"]
    assert "Bounding-Box" in table and "12 runs of `params/x.yaml`" in table


def test_seed_report_with_single_seed_settings_and_a_beta_sweep(tmp_path):
    """Settings with one seed have no interval (empty, not an error), and options that do not apply
    (beta of a PGD run) neither split rows nor create empty ones."""
    rows = [(f"resnet-pgd-{s}", "resnet", "pgd", None, s, m, 50.0 + s) for s in range(3) for m in ("clean_accuracy", "autoattack_accuracy")]
    rows += [(f"bbox-trades-b{b}", "bbox", "trades", b, 0, m, 60.0 + b) for b in (0.5, 2.0) for m in ("clean_accuracy", "autoattack_accuracy")]
    paths = save_seed_report(_results(rows), tmp_path, source="params/x.yaml")
    table = seed_table(seed_summary(_results(rows)))
    assert len(table) == 3 and list(table.seeds) == [3, 1, 1]
    assert table.loc[("trades", "bbox", 2.0), "clean"] == "62.0"
    assert table.loc[("pgd", "resnet", ""), "clean"] == format_mean_ci(*mean_ci([50.0, 51.0, 52.0]))
    assert paths["png"].stat().st_size > 0
