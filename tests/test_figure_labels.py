"""Every figure the project draws says what it shows: its words come from the one name map
(`partrobust.report.style.NAMES`), its legends list each thing drawn once and tell entries apart, its
intervals stay within [0, 100] and a point of one seed is said to be one.

`every_figure` draws each figure of the package (each `FIGURES` entry and each ``plot_*`` function of
`partrobust.report`) on the committed snapshots, a tiny dataset or small frames;
`test_every_drawing_function_is_checked` fails when a new drawing function is not among them.
"""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import LineCollection, PathCollection  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.text import Text  # noqa: E402

import partrobust.report as report_package  # noqa: E402
from partrobust.core.metrics import benchmark_metric  # noqa: E402
from partrobust.data import PartDataset  # noqa: E402
from partrobust.eval.benchmarks import prepare_benchmark  # noqa: E402
from partrobust.eval.benchmarks.base import BenchmarkSettings  # noqa: E402
from partrobust.report import ablations, figures, masks, regenerate, robustness, style  # noqa: E402
from partrobust.report import sweep_analysis as analysis  # noqa: E402
from partrobust.report.stats import seed_summary  # noqa: E402
from partrobust.runs.sweep import load_plan, section_run_ids  # noqa: E402
from test_analysis import acc, frame, run_rows  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SNAPSHOTS = [REPO / "figures" / name for name in ("builtin_study", "builtin_ablations", "builtin_robustness")]

RAW = style.raw_names()
"""Names that must never be shown as they are (their display name differs)."""
IDENTIFIERS = {n for n in RAW if "_" in n} | {*style.MODEL_LABELS, "pgd", "trades", "eps", "beta", "lr"}
"""Raw names that are no English word: not even part of a sentence may be one of them."""


# --------------------------------------------------------------------------- what a figure shows


def shown_texts(fig: plt.Figure) -> list[str]:
    """Every non-empty text of `fig`: titles, axis labels, tick labels, legend titles and entries, annotations."""
    for ax in fig.axes:  # tick labels are made on demand
        ax.get_xticklabels(), ax.get_yticklabels()
    return [t.get_text() for t in fig.findobj(Text) if t.get_text().strip()]


def raw_words(text: str) -> set[str]:
    """The raw names in `text`: the whole text, or one of its words if that word is an identifier."""
    words = {w for w in re.split(r"[\s,;:()=]+", text) if w}
    return ({text.strip()} & RAW) | (words & IDENTIFIERS)


def legends(fig: plt.Figure) -> list:
    return [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]


def handle_style(handle) -> tuple | None:
    """How a legend entry looks (None: an entry that is a heading, with nothing drawn)."""
    if isinstance(handle, Line2D):
        no_marker = handle.get_marker() in ("None", "", None, " ")
        if no_marker and (handle.get_linestyle() in ("None", "", " ") or handle.get_linewidth() == 0
                          or matplotlib.colors.to_hex(handle.get_color()) == "#ffffff"):  # seaborn's legend headings
            return None
        return ("line", matplotlib.colors.to_hex(handle.get_color()), str(handle.get_marker()), handle.get_linestyle(),
                matplotlib.colors.to_hex(handle.get_markerfacecolor(), keep_alpha=True))
    if isinstance(handle, PathCollection):
        face, edge = handle.get_facecolor(), handle.get_edgecolor()
        return ("points", tuple(np.round(face, 3).ravel()), tuple(np.round(edge, 3).ravel()),
                tuple(np.round(handle.get_paths()[0].vertices, 3).ravel()) if handle.get_paths() else ())
    if isinstance(handle, LineCollection):
        return ("lines", tuple(np.round(handle.get_color(), 3).ravel()), str(handle.get_linestyle()))
    if isinstance(handle, matplotlib.patches.Patch):
        if not handle.get_visible() or (handle.get_facecolor()[3] == 0 and handle.get_edgecolor()[3] == 0):
            return None
        return ("patch", tuple(np.round(handle.get_facecolor(), 3)))
    return ("other", type(handle).__name__, id(handle))


def legend_problems(fig: plt.Figure) -> list[str]:
    """Entries that repeat a name, or look like another entry of the same legend."""
    problems = []
    for legend in legends(fig):
        names = [t.get_text() for t in legend.get_texts()]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            problems.append(f"repeated legend entries {repeated}")
        seen: dict[tuple, str] = {}
        for name, handle in zip(names, legend.legend_handles):
            look = handle_style(handle)
            if look is None:
                continue
            if look in seen and seen[look] != name:
                problems.append(f"legend entries {seen[look]!r} and {name!r} look alike")
            seen.setdefault(look, name)
    return problems


