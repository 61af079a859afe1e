"""A plain clone is self-contained: nothing of the project reads outside the repository.

The repository's tracked files are copied into an empty folder (nothing beside them, no ``../shared``), and
``python -m partrobust.figures`` run there must regenerate exactly the committed figures and report.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from partrobust.report.readme import DOC_PAGES
from test_figures import digests

REPO = Path(__file__).resolve().parents[1]
OUTSIDE = ("../shared", "shared/spec", "/work/")


def tracked_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [name for name in listed.split("\0") if name and (REPO / name).is_file()]


def test_no_tracked_file_points_outside_the_repository():
    offenders = []
    for name in tracked_files():
        if name.endswith((".png", ".pdf", ".npz", ".pt")):
            continue
        text = (REPO / name).read_text(errors="ignore")
        offenders += [f"{name}: {marker}" for marker in OUTSIDE if marker in text and name != "tests/test_plain_clone.py"]
    assert not offenders, offenders


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_plain_clone_regenerates_every_committed_figure(tmp_path):
    clone = tmp_path / "alone" / "partrobust"
    for name in tracked_files():
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, clone / name)
    assert sorted(p.name for p in clone.parent.iterdir()) == ["partrobust"]
    env = {**os.environ, "PYTHONPATH": str(clone / "lib"), "OMP_NUM_THREADS": "1"}
    made = subprocess.run([sys.executable, "-m", "partrobust.figures", "--output", str(tmp_path / "out")], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr[-3000:]
    produced, committed = digests(tmp_path / "out"), digests(REPO / "figures")
    assert {"REPORT.md", "paper/tables/table01.md"} <= set(produced)
    stale = sorted(name for name, digest in produced.items() if committed.get(name) != digest)
    assert not stale, f"a plain clone's `make figures` differs from the committed figures: {stale}"


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
