"""One daemon per state directory: an exclusive ``flock`` on ``STATE/framewatch.lock``.

Two daemons on one journal would both take the same movies and append to the same stacks. The
lock is taken before anything else is opened; the holder writes its pid into the file so that a
second instance can say who holds it. ``flock`` locks die with the process (also on SIGKILL), so
a stale file never blocks a restart; the file itself is left in place. The descriptor is not
inherited by child processes (Python's default), so worker processes never hold the lock.
"""
from __future__ import annotations

import errno
import fcntl
import os
from abc import ABC, abstractmethod
from pathlib import Path

from framewatch.core.errors import FramewatchError

LOCK_NAME = "framewatch.lock"
BUSY_ERRNOS = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)  # flock(LOCK_NB): another process holds it


class InstanceLockedError(FramewatchError):
    """Another process holds the lock of the state directory."""

    def __init__(self, state_dir: Path, holder_pid: int | None):
        self.state_dir = Path(state_dir)
        self.holder_pid = holder_pid
        who = f"pid {holder_pid}" if holder_pid is not None else "a process whose pid is not known yet"
        super().__init__(
            f"another framewatch ({who}) is already running on the state directory {self.state_dir}",
            fix="stop it first (e.g. `systemctl stop framewatch`), or give this one another --state directory",
        )


class HeldLock(ABC):
    """What a lock on a file descriptor (``self._fd``, None when not held) shares: release and the
    ``with`` statement around :meth:`acquire`, which each lock defines its own way."""

    _fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    @abstractmethod
    def acquire(self):
        """Take the lock (or raise naming who holds it); returns the lock."""

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        release_lock_fd(fd)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class InstanceLock(HeldLock):
    """``with InstanceLock(state_dir):`` (or :meth:`acquire` / :meth:`release`)."""

    def __init__(self, state_dir: str | Path):
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> "InstanceLock":
        """Take the lock or raise :class:`InstanceLockedError` at once (never waits)."""
        if self._fd is not None:
            return self
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as err:
            raise FramewatchError(f"cannot create the lock file: {err.strerror}", path=self.path,
                                  fix="check that the state directory is writable by this user") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _read_pid(fd)
            os.close(fd)
            if err.errno in BUSY_ERRNOS:
                raise InstanceLockedError(self.state_dir, holder) from None
            raise FramewatchError(f"cannot lock: {err.strerror}", path=self.path) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self


def holder_pid(state_dir: str | Path) -> int | None:
    """The pid written in the lock file of ``state_dir`` (whether or not it still holds it)."""
    try:
        fd = os.open(Path(state_dir) / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _read_pid(fd)
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 64, 0).decode(errors="replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def release_lock_fd(fd: int) -> None:
    """Empty a held lock file (no pid of a process that no longer holds it), unlock and close it."""
    try:
        os.ftruncate(fd, 0)
    except OSError:
        pass
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
