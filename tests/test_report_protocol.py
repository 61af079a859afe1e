"""The report says no more than the runs show (issue 25, findings 1-3): like-with-like paper cells,
seeds that are trained models, sizes that are tested, and how every number was measured."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from partrobust.attacks.autoattack import AutoAttack, select_attacks
from partrobust.eval.config import EvalConfig
from partrobust.eval.context import pgd_note
from partrobust.report import claims, paper, paper_tables, protocol, regenerate
from partrobust.report import sweep_analysis as analysis
from test_analysis import acc, frame, run_rows

RUN = {column: np.nan for column in analysis.RUN_COLUMNS}


def paper_runs(number: int, **columns) -> pd.DataFrame:
    """The printed rows of paper table `number` as runs (one per printed row group), measured as the paper
    measured, in the main experiment (as the ablation params do); `columns` set the run's setup."""
    table = paper_tables.load_paper_table(number)
    keys = [c for c in ("dataset", "training", "model", "lr", "weight_decay", "c_seg", "beta", "seg_labels", "label_type",
                        "seg_label_level", "downsample_size", "concat_input", "selection") if c in table.columns]
    rows = []
    for i, (key, group) in enumerate(table.groupby(keys, dropna=False, sort=False)):
        for _, printed in group.iterrows():
            row = {**RUN, **{k: printed[k] for k in ("dataset", "training", "model", "lr", "weight_decay", "c_seg", "beta")
                             if k in printed}}
            part = row["model"] != "resnet"
            row.update(experiment="paper", run_id=f"t{number:02d}-{i}", seed=0, metric=printed["metric"],
                       value=printed["value"], n=np.nan, config_hash="", note=protocol.paper_note(printed["metric"]),
                       eps=printed["eps"] if pd.notna(printed["eps"]) else 8 / 255,
                       labels="parts" if part else np.nan, label_fraction=1.0 if part else np.nan,
                       pool_size=4 if row["model"] == "downsampled" else np.nan,
                       drop_background=False if row["model"] == "downsampled" else np.nan,
                       concat_input=False if row["model"] == "downsampled" else np.nan)
            if part and pd.isna(row["c_seg"]):
                row["c_seg"] = 0.5
            for column, value in columns.items():
                row[column] = value(printed) if callable(value) else value
            rows.append(row)
    return pd.DataFrame(rows)


def paper_study() -> pd.DataFrame:
    """Everything the paper printed about PGD/TRADES models, as runs of one experiment: the Part-ImageNet
    sweeps (Tables 8-10), the c_seg sweep's picks (Table 18's 'best' rows, lr 0.1, wd 5e-4, c_seg not
    printed), Table 1's Cityscapes and PASCAL-Part models, and the ablations: no part labels (Table 5,
    c_seg = 0), other label kinds (Table 14), object masks (Table 15), pool sizes (Table 17), the image
    concatenated (Table 19)."""
    sweeps = paper_tables.paper_as_results((8, 9, 10)).assign(experiment="paper")
    sweeps = sweeps.astype({c: object for c in ("labels", "drop_background", "concat_input")})
    part = sweeps["model"] != "resnet"
    sweeps.loc[part, "labels"], sweeps.loc[part, "label_fraction"] = "parts", 1.0
    down = sweeps["model"] == "downsampled"
    sweeps.loc[down, "pool_size"], sweeps.loc[down, "drop_background"], sweeps.loc[down, "concat_input"] = 4, False, False
    best = paper_runs(18)
    best = best[best["model"].isin(["downsampled", "bbox"])].assign(lr=0.1, weight_decay=5e-4, c_seg=np.nan)
    table1 = paper_runs(1)
    others = table1[table1["dataset"] != "part_imagenet"]
    no_labels = paper_runs(5)
    no_labels = no_labels[no_labels["model"] != "resnet"].assign(lr=0.1, weight_decay=5e-4)
    no_labels = no_labels[no_labels["run_id"].isin(set(no_labels[no_labels["value"].isin([76.9, 39.6, 78.1, 39.9])]["run_id"]))]
    no_labels = no_labels.assign(c_seg=[0.0 if v in (76.9, 39.6, 78.1, 39.9) else 0.5 for v in no_labels["value"]])
    kinds = paper_runs(14, labels=lambda r: {"segmentation": "parts", "bounding_boxes": "bbox", "centroids": "centroid"}.get(
        r["label_type"], np.nan))
    objects = paper_runs(15, labels=lambda r: "object" if r["seg_label_level"] == "object" else "parts")
    pools = paper_runs(17, pool_size=lambda r: int(str(r["downsample_size"]).split("x")[0]))
    concat = paper_runs(19, concat_input=lambda r: r["concat_input"] == "yes")
    return pd.concat([sweeps, best, others, no_labels, kinds, objects, pools, concat], ignore_index=True)


