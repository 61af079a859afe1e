"""Sweep analysis: wide pivot, Pareto frontier, the paper's selection rule, plot, paper comparison."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from partrobust.core.results import eps_text, parse_eps  # noqa: E402
from partrobust.report import figures, paper, paper_tables  # noqa: E402
from partrobust.report import sweep_analysis as analysis  # noqa: E402
from partrobust.report.protocol import paper_note  # noqa: E402

SYNTHETIC = "synthetic-parts"  # the name partrobust.data.synthetic writes into metadata


def run_rows(run_id: str, model: str, training: str, metrics: dict[str, float], *, dataset: str = SYNTHETIC,
             lr: float = 0.1, weight_decay: float = 5e-4, beta: float | None = None, c_seg: float | None = None,
             n: int = 16, note: str | None = None, **extra) -> list[dict]:
    """Tidy result rows of one made-up run (columns not given are empty, as in real results; the notes
    are those of an evaluation as the paper's unless `note` is given; the whole test split)."""
    base = {column: np.nan for column in analysis.RUN_COLUMNS}
    part_model = model != "resnet"
    base.update(
        experiment="test", run_id=run_id, dataset=dataset, training=training, model=model, lr=lr, weight_decay=weight_decay,
        beta=np.nan if beta is None else beta, c_seg=(0.5 if part_model else np.nan) if c_seg is None else c_seg,
        labels="parts" if part_model else np.nan, label_fraction=1.0 if part_model else np.nan,
        pool_size=4 if model == "downsampled" else np.nan, drop_background=False if model == "downsampled" else np.nan,
        concat_input=False if model == "downsampled" else np.nan, eps=8 / 255, train_eps=8 / 255, seed=0,
    )
    base.update(extra)
    return [{**base, "metric": m, "value": v, "n": n, "note": paper_note(m) if note is None else note, "config_hash": "h-" + run_id}
            for m, v in metrics.items()]


def frame(*runs: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([row for run in runs for row in run])


def acc(clean: float, aa: float, pgd: float | None = None) -> dict[str, float]:
    metrics = {"clean_accuracy": clean, "autoattack_accuracy": aa}
    if pgd is not None:
        metrics["pgd_accuracy"] = pgd
    return metrics


@pytest.fixture
def sweep() -> pd.DataFrame:
    """A few runs per model on the built-in data; r-pgd-c is dominated by r-pgd-a."""
    return frame(
        run_rows("r-pgd-a", "resnet", "pgd", acc(60, 30, 35), lr=0.1),
        run_rows("r-pgd-b", "resnet", "pgd", acc(65, 28, 33), lr=0.05),
        run_rows("r-pgd-c", "resnet", "pgd", acc(58, 29, 34), lr=0.02),
        run_rows("r-tr-1", "resnet", "trades", acc(80, 10), beta=0.1),
        run_rows("r-tr-2", "resnet", "trades", acc(75, 20), beta=0.5),
        run_rows("r-normal", "resnet", "normal", acc(90, 0)),
        run_rows("d-pgd-a", "downsampled", "pgd", acc(70, 35), lr=0.1),
        run_rows("d-pgd-b", "downsampled", "pgd", acc(72, 35), lr=0.05),
        run_rows("d-tr-1", "downsampled", "trades", acc(78, 22), beta=0.1),
        run_rows("d-tr-2", "downsampled", "trades", acc(82, 15), beta=0.05),
        run_rows("b-pgd-a", "bbox", "pgd", acc(71, 34), lr=0.1),
        run_rows("b-tr-1", "bbox", "trades", acc(79, 25), beta=0.1),
    )


def paper_dir():
    """The transcribed paper tables shipped with the package."""
    return paper_tables.paper_tables_dir()


# --------------------------------------------------------------------------- wide, frontier


def test_wide_runs_one_row_per_run_with_metric_columns(sweep):
    wide = analysis.wide_runs(sweep)
    assert len(wide) == sweep["run_id"].nunique() == 12
    assert wide["run_id"].is_unique
    assert {"clean_accuracy", "autoattack_accuracy", "pgd_accuracy", "n"} <= set(wide.columns)
    row = wide.set_index("run_id").loc["r-pgd-a"]
    assert (row["clean_accuracy"], row["autoattack_accuracy"], row["pgd_accuracy"]) == (60, 30, 35)
    assert row["model"] == "resnet" and row["lr"] == 0.1 and math.isnan(row["c_seg"])
    # a run without a PGD number keeps NaN there and is not dropped for its empty beta/c_seg cells
    assert math.isnan(wide.set_index("run_id").loc["d-pgd-a", "pgd_accuracy"])
    assert list(wide.columns).index("clean_accuracy") > list(wide.columns).index("seed")


def test_frontier_excludes_dominated_runs(sweep):
    wide = analysis.wide_runs(sweep)
    front = analysis.frontier(wide)
    resnet = front[front["model"] == "resnet"]
    assert "r-pgd-c" not in set(resnet["run_id"])  # 58/29 is beaten by 60/30 on both
    assert set(resnet["run_id"]) == {"r-pgd-a", "r-pgd-b", "r-tr-1", "r-tr-2", "r-normal"}
    assert list(resnet["clean_accuracy"]) == sorted(resnet["clean_accuracy"])
    # equal adversarial accuracy, higher clean accuracy dominates
    downsampled = set(front.loc[front["model"] == "downsampled", "run_id"])
    assert "d-pgd-a" not in downsampled and "d-pgd-b" in downsampled
    marked = analysis.mark_frontier(wide)
    assert marked["on_frontier"].dtype == bool
    assert set(marked.loc[marked["on_frontier"], "run_id"]) == set(front["run_id"])


def test_frontier_ignores_runs_without_numbers():
    wide = analysis.wide_runs(frame(
        run_rows("a", "resnet", "pgd", acc(60, 30)),
        run_rows("b", "resnet", "pgd", {"clean_accuracy": 99.0}),
    ))
    assert list(analysis.frontier(wide)["run_id"]) == ["a"]


# --------------------------------------------------------------------------- selection rule


def test_pgd_rule_highest_adversarial_then_clean(sweep):
    best = analysis.select_best(analysis.wide_runs(sweep)).set_index(["model", "training"])
    assert best.loc[("resnet", "pgd"), "run_id"] == "r-pgd-a"
    assert "highest autoattack_accuracy" in best.loc[("resnet", "pgd"), "selection"]
    # part models: d-pgd-a and d-pgd-b are both at least as robust as the ResNet's 30: higher clean accuracy wins
    assert best.loc[("downsampled", "pgd"), "run_id"] == "d-pgd-b"
    assert "comparable adversarial accuracy" in best.loc[("downsampled", "pgd"), "selection"]
    assert best.loc[("resnet", "normal"), "run_id"] == "r-normal"
    assert best.loc[("resnet", "pgd"), "candidates"] == 3


def test_pgd_rule_follows_adv_metric(sweep):
    best = analysis.select_best(analysis.wide_runs(sweep), adv_metric="pgd_accuracy").set_index(["model", "training"])
    assert best.loc[("resnet", "pgd"), "run_id"] == "r-pgd-a"  # 35 > 34 > 33
    with pytest.raises(KeyError):
        analysis.select_best(analysis.wide_runs(sweep), adv_metric="no_such_metric")


def test_trades_rule_on_made_up_sweep(sweep):
    wide = analysis.wide_runs(sweep)
    # best TRADES clean: resnet 80, downsampled 82, bbox 79 -> target 79
    assert analysis.trades_clean_target(wide)[SYNTHETIC] == 79
    best = analysis.select_best(wide).set_index(["model", "training"])
    assert best.loc[("resnet", "trades"), "run_id"] == "r-tr-1"   # 80 is 1 away, 75 is 4
    assert best.loc[("downsampled", "trades"), "run_id"] == "d-tr-1"  # 78 is 1 away, 82 is 3
    assert best.loc[("bbox", "trades"), "run_id"] == "b-tr-1"
    assert best.loc[("bbox", "trades"), "target_clean"] == 79
    assert "closest to 79" in best.loc[("bbox", "trades"), "selection"]


def test_trades_rule_tie_goes_to_higher_adversarial():
    wide = analysis.wide_runs(frame(
        run_rows("r1", "resnet", "trades", acc(80, 10), beta=0.1),
        run_rows("d1", "downsampled", "trades", acc(81, 10), beta=0.1),
        run_rows("d2", "downsampled", "trades", acc(79, 12), beta=0.2),
        run_rows("d3", "downsampled", "trades", acc(85, 1), beta=0.05),
    ))
    best = analysis.select_best(wide).set_index("model")
    assert best.loc["downsampled", "run_id"] == "d2"  # 81 and 79 both 1 from 80: 12 > 10


def test_trades_rule_reproduces_table1_on_paper_tables():
    directory = paper_dir()
    wide = analysis.wide_runs(paper_tables.paper_as_results((8, 9, 10), directory))
    best = analysis.select_best(wide).set_index(["model", "training"])
    picked = {m: (best.loc[(m, "trades"), "beta"], best.loc[(m, "trades"), "clean_accuracy"], best.loc[(m, "trades"), "autoattack_accuracy"])
              for m in ("resnet", "downsampled", "bbox")}
    assert picked == {"resnet": (0.1, 90.6, 7.7), "downsampled": (0.05, 90.9, 19.8), "bbox": (0.1, 90.8, 24.1)}
    # the same rows as Table 1's TRADES Part-ImageNet rows, read from table01.csv
    table1 = paper_tables.load_paper_table(1, directory)
    table1 = table1[(table1["dataset"] == "part_imagenet") & (table1["training"] == "trades")]
    for model, (_, clean, aa) in picked.items():
        cells = table1[table1["model"] == model].set_index("metric")["value"]
        assert (cells["clean_accuracy"], cells["autoattack_accuracy"]) == (clean, aa)
    # PGD rule on Table 8: the ResNet's grid picks lr 0.1, wd 5e-4, which is Table 1's PGD ResNet row
    resnet_pgd = best.loc[("resnet", "pgd")]
    assert (resnet_pgd["lr"], resnet_pgd["weight_decay"]) == (0.1, 5e-4)


# --------------------------------------------------------------------------- plot


def test_plot_sweep_one_axes_per_dataset(sweep):
    wide = analysis.wide_runs(sweep)
    fig = figures.plot_sweep(wide)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert "β=0.1" in texts and "β=0.5" in texts
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"ResNet", "Downsampled", "Bounding-Box", "PGD", "TRADES", "normal"} <= set(legend)
    assert ax.lines  # frontier lines
    plt.close(fig)

    second = sweep.assign(dataset="part_imagenet", run_id="pi-" + sweep["run_id"])
    fig = figures.plot_sweep(analysis.wide_runs(pd.concat([sweep, second], ignore_index=True)))
    assert len(fig.axes) == 2
    assert {ax.get_title() for ax in fig.axes} == {f"{SYNTHETIC}: one seed", "part_imagenet: one seed"}
    plt.close(fig)


def test_plot_sweep_trades_markers_unfilled(sweep):
    fig = figures.plot_sweep(analysis.wide_runs(sweep))
    facecolors = [c.get_facecolors() for c in fig.axes[0].collections]
    assert any(len(f) == 0 or (f[:, 3] == 0).all() for f in facecolors)  # TRADES: facecolor none
    assert any(len(f) and (f[:, 3] > 0).all() for f in facecolors)       # PGD / normal: filled
    plt.close(fig)


# --------------------------------------------------------------------------- paper tables


def test_paper_tables_dir_missing_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="paper tables"):
        paper_tables.paper_tables_dir(tmp_path / "nowhere")


