"""Walking a TIFF page directory (IFD chain) without decoding: the structure the TIFF and EER probes read.

A TIFF (classic, ``II*\\0``/``MM\\0*``, or BigTIFF, ``II+\\0``) holds a chain of image file
directories (IFDs), one per page; each names its page's strips (tags 273/279) or tiles (324/325)
and the offset of the next IFD (0 ends the chain). A file being written grows this chain page by
page, so a walk stops at the first IFD, strip or tile that is not (yet) inside the file and says
why. Nothing is decompressed; the walk never raises for a short or garbage file (``OSError`` from
reading passes through).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

from .file_progress import FileProgress, incomplete, read_at

TAG_COMPRESSION = 259
DATA_TAGS = ((273, 279), (324, 325))  # (offsets, byte counts) of strips, of tiles
MAX_IFD_ENTRIES = 4096  # more entries in one IFD means the bytes are not a page directory
MAX_PAGES = 1 << 20

# TIFF field type -> struct code of one value
_TYPE_CODES = {1: "B", 2: "B", 3: "H", 4: "I", 5: "II", 6: "b", 7: "B", 8: "h", 9: "i", 10: "ii", 11: "f", 12: "d",
               13: "I", 16: "Q", 17: "q", 18: "Q"}


@dataclass(frozen=True)
class _Flavour:
    """Classic TIFF or BigTIFF: sizes and struct codes of the directory fields."""

    order: str
    count_code: str  # number of IFD entries
    entry_bytes: int
    entry_code: str  # tag, type, count (the value field follows)
    offset_code: str
    offset_bytes: int


@dataclass(frozen=True)
class TiffPage:
    """One page of the chain: where its IFD lies, its compression, where its image data end.

    ``extra``: the raw value bytes of the tags the walk was asked for (first page only).
    """

    ifd_offset: int
    compression: int
    data_end: int  # one past the last byte of its strips/tiles
    extra: dict[int, bytes]


@dataclass(frozen=True)
class IfdChain:
    """The leading pages whose IFD and image data lie inside the file, and why the walk stopped
    early (``None``: the chain ends with offset 0 and every page is whole)."""

    pages: tuple[TiffPage, ...]
    stop_reason: str | None


def _flavour(head: bytes) -> tuple[_Flavour, int] | str:
    """The flavour and the first IFD offset of a file starting with ``head`` (16 bytes), or why not a TIFF."""
    if len(head) < 8:
        return f"only {len(head)} bytes: shorter than a TIFF header"
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None:
        return "not a TIFF file (no II/MM byte-order mark)"
    magic = struct.unpack(order + "H", head[2:4])[0]
    if magic == 42:
        return _Flavour(order, "H", 12, "HHI", "I", 4), struct.unpack(order + "I", head[4:8])[0]
    if magic == 43 and len(head) >= 16 and struct.unpack(order + "H", head[4:6])[0] == 8:
        return _Flavour(order, "Q", 20, "HHQ", "Q", 8), struct.unpack(order + "Q", head[8:16])[0]
    return f"not a TIFF file (version {magic})"


def walk_ifds(f: BinaryIO, file_bytes: int, *, extra_tags: tuple[int, ...] = ()) -> IfdChain:
    """Walk the IFD chain of the open binary file ``f`` of ``file_bytes`` bytes (see the module docstring)."""
    found = _flavour(read_at(f, 0, 16))
    if isinstance(found, str):
        return IfdChain((), found)
    flavour, offset = found
    pages: list[TiffPage] = []
    seen: set[int] = set()
    while offset != 0:
        if offset in seen or len(pages) >= MAX_PAGES:
            return IfdChain(tuple(pages), f"the page directory loops or is too long after {len(pages)} pages")
        seen.add(offset)
        page = _read_page(f, file_bytes, offset, flavour, len(pages), extra_tags if not pages else ())
        if isinstance(page, str):
            return IfdChain(tuple(pages), page)
        pages.append(page[0])
        offset = page[1]
    if not pages:
        return IfdChain((), "TIFF has no pages")
    return IfdChain(tuple(pages), None)


def _read_page(f: BinaryIO, file_bytes: int, offset: int, flavour: _Flavour, index: int,
               extra_tags: tuple[int, ...]) -> tuple[TiffPage, int] | str:
    """Page ``index`` whose IFD is at ``offset`` and the next IFD's offset, or why it is not whole."""
    beyond = f"page {index}: its directory at byte {offset} lies beyond the end of the file ({file_bytes} bytes)"
    count_bytes = struct.calcsize(flavour.count_code)
    if offset + count_bytes > file_bytes:
        return beyond
    n_entries = struct.unpack(flavour.order + flavour.count_code, read_at(f, offset, count_bytes))[0]
    if n_entries == 0 or n_entries > MAX_IFD_ENTRIES:
        return f"page {index}: its directory at byte {offset} has {n_entries} entries (damaged)"
    size = n_entries * flavour.entry_bytes + flavour.offset_bytes
    raw = read_at(f, offset + count_bytes, size)
    if len(raw) < size:
        return beyond
    values = {}
    for at in range(0, n_entries * flavour.entry_bytes, flavour.entry_bytes):
        tag, typ, count = struct.unpack_from(flavour.order + flavour.entry_code, raw, at)
        if tag == TAG_COMPRESSION or tag in extra_tags or any(tag in pair for pair in DATA_TAGS):
            field = raw[at + flavour.entry_bytes - flavour.offset_bytes: at + flavour.entry_bytes]
            values[tag] = _tag_bytes(f, file_bytes, flavour, typ, count, field)
    data_end = _data_end(values, flavour)
    if data_end is None:
        return f"page {index}: its strip or tile list is missing or lies beyond the end of the file ({file_bytes} bytes)"
    if data_end > file_bytes:
        return f"page {index}: its image data end at byte {data_end}, beyond the end of the file ({file_bytes} bytes)"
    compression = _integers(values.get(TAG_COMPRESSION), flavour)
    page = TiffPage(ifd_offset=offset, compression=compression[0] if compression else 1, data_end=data_end,
                    extra={tag: values[tag][1] for tag in extra_tags if values.get(tag) is not None})
    next_offset = struct.unpack_from(flavour.order + flavour.offset_code, raw, size - flavour.offset_bytes)[0]
    return page, next_offset


