"""The repository root, and the folders no output may be written to."""
from __future__ import annotations

import os
from pathlib import Path

from .config import ParameterError


def find_repo_root(start: str | os.PathLike | None = None) -> Path:
    """The repository root (the folder holding ``pyproject.toml`` and ``notebooks/``) above `start`.

    Notebooks chdir there so that the relative paths in ``params/*.yaml`` mean the same thing
    under papermill and in JupyterLab (which starts kernels in the notebook's folder).
    """
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "notebooks").is_dir():
            return folder
    raise FileNotFoundError(f"no partrobust checkout (pyproject.toml + notebooks/) found above {here}")


SOURCE_FOLDERS = ("notebooks", "lib", "params", "tests")
"""Folders of a checkout that hold sources: no output may be written inside them."""


def refuse_source_location(path: str | os.PathLike, key: str) -> None:
    """Raises `ParameterError` when output `path` is a checkout's root or lies in one of its
    `SOURCE_FOLDERS`, so an executed notebook or a run folder never overwrites a source file."""
    target = Path(path).resolve()
    for folder in (target, *target.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "notebooks").is_dir():
            inside = target.relative_to(folder).parts
            if not inside or inside[0] in SOURCE_FOLDERS:
                where = "the repository root" if not inside else f"the source folder {inside[0]}/"
                raise ParameterError(f"{key}: {path} is {'' if not inside else 'inside '}{where}; outputs never go "
                                     "there (they could overwrite sources): use a folder under runs/")
            return


PLAIN_NAME_RULE = "must be a plain folder name (no '/', no '..', not starting with '.')"


def is_plain_name(name: object) -> bool:
    """True for a plain folder name (an experiment's or a run's): no ``/``, no ``..``, no leading ``.``."""
    return isinstance(name, str) and bool(name.strip()) and name == name.strip() and "/" not in name and "\\" not in name \
        and not name.startswith(".") and "\0" not in name


def check_plain_name(name: object, key: str) -> str:
    """`name` if it is a plain folder name (`is_plain_name`), else `ParameterError` naming `key`.

    The one check for every name that becomes a folder under the runs root (the ``--experiment``
    flag, a params file's ``experiment``, notebook 01's ``experiment`` parameter), so that no name
    can put a run outside its runs root or nest folders.
    """
    if not is_plain_name(name):
        raise ParameterError(f"{key} {PLAIN_NAME_RULE}, got {name!r}")
    return name
