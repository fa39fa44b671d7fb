"""Errors raised by the engine.

Every error names the file it is about (when there is one), what is wrong, and the fix, so the
command line and the daemon can show it as one line without a traceback.
"""
from __future__ import annotations

from pathlib import Path


class FramewatchError(Exception):
    """Base class: a problem with the input or the settings, explained for a user.

    ``str(err)`` is one line: ``"<path>: <what is wrong>; <fix>"``.
    """

    def __init__(self, what: str, *, path: str | Path | None = None, fix: str | None = None):
        self.path = None if path is None else Path(path)
        self.what = what
        self.fix = fix
        text = what if self.path is None else f"{self.path}: {what}"
        if fix:
            text = f"{text}; {fix}"
        super().__init__(text)


class MovieFormatError(FramewatchError):
    """A movie file cannot be read: truncated, empty, unknown mode, bad values, wrong shape."""


class GainError(FramewatchError):
    """A gain reference cannot be read or does not match the movie."""


class DefectFileError(FramewatchError):
    """A defect list cannot be parsed or lies outside the frame."""


class SettingsError(FramewatchError):
    """A processing setting is missing or out of range."""


class DecodeLimitError(MovieFormatError):
    """A movie declares more than it can hold or than the decode limits allow; nothing was decoded."""


class MovieContentError(FramewatchError):
    """A movie's values cannot give a meaningful image (all zero, mostly negative, or so large that
    the sums overflow to NaN/Inf); retrying the same file gives the same answer."""


class MovieChangedError(MovieFormatError):
    """A movie file changed under a reader that follows it while it is written (truncated, replaced,
    its header or page directory rewritten for frames already read, or its final frame count not the
    one announced): what was read from it so far cannot be trusted; read the finished file again."""


class StreamCancelled(FramewatchError):
    """A streaming correction was cancelled by its caller before the movie was complete."""


class StreamStalled(MovieChangedError):
    """A movie followed while it is written stopped growing for longer than the stall limit before
    its writer said it was complete. A :class:`MovieChangedError`, so a caller that falls back to
    reading the finished file on one does so here too."""


class StreamNotStarted(FramewatchError):
    """A movie followed while it is written was complete before the stream had corrected a frame (a
    movie renamed into place in whole, its writer's signal close behind): reading it as a complete
    movie is faster (the final defect mask known before any transform, two readers at once). Raised
    only when the caller asks for it."""


class StreamSettingsChanged(FramewatchError):
    """The final settings of a movie followed while it was written differ from those it was followed
    with in what the frames already read depend on (frame geometry, alignment binning, gain
    orientation, an EER movie's grouping): read the finished file again with the final settings."""
