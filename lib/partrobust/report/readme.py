"""Keeps generated blocks of README.md equal to the files they come from (numbers are never typed by hand).

    python -m partrobust.report.readme figures/builtin_study/table.md builtin-study-table

replaces the text between ``<!-- builtin-study-table:start -->`` and ``<!-- builtin-study-table:end -->``
in README.md with the file's content; a test checks that they agree.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.fileio import atomic_write_text
from ..core.paths import find_repo_root


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->\n", f"<!-- {name}:end -->"


def sync_block(readme: str | Path, name: str, source: str | Path) -> bool:
    """Puts `source`'s text between the `name` markers of `readme`; returns whether the file changed."""
    readme, start, end = Path(readme), *markers(name)
    text = readme.read_text()
    if start not in text or end not in text:
        raise ValueError(f"{readme} has no {start.strip()} ... {end} block")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    new = f"{head}{start}{Path(source).read_text().strip()}\n{end}{tail}"
    if new != text:
        atomic_write_text(readme, new)
    return new != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="file whose content goes into the block")
    parser.add_argument("name", help="block name (the markers' name)")
    parser.add_argument("--readme", default=None, help="default: the repository's README.md")
    args = parser.parse_args(argv)
    readme = Path(args.readme) if args.readme else find_repo_root() / "README.md"
    try:
        changed = sync_block(readme, args.name, args.source)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{readme}: block {args.name} {'updated' if changed else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
