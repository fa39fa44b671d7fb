"""Decompression bombs written byte by byte (tifffile will not write strips that share one block).

Every page's strips point at the same deflate block of zeros, so the file is a few kB while its
pages declare gigabytes. Used by test_decode_bombs.py (issue 14, row 9).
"""
import struct
import zlib

SHORT, LONG = 3, 4


def deflate_bomb_tiff(path, *, width: int, height: int, n_pages: int, rows_per_strip: int = 256) -> int:
    """Write a little-endian TIFF of ``n_pages`` uint16 ``height x width`` deflate pages; returns its size."""
    block = zlib.compress(bytes(rows_per_strip * width * 2), 9)
    n_strips = -(-height // rows_per_strip)
    out = bytearray(b"II*\x00\x00\x00\x00\x00")
    block_at = len(out)
    out += block
    offsets_at = len(out)
    out += struct.pack(f"<{n_strips}I", *([block_at] * n_strips))
    counts_at = len(out)
    out += struct.pack(f"<{n_strips}I", *([len(block)] * n_strips))
    entries = [
        (256, LONG, 1, width), (257, LONG, 1, height), (258, SHORT, 1, 16), (259, SHORT, 1, 8),
        (262, SHORT, 1, 1), (273, LONG, n_strips, offsets_at), (277, SHORT, 1, 1), (278, LONG, 1, rows_per_strip),
        (279, LONG, n_strips, counts_at), (339, SHORT, 1, 1),
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    first_ifd = len(out)
    struct.pack_into("<I", out, 4, first_ifd)
    for page in range(n_pages):
        at = first_ifd + page * ifd_size
        nxt = at + ifd_size if page + 1 < n_pages else 0
        out += struct.pack("<H", len(entries))
        for tag, kind, count, value in entries:
            if kind == SHORT and count == 1:
                out += struct.pack("<HHIHH", tag, kind, count, value, 0)
            else:
                out += struct.pack("<HHII", tag, kind, count, value)
        out += struct.pack("<I", nxt)
    with open(path, "wb") as f:
        f.write(out)
    return len(out)
