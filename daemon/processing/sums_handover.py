"""Handing a correction's three sums from a local worker process to the daemon through a file on
tmpfs instead of the process pool's pipe.

At 4096² the three float32 sums are 201 MB; pickled through the pipe of a ``ProcessPoolExecutor``
they took 0.5-0.7 s per tilt (benchmarks/RESULTS.md, daemon replay), all of it on the path from the
last frame to the ``tilt_corrected`` line. A worker of the local pool instead writes them, one after
the other, into ``<handover dir>/<movie id>-<pid>.f32`` (a memory copy on tmpfs) and returns the
file's name; the daemon maps the file (:func:`take_sums`) and removes its name at once, so the pages
live exactly as long as the arrays. The directory is per state directory, on ``/dev/shm`` when it is
a writable tmpfs (else ``STATE/sums``), and is emptied at every start (a file a crash left behind).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np

from framewatch.daemon.state.records import CorrectionOutcome

SUFFIX = ".f32"


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


def put_sums(directory: str | os.PathLike, movie_id: int, sums) -> str:
    """Write the three ``(ny, nx)`` sums (float32) into one file; returns its path (worker side)."""
    path = Path(directory) / f"{movie_id}-{os.getpid()}{SUFFIX}"
    tmp = path.with_name("." + path.name)
    with open(tmp, "wb") as f:
        for a in sums:
            f.write(memoryview(np.ascontiguousarray(a, dtype=np.float32)).cast("B"))
    os.rename(tmp, path)
    return str(path)


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
