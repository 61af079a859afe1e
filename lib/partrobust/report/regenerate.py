"""``make figures``: every table and figure of the paper that the available results cover, and the claims report.

Inputs are experiment folders (``runs/<experiment>``), run folders, results CSVs or result
snapshots (a folder with ``results.csv`` and ``examples/<run id>.npz``, like the committed
``figures/builtin_study``). By default: every committed snapshot under ``figures/`` and every
experiment under ``runs/`` with results on one of the paper's datasets (built-in-data experiments
under ``runs/`` are smoke tests and recipes of their own: pass them by name).

Outputs (the same results give byte-identical files):

* ``paper/side_by_side.csv``: every printed number of Tables 1-19 next to ours (`partrobust.report.paper`);
* ``paper/tables/tableNN.md``: each table side by side, plus our built-in-data numbers in its layout;
* ``paper/<figure>.png`` and ``.pdf``: the figures of `partrobust.report.figures.FIGURES` the results cover;
* ``REPORT.md``: the paper's claims with our evidence and their status (`partrobust.report.claims`),
  and what is missing with the command that would produce it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from ..core.fileio import atomic_write_text
from ..core.metrics import BENCHMARK_METRICS
from ..core.paths import find_repo_root
from ..core.results import RESULT_COLUMNS, RESULTS_FILE, eps_text, gather_results, read_results, results_csv, trained_run_ids
from .claims import BUILTIN_STATUS, MIN_SEEDS, evaluate_claims
from .figures import FIGURES, FigureData, Missing
from .masks import EXAMPLES_FILE
from .paper import TABLES, all_side_by_side, builtin_table, is_builtin, missing_commands, released_table, source_label, trained_models
from .protocol import with_protocol
from .style import STYLE, model_label, save_figure, training_label

PAPER_DIR = "paper"


REPORT_FILE = "REPORT.md"


SNAPSHOT_EXAMPLES = "examples"


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
    atomic_write_text(folder / RESULTS_FILE, results_csv(results.sort_values(["run_id", "metric"])))
    first_seed = set(results[results["seed"] == results["seed"].min()]["run_id"])  # Fig. 5 shows one seed
    for npz in sorted(experiment.glob(f"*/figures/{EXAMPLES_FILE}")):
        if npz.parent.parent.name not in first_seed:
            continue
        target = folder / SNAPSHOT_EXAMPLES / f"{npz.parent.parent.name}.npz"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(npz.read_bytes())
    return folder / RESULTS_FILE


def _cell(value: float, ci: float = float("nan")) -> str:
    if pd.isna(value):
        return ""
    return f"{value:.1f}" if pd.isna(ci) else f"{value:.1f} ± {ci:.1f}"


def test_images_text(results: pd.DataFrame) -> str:
    """Test images per kind of number, read from the headline metrics only (clean, PGD and AutoAttack
    accuracy; each benchmark's accuracy): ``clean and attacks 200; common corruption 7500 (image x
    corruption x severity); ...`` (a range where the runs differ)."""
    kinds = {"clean and attacks": ("clean_accuracy", "pgd_accuracy", "autoattack_accuracy"),
             **{b.removesuffix("_accuracy").replace("_", " "): (b,) for b in sorted(BENCHMARK_METRICS)}}
    notes = {"common corruption": " (image x corruption x severity)"}
    texts = []
    for kind, metrics in kinds.items():
        n = results.loc[results["metric"].isin(metrics), "n"].dropna().astype(int)
        if not n.empty:
            texts.append(f"{kind} {n.min()}{'' if n.min() == n.max() else f'-{n.max()}'}{notes.get(kind, '')}")
    return "; ".join(texts)


HEADLINE = ("clean_accuracy", "pgd_accuracy", "autoattack_accuracy")


def attacks_text(results: pd.DataFrame) -> str:
    """The attacks and budgets behind a source's PGD and AutoAttack numbers (`partrobust.report.protocol.attack_text`)."""
    rows = with_protocol(results[results["metric"].isin(HEADLINE[1:])])
    return "; ".join(sorted(set(rows["attack"]))) or "none"