def labelled_but_empty(fig: plt.Figure) -> list[str]:
    """Labels of lines and point sets that a legend would list but that show no point (all of theirs NaN)."""
    empty = []
    for ax in fig.axes:
        for artist in [*ax.lines, *ax.collections]:
            name = artist.get_label()
            if not name or name.startswith("_"):
                continue
            if isinstance(artist, Line2D):
                points = np.column_stack([np.asarray(artist.get_xdata(), float), np.asarray(artist.get_ydata(), float)])
            elif isinstance(artist, PathCollection):
                points = np.asarray(artist.get_offsets(), float)
            else:
                continue
            if len(points) and not np.isfinite(points).all(axis=-1).any():  # seaborn's legend proxies hold no data at all
                empty.append(name)
    return empty


def interval_extent(fig: plt.Figure) -> tuple[float, float]:
    """The lowest and highest y (and x) of every error bar drawn."""
    values = [v for ax in fig.axes for c in ax.collections if isinstance(c, LineCollection)
              for segment in c.get_segments() for v in np.asarray(segment).ravel()]
    return (min(values), max(values)) if values else (0.0, 0.0)


# --------------------------------------------------------------------------- every figure


def history_frame() -> pd.DataFrame:
    """A run's history as `Run.history` reads it: a clean phase, then PGD."""
    rows = [{"phase": "clean", "epoch": e, "train_loss": 1.0 / e, "train_acc": 50 + e, "val_clean_acc": 48 + e} for e in (1, 2)]
    rows += [{"phase": "pgd", "epoch": e, "train_loss": 2.0 / e, "train_acc": 30 + e, "val_clean_acc": 45 + e, "val_adv_acc": 20 + e}
             for e in (1, 2)]
    return pd.DataFrame(rows)


def texture_cue_frame() -> pd.DataFrame:
    """Shape-vs-texture results of models trained with a stronger and stronger texture cue (notebook 04)."""
    runs = []
    for model in ("resnet", "downsampled"):
        for cue, shape in ((0.0, 60.0), (0.5, 45.0), (0.9, 25.0)):
            dataset = "synthetic-parts" if cue == 0 else f"synthetic-parts-texture{cue}"
            runs.append(run_rows(f"{model}-{cue}", model, "normal", {"clean_accuracy": 80.0, "shape_vs_texture_accuracy": shape,
                                                                     "shape_vs_texture_texture_rate": 90 - shape}, dataset=dataset))
    return frame(*runs)


@pytest.fixture(scope="module")
def every_figure(tiny_dataset, tmp_path_factory) -> dict[str, plt.Figure]:
    """Name -> figure, for every figure the package draws (closed at the end)."""
    inputs = regenerate.load_inputs(SNAPSHOTS)
    results = inputs.results
    data = figures.FigureData.of(results, inputs.examples)
    drawn: dict[str, plt.Figure] = {}
    plt.rcParams["figure.max_open_warning"] = 0  # about 40 figures, closed at the end (pytest restores rcParams)
    for name, spec in figures.FIGURES.items():
        for stem, fig in spec.draw(data).items():
            drawn[f"FIGURES[{name}]:{stem}"] = fig

    ablation_results = results[results["experiment"] == "ablations_smoke"]
    section_runs = section_run_ids(load_plan(REPO / "params" / "ablations_smoke.yaml"))
    for name, ablation in ablations.ABLATIONS.items():
        fig = ablations.plot_ablation(ablations.section_results(ablation_results, section_runs[name]), ablation)
        assert fig is not None, f"ablation {name}: no figure from the committed snapshot"
        drawn[f"plot_ablation:{name}"] = fig

    robustness_results = results[results["experiment"] == "robustness_smoke"]
    drawn["plot_severity"] = robustness.plot_severity(robustness_results)
    drawn["plot_texture_cue"] = robustness.plot_texture_cue(texture_cue_frame())
    options = {"common_corruption": {"corruptions": ["gaussian_noise", "fog"], "severities": [3]}}
    folders = {name: prepare_benchmark(name, tiny_dataset, BenchmarkSettings(32, 32, limit=4, options=options.get(name, {})),
                                       progress=False)
               for name in ("common_corruption", "spurious_correlation", "shape_vs_texture")}
    classes = PartDataset(tiny_dataset, "test").metadata.classes
    drawn["plot_benchmark_examples"] = robustness.plot_benchmark_examples(folders, classes, n=3)

    study = results[results["experiment"] == "builtin_study"]
    drawn["plot_seed_summary"] = figures.plot_seed_summary(seed_summary(study))
    drawn["plot_sweep"] = figures.plot_sweep(analysis.wide_runs(study))
    drawn["plot_training_history"] = figures.plot_training_history(history_frame(), "bbox-pgd-0")

    dataset = PartDataset(tiny_dataset, "train")
    drawn["plot_image_mask_grid"] = masks.plot_image_mask_grid(dataset, n=3)
    items = [dataset[i] for i in range(3)]
    drawn["plot_samples"] = masks.plot_samples([x for x, _, _ in items], [("true masks", [m for _, m, _ in items])],
                                               [y for _, _, y in items], dataset.metadata.classes, dataset.metadata.num_parts,
                                               preds=[0, 1, 2])
    example = next(iter(inputs.examples.values()))
    drawn["plot_examples"] = masks.plot_examples(masks.load_examples(example))
    drawn["plot_predictions_panel"] = drawn["plot_examples"]  # plot_examples draws it
    yield drawn
    for fig in drawn.values():
        plt.close(fig)


