"""Notebook 03's analysis: the paper's ablations (Appendix E; Tables 5, 11-15, 17-19; Figs. 9, 10).

Each ablation is a `Ablation` in `ABLATIONS`, named like the ``section`` of the sweep blocks that
produce its runs in a params file (``params/ablations_smoke.yaml``, ``params/part_imagenet_ablations.yaml``).
For an ablation, notebook 03 shows

* `ablation_table`: our numbers, mean over seeds, one row per setting the ablation varies;
* `plot_ablation`: the same as a seaborn figure;
* `verdict`: one sentence on whether the paper's conclusion holds in these runs;
* the paper's table side by side (`partrobust.report.paper.side_by_side`), only for runs on its dataset.

Training-side ablations differ in what is trained; attack-side ones (``eps_sweep``,
``seg_attack``, ``two_stage``, ``rays``) evaluate the same trained models with the evaluators of
`partrobust.eval.evaluators`, and `masking_table` gathers the gradient-masking checks of every run.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ..attacks.two_stage import STRATEGIES
from ..core.config import ParameterError
from ..core.results import trained_run_ids
from .figures import draw
from .paper import at_chance, chance_level, settings, side_by_side
from .paper_tables import is_comparable
from .style import MODEL_COLORS, label, metric_label, model_label, save_figure

TRAINING_METRICS = ("clean_accuracy", "autoattack_accuracy", "pgd_accuracy")


@dataclass(frozen=True)
class Ablation:
    """One of the paper's ablations: what it varies, how it is shown and what the paper concluded.

    keys: the settings columns (`partrobust.report.paper.settings`, incl. its derived ones) whose values
        tell the ablation's settings apart; ``x`` is the one on the figure's x axis.
    metrics: the metrics shown (those present in the results).
    tables: paper tables shown side by side (empty: the paper has a figure, not a table).
    verdict: results of the section -> one sentence.
    figure: the paper figure (`partrobust.report.figures.FIGURES`) that shows the section, drawn by the
        same function as ``make figures``; None: a table-like figure of the section (`plot_ablation`).
    """

    name: str
    title: str
    paper: str
    question: str
    paper_says: str
    keys: tuple[str, ...]
    x: str
    verdict: Callable[[pd.DataFrame], str]
    metrics: tuple[str, ...] = TRAINING_METRICS
    tables: tuple[int, ...] = ()
    hue: str = "model"
    figure: str | None = None


# --------------------------------------------------------------------------- tables


def section_settings(results: pd.DataFrame) -> pd.DataFrame:
    """Our results averaged over seeds (`partrobust.report.paper.settings`) with a numeric ``eps_255`` column."""
    table = settings(results)
    if "eps" in table:
        table["eps_255"] = (table["eps"].astype(float) * 255).round(3)
    return table


def _adv_metric(table: pd.DataFrame) -> str:
    """AutoAttack accuracy where the runs have it, else PGD accuracy (the paper reports AutoAttack)."""
    return "autoattack_accuracy" if "autoattack_accuracy" in set(table["metric"]) else "pgd_accuracy"


def ablation_table(results: pd.DataFrame, ablation: Ablation) -> pd.DataFrame:
    """One row per setting of the ablation (model and `Ablation.keys`), one column per metric (mean over seeds)."""
    table = section_settings(results)
    table = table[table["metric"].isin(ablation.metrics)]
    if table.empty:
        return pd.DataFrame()
    keys = [k for k in ("model", *ablation.keys) if k in table.columns]
    if ablation.x != "eps_255":
        table = at_smallest_eps(table)
    wide = table.pivot_table(index=keys, columns="metric", values="value", aggfunc="mean", dropna=False)
    seeds = table.groupby(keys, dropna=False)["seeds"].max()
    wide = wide.dropna(how="all")
    wide = wide[[m for m in ablation.metrics if m in wide.columns]].rename(columns=metric_label)
    wide["seeds"] = seeds.reindex(wide.index)
    return wide.round(1)


def at_smallest_eps(table: pd.DataFrame) -> pd.DataFrame:
    """The rows evaluated at the smallest eps of `table` (the budget every ablation but the eps sweep is
    scored at), and the rows without an eps."""
    eps = table["eps_255"].dropna() if "eps_255" in table else pd.Series(dtype=float)
    if eps.empty:
        return table
    return table[table["eps_255"].isna() | np.isclose(table["eps_255"].astype(float), float(eps.min()))]


def long_values(results: pd.DataFrame, ablation: Ablation) -> pd.DataFrame:
    """The table's values as long rows (``model``, keys, ``metric``, ``value``) for plotting."""
    wide = ablation_table(results, ablation)
    if wide.empty:
        return pd.DataFrame()
    metrics = [c for c in wide.columns if c != "seeds"]
    return wide.reset_index().melt(id_vars=[c for c in wide.index.names], value_vars=metrics, var_name="metric",
                                   value_name="accuracy").dropna(subset=["accuracy"])