def test_load_paper_table_uses_our_names():
    directory = paper_dir()
    table = paper_tables.load_paper_table(8, directory)
    assert set(table["model"]) == {"resnet"}
    assert set(table["metric"]) == {"clean_accuracy", "autoattack_accuracy", "pgd_accuracy"}
    assert "beta" in table.columns and "trades_beta" not in table.columns
    assert table["lr"].dtype == float and table["weight_decay"].dtype == float
    assert set(paper_tables.load_paper_table(10, directory)["model"]) == {"bbox"}
    table9 = paper_tables.load_paper_table(9, directory)
    assert table9["value"].isna().sum() == 1
    missing = table9[table9["value"].isna()].iloc[0]
    assert (missing["training"], missing["lr"], missing["weight_decay"], missing["metric"]) == ("pgd", 0.1, 1e-4, "clean_accuracy")


def test_compare_with_paper_matches_cells():
    directory = paper_dir()
    results = frame(
        run_rows("ours-a", "resnet", "pgd", acc(70.0, 35.0, 40.0), dataset="part_imagenet", lr=0.1, weight_decay=5e-4, n=500),
        run_rows("ours-b", "resnet", "pgd", acc(72.0, 37.0, 42.0), dataset="part_imagenet", lr=0.1, weight_decay=5e-4, seed=1, n=500),
        run_rows("syn", "resnet", "pgd", acc(50.0, 20.0), dataset=SYNTHETIC, lr=0.1, weight_decay=5e-4),
        run_rows("ds-miss", "downsampled", "pgd", acc(84.0, 40.0), dataset="part_imagenet", lr=0.1, weight_decay=1e-4),
        run_rows("ds-concat", "downsampled", "pgd", acc(10.0, 1.0), dataset="part_imagenet", lr=0.1, weight_decay=5e-4,
                 concat_input=True),
    )
    table = paper.compare_with_paper(results, directory=directory)
    assert {"table", "dataset", "training", "model", "lr", "weight_decay", "c_seg", "beta", "metric",
            "paper", "ours", "difference", "n", "run_ids"} <= set(table.columns)
    assert len(table) == 60 + 45 + 48  # every printed paper cell, the missing one included

    def cell(tab, model, training, lr, wd, metric, beta=None):
        rows = table[(table["table"] == tab) & (table["model"] == model) & (table["training"] == training)
                     & np.isclose(table["lr"], lr) & np.isclose(table["weight_decay"], wd) & (table["metric"] == metric)]
        rows = rows[rows["beta"].isna()] if beta is None else rows[np.isclose(rows["beta"], beta)]
        assert len(rows) == 1
        return rows.iloc[0]

    clean = cell(8, "resnet", "pgd", 0.1, 5e-4, "clean_accuracy")
    assert clean["ours"] == pytest.approx(71.0)  # mean of the two seeds
    assert clean["difference"] == pytest.approx(71.0 - clean["paper"])
    assert clean["run_ids"] == "ours-a,ours-b" and clean["n"] == 500
    assert cell(8, "resnet", "pgd", 0.1, 5e-4, "autoattack_accuracy")["ours"] == pytest.approx(36.0)
    # the synthetic run never matches, even with the same hyperparameters
    assert "syn" not in ",".join(table["run_ids"])
    # no such run: NaN
    other = cell(8, "resnet", "pgd", 0.05, 5e-4, "clean_accuracy")
    assert math.isnan(other["ours"]) and math.isnan(other["difference"]) and other["run_ids"] == ""
    # TRADES cells (beta set) are not matched by PGD runs (beta empty)
    assert table.loc[table["training"] == "trades", "ours"].isna().all()
    # the missing Table 9 cell stays NaN even where we have the run
    missing = cell(9, "downsampled", "pgd", 0.1, 1e-4, "clean_accuracy")
    assert math.isnan(missing["paper"]) and missing["ours"] == 84.0 and math.isnan(missing["difference"])
    # a variant (image concatenated, Table 19) is not part of Table 9's sweep
    assert "ds-concat" not in ",".join(table["run_ids"])