def comparable_text(results: pd.DataFrame) -> str:
    """``yes`` when every clean, PGD and AutoAttack number of a source is measured as the paper measured, else why not."""
    gaps = sorted({g for gap in with_protocol(results[results["metric"].isin(HEADLINE)])["protocol_gap"] for g in gap.split("; ") if g})
    return "yes" if not gaps else "no: " + "; ".join(gaps)


def _ours(frame: pd.DataFrame) -> list[str]:
    return [_cell(v, c) if s == "ours" else "missing" for v, c, s in zip(frame["ours"], frame["ours_ci95"], frame["status"])]


def _view(frame: pd.DataFrame, with_paper: bool) -> str:
    """The long side-by-side table: one row per printed number with how ours was measured."""
    shown = pd.DataFrame({
        "dataset": frame["dataset"].map(source_label), "training": frame["training"].fillna(""),
        "model": frame["model"].map(lambda m: model_label(m) if isinstance(m, str) else ""),
        "row": frame["row"], "metric": frame["metric"].str.replace("_accuracy", ""), "eps": frame["eps"].map(eps_text).astype(object).fillna(""),
    })
    if with_paper:
        shown["paper"] = [_cell(v, c) for v, c in zip(frame["paper"], frame["paper_ci95"])]
    shown["ours"] = _ours(frame)
    if with_paper:
        shown["difference"] = frame["difference"].map(lambda d: "" if pd.isna(d) else f"{d:+.1f}")
    shown["attack"] = frame["attack"].fillna("")
    shown["n"] = frame["n"].map(lambda n: "" if pd.isna(n) else str(int(n)))
    shown["seeds"] = frame["seeds"].map(lambda s: str(int(s)) if s else "")
    shown["comparable"] = frame["comparable"].fillna("") if not with_paper else frame["not_comparable"].fillna("")
    shown["selection"] = frame["selection"].fillna("")
    shown["runs"] = frame["run_ids"]
    if with_paper:
        shown = shown.rename(columns={"comparable": "beside the cell"})
    return shown.to_markdown(index=False)


def table1_grid(frame: pd.DataFrame, with_paper: bool) -> str:
    """Table 1 as the paper prints it: training x model rows, dataset x (clean, adversarial) columns; a cell is
    ``ours`` (with the paper's number after a slash where compared)."""
    metrics = {"clean_accuracy": "clean", "autoattack_accuracy": "AutoAttack"}
    datasets = list(dict.fromkeys(frame["dataset"]))
    rows = []
    for (training, model), group in frame.groupby(["training", "model"], sort=False):
        row = {"training": training_label(training), "model": model_label(model)}
        for dataset in datasets:
            for metric, label in metrics.items():
                cell = group[(group["dataset"] == dataset) & (group["metric"] == metric)]
                if cell.empty:
                    continue
                ours = _ours(cell)[0]
                row[f"{source_label(dataset)} {label}"] = f"{ours} / {_cell(cell['paper'].iloc[0])}" if with_paper else ours
        rows.append(row)
    order = {training_label(t): i for i, t in enumerate(["pgd", "trades"])}
    table = pd.DataFrame(rows).sort_values("training", key=lambda s: s.map(order), kind="stable")
    return table.to_markdown(index=False)


def _section(title: str, intro: str, frame: pd.DataFrame, number: int, with_paper: bool) -> list[str]:
    """A section of a table's Markdown beside the paper's cells: its numbers in the table's layout (Table 1's
    grid first), with or without the paper's numbers next to them."""
    lines = [f"## {title}", "", intro, ""]
    if number == 1:
        lines += [table1_grid(frame, with_paper=with_paper), ""]
    return lines + [_view(frame, with_paper=with_paper), ""]


