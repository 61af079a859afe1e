"""Every figure and table of the paper that the available results cover (notebook 05, ``make figures``).

    python -m partrobust.figures                          # default inputs -> figures/paper/, figures/REPORT.md
    python -m partrobust.figures runs/part_imagenet runs/cityscapes --output figures
    python -m partrobust.figures --examples runs/X        # write examples.npz of finished runs that lack it

Inputs are experiment folders (``runs/<experiment>``), run folders, results CSVs or result
snapshots (a folder with ``results.csv`` and ``examples/<run id>.npz``, like the committed
``figures/builtin_study``). By default: every committed snapshot under ``figures/`` and every
experiment under ``runs/`` with results on one of the paper's datasets (built-in-data experiments
under ``runs/`` are smoke tests and recipes of their own: pass them by name).

Outputs (the same results give byte-identical files):

* ``paper/side_by_side.csv``: every printed number of Tables 1-19 next to ours (`partrobust.report.paper`);
* ``paper/tables/tableNN.md``: each table side by side, plus our built-in-data numbers in its layout;
* ``paper/<figure>.png`` and ``.pdf``: the figures of `FIGURES` the results cover;
* ``REPORT.md``: the paper's claims with our evidence and their status (`partrobust.report.claims`),
  and what is missing with the command that would produce it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .sweep_analysis import _axis_label, parse_eps, plot_sweep, wide_runs  # noqa: E402
from ..core.fileio import atomic_write_text  # noqa: E402
from .paper import NOTEBOOK_03, NOTEBOOK_04, TABLES, in_main_setup, all_side_by_side, builtin_table, is_builtin, settings, with_source  # noqa: E402
from .style import MODEL_COLORS, TRAINING_MARKERS, model_label, save_figure  # noqa: E402
from ..core.results import RESULT_COLUMNS, RESULTS_FILE, gather_results, read_results  # noqa: E402
from .stats import seed_summary  # noqa: E402
from ..core.paths import find_repo_root  # noqa: E402
from .masks import EXAMPLES_FILE, load_examples, plot_examples  # noqa: E402
from .claims import evaluate_claims, report_markdown
from .style import plot_seed_summary

PAPER_DIR = "paper"
REPORT_FILE = "REPORT.md"
SNAPSHOT_EXAMPLES = "examples"
STYLE = {"font.family": "DejaVu Sans", "font.size": 9, "axes.titlesize": 9, "legend.fontsize": 7,
         "svg.hashsalt": "partrobust", "pdf.fonttype": 42}
"""The one style of every figure (seaborn's whitegrid theme plus these): a fixed font, so that the
same results give the same bytes on any machine with matplotlib's bundled DejaVu fonts."""


class Missing(Exception):
    """A figure whose runs do not exist; the message says which runs are needed."""


# --------------------------------------------------------------------------- inputs


@dataclass
class Inputs:
    """Results gathered from input folders, with the Fig. 5 example files found beside them."""

    results: pd.DataFrame
    examples: dict[str, Path]
    paths: list[Path]


def default_inputs(repo: Path | None = None) -> list[Path]:
    """Committed snapshots (``figures/*/results.csv``) and the ``runs/`` experiments on a paper dataset."""
    repo = repo or find_repo_root()
    inputs = sorted(p.parent for p in (repo / "figures").glob(f"*/{RESULTS_FILE}"))
    for experiment in sorted(p for p in (repo / "runs").glob("*") if p.is_dir()):
        files = sorted(experiment.glob(f"*/{RESULTS_FILE}"))
        if files and any(not is_builtin(d) for f in files for d in read_results(f)["dataset"].unique()):
            inputs.append(experiment)
    return inputs


def load_inputs(paths: Iterable[str | Path]) -> Inputs:
    """Results of all `paths` in one tidy frame (a run found twice counts once) and their example files."""
    paths = [Path(p) for p in paths]
    frames, examples = [], {}
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"no results at {path}")
        frames.append(gather_results(path))
        folder = path if path.is_dir() else path.parent
        for npz in sorted([*folder.glob(f"{SNAPSHOT_EXAMPLES}/*.npz"), *folder.glob(f"*/figures/{EXAMPLES_FILE}"),
                           *folder.glob(f"figures/{EXAMPLES_FILE}")]):
            run = npz.stem if npz.parent.name == SNAPSHOT_EXAMPLES else npz.parent.parent.name
            examples.setdefault(run, npz)
    results = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RESULT_COLUMNS)
    results = results.drop_duplicates(["run_id", "metric"], keep="first").reset_index(drop=True)
    return Inputs(results, examples, paths)


