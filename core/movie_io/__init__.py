"""Reading and writing detector movies (MRC, TIFF and EER), one frame at a time.

A movie is ``(n_frames, ny, nx)``, C order, x the fast axis. :func:`open_movie` returns a
:class:`MovieReader` that decodes one frame per call, so a reader never holds more than one frame
(plus the decoder's own page buffer) in memory.

Formats, chosen by suffix:

- MRC (``.mrc``, ``.mrcs``, ``.st``): modes 0 (8-bit), 1 (int16), 2 (float32), 6 (uint16), 12
  (float16) and 101 (4-bit, see below). The 1024-byte header is parsed here; the extended header
  (``nsymbt`` bytes at header byte 92, whatever its ``exttyp`` at bytes 104-107: ``FEI1``, ``FEI2``,
  ``SERI``, ``AGAR`` or none) is skipped, so data start at byte ``1024 + nsymbt``; ``exttyp`` is
  reported as ``extended_header_type``. Frames are read with one ``pread`` each. The frame count is
  ``nz`` (a 2-D file is one frame). The file must hold exactly ``nz`` whole frames (trailing bytes
  shorter than a frame are tolerated).
- TIFF (``.tif``, ``.tiff``): one page per frame, uint8, int8, uint16, int16, float16 or float32,
  uncompressed, LZW or deflate, decoded with tifffile.
- EER (``.eer``, ``.ecc``): Falcon electron events, decoded and grouped into fractions by
  :mod:`framewatch.core.movie_io.eer` (its docstring has the format, the grouping and the remainder rule).
  EER frames are **not** flipped in Y (as MotionCor3 and RELION render them).

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
environment override (``READ_MODE0_SIGNED``) is not read. :func:`write_movie` writes uint8 frames
as mode 0 with the stamp set and the signed bit clear, so they read back as uint8.

Orientation convention: MRC rows are stored bottom-up (row 0 is the bottom of the image as IMOD shows
it) and TIFF rows top-down. IMOD, SerialEM, MotionCor2 and RELION therefore flip TIFF frames in Y
when they read or write them; so does this module (``page[::-1, :]`` on read, the same flip on
write). The same movie written as MRC and as TIFF reads back identical, and a gain reference with a
rotation/flip setting that works in those programs works here.

Pixel size: from the MRC header (``cella.x / mx``), or from TIFF resolution tags when the unit is
centimetre and the value corresponds to 0.05-100 A per pixel (other TIFF resolutions, such as the
common 72 dpi default, carry no specimen pixel size), or from EER's ``sensorPixelSize``; else
``None``.

Errors about the file raise :class:`~framewatch.core.errors.MovieFormatError`, whose message names
the file, what is wrong and what to do.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
from numba import njit

from ..atomic_write import atomic_path
from ..decode_limits import DecodeLimits, check_decoded_size, check_tiff_storage
from ..errors import MovieFormatError
from .base import MovieReader, tiff_pages  # noqa: F401 - both stay public here

MRC_SUFFIXES = (".mrc", ".mrcs", ".st")
TIFF_SUFFIXES = (".tif", ".tiff")
EER_SUFFIXES = (".eer", ".ecc")
SUPPORTED_SUFFIXES = MRC_SUFFIXES + TIFF_SUFFIXES + EER_SUFFIXES

MRC_HEADER_BYTES = 1024
IMOD_STAMP = 1146047817
IMOD_FLAG_SIGNED_BYTES = 1
IMOD_FLAG_4BIT_BYTES = 16  # MRC_FLAGS_4BIT_BYTES: mode-0 bytes hold two 4-bit pixels (x size halved)
MRC_MODE_4BIT = 101
_MRC_LABEL_BYTES = 80

# MRC mode -> stored dtype (little-endian; byte-swapped for big-endian files). Mode 0 is decided by
# the IMOD flag (see the module docstring).
_MRC_MODE_DTYPES = {0: "i1", 1: "i2", 2: "f4", 6: "u2", 12: "f2"}
_DTYPE_TO_MRC_MODE = {"int8": 0, "uint8": 0, "int16": 1, "float32": 2, "uint16": 6, "float16": 12}
_TIFF_DTYPES = {"uint8", "int8", "uint16", "int16", "float16", "float32"}
_TIFF_COMPRESSIONS = {"lzw": "lzw", "zlib": "zlib", "deflate": "zlib", "zip": "zlib", "none": None}

# plausible specimen pixel sizes when taken from TIFF resolution tags
_TIFF_PIXEL_SIZE_RANGE_A = (0.05, 100.0)
_ANGSTROM_PER_CM = 1e8


# --------------------------------------------------------------------------------------------- MRC


class _MrcHeader:
    """The fields of a 1024-byte MRC header this module needs (byte order resolved)."""

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
        """IMOD's ``readBytesSigned`` for mode 0 (see the module docstring)."""
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
        if self.mode not in _MRC_MODE_DTYPES:
            raise MovieFormatError(
                f"unknown MRC mode {self.mode}",
                path=self.path,
                fix="supported movie modes are 0 (8-bit), 1 (int16), 2 (float32), 6 (uint16), 12 (float16) "
                "and 101 (4-bit)",
            )
        code = _MRC_MODE_DTYPES[self.mode]
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


