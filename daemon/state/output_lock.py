"""One daemon per output directory: an exclusive ``flock`` on ``OUT/.framewatch.lock``.

The lock of the state directory (instance_lock.py) keeps two daemons off one journal; two daemons
with two journals on one OUT would still append to the same stacks and undo each other's appends.
So the daemon also locks OUT, right after STATE and before it writes anything there. The holder
writes its pid and its state directory into the file, and a second daemon is refused with both.
The lock dies with its process (also on SIGKILL); the hidden file stays and is harmless when the
outputs are copied. Taking the lock is also the start-up check that OUT can be created and written:
an output directory that cannot be is reported here in one line, without a traceback (exit
status 1; under systemd ``Restart=on-failure`` tries again every ``RestartSec``).
"""
from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from framewatch.core.errors import FramewatchError
from framewatch.daemon.state.instance_lock import BUSY_ERRNOS, HeldLock

OUT_LOCK_NAME = ".framewatch.lock"


class OutputLockedError(FramewatchError):
    """Another daemon holds the lock of the output directory."""

    def __init__(self, out_dir: Path, holder_pid: int | None, holder_state: str | None):
        self.out_dir, self.holder_pid, self.holder_state = Path(out_dir), holder_pid, holder_state
        who = f"pid {holder_pid}" if holder_pid is not None else "a process whose pid is not known yet"
        if holder_state:
            who += f", state directory {holder_state}"
        super().__init__(f"another framewatch ({who}) is already writing to the output directory {self.out_dir}",
                         fix="stop it first, or give this one another --out directory (two daemons on one output "
                             "directory would undo each other's appends)")


class OutputNotWritableError(FramewatchError):
    """The output directory cannot be created or written (exit status 1: it may be fixed meanwhile)."""

    exit_status = 1


def _not_writable(out_dir: Path, what: str, err: OSError) -> OutputNotWritableError:
    return OutputNotWritableError(
        f"the output directory cannot be {what}: {err.strerror}", path=out_dir,
        fix=f"make it writable by this user (uid {os.getuid()}): check its owner and mode, `lsattr -d` for the immutable flag, "
            "and whether the file system is mounted read-only")


class OutputLock(HeldLock):
    """``OutputLock(out_dir, state_dir=...).acquire()`` ... ``release()``."""

    def __init__(self, out_dir: str | Path, *, state_dir: str | Path | None = None):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / OUT_LOCK_NAME
        self.state_dir = None if state_dir is None else str(state_dir)
        self._fd: int | None = None

    def acquire(self) -> "OutputLock":
        """Create OUT if needed and take its lock, or raise at once (never waits)."""
        if self._fd is not None:
            return self
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _not_writable(self.out_dir, "created", err) from None
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise FramewatchError("is a symbolic link", path=self.path, fix="remove it") from None
            raise _not_writable(self.out_dir, "written", err) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            pid, state = _read_holder(fd)
            os.close(fd)
            if err.errno in BUSY_ERRNOS:
                raise OutputLockedError(self.out_dir, pid, state) from None
            raise FramewatchError(f"cannot lock: {err.strerror}", path=self.path) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n{self.state_dir or ''}\n".encode("utf-8", "surrogateescape"), 0)
            os.fsync(fd)
        except OSError as err:  # e.g. the file system went read-only, or it is full
            if err.errno in (errno.ENOSPC, errno.EDQUOT):  # full: the lock holds; only who holds it goes unsaid
                self._fd = fd
                return self
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise _not_writable(self.out_dir, "written", err) from None
        self._fd = fd
        return self


def _read_holder(fd: int) -> tuple[int | None, str | None]:
    try:
        lines = os.pread(fd, 4096, 0).decode(errors="replace").splitlines()
    except OSError:
        return None, None
    pid = int(lines[0]) if lines and lines[0].strip().isdigit() else None
    state = lines[1].strip() if len(lines) > 1 and lines[1].strip() else None
    return pid, state
