"""``python -m partrobust.pipeline``: run a params file (notebooks and sweeps) (`partrobust.runs.pipeline`).

A command-line entry point kept at the package's top; the code lives in `partrobust.runs.pipeline`.
"""
import sys

from partrobust.runs.pipeline import main

if __name__ == "__main__":
    sys.exit(main())