def test_the_papers_own_numbers_give_table1_exactly_with_ablation_runs_present():
    results = paper_study()
    assert (results["c_seg"] == 0).any() and results["labels"].isin(["bbox", "centroid", "object"]).any()
    side = paper.side_by_side(results, 1)
    assert (side["status"] == "ours").all(), side[side["status"] != "ours"][["dataset", "training", "model", "metric"]]
    wrong = side[side["ours"].round(6) != side["paper"]]
    assert wrong.empty, wrong[["dataset", "training", "model", "metric", "paper", "ours", "run_ids"]].to_string()
    picked = side[(side["dataset"] == "part_imagenet") & (side["training"] == "pgd") & (side["model"] != "resnet")]
    assert set(picked["run_ids"]) <= set(results.loc[results["experiment"] == "paper", "run_id"]) and \
        not picked["run_ids"].str.contains("t05-").any(), "the no-part-label runs never fill Table 1"
    assert side.loc[side["training"] == "pgd", "selection"].str.startswith("selected on test-set numbers among").all()
    # with only the no-part-label runs left for the part models, their Table 1 cells stay empty
    ablation_only = results[(results["model"] == "resnet") | (results["c_seg"] == 0)]
    alone = paper.side_by_side(ablation_only, 1)
    alone = alone[(alone["dataset"] == "part_imagenet") & (alone["training"] == "pgd")]
    assert (alone.loc[alone["model"] != "resnet", "status"] == "missing").all()
    assert (alone.loc[alone["model"] == "resnet", "ours"] == alone.loc[alone["model"] == "resnet", "paper"]).all()
    # Table 5, which varies the part labels, does take the c_seg = 0 runs
    table5 = paper.side_by_side(results, 5)
    no = table5[table5["row"].str.startswith("seg_labels=no")]
    assert (no["ours"] == no["paper"]).all()


def test_the_comparable_rule_picks_clean_accuracy_among_runs_at_least_as_robust_as_the_baseline():
    wide = analysis.wide_runs(frame(
        run_rows("r", "resnet", "pgd", acc(70, 30)),
        run_rows("d-robust", "downsampled", "pgd", acc(75, 40), lr=0.05),
        run_rows("d-clean", "downsampled", "pgd", acc(85, 31), c_seg=0.3),
        run_rows("d-weak", "downsampled", "pgd", acc(95, 29), c_seg=0.9),
    ))
    best = analysis.select_best(wide).set_index("model")
    assert best.loc["downsampled", "run_id"] == "d-clean" and "App. B.1" in best.loc["downsampled", "selection"]
    assert best.loc["resnet", "run_id"] == "r"


