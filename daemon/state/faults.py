"""Named pause points for crash tests (inactive unless the environment asks for them).

``FRAMEWATCH_PAUSE_AT=name[,name...]`` makes :func:`checkpoint` of that name write
``$FRAMEWATCH_PAUSE_DIR/<name>.reached`` and then sleep, so a test can SIGKILL the daemon at a known
point: ``worker_reading`` (the worker has opened the movie and read its structure; a stream: the
movie was found complete), ``worker_corrected`` (the result is
computed, not yet handed back), ``append_data_written`` (a section's data is on disk, the header
not yet grown), ``append_between_stacks`` (the dose-weighted stack has the section, EVN/ODD not),
``before_journal_done`` (all stacks appended, journal not yet updated), ``after_tilt_logged`` (the
``tilt_corrected`` line written, the journal not yet told), ``before_failed_logged`` (a movie
journalled failed, its ``movie_failed`` line not yet written), ``after_failed_logged`` (the line
written, the journal not yet told). A file
``<name>.release`` in that directory lets later arrivals at the point pass.

``FRAMEWATCH_HOLD_DIR=DIR`` holds one movie at a point instead of stopping everything: when
``DIR/<name>.hold`` exists and holds the movie's file name, the process that reaches the point with
that movie writes ``DIR/<name>.held`` and waits until the ``.hold`` file is removed (at most
``HOLD_MAX_S``), then goes on; other movies pass. The torture run uses it to delete a movie while
a worker reads it.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

_ENV = "FRAMEWATCH_PAUSE_AT"
_DIR = "FRAMEWATCH_PAUSE_DIR"
_HOLD_DIR = "FRAMEWATCH_HOLD_DIR"
HOLD_MAX_S = 120.0


def checkpoint(name: str, subject: str | os.PathLike | None = None) -> None:
    if subject is not None and os.environ.get(_HOLD_DIR):
        _hold(Path(os.environ[_HOLD_DIR]), name, os.path.basename(os.fspath(subject)))
    wanted = os.environ.get(_ENV)
    if not wanted or name not in wanted.split(","):
        return
    d = Path(os.environ.get(_DIR, "."))
    if (d / f"{name}.release").exists():
        return
    try:
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{name}.reached").write_text(f"{os.getpid()}\n")
    except OSError:
        pass
    while True:  # until killed
        time.sleep(3600)


def _hold(d: Path, name: str, subject: str) -> None:
    hold = d / f"{name}.hold"
    try:
        if hold.read_text().strip() != subject:
            return
        (d / f"{name}.held").write_text(f"{os.getpid()} {subject}\n")
    except OSError:
        return
    deadline = time.monotonic() + HOLD_MAX_S
    while hold.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