def drawing_functions() -> set[str]:
    """Every ``plot_*`` function of `partrobust.report` and every paper figure."""
    names = {f"FIGURES[{name}]" for name in figures.FIGURES}
    for module in (getattr(report_package, m) for m in ("ablations", "figures", "masks", "robustness", "style", "stats",
                                                        "sweep_analysis", "paper", "claims", "regenerate")):
        names |= {n for n, f in inspect.getmembers(module, inspect.isfunction)
                  if n.startswith("plot_") and f.__module__ == module.__name__}
    return names


def test_every_drawing_function_is_checked(every_figure):
    checked = {name.split(":")[0] for name in every_figure}
    assert drawing_functions() <= checked, f"figures not drawn by this test: {sorted(drawing_functions() - checked)}"
    assert {f"plot_ablation:{name}" for name in ablations.ABLATIONS} <= set(every_figure)


def test_no_figure_shows_a_raw_name(every_figure):
    """Tick labels, legend entries and titles, axis labels, titles, annotations: all from the name map."""
    shown = {(name, text) for name, fig in every_figure.items() for text in shown_texts(fig) if raw_words(text)}
    assert not shown, f"raw names shown: {sorted(shown)}"


def test_every_legend_lists_each_thing_once_and_tells_entries_apart(every_figure):
    problems = {name: p for name, fig in every_figure.items() if (p := legend_problems(fig))}
    assert not problems, problems
    empty = {name: e for name, fig in every_figure.items() if (e := labelled_but_empty(fig))}
    assert not empty, f"legend entries of things not drawn: {empty}"


def test_every_interval_stays_within_0_and_100(every_figure):
    extents = {name: interval_extent(fig) for name, fig in every_figure.items()}
    outside = {name: e for name, e in extents.items() if e[0] < 0 or e[1] > 100}
    assert not outside, outside
    assert extents["FIGURES[table01_seeds]:table01_builtin_builtin_study"][0] == 0.0, "the study's normal runs reach 0"


# --------------------------------------------------------------------------- the checks themselves can fail


def test_the_checks_catch_raw_names_repeated_entries_and_lookalikes():
    assert raw_words("bbox") == {"bbox"} and raw_words("Bounding-Box, pgd") == {"pgd"}
    assert raw_words("autoattack_accuracy (%)") == {"autoattack_accuracy"} and raw_words("label_type") == {"label_type"}
    assert not raw_words("Bounding-Box, PGD, $c_\\mathrm{seg}$=0.5") and not raw_words("built-in data (builtin_study)")
    assert not raw_words("PGD training (bbox-pgd-026567b0)"), "a run id is a name of its own"
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], marker="o", color="C0", label="Downsampled")
    ax.plot([0, 1], [1, 0], marker="o", color="C0", label="Downsampled")
    ax.plot([0, 1], [1, 1], marker="o", color="C0", label="Bounding-Box")
    ax.errorbar([1], [2], yerr=[[3], [1]], label="Pixel")
    ax.scatter([np.nan], [np.nan], label="Two-Headed")
    ax.legend()
    ax.set_xlabel("c_seg")
    problems = legend_problems(fig)
    assert "repeated legend entries ['Downsampled']" in problems
    assert any("look alike" in p and "Bounding-Box" in p for p in problems)
    assert interval_extent(fig)[0] == -1.0
    assert labelled_but_empty(fig) == ["Two-Headed"]
    assert any(raw_words(t) == {"c_seg"} for t in shown_texts(fig))
    plt.close(fig)


