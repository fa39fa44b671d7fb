"""MRC movies (``.mrc``, ``.mrcs``, ``.st``): the reader, the 4-bit unpacking kernel and the probe.

Modes 0 (8-bit), 1 (int16), 2 (float32), 6 (uint16), 12 (float16) and 101 (4-bit, see below).
The 1024-byte header is parsed here (:mod:`~framewatch.core.movie_io.mrc_header`); the extended
header (``nsymbt`` bytes at header byte 92, whatever its ``exttyp`` at bytes 104-107: ``FEI1``,
``FEI2``, ``SERI``, ``AGAR`` or none) is skipped, so data start at byte ``1024 + nsymbt``;
``exttyp`` is reported as ``extended_header_type``. Frames are read with one ``pread`` each. The
frame count is ``nz`` (a 2-D file is one frame). The file must hold exactly ``nz`` whole frames
(trailing bytes shorter than a frame are tolerated). MRC rows are stored bottom-up and read as
stored (no flip; see :mod:`framewatch.core.movie_io` for the orientation convention).

Packed 4-bit MRC (SerialEM, IMOD ``mrcfiles``/``b3dutil``, MotionCor3 ``C4BitImage``): two pixels
per byte, the even-x pixel in the low 4 bits and the odd-x pixel in the high 4 bits; values 0-15,
read as uint8. Two forms are recognised, as IMOD does:

- mode 101: ``nx`` is the true width and each row takes ``(nx + 1) // 2`` bytes (an odd width leaves
  the high nibble of the last byte of every row unused);
- mode 0 with IMOD's stamp and bit 16 of ``imodFlags`` (``MRC_FLAGS_4BIT_BYTES``, which SerialEM
  sets), or mode 0 whose only title contains "4 bits packed" and whose size is a K2/K3
  super-resolution size (IMOD's ``sizeCanBe4BitK2SuperRes``): SerialEM's default when "Use
  non-standard mode 101" is off. ``nx`` is *half* the true width, each row takes ``nx`` bytes, and
  frames are ``2 nx`` wide.

mrcfile does not read either form ("modes 3 and 101 are not supported").

Mode 0 signedness (IMOD's rule, ``readBytesSigned`` in IMOD's ``b3dutil.c``): MRC2014 says mode 0
is signed, but SerialEM stores counts as unsigned bytes. With IMOD's stamp (``imodStamp``, bytes
152-155, == 1146047817, which SerialEM writes), bit 0 of ``imodFlags`` (bytes 156-159) means "bytes
are signed": clear -> **uint8**, set -> int8. Without the stamp IMOD decides from the header's
``dmin``/``dmax``: signed if ``dmin < 0`` and ``dmax < 128``; unsigned if ``dmin >= 0`` and
``dmax >= 128``; when ``dmin < 0`` and ``dmax >= 128``, signed if ``-dmin > dmax - 128``; otherwise
(``0 <= dmin``, ``dmax < 128``, both readings equal for the recorded range) unsigned. IMOD's
environment override (``READ_MODE0_SIGNED``) is not read. :func:`~framewatch.core.movie_io.write_movie`
writes uint8 frames as mode 0 with the stamp set and the signed bit clear, so they read back as uint8.

Pixel size: ``cella.x / mx`` from the header, else ``None``.

:func:`probe_mrc` tells from the header and the file size how many frames are on disk (SerialEM
writes the final ``nz`` with the first frame; other writers let ``nz`` grow with the frames).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from numba import njit

from ..decode_limits import DecodeLimits, check_decoded_size
from ..errors import MovieFormatError
from .base import MovieReader, ReadOptions
from .file_progress import FileProgress, ProbeSource, incomplete, opened, read_at
from .mrc_header import MRC_HEADER_BYTES, MrcLayout, mrc_layout


class MrcReader(MovieReader):
    """An MRC movie; made by :func:`framewatch.core.movie_io.open_movie`.

    Attributes beyond :class:`MovieReader`'s: ``packed_4bit`` (``"mode101"``, ``"half_x"`` or
    ``None``), ``extended_header_type`` (``exttyp`` or ``None``), ``labels`` (the header's titles).
    """

    format = "mrc"

    def __init__(self, path: Path, *, check_values: bool, limits: DecodeLimits | None = None) -> None:
        super().__init__(path, check_values=check_values, limits=limits)
        self._file = open(path, "rb")
        try:
            self._setup()
        except BaseException:
            self._file.close()
            raise

    def _setup(self) -> None:
        path = self.path
        file_bytes = os.fstat(self._file.fileno()).st_size
        raw = self._file.read(MRC_HEADER_BYTES)
        if len(raw) < MRC_HEADER_BYTES:
            raise MovieFormatError(
                f"truncated: {file_bytes} bytes is shorter than the {MRC_HEADER_BYTES}-byte MRC header",
                path=path,
                fix="wait until the file is written completely, or re-copy it",
            )
        layout = mrc_layout(raw, path)
        header = layout.header
        if header.nz == 0:
            raise MovieFormatError("has zero frames (nz = 0 in the MRC header)", path=path,
                                   fix="re-acquire or re-export the movie")
        # decoded pixels are the stored dtype (4-bit packed: uint8 each); the file must hold them all (below)
        check_decoded_size(path=path, frame_shape=(header.ny, layout.width), n_frames=header.nz,
                           itemsize=layout.stored_dtype.itemsize, limits=self._limits)
        check_frames_on_disk(layout, file_bytes, path)
        self._header = header
        self._layout = layout
        self.packed_4bit = layout.packed_4bit
        self.extended_header_type = header.exttyp or None
        self.labels = header.labels
        self.n_frames = int(header.nz)
        self.shape = (int(header.ny), int(layout.width))
        self.dtype = layout.stored_dtype.newbyteorder("=")
        self.pixel_size_a = header.pixel_size_a

    def _read_raw(self, index: int) -> np.ndarray:
        return read_mrc_frame(self._file.fileno(), self._layout, index, self.path)

    def _close(self) -> None:
        self._file.close()


def read_mrc_frame(fd: int, layout: MrcLayout, index: int, path: Path) -> np.ndarray:
    """Frame ``index`` of the MRC file open as ``fd``: ``(ny, width)`` native dtype, C-contiguous
    (one ``pread``; 4-bit pixels unpacked to uint8)."""
    if layout.packed_4bit is None:
        frame = np.empty((layout.header.ny, layout.width), dtype=layout.stored_dtype)
    else:
        frame = np.empty((layout.header.ny, layout.row_bytes), dtype=np.uint8)
    got = os.preadv(fd, [memoryview(frame).cast("B")], layout.data_offset + index * layout.frame_bytes)
    if got != layout.frame_bytes:
        raise MovieFormatError(
            f"truncated: frame {index} has {got} of {layout.frame_bytes} bytes",
            path=path,
            fix="the file shrank while being read; re-copy it",
        )
    if layout.packed_4bit is not None:
        return unpack_4bit(frame, layout.width)
    if not layout.stored_dtype.isnative:
        frame = frame.astype(layout.stored_dtype.newbyteorder("="))
    return frame


def check_frames_on_disk(layout: MrcLayout, file_bytes: int, path: Path) -> None:
    """The file holds the header's ``nz`` whole frames (a partial frame after them is tolerated)."""
    header = layout.header
    expected = layout.expected_bytes
    if file_bytes < expected:
        raise MovieFormatError(
            f"truncated: expected {expected} bytes for {header.nz} frames of {header.ny} x {layout.width} "
            f"mode {header.mode}, file has {file_bytes}",
            path=path,
            fix="wait until the file is written completely, or re-copy it",
        )
    whole_frames = (file_bytes - layout.data_offset) // layout.frame_bytes
    if whole_frames != header.nz:
        raise MovieFormatError(
            f"frame count {header.nz} in the header disagrees with the {whole_frames} frames in the file",
            path=path,
            fix="the header was not updated after writing; re-export the movie or fix nz (e.g. IMOD alterheader)",
        )


def open_mrc(path: Path, options: ReadOptions) -> MrcReader:
    """The registry's opener for MRC movies."""
    return MrcReader(path, check_values=options.check_values, limits=options.limits)


@njit(cache=True, nogil=True)
def _unpack_4bit_kernel(packed, nx, out):  # pragma: no cover - compiled
    """``out[y, 2i] = packed[y, i] & 15``, ``out[y, 2i + 1] = packed[y, i] >> 4`` for x < nx."""
    ny = packed.shape[0]
    half = nx // 2
    for y in range(ny):
        for i in range(half):
            b = packed[y, i]
            out[y, 2 * i] = b & 15
            out[y, 2 * i + 1] = b >> 4
        if nx % 2:
            out[y, nx - 1] = packed[y, half] & 15


def unpack_4bit(packed: np.ndarray, nx: int, *, out: np.ndarray | None = None) -> np.ndarray:
    """Unpack 4-bit pixels ``(ny, (nx + 1) // 2)`` uint8 into ``(ny, nx)`` uint8 (values 0-15).

    Two pixels per byte, the even-x pixel in the low nibble (SerialEM/IMOD/MotionCor3 convention);
    with an odd ``nx`` the high nibble of each row's last byte is ignored.
    """
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    nx = int(nx)
    if packed.ndim != 2 or nx < 1 or packed.shape[1] != (nx + 1) // 2:
        raise ValueError(f"packed rows must be (nx + 1) // 2 = {(nx + 1) // 2} bytes for nx = {nx}, got {packed.shape}")
    if out is None:
        out = np.empty((packed.shape[0], nx), dtype=np.uint8)
    elif out.shape != (packed.shape[0], nx) or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous uint8 of shape {(packed.shape[0], nx)}")
    _unpack_4bit_kernel(packed, nx, out)
    return out


# ------------------------------------------------------------------------------------------- probe


def probe_mrc(source: ProbeSource, *, frames_expected: int | None = None) -> FileProgress:
    """How many frames of an MRC movie are on disk, from its header and size (no frame is read).

    Complete when the file is exactly header + extended header + ``nz`` frames and ``nz`` equals
    ``frames_expected`` (when given). A file longer than that is not complete (a writer that lets
    ``nz`` grow has written a frame before updating the header). Never raises for a short or
    garbage file; ``OSError`` from opening or reading passes through.
    """
    with opened(source) as (f, size):
        raw = read_at(f, 0, MRC_HEADER_BYTES) if size else b""
    if size == 0:
        return incomplete("empty file", frames_expected=frames_expected)
    if len(raw) < MRC_HEADER_BYTES:
        return incomplete(f"only {size} bytes: shorter than an MRC header", frames_expected=frames_expected)
    try:
        layout = mrc_layout(raw, Path(str(getattr(source, "name", source))))
    except MovieFormatError as err:
        return incomplete(err.what, frames_expected=frames_expected)
    nz = int(layout.header.nz)
    if nz == 0:
        return incomplete("MRC header says 0 frames", frames_expected=0 if frames_expected is None else frames_expected)
    want = nz if frames_expected is None else int(frames_expected)
    present = max(0, (size - layout.data_offset) // layout.frame_bytes)
    expected = layout.expected_bytes
    if size < expected:
        reason = f"truncated: the header says {nz} frames, the file holds {present}"
    elif size > expected:
        reason = f"file is {size - expected} bytes longer than its header's {nz} frames"
    elif want != nz:
        reason = f"the header says {nz} frames, {want} are expected"
    else:
        return FileProgress(complete=True, frames_readable=nz, frames_expected=want, reason=f"all {nz} frames are on disk")
    return incomplete(reason, frames_readable=min(present, nz), frames_expected=want)
