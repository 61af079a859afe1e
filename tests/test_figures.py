"""Notebook 05's library: paper tables, the side-by-side join, claims, figures, byte-identical outputs."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from partrobust.report import claims, figures, paper, paper_tables, regenerate  # noqa: E402
from partrobust.report import sweep_analysis as analysis  # noqa: E402
from partrobust.runs import figures_command  # noqa: E402
from partrobust.core.results import RESULTS_FILE, read_results  # noqa: E402
from partrobust.report.masks import load_examples, save_examples  # noqa: E402
from conftest import digests  # noqa: E402
from test_analysis import acc, frame, run_rows  # noqa: E402
from test_plain_clone import figures_in_a_plain_clone  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = REPO / "figures" / "builtin_study"


@pytest.fixture(scope="module")
def tables_dir() -> Path:
    """The transcribed paper tables shipped with the package."""
    return paper_tables.paper_tables_dir()


def rows_by_readme(folder: Path) -> dict[int, int]:
    """Row counts the paper-tables README states: 'N values' (+1 per 'N cell MISSING')."""
    counts = {}
    for line in (folder / "README.md").read_text().splitlines():
        found = re.match(r"- `table(\d\d)\.csv`: .*?(\d+) values(?: plus (\d+) cells? MISSING)?", line)
        if found:
            counts[int(found[1])] = int(found[2]) + int(found[3] or 0)
    return counts


# --------------------------------------------------------------------------- paper tables


def test_all_19_paper_tables_load_with_the_readme_row_counts(tables_dir):
    expected = rows_by_readme(tables_dir)
    assert sorted(expected) == list(range(1, 20)) == sorted(paper.TABLES)
    for number, count in expected.items():
        table = paper_tables.load_paper_table(number, tables_dir)
        assert len(table) == count, f"table {number}"
        assert table["metric"].notna().all() and table["dataset"].notna().all()
    assert sum(expected.values()) == 460  # README: 459 printed values and 1 missing cell


def test_every_table_spec_key_is_a_column_of_its_paper_table(tables_dir):
    for number, spec in paper.TABLES.items():
        columns = set(paper_tables.load_paper_table(number, tables_dir).columns)
        assert set(spec.keys) <= columns, f"table {number}: {set(spec.keys) - columns}"
        assert set(spec.group_by) <= set(spec.keys)


def test_benchmark_tables_get_our_metric_names(tables_dir):
    assert set(paper_tables.load_paper_table(2, tables_dir)["metric"]) == {"common_corruption_accuracy"}
    assert "common_corruption_fog_accuracy" in set(paper_tables.load_paper_table(7, tables_dir)["metric"])
    assert "two_stage_mc_sorted_accuracy" in set(paper_tables.load_paper_table(13, tables_dir)["metric"])


# --------------------------------------------------------------------------- the join


def pi_runs(**extra) -> pd.DataFrame:
    """Part-ImageNet runs: two PGD ResNet settings (lr 0.1 more robust), one evaluated at 8 and 16/255; a TRADES run."""
    return frame(
        run_rows("r-a", "resnet", "pgd", acc(70.0, 30.0, 40.0), dataset="part_imagenet", lr=0.1, **extra),
        run_rows("r-a16", "resnet", "pgd", acc(70.0, 5.0, 6.0), dataset="part_imagenet", lr=0.1, eps=16 / 255, **extra),
        run_rows("r-b", "resnet", "pgd", acc(75.0, 25.0, 33.0), dataset="part_imagenet", lr=0.05, **extra),
        run_rows("r-t", "resnet", "trades", acc(90.0, 8.0, 9.0), dataset="part_imagenet", lr=0.1, beta=0.1, **extra),
    )


def cell(side: pd.DataFrame, **where) -> pd.Series:
    mask = pd.Series(True, index=side.index)
    for key, value in where.items():
        mask &= side[key].astype(str) == str(value)
    found = side[mask]
    assert len(found) == 1, f"{where}: {len(found)} rows"
    return found.iloc[0]


def test_sweep_table_matches_eps_training_and_dataset_exactly(tables_dir):
    results = pd.concat([pi_runs(), frame(run_rows("c-a", "resnet", "pgd", acc(99.0, 99.0, 99.0), dataset="cityscapes", lr=0.1))])
    side = paper.side_by_side(results, 8, tables_dir)
    aa = cell(side, training="pgd", row="lr=0.1, weight_decay=0.0005", metric="autoattack_accuracy")
    assert aa["ours"] == 30.0 and aa["run_ids"] == "r-a", "the eps-16 evaluation and the Cityscapes run never match"
    clean = cell(side, training="pgd", row="lr=0.1, weight_decay=0.0005", metric="clean_accuracy")
    assert clean["ours"] == 70.0 and set(clean["run_ids"].split()) == {"r-a", "r-a16"}, "clean accuracy does not depend on eval eps"
    trades = cell(side, training="trades", row="lr=0.1, weight_decay=0.0005, beta=0.1", metric="autoattack_accuracy")
    assert trades["ours"] == 8.0 and trades["difference"] == pytest.approx(8.0 - trades["paper"])
    normal = side[side["training"] == "normal"]
    assert (normal["status"] == "missing").all(), "no normal runs: no PGD or TRADES run stands in for them"
    assert (side.loc[side["status"] == "missing", "ours"].isna()).all()
    assert set(side["produced_by"]) == {paper.TABLES[8].produced_by}


def test_table1_uses_the_selected_setting_and_the_builtin_data_never_matches(tables_dir):
    results = pd.concat([pi_runs(), pi_runs().assign(dataset=paper.BUILTIN_DATASET, experiment="study")])
    side = paper.side_by_side(results, 1, tables_dir)
    aa = cell(side, dataset="part_imagenet", training="pgd", model="resnet", metric="autoattack_accuracy")
    assert aa["ours"] == 30.0 and aa["run_ids"] == "r-a", "PGD: the most robust setting at 8/255"
    assert cell(side, dataset="part_imagenet", training="pgd", model="resnet", metric="clean_accuracy")["ours"] == 70.0
    assert (side[side["dataset"] != "part_imagenet"]["status"] == "missing").all()
    assert not side["run_ids"].str.contains("study").any()
    builtin = paper.builtin_table(results, 1, tables_dir)
    assert set(builtin["dataset"]) == {"builtin:study"} and builtin["paper"].isna().all()
    assert cell(builtin, training="pgd", model="resnet", metric="autoattack_accuracy")["ours"] == 30.0


def test_table11_reads_the_selected_model_at_each_eps(tables_dir):
    runs = [run_rows(f"d-{e}", "downsampled", "pgd", {"autoattack_accuracy": v, "clean_accuracy": 80.0}, dataset="part_imagenet",
                     eps=e / 255) for e, v in [(8, 40.0), (16, 14.0), (32, 0.5)]]
    side = paper.side_by_side(frame(*runs), 11, tables_dir)
    values = {round(r.eps * 255): r.ours for r in side[(side.dataset == "part_imagenet") & (side.model == "downsampled")].itertuples()}
    assert values[8] == 40.0 and values[16] == 14.0 and values[32] == 0.5 and np.isnan(values[24])


def test_table5_keeps_runs_with_and_without_part_labels_apart(tables_dir):
    results = frame(
        run_rows("with", "downsampled", "pgd", acc(85.0, 39.0), dataset="part_imagenet", c_seg=0.5),
        run_rows("without", "downsampled", "pgd", acc(77.0, 39.5), dataset="part_imagenet", c_seg=0.0),
    )
    side = paper.side_by_side(results, 5, tables_dir)
    assert cell(side, model="downsampled", row="seg_labels=yes, selected", metric="clean_accuracy")["run_ids"] == "with"
    assert cell(side, model="downsampled", row="seg_labels=no, selected", metric="clean_accuracy")["run_ids"] == "without"


def test_seeds_are_averaged_with_a_confidence_interval(tables_dir):
    runs = [run_rows(f"r-{s}", "resnet", "pgd", acc(70.0 + s, 30.0), dataset="part_imagenet", seed=s) for s in range(3)]
    side = paper.side_by_side(frame(*runs), 1, tables_dir)
    clean = cell(side, dataset="part_imagenet", training="pgd", model="resnet", metric="clean_accuracy")
    assert clean["ours"] == pytest.approx(71.0) and clean["seeds"] == 3 and clean["ours_ci95"] == pytest.approx(2.4841, abs=1e-3)
    assert clean["run_ids"] == "r-0 r-1 r-2"


def test_no_results_gives_missing_entries_not_errors(tables_dir):
    side = paper.all_side_by_side(pd.DataFrame(columns=analysis.RUN_COLUMNS + ["metric", "value", "n", "note"]), tables_dir)
    assert len(side) == 460 and (side["status"] == "missing").all() and side["produced_by"].str.len().gt(0).all()


# --------------------------------------------------------------------------- claims


def test_status_rules():
    win = claims.Comparison("x", 80.0, 70.0, 0.01)
    weak = claims.Comparison("x", 80.0, 70.0, 0.2)
    single = claims.Comparison("x", 80.0, 70.0, float("nan"))
    loss = claims.Comparison("x", 60.0, 70.0, 0.01)
    assert claims.status_of([win, win]) == "reproduced"
    assert claims.status_of([win, weak]) == claims.status_of([single]) == "direction only"
    assert claims.status_of([win, loss]) == "not reproduced"
    assert claims.status_of([]) == "not yet run"
    assert np.isnan(claims.welch_p(np.array([1.0]), np.array([2.0, 3.0])))


def test_claim_that_part_models_win_fails_when_the_resnet_wins(tables_dir):
    def runs(resnet_clean: float) -> pd.DataFrame:
        out = []
        for seed in range(3):
            for model, clean in [("resnet", resnet_clean), ("downsampled", 80.0), ("bbox", 81.0)]:
                for training in ("pgd", "trades"):
                    out.append(run_rows(f"{model}-{training}-{seed}", model, training, acc(clean + seed, 30.0 + seed + (model != "resnet")),
                                        seed=seed, beta=1.0 if training == "trades" else None, experiment="study"))
        return frame(*out)

    for resnet_clean, expected in [(70.0, "direction only"), (90.0, "not reproduced")]:
        results = runs(resnet_clean)
        side = paper.all_side_by_side(results, tables_dir, numbers=(1,))
        builtin = paper.builtin_table(results, 1, tables_dir)
        status, evidence = claims.beats_resnet(results, side, builtin, "builtin:study")
        assert status == expected, evidence
    status, _ = claims.beats_resnet(results, side, builtin, "part_imagenet")
    assert status == "not yet run"


def test_non_adversarial_claim_agrees_with_notebook_04s_table(tables_dir):
    """The report's claim for Tables 2-4 and notebook 04's table are two paths to the same means and Welch p
    (of the claimed 3-point size)."""
    from partrobust.report.robustness import benchmark_table

    results = paper.with_source(read_results(REPO / "figures" / "builtin_robustness" / RESULTS_FILE))
    side = paper.all_side_by_side(results, tables_dir, numbers=(2, 3, 4))
    builtin = pd.concat([paper.builtin_table(results, n, tables_dir) for n in (2, 3, 4)], ignore_index=True)
    source = results["source"].iloc[0]
    status, evidence = claims.beats_resnet_benchmarks(results, side, builtin, source)
    kept = results[~results["drop_background"].astype(str).str.lower().isin({"true", "1.0", "1"})]
    table = benchmark_table(kept, margin=claims.BENCHMARK_MARGIN).set_index(["model", "metric"])
    for model in ("downsampled", "bbox"):
        for metric in claims.BENCHMARK_TABLES.values():
            row = table.loc[(model, metric)]
            assert f"{row['mean']:.1f} vs {table.loc[('resnet', metric), 'mean']:.1f}" in evidence
            assert f"p = {row['p_value']:.3g}" in evidence
    negative = any(table.loc[(m, b), "difference"] <= claims.BENCHMARK_MARGIN for m in ("downsampled", "bbox")
                   for b in claims.BENCHMARK_TABLES.values())
    assert (status == "not reproduced") == negative


# --------------------------------------------------------------------------- figures and outputs


def test_examples_round_trip_and_a_corrupt_file_is_named(tmp_path):
    n, size = 2, 8
    examples = {"images": torch.rand(n, 3, size, size), "pgd_images": torch.rand(n, 3, size, size),
                "true_masks": torch.randint(0, 4, (n, size, size)), "clean_masks": torch.randint(0, 4, (n, size, size)),
                "pgd_masks": torch.randint(0, 4, (n, size, size)), "labels": torch.tensor([0, 1]),
                "clean_pred": torch.tensor([0, 0]), "pgd_pred": torch.tensor([1, 1])}
    path = save_examples(examples, tmp_path / "examples.npz", ["a", "b"], 3, title="run-x")
    back = load_examples(path)
    assert np.array_equal(back["true_masks"], examples["true_masks"].numpy()) and list(back["class_names"]) == ["a", "b"]
    assert np.abs(back["images"] / 255.0 - examples["images"].numpy()).max() <= 0.5 / 255 + 1e-6
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        load_examples(bad)


def test_sweep_figures_are_missing_until_a_column_varies():
    one = frame(run_rows("d1", "downsampled", "pgd", acc(80, 30), c_seg=0.5))
    with pytest.raises(figures.Missing, match="c_seg"):
        figures.fig09_cseg(figures.FigureData.of(one))
    two = pd.concat([one, frame(run_rows("d2", "downsampled", "pgd", acc(82, 28), c_seg=0.1))])
    drawn = figures.fig09_cseg(figures.FigureData.of(two))
    assert list(drawn) == ["fig09_cseg"]
    with pytest.raises(figures.Missing, match="benchmark"):
        figures.fig08_benchmarks(figures.FigureData.of(two))
    with pytest.raises(figures.Missing, match="eps"):
        figures.table11_eps(figures.FigureData.of(two))
    at16 = frame(run_rows("d1", "downsampled", "pgd", {"autoattack_accuracy": 9.0}, c_seg=0.5, eps=16 / 255))
    curve = figures.table11_eps(figures.FigureData.of(pd.concat([one, at16])))["table11_eps"]
    line = [ln for ln in curve.axes[0].lines if len(ln.get_xdata()) == 2][0]
    assert list(line.get_xdata()) == [8.0, 16.0] and list(line.get_ydata()) == [30.0, 9.0]


@pytest.fixture(scope="module")
def made_figures(tmp_path_factory) -> dict[str, str]:
    """`make figures` once per module, in a plain copy of the repository with nothing beside it
    (`python -m partrobust.figures` in a subprocess, default inputs: the committed snapshots): its digests.
    Compared with the committed figures, written by an earlier process, they show that the same results
    give the same bytes and that nothing outside the repository is read."""
    return digests(figures_in_a_plain_clone(tmp_path_factory.mktemp("make_figures")))


@pytest.mark.slow
def test_make_figures_is_byte_identical(made_figures):
    """Every figure and table is made (their bytes are compared with the committed ones below)."""
    assert {"REPORT.md", "paper/fig04_tradeoff.png", "paper/fig04_tradeoff.pdf", "paper/tables/table01.md",
            "paper/side_by_side.csv"} <= set(made_figures)
    assert any(name.startswith("paper/fig05_masks_") for name in made_figures)


@pytest.mark.slow
def test_the_committed_figures_are_what_make_figures_gives(made_figures):
    """figures/ holds exactly what `make figures` draws from the committed snapshot and the paper's tables."""
    committed = digests(REPO / "figures")
    stale = [name for name, digest in made_figures.items() if committed.get(name) != digest]
    assert not stale, f"figures/ is not what `make figures` gives on the committed snapshot: {stale}"


