"""The three directories of ``framewatch watch`` must not overlap in ways that lose data.

- ``OUT = WATCH``, or WATCH inside OUT: the daemon never watches its own output directory, so every
  movie would be ignored without a word. Refused.
- OUT inside WATCH (``WATCH/processed``): common and allowed; the watcher skips OUT entirely (and
  the outputs never follow links planted there: no_follow.py).
- STATE (the journal) inside OUT or WATCH, or equal to either: the journal would be copied, synced
  or deleted with the outputs (or watched as input). Refused.

Paths are compared after resolving links (``os.path.realpath``), so a link to the same directory
is found too. Raises :class:`SettingsError` naming both directories and the fix; used at start-up
and by ``framewatch check-config``.
"""
from __future__ import annotations

import os
from pathlib import Path

from framewatch.core.errors import SettingsError

__all__ = ["check_directory_roles"]


def _inside(inner: Path, outer: Path) -> bool:
    """True when ``inner`` is ``outer`` or lies below it."""
    return inner == outer or outer in inner.parents


def check_directory_roles(*, watch_dir: str | os.PathLike, out_dir: str | os.PathLike,
                          state_dir: str | os.PathLike | None = None) -> None:
    watch = Path(os.path.realpath(watch_dir))
    out = Path(os.path.realpath(out_dir))
    if out == watch:
        raise SettingsError(f"the output directory is the watch directory ({watch}): framewatch never watches its own outputs, "
                            "so every movie would be ignored",
                            fix="give --out (or [output] dir) a directory of its own, e.g. a subdirectory of the watch directory")
    if _inside(watch, out):
        raise SettingsError(f"the watch directory {watch} lies inside the output directory {out}: framewatch never watches "
                            "its own outputs, so every movie would be ignored",
                            fix="give --out (or [output] dir) a directory outside the watch directory, or a subdirectory of it")
    if state_dir is None:
        return
    state = Path(os.path.realpath(state_dir))
    for role, d in (("output", out), ("watch", watch)):
        if _inside(state, d):
            what = "outputs" if role == "output" else "movies"
            raise SettingsError(f"the state directory {state} (the journal) lies inside the {role} directory {d}: it would be "
                                f"copied, moved or deleted with the {what}",
                                fix="give --state (or [output] state_dir) a directory of its own, outside both")
