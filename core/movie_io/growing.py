"""Reading a movie file while it is being written: :class:`GrowingMovie`.

A detector (SerialEM, a Falcon) writes a movie frame by frame over the whole exposure.
:class:`GrowingMovie` follows such a file: :meth:`~GrowingMovie.poll` returns the frames that became
readable since the last poll, decoded, in order; :meth:`~GrowingMovie.rest` returns the remaining
ones once the caller knows the file is complete and how many frames it holds. A frame is returned
only when all its bytes are on disk, by the format's own rule (the probes of
:mod:`~framewatch.core.movie_io.file_progress`): MRC, the header's ``nz`` and the file size (the
final ``nz`` written with the first frame, as SerialEM does, or an ``nz`` that grows with the
frames); TIFF and EER, the page directory walk (a page counts once its directory entry and strips
are in the file and the chain reaches it). No frame is decoded twice; a TIFF page directory is walked
again at each poll (a few kB).

EER (:mod:`~framewatch.core.movie_io.growing_eer`): a fraction's raw frames are ``floor(i n / n_f)``
to ``floor((i + 1) n / n_f)`` of the ``n`` raw frames (:mod:`~framewatch.core.movie_io.eer_grouping`),
so fractions are known before the end only when ``n`` is: when the file's metadata (tag 65001 of
the first raw frame) gives ``numberOfFrames``, whole fractions are decoded and returned as their raw
frames arrive; otherwise each raw frame is parsed into its events (one int32 per event, two at 8K)
as it arrives and the fractions are built from them in :meth:`~GrowingMovie.rest`. Either way the
fractions equal :func:`~framewatch.core.movie_io.open_movie`'s of the finished file, value for value.

The file is read through one descriptor opened at the start. Every poll checks that the path still
names that file (not replaced by a rename), that it did not shrink, and that the header or the page
directory of the frames already returned did not change; any of these, and a final count in
:meth:`~GrowingMovie.rest` that is not what the file holds, raises
:class:`~framewatch.core.errors.MovieChangedError` naming the file: what was read cannot be trusted,
read the finished file the ordinary way. The decode limits apply as in ``open_movie``.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from ..decode_limits import DecodeLimits
from ..errors import MovieFormatError
from .base import ReadOptions
from .follower import Follower, changed
from .growing_eer import EerFollower
from .growing_mrc import MrcFollower
from .growing_pages import TiffFollower
from .registry import require_format

__all__ = ["GrowingMovie"]

_FOLLOWERS = {"mrc": MrcFollower, "tiff": TiffFollower, "eer": EerFollower}


class GrowingMovie:
    """A movie file followed while it is written (see the module docstring).

    The keyword options are :func:`~framewatch.core.movie_io.open_movie`'s (``check_values``,
    ``limits``, ``eer_group_frames``, ``eer_fraction_dose_e_per_a2``, ``eer_total_dose_e_per_a2``,
    ``eer_upsampling``: the fields of :class:`~framewatch.core.movie_io.base.ReadOptions`). Attributes: ``path``;
    ``format`` (``"mrc"``, ``"tiff"``, ``"eer"``); ``shape`` ``(ny, nx)`` of a decoded frame, ``None``
    until the header or the first page is on disk; ``frames_returned`` (EER: fractions);
    ``raw_frames_read`` (EER raw frames decoded or parsed so far; other formats: ``frames_returned``);
    ``dose_per_fraction_e_per_a2`` (EER, once the grouping is known and a dose was given; else
    ``None``); ``size_bytes``, the file size at the last poll.
    """

    def __init__(self, path: str | os.PathLike, **options) -> None:
        self.path = Path(path)
        fmt = require_format(self.path)
        self.format = fmt.name
        try:  # open_movie's keyword options are the fields of ReadOptions
            read_options = ReadOptions(**options)
        except TypeError as err:
            raise TypeError(f"GrowingMovie takes open_movie's keyword options: {err}") from None
        if read_options.limits is None:
            read_options = dataclasses.replace(read_options, limits=DecodeLimits())
        try:
            self._file = open(self.path, "rb", buffering=0)  # a buffer would serve stale bytes of a growing file
        except FileNotFoundError:
            raise MovieFormatError("movie file not found", path=self.path,
                                   fix="check the path and that the file was not moved") from None
        stat = os.fstat(self._file.fileno())
        self._identity = (stat.st_dev, stat.st_ino)
        self.size_bytes = 0
        try:
            self._follower: Follower = _FOLLOWERS[fmt.name](self.path, read_options)
        except BaseException:
            self._file.close()
            raise
        self._finished = False

    @property
    def shape(self) -> tuple[int, int] | None:
        return self._follower.shape

    @property
    def frames_returned(self) -> int:
        return self._follower.frames_returned

    @property
    def raw_frames_read(self) -> int:
        return self._follower.raw_frames_read

    @property
    def dose_per_fraction_e_per_a2(self) -> float | None:
        return self._follower.dose_per_fraction_e_per_a2

    def poll(self, max_frames: int | None = None) -> list[np.ndarray]:
        """The frames ``(ny, nx)`` (EER: fractions) that became readable since the last poll, in order;
        at most ``max_frames`` (the first ones: the rest come at the next poll)."""
        self._check_open()
        return self._follower.poll(self._file, self._checked_size(), max_frames)

    def set_total_dose(self, total_dose_e_per_a2: float | None, n_frames: int) -> None:
        """EER: the dose of the whole movie (``n_frames`` raw frames), known only at the end; the
        fractions not built yet are grouped with it (raises
        :class:`~framewatch.core.errors.StreamSettingsChanged` when fractions already returned were
        grouped otherwise). Other formats: nothing to do."""
        self._follower.set_total_dose(total_dose_e_per_a2, int(n_frames))

    def rest(self, n_frames: int) -> list[np.ndarray]:
        """The remaining frames of the complete file, which holds ``n_frames`` frames (MRC sections,
        TIFF pages, EER raw frames). Raises :class:`MovieChangedError` when it does not."""
        self._check_open()
        if int(n_frames) < 1:
            raise MovieFormatError(f"has {n_frames} frames", path=self.path, fix="check the acquisition wrote the frames")
        frames = self._follower.rest(self._file, self._checked_size(), int(n_frames))
        self._finished = True
        return frames

    def close(self) -> None:
        """Release the file; safe to call twice."""
        self._file.close()

    def __enter__(self) -> "GrowingMovie":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._file.closed:
            raise ValueError(f"{self.path}: growing movie is closed")
        if self._finished:
            raise ValueError(f"{self.path}: rest() was called already")

    def _checked_size(self) -> int:
        """The file's size now, after checking it is still the file opened and did not shrink."""
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            raise changed(self.path, "deleted or moved away while it was read") from None
        if (named.st_dev, named.st_ino) != self._identity:
            raise changed(self.path, "replaced by another file while it was read")
        size = os.fstat(self._file.fileno()).st_size
        if size < self.size_bytes:
            raise changed(self.path, f"truncated while it was read: {size} bytes, {self.size_bytes} before")
        self.size_bytes = size
        return size
