"""A plain clone is self-contained: nothing of the project reads outside the repository.

No tracked file points outside the repository; the repository's tracked files copied into an empty folder
(nothing beside them, no folder of the machine it was made on) regenerate exactly the committed figures and report
(`figures_in_a_plain_clone`, run by `tests/test_figures.py`'s `made_figures` fixture); the documentation's
links resolve and name every module.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from partrobust.report.readme import DOC_PAGES
from conftest import digests

REPO = Path(__file__).resolve().parents[1]
OUTSIDE = ("/".join(("..", "sha" + "red")), "/".join(("sha" + "red", "spec")), "/" + "work" + "/")
"""Paths of the machine the project was written on (the folder of given facts beside the checkout, its spec
folder, the workspace): no tracked file may name them. Spelt in pieces so that this file does not name them."""


def tracked_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [name for name in listed.split("\0") if name and (REPO / name).is_file()]


def test_no_tracked_file_points_outside_the_repository():
    offenders = []
    for name in tracked_files():
        if name.endswith((".png", ".pdf", ".npz", ".pt")):
            continue
        text = (REPO / name).read_text(errors="ignore")
        offenders += [f"{name}: {marker}" for marker in OUTSIDE if marker in text]
    assert not offenders, offenders


def figures_in_a_plain_clone(tmp: Path) -> Path:
    """Copies the tracked files into ``tmp/alone/partrobust`` (nothing beside them), runs `python -m partrobust.figures`
    there (default inputs) into ``tmp/out`` and returns that folder. `tests/test_figures.py`'s `made_figures`
    compares it with the same command in this process and with the committed figures."""
    clone = tmp / "alone" / "partrobust"
    for name in tracked_files():
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, clone / name)
    assert sorted(p.name for p in clone.parent.iterdir()) == ["partrobust"]
    env = {**os.environ, "PYTHONPATH": str(clone / "lib"), "OMP_NUM_THREADS": "1"}
    made = subprocess.run([sys.executable, "-m", "partrobust.figures", "--output", str(tmp / "out")], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr[-3000:]
    assert {"REPORT.md", "paper/tables/table01.md"} <= set(digests(tmp / "out"))
    return tmp / "out"


def test_every_relative_link_of_the_documentation_resolves():
    """README.md and the pages it links (and figures/REPORT.md) link only to files of the repository."""
    broken = []
    for page in (*DOC_PAGES, "figures/REPORT.md"):
        for target in re.findall(r"\]\(([^)\s]+)\)", (REPO / page).read_text()):
            if target.startswith(("http://", "https://", "#", "mailto:")):
                continue
            path = (REPO / page).parent / target.split("#", 1)[0]
            if not path.exists() or REPO not in path.resolve().parents and path.resolve() != REPO:
                broken.append(f"{page}: {target}")
    assert not broken, broken


def test_lib_readme_names_every_module_of_the_package():
    """lib/README.md's layer table describes every module (a nested folder such as `sources/` counts as one entry)."""
    page, package = (REPO / "lib" / "README.md").read_text(), REPO / "lib" / "partrobust"
    unnamed = []
    for path in sorted(package.glob("*/*.py")):
        if path.name != "__init__.py" and f"`{path.name}`" not in page:
            unnamed.append(str(path.relative_to(package)))
    for folder in sorted(p for p in package.glob("*/*/") if p.is_dir() and p.name != "__pycache__" and (p / "__init__.py").is_file()):
        if f"`{folder.name}/`" not in page:
            unnamed.append(f"{folder.relative_to(package)}/")
    assert not unnamed, f"lib/README.md does not describe: {unnamed}"
