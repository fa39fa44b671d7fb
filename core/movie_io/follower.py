"""What the per-format parts of :class:`~framewatch.core.movie_io.growing.GrowingMovie` share: the
:class:`Follower` base (one per format: ``growing_mrc.py``, ``growing_pages.py``, ``growing_eer.py``)
and :func:`changed`, the :class:`~framewatch.core.errors.MovieChangedError` they raise."""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import MovieChangedError
from .base import ReadOptions

CHANGED_FIX = "the movie was changed while it was read; read the finished file again"


def changed(path: Path, what: str) -> MovieChangedError:
    """The error for a file that changed under its follower (``what``: how)."""
    return MovieChangedError(what, path=path, fix=CHANGED_FIX)


class Follower(ABC):
    """Follows one format's file as it grows; :class:`GrowingMovie` checks the file's identity and
    size and passes its open file ``f`` and size ``size`` in bytes.

    Attributes: ``shape`` ``(ny, nx)`` of a decoded frame or ``None`` until known;
    ``frames_returned``; ``raw_frames_read``; ``dose_per_fraction_e_per_a2`` (EER).
    """

    shape: tuple[int, int] | None = None
    dose_per_fraction_e_per_a2: float | None = None

    def __init__(self, path: Path, options: ReadOptions) -> None:
        self.path = path
        self.options = options
        self.frames_returned = 0

    @property
    def raw_frames_read(self) -> int:
        return self.frames_returned

    @abstractmethod
    def poll(self, f: BinaryIO, size: int, max_frames: int | None = None) -> list[np.ndarray]:
        """The frames that became readable since the last poll (at most ``max_frames`` of them, the
        first ones; the others at the next poll)."""

    @abstractmethod
    def rest(self, f: BinaryIO, size: int, n_frames: int) -> list[np.ndarray]:
        """The remaining frames of the complete file of ``n_frames`` frames."""

    def set_total_dose(self, total_dose_e_per_a2: float | None, n_raw: int) -> None:
        """The dose of the whole movie, known only at the end; only EER fractions depend on it."""
