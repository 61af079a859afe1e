"""The project's notebooks as steps: their parameters checked before anything runs, failures in one readable message.

Each notebook's parameters cell is mirrored by a `Section` (`NOTEBOOK_PARAMS`), so a params file's
values for every notebook are validated (names, types, ranges) before the first notebook starts.
`execute` runs a notebook with papermill in a kernel of the interpreter that calls it
(`python_kernel`); a failure raises `NotebookFailed` naming the notebook, the cell, the line that
raised, the error, the executed copy to open, and the command to rerun.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

from ..core.config import ParameterError, Section, validate
from ..core.fileio import atomic_write_text
from ..core.paths import refuse_source_location
from .notebook_params import NOTEBOOK_PARAMS

NOTEBOOK_DIR = "notebooks"


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names the cell, line, error, executed copy and rerun command."""

    def __init__(self, stem: str, cell: int | None, line: str, error: str, output: Path, rerun: str | None = None) -> None:
        self.stem, self.cell, self.line, self.error, self.output, self.rerun = stem, cell, line, error, output, rerun
        where = f"cell [{cell}]" if cell is not None else "a cell"
        text = f"{stem} failed in {where}" + (f", at: {line}" if line else "") + f"\n  {error}\n  executed notebook: {output}"
        if rerun:
            text += f"\n  rerun: {rerun}"
        super().__init__(text)


KERNELS_ENV = "PARTROBUST_KERNELS_DIR"
"""Environment variable: the private Jupyter data folder for `python_kernel` (default: a folder under the temp dir)."""


def python_kernel() -> str:
    """The name of a Jupyter kernel that runs this interpreter (``sys.executable``), registered here.

    Its kernel spec is written to a private Jupyter data folder (``$PARTROBUST_KERNELS_DIR``, or
    ``<tempdir>/partrobust-jupyter-<user>``) that is put first on ``JUPYTER_PATH`` in ``os.environ``
    (child processes inherit it), under a name derived from ``sys.executable``. So a notebook always
    runs in the interpreter, virtual environment and package that started it, whatever kernel specs
    named ``python3`` are installed elsewhere. Idempotent; safe when several processes call it at once.
    The kernel logs only its errors: ipykernel's own start-up warning about a local TCP connection would
    otherwise be printed by every batch run (warnings of the notebook's code still reach its outputs).
    """
    executable = sys.executable
    name = "partrobust-" + hashlib.sha256(executable.encode()).hexdigest()[:12]
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    root = Path(os.environ.get(KERNELS_ENV) or Path(tempfile.gettempdir()) / f"partrobust-jupyter-{user}")
    spec = {"argv": [executable, "-m", "ipykernel_launcher", "-f", "{connection_file}", "--IPKernelApp.log_level=ERROR"],
            "display_name": f"Python ({executable})", "language": "python", "metadata": {"debugger": True}}
    path, text = root / "kernels" / name / "kernel.json", json.dumps(spec, indent=1) + "\n"
    if not path.is_file() or path.read_text() != text:  # written once per interpreter, atomically (concurrent callers)
        atomic_write_text(path, text)
    paths = [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p and p != str(root)]
    os.environ["JUPYTER_PATH"] = os.pathsep.join([str(root), *paths])
    return name


def notebook_path(repo: Path, stem: str) -> Path:
    path = repo / NOTEBOOK_DIR / f"{stem}.ipynb"
    if not path.is_file():
        raise ParameterError(f"notebook {NOTEBOOK_DIR}/{stem}.ipynb does not exist")
    return path


def params_class(stem: str) -> type[Section]:
    """The `Section` mirroring notebook `stem`'s parameters cell."""
    if stem not in NOTEBOOK_PARAMS:
        raise ParameterError(f"notebook {stem} has no registered parameters class; known: {sorted(NOTEBOOK_PARAMS)}")
    return NOTEBOOK_PARAMS[stem]


def notebook_defaults(repo: Path, stem: str) -> dict[str, Any]:
    """The default values of the notebook's parameters cell (literals only)."""
    import papermill as pm

    defaults = {}
    for name, info in pm.inspect_notebook(str(notebook_path(repo, stem))).items():
        try:
            defaults[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            raise ParameterError(f"{NOTEBOOK_DIR}/{stem}.ipynb: parameter {name} = {info['default']} is not a literal") from None
    return defaults


def check_parameters(repo: Path, stem: str, values: Mapping[str, Any], where: str,
                     injected: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validates `values` for notebook `stem` as it will see them (its defaults overridden by them);
    returns them plus those of `injected` that the notebook declares and `values` does not set."""
    defaults = notebook_defaults(repo, stem)
    values = {**{k: v for k, v in (injected or {}).items() if k in defaults}, **values}
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        raise ParameterError(f"{where}: {stem} has no parameter(s) {unknown}; its parameters: {sorted(defaults)}")
    validate(params_class(stem), {**defaults, **values}, where=f"{where}: {stem} parameters")
    return dict(values)


def _failure(err: Any) -> tuple[str, str]:
    """(the source line that raised in the cell, the last line of the error) from a papermill error."""
    text = _ANSI.sub("", "\n".join(getattr(err, "traceback", None) or []))
    marker = re.search(r"^-+> *\d+ (.*)$", text, flags=re.MULTILINE)
    return (marker.group(1).strip() if marker else ""), f"{err.ename}: {err.evalue}"


def execute(repo: Path, stem: str, parameters: Mapping[str, Any], output: Path, stream: bool = True,
            rerun: str | None = None) -> float:
    """Executes notebook `stem` with `parameters` into `output`; returns the wall time in seconds.

    With `stream`, what the notebook's cells print (epoch lines, progress bars of training and
    attacks) goes to this process's stdout and stderr as it happens, so a terminal user follows
    the notebook's progress rather than a cell counter. The kernel runs this interpreter
    (`python_kernel`). Raises `NotebookFailed` (cell, line, error, executed copy, `rerun` command)
    if a cell raised.
    """
    import papermill as pm

    source = notebook_path(repo, stem)
    refuse_source_location(output, "executed notebook")
    output.parent.mkdir(parents=True, exist_ok=True)
    streams = {"stdout_file": sys.stdout, "stderr_file": sys.stderr} if stream else {}
    t0 = time.time()
    try:
        pm.execute_notebook(str(source), str(output), parameters=dict(parameters), kernel_name=python_kernel(), cwd=str(repo),
                            progress_bar=False, log_output=False, **streams)
    except pm.PapermillExecutionError as err:
        line, error = _failure(err)
        raise NotebookFailed(stem, err.exec_count, line, error, output, rerun) from None
    return time.time() - t0
