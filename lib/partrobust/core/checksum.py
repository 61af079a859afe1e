"""SHA-256 of files, computed once per file version (path, size and modification time).

A run that evaluates imported weights carries the file's SHA-256 in its identity, so the hash is
needed each time such a config is validated; the cache makes that free after the first time.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_of(path: str | os.PathLike) -> str:
    """The hex SHA-256 of the file at `path` (FileNotFoundError if there is none)."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _CACHE:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _CACHE[key] = digest.hexdigest()
    return _CACHE[key]
