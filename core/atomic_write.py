"""Atomic replacement of a file: written under a hidden temporary name in the same directory,
flushed and ``fsync``'d, renamed over the final name, then the directory ``fsync``'d.

A reader sees the old file or the new one, never a part of either. A crash (SIGKILL, power loss)
leaves at most the hidden temporary ``.NAME.tmp``, which :func:`remove_leftovers` clears; an error
while writing (a full disk) removes it and keeps the old file as it was.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def temp_name(path: str | os.PathLike) -> Path:
    """The hidden working name of ``path``: ``DIR/.NAME.tmp``."""
    p = Path(path)
    return p.with_name(f".{p.name}{TEMP_SUFFIX}")


def fsync_dir(directory: str | os.PathLike) -> None:
    """``fsync`` a directory so a rename in it is durable (ignored where it cannot be done)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield the temporary path to write; on a clean exit it is fsync'd and renamed to ``path``."""
    final = Path(path)
    tmp = temp_name(final)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(final.parent)


def atomic_write_bytes(path: str | os.PathLike, data) -> None:
    """``data``: bytes-like, or a tuple of bytes-like parts written one after the other (a header
    and an image's memoryview, without joining them into one copy)."""
    with atomic_path(path) as tmp:
        # O_NOFOLLOW: a link planted at the working name is never written through
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as f:
            for part in data if isinstance(data, tuple) else (data,):
                f.write(part)
            f.flush()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 text atomically (no newline translation)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_leftovers(directory: str | os.PathLike) -> list[Path]:
    """Remove the hidden temporaries a crash left in ``directory``; returns what was removed."""
    removed = []
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return removed
    for p in entries:
        if p.name.startswith(".") and p.name.endswith(TEMP_SUFFIX) and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
