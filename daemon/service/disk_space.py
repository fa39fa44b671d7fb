"""Free space of the output directory: warn below a threshold, stop taking new work below a floor.

Stacks grow by three sections per tilt (a 4k x 4k float32 section is 64 MiB, so about 200 MiB a
tilt); a full disk in the middle of an append would cost a repair and a retry for every movie. The
daemon therefore probes the free space of the output file system every ``check_period_s``:

- ``ok``: at or above ``warn_below_bytes``;
- ``low``: below it: a warning, processing goes on;
- ``floor``: below ``floor_bytes``: no new movie is handed to a worker (the watcher, readiness
  checks and the journal carry on, so nothing is missed); processing resumes by itself when the
  free space is back at ``floor_bytes + resume_margin_bytes`` or more.

The probe is a function ``path -> free bytes`` (``os.statvfs``'s space available to unprivileged
users by default), injectable for tests.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DiskGuard", "DiskReading", "free_bytes"]

GB = 1_000_000_000  # configuration values are in GB = 10^9 bytes, as `df -H` prints them

OK, LOW, FLOOR = "ok", "low", "floor"


def free_bytes(path: str | Path) -> int:
    """Bytes available to an unprivileged user on the file system holding ``path`` (the nearest
    existing parent when ``path`` does not exist yet)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    st = os.statvfs(p)
    return st.f_bavail * st.f_frsize


@dataclass(frozen=True)
class DiskReading:
    free_bytes: int
    level: str  # "ok", "low" or "floor"
    changed: bool  # the level differs from the previous reading
    at: float
    previous: str = OK  # the level before this reading


class DiskGuard:
    """Probes ``path`` at most every ``check_period_s`` and keeps the current level."""

    def __init__(
        self,
        path: str | Path,
        *,
        warn_below_bytes: int,
        floor_bytes: int,
        resume_margin_bytes: int = 0,
        check_period_s: float = 10.0,
        probe: Callable[[Path], int] = free_bytes,
    ):
        if floor_bytes < 0 or warn_below_bytes < 0 or resume_margin_bytes < 0:
            raise ValueError("disk thresholds must be >= 0")
        self.path = Path(path)
        self.warn_below_bytes = int(warn_below_bytes)
        self.floor_bytes = int(floor_bytes)
        self.resume_margin_bytes = int(resume_margin_bytes)
        self.check_period_s = float(check_period_s)
        self.probe = probe
        self.level = OK
        self.last: DiskReading | None = None
        self.error: str | None = None

    @property
    def paused(self) -> bool:
        """True while below the floor: take no new work."""
        return self.level == FLOOR

    def due(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return self.last is None or now - self.last.at >= self.check_period_s

    def check(self, now: float | None = None, *, force: bool = False) -> DiskReading | None:
        """Probe when due (or ``force``); returns the reading, or None when not due. A probe that
        raises (e.g. the share is gone) keeps the previous level and sets :attr:`error`."""
        now = time.monotonic() if now is None else now
        if not force and not self.due(now):
            return None
        try:
            free = int(self.probe(self.path))
            self.error = None
        except OSError as err:
            self.error = f"cannot read the free space of {self.path}: {err}"
            prev = self.last
            self.last = DiskReading(prev.free_bytes if prev else -1, self.level, False, now, self.level)
            return self.last
        level = self._level(free)
        previous = self.level
        self.level = level
        self.last = DiskReading(free, level, level != previous, now, previous)
        return self.last

    def _level(self, free: int) -> str:
        if free < self.floor_bytes:
            return FLOOR
        if self.level == FLOOR and free < self.floor_bytes + self.resume_margin_bytes:
            return FLOOR  # hysteresis: one more section must not flip it back and forth
        if free < self.warn_below_bytes:
            return LOW
        return OK
