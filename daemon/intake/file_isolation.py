"""Per-file isolation: nothing one file does stops the daemon.

Whatever a file in the watch directory is -- a name that is not UTF-8, a FIFO, a device, a link to
``/dev/zero``, an mdoc of random bytes, a date in the year 1 -- an exception raised while the main
loop looks at it is caught here and becomes that file's record, and the loop goes on:

- a movie the journal knows (it is being watched): recorded **failed** (``movie_failed``, stage
  ``intake``) with the exception as the reason;
- a path the journal does not know (or cannot hold): one ``file_rejected`` line (``path``,
  ``stage``, ``reason``), once per version of the file (size, mtime, inode): it is looked at again
  only when it changes;
- an mdoc: one ``mdoc_warning``, once per version.

:class:`FileIsolation` is a part of the movie intake (movie_intake.py), which hands it the way to
record a watched movie failed.
"""
from __future__ import annotations

import os
import stat as _stat
import traceback

REJECTED_MAX = 100_000  # remembered rejected paths (bounded; a forgotten one is looked at again)


def version_of(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino, _stat.S_IFMT(st.st_mode))


def _reason(err: BaseException) -> str:
    where = traceback.extract_tb(err.__traceback__)[-1:]
    at = f" (at {os.path.basename(where[0].filename)}:{where[0].lineno})" if where else ""
    return f"{type(err).__name__}: {err}"[:500] + at


class FileIsolation:
    """Guards every look at one file; remembers the rejected versions of paths."""

    def __init__(self, *, log, fail_candidate):
        """``log``: the drift log; ``fail_candidate(path, stage, reason) -> bool`` records a watched movie
        failed and returns True, or returns False when ``path`` is not a watched movie."""
        self._log = log
        self._fail_candidate = fail_candidate
        self._rejected: dict[str, tuple | None] = {}  # path -> version rejected

    def guarded(self, path: str, stage: str, fn, *args, mdoc: bool = False):
        """``fn(*args)``; an exception becomes the record of ``path`` (see the module)."""
        try:
            return fn(*args)
        except Exception as err:  # noqa: BLE001 - the point: one file never stops the loop
            self._file_error(path, stage, err, mdoc=mdoc)
            return None

    def _file_error(self, path: str, stage: str, err: BaseException, *, mdoc: bool = False) -> None:
        reason = _reason(err)
        if mdoc:
            version = version_of(path)
            if self._rejected.get(path) != version:
                self._remember_rejected(path, version)
                self._log.event("mdoc_warning", level="warning", mdoc=path, warnings=[f"not read: {reason}"], n_warnings=1)
            return
        try:
            if self._fail_candidate(path, stage, f"could not be taken in: {reason}"):
                return
        except Exception as err2:  # noqa: BLE001 - the journal itself refused: reject the path below
            reason += f"; recording it failed too: {type(err2).__name__}: {err2}"[:300]
        self.reject_file(path, stage, reason)

    def reject_file(self, path: str, stage: str, reason: str) -> None:
        """One ``file_rejected`` line for this version of the file; it is skipped until it changes."""
        version = version_of(path)
        if self._rejected.get(path) == version:
            return
        self._remember_rejected(path, version)
        self._log.event("file_rejected", level="warning", path=path, stage=stage, reason=reason)

    def _remember_rejected(self, path: str, version) -> None:
        if len(self._rejected) >= REJECTED_MAX:
            self._rejected.clear()
        self._rejected[path] = version

    def is_rejected(self, path: str) -> bool:
        """A path rejected before and unchanged since."""
        v = self._rejected.get(path)
        if v is None:
            return False
        if version_of(path) == v:
            return True
        del self._rejected[path]
        return False