def test_a_missing_input_is_refused_by_name(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        regenerate.load_inputs([tmp_path / "nowhere"])


def test_snapshot_keeps_results_and_the_lowest_seed_examples(tmp_path):
    experiment = tmp_path / "runs" / "study"
    for run_id, seed in [("bbox-pgd-1", 0), ("bbox-pgd-2", 1)]:
        folder = experiment / run_id
        (folder / "figures").mkdir(parents=True)
        frame(run_rows(run_id, "bbox", "pgd", acc(80, 30), seed=seed, experiment="study")).to_csv(folder / "results.csv", index=False)
        shutil.copy(SNAPSHOT / "examples" / sorted(p.name for p in (SNAPSHOT / "examples").glob("bbox-pgd-*"))[0],
                    folder / "figures" / "examples.npz")
    regenerate.write_snapshot(experiment, tmp_path / "snap")
    assert sorted(p.name for p in (tmp_path / "snap" / "examples").iterdir()) == ["bbox-pgd-1.npz"]
    loaded = regenerate.load_inputs([tmp_path / "snap"])
    assert loaded.results["run_id"].nunique() == 2 and set(loaded.examples) == {"bbox-pgd-1"}


def test_the_paper_joined_with_itself_is_exact(tables_dir):
    """The paper's sweep rows made into runs match their own cells and nothing else (Tables 8-10)."""
    printed = paper_tables.paper_as_results((8, 9, 10), tables_dir)
    for number in (8, 9, 10):
        side = paper.side_by_side(printed, number, tables_dir)
        assert (side["status"] == "ours").all() and side["ours"].isna().equals(side["paper"].isna())  # Table 9's empty cell
        assert (side["difference"].dropna() == 0).all() and side["difference"].notna().sum() == side["paper"].notna().sum()
        assert side.loc[side["status"] == "ours", "run_ids"].str.split().str.len().eq(1).all()


def test_benchmark_tables_select_table6s_hyperparameter_sets(tables_dir):
    """(A): best on shape vs texture; (B): best on the mean of spurious correlation and corruptions (Table 6)."""
    def normal(run_id: str, lr: float, shape: float, spurious: float, corruption: float) -> list[dict]:
        return run_rows(run_id, "downsampled", "normal", {"clean_accuracy": 90.0, "shape_vs_texture_accuracy": shape,
                                                           "spurious_correlation_accuracy": spurious,
                                                           "common_corruption_accuracy": corruption},
                        dataset="part_imagenet", lr=lr)

    results = frame(normal("shape-best", 0.1, 45.0, 60.0, 80.0), normal("robust-best", 0.05, 40.0, 66.0, 86.0))
    assert cell(paper.side_by_side(results, 4, tables_dir), model="downsampled")["run_ids"] == "shape-best"
    assert cell(paper.side_by_side(results, 2, tables_dir), model="downsampled")["run_ids"] == "robust-best"
    table6 = paper.side_by_side(results, 6, tables_dir)
    assert set(table6[(table6.model == "downsampled") & table6.row.str.contains("=A")].run_ids) == {"shape-best"}
    assert set(table6[(table6.model == "downsampled") & table6.row.str.contains("=B")].run_ids) == {"robust-best"}


def test_missing_paper_tables_stop_make_figures_before_any_file_is_touched(tmp_path, monkeypatch):
    """A missing paper-tables folder stops the command with the folder's name, and the committed figures stay."""
    monkeypatch.chdir(REPO)
    out = tmp_path / "figs"
    (out / "paper").mkdir(parents=True)
    (out / "paper" / "fig04_tradeoff.png").write_bytes(b"committed")
    assert figures_command.main(["figures/builtin_study", "--output", str(out), "--paper-tables", str(tmp_path / "nowhere")]) == 2
    assert (out / "paper" / "fig04_tradeoff.png").read_bytes() == b"committed"
