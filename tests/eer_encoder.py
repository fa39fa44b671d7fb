"""A small EER *encoder* for the tests, written from the public format description.

Not used by framewatch itself: it makes EER files with known electron events so that the reader in
``framewatch.core.movie_io.eer`` can be checked against the truth (and against imagecodecs' decoder).

Format (see the docstring of ``framewatch.core.movie_io.eer``): a little-endian BigTIFF, one page per raw
frame, one strip per page; the strip is a bit stream written least-significant bit first of codes
``run`` (skip bits) [+ sub-pixel x (horz bits) + sub-pixel y (vert bits)]. A run of all ones means
"skip that many pixels, no event" (65000: the overflow code still takes its 4 sub-pixel bits;
65001/65002: only the run bits). The sub-pixel fields are stored with their top bit inverted. The
stream ends with the run that reaches the last pixel.

The TIFF container is written byte by byte here (tifffile cannot write EER compressions), with
ImageWidth, ImageLength, Compression, StripOffsets, RowsPerStrip, StripByteCounts, the XML
metadata in tag 65001 of the first page and, for compression 65002, the bit sizes in tags
65007-65009. Like real files, pages have no BitsPerSample tag.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

CODINGS = {65000: (8, 2, 2, True), 65001: (7, 2, 2, False)}


@dataclass(frozen=True)
class Events:
    """Electron events of one raw frame: flat pixel index (sorted, unique) and true sub-pixel quarter."""

    positions: np.ndarray
    sub_x: np.ndarray
    sub_y: np.ndarray


def random_events(rng, n_pixels: int, n_events: int, *, horz_bits: int = 2, vert_bits: int = 2) -> Events:
    pos = np.sort(rng.choice(n_pixels, size=n_events, replace=False)).astype(np.int64)
    return Events(pos, rng.integers(0, 2**horz_bits, n_events), rng.integers(0, 2**vert_bits, n_events))


def events_from_mask(mask: np.ndarray, rng, *, horz_bits: int = 2, vert_bits: int = 2) -> Events:
    pos = np.flatnonzero(mask.ravel()).astype(np.int64)
    return Events(pos, rng.integers(0, 2**horz_bits, pos.size), rng.integers(0, 2**vert_bits, pos.size))


def render(events: Events, shape: tuple[int, int], *, upsampling: int = 1, horz_bits: int = 2,
           vert_bits: int = 2) -> np.ndarray:
    """The expected decoded frame (NumPy reference): counts on the sensor or 8K grid."""
    ny, nx = shape
    y, x = np.divmod(events.positions, nx)
    out = np.zeros((ny * upsampling, nx * upsampling), dtype=np.int64)
    if upsampling == 1:
        np.add.at(out, (y, x), 1)
    else:
        h = events.sub_x >> (horz_bits - 1)
        v = events.sub_y >> (vert_bits - 1)
        np.add.at(out, (2 * y + v, 2 * x + h), 1)
    return out


def encode_frame(events: Events, n_pixels: int, *, skip_bits: int, horz_bits: int, vert_bits: int,
                 overflow_full: bool) -> bytes:
    """The bit stream of one raw frame (padded with zero bytes to an even length, plus 2)."""
    pos = np.asarray(events.positions, dtype=np.int64)
    assert np.all(np.diff(pos) > 0) and (pos.size == 0 or (pos[0] >= 0 and pos[-1] < n_pixels))
    full = skip_bits + horz_bits + vert_bits
    overflow_len = full if overflow_full else skip_bits
    m = (1 << skip_bits) - 1
    prev = np.concatenate([[-1], pos[:-1]])
    gaps = pos - prev - 1
    q, r = np.divmod(gaps, m)
    symbol = (np.asarray(events.sub_x, np.int64) ^ (1 << (horz_bits - 1))) | (
        (np.asarray(events.sub_y, np.int64) ^ (1 << (vert_bits - 1))) << horz_bits
    )
    n_codes = q + 1
    values = np.full(int(n_codes.sum()), m, dtype=np.int64)
    lengths = np.full(values.size, overflow_len, dtype=np.int64)
    at = np.cumsum(n_codes) - 1
    values[at] = r | (symbol << skip_bits)
    lengths[at] = full
    tail = n_pixels - (int(pos[-1]) + 1 if pos.size else 0)
    tq, tr = divmod(tail, m)
    tail_values = [m] * tq + ([tr] if tr else [])
    tail_lengths = [overflow_len] * tq + ([full] if tr else [])
    values = np.concatenate([values, np.array(tail_values, np.int64)])
    lengths = np.concatenate([lengths, np.array(tail_lengths, np.int64)])
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    total_bits = int(lengths.sum())
    n_bytes = (total_bits + 7) // 8 + 2
    n_bytes += n_bytes % 2
    shifted = values << (offsets & 7)
    first = offsets >> 3
    acc = np.zeros(n_bytes + 3, dtype=np.float64)
    for j in range(3):  # the bits of different codes never overlap, so a sum is an OR
        acc += np.bincount(first + j, weights=((shifted >> (8 * j)) & 0xFF).astype(np.float64), minlength=n_bytes + 3)
    return acc[:n_bytes].astype(np.uint8).tobytes()


def metadata_xml(items: dict) -> bytes:
    body = "".join(
        f'<item name="{k}" unit="{v[1]}">{v[0]}</item>' if isinstance(v, tuple) else f'<item name="{k}">{v}</item>'
        for k, v in items.items()
    )
    return f"<metadata>{body}</metadata>".encode()


def write_eer(path, strips: list[bytes], *, shape: tuple[int, int], compression: int = 65001,
              metadata: dict | None = None, bit_tags: tuple[int, int, int] | None = None) -> None:
    """Write raw-frame strips as an EER BigTIFF (one page per strip)."""
    ny, nx = shape
    out = bytearray(b"II" + struct.pack("<HHHQ", 43, 8, 0, 0))
    next_ifd_field = 8
    xml = metadata_xml(metadata if metadata is not None else {"numberOfFrames": len(strips)})
    for index, strip in enumerate(strips):
        strip_offset = len(out)
        out += strip
        entries = [  # (tag, type, count, value bytes)
            (256, 4, 1, struct.pack("<I", nx)),
            (257, 4, 1, struct.pack("<I", ny)),
            (259, 3, 1, struct.pack("<H", compression)),
            (262, 3, 1, struct.pack("<H", 1)),
            (273, 16, 1, struct.pack("<Q", strip_offset)),
            (277, 3, 1, struct.pack("<H", 1)),
            (278, 4, 1, struct.pack("<I", ny)),
            (279, 16, 1, struct.pack("<Q", len(strip))),
        ]
        if index == 0:
            entries.append((65001, 7, len(xml), xml))
        if bit_tags is not None:
            for tag, value in zip((65007, 65008, 65009), bit_tags):
                entries.append((tag, 3, 1, struct.pack("<H", value)))
        entries.sort()
        external = {}
        for tag, _, _, value in entries:
            if len(value) > 8:
                external[tag] = len(out)
                out += value
        if len(out) % 8:
            out += b"\x00" * (8 - len(out) % 8)
        ifd_offset = len(out)
        struct.pack_into("<Q", out, next_ifd_field, ifd_offset)
        out += struct.pack("<Q", len(entries))
        for tag, typ, count, value in entries:
            field = struct.pack("<Q", external[tag]) if tag in external else value.ljust(8, b"\x00")
            out += struct.pack("<HHQ", tag, typ, count) + field
        next_ifd_field = len(out)
        out += struct.pack("<Q", 0)
    with open(path, "wb") as f:
        f.write(bytes(out))


def encode_movie(raw_events: list[Events], *, shape, compression: int = 65001, bit_tags=None) -> list[bytes]:
    if compression == 65002:
        skip, horz, vert = bit_tags if bit_tags is not None else (7, 2, 2)
        full = False
    else:
        skip, horz, vert, full = CODINGS[compression]
    n = shape[0] * shape[1]
    return [encode_frame(e, n, skip_bits=skip, horz_bits=horz, vert_bits=vert, overflow_full=full) for e in raw_events]


def split_counts_into_raw_frames(counts: np.ndarray, raw_per_fraction, rng) -> list[np.ndarray]:
    """Split fraction count images ``(n, ny, nx)`` into 0/1 raw frames whose sums give them back.

    Fraction ``i`` becomes ``raw_per_fraction[i]`` boolean frames; a pixel with ``c`` counts gets
    one event in ``c`` distinct, randomly chosen raw frames (``c`` must not exceed the raw frames).
    """
    raws = []
    for frame, k in zip(counts, raw_per_fraction):
        c = frame.astype(np.int64)
        assert c.max(initial=0) <= k, f"a pixel has {c.max()} counts, more than {k} raw frames"
        ranks = np.argsort(np.argsort(rng.random((k,) + c.shape), axis=0), axis=0)
        raws.extend(list(ranks < c[np.newaxis]))
    return raws