def test_a_reduced_or_partial_evaluation_never_fills_a_paper_cell():
    reduced = AutoAttack(iterations=20, square_queries=100).budget_note
    results = frame(
        run_rows("full", "resnet", "pgd", acc(70.0, 30.0), dataset="part_imagenet"),
        run_rows("cheap", "downsampled", "pgd", acc(80.0, 35.0), dataset="part_imagenet",
                 note=f"{select_attacks(11)[1]}; {reduced}"),
        run_rows("few", "bbox", "pgd", acc(81.0, 36.0), dataset="part_imagenet", eval_limit=512),
        run_rows("custom", "resnet", "trades", acc(90.0, 9.0), dataset="part_imagenet", beta=0.1,
                 note="custom attack list: apgd-ce, apgd-t"),
    )
    side = paper.side_by_side(results, 1).set_index(["dataset", "training", "model", "metric"])
    assert side.loc[("part_imagenet", "pgd", "resnet", "autoattack_accuracy"), "ours"] == 30.0
    assert side.loc[("part_imagenet", "pgd", "resnet", "autoattack_accuracy"), "attack"] == "AutoAttack standard"
    cheap = side.loc[("part_imagenet", "pgd", "downsampled", "autoattack_accuracy")]
    assert cheap["status"] == "missing" and np.isnan(cheap["ours"])
    assert cheap["not_comparable"].startswith("not comparable: reduced AutoAttack budget (20 APGD/FAB iterations < 100")
    assert "35.0" in cheap["not_comparable"]
    few = side.loc[("part_imagenet", "pgd", "bbox", "clean_accuracy")]
    assert few["status"] == "missing" and "first 512 test images only" in few["not_comparable"]
    assert "custom AutoAttack list" in side.loc[("part_imagenet", "trades", "resnet", "autoattack_accuracy"), "not_comparable"]
    # written next to the cell in the table, never in it
    text = regenerate.table_markdown(paper.side_by_side(results, 1), pd.DataFrame(columns=paper.SIDE_BY_SIDE_COLUMNS), 1)
    assert "not comparable: reduced AutoAttack budget" in text and "35.0 / 39.4" not in text


def test_protocol_reads_the_attacks_own_notes():
    assert protocol.protocol_gap("autoattack_accuracy", select_attacks(11)[1], np.nan) == ""
    assert protocol.protocol_gap("autoattack_accuracy", select_attacks(3)[1], np.nan) == ""  # the paper's Cityscapes set
    assert protocol.protocol_gap("pgd_accuracy", pgd_note(EvalConfig().pgd_attack()), np.nan) == ""
    weak = protocol.protocol_gap("pgd_accuracy", pgd_note(EvalConfig(pgd_steps=10, pgd_restarts=1).pgd_attack()), np.nan)
    assert weak.startswith("weaker PGD (10 steps, 1 restarts")
    note = f"{select_attacks(11)[1]}; {AutoAttack(iterations=100, square_queries=500).budget_note}"
    assert protocol.protocol_gap("autoattack_accuracy", note, np.nan) == "reduced AutoAttack budget (500 Square queries < 5000)"
    assert protocol.protocol_gap("clean_accuracy", "", "unknown") == "test-set size not recorded"
    assert protocol.protocol_gap("autoattack_accuracy", "", np.nan) == "AutoAttack attack list not recorded"


def builtin_study(seeds: range, reevaluate: bool = False, spread: float = 1.0) -> pd.DataFrame:
    """Built-in PGD/TRADES runs, part models clearly ahead; `reevaluate`: each run evaluated once more
    (another run id, the same trained model and seed)."""
    runs = []
    for seed in seeds:
        for model, clean, adv in [("resnet", 60.0, 20.0), ("downsampled", 80.0, 30.0), ("bbox", 82.0, 31.0)]:
            for training in ("pgd", "trades"):
                jitter = spread * (seed % 3)
                metrics = acc(clean + jitter, adv + jitter)
                kwargs = dict(seed=seed, beta=1.0 if training == "trades" else None, experiment="study", n=200)
                runs.append(run_rows(f"{model}-{training}-{seed}", model, training, metrics, **kwargs))
                if reevaluate:
                    runs.append(run_rows(f"{model}-{training}-{seed}-again", model, training,
                                         acc(clean + jitter + 0.5, adv + jitter + 0.5), evaluators="seg_pgd", **kwargs))
    return frame(*runs)


def _table1_claim(results: pd.DataFrame) -> tuple[str, str]:
    results = paper.with_source(results)
    side = paper.all_side_by_side(results, numbers=(1,))
    builtin = paper.builtin_table(results, 1)
    return claims.beats_resnet(results, side, builtin, "builtin:study")


def test_one_model_evaluated_twice_is_one_sample():
    results = builtin_study(range(1), reevaluate=True)
    ours = paper.settings(results)
    assert (ours["seeds"] == 1).all(), "a re-evaluation is not another seed"
    status, evidence = _table1_claim(results)
    assert status == "direction only" and "1 vs 1 seeds" in evidence and "p = " not in evidence
    # the same with two seeds (each evaluated twice) is still too few for a test
    status, evidence = _table1_claim(builtin_study(range(2), reevaluate=True))
    assert status == "direction only" and "2 vs 2 seeds" in evidence
    # three distinct trained models a side: a test
    status, evidence = _table1_claim(builtin_study(range(3), reevaluate=True))
    assert status == "reproduced" and "3 vs 3 seeds" in evidence, evidence
    assert claims.evaluate_claims(builtin_study(range(3)), paper.all_side_by_side(builtin_study(range(3)), numbers=(1,)),
                                  paper.builtin_table(builtin_study(range(3)), 1)).query(
        "source == 'builtin:study' and paper == 'Table 1, Sec. 4'")["status"].item() == "built-in check holds"


