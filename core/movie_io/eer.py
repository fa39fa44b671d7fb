"""Thermo Fisher EER movies (Falcon 4/4i): decoding electron events and grouping raw frames.

Format (what this module relies on; sources below)
--------------------------------------------------
An EER file is a little-endian BigTIFF. Every page is one *raw frame*: one detector read-out
(about 248 per second on a Falcon 4), stored as one or more strips that together form one bit
stream, with TIFF compression 65000, 65001 or 65002. An optional first page with compression 1
(an integrated image written by TIA) is skipped. Tag 65001 of the first page holds the acquisition
metadata as XML (``<metadata><item name="numberOfFrames">...``), exposed as ``eer_metadata``.

The bit stream is read least-significant bit first. Each code starts with a *run length* of
``skip_bits`` bits: that many pixels (raster order, x fastest) hold no event. A run of all ones
(127 for 7 bits, 255 for 8 bits) continues into the next code without an event. Any other run is
followed by ``horz_bits`` then ``vert_bits`` bits of sub-pixel position, and the event lies on the
pixel the run reached; the next run starts on the pixel after it, so a pixel holds at most one event
per raw frame. The frame ends when a run reaches the last pixel exactly.

==============  =========  ========  ======  =====================================================
compression     skip bits  sub-pixel  code    overflow code (run of all ones)
==============  =========  ========  ======  =====================================================
65000 (v0)      8          2 + 2     12      takes the full 12 bits (its 4 sub-pixel bits unused)
65001 (v1)      7          2 + 2     11      takes only its 7 run bits
65002 (v2)      tag 65007  65008 +   sum     takes only its run bits; tags default to 7, 2, 2
                           65009
==============  =========  ========  ======  =====================================================

The sub-pixel fields are stored with their most significant bit inverted (``XOR 0x0A`` on the
4-bit symbol of 65000/65001, i.e. ``XOR 2`` on each 2-bit field). After the XOR a field is the
quarter (0-3, left to right / first row to last) of the pixel in which the electron landed. The 8K
rendering (``upsampling=2``) uses the top bit of each corrected field: an event at 4K pixel
``(x, y)`` with corrected fields ``(h, v)`` goes to 8K pixel ``(2x + h // 2, 2y + v // 2)``.

Orientation: EER frames are **not** flipped in Y. Row 0 of a decoded frame is the first row of the
bit stream, as MotionCor3 (``EerUtil``) and RELION (``renderEER.cpp``) render it, unlike TIFF movie
frames, which IMOD, SerialEM, MotionCor2, RELION and :mod:`framewatch.core.movie_io` flip. A Thermo
``.gain`` reference for EER is therefore also read without the flip (:mod:`framewatch.core.gain`).

Sources: the EER decoder of imagecodecs (``imcd_eer_decode``, BSD-3, after "EER file format
documentation 3.0", M. Leichsenring 2023) for the bit order, the run/continuation/event rule and the
compression table; RELION ``src/renderEER.cpp`` (65000 read as fixed 12-bit codes; the 0x0A XOR;
8K/16K rendering; no Y flip) and Thermo's EerReaderLib (``g_no_bit_waste_on_overflow_code`` false
only for the 8-bit prototype format); MotionCor3 notes in shared/references/motion-correction.md
§1.8 and §2.5. Note: imagecodecs consumes only 8 bits for a 65000 overflow code, RELION and
EerReaderLib 12; this module follows RELION and EerReaderLib, so it decodes the whole stream
itself (numba kernels) rather than through imagecodecs. imagecodecs remains the independent
oracle for 65001 in the tests. That a corrected field counts quarters from the left (top) follows
RELION's 16K rendering (``x = 4 * (pos % 4096) + (symbol & 3)``).

Why our own kernels (measured, see the report of issue 7): imagecodecs decodes one raw frame into
a dense ``(4096, 4096)`` boolean image (``(8192, 8192)`` at 8K) that must then be added to the
fraction, ~32-128 MB of memory traffic per raw frame for ~70 000 events. Here a fraction is decoded
in two passes (see the kernels), so the cost follows the number of events and the writes stay in
cache.

Grouping raw frames into fractions
----------------------------------
``n_raw`` raw frames become ``n_fractions`` fractions, chosen by (first that applies):

1. ``group_frames = g``: ``n_fractions = max(1, round(n_raw / g))``;
2. a total dose ``D`` (e/A^2) is known: ``n_fractions = max(1, round(D / target))``, with
   ``target = fraction_dose_e_per_a2`` or 0.3 e/A^2 (suited to tilts of 2-4 e/A^2);
3. neither: 40 raw frames per fraction (RELION's default ``--eer_grouping``), dose unknown.

(``round`` is round-half-up; ``n_fractions`` never exceeds ``n_raw``.) **Remainder rule: every raw
frame is used.** Fraction ``i`` holds raw frames ``[floor(i n_raw / n_f), floor((i+1) n_raw / n_f))``,
so fraction sizes differ by at most one raw frame and the extra frames are spread evenly over the
exposure (MotionCor3 also keeps the leftover frames, putting them in the last fractions; RELION
drops them). With the dose per raw frame ``d = D / n_raw``, ``dose_per_fraction_e_per_a2 = D /
n_fractions`` is the mean fraction dose, and the true accumulated dose at the end of fraction ``i``
(``end_i * d``) differs from DESIGN.md's uniform ``(i + 1) * D / n_fractions`` by less than ``d``
(one raw frame, ~0.008 e/A^2 at usual rates). RELION's rule would drop up to ``g - 1`` raw frames:
up to 10 % of a 400-frame tilt's dose.

A fraction is the sum of its raw frames, returned as uint8 when no fraction holds more than 255 raw
frames (a pixel gets at most one event per raw frame), else uint16.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
from numba import njit

from ..decode_limits import DecodeLimits, check_decoded_size, check_eer_streams
from ..errors import MovieFormatError, SettingsError
from .base import MovieReader, tiff_pages

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
]

EER_SUFFIXES = (".eer", ".ecc")
DEFAULT_EER_GROUP_FRAMES = 40
DEFAULT_EER_FRACTION_DOSE_E_PER_A2 = 0.3
EER_COMPRESSIONS = (65000, 65001, 65002)
_PLAUSIBLE_PIXEL_SIZE_A = (0.05, 100.0)
_PAD_BYTES = 8  # zero bytes after the last raw frame of a buffer: the parser reads up to 7 bytes past a frame

# kernel status codes
_OK, _TRUNCATED, _OVERRUN = 0, 1, 2


@dataclass(frozen=True)
class EerCoding:
    """The bit sizes of one EER code and whether an overflow code takes the full code length."""

    compression: int
    skip_bits: int
    horz_bits: int
    vert_bits: int
    overflow_takes_full_code: bool

    @property
    def code_bits(self) -> int:
        return self.skip_bits + self.horz_bits + self.vert_bits


def eer_coding(compression: int, *, skip_bits: int | None = None, horz_bits: int | None = None,
               vert_bits: int | None = None) -> EerCoding:
    """The :class:`EerCoding` of a TIFF compression value (65002 takes the bit sizes of tags 65007-65009).

    Raises ``ValueError`` for another compression or bit sizes outside 4-14 (run) / 1-2 (sub-pixel).
    """
    if compression == 65000:
        coding = EerCoding(65000, 8, 2, 2, True)
    elif compression == 65001:
        coding = EerCoding(65001, 7, 2, 2, False)
    elif compression == 65002:
        coding = EerCoding(
            65002,
            7 if skip_bits is None else int(skip_bits),
            2 if horz_bits is None else int(horz_bits),
            2 if vert_bits is None else int(vert_bits),
            False,
        )
    else:
        raise ValueError(f"TIFF compression {compression} is not an EER compression (65000, 65001, 65002)")
    if not (4 <= coding.skip_bits <= 14 and 1 <= coding.horz_bits <= 2 and 1 <= coding.vert_bits <= 2):
        raise ValueError(
            f"EER bit sizes {coding.skip_bits}/{coding.horz_bits}/{coding.vert_bits} (run/horizontal/vertical) "
            "are not supported (run 4-14 bits, sub-pixel 1-2 bits per axis)"
        )
    return coding


# --------------------------------------------------------------------------------------- grouping


@dataclass(frozen=True)
class EerGrouping:
    """How raw frames form fractions (see the module docstring for the rule).

    ``boundaries``: ``n_fractions + 1`` raw-frame indices; fraction ``i`` is raw frames
    ``boundaries[i]:boundaries[i + 1]``. Doses are ``None`` when no total dose is known.
    """

    n_raw_frames: int
    boundaries: tuple[int, ...]
    dose_per_raw_frame_e_per_a2: float | None
    dose_per_fraction_e_per_a2: float | None
    rule: str

    @property
    def n_fractions(self) -> int:
        return len(self.boundaries) - 1

    @property
    def raw_frames_per_fraction(self) -> tuple[int, ...]:
        b = self.boundaries
        return tuple(b[i + 1] - b[i] for i in range(len(b) - 1))

    def fraction_doses_e_per_a2(self) -> tuple[float, ...] | None:
        """The dose of each fraction (its raw frames times the dose per raw frame), or ``None``."""
        if self.dose_per_raw_frame_e_per_a2 is None:
            return None
        return tuple(n * self.dose_per_raw_frame_e_per_a2 for n in self.raw_frames_per_fraction)


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def group_eer_frames(
    n_raw_frames: int,
    *,
    group_frames: int | None = None,
    fraction_dose_e_per_a2: float | None = None,
    total_dose_e_per_a2: float | None = None,
) -> EerGrouping:
    """Split ``n_raw_frames`` raw EER frames into fractions (rule in the module docstring).

    Raises :class:`SettingsError` for a non-positive value, for both ``group_frames`` and
    ``fraction_dose_e_per_a2``, or for a dose target without a total dose.
    """
    n_raw = int(n_raw_frames)
    if n_raw < 1:
        raise SettingsError(f"an EER movie needs at least one raw frame, got {n_raw}")
    if group_frames is not None and fraction_dose_e_per_a2 is not None:
        raise SettingsError(
            "EER grouping given both as raw frames per fraction and as a dose per fraction",
            fix="give only --eer-group-frames or only --eer-fraction-dose",
        )
    if total_dose_e_per_a2 is not None and not (total_dose_e_per_a2 > 0 and math.isfinite(total_dose_e_per_a2)):
        raise SettingsError(f"EER total dose {total_dose_e_per_a2} e/A^2 is not positive", fix="give the dose per tilt in e/A^2")
    if group_frames is not None:
        if int(group_frames) != group_frames or group_frames < 1:
            raise SettingsError(f"EER group size {group_frames} is not a positive whole number of raw frames")
        n_fr = _round_half_up(n_raw / int(group_frames))
        rule = f"{int(group_frames)} raw frames per fraction requested"
    elif total_dose_e_per_a2 is not None:
        target = DEFAULT_EER_FRACTION_DOSE_E_PER_A2 if fraction_dose_e_per_a2 is None else float(fraction_dose_e_per_a2)
        if not (target > 0 and math.isfinite(target)):
            raise SettingsError(f"EER dose per fraction {target} e/A^2 is not positive")
        n_fr = _round_half_up(total_dose_e_per_a2 / target)
        rule = f"{target:g} e/A^2 per fraction requested"
    else:
        if fraction_dose_e_per_a2 is not None:
            raise SettingsError(
                "an EER dose per fraction needs the total dose of the movie",
                fix="give the dose per tilt (e/A^2), or group by raw frames with --eer-group-frames",
            )
        n_fr = _round_half_up(n_raw / DEFAULT_EER_GROUP_FRAMES)
        rule = f"default {DEFAULT_EER_GROUP_FRAMES} raw frames per fraction (no dose known)"
    n_fr = min(max(n_fr, 1), n_raw)
    boundaries = tuple((i * n_raw) // n_fr for i in range(n_fr + 1))
    d_raw = None if total_dose_e_per_a2 is None else float(total_dose_e_per_a2) / n_raw
    d_frac = None if total_dose_e_per_a2 is None else float(total_dose_e_per_a2) / n_fr
    sizes = {boundaries[i + 1] - boundaries[i] for i in range(n_fr)}
    rule += f"; {n_raw} raw frames -> {n_fr} fractions of {'/'.join(str(s) for s in sorted(sizes))}, none dropped"
    return EerGrouping(n_raw, boundaries, d_raw, d_frac, rule)


# ----------------------------------------------------------------------------------------- kernels
#
# Decoding a fraction takes two passes. (1) ``_parse_frames`` walks each raw frame's bit stream (in
# parallel over raw frames) and writes the sensor pixel index of every event (``keys``, ascending
# within a frame) and, at 8K, its output index (``dests``). (2) ``_scatter_blocks`` adds the events
# into the output one band of rows at a time (in parallel over bands), visiting every raw frame's
# events that fall in the band. Adding each event straight into the 16 MB (64 MB at 8K) output as it
# is parsed costs a cache miss per event (~100 ns); by bands the writes stay in cache (~3 ns).


@njit(cache=True, nogil=True, parallel=True)
def _parse_frames(buf, starts, sizes, offsets, nx, ny, skip_bits, horz_bits, vert_bits, overflow_full,
                  upsampling, keys, dests, counts, status):  # pragma: no cover - compiled
    """Parse raw frame ``f`` (``buf[starts[f]:starts[f] + sizes[f]]``) into ``keys``/``dests`` from
    ``offsets[f]``; ``counts[f]`` = its events; ``status[f]`` = 0 ok, 1 stream ends before the last
    pixel, 2 a run passes the last pixel. ``buf`` is padded by >= 8 zero bytes after the last frame.

    Bits are taken from a 64-bit reservoir refilled 4 bytes at a time; ``bitpos`` counts the bits
    used, so bytes loaded past a frame's end (the next frame's, or padding) are never decoded."""
    n_pixels = nx * ny
    skip_mask = np.uint64((1 << skip_bits) - 1)
    horz_mask = np.uint64((1 << horz_bits) - 1)
    vert_mask = np.uint64((1 << vert_bits) - 1)
    horz_flip = np.uint64(1 << (horz_bits - 1))
    vert_flip = np.uint64(1 << (vert_bits - 1))
    code_bits = skip_bits + horz_bits + vert_bits
    overflow_bits = code_bits if overflow_full else skip_bits
    u_skip = np.uint64(skip_bits)
    u_skip_horz = np.uint64(skip_bits + horz_bits)
    u_horz_top = np.uint64(horz_bits - 1)
    u_vert_top = np.uint64(vert_bits - 1)
    all_ones = (1 << skip_bits) - 1
    wide = nx * upsampling
    for f in numba.prange(starts.shape[0]):
        total_bits = sizes[f] * 8
        byte = starts[f]
        at = offsets[f]
        reservoir = np.uint64(0)
        avail = 0
        bitpos = 0
        pos = 0
        y = 0
        row_start = 0
        code = 0
        while True:
            if bitpos + skip_bits > total_bits:
                if pos != n_pixels:
                    code = 1
                break
            if avail < 32:
                word = (np.uint64(buf[byte]) | (np.uint64(buf[byte + 1]) << np.uint64(8))
                        | (np.uint64(buf[byte + 2]) << np.uint64(16)) | (np.uint64(buf[byte + 3]) << np.uint64(24)))
                reservoir |= word << np.uint64(avail)
                avail += 32
                byte += 4
            run = np.int64(reservoir & skip_mask)
            pos += run
            if pos >= n_pixels:
                if pos > n_pixels:
                    code = 2
                break
            if run == all_ones:
                reservoir >>= np.uint64(overflow_bits)
                avail -= overflow_bits
                bitpos += overflow_bits
                continue
            if bitpos + code_bits > total_bits:
                code = 1
                break
            keys[at] = pos
            if upsampling == 2:
                while pos >= row_start + nx:
                    row_start += nx
                    y += 1
                h = np.int64((((reservoir >> u_skip) & horz_mask) ^ horz_flip) >> u_horz_top)
                v = np.int64((((reservoir >> u_skip_horz) & vert_mask) ^ vert_flip) >> u_vert_top)
                dests[at] = (2 * y + v) * wide + 2 * (pos - row_start) + h
            at += 1
            pos += 1
            reservoir >>= np.uint64(code_bits)
            avail -= code_bits
            bitpos += code_bits
        counts[f] = at - offsets[f]
        status[f] = code


@njit(cache=True, nogil=True, parallel=True)
def _scatter_blocks(keys, dests, offsets, counts, block_pixels, n_pixels, out):  # pragma: no cover - compiled
    """``out[dests[i]] += 1`` for every parsed event, one band of ``block_pixels`` sensor pixels at a
    time (the events of a band go to one contiguous band of ``out``, which stays in cache)."""
    n_blocks = (n_pixels + block_pixels - 1) // block_pixels
    n_frames = offsets.shape[0]
    for b in numba.prange(n_blocks):
        low = b * block_pixels
        high = low + block_pixels
        for f in range(n_frames):
            first = offsets[f]
            stop = first + counts[f]
            i = first + np.searchsorted(keys[first:stop], low)
            while i < stop and keys[i] < high:
                out[dests[i]] += 1
                i += 1


def _decode_into(buf, starts, sizes, *, shape, coding: EerCoding, upsampling: int, out: np.ndarray) -> np.ndarray:
    """Decode the raw frames held in ``buf`` and add them into ``out``; returns per-frame status codes."""
    ny, nx = shape
    n = starts.shape[0]
    capacity = sizes * 8 // coding.code_bits + 1
    offsets = np.zeros(n, dtype=np.int64)
    if n > 1:
        np.cumsum(capacity[:-1], out=offsets[1:])
    total = int(capacity.sum())
    index_type = np.int32 if out.size < 2**31 else np.int64
    keys = np.empty(total, dtype=index_type)
    dests = keys if upsampling == 1 else np.empty(total, dtype=index_type)
    counts = np.zeros(n, dtype=np.int64)
    status = np.zeros(n, dtype=np.int64)
    _parse_frames(buf, starts, sizes, offsets, nx, ny, coding.skip_bits, coding.horz_bits, coding.vert_bits,
                  coding.overflow_takes_full_code, upsampling, keys, dests, counts, status)
    rows = max(1, _SCATTER_BLOCK_BYTES // (nx * upsampling * upsampling * out.itemsize))
    _scatter_blocks(keys, dests, offsets, counts, rows * nx, nx * ny, out.reshape(-1))
    return status


_SCATTER_BLOCK_BYTES = 1 << 18


def _first_error(status: np.ndarray) -> tuple[int, int] | None:
    bad = np.flatnonzero(status)
    if bad.size == 0:
        return None
    return int(bad[0]), int(status[bad[0]])


def _error_text(code: int) -> str:
    return "its event stream ends before the last pixel" if code == _TRUNCATED else "a run length passes the last pixel"


def decode_eer_frame(
    data: bytes | np.ndarray,
    *,
    shape: tuple[int, int],
    coding: EerCoding,
    upsampling: int = 1,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Decode the bit stream of one raw EER frame into event counts.

    Args:
        data: the frame's strip bytes (all strips concatenated).
        shape: ``(ny, nx)`` of the sensor (4096, 4096 on a Falcon 4).
        coding: from :func:`eer_coding`.
        upsampling: 1 (sensor pixels) or 2 (8K from the top sub-pixel bits).
        out: optional C-contiguous ``(ny * upsampling, nx * upsampling)`` uint8/uint16 array to add into.

    Returns ``out`` (new uint8 zeros if not given) with the events added. Raises ``ValueError`` for
    a corrupt stream.
    """
    ny, nx = (int(v) for v in shape)
    if upsampling not in (1, 2):
        raise ValueError(f"EER upsampling must be 1 (4K) or 2 (8K), got {upsampling}")
    raw = np.frombuffer(bytes(data), dtype=np.uint8) if not isinstance(data, np.ndarray) else data.astype(np.uint8)
    buf = np.zeros(raw.size + _PAD_BYTES, dtype=np.uint8)
    buf[: raw.size] = raw
    out_shape = (ny * upsampling, nx * upsampling)
    if out is None:
        out = np.zeros(out_shape, dtype=np.uint8)
    elif out.shape != out_shape or out.dtype not in (np.uint8, np.uint16) or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous uint8/uint16 array of shape {out_shape}")
    status = _decode_into(buf, np.zeros(1, np.int64), np.array([raw.size], np.int64), shape=(ny, nx),
                          coding=coding, upsampling=upsampling, out=out)
    error = _first_error(status)
    if error is not None:
        raise ValueError(f"corrupt EER frame: {_error_text(error[1])}")
    return out


