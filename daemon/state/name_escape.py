"""File names that are not valid UTF-8: how they are stored and how they are shown.

Linux file names are bytes; Python gives a name with a byte that is not UTF-8 (``b"bad\\xff.tif"``)
as a ``str`` holding a lone surrogate (``"bad\\udcff.tif"``, PEP 383 ``surrogateescape``), which
``os.open`` turns back into the same bytes but which no UTF-8 text (the SQLite journal, the drift
log, the tilt tables) can hold. The rules, in one place:

- **opened** with the ``str`` as Python gives it (``os.fsencode`` gives back the exact bytes);
- **stored** in the journal as TEXT when the name is valid UTF-8 (every ordinary name, so older
  journals read the same), else as a BLOB of the exact bytes (``os.fsencode``); read back with
  ``os.fsdecode`` -- a lossless round trip (:func:`db_value`, :func:`from_db`);
- **shown** (drift log, operational log, tilt tables, STAR, series and output names) with each
  undecodable byte written as ``\\xNN`` (:func:`shown`, Python's ``backslashreplace``): ``bad\\xff.tif``.
  A series named from such a file is named by its shown text, so its output directory and stack
  names are plain UTF-8.
"""
from __future__ import annotations

import os


def is_text(name: str) -> bool:
    """True when ``name`` is valid UTF-8 text (no lone surrogate from an undecodable byte)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(name) -> str:
    """The printable form of a name: undecodable bytes as ``\\xNN`` (``bad\\xff.tif``); valid names unchanged."""
    if isinstance(name, bytes):
        return name.decode("utf-8", "backslashreplace")
    name = str(name)
    if is_text(name):
        return name
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def db_value(name: str) -> str | bytes:
    """The journal value of a path or name: itself when valid UTF-8, else the exact bytes (a BLOB)."""
    return name if is_text(name) else os.fsencode(name)


def from_db(value):
    """A journal value back to the ``str`` Python uses for that file name (BLOB -> ``os.fsdecode``)."""
    if isinstance(value, (bytes, memoryview)):
        return os.fsdecode(bytes(value))
    return value
