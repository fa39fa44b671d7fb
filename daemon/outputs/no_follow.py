"""Writing inside OUT without following symbolic links.

OUT may lie inside the watch directory, where anyone who can write movies can also plant a link:
``ln -s /elsewhere OUT/TS_09`` would make the daemon write a whole series outside OUT, and a link
at ``OUT/TS_09/TS_09.mrc`` (or at a working name such as ``.TS_09.mrc.tmp``) would make it write
into the file the link points to. framewatch therefore

- creates and checks every directory between OUT and a series directory with ``lstat``
  (:func:`ensure_real_dir`): a component that is a link, or not a directory, stops the write;
- opens every output file it writes with ``O_NOFOLLOW`` (:func:`open_fd`), so a link planted at
  the last component is refused by the kernel itself (``ELOOP``).

Both raise :class:`LinkInOutputError`, an ``OSError`` with ``errno.ELOOP`` whose message names the
path and the fix; the daemon fails the movie (or the write) with it and nothing is written outside
OUT. OUT itself is resolved once at start-up (a link *to* OUT, e.g. ``/data/out -> /mnt/big``, is
the administrator's choice and is fine). Renames and unlinks act on a link itself, never on its
target, so they need no check. A directory swapped for a link between the check and the write
is not caught (no ``openat`` walk); the check is repeated before every append.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from framewatch.core import atomic_write as core_atomic_write

__all__ = ["LinkInOutputError", "check_not_link", "check_real_dir", "ensure_real_dir", "open_fd", "open_file"]


class LinkInOutputError(OSError):
    """A symbolic link (or another non-directory) where framewatch writes its outputs."""

    def __init__(self, path: str | os.PathLike, what: str = "is a symbolic link"):
        self.path = Path(path)
        super().__init__(errno.ELOOP, f"{self.path} {what}: framewatch never writes through links inside its output directory; "
                                      f"remove it (or move the output directory out of reach of others)")

    def __str__(self) -> str:  # one line, without the "[Errno 40]" prefix
        return self.strerror


def _lstat(path: str | os.PathLike) -> os.stat_result | None:
    """``os.lstat``, or None when nothing is there."""
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _refuse_link(path: str | os.PathLike, st: os.stat_result, *, directory: bool) -> None:
    """Raise :class:`LinkInOutputError` when ``st`` is a link (or, ``directory``: not a directory)."""
    if stat.S_ISLNK(st.st_mode):
        raise LinkInOutputError(path)
    if directory and not stat.S_ISDIR(st.st_mode):
        raise LinkInOutputError(path, "is not a directory")


def check_not_link(path: str | os.PathLike) -> None:
    """Raise :class:`LinkInOutputError` when ``path`` is a symbolic link (a missing path is fine)."""
    st = _lstat(path)
    if st is not None:
        _refuse_link(path, st, directory=False)


def check_real_dir(root: str | os.PathLike, directory: str | os.PathLike) -> None:
    """Raise :class:`LinkInOutputError` when a component between ``root`` and ``directory`` is a
    link or not a directory; missing components are fine (nothing is created)."""
    root, directory = Path(root), Path(directory)
    here = root
    for part in directory.relative_to(root).parts:
        here = here / part
        st = _lstat(here)
        if st is None:
            return
        _refuse_link(here, st, directory=True)


def ensure_real_dir(root: str | os.PathLike, directory: str | os.PathLike, *, mode: int = 0o755) -> Path:
    """Create ``directory`` (inside ``root``) and every directory between them, refusing links.

    ``root`` must be an existing, resolved directory; ``directory`` must lie inside it."""
    root, directory = Path(root), Path(directory)
    rel = directory.relative_to(root)
    if ".." in rel.parts:
        raise ValueError(f"{directory} is not inside {root}")
    root.mkdir(parents=True, exist_ok=True)  # OUT itself is the operator's choice
    here = root
    for part in rel.parts:
        here = here / part
        st = _lstat(here)
        if st is None:
            try:
                os.mkdir(here, mode)
            except FileExistsError:
                pass  # made meanwhile: checked below
            st = os.lstat(here)
        _refuse_link(here, st, directory=True)
    return directory


def open_fd(path: str | os.PathLike, flags: int, mode: int = 0o644) -> int:
    """``os.open`` that never follows a link at the last component (``O_NOFOLLOW | O_CLOEXEC``)."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise LinkInOutputError(path) from None
        raise


def open_file(path: str | os.PathLike, mode: str, **kwargs):
    """``open(path, mode)`` for ``"rb"``, ``"r+b"``, ``"wb"``, ``"w"`` without following a link."""
    flags = {"rb": os.O_RDONLY, "r+b": os.O_RDWR, "wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
             "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC}[mode]
    return os.fdopen(open_fd(path, flags), mode, **kwargs)


def atomic_write_bytes(path: str | os.PathLike, data) -> None:
    """:func:`framewatch.core.atomic_write.atomic_write_bytes` (bytes, or a tuple of parts), with a link planted at the working
    name reported as :class:`LinkInOutputError` (the core writer opens it with ``O_NOFOLLOW``)."""
    try:
        core_atomic_write.atomic_write_bytes(path, data)
    except OSError as err:
        if err.errno == errno.ELOOP and not isinstance(err, LinkInOutputError):
            raise LinkInOutputError(core_atomic_write.temp_name(path)) from None
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """UTF-8 text through :func:`atomic_write_bytes` (no newline translation)."""
    atomic_write_bytes(path, text.encode("utf-8"))
