"""The 1024-byte MRC header: the fields movies need, IMOD's mode-0 rules, and where the frames lie.

Shared by the MRC reader, the MRC probe and the MRC writer (``mrc.py``, ``write.py``); the rules
(extended header, 4-bit packing, mode-0 signedness) are described in :mod:`framewatch.core.movie_io.mrc`.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MovieFormatError

MRC_SUFFIXES = (".mrc", ".mrcs", ".st")
MRC_HEADER_BYTES = 1024
IMOD_STAMP = 1146047817
IMOD_FLAG_SIGNED_BYTES = 1
IMOD_FLAG_4BIT_BYTES = 16  # MRC_FLAGS_4BIT_BYTES: mode-0 bytes hold two 4-bit pixels (x size halved)
MRC_MODE_4BIT = 101
_MRC_LABEL_BYTES = 80

# MRC mode -> stored dtype (little-endian; byte-swapped for big-endian files). Mode 0 is decided by
# the IMOD flag (see the docstring of mrc.py).
MRC_MODE_DTYPES = {0: "i1", 1: "i2", 2: "f4", 6: "u2", 12: "f2"}


class MrcHeader:
    """The fields of a 1024-byte MRC header this package needs (byte order resolved)."""

    def __init__(self, raw: bytes, path: Path) -> None:
        order = _mrc_byte_order(raw)
        self.byte_order = order
        self.nx, self.ny, self.nz, self.mode = struct.unpack_from(order + "4i", raw, 0)
        self.mx = struct.unpack_from(order + "i", raw, 28)[0]
        self.cella_x = struct.unpack_from(order + "f", raw, 40)[0]
        self.mapc, self.mapr, self.maps = struct.unpack_from(order + "3i", raw, 64)
        self.dmin, self.dmax = struct.unpack_from(order + "2f", raw, 76)
        self.nsymbt = struct.unpack_from(order + "i", raw, 92)[0]
        self.exttyp = raw[104:108].decode("ascii", "replace").strip("\x00 ")
        self.imod_stamp, self.imod_flags = struct.unpack_from(order + "2i", raw, 152)
        nlabl = struct.unpack_from(order + "i", raw, 220)[0]
        self.labels = tuple(
            raw[224 + i * _MRC_LABEL_BYTES: 224 + (i + 1) * _MRC_LABEL_BYTES].decode("latin-1").rstrip("\x00 ")
            for i in range(min(max(nlabl, 0), 10))
        )
        self.path = path

    @property
    def pixel_size_a(self) -> float | None:
        if self.mx > 0 and np.isfinite(self.cella_x) and self.cella_x > 0:
            # shortest decimal of the float32 quotient: 1.23 reads back as 1.23, not 1.2300000190734863
            return float(str(np.float32(np.float32(self.cella_x) / np.float32(self.mx))))
        return None

    @property
    def bytes_signed(self) -> bool:
        """IMOD's ``readBytesSigned`` for mode 0 (see the docstring of mrc.py)."""
        if self.imod_stamp == IMOD_STAMP:
            return bool(self.imod_flags & IMOD_FLAG_SIGNED_BYTES)
        dmin, dmax = float(self.dmin), float(self.dmax)
        if dmin < 0 and dmax < 128:
            return True
        if dmin < 0 and dmax >= 128:
            return -dmin > dmax - 128
        return False

    @property
    def packed_4bit(self) -> str | None:
        """``"mode101"``, ``"half_x"`` (mode 0 flagged or titled as 4-bit packed) or ``None``."""
        if self.mode == MRC_MODE_4BIT:
            return "mode101"
        if self.mode == 0 and (
            (self.imod_stamp == IMOD_STAMP and self.imod_flags & IMOD_FLAG_4BIT_BYTES)
            or (len(self.labels) == 1 and "4 bits packed" in self.labels[0]
                and _size_can_be_4bit_k2_super_res(self.nx, self.ny))
        ):
            return "half_x"
        return None

    def stored_dtype(self) -> np.dtype:
        if self.packed_4bit is not None:
            return np.dtype(np.uint8)
        if self.mode not in MRC_MODE_DTYPES:
            raise MovieFormatError(
                f"unknown MRC mode {self.mode}",
                path=self.path,
                fix="supported movie modes are 0 (8-bit), 1 (int16), 2 (float32), 6 (uint16), 12 (float16) "
                "and 101 (4-bit)",
            )
        code = MRC_MODE_DTYPES[self.mode]
        if self.mode == 0 and not self.bytes_signed:
            code = "u1"
        return np.dtype(self.byte_order + code)


