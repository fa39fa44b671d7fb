"""Following an EER movie while it is written (the EER part of
:class:`~framewatch.core.movie_io.growing.GrowingMovie`).

Raw frames are pages of the TIFF chain (:class:`~framewatch.core.movie_io.growing_pages.PageChain`;
a TIA integrated image in front is skipped, as the reader does). A fraction holds raw frames
``floor(i n / n_f)`` to ``floor((i + 1) n / n_f)`` of the movie's ``n`` raw frames
(:mod:`~framewatch.core.movie_io.eer_grouping`), whether the grouping is given in raw frames or as
a dose target, so the fractions are known before the end only when ``n`` is:

- the metadata of the first page gives ``numberOfFrames``: the grouping is made from it at once and
  each fraction is decoded and returned as soon as its last raw frame is on disk. If the file ends
  with another count, :meth:`EerFollower.rest` raises
  :class:`~framewatch.core.errors.MovieChangedError` (the reader would group differently);
- no count in the metadata: each raw frame is parsed into its events as it arrives (the first pass
  of the decoder: one int32 per event, two at 8K upsampling; about 4 bytes per electron against the
  ~1.4 bytes of the file) and :meth:`EerFollower.rest` builds the fractions from them (the cheap
  second pass). :meth:`EerFollower.poll` returns no fraction then.

Both give the fractions of :func:`~framewatch.core.movie_io.open_movie` exactly.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..decode_limits import check_decoded_size, check_eer_streams
from ..errors import MovieFormatError, SettingsError, StreamSettingsChanged
from .eer import (
    TAG_EER_METADATA,
    TIFF_NO_COMPRESSION,
    decode_raw_frames,
    header_frame_count_xml,
    raise_for_status,
    read_strip_bytes,
)
from .eer_decode import EER_COMPRESSIONS, EerCoding, EerEvents, eer_coding, join_events, parse_events, scatter_events
from .eer_grouping import EerGrouping, group_eer_frames
from .follower import Follower, changed
from .growing_pages import PageChain, pages_at


class EerFollower(Follower):
    """An EER movie followed as it grows; frames are fractions (module docstring)."""

    def __init__(self, path: Path, options) -> None:
        super().__init__(path, options)
        if options.eer_upsampling not in (1, 2):
            raise SettingsError(f"EER upsampling {options.eer_upsampling} is not supported",
                                fix="use --eer-upsampling 1 (4K) or 2 (8K)")
        self.upsampling = int(options.eer_upsampling)
        self._chain = PageChain(path, extra_tags=(TAG_EER_METADATA,))
        self._skip_first: bool | None = None
        self.header_n_frames: int | None = None
        self.coding: EerCoding | None = None
        self.sensor_shape: tuple[int, int] | None = None
        self._strip_offsets: list[tuple[int, ...]] = []
        self._strip_counts: list[tuple[int, ...]] = []
        self.grouping: EerGrouping | None = None
        self._dtype: np.dtype | None = None
        self._events: list[EerEvents | None] = []

    @property
    def raw_frames_read(self) -> int:
        if self.grouping is not None and self.header_n_frames is not None:
            return self.grouping.boundaries[self.frames_returned]
        return len(self._events)

    def poll(self, f: BinaryIO, size: int, max_frames: int | None = None) -> list[np.ndarray]:
        n_raw = self._ingest(f, size, self._chain.walk(f, size).pages)
        if n_raw == 0:
            return []
        if self.grouping is None and self.header_n_frames is not None:
            try:
                self._set_grouping(self.header_n_frames)
            except SettingsError:  # a dose target before the movie's dose is known: group in rest()
                self.header_n_frames = None
        if self.grouping is not None:
            return self._decode_ready(f, n_raw, max_frames)
        self._parse(f, n_raw)
        return []

    def rest(self, f: BinaryIO, size: int, n_frames: int) -> list[np.ndarray]:
        chain = self._chain.walk(f, size)
        if chain.stop_reason is not None:
            raise changed(self.path, f"its writer said it is complete with {n_frames} raw frames, but its page "
                          f"directory is not whole: {chain.stop_reason}")
        n_raw = self._ingest(f, size, chain.pages)
        if n_raw != n_frames:
            raise changed(self.path, f"its writer said it is complete with {n_frames} raw frames, the file holds {n_raw}")
        if self.grouping is not None:
            if self.header_n_frames != n_raw:
                raise changed(self.path, f"its EER metadata announced {self.header_n_frames} raw frames and the "
                              f"fractions were made for them, but the file holds {n_raw}")
            return self._decode_ready(f, n_raw)
        self._set_grouping(n_raw)
        self._parse(f, n_raw)
        return [self._fraction_from_events(i) for i in range(self.grouping.n_fractions)]

    # ---------------------------------------------------------------------------------- raw frames

    def _ingest(self, f: BinaryIO, size: int, pages) -> int:
        """Record the strips of the raw frames new in ``pages`` (checked as the reader checks them);
        returns the raw frames known."""
        if not pages:
            return 0
        if self._skip_first is None:
            self._skip_first = pages[0].compression == TIFF_NO_COMPRESSION
            self.header_n_frames = header_frame_count_xml(pages[0].extra.get(TAG_EER_METADATA))
        skip = int(self._skip_first)
        new = pages[skip + len(self._strip_offsets):]
        if new:
            with pages_at(f, self.path) as page_at:
                for index, entry in enumerate(new, start=len(self._strip_offsets)):
                    self._add_raw_frame(page_at(entry.ifd_offset, index + skip), index)
            check_eer_streams(path=self.path, sensor_shape=self.sensor_shape,
                              frame_bytes=[sum(c) for c in self._strip_counts], skip_bits=self.coding.skip_bits,
                              file_bytes=size)
        self._chain.keep(pages[len(self._chain.kept):])
        return len(self._strip_offsets)

    def _add_raw_frame(self, page, index: int) -> None:
        compression = int(page.compression)
        shape = (int(page.imagelength), int(page.imagewidth))
        if self.coding is None:
            if compression not in EER_COMPRESSIONS:
                raise MovieFormatError(
                    f"TIFF compression {compression} is not an EER compression (65000, 65001, 65002)",
                    path=self.path,
                    fix="an .eer file must hold Falcon electron-event frames; rename TIFF movies to .tif",
                )
            tags = page.tags
            bits = {name: tags.valueof(tag) if compression == 65002 else None
                    for name, tag in (("skip_bits", 65007), ("horz_bits", 65008), ("vert_bits", 65009))}
            try:
                self.coding = eer_coding(compression, **bits)
            except ValueError as err:
                raise MovieFormatError(str(err), path=self.path, fix="this EER variant is not supported") from err
            self.sensor_shape = shape
            self.shape = (shape[0] * self.upsampling, shape[1] * self.upsampling)
        elif compression != self.coding.compression or shape != self.sensor_shape:
            ny, nx = self.sensor_shape
            raise MovieFormatError(
                f"EER raw frame {index} has compression {compression} and size {shape[1]} x {shape[0]}; frame 0 has "
                f"{self.coding.compression} and {nx} x {ny}",
                path=self.path, fix="every raw frame of an EER movie must have the same coding and size",
            )
        self._strip_offsets.append(tuple(int(o) for o in page.dataoffsets))
        self._strip_counts.append(tuple(int(c) for c in page.databytecounts))

    def _read(self, f: BinaryIO, first: int, stop: int):
        try:
            return read_strip_bytes(f.fileno(), self._strip_offsets, self._strip_counts, first, stop, self.path)
        except MovieFormatError as err:  # a short read: the file shrank since its size was taken
            raise changed(self.path, err.what) from err

    # ----------------------------------------------------------------------------------- fractions

    def set_total_dose(self, total_dose_e_per_a2: float | None, n_raw: int) -> None:
        """The dose of the whole movie, known only now (the mdoc line written after the movie):
        fractions not built yet are grouped with it. Raises :class:`StreamSettingsChanged` when
        fractions already returned were grouped otherwise."""
        options = dataclasses.replace(self.options, eer_total_dose_e_per_a2=total_dose_e_per_a2)
        if self.grouping is not None:
            final = group_eer_frames(n_raw, group_frames=options.eer_group_frames,
                                     fraction_dose_e_per_a2=options.eer_fraction_dose_e_per_a2,
                                     total_dose_e_per_a2=options.eer_total_dose_e_per_a2)
            if final.boundaries != self.grouping.boundaries:
                raise StreamSettingsChanged(
                    f"its fractions were grouped for {self.grouping.n_fractions} and the movie's dose gives "
                    f"{final.n_fractions}", path=self.path, fix="read the finished file with the final dose")
            self.grouping = final
            self.dose_per_fraction_e_per_a2 = final.dose_per_fraction_e_per_a2
        self.options = options

    def _set_grouping(self, n_raw: int) -> None:
        options = self.options
        self.grouping = group_eer_frames(n_raw, group_frames=options.eer_group_frames,
                                         fraction_dose_e_per_a2=options.eer_fraction_dose_e_per_a2,
                                         total_dose_e_per_a2=options.eer_total_dose_e_per_a2)
        self._dtype = np.dtype(np.uint8 if max(self.grouping.raw_frames_per_fraction) <= 255 else np.uint16)
        self.dose_per_fraction_e_per_a2 = self.grouping.dose_per_fraction_e_per_a2
        check_decoded_size(path=self.path, frame_shape=self.shape, n_frames=self.grouping.n_fractions,
                           itemsize=self._dtype.itemsize, limits=options.limits)

    def _decode_ready(self, f: BinaryIO, n_raw: int, max_frames: int | None = None) -> list[np.ndarray]:
        """The fractions not yet returned whose raw frames are all among the ``n_raw`` known (at most
        ``max_frames`` of them), decoded."""
        bounds, out = self.grouping.boundaries, []
        limit = self.grouping.n_fractions if max_frames is None else min(self.grouping.n_fractions,
                                                                          self.frames_returned + max(0, int(max_frames)))
        while self.frames_returned < limit and bounds[self.frames_returned + 1] <= n_raw:
            first, stop = bounds[self.frames_returned], bounds[self.frames_returned + 1]
            buf, starts, sizes = self._read(f, first, stop)
            out.append(decode_raw_frames(buf, starts, sizes, first=first, sensor_shape=self.sensor_shape,
                                         coding=self.coding, upsampling=self.upsampling, dtype=self._dtype,
                                         path=self.path))
            self.frames_returned += 1
        return out

    def _parse(self, f: BinaryIO, n_raw: int) -> None:
        """Parse the raw frames not yet parsed into their events (kept, one compact array each)."""
        first = len(self._events)
        if first >= n_raw:
            return
        buf, starts, sizes = self._read(f, first, n_raw)
        events = parse_events(buf, starts, sizes, shape=self.sensor_shape, coding=self.coding,
                              upsampling=self.upsampling, n_pixels_out=self.shape[0] * self.shape[1])
        raise_for_status(events.status, first, self.path)
        self._events.extend(events.frame(k) for k in range(n_raw - first))

    def _fraction_from_events(self, index: int) -> np.ndarray:
        first, stop = self.grouping.boundaries[index], self.grouping.boundaries[index + 1]
        events = join_events(self._events[first:stop])
        self._events[first:stop] = [None] * (stop - first)  # the compact copies are used once
        out = np.zeros(self.shape, dtype=self._dtype)
        scatter_events(events, shape=self.sensor_shape, upsampling=self.upsampling, out=out)
        self.frames_returned += 1
        return out
