"""framewatch's version, from the installed package's metadata (one place for the CLI, the
``daemon_started`` line, the correct command's records and the Dask workers' version check)."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def framewatch_version() -> str:
    """``importlib.metadata.version("framewatch")``; ``0+unknown`` in a source tree that is not installed."""
    try:
        return version("framewatch")
    except PackageNotFoundError:
        return "0+unknown"
