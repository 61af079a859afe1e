"""The README's commands work as written: each line of its ``bash`` blocks is read from the README and run.

Every command a user copies from the README is executed here, unchanged, except for what keeps the test
short and off the repository's own folders: a temporary output path or runs root, and (for the commands
that train) overrides that shrink the run to the tiny dataset. ``make`` targets are checked to exist (the
targets themselves are what CI runs or what takes an hour).
"""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import pytest
from conftest import KERNEL, REPO, TINY_RUN

from partrobust.runs.pipeline import main as pipeline_main

README = REPO / "README.md"


def readme_commands() -> list[str]:
    """Every command line of the README's ```bash blocks (comments stripped, continuation lines joined)."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #", 1)[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def commands_of(program: str) -> list[list[str]]:
    return [shlex.split(c) for c in readme_commands() if shlex.split(c)[:len(program.split())] == program.split()]


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600, **kwargs)


def test_the_readme_has_the_commands_this_test_runs():
    kinds = {" ".join(shlex.split(c)[:3]) if c.startswith("python") else shlex.split(c)[0] for c in readme_commands()}
    assert kinds <= {"make", "papermill", "python -m partrobust.pipeline", "python -m partrobust.run"}, kinds
    assert commands_of("papermill") and commands_of("python -m partrobust.pipeline") and commands_of("python -m partrobust.run")


def test_every_make_target_in_the_readme_exists():
    targets = {argv[1] for argv in commands_of("make")} | set(re.findall(r"`make ([a-z-]+)", README.read_text()))
    assert {"smoke", "test"} <= targets
    for target in sorted(targets):
        dry = run(["make", "-n", target])
        assert dry.returncode == 0, f"make {target}: {dry.stderr}"


@pytest.mark.slow
@pytest.mark.notebook
def test_the_papermill_example_passes_its_overrides_as_a_dict(tmp_path):
    """`-y` (YAML) keeps `overrides` a dict, which notebook 01 accepts; `-p` would pass a string."""
    (argv,) = commands_of("papermill")
    argv = [sys.executable, "-m", *argv]
    argv[argv.index(next(a for a in argv if a.endswith(".ipynb") and a.startswith("runs/")))] = str(tmp_path / "out.ipynb")
    prepared = run([*argv, "--prepare-only", "-k", KERNEL])
    assert prepared.returncode == 0, prepared.stderr
    cells = json.loads((tmp_path / "out.ipynb").read_text())["cells"]
    injected = next(c for c in cells if "injected-parameters" in c["metadata"].get("tags", []))
    namespace: dict = {}
    exec("".join(injected["source"]), namespace)
    assert isinstance(namespace["overrides"], dict) and namespace["overrides"]["model.name"] == "bbox"


def test_the_pipeline_examples_run(tmp_path, monkeypatch, capsys):
    """`--dry-run` runs as written (no data, no weights needed); a full pipeline command is dry-run. In this
    process (the command's own `main`), from the repository root."""
    monkeypatch.chdir(REPO)
    for argv in commands_of("python -m partrobust.pipeline"):
        argv = [*argv[3:], "--runs-root", str(tmp_path)]
        if "--dry-run" not in argv:
            argv.append("--dry-run")
        status = pipeline_main(argv)
        shown = capsys.readouterr()
        assert status == 0, f"{shlex.join(argv)}:\n{shown.out}\n{shown.err}"
        assert "run(s) under" in shown.out


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_run_example_trains_and_evaluates(tmp_path, tiny_dataset):
    (argv,) = commands_of("python -m partrobust.run")
    tiny = {f"{section}.{key}": value for section, values in TINY_RUN.items() if isinstance(values, dict)
            for key, value in values.items() if f"{section}.{key}" != "model.name"}
    tiny |= {"data.root": tiny_dataset, "eval.masking_checks": False, "progress": False}
    shrink = [f"--set={key}={str(value).lower() if isinstance(value, bool) else value}" for key, value in tiny.items()]
    done = run([sys.executable, *argv[1:], *shrink, "--runs-root", str(tmp_path)])
    assert done.returncode == 0, done.stderr[-3000:]
    (results,) = tmp_path.glob("*/bbox-trades-*/results.csv")
    assert "clean_accuracy" in results.read_text()
