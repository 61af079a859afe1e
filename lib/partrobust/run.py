"""``python -m partrobust.run``: train and evaluate one run (`partrobust.runs.run`).

A command-line entry point kept at the package's top; the code lives in `partrobust.runs.run`.
"""
import sys

from partrobust.runs.run import main

if __name__ == "__main__":
    sys.exit(main())
