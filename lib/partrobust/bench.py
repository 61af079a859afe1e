"""``python -m partrobust.bench``: how fast this machine trains and attacks (`partrobust.runs.bench`).

A command-line entry point kept at the package's top; the code lives in `partrobust.runs.bench`.
"""
import sys

from partrobust.runs.bench import main

if __name__ == "__main__":
    sys.exit(main())