def plot_ablation(results: pd.DataFrame, ablation: Ablation) -> plt.Figure | None:
    """The section's figure (None: no runs): its paper figure (`Ablation.figure`), or accuracy against the
    ablation's x, one panel per metric, one colour per `Ablation.hue`. Every column and value is shown by its
    display name (`partrobust.report.style.label`)."""
    if ablation.figure is not None:
        return draw(ablation.figure, results)
    data = long_values(results, ablation)
    if data.empty or ablation.x not in data:
        return None
    x, hue = ablation.x, (ablation.hue if ablation.hue in data else None)
    palette = {model_label(k): v for k, v in MODEL_COLORS.items()} if hue == "model" else None
    numeric = pd.api.types.is_numeric_dtype(data[x]) and data[x].nunique() > 1
    shown = {column: label(column) for column in dict.fromkeys(c for c in ("model", x, hue) if c is not None)}
    data = data.assign(**{c: data[c].map(label) for c in shown if c != x or not numeric}).rename(columns=shown)
    x_shown, hue_shown = shown[x], shown.get(hue) if hue is not None else None
    known = [model_label(m) for m in MODEL_COLORS]
    order = None if hue != "model" else sorted(set(data[hue_shown]), key=lambda m: (known.index(m) if m in known else len(known), m))
    if x == "model":  # one evaluation of each model under several attacks: attacks side by side
        grid = sns.catplot(data=data, x="metric", y="accuracy", hue=x_shown, hue_order=order, kind="bar", palette=palette,
                           height=3.2, aspect=2.2)
        grid.set_axis_labels("attack", "accuracy (%)")
        grid.tick_params(axis="x", rotation=20)
        grid.figure.suptitle(f"{ablation.title} ({ablation.paper})", y=1.04)
        return grid.figure
    if numeric:
        grid = sns.relplot(data=data, x=x_shown, y="accuracy", hue=hue_shown, hue_order=order, col="metric", kind="line",
                           marker="o", palette=palette, height=3.0, aspect=1.1, facet_kws={"sharey": False})
        if x in ("pool_size",):
            ticks = sorted(data[x_shown].unique())
            grid.set(xscale="log", xticks=ticks, xticklabels=[f"{int(v)}" for v in ticks])
    else:
        grid = sns.catplot(data=data, x=x_shown, y="accuracy", hue=hue_shown, hue_order=order, col="metric", kind="point",
                           palette=palette, height=3.0, aspect=1.1, sharey=False, linestyle="none",
                           dodge=0.3 if hue_shown is not None and data[hue_shown].nunique() > 1 else False)
        grid.tick_params(axis="x", rotation=20)
    grid.set_titles("{col_name}")
    grid.set_axis_labels(x_shown, "accuracy (%)")
    grid.figure.suptitle(f"{ablation.title} ({ablation.paper})", y=1.04)
    return grid.figure


# --------------------------------------------------------------------------- verdicts


def _cell(table: pd.DataFrame, metric: str, **where) -> float:
    rows = table[table["metric"] == metric]
    for key, value in where.items():
        column = rows[key]
        rows = rows[np.isclose(pd.to_numeric(column, errors="coerce"), value)] if isinstance(value, float) else rows[column == value]
    return float(rows["value"].mean()) if not rows.empty else np.nan


def _fmt(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:+.1f}"


def _part_models(table: pd.DataFrame) -> list[str]:
    return sorted(m for m in table["model"].dropna().unique() if m != "resnet")


def _at_smallest(results: pd.DataFrame) -> pd.DataFrame:
    return at_smallest_eps(section_settings(results))


def _holds(ok: bool | None) -> str:
    return "not decided (missing runs)" if ok is None else ("holds" if ok else "does not hold")