def _benchmark_runs(gain: float) -> pd.DataFrame:
    runs = []
    for seed in range(4):
        for model, extra in [("resnet", 0.0), ("downsampled", gain), ("bbox", gain)]:
            value = 60.0 + extra + 1.0 * (seed % 2)
            runs.append(run_rows(f"{model}-{seed}", model, "normal", {"clean_accuracy": 90.0, "common_corruption_accuracy": value,
                                                                        "spurious_correlation_accuracy": value,
                                                                        "shape_vs_texture_accuracy": value},
                                 seed=seed, experiment="bench"))
    return paper.with_source(frame(*runs))


@pytest.mark.parametrize("gain, expected", [(0.8, "not reproduced"), (3.2, "direction only"), (6.0, "reproduced")])
def test_a_claim_with_a_size_tests_the_size(gain, expected):
    """'3-7 points better': +0.8 with p << 0.05 is not the claim; +3.2 is, but not significantly above 3; +6 is."""
    results = _benchmark_runs(gain)
    side = paper.all_side_by_side(results, numbers=(2, 3, 4))
    builtin = pd.concat([paper.builtin_table(results, n) for n in (2, 3, 4)], ignore_index=True)
    status, evidence = claims.beats_resnet_benchmarks(results, side, builtin, "builtin:bench")
    assert status == expected, evidence
    assert "claimed > +3" in evidence


def test_chance_level_baselines_are_flagged_not_counted():
    runs = [run_rows(f"{m}-pgd-{s}", m, "pgd", acc(c + s, a + s), seed=s, experiment="study")
            for s in range(3) for m, c, a in [("resnet", 21.0, 1.0), ("downsampled", 40.0, 18.0), ("bbox", 50.0, 14.0)]]
    status, evidence = _table1_claim(frame(*runs))
    assert status == "inconclusive" and "chance level" in evidence


def test_chance_level_follows_each_datasets_class_count():
    # Cityscapes is the paper's human-vs-vehicle task: 2 classes, so a 60 % baseline is still near chance
    assert paper.chance_level("cityscapes") == 50.0
    assert paper.at_chance(60.0, "cityscapes") and not paper.at_chance(80.0, "cityscapes")
    assert paper.chance_level("part_imagenet") == 100.0 / 11 and paper.chance_level("pascal_part") == 20.0
    assert math.isnan(paper.chance_level("some_other_dataset"))


def test_table1_is_printed_as_the_papers_grid():
    results = frame(run_rows("r", "resnet", "pgd", acc(70.0, 30.0), dataset="part_imagenet"))
    text = regenerate.table_markdown(paper.side_by_side(results, 1), pd.DataFrame(columns=paper.SIDE_BY_SIDE_COLUMNS), 1)
    grid = text.split("\n\n")[3].splitlines()
    assert [c.strip() for c in grid[0].strip("|").split("|")] == [
        "training", "model", *(f"{d} {m}" for d in ("Part-ImageNet", "Cityscapes", "PASCAL-Part") for m in ("clean", "AutoAttack"))]
    assert len(grid) == 2 + 6, "two trainings x three models"
    assert "70.0 / 74.7" in text and "AutoAttack standard" in text