# ------------------------------------------------------------------------------------------ reader


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
        header_n = None
        if self.eer_metadata and self.eer_metadata.get("numberOfFrames") is not None:
            try:
                header_n = int(self.eer_metadata["numberOfFrames"])
            except (TypeError, ValueError):
                header_n = None
        self.header_n_frames = header_n
        if header_n is not None and len(pages) < header_n:
            raise MovieFormatError(
                f"truncated: {len(pages)} raw frames, the EER header lists {header_n}",
                path=path,
                fix="wait until the file is written completely, or re-copy it",
            )
        self._strip_offsets = offsets
        self._frame_bytes = np.array([sum(c) for c in counts], dtype=np.int64)
        self._strip_counts = counts
        self.n_raw_frames = len(pages)
        self.sensor_shape = shape
        self.pixel_size_a = _eer_pixel_size_a(self.eer_metadata)

    def _read_bytes(self, first: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Strip bytes of raw frames ``first:stop`` in one padded buffer: (buf, starts, sizes)."""
        sizes = self._frame_bytes[first:stop]
        starts = np.zeros(sizes.size, dtype=np.int64)
        if sizes.size > 1:
            np.cumsum(sizes[:-1], out=starts[1:])
        total = int(sizes.sum())
        buf = np.empty(total + _PAD_BYTES, dtype=np.uint8)
        buf[total:] = 0
        view = memoryview(buf)
        for k, raw in enumerate(range(first, stop)):
            at = int(starts[k])
            for offset, count in zip(self._strip_offsets[raw], self._strip_counts[raw]):
                done = 0
                while done < count:
                    got = os.preadv(self._fd, [view[at + done: at + count]], offset + done)
                    if got <= 0:
                        raise MovieFormatError(
                            f"truncated: EER raw frame {raw} has {done} of {count} bytes",
                            path=self.path,
                            fix="the file shrank while being read; re-copy it",
                        )
                    done += got
                at += count
        return buf, starts, sizes

    def read_raw_bytes(self, first: int, stop: int) -> int:
        """Read (and discard) the strip bytes of raw frames ``first:stop``; returns the byte count.

        The I/O floor of decoding: the same reads :meth:`read_frame` does, without the decoding.
        """
        buf, _, sizes = self._read_bytes(first, stop)
        return int(sizes.sum())

    def _read_raw(self, index: int) -> np.ndarray:
        first, stop = self.grouping.boundaries[index], self.grouping.boundaries[index + 1]
        buf, starts, sizes = self._read_bytes(first, stop)
        out = np.zeros(self.shape, dtype=self.dtype)
        status = _decode_into(buf, starts, sizes, shape=self.sensor_shape, coding=self.coding,
                              upsampling=self.upsampling, out=out)
        error = _first_error(status)
        if error is not None:
            raise MovieFormatError(
                f"EER raw frame {first + error[0]} is corrupt: {_error_text(error[1])}",
                path=self.path,
                fix="the file is damaged or incomplete; re-copy it or exclude the movie",
            )
        return out

    def _close(self) -> None:
        os.close(self._fd)