class _MrcReader(MovieReader):
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
        header = _MrcHeader(raw, path)
        if header.nx <= 0 or header.ny <= 0 or header.nz < 0 or header.nsymbt < 0:
            raise MovieFormatError(
                f"MRC header has impossible dimensions nx={header.nx} ny={header.ny} nz={header.nz} "
                f"(extended header {header.nsymbt} bytes)",
                path=path,
                fix="the file is not an MRC movie or its header is damaged",
            )
        if sorted((header.mapc, header.mapr, header.maps)) == [1, 2, 3] and (
            header.mapc,
            header.mapr,
            header.maps,
        ) != (1, 2, 3):
            raise MovieFormatError(
                f"axis order mapc/mapr/maps = {header.mapc}/{header.mapr}/{header.maps} is not 1/2/3",
                path=path,
                fix="movies must store x as the fast axis; rewrite the file (e.g. IMOD newstack) first",
            )
        stored = header.stored_dtype()
        if header.nz == 0:
            raise MovieFormatError("has zero frames (nz = 0 in the MRC header)", path=path,
                                   fix="re-acquire or re-export the movie")
        packed = header.packed_4bit
        if packed == "mode101":
            width, row_bytes = header.nx, (header.nx + 1) // 2
        elif packed == "half_x":
            width, row_bytes = 2 * header.nx, header.nx
        else:
            width, row_bytes = header.nx, header.nx * stored.itemsize
        frame_bytes = row_bytes * header.ny
        # decoded pixels are the stored dtype (4-bit packed: uint8 each); the file must hold them all (below)
        check_decoded_size(path=path, frame_shape=(header.ny, width), n_frames=header.nz,
                           itemsize=stored.itemsize, limits=self._limits)
        data_offset = MRC_HEADER_BYTES + header.nsymbt
        expected = data_offset + header.nz * frame_bytes
        if file_bytes < expected:
            raise MovieFormatError(
                f"truncated: expected {expected} bytes for {header.nz} frames of {header.ny} x {width} "
                f"mode {header.mode}, file has {file_bytes}",
                path=path,
                fix="wait until the file is written completely, or re-copy it",
            )
        whole_frames = (file_bytes - data_offset) // frame_bytes
        if whole_frames != header.nz:
            raise MovieFormatError(
                f"frame count {header.nz} in the header disagrees with the {whole_frames} frames in the file",
                path=path,
                fix="the header was not updated after writing; re-export the movie or fix nz (e.g. IMOD alterheader)",
            )
        self._header = header
        self._stored_dtype = stored
        self._frame_bytes = frame_bytes
        self._row_bytes = row_bytes
        self._data_offset = data_offset
        self.packed_4bit = packed
        self.extended_header_type = header.exttyp or None
        self.labels = header.labels
        self.n_frames = int(header.nz)
        self.shape = (int(header.ny), int(width))
        self.dtype = stored.newbyteorder("=")
        self.pixel_size_a = header.pixel_size_a

    def _read_raw(self, index: int) -> np.ndarray:
        if self.packed_4bit is None:
            frame = np.empty(self.shape, dtype=self._stored_dtype)
        else:
            frame = np.empty((self.shape[0], self._row_bytes), dtype=np.uint8)
        got = os.preadv(self._file.fileno(), [memoryview(frame).cast("B")],
                        self._data_offset + index * self._frame_bytes)
        if got != self._frame_bytes:
            raise MovieFormatError(
                f"truncated: frame {index} has {got} of {self._frame_bytes} bytes",
                path=self.path,
                fix="the file shrank while being read; re-copy it",
            )
        if self.packed_4bit is not None:
            return unpack_4bit(frame, self.shape[1])
        if not self._stored_dtype.isnative:
            frame = frame.astype(self.dtype)
        return frame

    def _close(self) -> None:
        self._file.close()


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