def test_compare_with_paper_matches_eps_for_adversarial_metrics():
    directory = paper_dir()
    results = frame(run_rows("e16", "resnet", "pgd", acc(70.0, 20.0), dataset="part_imagenet", eps=16 / 255))
    table = paper.compare_with_paper(results, tables=(8,), directory=directory)
    matched = table[table["run_ids"] == "e16"]
    assert list(matched["metric"]) == ["clean_accuracy"]  # AutoAttack at 16/255 is not the paper's 8/255 cell


def test_compare_paper_with_itself_is_exact():
    directory = paper_dir()
    printed = paper_tables.paper_as_results((8, 9, 10), directory)
    table = paper.compare_with_paper(printed, directory=directory)
    assert table["paper"].notna().sum() == table["ours"].notna().sum() == 60 + 44 + 48
    assert (table["difference"].dropna() == 0).all()
    assert (table.loc[table["paper"].notna(), "runs"] == 1).all()


def test_is_comparable(sweep):
    directory = paper_dir()
    assert not paper_tables.is_comparable(sweep, directory)
    assert not paper_tables.is_comparable(sweep, "/nonexistent"), "built-in results need no paper tables"
    assert paper_tables.is_comparable(sweep.assign(dataset="part_imagenet"), directory)
    assert paper_tables.is_comparable(sweep.assign(dataset="cityscapes"), directory)


def test_budgets_are_numbers_read_from_their_text_once_and_written_back_as_text():
    assert parse_eps("8/255") == pytest.approx(8 / 255) and parse_eps(8 / 255) == pytest.approx(8 / 255)
    assert parse_eps("0.03") == pytest.approx(0.03)
    assert math.isnan(parse_eps(np.nan)) and math.isnan(parse_eps("")) and math.isnan(parse_eps(None))
    assert [eps_text(v) for v in (8 / 255, "16/255", 0.03)] == ["8/255", "16/255", 0.03] and math.isnan(eps_text(np.nan))


def test_summary_view_keeps_the_readable_columns(sweep):
    view = analysis.summary_view(analysis.wide_runs(sweep))
    assert list(view.columns) == [c for c in analysis.SUMMARY_COLUMNS if c in view.columns]
    assert {"run_id", "model", "clean_accuracy", "autoattack_accuracy"} <= set(view.columns)
    tiny = analysis.summary_view(analysis.wide_runs(sweep.assign(weight_decay=5e-4)))
    assert (tiny.weight_decay == 5e-4).all(), "hyperparameters are not rounded away"