def verdict_part_labels(results: pd.DataFrame) -> str:
    table = _at_smallest(results)
    adv, bits, ok = _adv_metric(table), [], []
    for model in _part_models(table):
        d_clean = _cell(table, "clean_accuracy", model=model, seg_labels="yes") - _cell(table, "clean_accuracy", model=model, seg_labels="no")
        d_adv = _cell(table, adv, model=model, seg_labels="yes") - _cell(table, adv, model=model, seg_labels="no")
        bits.append(f"{model_label(model)}: {_fmt(d_clean)} clean, {_fmt(d_adv)} adversarial with part labels")
        ok += [d_clean > 0 and d_adv > 0] if not (np.isnan(d_clean) or np.isnan(d_adv)) else []
    decided = bool(ok) and len(ok) == len(bits)
    return (f"With vs without part labels: {'; '.join(bits)}. The paper's conclusion (most of the gain comes from the labels) "
            f"{_holds(all(ok) if decided else None)}.")


def _spearman(table: pd.DataFrame, metric: str, model: str, column: str) -> float:
    from scipy.stats import spearmanr

    rows = table[(table["metric"] == metric) & (table["model"] == model)].dropna(subset=[column])
    if rows[column].nunique() < 3:
        return np.nan
    return float(spearmanr(pd.to_numeric(rows[column]), rows["value"]).statistic)


def verdict_c_seg(results: pd.DataFrame) -> str:
    table = _at_smallest(results)
    adv, bits, trend = _adv_metric(table), [], []
    for model in _part_models(table):
        r_clean, r_adv = _spearman(table, "clean_accuracy", model, "c_seg"), _spearman(table, adv, model, "c_seg")
        bits.append(f"{model_label(model)}: Spearman rho of c_seg with clean {r_clean:.2f}, with adversarial {r_adv:.2f}")
        if not (np.isnan(r_clean) or np.isnan(r_adv)):
            trend.append(r_clean > 0 and r_adv < 0)
    return (f"{'; '.join(bits)}. The paper found it inconclusive, with a vague trend of larger c_seg raising clean and "
            f"lowering adversarial accuracy; that trend {_holds(all(trend) if trend else None)} here.")


def _best(table: pd.DataFrame, adv: str, **where) -> tuple[float, float]:
    """(clean, adversarial) of the setting with the best adversarial accuracy among rows matching `where`."""
    rows = table
    for key, value in where.items():
        rows = rows[rows[key] == value]
    advs = rows[rows["metric"] == adv]
    if advs.empty:
        return np.nan, np.nan
    best = advs.loc[advs["value"].idxmax(), "setting"]
    return _cell(rows[rows["setting"] == best], "clean_accuracy"), float(advs["value"].max())


def verdict_object_labels(results: pd.DataFrame) -> str:
    table = _at_smallest(results)
    adv = _adv_metric(table)
    part, obj = _best(table, adv, seg_label_level="part"), _best(table, adv, seg_label_level="object")
    ok = None if np.isnan(part[1]) or np.isnan(obj[1]) else part[0] > obj[0] and part[1] > obj[1]
    return (f"Best part-label model {part[0]:.1f} clean / {part[1]:.1f} adversarial, best object-label model {obj[0]:.1f} / "
            f"{obj[1]:.1f}: the paper's conclusion (part labels beat object labels) {_holds(ok)}.")


def verdict_label_kinds(results: pd.DataFrame) -> str:
    table = _at_smallest(results)
    adv = _adv_metric(table)
    base = _cell(table, adv, model="resnet")
    base_clean = _cell(table, "clean_accuracy", model="resnet")
    chance = not np.isnan(base_clean) and at_chance(base_clean, str(table["dataset"].iloc[0]))
    kinds = [k for k in ("segmentation", "bounding_boxes", "centroids") if (table.get("label_type") == k).any()]
    cells = {k: _best(table, adv, label_type=k) for k in kinds}
    ok = None if np.isnan(base) or not cells or chance else all(v[1] > base for v in cells.values())
    listing = ", ".join(f"{k} {v[0]:.1f} / {v[1]:.1f}" for k, v in cells.items())
    flag = (f" The ResNet's clean accuracy {base_clean:.1f} % is at chance level ({chance_level(str(table['dataset'].iloc[0])):.0f} %): "
            "no evidence either way." if chance else "")
    return (f"Clean / adversarial by label kind: {listing}; ResNet adversarial {base:.1f}.{flag} The paper's conclusion (every kind "
            f"of part label beats the ResNet) {'not decided (baseline at chance level)' if chance else _holds(ok)}.")


