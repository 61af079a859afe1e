"""Keeps generated blocks of the documentation equal to the files they come from (numbers are never typed by hand).

    python -m partrobust.report.readme figures/builtin_study/table.md builtin-study-table

replaces the text between ``<!-- builtin-study-table:start -->`` and ``<!-- builtin-study-table:end -->``
in the one documentation page (README.md or a page it links, ``DOC_PAGES``) that holds the block with the
file's content; tests check that they agree.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.fileio import atomic_write_text
from ..core.paths import find_repo_root

DOC_PAGES = ("README.md", "notebooks/README.md", "params/README.md", "params/real-data-and-gpus.md", "lib/README.md")


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->\n", f"<!-- {name}:end -->"


def page_with_block(name: str, root: str | Path | None = None) -> Path:
    """The documentation page that holds block `name` (exactly one must)."""
    root = Path(root) if root is not None else find_repo_root()
    start, end = markers(name)
    found = [root / page for page in DOC_PAGES if (root / page).is_file() and start in (text := (root / page).read_text()) and end in text]
    if len(found) != 1:
        raise ValueError(f"block {name!r} must be in exactly one of {', '.join(DOC_PAGES)}; found in {len(found)}")
    return found[0]


def block_text(name: str, root: str | Path | None = None) -> str:
    """The text between the `name` markers, wherever the block lives."""
    start, end = markers(name)
    return page_with_block(name, root).read_text().split(start, 1)[1].split(end, 1)[0]


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
    parser.add_argument("--readme", default=None, help="the page to change (default: the documentation page that holds the block)")
    args = parser.parse_args(argv)
    try:
        readme = Path(args.readme) if args.readme else page_with_block(args.name)
        changed = sync_block(readme, args.name, args.source)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{readme}: block {args.name} {'updated' if changed else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