def table_markdown(side: pd.DataFrame, builtin: pd.DataFrame, number: int, released: pd.DataFrame | None = None) -> str:
    """One paper table side by side with ours, then the released weights' numbers (their own source), then our
    built-in-data numbers in its layout (Table 1 as the paper's models x datasets grid, with the per-cell details below)."""
    spec = TABLES[number]
    counts = table_counts(side, builtin, number)
    lines = [f"# Table {number}: {spec.title}", "",
             f"{counts['ours']} of {counts['printed']} printed numbers have our runs measured as the paper measured; "
             f"{counts['not comparable']} more have runs measured otherwise (\"beside the cell\", never in it). Missing numbers "
             f"are produced by: {counts['missing produced by'] or 'none missing'}.", ""]
    if number == 1:
        lines += ["Ours / the paper's (%), clean and AutoAttack (eps 8/255) accuracy:", "", table1_grid(side, with_paper=True), "",
                  "## Per cell: how ours was measured", ""]
        shown = side[(side["status"] == "ours") | side["not_comparable"].fillna("").ne("")]
        lines += [_view(shown, with_paper=True) if not shown.empty else "No runs yet.", ""]
    else:
        lines += [_view(side, with_paper=True), ""]
    if released is not None and not released.empty:
        lines += _section("Released weights, evaluated here", "The authors' released weights (Zenodo record 8342614) evaluated "
                          "by our code on our test split: a source of their own, never pooled with the runs trained here.",
                          released, number, with_paper=True)
    if not builtin.empty:
        lines += _section("Built-in data (not comparable with the paper's numbers)", "Our runs on the built-in synthetic data, "
                          "in the layout of this table (selected models per source); the paper has no such numbers.",
                          builtin, number, with_paper=False)
    return "\n".join(lines)


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
    atomic_write_text(paper_out / "side_by_side.csv", results_csv(side, float_format="%.6g"))
    for number in TABLES:
        text = table_markdown(side[side["table"] == number], builtin[builtin["table"] == number], number,
                              released_table(results, number, paper_tables, ours=ours))
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


def table_counts(side: pd.DataFrame, builtin: pd.DataFrame, number: int) -> dict[str, Any]:
    """Paper table `number`'s printed numbers, how many our runs fill (``ours``), how many have runs measured
    otherwise (``not comparable``), its built-in cells, and the commands that produce the missing numbers."""
    cells = side[side["table"] == number]
    return {"printed": len(cells), "ours": int((cells["status"] == "ours").sum()),
            "not comparable": int(cells["not_comparable"].fillna("").ne("").sum()),
            "built-in cells": int(((builtin["table"] == number) & (builtin["status"] == "ours")).sum()) if not builtin.empty else 0,
            "missing produced by": missing_commands(cells)}


def coverage(outputs: Outputs) -> pd.DataFrame:
    """One row per paper table: printed numbers, how many we have, built-in cells, what produces the rest."""
    rows = []
    for number, spec in TABLES.items():
        counts = table_counts(outputs.side_by_side, outputs.builtin, number)
        rows.append({"table": number, "title": spec.title, **{k: v for k, v in counts.items() if k != "not comparable"}})
    return pd.DataFrame(rows).set_index("table")


def _link(path: Path, base: Path) -> str:
    return os.path.relpath(path, base).replace(os.sep, "/")