def test_the_name_map_has_one_display_name_per_name():
    parts = [style.MODEL_LABELS, style.TRAINING_LABELS, style.METRIC_LABELS, style.SETTING_LABELS, style.VALUE_LABELS,
             style.HISTORY_LABELS, style.BENCHMARK_LABELS]
    for part in parts:
        assert all(style.NAMES[k] == v for k, v in part.items())
    assert style.label("bbox") == "Bounding-Box" and style.label("autoattack_accuracy") == "AutoAttack"
    assert style.label(0.5) == "0.5" and style.label(float("nan")) == ""
    assert style.metric_label("common_corruption_fog_accuracy") == "common corruption fog"
    assert {"bbox", "autoattack_accuracy", "c_seg", "pgd", "label_type"} <= RAW and "normal" not in RAW


# --------------------------------------------------------------------------- each defect on a small frame


def test_intervals_are_clipped_to_0_and_100():
    errors = style.clipped_errors([0.4, 99.0, 50.0, 30.0], [1.5, 3.0, 2.0, np.nan])
    assert np.allclose(errors, [[0.4, 3.0, 2.0, 0.0], [1.5, 1.0, 2.0, 0.0]])
    assert style.clipped_errors([10.0], [np.nan]) is None
    runs = [run_rows(f"d-{s}", "downsampled", "normal", acc(90 + 4 * s, [0.0, 1.0, 0.0][s]), seed=s) for s in range(3)]
    fig = figures.plot_seed_summary(seed_summary(frame(*runs)))
    low, high = interval_extent(fig)
    assert low == 0.0 and high <= 100.0
    plt.close(fig)


def test_one_seed_is_said_as_such():
    assert style.seeds_caption([1, 1]) == "one seed (no interval)"
    assert style.seeds_caption([3]) == "mean ± 95% CI over 3 seeds"
    assert style.seeds_caption([1, 3]) == "mean ± 95% CI over 1-3 seeds (one seed: no interval)"
    assert style.seeds_caption([2], confidence=None) == "mean over 2 seeds"
    one = frame(run_rows("d", "downsampled", "pgd", acc(60, 20)), run_rows("r", "resnet", "pgd", acc(50, 10)))
    table = figures.table01_seeds(figures.FigureData.of(one))
    (fig,) = table.values()
    title = fig.axes[0].get_title()
    assert "one seed" in title and "CI" not in title
    plt.close(fig)
    three = frame(*[run_rows(f"d{s}", "downsampled", "pgd", acc(60 + s, 20), seed=s) for s in range(3)])
    (fig,) = figures.table01_seeds(figures.FigureData.of(three)).values()
    assert fig.axes[0].get_title().endswith("mean ± 95% CI over 3 seeds")
    plt.close(fig)


def test_table1_figure_gives_every_setting_its_own_look():
    """A c_seg sweep of two models under one training: nine entries, nine colour-marker pairs (was: four look-alikes each)."""
    runs = [run_rows("r", "resnet", "pgd", acc(22, 2))]
    runs += [run_rows(f"{m}-{c}", m, "pgd", acc(50 + 10 * c, 10 - 5 * c), c_seg=c) for m in ("downsampled", "bbox")
             for c in (0.0, 0.1, 0.5, 0.9)]
    fig = figures.plot_seed_summary(seed_summary(frame(*runs)))
    legend = fig.axes[0].get_legend()
    names = [t.get_text() for t in legend.get_texts()]
    assert len(names) == 9 and not legend_problems(fig)
    assert names[1:5] == [f"Downsampled, PGD, $c_\\mathrm{{seg}}$={c:g}" for c in (0.0, 0.1, 0.5, 0.9)], "sorted by c_seg"
    plt.close(fig)


