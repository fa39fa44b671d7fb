"""Output writes that fail for a while: which errors go away by themselves, and one warning per cause.

An output file (tables, sorted stacks, stacks at start-up) that cannot be written logs
``output_write_failed`` once per series and kind of file until a write of it succeeds again
(:class:`OutputWarnings`); the daemon writes it again later (a full disk) or leaves it alone until
the cause is removed (a link planted in OUT, no_follow.py).
"""
from __future__ import annotations

import errno

from framewatch.daemon.outputs.no_follow import LinkInOutputError

NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
# an output directory that is not writable for a while: permissions changed under the daemon, a
# share remounted read-only, a network file system's I/O error or stale handle
NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO, errno.ESTALE)


def no_room(err: BaseException) -> bool:
    """True for the errors of a full output file system (or a file-size limit)."""
    return isinstance(err, OSError) and err.errno in NO_ROOM


def transient(err: BaseException) -> bool:
    """True for the output errors that go away by themselves: no room, or not writable for now.
    A link planted in OUT (no_follow.py) is not one of them."""
    return isinstance(err, OSError) and not isinstance(err, LinkInOutputError) and err.errno in NO_ROOM + NOT_WRITABLE


class OutputWarnings:
    """``output_write_failed`` once per (series, what) until that output is written again."""

    def __init__(self, log):
        """``log``: the drift log (driftlog.DriftLog)."""
        self._log = log
        self._warned: set[tuple[int, str]] = set()

    def failed(self, s: dict, what: str, err: OSError) -> None:
        """``s``: the journal's series row; ``what``: ``tables``, ``sorted stacks``, ``stacks``."""
        key = (s["id"], what)
        if key in self._warned:
            return
        self._warned.add(key)
        note = ("written again as soon as there is room" if no_room(err) else
                "written again as soon as the output directory is writable" if transient(err) else
                "not written until the cause is removed")
        self._log.event("output_write_failed", level="warning", series=s["name"], what=what,
                        reason=f"{type(err).__name__}: {err}",
                        note=note)

    def ok(self, s: dict, what: str) -> None:
        self._warned.discard((s["id"], what))