def _difference(table: pd.DataFrame, metric: str, key: str, a, b) -> float:
    return _cell(table, metric, **{key: a}) - _cell(table, metric, **{key: b})


def verdict_background(results: pd.DataFrame) -> str:
    table = _at_smallest(results)
    adv = _adv_metric(table)
    d_clean = _difference(table, "clean_accuracy", "background", "without", "with")
    d_adv = _difference(table, adv, "background", "without", "with")
    ok = None if np.isnan(d_clean) or np.isnan(d_adv) else max(abs(d_clean), abs(d_adv)) <= 2.0
    return (f"Dropping the background channel changes clean accuracy by {_fmt(d_clean)} and adversarial by {_fmt(d_adv)} points: "
            f"the paper's conclusion (little effect, within 2 points) {_holds(ok)}.")


def _spread(table: pd.DataFrame, metric: str, **where) -> float:
    rows = table[table["metric"] == metric]
    for key, value in where.items():
        rows = rows[rows[key] == value]
    return float(rows["value"].max() - rows["value"].min()) if len(rows) > 1 else np.nan


def verdict_pool_size(results: pd.DataFrame) -> str:
    table = _at_smallest(results)
    table = table[table["model"] == "downsampled"]
    adv = _adv_metric(table)
    clean, robust = _spread(table, "clean_accuracy"), _spread(table, adv)
    ok = None if np.isnan(clean) or np.isnan(robust) else max(clean, robust) <= 2.0
    return (f"Across pooled sizes clean accuracy spans {clean:.1f} and adversarial {robust:.1f} points: the paper's conclusion "
            f"(insensitive to the size, spans under 1.3 points; we allow 2) {_holds(ok)}.")


def verdict_heads(results: pd.DataFrame) -> str:
    table = _at_smallest(results)
    adv = _adv_metric(table)
    best = {m: _best(table, adv, model=m) for m in ("downsampled", "bbox", "two_headed", "pixel") if (table["model"] == m).any()}
    listing = ", ".join(f"{model_label(m)} {v[0]:.1f} / {v[1]:.1f}" for m, v in best.items())
    others = [best[m][1] for m in ("downsampled", "bbox", "two_headed") if m in best]
    ok = None if "pixel" not in best or not others else best["pixel"][1] < min(others)
    return (f"Best clean / adversarial per head: {listing}. The paper's conclusion (the Pixel model, which ignores where parts "
            f"are, is the weakest) {_holds(ok)}.")


def verdict_concat_input(results: pd.DataFrame) -> str:
    table = _at_smallest(results)
    adv = _adv_metric(table)
    plain, concat = _best(table, adv, concat_input="no"), _best(table, adv, concat_input="yes")
    ok = None if np.isnan(plain[1]) or np.isnan(concat[1]) else concat[1] <= plain[1]
    return (f"Best with the image concatenated {concat[0]:.1f} / {concat[1]:.1f}, without {plain[0]:.1f} / {plain[1]:.1f} "
            f"(clean / adversarial): the paper's conclusion (concatenating the image does not help) {_holds(ok)}.")


def verdict_label_fraction(results: pd.DataFrame) -> str:
    table = _at_smallest(results)
    adv, bits, ok = _adv_metric(table), [], []
    base = _cell(table, adv, model="resnet")
    for model in _part_models(table):
        rows = table[(table["model"] == model) & (table["metric"] == "clean_accuracy")].dropna(subset=["label_fraction"])
        if rows["label_fraction"].nunique() < 2:
            continue
        rows = rows.sort_values("label_fraction")
        drop = float(rows["value"].iloc[-1] - rows["value"].iloc[0])
        advs = table[(table["model"] == model) & (table["metric"] == adv)]
        bits.append(f"{model_label(model)}: clean {_fmt(drop)} points from the fewest to all labels, adversarial "
                    f"{advs['value'].min():.1f}-{advs['value'].max():.1f}")
        ok.append(drop > 0 and (np.isnan(base) or advs["value"].min() > base))
    return (f"{'; '.join(bits) or 'no label-fraction runs'} (ResNet adversarial {base:.1f}). The paper's conclusion (clean accuracy "
            f"falls with fewer labels, every part model stays above the ResNet) {_holds(all(ok) if ok else None)}.")


