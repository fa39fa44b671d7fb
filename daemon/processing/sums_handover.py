"""Handing a correction's three sums from a local worker process to the daemon through a file on
tmpfs instead of the process pool's pipe.

At 4096² the three float32 sums are 201 MB; pickled through the pipe of a ``ProcessPoolExecutor``
they took 0.5-0.7 s per tilt (benchmarks/RESULTS.md, daemon replay), all of it on the path from the
last frame to the ``tilt_corrected`` line. A worker of the local pool instead writes them, one after
the other, into ``<handover dir>/<movie id>-<pid>.f32`` (a memory copy on tmpfs) and returns the
file's name; the daemon maps the file (:func:`take_sums`) and removes its name at once, so the pages
live exactly as long as the arrays. The directory is per state directory, on ``/dev/shm`` when it is
a writable tmpfs (else ``STATE/sums``), and is emptied at every start (a file a crash left behind)
and at a clean stop.

A worker writes into a *spare* file whose pages are already there. Measured in the daemon replay
(4096² tilts, a VM that hands freed memory back to its host): writing a tilt's 192 MB into a new
tmpfs file took 0.35-0.6 s, all of it system time (as we read it, memory the host took back is
faulted in again page by page), and 0.035-0.045 s into pages written before; pages only reserved
with ``posix_fallocate`` were as slow as new ones (not touched until the write). So
``SPARE_DELAY_S`` after each hand-over, while the worker waits for its next movie, a thread writes
the next spare (``.spare-<pid>.f32``, zeros, the size of the last sums); the next hand-over writes
into it and renames it. Without a spare (the first movie, a thread not done yet) the worker writes a
new file as before, and sums larger than the spare extend it. Each local worker keeps one tilt's
sums worth of tmpfs (192 MB at 4096²); the spares of workers that are gone are removed when the next
spare is made, all of them at a stop.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np

from framewatch.daemon.state.records import CorrectionOutcome

SUFFIX = ".f32"
SPARE_PREFIX = ".spare-"
SPARE_DELAY_S = 1.0  # after a hand-over: the daemon appends those sums meanwhile
_ZERO_CHUNK = 8 << 20

_spare_lock = threading.Lock()  # one spare being made per process at a time


def handover_dir(state_dir: str | os.PathLike) -> Path:
    """The hand-over directory of a daemon with this state directory (module docstring)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        key = hashlib.sha256(str(Path(state_dir).resolve()).encode()).hexdigest()[:16]
        return shm / f"framewatch-{os.getuid()}-{key}"
    return Path(state_dir) / "sums"


def reset(directory: Path) -> None:
    """An empty hand-over directory, readable only by this user (at start-up: no worker is alive)."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)


def spare_path(directory: str | os.PathLike, pid: int | None = None) -> Path:
    """The spare hand-over file of the worker ``pid`` (default: this process)."""
    return Path(directory) / f"{SPARE_PREFIX}{os.getpid() if pid is None else pid}{SUFFIX}"


def put_sums(directory: str | os.PathLike, movie_id: int, sums, *, make_spare: bool = True) -> str:
    """Write the three ``(ny, nx)`` sums (float32) into one file; returns its path (worker side).

    The file is this worker's spare when there is one (module docstring), else a new file; then
    (``make_spare``) the next spare is made in a thread, ``SPARE_DELAY_S`` later."""
    arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in sums]
    nbytes = sum(a.nbytes for a in arrays)
    path = Path(directory) / f"{movie_id}-{os.getpid()}{SUFFIX}"
    spare = spare_path(directory)
    try:
        f = open(spare, "r+b")  # noqa: SIM115 - closed below; a spare exists only once it is whole
    except FileNotFoundError:
        spare = path.with_name("." + path.name)
        f = open(spare, "wb")  # noqa: SIM115
    with f:
        for a in arrays:
            f.write(memoryview(a).cast("B"))
        f.truncate()  # a spare made for larger sums
    os.rename(spare, path)
    if make_spare:
        threading.Thread(target=_make_spare_later, args=(Path(directory), nbytes), daemon=True,
                         name="framewatch-spare-sums").start()
    return str(path)


def _make_spare_later(directory: Path, nbytes: int) -> None:
    time.sleep(SPARE_DELAY_S)
    # no room on tmpfs, the directory gone at a stop: no spare, the next hand-over writes a new file
    with contextlib.suppress(OSError):
        make_spare(directory, nbytes)


def make_spare(directory: str | os.PathLike, nbytes: int) -> Path | None:
    """Make this worker's spare of ``nbytes`` (its pages written now), unless one is there or being
    made; remove the spares of workers that are gone. Returns the spare's path or ``None``."""
    directory = Path(directory)
    if not _spare_lock.acquire(blocking=False):
        return None
    try:
        _remove_spares_of_gone_workers(directory)
        spare = spare_path(directory)
        if spare.exists():
            return spare
        tmp = spare.with_suffix(".tmp")
        zeros = memoryview(bytes(_ZERO_CHUNK))
        try:
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
                for start in range(0, nbytes, _ZERO_CHUNK):  # written, not fallocated: the pages must be touched
                    f.write(zeros[: min(_ZERO_CHUNK, nbytes - start)])
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        os.rename(tmp, spare)  # whole, or not there
        return spare
    finally:
        _spare_lock.release()


def _remove_spares_of_gone_workers(directory: Path) -> None:
    for p in directory.glob(f"{SPARE_PREFIX}*"):
        pid = p.name[len(SPARE_PREFIX):].split(".")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            p.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def take_sums(path: str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three ``(ny, nx)`` float32 sums of a hand-over file, mapped read-only; the file's name is
    removed (the mapping keeps the pages). Raises ``OSError``/``ValueError`` for a missing or short file."""
    try:
        mapped = np.memmap(path, dtype=np.float32, mode="r", shape=(3, int(shape[0]), int(shape[1])))
    finally:
        Path(path).unlink(missing_ok=True)
    return mapped[0], mapped[1], mapped[2]


def with_sums_taken(out: CorrectionOutcome) -> CorrectionOutcome:
    """``out`` with its sums mapped from its hand-over file (whose name is then removed); ``out`` itself
    when the sums came in the outcome. A file that is gone or short is a retryable error."""
    if out.sums_file is None:
        return out
    try:
        dw, even, odd = take_sums(out.sums_file, out.sums_shape)
    except (OSError, ValueError) as err:
        return CorrectionOutcome.failed(out.job, f"the worker's sums could not be read: {err}", type(err).__name__,
                                        retryable=True, worker=out.worker)
    return dataclasses.replace(out, dose_weighted_sum=dw, even_sum=even, odd_sum=odd, sums_file=None)
