"""The one error path of the command-line entry points (``partrobust.run``, ``partrobust.pipeline``).

Every error a command ends with is sorted here into its exit status and its one line on stderr:

* **2, ``error: ...``**: bad input, found before any compute: a parameter (`ParameterError`), a
  missing or misplaced file or folder, a bad dataset, a checkpoint or weights file that is unsafe,
  damaged or of another configuration; the line names the key or the file;
* **3, ``busy: ...``**: another process is working on the run (`RunBusyError`);
* **1, ``failed: ...``**: anything else (the run's ``status.json`` records it).

A notebook that raised one of these errors in a cell is sorted by the error's class name, so a run
executed as notebook 01 ends with the same status as ``python -m partrobust.run``.
"""
from __future__ import annotations

import sys
import traceback

from ..core.config import ParameterError
from ..core.fileio import CorruptCheckpointError, UnsafeCheckpointError
from ..data.prepared import PreparedDatasetError
from ..train.loop import ConfigMismatchError
from .rundir import RunBusyError

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_BUSY = 0, 1, 2, 3


class InputRefused(RuntimeError):
    """A notebook refused its input with one of `INPUT_ERRORS` (its message names the key or file)."""


INPUT_ERRORS: tuple[type[BaseException], ...] = (
    ParameterError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PreparedDatasetError, ConfigMismatchError,
    UnsafeCheckpointError, CorruptCheckpointError, InputRefused)
"""Errors that mean bad input (exit 2)."""

_INPUT_NAMES = {cls.__name__ for cls in INPUT_ERRORS}


def is_input_error(error_line: str) -> bool:
    """True for a notebook's ``"ClassName: message"`` error line of one of `INPUT_ERRORS`."""
    return error_line.split(":", 1)[0].strip() in _INPUT_NAMES


def is_busy_error(error_line: str) -> bool:
    return error_line.split(":", 1)[0].strip() == RunBusyError.__name__


DESCRIBED_FAILURES = ("RunFailed", "NotebookFailed")
"""Failures whose message already says what failed and where (the run's status.json, the executed notebook):
no class name in their line and no traceback."""


def exit_status(err: BaseException) -> tuple[int, str]:
    """(exit status, the one line for stderr) of the error a command ends with."""
    if isinstance(err, RunBusyError):
        return EXIT_BUSY, f"busy: {err}"
    if isinstance(err, INPUT_ERRORS):
        return EXIT_INPUT, f"error: {err}"
    return EXIT_FAILED, f"failed: {err}" if type(err).__name__ in DESCRIBED_FAILURES else \
        f"failed: {type(err).__name__}: {err}"


def report_exit(err: BaseException) -> int:
    """Prints the error a command ends with as its one stderr line (after the traceback of an unexpected
    failure) and returns the exit status. Call it from the ``except`` block that caught `err`."""
    code, line = exit_status(err)
    if code == EXIT_FAILED and type(err).__name__ not in DESCRIBED_FAILURES:
        traceback.print_exc()
    print(line, file=sys.stderr)
    return code
