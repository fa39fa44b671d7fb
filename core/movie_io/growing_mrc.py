"""Following an MRC movie while it is written (the MRC part of
:class:`~framewatch.core.movie_io.growing.GrowingMovie`).

A frame is readable when the header's ``nz`` counts it and its bytes are in the file
(:func:`~framewatch.core.movie_io.mrc.probe_mrc`): SerialEM writes the final ``nz`` with the first
frame; other writers raise ``nz`` after each frame. The header is read again at each poll (1 kB):
its frame layout (size, mode, byte order, extended header) must not change and ``nz`` must not fall
below the frames already returned. In :meth:`MrcFollower.rest` the first and last 64 bytes of
every frame returned are read again and compared (a file truncated and written again between two
polls, which keeps size and header, is caught there).
"""
from __future__ import annotations

from typing import BinaryIO

import numpy as np

from ..decode_limits import check_decoded_size
from ..errors import MovieFormatError
from .base import check_finite
from .file_progress import read_at
from .follower import Follower, changed
from .mrc import check_frames_on_disk, probe_mrc, read_mrc_frame
from .mrc_header import MRC_HEADER_BYTES, MrcLayout, mrc_layout

_SAMPLE_BYTES = 64


def _frame_layout(layout: MrcLayout) -> tuple:
    """Everything of a layout that places and decodes frames (not ``nz``, nor dmin/dmax/dmean)."""
    h = layout.header
    return (h.nx, h.ny, h.mode, h.byte_order, layout.stored_dtype.str, layout.packed_4bit, layout.data_offset,
            layout.frame_bytes)


class MrcFollower(Follower):
    """An MRC movie followed as it grows."""

    _layout: MrcLayout | None = None

    def __init__(self, path, options) -> None:
        super().__init__(path, options)
        self._samples: list[bytes] = []  # of the frames returned (checked again in rest())

    def poll(self, f: BinaryIO, size: int, max_frames: int | None = None) -> list[np.ndarray]:
        layout = self._header(f, size)
        if layout is None:
            return []
        readable = min(probe_mrc(f).frames_readable, int(layout.header.nz))
        if max_frames is not None:
            readable = min(readable, self.frames_returned + max(0, int(max_frames)))
        return self._read(f, readable)

    def rest(self, f: BinaryIO, size: int, n_frames: int) -> list[np.ndarray]:
        layout = self._header(f, size)
        if layout is None:
            raise changed(self.path, f"its writer said it is complete with {n_frames} frames, but its MRC header "
                          "is not whole or says 0 frames")
        nz = int(layout.header.nz)
        if nz != n_frames:
            raise changed(self.path, f"its writer said it is complete with {n_frames} frames, its MRC header says {nz}")
        try:
            check_frames_on_disk(layout, size, self.path)
        except MovieFormatError as err:
            raise changed(self.path, err.what) from err
        for index, sample in enumerate(self._samples):
            if self._sample(f, index) != sample:
                raise changed(self.path, f"frame {index} was rewritten after it was read")
        return self._read(f, nz)

    def _sample(self, f: BinaryIO, index: int) -> bytes:
        """The first and last ``_SAMPLE_BYTES`` of frame ``index`` (a file truncated and written again
        between two polls keeps its size and header but not these)."""
        start = self._layout.data_offset + index * self._layout.frame_bytes
        n = min(_SAMPLE_BYTES, self._layout.frame_bytes)
        return read_at(f, start, n) + read_at(f, start + self._layout.frame_bytes - n, n)

    def _header(self, f: BinaryIO, size: int) -> MrcLayout | None:
        """The header now, checked against the one frames were read with; ``None`` while it is not
        whole (or says 0 frames) and no frame was read."""
        raw = read_at(f, 0, MRC_HEADER_BYTES) if size >= MRC_HEADER_BYTES else b""
        if len(raw) < MRC_HEADER_BYTES:
            if self._layout is not None:
                raise changed(self.path, "its MRC header is gone")
            return None
        try:
            layout = mrc_layout(raw, self.path)
        except MovieFormatError as err:
            if self._layout is None:
                raise
            raise changed(self.path, f"its MRC header changed: {err.what}") from err
        nz = int(layout.header.nz)
        if self._layout is None:
            if nz == 0:
                return None
        elif _frame_layout(layout) != _frame_layout(self._layout):
            raise changed(self.path, "its MRC header changed (frame size, mode or extended header) after "
                          f"{self.frames_returned} frames were read")
        elif nz < self.frames_returned:
            raise changed(self.path, f"its MRC header says {nz} frames, {self.frames_returned} were read already")
        if self._layout is None or nz != int(self._layout.header.nz):
            check_decoded_size(path=self.path, frame_shape=(layout.header.ny, layout.width), n_frames=nz,
                               itemsize=layout.stored_dtype.itemsize, limits=self.options.limits)
        self._layout = layout
        self.shape = (int(layout.header.ny), int(layout.width))
        return layout

    def _read(self, f: BinaryIO, stop: int) -> list[np.ndarray]:
        frames = []
        for index in range(self.frames_returned, stop):
            try:
                frame = read_mrc_frame(f.fileno(), self._layout, index, self.path)
            except MovieFormatError as err:  # a short read: the file shrank since its size was taken
                raise changed(self.path, err.what) from err
            if self.options.check_values:
                check_finite(frame, index, self.path)
            frames.append(frame)
            self._samples.append(self._sample(f, index))
            self.frames_returned = index + 1
        return frames