def test_report_names_the_producing_command_of_each_source():
    assert claims.produced_by("builtin:robustness_smoke", "robustness") == "make robustness"
    assert claims.produced_by("builtin:builtin_study") == "make study"
    assert claims.produced_by("builtin:robustness_smoke").startswith("not in this source's recipe (make robustness); make study")
    assert claims.produced_by("builtin:ablations_smoke", "ablations") == "make ablations"
    assert claims.produced_by("cityscapes") == "python -m partrobust.pipeline params/cityscapes.yaml"
    assert claims.produced_by("pascal_part", "ablations") == "python -m partrobust.pipeline params/pascal_part_ablations.yaml"
    empty = frame(run_rows("x", "resnet", "pgd", acc(1.0, 1.0)))
    for number, name in [(1, "params/{}.yaml"), (13, "params/{}_ablations.yaml")]:
        side = paper.side_by_side(empty, number)
        for dataset, command in zip(side["dataset"], side["produced_by"]):
            assert name.format(dataset) in command and sum(d in command for d in claims.PAPER_DATASETS) == 1, command
    results = paper.with_source(builtin_study(range(1)).assign(experiment="robustness_smoke"))
    table = claims.evaluate_claims(results, paper.all_side_by_side(results, numbers=(1,)), paper.builtin_table(results, 1))
    text = " ".join(table[table["source"] == "builtin:robustness_smoke"]["evidence"])
    assert "part_imagenet" not in text and "produced by: make study" not in text and "(make robustness)" in text


def test_test_images_are_said_per_kind_of_number():
    results = frame(run_rows("a", "resnet", "normal", {"clean_accuracy": 1.0, "common_corruption_accuracy": 2.0}, n=64),
                    run_rows("b", "resnet", "normal", {"spurious_correlation_accuracy": 3.0}, n=69),
                    run_rows("c", "resnet", "normal", {"spurious_correlation_accuracy": 3.0}, n=85))
    results.loc[results["metric"] == "common_corruption_accuracy", "n"] = 7500
    results = pd.concat([results, frame(run_rows("d", "resnet", "normal", {"shape_vs_texture_shape_bias": 5.0}, n=12))])
    assert regenerate.test_images_text(results) == ("clean and attacks 64; common corruption 7500 (image x corruption x "
                                                     "severity); spurious correlation 69-85"), "headline metrics only"


def test_the_report_gives_notebook_03s_verdict_for_tables_5_13_14():
    """One verdict per table and source: REPORT.md's claim for Tables 5, 13 and 14 on the committed ablation
    snapshot is the sentence notebook 03 prints for the section's own runs (params/ablations_smoke.yaml)."""
    from pathlib import Path

    from partrobust.core.results import gather_results
    from partrobust.report import ablations
    from partrobust.runs.sweep import load_plan, section_run_ids

    repo = Path(__file__).resolve().parents[1]
    results = paper.with_source(gather_results(repo / "figures" / "builtin_ablations"))
    plan = load_plan(repo / "params" / "ablations_smoke.yaml")
    sections = section_run_ids(plan, "params/ablations_smoke.yaml", ["part_labels", "two_stage", "label_kinds"])
    by_table = {claim.paper.split(",")[0]: claim for claim in claims.CLAIMS}
    for table, section in [("Table 5", "part_labels"), ("Table 13", "two_stage"), ("Table 14", "label_kinds")]:
        expected = ablations.verdict(ablations.section_results(results, sections[section]), ablations.ABLATIONS[section])
        status, evidence = by_table[table].check(results, None, None, "builtin:ablations_smoke")
        assert evidence.startswith(expected), (table, evidence, expected)
        assert status != "not yet run"
    assert "at chance level" in evidence and status == "inconclusive", "Table 14's ResNet (21.9 % clean) is no evidence"


def test_result_rows_record_the_test_set_limit_and_older_files_read_as_unknown(tmp_path):
    from partrobust.core.results import RESULT_COLUMNS, read_results
    from partrobust.runs.records import result_rows
    from partrobust.runs.sweep import expand, load_plan

    from pathlib import Path

    config = expand(load_plan(Path(__file__).resolve().parents[1] / "params" / "smoke.yaml"), "params/smoke.yaml")[0]
    rows = result_rows([{"metric": "clean_accuracy", "value": 50.0, "n": 64}], config, experiment="e", dataset="d")
    assert rows[0]["eval_limit"] == config.eval.limit
    old = pd.DataFrame(rows, columns=RESULT_COLUMNS).drop(columns="eval_limit")
    old.to_csv(tmp_path / "results.csv", index=False)
    read = read_results(tmp_path / "results.csv")
    assert (read["eval_limit"] == "unknown").all()
    assert protocol.with_protocol(read)["protocol_gap"].eq("test-set size not recorded").all()
