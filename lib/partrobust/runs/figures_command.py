"""``python -m partrobust.figures`` (``make figures``, notebook 05): every table and figure of the paper that the results cover.

    python -m partrobust.figures                          # default inputs -> figures/paper/, figures/REPORT.md
    python -m partrobust.figures runs/part_imagenet runs/cityscapes --output figures
    python -m partrobust.figures --examples runs/X        # write examples.npz of finished runs that lack it
    python -m partrobust.figures runs/X --snapshot figures/X   # copy an experiment's results into a committed snapshot

The drawing and the report live in `partrobust.report` (`partrobust.report.regenerate`); this
command adds what needs the runs themselves (``--examples`` reloads finished runs' weights).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # a command draws into files only

from ..report.masks import EXAMPLES_FILE  # noqa: E402
from ..report.regenerate import regenerate, write_snapshot  # noqa: E402
from .run import write_examples  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="*", help="experiment folders, run folders, results CSVs or snapshots (default: see above)")
    parser.add_argument("--output", default="figures", help="output folder (default: figures)")
    parser.add_argument("--paper-tables", default=None, help="a folder of transcribed paper tables (default: the package's, lib/partrobust/report/paper_data)")
    parser.add_argument("--examples", action="store_true", help="write figures/examples.npz of the inputs' finished part-model runs that lack it")
    parser.add_argument("--snapshot", metavar="FOLDER", help="copy the (single) input experiment's results and examples to FOLDER")
    args = parser.parse_args(argv)
    try:
        if args.examples:
            for experiment in map(Path, args.inputs):
                for run_dir in sorted(p.parent for p in experiment.glob("*/run.json")):
                    if not (run_dir / "figures" / EXAMPLES_FILE).is_file():
                        written = write_examples(run_dir)
                        print(f"{run_dir}: {written or 'ResNet run, no part masks'}")
            return 0
        if args.snapshot:
            if len(args.inputs) != 1:
                parser.error("--snapshot takes exactly one experiment folder")
            print(write_snapshot(args.inputs[0], args.snapshot))
            return 0
        regenerate(args.inputs or None, args.output, args.paper_tables)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
