"""``python -m partrobust.figures``: redraw the paper's tables, figures and REPORT.md (`partrobust.runs.figures_command`).

A command-line entry point kept at the package's top; the code lives in `partrobust.runs.figures_command`.
"""
import sys

from partrobust.runs.figures_command import main

if __name__ == "__main__":
    sys.exit(main())
