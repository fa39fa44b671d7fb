"""Thermo Fisher EER movies (Falcon 4/4i): the reader (raw frames grouped into fractions) and the probe.

An EER file is a little-endian BigTIFF whose pages are *raw frames* (one detector read-out each,
TIFF compression 65000, 65001 or 65002); an optional first page with compression 1 (an integrated
image written by TIA) is skipped. Tag 65001 of the first page holds the acquisition metadata as XML
(``<metadata><item name="numberOfFrames">...``), exposed as ``eer_metadata``. The bit coding and
the decoding kernels are in :mod:`~framewatch.core.movie_io.eer_decode`; how raw frames form
fractions (every raw frame is used) in :mod:`~framewatch.core.movie_io.eer_grouping`. Both stay
importable from here.

Orientation: EER frames are **not** flipped in Y. Row 0 of a decoded frame is the first row of the
bit stream, as MotionCor3 (``EerUtil``) and RELION (``renderEER.cpp``) render it, unlike TIFF movie
frames, which IMOD, SerialEM, MotionCor2, RELION and :mod:`framewatch.core.movie_io` flip. A Thermo
``.gain`` reference for EER is therefore also read without the flip (:mod:`framewatch.core.gain`).

A fraction is the sum of its raw frames, returned as uint8 when no fraction holds more than 255 raw
frames (a pixel gets at most one event per raw frame), else uint16.

:func:`probe_eer` walks the TIFF structure like the TIFF probe and counts the raw frames whose
directory entry and strips lie inside the file; the metadata's ``numberOfFrames``, when present,
is the count a complete file holds.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..decode_limits import DecodeLimits, check_decoded_size, check_eer_streams
from ..errors import MovieFormatError, SettingsError
from .base import MovieReader, ReadOptions, tiff_pages
from .eer_decode import EER_COMPRESSIONS, PAD_BYTES, EerCoding, decode_eer_frame, decode_into, eer_coding, error_text, first_error
from .eer_grouping import DEFAULT_EER_FRACTION_DOSE_E_PER_A2, DEFAULT_EER_GROUP_FRAMES, EerGrouping, group_eer_frames
from .file_progress import FileProgress, ProbeSource, incomplete, opened
from .tiff_ifd import chain_progress, walk_ifds

__all__ = [
    "EER_SUFFIXES",
    "DEFAULT_EER_GROUP_FRAMES",
    "DEFAULT_EER_FRACTION_DOSE_E_PER_A2",
    "EerCoding",
    "EerGrouping",
    "eer_coding",
    "group_eer_frames",
    "decode_eer_frame",
    "EerReader",
    "probe_eer",
]

EER_SUFFIXES = (".eer", ".ecc")
_PLAUSIBLE_PIXEL_SIZE_A = (0.05, 100.0)
TAG_EER_METADATA = 65001
TIFF_NO_COMPRESSION = 1  # the compression of a TIA integrated image in front of the raw frames


def _eer_pixel_size_a(metadata: dict | None) -> float | None:
    """``sensorPixelSize`` (metres; the pixel size at the specimen in Falcon files) in A, if plausible."""
    if not metadata:
        return None
    value = metadata.get("sensorPixelSize.width")
    if value is None and isinstance(metadata.get("sensorPixelSize"), dict):
        value = metadata["sensorPixelSize"].get("width")
    try:
        size_a = float(value) * 1e10
    except (TypeError, ValueError):
        return None
    low, high = _PLAUSIBLE_PIXEL_SIZE_A
    return float(f"{size_a:.6g}") if low <= size_a <= high else None


class EerReader(MovieReader):
    """An EER movie read as fractions; made by :func:`framewatch.core.movie_io.open_movie`.

    Attributes beyond :class:`MovieReader`'s: ``n_frames`` is the number of **fractions**;
    ``n_raw_frames``; ``raw_frames_per_fraction`` (tuple, one entry per fraction);
    ``dose_per_fraction_e_per_a2`` (mean, ``None`` without a dose); ``dose_per_raw_frame_e_per_a2``;
    ``grouping`` (:class:`EerGrouping`); ``upsampling``; ``coding`` (:class:`EerCoding`);
    ``sensor_shape`` ``(ny, nx)``; ``eer_metadata`` (the XML items as a dict, or ``None``);
    ``header_n_frames`` (``numberOfFrames`` from the metadata, or ``None``). ``shape`` is the sensor
    size times ``upsampling``. Frames are not flipped (module docstring).
    """

    format = "eer"

    def __init__(
        self,
        path: Path,
        *,
        check_values: bool,
        fraction_dose_e_per_a2: float | None = None,
        group_frames: int | None = None,
        upsampling: int = 1,
        total_dose_e_per_a2: float | None = None,
        limits: DecodeLimits | None = None,
    ) -> None:
        import tifffile

        super().__init__(path, check_values=check_values, limits=limits)
        if upsampling not in (1, 2):
            raise SettingsError(
                f"EER upsampling {upsampling} is not supported", fix="use --eer-upsampling 1 (4K) or 2 (8K)"
            )
        self.upsampling = int(upsampling)
        try:
            self._tiff = tifffile.TiffFile(path)
        except Exception as err:
            raise MovieFormatError(
                f"not a readable EER (TIFF) file ({err})", path=path,
                fix="wait until the file is written completely, or re-copy it",
            ) from err
        try:
            self._setup()
            self.grouping = group_eer_frames(
                self.n_raw_frames,
                group_frames=group_frames,
                fraction_dose_e_per_a2=fraction_dose_e_per_a2,
                total_dose_e_per_a2=total_dose_e_per_a2,
            )
            self._fd = os.open(path, os.O_RDONLY)
        except BaseException:
            self._tiff.close()
            raise
        self._tiff.close()  # the page index is read; frames are read with os.pread
        g = self.grouping
        self.n_frames = g.n_fractions
        self.raw_frames_per_fraction = g.raw_frames_per_fraction
        self.dose_per_fraction_e_per_a2 = g.dose_per_fraction_e_per_a2
        self.dose_per_raw_frame_e_per_a2 = g.dose_per_raw_frame_e_per_a2
        largest = max(self.raw_frames_per_fraction)
        self.dtype = np.dtype(np.uint8 if largest <= 255 else np.uint16)
        ny, nx = self.sensor_shape
        self.shape = (ny * self.upsampling, nx * self.upsampling)
        try:
            check_decoded_size(path=path, frame_shape=self.shape, n_frames=self.n_frames, itemsize=self.dtype.itemsize,
                               limits=self._limits)
        except BaseException:
            os.close(self._fd)
            raise
        if self.pixel_size_a is not None:
            self.pixel_size_a = float(f"{self.pixel_size_a / self.upsampling:.6g}")

    def _setup(self) -> None:
        path = self.path
        pages = tiff_pages(self._tiff, path)
        if pages and pages[0].compression == 1 and len(pages) > 1:
            pages = pages[1:]  # an integrated image written first by TIA
        if not pages:
            raise MovieFormatError("has no EER frames (no TIFF pages)", path=path, fix="re-acquire or re-export the movie")
        first = pages[0]
        compression = int(first.compression)
        if compression not in EER_COMPRESSIONS:
            raise MovieFormatError(
                f"TIFF compression {compression} is not an EER compression (65000, 65001, 65002)",
                path=path,
                fix="an .eer file must hold Falcon electron-event frames; rename TIFF movies to .tif",
            )
        tags = first.tags
        try:
            self.coding = eer_coding(
                compression,
                skip_bits=tags.valueof(65007) if compression == 65002 else None,
                horz_bits=tags.valueof(65008) if compression == 65002 else None,
                vert_bits=tags.valueof(65009) if compression == 65002 else None,
            )
        except ValueError as err:
            raise MovieFormatError(str(err), path=path, fix="this EER variant is not supported") from err
        shape = (int(first.imagelength), int(first.imagewidth))
        offsets, counts = [], []
        for index, page in enumerate(pages):
            if int(page.compression) != compression or (int(page.imagelength), int(page.imagewidth)) != shape:
                raise MovieFormatError(
                    f"EER raw frame {index} has compression {page.compression} and size "
                    f"{page.imagewidth} x {page.imagelength}; frame 0 has {compression} and {shape[1]} x {shape[0]}",
                    path=path,
                    fix="every raw frame of an EER movie must have the same coding and size",
                )
            offsets.append(tuple(int(o) for o in page.dataoffsets))
            counts.append(tuple(int(c) for c in page.databytecounts))
        file_bytes = os.path.getsize(path)
        check_eer_streams(path=path, sensor_shape=shape, frame_bytes=[sum(c) for c in counts], skip_bits=self.coding.skip_bits,
                          file_bytes=file_bytes)
        for index, (offs, cnts) in enumerate(zip(offsets, counts)):
            if not offs or any(o + c > file_bytes for o, c in zip(offs, cnts)):
                raise MovieFormatError(
                    f"truncated: EER raw frame {index} lies beyond the end of the file ({file_bytes} bytes)",
                    path=path,
                    fix="wait until the file is written completely, or re-copy it",
                )
        try:
            metadata = self._tiff.eer_metadata
        except Exception:
            metadata = None
        self.eer_metadata = dict(metadata) if metadata else None
        header_n = _header_frame_count(None if self.eer_metadata is None else self.eer_metadata.get("numberOfFrames"))
        self.header_n_frames = header_n
        if header_n is not None and len(pages) < header_n:
            raise MovieFormatError(
                f"truncated: {len(pages)} raw frames, the EER header lists {header_n}",
                path=path,
                fix="wait until the file is written completely, or re-copy it",
            )
        self._strip_offsets = offsets
        self._strip_counts = counts
        self.n_raw_frames = len(pages)
        self.sensor_shape = shape
        self.pixel_size_a = _eer_pixel_size_a(self.eer_metadata)

    def _read_bytes(self, first: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Strip bytes of raw frames ``first:stop`` in one padded buffer: (buf, starts, sizes)."""
        return read_strip_bytes(self._fd, self._strip_offsets, self._strip_counts, first, stop, self.path)

    def read_raw_bytes(self, first: int, stop: int) -> int:
        """Read (and discard) the strip bytes of raw frames ``first:stop``; returns the byte count.

        The I/O floor of decoding: the same reads :meth:`read_frame` does, without the decoding.
        """
        buf, _, sizes = self._read_bytes(first, stop)
        return int(sizes.sum())

    def _read_raw(self, index: int) -> np.ndarray:
        first, stop = self.grouping.boundaries[index], self.grouping.boundaries[index + 1]
        buf, starts, sizes = self._read_bytes(first, stop)
        return decode_raw_frames(buf, starts, sizes, first=first, sensor_shape=self.sensor_shape, coding=self.coding,
                                 upsampling=self.upsampling, dtype=self.dtype, path=self.path)

    def _close(self) -> None:
        os.close(self._fd)