def test_sweep_frontiers_join_seed_means_and_trades_points_show_their_beta():
    """Two seeds per setting: one point per setting (their mean), the frontier through the means, each
    TRADES point annotated with its own beta."""
    runs = []
    for seed, shift in ((0, -1.0), (1, 1.0)):
        runs += [run_rows(f"b-pgd-{seed}", "bbox", "pgd", acc(70 + shift, 35 - shift), seed=seed),
                 run_rows(f"b-tr1-{seed}", "bbox", "trades", acc(80 + shift, 25 + shift), beta=1.0, seed=seed),
                 run_rows(f"b-tr3-{seed}", "bbox", "trades", acc(76 + shift, 30 + shift), beta=3.0, seed=seed)]
    wide = analysis.wide_runs(frame(*runs))
    means = analysis.seed_means(wide)
    assert len(means) == 3 and set(means["seeds"]) == {2}
    assert sorted(means["clean_accuracy"]) == [70.0, 76.0, 80.0]
    fig = figures.plot_sweep(wide)
    ax = fig.axes[0]
    points = np.concatenate([c.get_offsets() for c in ax.collections])
    assert len(points) == 3, "one point per setting, not per seed"
    (line,) = ax.lines
    assert sorted(line.get_xdata()) == [70.0, 76.0, 80.0], "the frontier joins the means"
    assert sorted(t.get_text() for t in ax.texts) == ["β=1", "β=3"]
    assert ax.get_title().endswith("mean over 2 seeds")
    plt.close(fig)


def test_fig08_lists_only_the_models_it_draws_once_each():
    """Models with clean accuracy but no benchmark are not in the legend; two sources: one row each, one legend."""
    def bench(run_id: str, model: str, value: float, dataset: str = "synthetic-parts", **extra) -> list[dict]:
        metrics = {"clean_accuracy": 80.0, **{m: value for m in ("shape_vs_texture_accuracy", "spurious_correlation_accuracy",
                                                                  "common_corruption_accuracy")}}
        return run_rows(run_id, model, "normal", metrics, dataset=dataset, **extra)

    results = frame(bench("r", "resnet", 60.0), bench("d", "downsampled", 65.0),
                    bench("d-nb", "downsampled", 66.0, drop_background=True),
                    bench("d2", "downsampled", 64.0, experiment="other"),
                    run_rows("p", "pixel", "pgd", acc(50, 10)), run_rows("t", "two_headed", "pgd", acc(55, 12)))
    (fig,) = figures.fig08_benchmarks(figures.FigureData.of(results)).values()
    names = [t.get_text() for t in fig.legends[0].get_texts()]
    assert names == ["ResNet", "Downsampled", "Downsampled (no background)"]
    assert not legend_problems(fig) and all(ax.get_legend() is None for ax in fig.axes)
    assert len(fig.axes) == 2 * 3, "one row of panels per source"
    plt.close(fig)


def test_curves_skip_lines_without_values_and_average_no_variant_in():
    """Fig. 9: a model with no values in a panel gets no legend entry; a label-kind variant at the same c_seg is
    not averaged into the curve."""
    runs = [run_rows("d1", "downsampled", "pgd", acc(80, 30), c_seg=0.1), run_rows("d5", "downsampled", "pgd", acc(70, 20), c_seg=0.5),
            run_rows("d5-box", "downsampled", "pgd", acc(10, 1), c_seg=0.5, labels="bbox"),
            run_rows("b1", "bbox", "pgd", {"clean_accuracy": 60.0}, c_seg=0.1),
            run_rows("b5", "bbox", "pgd", {"clean_accuracy": 65.0}, c_seg=0.5)]
    (fig,) = figures.fig09_cseg(figures.FigureData.of(frame(*runs))).values()
    clean, autoattack = fig.axes[:2]
    downsampled = [ln for ln in clean.lines if ln.get_label() == "Downsampled"][0]
    assert list(downsampled.get_ydata()) == [80.0, 70.0]
    assert [ln.get_label() for ln in autoattack.lines] == ["Downsampled"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["Downsampled", "Bounding-Box"]
    plt.close(fig)


def test_the_benchmark_metric_names_have_display_names():
    for benchmark in ("shape_vs_texture", "spurious_correlation", "common_corruption"):
        assert benchmark_metric(benchmark) not in style.axis_label(benchmark_metric(benchmark))
        assert "_" not in style.label(benchmark)
