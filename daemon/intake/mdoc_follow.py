"""Following one mdoc as it grows: only the bytes appended since the last read are parsed.

SerialEM appends a section to a tilt-series mdoc after every tilt, and rewrites nothing before it.
A 100 000-section mdoc re-parsed whole at every change kept the daemon's main loop busy (issue
14, row 19), so a :class:`MdocFollower` keeps the parser's state (mdoc.py's :class:`MdocParser`)
and, at the next change, reads the file (never blocking, never outside the watch root, never more
than ``max_bytes``: safe_open.py) and:

- when it is the same file (inode) and at least as long, and the bytes already parsed are
  unchanged (a BLAKE2b digest of them), parses only what follows them;
- otherwise (shorter, replaced, edited in the middle) parses the whole file again.

Only complete lines are fed; a last line still being written is looked at for the snapshot and
parsed for good once its line end arrives. The warnings of a snapshot are those of the text parsed
at that read (a count and at most ``MAX_KEPT_WARNINGS`` samples), so a warning is reported once.
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from framewatch.daemon.intake.mdoc import DEFAULT_MAX_BYTES, Mdoc, MdocParser
from framewatch.daemon.intake.safe_open import read_regular


class MdocFollower:
    def __init__(self, path: str | Path, *, root: str | Path | None, max_bytes: int = DEFAULT_MAX_BYTES):
        self.path = str(path)
        self.root = root
        self.max_bytes = max_bytes
        self._parser: MdocParser | None = None
        self._ident: tuple | None = None  # (st_dev, st_ino)
        self._offset = 0  # bytes parsed (complete lines)
        self._digest = b""  # of those bytes
        self.full_parses = 0
        self.incremental_parses = 0
        self.last_parsed_bytes = 0
        self.last_stat = None  # the fstat of the last read: it matches the bytes read (not a stat before)
        self._tail = b""  # the last line without its line end, as last looked at

    def read(self) -> Mdoc:
        """Read the file and return the mdoc as it is now (raises OSError / RefusedFile when it
        cannot or must not be read; the parse state is kept for the next read then)."""
        data, st = read_regular(self.path, root=self.root, max_bytes=self.max_bytes)
        self.last_stat = st
        ident = (st.st_dev, st.st_ino)
        h = hashlib.blake2b(digest_size=16)
        same = False
        if self._parser is not None and ident == self._ident and len(data) >= self._offset:
            h.update(memoryview(data)[: self._offset])
            same = h.digest() == self._digest
        if not same:
            self._parser, self._ident, self._offset = MdocParser(), ident, 0
            h = hashlib.blake2b(digest_size=16)
            self.full_parses += 1
        else:
            self.incremental_parses += 1
        new = memoryview(data)[self._offset:]
        cut = max(data.rfind(b"\n", self._offset), data.rfind(b"\r", self._offset)) + 1
        complete = bytes(new[: max(0, cut - self._offset)]) if cut > self._offset else b""
        tail = bytes(new[len(complete):])
        self.last_parsed_bytes = len(complete)
        text = complete.decode("utf-8", errors="replace")
        bad = "\ufffd" in text
        self._parser.feed(text)
        h.update(complete)
        self._offset += len(complete)
        self._digest = h.digest()
        mdoc = self._parser.snapshot(self.path, tail.decode("utf-8", errors="replace"))
        if same and not complete and tail == self._tail and mdoc.n_warnings:
            # the same bytes again (a file touched, or read once more because a stat taken before
            # an append named the older version): its warnings were reported at the last read
            mdoc = dataclasses.replace(mdoc, warnings=(), n_warnings=0)
        self._tail = tail
        if bad:
            mdoc = _with_warning(mdoc, "file has bytes that are not UTF-8")
        return mdoc


def _with_warning(mdoc: Mdoc, warning: str) -> Mdoc:
    return dataclasses.replace(mdoc, warnings=mdoc.warnings + (warning,), n_warnings=mdoc.n_warnings + 1)
