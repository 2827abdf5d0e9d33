"""Atomic files: every file svp_hf writes for others to read (checkpoints, score shards, the image cache, result and
session files) is written under a temporary name in its own folder and moved into place with ``os.replace`` once
complete, so a reader, or a run killed at any moment, never sees a partly written file under the final name.

The temporary name belongs to one process and one call (``<path>.<pid>-<8 hex digits>.tmp<suffix>``): the processes
of a multi-process run, or two runs sharing a folder, never write into one another's temporary file. It is removed
when the writing fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from typing import Any, Callable, Iterator

TMP_MARK = ".tmp"


def temporary_name(path: str, suffix: str = "") -> str:
    """A name next to `path` that only this process and this call use: ``<path>.<pid>-<8 hex>.tmp<suffix>``.
    `suffix` keeps an extension that a writer would otherwise append (``np.savez`` adds ``.npz`` to a name without
    it)."""
    return f"{os.fspath(path)}.{os.getpid()}-{uuid.uuid4().hex[:8]}{TMP_MARK}{suffix}"


def _fsync(path: str) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


@contextlib.contextmanager
def atomic_path(path: str, *, suffix: str = "", fsync: bool = False) -> Iterator[str]:
    """Yield a temporary name for `path` (:func:`temporary_name`) to write the file under; when the block ends
    normally, the file is flushed to disk (with `fsync`) and moved to `path` (``os.replace``: it replaces what was
    there); when it raises, the temporary file is removed and the exception goes on.

    Several ``atomic_path`` blocks nest to publish several files in order, the innermost first."""
    path = os.fspath(path)
    tmp = temporary_name(path, suffix)
    try:
        yield tmp
        if fsync:
            _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def atomic_write(path: str, write_fn: Callable[[str], Any], *, suffix: str = "", fsync: bool = False) -> None:
    """``write_fn(tmp)`` writes the file under a temporary name, which is then moved to `path` (see
    :func:`atomic_path`)."""
    with atomic_path(path, suffix=suffix, fsync=fsync) as tmp:
        write_fn(tmp)


def atomic_write_text(path: str, text: str, *, fsync: bool = False) -> None:
    """`text` as the UTF-8 file `path`, written atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, write, fsync=fsync)


def atomic_write_json(path: str, obj: Any, *, indent: int = 2, fsync: bool = False, **dump_kwargs) -> None:
    """`obj` as the JSON file `path` (ending with a newline), written atomically; `dump_kwargs` go to ``json.dump``."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=indent, **dump_kwargs)
            f.write("\n")

    atomic_write(path, write, fsync=fsync)


__all__ = ["temporary_name", "atomic_path", "atomic_write", "atomic_write_text", "atomic_write_json", "TMP_MARK"]
