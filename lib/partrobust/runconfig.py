"""``python -m partrobust.runconfig``: print the table of run-config keys (`partrobust.runs.runconfig`).

A command-line entry point kept at the package's top; the code lives in `partrobust.runs.runconfig`.
"""
import sys

from partrobust.runs.runconfig import main

if __name__ == "__main__":
    sys.exit(main())