def report_markdown(claims: pd.DataFrame, side: pd.DataFrame, builtin: pd.DataFrame, figures: dict[str, list[Path]],
                    missing: dict[str, str], results: pd.DataFrame, paths: list[Path], out: Path) -> str:
    """The text of ``REPORT.md``: inputs (`paths`; `results` with their ``source`` column), claims,
    tables, figures, what is missing."""
    lines = ["# Reproduction report", "",
             "Regenerated by `make figures` (`python -m partrobust.figures`) from the results listed below; "
             "do not edit by hand. Every number comes from a run folder; the paper's numbers come from "
             "their transcription in `lib/partrobust/report/paper_data`.", "", "## Inputs", ""]
    if results.empty:
        lines.append("No results found.")
    for path in paths:
        try:
            shown = path.resolve().relative_to(Path.cwd().resolve())
        except ValueError:
            shown = path
        lines.append(f"- `{shown}`")
    if not results.empty:
        lines += ["", "Runs: run folders (an evaluation of a run at another eps is not another run); trained models: runs "
                  "that differ only in how they are evaluated share one (one sample over seeds); seeds: the distinct "
                  "training seeds; test images per kind of number.", "",
                  "| source | runs | trained models | seeds | test images | attacks | measured as the paper? |",
                  "|---|---|---|---|---|---|---|"]
        for source, group in results.groupby("source"):
            lines.append(f"| {source_label(source)} | {trained_run_ids(group).nunique()} | {trained_models(group)} | "
                         f"{', '.join(map(str, sorted(set(group['seed'].astype(int)))))} | {test_images_text(group)} | "
                         f"{attacks_text(group)} | {comparable_text(group)} |")
    lines += ["", "## Claims", "",
              f"Status per source: `reproduced` (every comparison goes the paper's way, by the size the paper claims where "
              f"it claims one, with a Welch t-test p < 0.05 over at least {MIN_SEEDS} distinct seeds a side; re-evaluations "
              "of one trained model are one seed), `direction only` (the paper's way, but not significant or too few "
              "seeds), `not reproduced`, `inconclusive` (the only baseline is at chance level), `not yet run`. "
              f"Built-in data checks the method on a small synthetic task, not the paper's numbers: there the statuses read "
              f"`{BUILTIN_STATUS['reproduced']}` and `{BUILTIN_STATUS['not reproduced']}`. Paper datasets count only cells "
              "measured as the paper measured (standard AutoAttack, full budget, the paper's PGD, the whole test split).", ""]
    for claim, group in claims.groupby("claim", sort=False):
        lines += [f"### {claim} ({group['paper'].iloc[0]})", "", "| source | status | evidence |", "|---|---|---|"]
        for row in group.itertuples():
            lines.append(f"| {source_label(row.source)} | **{row.status}** | {row.evidence} |")
        lines.append("")
    lines += ["## Tables", "",
              "Each table side by side with the paper (ours, the paper's, the difference, the attack and its budget, test "
              "images, seeds and run ids per cell); a cell holds only runs measured as the paper measured, the others are "
              "listed beside it as \"not comparable: <why>\". Rows that stand for a selected model (Tables 1-7, 11-14) are "
              "chosen by the paper's rules on test-set numbers (our runs record no validation numbers), and each says "
              "among how many settings. Built-in-data numbers are shown in the same layout, never compared cell by cell.", "",
              "| table | printed numbers | ours | not comparable | built-in cells | missing numbers are produced by |",
              "|---|---|---|---|---|---|"]
    tables_dir = out / "paper" / "tables"
    for number, spec in TABLES.items():
        link = _link(tables_dir / f"table{number:02d}.md", out)
        counts = table_counts(side, builtin, number)
        lines.append(f"| [{number}: {spec.title}]({link}) | " + " | ".join(str(v) for v in counts.values()) + " |")
    lines += ["", "## Figures", "", "| figure | paper | files |", "|---|---|---|"]
    for name, spec in FIGURES.items():
        if name in figures:
            files = ", ".join(f"[{p.stem}]({_link(p, out)})" for p in figures[name] if p.suffix == ".png")
        else:
            files = f"missing: {missing.get(name, '')}"
        lines.append(f"| {name} | {spec.paper} | {files} |")
    lines.append("")
    for name, paths in figures.items():
        for path in paths:
            if path.suffix == ".png":
                lines += [f"![{path.stem}]({_link(path, out)})", ""]
    return "\n".join(lines)
