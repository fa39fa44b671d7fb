"""Thermo Fisher EER raw frames: the bit coding and the numba kernels that decode electron events.

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
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from numba import njit

EER_COMPRESSIONS = (65000, 65001, 65002)
PAD_BYTES = 8  # zero bytes after the last raw frame of a buffer: the parser reads up to 7 bytes past a frame

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


def decode_into(buf, starts, sizes, *, shape, coding: EerCoding, upsampling: int, out: np.ndarray) -> np.ndarray:
    """Decode the raw frames held in ``buf`` and add them into ``out``; returns per-frame status codes."""
    events = parse_events(buf, starts, sizes, shape=shape, coding=coding, upsampling=upsampling, n_pixels_out=out.size)
    scatter_events(events, shape=shape, upsampling=upsampling, out=out)
    return events.status


@dataclass(frozen=True)
class EerEvents:
    """The parsed events of some raw frames: raw frame ``f``'s are ``keys[offsets[f]:offsets[f] + counts[f]]``
    (sensor pixel indices, ascending) with their output indices ``dests`` (``keys`` itself at 4K);
    ``status[f]``: 0 ok, else an error code (:func:`error_text`)."""

    keys: np.ndarray
    dests: np.ndarray
    offsets: np.ndarray
    counts: np.ndarray
    status: np.ndarray

    def frame(self, f: int) -> "EerEvents":
        """Raw frame ``f``'s events alone, in arrays of their own size (a compact copy)."""
        first, stop = int(self.offsets[f]), int(self.offsets[f] + self.counts[f])
        keys = self.keys[first:stop].copy()
        dests = keys if self.dests is self.keys else self.dests[first:stop].copy()
        return EerEvents(keys, dests, np.zeros(1, np.int64), self.counts[f:f + 1].copy(), self.status[f:f + 1].copy())


def parse_events(buf, starts, sizes, *, shape, coding: EerCoding, upsampling: int, n_pixels_out: int) -> EerEvents:
    """Parse the raw frames held in ``buf`` (``buf[starts[f]:starts[f] + sizes[f]]``, padded by
    ``PAD_BYTES`` zeros) into their events (the first pass of :func:`decode_into`)."""
    ny, nx = shape
    n = starts.shape[0]
    capacity = sizes * 8 // coding.code_bits + 1
    offsets = np.zeros(n, dtype=np.int64)
    if n > 1:
        np.cumsum(capacity[:-1], out=offsets[1:])
    total = int(capacity.sum())
    index_type = np.int32 if n_pixels_out < 2**31 else np.int64
    keys = np.empty(total, dtype=index_type)
    dests = keys if upsampling == 1 else np.empty(total, dtype=index_type)
    counts = np.zeros(n, dtype=np.int64)
    status = np.zeros(n, dtype=np.int64)
    _parse_frames(buf, starts, sizes, offsets, nx, ny, coding.skip_bits, coding.horz_bits, coding.vert_bits,
                  coding.overflow_takes_full_code, upsampling, keys, dests, counts, status)
    return EerEvents(keys, dests, offsets, counts, status)


def scatter_events(events: EerEvents, *, shape, upsampling: int, out: np.ndarray) -> None:
    """Add the parsed ``events`` into ``out`` ``(ny * upsampling, nx * upsampling)`` (the second pass)."""
    ny, nx = shape
    rows = max(1, _SCATTER_BLOCK_BYTES // (nx * upsampling * upsampling * out.itemsize))
    _scatter_blocks(events.keys, events.dests, events.offsets, events.counts, rows * nx, nx * ny, out.reshape(-1))


def join_events(parts: list[EerEvents]) -> EerEvents:
    """The events of several raw frames (each an :meth:`EerEvents.frame`) as one :class:`EerEvents`."""
    counts = np.concatenate([p.counts for p in parts])
    offsets = np.zeros(counts.size, dtype=np.int64)
    if counts.size > 1:
        np.cumsum(counts[:-1], out=offsets[1:])
    keys = np.concatenate([p.keys for p in parts])
    same = all(p.dests is p.keys for p in parts)
    dests = keys if same else np.concatenate([p.dests for p in parts])
    return EerEvents(keys, dests, offsets, counts, np.concatenate([p.status for p in parts]))


_SCATTER_BLOCK_BYTES = 1 << 18


def first_error(status: np.ndarray) -> tuple[int, int] | None:
    bad = np.flatnonzero(status)
    if bad.size == 0:
        return None
    return int(bad[0]), int(status[bad[0]])


def error_text(code: int) -> str:
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
    buf = np.zeros(raw.size + PAD_BYTES, dtype=np.uint8)
    buf[: raw.size] = raw
    out_shape = (ny * upsampling, nx * upsampling)
    if out is None:
        out = np.zeros(out_shape, dtype=np.uint8)
    elif out.shape != out_shape or out.dtype not in (np.uint8, np.uint16) or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous uint8/uint16 array of shape {out_shape}")
    status = decode_into(buf, np.zeros(1, np.int64), np.array([raw.size], np.int64), shape=(ny, nx),
                          coding=coding, upsampling=upsampling, out=out)
    error = first_error(status)
    if error is not None:
        raise ValueError(f"corrupt EER frame: {error_text(error[1])}")
    return out