# -------------------------------------------------------------------------------------------- TIFF


class _TiffReader(MovieReader):
    format = "tiff"

    def __init__(self, path: Path, *, check_values: bool, limits: DecodeLimits | None = None) -> None:
        import tifffile

        super().__init__(path, check_values=check_values, limits=limits)
        try:
            self._tiff = tifffile.TiffFile(path)
        except Exception as err:
            raise MovieFormatError(
                f"not a readable TIFF file ({err})", path=path, fix="wait until the file is written completely, or re-copy it"
            ) from err
        try:
            self._setup()
        except BaseException:
            self._tiff.close()
            raise

    def _setup(self) -> None:
        path = self.path
        pages = tiff_pages(self._tiff, path)
        if not pages:
            raise MovieFormatError("has zero frames (no TIFF pages)", path=path, fix="re-acquire or re-export the movie")
        first = pages[0]
        shape, dtype = tuple(first.shape), np.dtype(first.dtype)
        if len(shape) != 2:
            raise MovieFormatError(
                f"TIFF page 0 has shape {shape}, not a single-channel 2-D frame",
                path=path,
                fix="movies must be grey-scale, one page per frame",
            )
        if dtype.name not in _TIFF_DTYPES:
            raise MovieFormatError(
                f"TIFF pixel type {dtype.name} is not supported",
                path=path,
                fix=f"use one of {', '.join(sorted(_TIFF_DTYPES))}",
            )
        for index, page in enumerate(pages[1:], start=1):
            if tuple(page.shape) != shape or np.dtype(page.dtype) != dtype:
                raise MovieFormatError(
                    f"TIFF page {index} is {tuple(page.shape)} {page.dtype}, page 0 is {shape} {dtype}",
                    path=path,
                    fix="every page of a movie must have the same size and pixel type",
                )
        check_decoded_size(path=path, frame_shape=shape, n_frames=len(pages), itemsize=dtype.itemsize,
                           limits=self._limits)
        check_tiff_storage(path=path, page_decoded_bytes=[int(np.prod(shape)) * dtype.itemsize] * len(pages),
                           page_compressions=[int(page.compression) for page in pages],
                           file_bytes=os.path.getsize(path), limits=self._limits)
        self._pages = pages
        self.n_frames = len(pages)
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = dtype.newbyteorder("=")
        self.pixel_size_a = _tiff_pixel_size_a(first)

    def _read_raw(self, index: int) -> np.ndarray:
        try:
            page = self._pages[index].asarray()
        except Exception as err:
            raise MovieFormatError(
                f"TIFF page {index} cannot be decoded ({type(err).__name__}: {err})",
                path=self.path,
                fix="the file is damaged or incomplete; re-copy it or exclude the movie",
            ) from err
        if page.shape != self.shape:
            raise MovieFormatError(
                f"TIFF page {index} decoded to shape {page.shape}, expected {self.shape}",
                path=self.path,
                fix="the file is damaged; re-copy it",
            )
        # the Y flip of IMOD, SerialEM, MotionCor2 and RELION (see the module docstring)
        return np.ascontiguousarray(page[::-1, :], dtype=self.dtype)

    def _close(self) -> None:
        self._tiff.close()


