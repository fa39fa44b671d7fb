"""TIFF movies (``.tif``, ``.tiff``): the reader (tifffile) and the probe (the page directory only).

One page per frame, uint8, int8, uint16, int16, float16 or float32, uncompressed, LZW or deflate,
decoded with tifffile. TIFF rows are stored top-down; IMOD, SerialEM, MotionCor2 and RELION flip
TIFF frames in Y when they read or write them, and so does this module (``page[::-1, :]`` on read;
the writer applies the same flip), so the same movie written as MRC and as TIFF reads back identical.

Pixel size: from the resolution tags when the unit is centimetre and the value corresponds to
0.05-100 A per pixel (other resolutions, such as the common 72 dpi default, carry no specimen pixel
size); else ``None``.

:func:`probe_tiff` walks the page directory (:mod:`~framewatch.core.movie_io.tiff_ifd`) and counts
the pages whose directory entry and image data lie inside the file; a TIFF carries no frame count,
so it is complete only against the caller's ``frames_expected`` (or, without one, when the chain
is whole).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..decode_limits import DecodeLimits, check_decoded_size, check_tiff_storage
from ..errors import MovieFormatError
from .base import MovieReader, ReadOptions, tiff_pages
from .file_progress import FileProgress, ProbeSource, incomplete, opened
from .tiff_ifd import chain_progress, walk_ifds

TIFF_SUFFIXES = (".tif", ".tiff")
TIFF_DTYPES = {"uint8", "int8", "uint16", "int16", "float16", "float32"}

# plausible specimen pixel sizes when taken from TIFF resolution tags
_TIFF_PIXEL_SIZE_RANGE_A = (0.05, 100.0)
ANGSTROM_PER_CM = 1e8


class TiffReader(MovieReader):
    """A TIFF movie; made by :func:`framewatch.core.movie_io.open_movie`."""

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
        shape, dtype = first_page_format(first, path)
        for index, page in enumerate(pages[1:], start=1):
            check_page_format(page, index, shape, dtype, path)
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
        return decode_page(self._pages[index], index, self.shape, self.dtype, self.path)

    def _close(self) -> None:
        self._tiff.close()


def first_page_format(page, path: Path) -> tuple[tuple[int, int], np.dtype]:
    """``(shape, dtype)`` of a movie's first tifffile page, checked to be a supported 2-D frame."""
    shape, dtype = tuple(page.shape), np.dtype(page.dtype)
    if len(shape) != 2:
        raise MovieFormatError(
            f"TIFF page 0 has shape {shape}, not a single-channel 2-D frame",
            path=path,
            fix="movies must be grey-scale, one page per frame",
        )
    if dtype.name not in TIFF_DTYPES:
        raise MovieFormatError(
            f"TIFF pixel type {dtype.name} is not supported",
            path=path,
            fix=f"use one of {', '.join(sorted(TIFF_DTYPES))}",
        )
    return (int(shape[0]), int(shape[1])), dtype


def check_page_format(page, index: int, shape: tuple[int, int], dtype: np.dtype, path: Path) -> None:
    """Page ``index`` has the first page's ``shape`` and ``dtype``."""
    if tuple(page.shape) != tuple(shape) or np.dtype(page.dtype) != dtype:
        raise MovieFormatError(
            f"TIFF page {index} is {tuple(page.shape)} {page.dtype}, page 0 is {tuple(shape)} {dtype}",
            path=path,
            fix="every page of a movie must have the same size and pixel type",
        )


def decode_page(page, index: int, shape: tuple[int, int], dtype: np.dtype, path: Path) -> np.ndarray:
    """Tifffile page ``index`` decoded, ``(ny, nx)`` in native ``dtype``, flipped in Y (module docstring)."""
    try:
        data = page.asarray()
    except Exception as err:
        raise MovieFormatError(
            f"TIFF page {index} cannot be decoded ({type(err).__name__}: {err})",
            path=path,
            fix="the file is damaged or incomplete; re-copy it or exclude the movie",
        ) from err
    if data.shape != tuple(shape):
        raise MovieFormatError(
            f"TIFF page {index} decoded to shape {data.shape}, expected {tuple(shape)}",
            path=path,
            fix="the file is damaged; re-copy it",
        )
    # the Y flip of IMOD, SerialEM, MotionCor2 and RELION (see the module docstring)
    return np.ascontiguousarray(data[::-1, :], dtype=np.dtype(dtype).newbyteorder("="))


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
        size_a = ANGSTROM_PER_CM * denominator / numerator
    except Exception:
        return None
    low, high = _TIFF_PIXEL_SIZE_RANGE_A
    # resolution tags are rationals: keep 7 significant digits, as the MRC header does
    return float(f"{size_a:.7g}") if low <= size_a <= high else None


def open_tiff(path: Path, options: ReadOptions) -> TiffReader:
    """The registry's opener for TIFF movies."""
    return TiffReader(path, check_values=options.check_values, limits=options.limits)


def probe_tiff(source: ProbeSource, *, frames_expected: int | None = None) -> FileProgress:
    """How many pages of a TIFF movie are on disk, from its page directory (no page is decoded).

    ``frames_readable``: the leading pages whose directory entry and strips/tiles lie inside the
    file. Complete when the chain is whole and, if given, holds ``frames_expected`` pages. Never
    raises for a short or garbage file; ``OSError`` from opening or reading passes through.
    """
    with opened(source) as (f, size):
        if size == 0:
            return incomplete("empty file", frames_expected=frames_expected)
        chain = walk_ifds(f, size)
    return chain_progress(len(chain.pages), chain.stop_reason, frames_expected)