def read_strip_bytes(fd: int, strip_offsets, strip_counts, first: int, stop: int,
                     path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Strip bytes of raw frames ``first:stop`` (``strip_offsets[i]``/``strip_counts[i]``: raw frame
    ``i``'s strips) read from ``fd`` into one buffer padded by ``PAD_BYTES`` zeros: (buf, starts, sizes)."""
    sizes = np.array([sum(strip_counts[raw]) for raw in range(first, stop)], dtype=np.int64)
    starts = np.zeros(sizes.size, dtype=np.int64)
    if sizes.size > 1:
        np.cumsum(sizes[:-1], out=starts[1:])
    total = int(sizes.sum())
    buf = np.empty(total + PAD_BYTES, dtype=np.uint8)
    buf[total:] = 0
    view = memoryview(buf)
    for k, raw in enumerate(range(first, stop)):
        at = int(starts[k])
        for offset, count in zip(strip_offsets[raw], strip_counts[raw]):
            done = 0
            while done < count:
                got = os.preadv(fd, [view[at + done: at + count]], offset + done)
                if got <= 0:
                    raise MovieFormatError(
                        f"truncated: EER raw frame {raw} has {done} of {count} bytes",
                        path=path,
                        fix="the file shrank while being read; re-copy it",
                    )
                done += got
            at += count
    return buf, starts, sizes


def decode_raw_frames(buf, starts, sizes, *, first: int, sensor_shape: tuple[int, int], coding: EerCoding,
                      upsampling: int, dtype: np.dtype, path: Path) -> np.ndarray:
    """The sum of the raw frames in ``buf`` (from :func:`read_strip_bytes`; the first is raw frame
    ``first``): ``(ny * upsampling, nx * upsampling)`` of ``dtype``; a corrupt stream is a MovieFormatError."""
    out = np.zeros((sensor_shape[0] * upsampling, sensor_shape[1] * upsampling), dtype=dtype)
    status = decode_into(buf, starts, sizes, shape=sensor_shape, coding=coding, upsampling=upsampling, out=out)
    raise_for_status(status, first, path)
    return out


def raise_for_status(status: np.ndarray, first: int, path: Path) -> None:
    """A :class:`MovieFormatError` naming the first corrupt raw frame (``status`` from the decoder;
    its entry 0 is raw frame ``first``)."""
    error = first_error(status)
    if error is not None:
        raise MovieFormatError(
            f"EER raw frame {first + error[0]} is corrupt: {error_text(error[1])}",
            path=path,
            fix="the file is damaged or incomplete; re-copy it or exclude the movie",
        )


def header_frame_count_xml(xml: bytes | None) -> int | None:
    """``numberOfFrames`` of the raw EER metadata XML (tag 65001), or ``None``."""
    found = _NUMBER_OF_FRAMES.search(xml) if xml else None
    return _header_frame_count(found.group(1).strip() if found else None)


def _header_frame_count(value) -> int | None:
    """``numberOfFrames`` of the EER metadata as a number, or ``None`` when absent or not a number."""
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def open_eer(path: Path, options: ReadOptions) -> EerReader:
    """The registry's opener for EER movies (the ``eer_*`` options of :class:`ReadOptions`)."""
    return EerReader(
        path,
        check_values=options.check_values,
        fraction_dose_e_per_a2=options.eer_fraction_dose_e_per_a2,
        group_frames=options.eer_group_frames,
        upsampling=options.eer_upsampling,
        total_dose_e_per_a2=options.eer_total_dose_e_per_a2,
        limits=options.limits,
    )


_NUMBER_OF_FRAMES = re.compile(rb'<item\s+name="numberOfFrames"[^>]*>([^<]*)</item>')


def probe_eer(source: ProbeSource, *, frames_expected: int | None = None) -> FileProgress:
    """How many raw frames of an EER movie are on disk, from its TIFF structure (nothing is decoded).

    ``frames_readable`` counts raw frames (a TIA integrated image in front is not one) whose
    directory entry and strips lie inside the file. ``frames_expected`` defaults to the metadata's
    ``numberOfFrames``; without either, the file is complete when its page chain is whole (more raw
    frames than the metadata lists are accepted, as the reader does). Never raises for a short or
    garbage file; ``OSError`` from opening or reading passes through.
    """
    with opened(source) as (f, size):
        if size == 0:
            return incomplete("empty file", frames_expected=frames_expected)
        chain = walk_ifds(f, size, extra_tags=(TAG_EER_METADATA,))
    pages = chain.pages
    header_n = header_frame_count_xml(pages[0].extra.get(TAG_EER_METADATA)) if pages else None
    if pages and pages[0].compression == TIFF_NO_COMPRESSION:
        pages = pages[1:]
    stop = chain.stop_reason
    for index, page in enumerate(pages):
        if page.compression not in EER_COMPRESSIONS or page.compression != pages[0].compression:
            pages, stop = pages[:index], (f"raw frame {index} has TIFF compression {page.compression}, raw frame 0 "
                                          f"{pages[0].compression} (EER compressions are 65000, 65001, 65002)")
            break
    if not pages and stop is None:
        stop = "no EER raw frames"
    if frames_expected is None and header_n is not None and len(pages) > header_n and stop is None:
        return FileProgress(complete=True, frames_readable=len(pages), frames_expected=header_n,
                            reason=f"all {header_n} raw frames are on disk, and {len(pages) - header_n} more")
    return chain_progress(len(pages), stop, header_n if frames_expected is None else frames_expected)
