"""How far a movie file is written: :class:`FileProgress`, the answer of every format's probe.

A probe (``probe_mrc``, ``probe_tiff``, ``probe_eer``; dispatched by
:func:`framewatch.core.movie_io.registry.probe_file`) reads only a file's structure (headers, the
TIFF page directory), never frame data, and never raises for a short, growing or garbage file:
what it cannot make sense of is ``complete=False`` with a reason. Only an ``OSError`` (the file
cannot be opened or read) passes through.

A probe reads either a path (opened and closed here) or a binary file the caller opened already
(so the daemon can refuse FIFOs and links out of its root before anything is read); the file's
size is taken from the open file.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Union

ProbeSource = Union[str, os.PathLike, BinaryIO]


@dataclass(frozen=True)
class FileProgress:
    """What a probe found in a movie file.

    Attributes:
        complete: every frame the file should hold is on disk and its structure is whole.
        frames_readable: frames whose bytes (and, for TIFF/EER, page directory entry) lie inside
            the file; for EER, raw frames.
        frames_expected: the caller's count, else the file's own (MRC ``nz``, EER
            ``numberOfFrames``), else ``None`` (a TIFF carries no count).
        reason: why it is not complete (or what was found when it is); never empty.
    """

    complete: bool
    frames_readable: int
    frames_expected: int | None
    reason: str


def incomplete(reason: str, *, frames_readable: int = 0, frames_expected: int | None = None) -> FileProgress:
    """A :class:`FileProgress` that is not complete, with ``reason``."""
    return FileProgress(complete=False, frames_readable=frames_readable, frames_expected=frames_expected, reason=reason)


@contextmanager
def opened(source: ProbeSource) -> Iterator[tuple[BinaryIO, int]]:
    """``(binary file, size in bytes)`` for a path (closed on exit) or an open file (left open)."""
    if isinstance(source, (str, os.PathLike)):
        with open(Path(source), "rb") as f:
            yield f, os.fstat(f.fileno()).st_size
        return
    try:
        size = os.fstat(source.fileno()).st_size
    except (AttributeError, OSError, ValueError):
        size = source.seek(0, os.SEEK_END)
    yield source, size


def read_at(f: BinaryIO, offset: int, n_bytes: int) -> bytes:
    """Up to ``n_bytes`` bytes from ``offset`` (fewer at the end of the file)."""
    f.seek(offset)
    return f.read(n_bytes)
