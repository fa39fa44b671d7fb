"""Output names that fit the file system's limit on one name (255 bytes on ext4, XFS, NFS, tmpfs).

A series is named after its movies (``TS_07_012_-21.0.tif`` -> ``TS_07``), and every file of the
series adds to that name: the longest output is ``SERIES_sorted_EVN.mrc`` (15 bytes more), and
while it is written it carries a hidden working name, ``.SERIES_sorted_EVN.mrc.appending`` or
``.tmp`` (11 bytes more). A legal but long movie name (up to 255 bytes) therefore gives a series
whose outputs cannot be created. :func:`fit_name` keeps a name that leaves room for all of that
and shortens a longer one to its first bytes (cut at a character boundary), ``~`` and 12 hex
digits of the SHA-256 of the whole name, so two long names that share their start still get two
directories. The original name stays in the journal, in the ``series`` column of the tilt table
and in the drift log's ``series`` key.

Names are compared and measured as the bytes the file system sees (``os.fsencode``: an
undecodable byte kept by Python as a lone surrogate counts as that one byte).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from framewatch.core.movie_io.registry import movie_suffixes

NAME_MAX_BYTES = 255  # NAME_MAX of Linux file systems (pathconf PC_NAME_MAX)
HIDDEN_OVERHEAD_BYTES = len(".") + len(".appending")  # the longest working name around an output name
LONGEST_SUFFIX_BYTES = 24  # "_sorted_EVN.mrc" is 15; room for longer outputs other writers may add
DEDUPE_BYTES = 4  # "_2" ... "_999": the journal's suffix for the same series name from another directory
SERIES_NAME_MAX_BYTES = NAME_MAX_BYTES - HIDDEN_OVERHEAD_BYTES - LONGEST_SUFFIX_BYTES - DEDUPE_BYTES  # 216
HASH_HEX = 12
MOVIE_EXTENSIONS = movie_suffixes()  # stripped from a movie name for output stems (core's format registry)


def name_bytes(name: str) -> int:
    """Length of ``name`` in bytes as the file system stores it."""
    return len(os.fsencode(name))


def fit_name(name: str, *, max_bytes: int) -> str:
    """``name`` itself when it has at most ``max_bytes`` bytes, else its start, ``~`` and a hash.

    The result has at most ``max_bytes`` bytes, never ends inside a multi-byte character and
    depends only on ``name`` (a restart gives the same name)."""
    raw = os.fsencode(name)
    if len(raw) <= max_bytes:
        return name
    tag = "~" + hashlib.sha256(raw).hexdigest()[:HASH_HEX]
    keep = max_bytes - len(tag)
    if keep < 1:
        raise ValueError(f"max_bytes = {max_bytes} leaves no room for a name and its {len(tag)}-byte hash")
    head = raw[:keep]
    while head:  # do not cut a UTF-8 character in two
        try:
            text = head.decode("utf-8")
            break
        except UnicodeDecodeError as err:
            if err.start < len(head) - 3:  # an undecodable byte well before the end: keep the bytes as they are
                text = os.fsdecode(head)
                break
            head = head[: err.start]
    else:
        text = ""
    return text + tag


def series_out_name(series: str) -> str:
    """The directory and file-name stem of a series' outputs (``OUT/STEM/STEM.mrc`` ...)."""
    return fit_name(series, max_bytes=SERIES_NAME_MAX_BYTES)


def movie_stem(path: str | Path) -> str:
    """The file name without the movie extension (``.tif``, ``.mrc``, ...) and a ``.gz`` etc."""
    name = Path(path).name
    low = name.lower()
    for ext in MOVIE_EXTENSIONS:
        if low.endswith(ext):
            return name[: -len(ext)]
    return Path(name).stem