def verdict_eps_sweep(results: pd.DataFrame) -> str:
    table = section_settings(results)
    adv = _adv_metric(table)
    rows = table[table["metric"] == adv].dropna(subset=["eps_255"])
    if rows.empty:
        return "No evaluations at several eps: " + _holds(None) + "."
    top = rows[rows["eps_255"] == rows["eps_255"].max()]
    worst = float(top["value"].max())
    ok = worst <= 5.0
    return (f"At eps {rows['eps_255'].max():g}/255 the highest {metric_label(adv)} accuracy is {worst:.1f} %: the paper's "
            f"conclusion (accuracy falls to about 0, so the gradients are useful) {_holds(ok)}.")


def verdict_seg_attack(results: pd.DataFrame) -> str:
    table = section_settings(results)
    rows = at_smallest_eps(table[table["metric"] == "pgd_accuracy"]).copy()
    rows["c_seg_attack"] = pd.to_numeric(rows["c_seg_attack"], errors="coerce")
    bits, ok = [], []
    for model in _part_models(rows):
        own = rows[rows["model"] == model]
        if own["c_seg_attack"].nunique() < 2:
            continue
        plain = float(own.loc[own["c_seg_attack"] == 0, "value"].mean())
        best_with = float(own.loc[own["c_seg_attack"] > 0, "value"].min())
        bits.append(f"{model_label(model)}: PGD {plain:.1f} %, with the segmentation loss at best {best_with:.1f} %")
        ok.append(best_with >= plain - 1.0)
    return (f"{'; '.join(bits) or 'no runs'}. The paper's conclusion (adding the segmentation loss does not make a stronger "
            f"attack) {_holds(all(ok) if ok else None)}.")


def verdict_two_stage(results: pd.DataFrame) -> str:
    table = _at_smallest(results)
    bits, ok = [], []
    for model in _part_models(table):
        own = table[table["model"] == model]
        stages = own[own["metric"].str.startswith("two_stage_") & own["metric"].str.endswith("_accuracy")
                     & ~own["metric"].str.contains("pixel")]
        aa = _cell(own, "autoattack_accuracy")
        if stages.empty or np.isnan(aa):
            continue
        best = stages.loc[stages["value"].idxmin()]
        bits.append(f"{model_label(model)}: strongest two-stage attack {metric_label(best['metric'])} "
                    f"{best['value']:.1f} %, AutoAttack {aa:.1f} %")
        ok.append(best["value"] >= aa - 1.0)
    return (f"{'; '.join(bits) or 'no runs'}. The paper's conclusion (no two-stage attack beats AutoAttack) "
            f"{_holds(all(ok) if ok else None)}.")


def verdict_rays(results: pd.DataFrame) -> str:
    table = _at_smallest(results)
    bits, ok = [], []
    for model in _part_models(table):
        own = table[table["model"] == model]
        rays = _cell(own, "rays_accuracy")
        white = np.nanmin([_cell(own, "pgd_accuracy"), _cell(own, "autoattack_accuracy")])
        if np.isnan(rays):
            continue
        bits.append(f"{model_label(model)}: RayS {rays:.1f} %, best white-box attack {white:.1f} %")
        ok.append(rays >= white - 1.0)
    return (f"{'; '.join(bits) or 'no runs'}. The paper's conclusion (the black-box RayS is weaker than the gradient "
            f"attacks: no gradient obfuscation) {_holds(all(ok) if ok else None)}.")


# --------------------------------------------------------------------------- the ablations

