"""Safe file I/O: atomic writes, locks, stale temporaries, and checkpoints that never run code.

* Every file the project writes goes to a unique temporary sibling
  (``.<name>.tmp-<host>-<pid>-<random>``) and is renamed over the target with `os.replace`, so a
  reader never sees half a file, a kill never truncates the previous version, and concurrent
  writers (processes or threads) never share a temporary name. `remove_stale_temporaries`
  deletes the temporaries of writers on this host that died before their rename.
* Shared files that are read, modified and written back (a run's ``results.csv``) are updated
  under `file_lock`.
* `load_checkpoint` loads with ``torch.load(weights_only=True)``: tensors and plain containers
  only. A file that needs anything else (a pickle that could run code on load) is refused with
  `UnsafeCheckpointError`, and a damaged one with `CorruptCheckpointError`; both name the file.
  It is the one loader of torch files in the project (checkpoints, ImageNet and AdaIN weights,
  AutoAttack state); `check_checkpoint` runs it cheaply (memory-mapped) before any compute.
* `check_writable` probes an output folder (a file really written and removed) and its free
  space before a run computes anything; a failed write names the file it was writing.
"""
from __future__ import annotations

import errno
import fcntl
import os
import pickle
import secrets
import shutil
import socket
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from .config import ParameterError

_TMP_TAG = ".tmp-"


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint needs arbitrary Python objects to load, so it is not loaded."""


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file is truncated or not a torch file."""


def _host() -> str:
    return socket.gethostname().replace(".", "_").replace("-", "_")


def temporary_sibling(path: str | os.PathLike) -> Path:
    """A fresh temporary name beside `path`: unique per host, process and call."""
    path = Path(path)
    return path.with_name(f".{path.name}{_TMP_TAG}{_host()}-{os.getpid()}-{secrets.token_hex(4)}")


def _owner_is_dead(tmp_name: str) -> bool:
    """True when `tmp_name` was made by a process of this host that no longer exists."""
    try:
        host, pid, _ = tmp_name.rsplit(_TMP_TAG, 1)[1].rsplit("-", 2)
        pid_number = int(pid)
    except (IndexError, ValueError):
        return False
    if host != _host():
        return False  # another machine's writer (shared file system): cannot tell, leave it
    try:
        os.kill(pid_number, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def remove_stale_temporaries(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Deletes temporaries left in `folder` by killed writers of this host; returns what it removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = f".*{_TMP_TAG}*"
    removed = []
    for tmp in folder.rglob(pattern) if recursive else folder.glob(pattern):
        if tmp.is_file() and _owner_is_dead(tmp.name):
            try:
                tmp.unlink()
                removed.append(tmp)
            except FileNotFoundError:
                pass
    return removed


@contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """Yields a temporary name to write; renames it over `path` on success, deletes it on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:  # a full disk, a read-only folder, a directory in the way: name the file
        if err.errno is None or str(path) in str(err):
            raise
        raise type(err)(err.errno, f"cannot write {path}: {err.strerror or err}") from err
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to `path` atomically (temporary file + rename).

    A file that already holds exactly `data` is left untouched (reruns keep mtimes).
    """
    path = Path(path)
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return
    with _replacing(path) as tmp:
        with open(tmp, "wb") as handle:  # no fsync: a killed process loses nothing after close; converters write thousands
            handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """UTF-8 text version of `atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` via a temporary file and rename, so a kill never leaves a truncated checkpoint."""
    with _replacing(Path(path)) as tmp:
        torch.save(obj, tmp)


@contextmanager
def file_lock(path: str | os.PathLike, blocking: bool = True) -> Iterator[None]:
    """Holds an exclusive ``flock`` on `path` for the block (released when the process dies, too).

    Non-blocking: raises `BlockingIOError` at once if another process holds it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        yield


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = "cpu", mmap: bool = False,
                    allow: Sequence[type] = ()) -> Any:
    """Loads a torch file with ``weights_only=True``: tensors and plain containers, never code.

    `allow`: plain data classes this one file may also hold (the authors' released checkpoints keep
    their ``argparse.Namespace``; `partrobust.models.reference`), allow-listed for this call only.
    Raises `UnsafeCheckpointError` for a file that needs other Python objects (a checkpoint from
    elsewhere, or a crafted pickle), `CorruptCheckpointError` for a damaged one, `IsADirectoryError`
    for a folder. `mmap`: tensors are mapped, not read (a cheap check of a large file).
    """
    if Path(path).is_dir():
        raise IsADirectoryError(errno.EISDIR, f"{path} is a directory, not a torch file")
    try:
        with torch.serialization.safe_globals(list(allow)):
            if mmap and zipfile.is_zipfile(path):  # only the zip format can be mapped; older files are read whole
                return torch.load(path, map_location=map_location, weights_only=True, mmap=True)
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()
        detail = next((line.split("error:")[-1].split(". ")[0] for line in reason if "global" in line.lower()), "")
        if not detail:  # not a request for a Python object: garbage where a pickle should be
            what = next((line.strip() for line in reason if line.startswith("Unsupported")), "not a pickle")
            raise CorruptCheckpointError(f"{path}: cannot read this checkpoint ({what}); "
                                         "it is damaged or not a torch file: delete it to start again") from None
        raise UnsafeCheckpointError(
            f"{path}: refused to load: the file needs Python objects beyond tensors and plain containers "
            f"({detail.strip()[:200]}). Loading it would let the file run code. partrobust writes only plain "
            "checkpoints, so this file came from elsewhere or from an older version: delete it to start again, or, "
            "if you trust it, convert it yourself to a state dict of tensors.") from None
    except (EOFError, RuntimeError, ValueError, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise CorruptCheckpointError(f"{path}: cannot read this checkpoint ({type(err).__name__}: {err}); "
                                     "it is damaged or not a torch file: delete it to start again") from None


def check_checkpoint(path: str | os.PathLike) -> Any:
    """`load_checkpoint` memory-mapped: the same refusals (unsafe, damaged, a folder), without reading the tensors."""
    return load_checkpoint(path, mmap=True)


def check_writable(folder: str | os.PathLike, key: str, need_bytes: int = 0) -> None:
    """Refuses (`ParameterError` naming `key` and the folder) an output folder that cannot be written,
    or one whose file system has less than `need_bytes` free.

    Probes the folder, or its nearest existing parent if it does not exist yet, by writing and
    removing a temporary file (``os.access`` does not see read-only mounts or immutable folders).
    Creates nothing that stays.
    """
    target = Path(folder)
    probe_dir = next((p for p in (target, *target.parents) if p.exists()), Path("."))
    if not probe_dir.is_dir():
        raise ParameterError(f"{key}: {probe_dir} is a file, so {target} cannot be created")
    probe = temporary_sibling(probe_dir / "write-probe")
    try:
        probe.write_bytes(b"")
    except OSError as err:
        raise ParameterError(f"{key}: {target} is not writable ({err.strerror or err} in {probe_dir}); "
                              "use a writable --runs-root") from None
    finally:
        if probe.exists():
            probe.unlink()
    free = shutil.disk_usage(probe_dir).free
    if free < need_bytes:
        raise ParameterError(f"{key}: {target} has {free / 2**20:.0f} MiB free, but the run writes about "
                      f"{need_bytes / 2**20:.0f} MiB (checkpoints); free some space or use another --runs-root")
