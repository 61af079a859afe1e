"""``python -m partrobust.weights``: fetch and verify the ImageNet weights (`partrobust.models.weights`).

A command-line entry point kept at the package's top; the code lives in `partrobust.models.weights`.
"""
import sys

from partrobust.models.weights import main

if __name__ == "__main__":
    sys.exit(main())