def _tiff_pixel_size_a(page) -> float | None:
    """Pixel size from XResolution when ResolutionUnit is centimetre and the value is plausible."""
    try:
        unit = page.tags.get("ResolutionUnit")
        xres = page.tags.get("XResolution")
        if unit is None or xres is None or int(unit.value) != 3:
            return None
        numerator, denominator = xres.value
        if numerator <= 0 or denominator <= 0:
            return None
        size_a = _ANGSTROM_PER_CM * denominator / numerator
    except Exception:
        return None
    low, high = _TIFF_PIXEL_SIZE_RANGE_A
    # resolution tags are rationals: keep 7 significant digits, as the MRC header does
    return float(f"{size_a:.7g}") if low <= size_a <= high else None


# ------------------------------------------------------------------------------------------ public


def _movie_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in MRC_SUFFIXES:
        return "mrc"
    if suffix in TIFF_SUFFIXES:
        return "tiff"
    if suffix in EER_SUFFIXES:
        return "eer"
    raise MovieFormatError(
        f"unknown movie format {suffix or '(no suffix)'!r}",
        path=path,
        fix=f"supported suffixes are {', '.join(SUPPORTED_SUFFIXES)}",
    )


def open_movie(
    path: str | os.PathLike,
    *,
    check_values: bool = True,
    eer_fraction_dose_e_per_a2: float | None = None,
    eer_group_frames: int | None = None,
    eer_upsampling: int = 1,
    eer_total_dose_e_per_a2: float | None = None,
    limits: DecodeLimits | None = None,
) -> MovieReader:
    """Open a movie for frame-by-frame reading; the format follows the suffix.

    Args:
        path: ``.mrc``/``.mrcs``/``.st`` (MRC), ``.tif``/``.tiff`` (TIFF) or ``.eer``/``.ecc`` (EER).
        check_values: raise :class:`MovieFormatError` when a float frame holds NaN or Inf.
        eer_fraction_dose_e_per_a2: EER only: target dose per fraction (default 0.3 e/A^2 when
            ``eer_total_dose_e_per_a2`` is given).
        eer_group_frames: EER only: raw frames per fraction instead of a dose target.
        eer_upsampling: EER only: 1 renders on the sensor grid (4K), 2 on the 8K grid.
        eer_total_dose_e_per_a2: EER only: the dose of the whole movie, which sets the dose per raw
            frame (total / raw frame count).
        limits: the :class:`~framewatch.core.decode_limits.DecodeLimits` checked before anything is
            decoded (default: ``DecodeLimits()``); a file beyond them raises ``DecodeLimitError``.

    The ``eer_*`` options are ignored for other formats. An EER reader's frames are fractions; see
    :class:`framewatch.core.movie_io.eer.EerReader` for its extra attributes and :mod:`framewatch.core.movie_io.eer`
    for the grouping rule.

    The header and page directory are checked here (truncation, zero frames, unknown mode,
    frame-count mismatch, inconsistent pages); frame data are decoded by ``read_frame``.
    """
    path = Path(path)
    kind = _movie_format(path)
    if not path.is_file():
        raise MovieFormatError("movie file not found", path=path, fix="check the path and that the file was not moved")
    if kind == "mrc":
        return _MrcReader(path, check_values=check_values, limits=limits)
    if kind == "eer":
        from .eer import EerReader

        return EerReader(
            path,
            check_values=check_values,
            fraction_dose_e_per_a2=eer_fraction_dose_e_per_a2,
            group_frames=eer_group_frames,
            upsampling=eer_upsampling,
            total_dose_e_per_a2=eer_total_dose_e_per_a2,
            limits=limits,
        )
    return _TiffReader(path, check_values=check_values, limits=limits)