ABLATIONS: dict[str, Ablation] = {a.name: a for a in [
    Ablation("part_labels", "Part models without part labels", "Table 5",
             "Is it the part labels or the architecture? The part models are trained again with c_seg = 0: the same "
             "networks, no segmentation loss, so the segmenter's 'parts' are whatever helps classification.",
             "most of the gain over the ResNet comes from the part labels (8-9 clean points), the architecture gives 2-4",
             ("seg_labels",), "seg_labels", verdict_part_labels, tables=(5,)),
    Ablation("c_seg", "The weight of the segmentation loss", "Fig. 9",
             "c_seg weighs the segmentation loss against the (adversarial) classification loss in Eq. 5.",
             "inconclusive; a vague trend: larger c_seg, higher clean and lower adversarial accuracy",
             ("c_seg",), "c_seg", verdict_c_seg, figure="fig09_cseg"),
    Ablation("object_labels", "Object masks instead of part masks", "Table 15",
             "Are part labels needed, or would cheaper object masks do? The Downsampled model is trained on masks where "
             "every part of an object has the object's label.",
             "object labels improve on the ResNet but part labels do better, clean and adversarial",
             ("seg_label_level", "c_seg"), "c_seg", verdict_object_labels, tables=(15,), hue="seg_label_level"),
    Ablation("label_kinds", "Cheaper part labels: boxes and centroids", "Table 14",
             "Part bounding boxes (Downsampled model, ordinary segmentation loss on box masks) and part centroids "
             "(Bounding-Box model, centroid loss of Eq. 12-13) instead of part masks.",
             "boxes nearly match masks; centroids a little lower; every kind beats the ResNet",
             ("label_type",), "label_type", verdict_label_kinds, tables=(14,)),
    Ablation("background", "Background channel dropped", "Table 16 (adversarial side; notebook 04 has its benchmarks)",
             "Does the Downsampled head need the background channel of the predicted masks?",
             "little effect: 0.8 points less clean accuracy, the same adversarial accuracy",
             ("background",), "background", verdict_background),
    Ablation("pool_size", "The Downsampled model's pooled size", "Table 17",
             "The predicted masks are average-pooled to P x P before the tiny classifier.",
             "insensitive: clean and adversarial accuracy span under 1.3 points from 1x1 to 128x128",
             ("pool_size",), "pool_size", verdict_pool_size, tables=(17,)),
    Ablation("heads", "Two-Headed and Pixel part models", "Table 18",
             "Two other heads: Two-Headed (a second decoder head for classes) and Pixel (class votes counted over pixels, "
             "no spatial information).",
             "Two-Headed is on par with Downsampled; Pixel is 1-2 points below the others",
             ("c_seg",), "c_seg", verdict_heads, tables=(18,)),
    Ablation("concat_input", "The image concatenated to the masks", "Table 19",
             "The Downsampled head also sees the image, resized to the mask size.",
             "slightly worse than the plain Downsampled model",
             ("concat_input", "c_seg"), "c_seg", verdict_concat_input, tables=(19,), hue="concat_input"),
    Ablation("label_fraction", "Fewer part labels", "Fig. 10",
             "Only a fraction of the training images keep their part masks; the rest train the classifier only.",
             "clean accuracy falls with fewer labels, adversarial accuracy stays, every part model stays above the ResNet",
             ("label_fraction",), "label_fraction", verdict_label_fraction, figure="fig10_label_fraction"),
    Ablation("eps_sweep", "Larger perturbations", "Table 11",
             "PGD and AutoAttack at 8, 16, 24, 32 /255 on the same models: a model whose gradients are useful to the "
             "attacker must fall to about 0 at large eps.",
             "accuracy falls to about 0-2 % at 32/255",
             ("eps_255",), "eps_255", verdict_eps_sweep, metrics=("autoattack_accuracy", "pgd_accuracy"), tables=(11,),
             figure="table11_eps"),
    Ablation("seg_attack", "PGD that also attacks the segmenter", "Table 12",
             "PGD on (1 - c) L_cls + c L_seg: does fooling the segmenter too make a stronger attack?",
             "no: the larger c, the weaker the attack; the classification loss alone is the strongest",
             ("c_seg_attack",), "c_seg_attack", verdict_seg_attack, metrics=("pgd_accuracy",), tables=(12,)),
    Ablation("two_stage", "Two-stage attacks", "Table 13",
             "Stage 1 fools the segmenter (untargeted, or towards another class's mask chosen at random, by confidence, "
             "or by the head's score); stage 2 runs PGD on the classification loss from there.",
             "about as strong as PGD, sometimes 1 point stronger; none beats AutoAttack",
             (), "model", verdict_two_stage,
             metrics=("pgd_accuracy", "autoattack_accuracy", *(f"two_stage_{s}_accuracy" for s in STRATEGIES)),
             tables=(13,)),
    Ablation("rays", "A hard-label black-box attack", "Appendix E.4",
             "RayS needs only the predicted label: if it beat the gradient attacks, the gradients would be masked.",
             "RayS leaves 71.0 % (10,000 queries) where PGD leaves 45.4 % and AutoAttack 39.4 % (Downsampled, Part-ImageNet)",
             (), "model", verdict_rays, metrics=("pgd_accuracy", "autoattack_accuracy", "rays_accuracy")),
]}
"""Section name -> ablation, in the order of notebook 03."""


