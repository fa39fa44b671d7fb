"""Bounded memory: refuse a movie whose declared size cannot be real, before anything is decoded.

A movie's header (MRC), page directory (TIFF) or raw-frame index (EER) says how large its frames
are and how many there are; decoding then allocates that much, whatever the file really holds. A
16 kB TIFF whose deflate strips all point at one compressed block can declare a 30208 x 30000
uint16 page (1.8 GB); an 824-byte EER can claim a 65535 x 65535 sensor (4 GiB per fraction). The
readers of :mod:`framewatch.core.movie_io` and :mod:`framewatch.core.movie_io.eer` call the pure functions
here right after reading the header, so such a file is refused with a
:class:`~framewatch.core.errors.DecodeLimitError` and never decoded.

Three checks, each against the file as it is on disk:

1. **Frame size**: ``ny * nx`` (after EER upsampling) at most :attr:`DecodeLimits.max_frame_pixels`.
2. **Decoded size**: ``n_frames * ny * nx * itemsize`` of the decoded movie at most
   :attr:`DecodeLimits.max_movie_bytes_decoded` (the engine holds a whole movie in its native
   dtype until its hot pixels are known).
3. **Compression**: the file must be large enough to hold what it declares. MRC is stored raw
   (the reader already requires the file to hold every declared frame). A TIFF page compressed
   with codec ``c`` needs at least ``decoded_bytes / ratio(c)`` bytes, where ``ratio(c)`` is the
   codec's largest possible ratio (:data:`CODEC_MAX_RATIO`: deflate cannot exceed 1032:1, TIFF
   LZW about 1300:1, PackBits 64:1, uncompressed 1:1) or, for codecs without such a bound (zstd,
   LZMA, JPEG, ...), :attr:`DecodeLimits.max_compression_ratio`; the pages' needs are summed and
   compared with the file size. An EER raw frame is a run-length code: one code of ``s`` run bits
   skips at most ``2**s - 1`` pixels, so a frame of ``b`` bytes covers at most
   ``8 b (2**s - 1) / s`` pixels (145 pixels per byte for compression 65001); a shorter frame
   cannot reach the sensor's last pixel.

The defaults cover every current detector with a margin: a K3 super-resolution frame is
11520 x 8184 = 94 Mpx, a Falcon 4i EER frame rendered at 8K 67 Mpx; 16 GiB holds 180 K3
super-resolution frames in uint8 or 250 fractions at 8K. Raise them in the ``[limits]`` table of
the daemon's configuration or with ``framewatch correct --max-frame-pixels`` /
``--max-movie-bytes-decoded`` / ``--max-compression-ratio``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import DecodeLimitError, SettingsError

DEFAULT_MAX_FRAME_PIXELS = 2**27  # 134 Mpx (11585 x 11585)
DEFAULT_MAX_MOVIE_BYTES_DECODED = 16 * 2**30  # 16 GiB
DEFAULT_MAX_COMPRESSION_RATIO = 2000.0

# The largest ratio each TIFF compression can reach at all (decoded bytes per stored byte), with a
# small margin: deflate's longest match (258 bytes) in a code of at least 2 bits bounds it at
# 1032:1; TIFF LZW's 12-bit codes, with the table cleared when full, at about 1300:1 (a frame of
# zeros compresses 1243:1 with imagecodecs); PackBits repeats a byte at most 128 times per 2 bytes.
CODEC_MAX_RATIO: dict[int, float] = {
    1: 1.0,  # none
    5: 1400.0,  # LZW
    8: 1040.0,  # Adobe deflate
    32946: 1040.0,  # deflate
    32773: 64.0,  # PackBits
}

_CODEC_NAMES = {1: "uncompressed", 5: "LZW", 8: "deflate", 32946: "deflate", 32773: "PackBits", 50000: "zstd",
                34925: "LZMA", 7: "JPEG", 50001: "WebP"}


@dataclass(frozen=True, kw_only=True)
class DecodeLimits:
    """Ceilings checked before a movie is decoded (see the module docstring for the rules).

    ``max_frame_pixels``: pixels of one decoded frame (``ny * nx``, after EER upsampling).
    ``max_movie_bytes_decoded``: bytes of the whole decoded movie in its native dtype.
    ``max_compression_ratio``: decoded bytes per file byte for TIFF codecs with no inherent bound
    (zstd, LZMA, JPEG, ...); codecs with a bound (deflate, LZW, PackBits, none) use the smaller of
    the two.
    """

    max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS
    max_movie_bytes_decoded: int = DEFAULT_MAX_MOVIE_BYTES_DECODED
    max_compression_ratio: float = DEFAULT_MAX_COMPRESSION_RATIO

    def __post_init__(self) -> None:
        for name in ("max_frame_pixels", "max_movie_bytes_decoded"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SettingsError(f"decode limit {name} = {value!r} is not a positive whole number",
                                    fix=f"set [limits] {name} to a count >= 1")
        r = self.max_compression_ratio
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not (1.0 <= r < float("inf")):
            raise SettingsError(f"decode limit max_compression_ratio = {r!r} is not a finite number >= 1",
                                fix="set [limits] max_compression_ratio, e.g. 2000")


def _size_text(n_bytes: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{int(n_bytes)} bytes"


_FIX_LIMIT = "if this is a real movie, raise [limits] {key} (framewatch correct {flag})"
_FIX_BOMB = "the file is damaged or a decompression bomb; nothing was decoded: exclude it, or re-copy it"


def check_decoded_size(*, path: str | Path, frame_shape: tuple[int, int], n_frames: int, itemsize: int,
                       limits: DecodeLimits) -> int:
    """Frame-size and decoded-size ceilings (checks 1 and 2); returns the decoded movie's bytes.

    ``frame_shape`` is ``(ny, nx)`` of one decoded frame, ``itemsize`` the bytes per decoded pixel.
    """
    ny, nx = (int(v) for v in frame_shape)
    pixels = ny * nx
    if pixels > limits.max_frame_pixels:
        raise DecodeLimitError(
            f"declares frames of {nx} x {ny} px ({pixels / 1e6:.0f} Mpx), more than the limit of "
            f"{limits.max_frame_pixels / 1e6:.0f} Mpx per frame; nothing was decoded",
            path=path, fix=_FIX_LIMIT.format(key="max_frame_pixels", flag="--max-frame-pixels"),
        )
    decoded = pixels * int(n_frames) * int(itemsize)
    if decoded > limits.max_movie_bytes_decoded:
        raise DecodeLimitError(
            f"declares {n_frames} frames of {nx} x {ny} px ({_size_text(decoded)} decoded), more than the limit of "
            f"{_size_text(limits.max_movie_bytes_decoded)}; nothing was decoded",
            path=path, fix=_FIX_LIMIT.format(key="max_movie_bytes_decoded", flag="--max-movie-bytes-decoded"),
        )
    return decoded


def codec_ratio_bound(compression: int, limits: DecodeLimits) -> float:
    """Largest plausible decoded/stored ratio of TIFF ``compression`` under ``limits``."""
    bound = CODEC_MAX_RATIO.get(int(compression))
    return limits.max_compression_ratio if bound is None else min(bound, limits.max_compression_ratio)


def check_tiff_storage(*, path: str | Path, page_decoded_bytes: list[int], page_compressions: list[int],
                       file_bytes: int, limits: DecodeLimits) -> None:
    """Check 3 for a TIFF: the file holds at least ``sum(decoded / ratio bound)`` bytes over its pages."""
    needed = 0.0
    for decoded, compression in zip(page_decoded_bytes, page_compressions):
        needed += decoded / codec_ratio_bound(compression, limits)
    if file_bytes + 1 < needed:
        codecs = sorted({_CODEC_NAMES.get(int(c), f"compression {int(c)}") for c in page_compressions})
        total = sum(page_decoded_bytes)
        bounded = all(int(c) in CODEC_MAX_RATIO for c in page_compressions) and all(
            CODEC_MAX_RATIO[int(c)] <= limits.max_compression_ratio for c in page_compressions)
        fix = _FIX_BOMB if bounded else _FIX_BOMB + "; " + _FIX_LIMIT.format(
            key="max_compression_ratio", flag="--max-compression-ratio")
        raise DecodeLimitError(
            f"declares {len(page_decoded_bytes)} page(s) of {_size_text(total)} decoded in a file of "
            f"{_size_text(file_bytes)} ({total / max(file_bytes, 1):.0f}:1); {'/'.join(codecs)} pages need at least "
            f"{_size_text(needed)}",
            path=path, fix=fix,
        )


def eer_max_pixels_per_byte(skip_bits: int) -> float:
    """Most sensor pixels one byte of an EER stream can cover: runs of ``2**skip_bits - 1`` per code."""
    return 8.0 * ((1 << int(skip_bits)) - 1) / int(skip_bits)


def check_eer_streams(*, path: str | Path, sensor_shape: tuple[int, int], frame_bytes, skip_bits: int,
                      file_bytes: int) -> None:
    """Check 3 for an EER: every raw frame's bytes can cover the sensor's pixels, and the frames
    together fit in the file (strips of different frames never share bytes in a real EER).

    ``frame_bytes``: bytes of each raw frame (all its strips). A frame too short is refused for the
    first such frame."""
    ny, nx = (int(v) for v in sensor_shape)
    total = sum(int(b) for b in frame_bytes)
    if total > file_bytes:
        raise DecodeLimitError(
            f"its {len(frame_bytes)} EER raw frames declare {_size_text(total)} of event data in a file of "
            f"{_size_text(file_bytes)} (frames share bytes)",
            path=path, fix=_FIX_BOMB,
        )
    per_byte = eer_max_pixels_per_byte(skip_bits)
    needed = (ny * nx - ((1 << int(skip_bits)) - 1)) / per_byte
    for index, size in enumerate(frame_bytes):
        if int(size) < needed:
            raise DecodeLimitError(
                f"EER raw frame {index} has {int(size)} bytes but a {nx} x {ny} sensor needs at least "
                f"{_size_text(needed)} of {skip_bits}-bit run-length codes to reach its last pixel",
                path=path, fix=_FIX_BOMB,
            )