def _as_stack(frames) -> np.ndarray:
    stack = np.asarray(frames)
    if stack.ndim == 2:
        stack = stack[np.newaxis]
    if stack.ndim != 3 or min(stack.shape) == 0:
        raise ValueError(f"frames must be a non-empty (n, ny, nx) or (ny, nx) array, got shape {stack.shape}")
    return stack


def _set_imod_unsigned_bytes(header) -> None:
    """Write IMOD's stamp with the signed-bytes flag clear (mode-0 data are unsigned)."""
    extra2 = bytearray(header.extra2.tobytes())
    struct.pack_into("<2i", extra2, 40, IMOD_STAMP, 0)
    header.extra2 = bytes(extra2)


def _mrc_target_dtype(source: np.dtype, mrc_mode: int | None) -> np.dtype:
    if mrc_mode is None:
        if source.name not in _DTYPE_TO_MRC_MODE:
            raise ValueError(
                f"no MRC mode for dtype {source}; convert to int8, uint8, int16, uint16, float16 or float32 or give mrc_mode"
            )
        return np.dtype(source.name)
    if mrc_mode not in _MRC_MODE_DTYPES:
        raise ValueError(f"MRC mode {mrc_mode} is not one of {sorted(_MRC_MODE_DTYPES)}")
    if mrc_mode == 0:
        return np.dtype(np.uint8 if source.kind == "u" else np.int8)
    return np.dtype(_MRC_MODE_DTYPES[mrc_mode])


def _convert_frame(frame: np.ndarray, target: np.dtype) -> np.ndarray:
    if frame.dtype == target:
        return frame
    converted = frame.astype(target)
    if not np.can_cast(frame.dtype, target, casting="safe") and not np.array_equal(
        converted.astype(frame.dtype), frame, equal_nan=frame.dtype.kind == "f"
    ):
        raise ValueError(f"frame values of dtype {frame.dtype} do not fit {target} exactly; choose another mode")
    return converted


class _RunningStats:
    """min, max, mean and standard deviation over frames added one at a time (Chan et al. merging)."""

    def __init__(self) -> None:
        self.low, self.high = np.inf, -np.inf
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, frame: np.ndarray) -> None:
        with np.errstate(invalid="ignore", over="ignore"):
            values = frame.astype(np.float64)
            frame_mean = float(values.mean())
            frame_m2 = float(np.square(values - frame_mean).sum())
            total = self.count + values.size
            delta = frame_mean - self.mean
            self.m2 += frame_m2 + delta * delta * self.count * values.size / total
            self.mean += delta * values.size / total
            self.count = total
            self.low, self.high = min(self.low, float(frame.min())), max(self.high, float(frame.max()))

    @property
    def std(self) -> float:
        return float(np.sqrt(self.m2 / self.count))


def _write_mrc_movie(path: Path, stack: np.ndarray, *, mrc_mode: int | None, pixel_size_a: float | None) -> None:
    import mrcfile

    target = _mrc_target_dtype(stack.dtype, mrc_mode)
    stats = _RunningStats()
    with atomic_path(path) as tmp:
        with mrcfile.new_mmap(tmp, shape=stack.shape, mrc_mode=_DTYPE_TO_MRC_MODE[target.name], overwrite=True) as mrc:
            data = mrc.data.view(np.uint8) if target == np.uint8 else mrc.data
            for i in range(stack.shape[0]):
                frame = _convert_frame(stack[i], target)
                data[i] = frame
                stats.add(frame)
            mrc.set_image_stack()
            if pixel_size_a is not None:
                mrc.voxel_size = float(pixel_size_a)
            if target == np.uint8:
                _set_imod_unsigned_bytes(mrc.header)
                mrc.reset_header_stats()  # mrcfile reads mode 0 as signed: leave the statistics undetermined
            else:
                mrc.header.dmin, mrc.header.dmax, mrc.header.dmean = stats.low, stats.high, stats.mean
                # float16: mrcfile.validate recomputes the rms in float16, which overflows; leave it undetermined
                mrc.header.rms = -1.0 if target == np.float16 else stats.std
            mrc.flush()


