"""Named pause points for crash tests (inactive unless the environment asks for them).

``FRAMEWATCH_PAUSE_AT=name[,name...]`` makes :func:`checkpoint` of that name write
``$FRAMEWATCH_PAUSE_DIR/<name>.reached`` and then sleep, so a test can SIGKILL the daemon at a known
point: ``worker_reading`` (the worker has read the first frame), ``worker_corrected`` (the result is
computed, not yet handed back), ``append_data_written`` (a section's data is on disk, the header
not yet grown), ``append_between_stacks`` (the dose-weighted stack has the section, EVN/ODD not),
``before_journal_done`` (all stacks appended, journal not yet updated). A file
``<name>.release`` in that directory lets later arrivals at the point pass.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

_ENV = "FRAMEWATCH_PAUSE_AT"
_DIR = "FRAMEWATCH_PAUSE_DIR"


def checkpoint(name: str) -> None:
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