def verdict(results: pd.DataFrame, ablation: Ablation) -> str:
    """One sentence: our numbers and whether the paper's conclusion holds in them."""
    if results.empty:
        return "No finished runs in this section."
    return ablation.verdict(results)


def masking_table(results: pd.DataFrame) -> pd.DataFrame:
    """Every gradient-masking check of the runs: run, check, measured value (%), passed, detail."""
    rows = results[results["metric"].astype(str).str.startswith("gradient_masking_")]
    if rows.empty:
        return pd.DataFrame(columns=["run_id", "check", "value", "passed", "detail"])
    note = rows["note"].fillna("").astype(str)
    return pd.DataFrame({"run_id": rows["run_id"], "check": rows["metric"].str.removeprefix("gradient_masking_"),
                         "value": rows["value"].round(1), "passed": note.str.startswith("passed"),
                         "detail": note.str.split(": ", n=1).str[-1]}).reset_index(drop=True)


def section_results(results: pd.DataFrame, run_ids: Sequence[str]) -> pd.DataFrame:
    """The rows of the given runs, and of their evaluations at other eps or attack weights (``<id>@...``)."""
    return results[trained_run_ids(results).isin(set(run_ids))]


def chosen_sections(plan_sections: Sequence[str], sections: Sequence[str] | None, source: str = "params file") -> list[str]:
    """The ablations to run and show: `sections` (None: all) among the params file's `plan_sections`, in notebook order."""
    missing = sorted(set(sections or ()) - set(plan_sections))
    if missing:
        raise ParameterError(f"{source} has no sweep blocks for section(s) {missing}; its sections: {list(plan_sections)}")
    return [s for s in ABLATIONS if s in plan_sections and (sections is None or s in sections)]


def show_ablation(name: str, results: pd.DataFrame, section_runs: Mapping[str, Sequence[str]], figures: Path,
                  source: str = "the params file") -> None:
    """Notebook 03's section `name`: what it tests, our table and figure (saved as ``03_<name>.png``), the
    paper's tables next to ours (runs on the paper's datasets only) and the verdict. `section_runs`: the run
    ids of each chosen section (`partrobust.runs.sweep.section_run_ids`); a section not in it is skipped
    with a line saying so."""
    from IPython.display import Markdown, display

    ablation = ABLATIONS[name]
    if name not in section_runs:
        print(f"section {name} not shown: not selected (sections parameter) or no sweep block of {source} has it")
        return
    ids = list(section_runs[name])
    ours = section_results(results, ids)
    display(Markdown(f"**What it tests.** {ablation.question}  \n**The paper ({ablation.paper}).** {ablation.paper_says}."))
    print(f"{trained_run_ids(ours).nunique()} of {len(ids)} runs finished")
    if ours.empty:
        return
    display(ablation_table(ours, ablation))
    fig = plot_ablation(ours, ablation)
    if fig is not None:
        save_figure(fig, figures / f"03_{name}.png")
        plt.show()
    if ablation.tables and is_comparable(ours):
        for number in ablation.tables:
            display(Markdown(f"**Paper Table {number}, side by side**"))
            display(side_by_side(ours, number))
    elif ablation.tables:
        print(f"results on {sorted(ours['dataset'].unique())}: not the paper's dataset, so not compared with "
              f"{ablation.paper} cell by cell (built-in numbers are not comparable)")
    display(Markdown(f"**Verdict.** {verdict(ours, ablation)}"))


def verdict_table(results: pd.DataFrame, section_runs: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """One row per section of `section_runs` (name -> run ids): the paper's table, what the paper concluded
    and the verdict on these runs."""
    rows = []
    for name, ids in section_runs.items():
        ablation = ABLATIONS[name]
        ours = section_results(results, ids)
        rows.append({"ablation": ablation.title, "paper": ablation.paper, "the paper found": ablation.paper_says,
                     "these runs": verdict(ours, ablation)})
    return pd.DataFrame(rows)
