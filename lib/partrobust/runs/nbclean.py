"""The git clean filter of the notebooks: what git stores of a notebook is its code and text, never its outputs.

    python -m partrobust.runs.nbclean < notebook.ipynb > clean.ipynb

`make install` configures it for this clone (``git config filter.partrobust-notebook.clean``;
``.gitattributes`` applies it to ``*.ipynb``), so a notebook opened, run and autosaved in
JupyterLab keeps its outputs on disk while git sees it unchanged. The filter drops outputs,
execution counts, the cell metadata that Jupyter front ends add (collapsed, scrolled, timings),
and every notebook metadata key but the kernel spec, which it writes as `KERNELSPEC` with
``language_info`` reduced to the language's name (Lab adds the Python version of the machine). The
JSON is written the way Jupyter writes notebooks (`nbformat.write`: sorted keys, one-space
indent, sources as lists of lines, a final newline), so a committed notebook is a fixed point of
the filter and a save from Lab cleans to the committed bytes. Standard library only: git runs it on
every changed notebook.
"""
from __future__ import annotations

import json
import sys
from typing import Any

KERNELSPEC = {"display_name": "Python 3 (partrobust)", "language": "python", "name": "python3"}
"""The kernel `make install` registers (``ipykernel install --sys-prefix --name python3``)."""

CELL_METADATA_KEPT = ("tags", "jupyter", "editable", "deletable", "slideshow")
"""Cell metadata that belongs to the notebook's content (the ``parameters`` tag above all); the rest is front-end state."""


def _lines(text: Any) -> Any:
    """A multi-line string as Jupyter stores it: a list of lines that keep their line ends."""
    return text.splitlines(True) if isinstance(text, str) else text


def clean(notebook: dict[str, Any]) -> dict[str, Any]:
    """The notebook without outputs, execution counts and front-end metadata (a new dict)."""
    cells = []
    for cell in notebook.get("cells", []):
        cell = dict(cell, source=_lines(cell.get("source", "")))
        cell["metadata"] = {k: v for k, v in cell.get("metadata", {}).items() if k in CELL_METADATA_KEPT}
        if cell.get("cell_type") == "code":
            cell.update(outputs=[], execution_count=None)
        cells.append(cell)
    language = notebook.get("metadata", {}).get("language_info", {}).get("name", "python")
    metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": language}}
    return {**notebook, "cells": cells, "metadata": metadata}


def dumps(notebook: dict[str, Any]) -> str:
    """JSON text as `nbformat.write` writes it."""
    return json.dumps(notebook, sort_keys=True, indent=1, ensure_ascii=False, separators=(",", ": ")) + "\n"


def main() -> int:
    text = sys.stdin.read()
    try:
        notebook = json.loads(text)
    except json.JSONDecodeError:  # not a notebook (a conflict or a half-written file): stored as it is
        sys.stdout.write(text)
        return 0
    sys.stdout.write(dumps(clean(notebook)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