def _write_tiff_movie(path: Path, stack: np.ndarray, *, tiff_compression: str | None, pixel_size_a: float | None) -> None:
    import tifffile

    key = "none" if tiff_compression is None else str(tiff_compression).lower()
    if key not in _TIFF_COMPRESSIONS:
        raise ValueError(f"TIFF compression {tiff_compression!r} is not one of lzw, zlib/deflate/zip, none")
    if stack.dtype.name not in _TIFF_DTYPES:
        raise ValueError(f"TIFF movies hold {', '.join(sorted(_TIFF_DTYPES))}; got {stack.dtype}")
    options = dict(photometric="minisblack", compression=_TIFF_COMPRESSIONS[key], metadata=None, contiguous=False)
    if pixel_size_a is not None:
        per_cm = _ANGSTROM_PER_CM / float(pixel_size_a)
        options.update(resolution=(per_cm, per_cm), resolutionunit="CENTIMETER")
    bigtiff = stack.nbytes > 2**32 - 2**26
    with atomic_path(path) as tmp:
        with tifffile.TiffWriter(tmp, bigtiff=bigtiff) as writer:
            for i in range(stack.shape[0]):
                # rows flipped in Y, the TIFF convention of IMOD, SerialEM, MotionCor2 and RELION
                writer.write(np.ascontiguousarray(stack[i, ::-1, :]), **options)


def write_movie(
    path: str | os.PathLike,
    frames,
    *,
    mrc_mode: int | None = None,
    tiff_compression: str | None = "lzw",
    pixel_size_a: float | None = None,
) -> None:
    """Write a movie ``(n, ny, nx)`` (or one ``(ny, nx)`` frame) as MRC or TIFF, chosen by suffix.

    MRC: the mode follows the dtype (int8/uint8 -> 0, int16 -> 1, float32 -> 2, uint16 -> 6,
    float16 -> 12; uint8 with IMOD's unsigned-bytes flag) unless ``mrc_mode`` is given, in which
    case values must fit the mode's type exactly. An image stack (ispg 0) with the pixel size in
    the header. TIFF: one page per frame, dtype preserved, rows flipped in Y (the convention
    :func:`open_movie` undoes), ``tiff_compression`` "lzw", "zlib" (aliases "deflate", "zip") or
    None/"none"; the pixel size goes to the resolution tags (pixels per centimetre).

    The file is written to a temporary name in the same folder, fsync'd and renamed into place.
    """
    path = Path(path)
    kind = _movie_format(path)
    stack = _as_stack(frames)
    if kind == "eer":
        raise MovieFormatError("writing EER movies is not supported", path=path, fix="write the movie as MRC or TIFF")
    if pixel_size_a is not None and not (pixel_size_a > 0):
        raise ValueError(f"pixel_size_a must be positive, got {pixel_size_a}")
    if kind == "mrc":
        _write_mrc_movie(path, stack, mrc_mode=mrc_mode, pixel_size_a=pixel_size_a)
    else:
        _write_tiff_movie(path, stack, tiff_compression=tiff_compression, pixel_size_a=pixel_size_a)


def write_image_mrc(path: str | os.PathLike, image, *, pixel_size_a: float) -> None:
    """Write a float32 image ``(ny, nx)`` or image stack ``(n, ny, nx)`` as an MRC file (mode 2).

    The header carries ``pixel_size_a`` and correct statistics, so the file passes
    ``mrcfile.validate``. It is written to a temporary file in the same folder, fsync'd and renamed
    over ``path`` (readers never see a partial file).
    """
    import mrcfile

    path = Path(path)
    data = np.asarray(image)
    if data.ndim not in (2, 3) or min(data.shape) == 0:
        raise ValueError(f"image must be a non-empty (ny, nx) or (n, ny, nx) array, got shape {data.shape}")
    if not (pixel_size_a > 0):
        raise ValueError(f"pixel_size_a must be positive, got {pixel_size_a}")
    data = np.ascontiguousarray(data, dtype=np.float32)
    with atomic_path(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(data)
            if data.ndim == 3:
                mrc.set_image_stack()
            mrc.voxel_size = float(pixel_size_a)
