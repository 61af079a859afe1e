"""partrobust: part-based models for adversarial robustness (Sitawarin et al., 2022).

The package is built in layers; each subpackage is one, and data flows downward only:

======== ===================================================================================
layer    what lives there
======== ===================================================================================
core     validated configs, the name -> constructor registry, safe file I/O, seeds and
         devices, process groups, metric names and the results schema (tidy rows, CSV files)
data     the prepared dataset format, datasets, loaders, joint transforms, the data scan, the
         built-in synthetic data, label variants, notebook 00's steps, and the converters of
         the real datasets (``data/sources``)
models   the networks (ResNet baseline, DeepLabv3+ part models, heads), their losses and the
         ImageNet weights they start from
attacks  PGD, TRADES' KL attack, AutoAttack, the attacks on the segmenter, RayS
train    the training loop (clean, then PGD or TRADES; resumable) and its speed switches
eval     the test-time evaluation: outcomes, the evaluator registry, the gradient-masking
         checks, the non-adversarial benchmarks (``eval/benchmarks``)
report   results -> tables, figures and claims: sweep analysis, the paper's tables joined with
         ours, statistics over seeds, notebook 03's and 04's analyses, one plotting style
runs     what executes: the run config and its identity, a run, its folder, sweeps and params
         files, the pipeline, the cluster launcher, notebook parameters and execution, the
         benchmark and figures commands
======== ===================================================================================

**The import rule** (`LAYERS`, checked by ``tests/test_layers.py``): a module may import modules of
its own layer and of the layers listed before it, never one listed after it; ``train`` and
``eval`` are siblings that do not import each other; no import goes round in a circle, and no
module imports another module of the package inside a function (no hidden imports). The
modules at the top (``partrobust.run``, ``.pipeline``, ``.figures``, ``.bench``, ``.weights``,
``.runconfig``) are the ``python -m`` entry points: one-line aliases of their ``runs`` or
``models`` module that nothing inside the package imports.
"""

__version__ = "0.1.0"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("core",),
    ("data",),
    ("models",),
    ("attacks",),
    ("train", "eval"),
    ("report",),
    ("runs",),
)
"""The layers from the bottom up; the subpackages of one entry are siblings (independent of each other)."""

ENTRY_POINTS = ("run", "pipeline", "figures", "bench", "weights", "runconfig")
"""Top-level ``python -m partrobust.<name>`` aliases, above every layer."""
