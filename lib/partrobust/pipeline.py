"""Runs numbered notebooks with papermill from one parameter file.

    python -m partrobust.pipeline params/smoke.yaml            # every notebook listed in the file
    python -m partrobust.pipeline params/smoke.yaml --only 01  # just notebook 01

Parameter file layout::

    common:            # merged into every notebook's parameters
      run_dir: runs/smoke
    notebooks:         # notebook stem -> its parameters (override `common`)
      00_data_prep: {...}
      01_pgd_training: {...}

Executed notebooks are written to ``<run_dir>/<stem>.ipynb``. All parameter names are
checked against each notebook's `parameters` cell before anything runs.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from .config import ParameterError
from .utils import find_repo_root

NOTEBOOK_DIR = "notebooks"


def load_plan(params_file: str | Path, repo: Path) -> tuple[Path, dict[str, dict[str, Any]]]:
    """Reads a parameter file; returns (run_dir, {notebook stem: parameters})."""
    path = Path(params_file)
    if not path.is_file():
        raise FileNotFoundError(f"parameter file {path} does not exist")
    spec = yaml.safe_load(path.read_text()) or {}
    unknown = set(spec) - {"common", "notebooks"}
    if unknown:
        raise ParameterError(f"{path}: unknown top-level keys {sorted(unknown)}; expected 'common' and 'notebooks'")
    common = spec.get("common") or {}
    notebooks = spec.get("notebooks") or {}
    if not notebooks:
        raise ParameterError(f"{path}: no notebooks listed under 'notebooks'")
    if "run_dir" not in common:
        raise ParameterError(f"{path}: 'common' must set run_dir (where executed notebooks and results go)")
    plan = {}
    for stem, values in notebooks.items():
        if not (repo / NOTEBOOK_DIR / f"{stem}.ipynb").is_file():
            raise ParameterError(f"{path}: notebook {NOTEBOOK_DIR}/{stem}.ipynb does not exist")
        plan[stem] = {**common, **(values or {})}
    return Path(common["run_dir"]), plan


def check_parameters(repo: Path, plan: dict[str, dict[str, Any]], source: str) -> None:
    """Every parameter must exist in the notebook's `parameters` cell (papermill only warns)."""
    import papermill as pm

    for stem, values in plan.items():
        known = set(pm.inspect_notebook(str(repo / NOTEBOOK_DIR / f"{stem}.ipynb")))
        unknown = sorted(set(values) - known)
        if unknown:
            raise ParameterError(f"{source}: {stem} has no parameter(s) {unknown}; its parameters: {sorted(known)}")


def run(params_file: str | Path, only: list[str] | None = None, repo: Path | None = None, progress: bool = True) -> list[Path]:
    """Executes the notebooks of a parameter file in order; returns the executed notebooks' paths."""
    import papermill as pm

    repo = repo or find_repo_root()
    run_dir, plan = load_plan(params_file, repo)
    if only:
        plan = {stem: p for stem, p in plan.items() if any(stem.startswith(o) for o in only)}
        if not plan:
            raise ParameterError(f"--only {only} matches no notebook in {params_file}")
    check_parameters(repo, plan, str(params_file))
    out_dir = run_dir if run_dir.is_absolute() else repo / run_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = []
    for stem, values in plan.items():
        output = out_dir / f"{stem}.ipynb"
        t0 = time.time()
        print(f"[partrobust] {stem} -> {output}", flush=True)
        pm.execute_notebook(
            str(repo / NOTEBOOK_DIR / f"{stem}.ipynb"),
            str(output),
            parameters=values,
            kernel_name="python3",
            cwd=str(repo),
            progress_bar=progress,
        )
        print(f"[partrobust] {stem} done in {time.time() - t0:.0f} s", flush=True)
        outputs.append(output)
    return outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("params_file", help="YAML file under params/")
    parser.add_argument("--only", nargs="*", help="notebook stems (or prefixes such as 01) to run")
    parser.add_argument("--no-progress", action="store_true", help="hide papermill's progress bar")
    args = parser.parse_args(argv)
    try:
        run(args.params_file, args.only, progress=not args.no_progress)
    except (ParameterError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