def write_snapshot(experiment: str | Path, folder: str | Path) -> Path:
    """Copies an experiment's tidy results and the example files of its lowest-seed runs into
    `folder` (a committed snapshot such as ``figures/builtin_study``), so that the figures can be
    redrawn without the runs."""
    experiment, folder = Path(experiment), Path(folder)
    results = gather_results(experiment)
    if results.empty:
        raise FileNotFoundError(f"{experiment} holds no results")
    atomic_write_text(folder / RESULTS_FILE, results.sort_values(["run_id", "metric"]).to_csv(index=False))
    first_seed = set(results[results["seed"] == results["seed"].min()]["run_id"])  # Fig. 5 shows one seed
    for npz in sorted(experiment.glob(f"*/figures/{EXAMPLES_FILE}")):
        if npz.parent.parent.name not in first_seed:
            continue
        target = folder / SNAPSHOT_EXAMPLES / f"{npz.parent.parent.name}.npz"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(npz.read_bytes())
    return folder / RESULTS_FILE


# --------------------------------------------------------------------------- figures


@dataclass
class FigureData:
    """What every figure is drawn from, computed once: the results with their ``source``, their
    seed averages (`partrobust.report.paper.settings`) and the Fig. 5 example files by run id."""

    results: pd.DataFrame
    ours: pd.DataFrame
    examples: dict[str, Path]

    @classmethod
    def of(cls, results: pd.DataFrame, examples: dict[str, Path] | None = None) -> "FigureData":
        return cls(with_source(results), settings(results), dict(examples or {}))


def source_label(source: str) -> str:
    """'built-in data (builtin_study)' for a built-in source, the dataset name otherwise."""
    return f"built-in data ({source.split(':', 1)[1]})" if source.startswith("builtin:") else source


def _adv_metric(frame: pd.DataFrame) -> str:
    return "autoattack_accuracy" if "autoattack_accuracy" in set(frame["metric"]) else "pgd_accuracy"


def fig04_tradeoff(data: FigureData) -> dict[str, plt.Figure]:
    """Fig. 4: clean vs adversarial accuracy of every adversarially trained run of the paper's main
    setup (ablation variants are left out), one panel per source."""
    sourced = data.results
    adversarial = sourced[sourced["training"].isin(["pgd", "trades"]) & in_main_setup(sourced)]
    if adversarial.empty:
        raise Missing("no PGD or TRADES runs")
    wide = wide_runs(adversarial.assign(dataset=adversarial["source"].map(source_label)))
    metric = _adv_metric(adversarial)
    if "clean_accuracy" not in wide or metric not in wide:
        raise Missing("no clean and adversarial accuracy of the same runs")
    return {"fig04_tradeoff": plot_sweep(wide, adv_metric=metric)}


TABLE01_MODELS = ("resnet", "downsampled", "bbox")


def table01_seeds(data: FigureData) -> dict[str, plt.Figure]:
    """Table 1 as a figure: clean vs AutoAttack accuracy, mean and 95% CI over seeds, per source and
    setting of Table 1's models in the paper's main setup (ablation variants left out)."""
    figures = {}
    results = data.results[in_main_setup(data.results) & data.results["model"].isin(TABLE01_MODELS)]
    if "evaluators" in results:  # one point per trained model: not its re-evaluations by notebook 03's attack sections
        results = results[results["evaluators"].fillna("none") == "none"]
    for source, group in results.groupby("source", sort=True):
        summary = seed_summary(group.drop(columns="source"))
        if summary.empty or not {"clean_accuracy", "autoattack_accuracy"} <= set(summary["metric"]):
            continue
        name = f"table01_{source.replace(':', '_')}"
        figures[name] = plot_seed_summary(summary, title=f"{source_label(source)}: mean ± 95% CI over seeds")
    if not figures:
        raise Missing("no runs with clean and AutoAttack accuracy")
    return figures