def _tag_bytes(f: BinaryIO, file_bytes: int, flavour: _Flavour, typ: int, count: int,
               field: bytes) -> tuple[str, bytes] | None:
    """(struct code of one value, value bytes) of an entry; ``None`` when the values are not in the file."""
    code = _TYPE_CODES.get(typ)
    if code is None:
        return None
    n_bytes = struct.calcsize(flavour.order + code) * count
    if n_bytes <= flavour.offset_bytes:
        return code, field[:n_bytes]
    at = struct.unpack(flavour.order + flavour.offset_code, field)[0]
    if at + n_bytes > file_bytes:
        return None
    data = read_at(f, at, n_bytes)
    return (code, data) if len(data) == n_bytes else None


def _integers(value: tuple[str, bytes] | None, flavour: _Flavour) -> tuple[int, ...]:
    if value is None or value[0] not in ("B", "H", "I", "Q", "b", "h", "i", "q"):
        return ()
    code, data = value
    return struct.unpack(f"{flavour.order}{len(data) // struct.calcsize(code)}{code}", data)


def _data_end(values: dict, flavour: _Flavour) -> int | None:
    """One past the last byte of the page's strips or tiles; ``None`` when the page names none or
    its lists are not (yet) in the file."""
    for offsets_tag, counts_tag in DATA_TAGS:
        if offsets_tag not in values and counts_tag not in values:
            continue
        offsets = _integers(values.get(offsets_tag), flavour)
        counts = _integers(values.get(counts_tag), flavour)
        if not offsets or len(offsets) != len(counts):
            return None
        return max(o + c for o, c in zip(offsets, counts))
    return None


def chain_progress(n_frames: int, stop_reason: str | None, frames_expected: int | None) -> FileProgress:
    """The :class:`FileProgress` of a TIFF-structured movie with ``n_frames`` whole frames."""
    if stop_reason is not None:
        return incomplete(stop_reason, frames_readable=n_frames, frames_expected=frames_expected)
    if frames_expected is not None and n_frames != frames_expected:
        told = f"{n_frames} of {frames_expected}" if n_frames < frames_expected else f"{n_frames}, not {frames_expected},"
        return incomplete(f"{told} frames on disk", frames_readable=n_frames, frames_expected=frames_expected)
    return FileProgress(complete=True, frames_readable=n_frames, frames_expected=frames_expected,
                        reason=f"all {n_frames} frames are on disk")