def _size_can_be_4bit_k2_super_res(nx: int, ny: int) -> bool:
    """IMOD's ``sizeCanBe4BitK2SuperRes``: a half-width byte file of a K2/K3 super-resolution size (+-2 px)."""
    for full_x, full_y in ((7676, 7420), (7680, 7424), (11520, 8184)):
        if (abs(nx - full_x // 2) <= 2 and abs(ny - full_y) <= 2) or (abs(nx - full_y // 2) <= 2 and abs(ny - full_x) <= 2):
            return True
    return False


def _mrc_byte_order(raw: bytes) -> str:
    """``"<"`` or ``">"`` from the machine stamp, else guessed from a plausible mode and size."""
    stamp = raw[212:214]
    if stamp in (b"\x44\x44", b"\x44\x41"):
        return "<"
    if stamp == b"\x11\x11":
        return ">"
    for order in ("<", ">"):
        nx, ny, nz, mode = struct.unpack_from(order + "4i", raw, 0)
        if 0 <= mode < 256 and 0 < nx < 2**20 and 0 < ny < 2**20 and 0 <= nz < 2**24:
            return order
    return "<"


@dataclass(frozen=True)
class MrcLayout:
    """Where the frames of an MRC file lie: frame ``i`` is ``frame_bytes`` bytes at
    ``data_offset + i * frame_bytes``, ``ny`` rows of ``row_bytes`` bytes, decoded ``(ny, width)``."""

    header: MrcHeader
    stored_dtype: np.dtype
    packed_4bit: str | None
    width: int
    row_bytes: int
    frame_bytes: int
    data_offset: int

    @property
    def expected_bytes(self) -> int:
        """The size of the file when it holds exactly the header's ``nz`` frames."""
        return self.data_offset + self.header.nz * self.frame_bytes


def mrc_layout(raw: bytes, path: Path) -> MrcLayout:
    """Parse a 1024-byte header ``raw`` into an :class:`MrcLayout`.

    Raises :class:`MovieFormatError` for impossible dimensions, an axis order other than x fastest
    and an unknown mode (``nz`` = 0 is left to the caller).
    """
    header = MrcHeader(raw, path)
    if header.nx <= 0 or header.ny <= 0 or header.nz < 0 or header.nsymbt < 0:
        raise MovieFormatError(
            f"MRC header has impossible dimensions nx={header.nx} ny={header.ny} nz={header.nz} "
            f"(extended header {header.nsymbt} bytes)",
            path=path,
            fix="the file is not an MRC movie or its header is damaged",
        )
    axes = (header.mapc, header.mapr, header.maps)
    if sorted(axes) == [1, 2, 3] and axes != (1, 2, 3):
        raise MovieFormatError(
            f"axis order mapc/mapr/maps = {header.mapc}/{header.mapr}/{header.maps} is not 1/2/3",
            path=path,
            fix="movies must store x as the fast axis; rewrite the file (e.g. IMOD newstack) first",
        )
    stored = header.stored_dtype()
    packed = header.packed_4bit
    if packed == "mode101":
        width, row_bytes = header.nx, (header.nx + 1) // 2
    elif packed == "half_x":
        width, row_bytes = 2 * header.nx, header.nx
    else:
        width, row_bytes = header.nx, header.nx * stored.itemsize
    return MrcLayout(header=header, stored_dtype=stored, packed_4bit=packed, width=width, row_bytes=row_bytes,
                     frame_bytes=row_bytes * header.ny, data_offset=MRC_HEADER_BYTES + header.nsymbt)