def fig05_masks(data: FigureData) -> dict[str, plt.Figure]:
    """Fig. 5 / 12: ground truth, clean and PGD inputs with predicted masks, for the PGD-trained
    part model of each source and model (lowest seed), from its stored examples."""
    examples = data.examples
    runs = data.results.drop_duplicates("run_id")
    runs = runs[runs["run_id"].isin(examples) & runs["model"].ne("resnet")]
    order = {"pgd": 0, "trades": 1, "normal": 2}
    runs = runs.assign(_rank=runs["training"].map(order).fillna(3)).sort_values(["source", "model", "_rank", "seed", "run_id"])
    figures = {}
    for (source, model), group in runs.groupby(["source", "model"], sort=True):
        row = group.iloc[0]
        name = f"fig05_masks_{source.replace(':', '_')}_{model}"
        title = f"{source_label(source)}: {model_label(model)}, {row['training']} training ({row['run_id']})"
        figures[name] = plot_examples(load_examples(examples[row["run_id"]]), title=title)
    if not figures:
        raise Missing(f"no part-model run with figures/{EXAMPLES_FILE} (runs write it when they finish; older runs: "
                      "python -m partrobust.figures --examples runs/<experiment>)")
    return figures


def _line_figure(frame: pd.DataFrame, x: str, x_label: str, title: str) -> plt.Figure:
    """Accuracy (y) against `x`, one panel per source, colour = model, line style = metric."""
    sources = sorted(frame["source"].unique())
    fig, axes = plt.subplots(1, len(sources), figsize=(4.6 * len(sources), 3.6), squeeze=False)
    for ax, source in zip(axes[0], sources):
        panel = frame[frame["source"] == source]
        sns.lineplot(data=panel, x=x, y="value", hue="model", style="metric", markers=True, dashes=True, ax=ax,
                     palette={m: MODEL_COLORS.get(m) for m in panel["model"].unique()}, errorbar=None, sort=True)
        ax.set_title(source_label(source))
        ax.set_xlabel(x_label)
        ax.set_ylabel("accuracy (%)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _sweep_frame(ours: pd.DataFrame, column: str, metrics: Sequence[str]) -> pd.DataFrame:
    """Seed means of `metrics` for (source, model, training) groups that vary in `column` (>= 2 values)."""
    if ours.empty or column not in ours:
        return ours.iloc[0:0]
    ours = ours[ours["metric"].isin(metrics) & ours[column].notna()]
    varying = ours.groupby(["source", "model", "training"])[column].transform("nunique") >= 2
    return ours[varying]


ACCURACIES = ("clean_accuracy", "autoattack_accuracy", "pgd_accuracy")


def accuracy_curve(data: FigureData, *, name: str, column: str, x_label: str, title: str, needs: str,
                   metrics: Sequence[str] = ACCURACIES, adversarial_only: bool = False) -> dict[str, plt.Figure]:
    """Seed-mean accuracies against a swept `column` (eps, c_seg, label fraction), one panel per
    source; Missing (saying what it `needs`) unless some model was run with two or more values."""
    frame = _sweep_frame(data.ours, column, metrics)
    if adversarial_only:
        frame = frame[frame["training"].isin(["pgd", "trades"])]
    if frame.empty:
        raise Missing(needs)
    x = frame[column].map(parse_eps) * 255 if column == "eps" else frame[column].astype(float)
    return {name: _line_figure(frame.assign(_x=x), "_x", x_label, title)}


def table11_eps(data: FigureData) -> dict[str, plt.Figure]:
    """Table 11 as curves: adversarial accuracy against eps (should fall to about 0 at 32/255)."""
    return accuracy_curve(data, name="table11_eps", column="eps", x_label="eps (x/255)", adversarial_only=True,
                          metrics=("autoattack_accuracy", "pgd_accuracy"), title="Adversarial accuracy against eps (Table 11)",
                          needs="no model evaluated at two or more eps")


def fig09_cseg(data: FigureData) -> dict[str, plt.Figure]:
    """Fig. 9: clean and adversarial accuracy of part models against c_seg."""
    return accuracy_curve(data, name="fig09_cseg", column="c_seg", x_label="c_seg", title="Accuracy against c_seg (Fig. 9)",
                          needs="no part model trained with two or more c_seg values")


def fig10_label_fraction(data: FigureData) -> dict[str, plt.Figure]:
    """Fig. 10: accuracy against the fraction of training images with part labels."""
    return accuracy_curve(data, name="fig10_label_fraction", column="label_fraction",
                          x_label="fraction of images with part labels", title="Accuracy against the part-label fraction (Fig. 10)",
                          needs="no part model trained with two or more label fractions")


BENCHMARKS = ("shape_vs_texture_accuracy", "spurious_correlation_accuracy", "common_corruption_accuracy")


def fig08_benchmarks(data: FigureData) -> dict[str, plt.Figure]:
    """Fig. 8: accuracy on each non-adversarial benchmark against clean accuracy, per model."""
    ours = data.ours
    present = [b for b in BENCHMARKS if b in set(ours.get("metric", []))]
    if not present:
        raise Missing("no non-adversarial benchmark results")
    wide = ours.pivot_table(index=["source", "setting", "model"], columns="metric", values="value").reset_index()
    fig, axes = plt.subplots(1, len(present), figsize=(4.2 * len(present), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], present):
        for model, group in wide.groupby("model"):
            ax.scatter(group["clean_accuracy"], group[metric], color=MODEL_COLORS.get(model), label=model_label(model),
                       marker=TRAINING_MARKERS["normal"])
        ax.set_xlabel("clean accuracy (%)")
        ax.set_ylabel(_axis_label(metric))
        ax.legend()
    fig.suptitle("Non-adversarial robustness against clean accuracy (Fig. 8)")
    fig.tight_layout()
    return {"fig08_benchmarks": fig}


@dataclass(frozen=True)
class FigureSpec:
    """One of the paper's data figures: what it shows, how it is drawn, what produces its runs."""

    name: str
    paper: str
    draw: Callable[..., dict[str, plt.Figure]]
    produced_by: str


FIGURES: dict[str, FigureSpec] = {spec.name: spec for spec in [
    FigureSpec("table01_seeds", "Table 1 (as a figure; Fig. 2)", table01_seeds, "the main runs (make study on the built-in data)"),
    FigureSpec("fig04_tradeoff", "Fig. 4 and the sweep frontiers (Tables 8-10)", fig04_tradeoff,
               "python -m partrobust.pipeline params/part_imagenet_sweep.yaml"),
    FigureSpec("fig05_masks", "Fig. 5, 12-14", fig05_masks, "any finished part-model run"),
    FigureSpec("fig08_benchmarks", "Fig. 8", fig08_benchmarks, NOTEBOOK_04),
    FigureSpec("fig09_cseg", "Fig. 9 (and Tables 15, 18, 19)", fig09_cseg, NOTEBOOK_03),
    FigureSpec("fig10_label_fraction", "Fig. 10", fig10_label_fraction, NOTEBOOK_03),
    FigureSpec("table11_eps", "Table 11 (as curves)", table11_eps, NOTEBOOK_03),
]}
"""Figure name -> spec; figures that need runs nobody has made are reported missing, never drawn empty."""


# --------------------------------------------------------------------------- tables as Markdown


def _cell(value: float, ci: float = float("nan")) -> str:
    if pd.isna(value):
        return ""
    return f"{value:.1f}" if pd.isna(ci) else f"{value:.1f} ± {ci:.1f}"


def table_markdown(side: pd.DataFrame, builtin: pd.DataFrame, number: int) -> str:
    """One paper table side by side with ours, then our built-in-data numbers in its layout."""
    spec = TABLES[number]
    found = int((side["status"] == "ours").sum())
    lines = [f"# Table {number}: {spec.title}", "",
             f"{found} of {len(side)} printed numbers have our runs. Missing numbers are produced by: {spec.produced_by}.", ""]

    def view(frame: pd.DataFrame, with_paper: bool) -> str:
        shown = pd.DataFrame({
            "dataset": frame["dataset"].map(source_label), "training": frame["training"].fillna(""),
            "model": frame["model"].map(lambda m: model_label(m) if isinstance(m, str) else ""),
            "row": frame["row"], "metric": frame["metric"].str.replace("_accuracy", ""), "eps": frame["eps"].fillna(""),
        })
        if with_paper:
            shown["paper"] = [_cell(v, c) for v, c in zip(frame["paper"], frame["paper_ci95"])]
        shown["ours"] = [_cell(v, c) if s == "ours" else "missing" for v, c, s in zip(frame["ours"], frame["ours_ci95"], frame["status"])]
        if with_paper:
            shown["difference"] = frame["difference"].map(lambda d: "" if pd.isna(d) else f"{d:+.1f}")
        shown["n"] = frame["n"].map(lambda n: "" if pd.isna(n) else str(int(n)))
        shown["seeds"] = frame["seeds"].map(lambda s: str(int(s)) if s else "")
        shown["runs"] = frame["run_ids"]
        return shown.to_markdown(index=False)

    lines += [view(side, with_paper=True), ""]
    if not builtin.empty:
        lines += ["## Built-in data (not comparable with the paper's numbers)", "",
                  "Our runs on the built-in synthetic data, in the layout of this table (selected models per "
                  "source); the paper has no such numbers.", "", view(builtin, with_paper=False), ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- everything


@dataclass
class Outputs:
    """What `regenerate` wrote and found missing (shown by notebook 05)."""

    side_by_side: pd.DataFrame
    builtin: pd.DataFrame
    figures: dict[str, list[Path]]
    missing_figures: dict[str, str]
    claims: pd.DataFrame
    report: Path


def regenerate(inputs: Sequence[str | Path] | None = None, output_dir: str | Path = "figures",
               paper_tables: str | Path | None = None, verbose: bool = True) -> Outputs:
    """Reads the results of `inputs` (default: `default_inputs`), writes every table and figure they
    cover under ``<output_dir>/paper/`` and the claims report ``<output_dir>/REPORT.md``."""
    repo = find_repo_root()
    paths = [Path(p) for p in inputs] if inputs else default_inputs(repo)
    found = load_inputs(paths)
    results = found.results
    data = FigureData.of(results, found.examples)
    ours = data.ours
    side = all_side_by_side(results, paper_tables, ours=ours)  # missing paper tables stop here, before any file is touched
    builtin_parts = [builtin_table(results, n, paper_tables, ours=ours) for n in TABLES]
    builtin = pd.concat([b for b in builtin_parts if not b.empty] or [pd.DataFrame(columns=side.columns)], ignore_index=True)

    out = Path(output_dir)
    paper_out = out / PAPER_DIR
    (paper_out / "tables").mkdir(parents=True, exist_ok=True)
    for old in [*paper_out.glob("*.png"), *paper_out.glob("*.pdf")]:
        old.unlink()  # a figure whose runs are gone must not linger
    atomic_write_text(paper_out / "side_by_side.csv", side.to_csv(index=False, float_format="%.6g"))
    for number in TABLES:
        text = table_markdown(side[side["table"] == number], builtin[builtin["table"] == number], number)
        atomic_write_text(paper_out / "tables" / f"table{number:02d}.md", text)

    written: dict[str, list[Path]] = {}
    missing: dict[str, str] = {}
    with plt.rc_context(), sns.axes_style("whitegrid"):
        plt.rcParams.update(STYLE)
        for name, spec in FIGURES.items():
            try:
                figures = spec.draw(data)
            except Missing as reason:
                missing[name] = f"{reason}; produced by: {spec.produced_by}"
                continue
            for stem, fig in figures.items():
                written.setdefault(name, []).extend(save_figure(fig, paper_out / f"{stem}{suffix}") for suffix in (".png", ".pdf"))
                plt.close(fig)
    claims = evaluate_claims(data.results, side, builtin)
    report = out / REPORT_FILE
    atomic_write_text(report, report_markdown(claims, side, builtin, written, missing, data.results, found.paths, out))
    if verbose:
        drawn = sum(len(v) for v in written.values()) // 2
        print(f"[partrobust] {results['run_id'].nunique()} runs from {len(paths)} input(s); "
              f"{int((side['status'] == 'ours').sum())} of {len(side)} printed numbers matched; "
              f"{drawn} figures; report: {report}", flush=True)
    return Outputs(side, builtin, written, missing, claims, report)


def coverage(outputs: Outputs) -> pd.DataFrame:
    """One row per paper table: printed numbers, how many we have, built-in cells, what produces the rest."""
    side, builtin = outputs.side_by_side, outputs.builtin
    rows = []
    for number, spec in TABLES.items():
        cells = side[side["table"] == number]
        ours = int((cells["status"] == "ours").sum())
        rows.append({"table": number, "title": spec.title, "printed": len(cells), "ours": ours,
                     "built-in cells": int(((builtin["table"] == number) & (builtin["status"] == "ours")).sum()),
                     "missing produced by": spec.produced_by if ours < len(cells) else ""})
    return pd.DataFrame(rows).set_index("table")


