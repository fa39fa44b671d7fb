"""Reading and writing detector movies (MRC, TIFF and EER), one frame at a time.

A movie is ``(n_frames, ny, nx)``, C order, x the fast axis. :func:`open_movie` returns a
:class:`MovieReader` that decodes one frame per call, so a reader never holds more than one frame
(plus the decoder's own page buffer) in memory. :func:`probe_file` tells how far a movie file is
written (a :class:`FileProgress`) from its structure alone, for a file still being written;
:class:`GrowingMovie` (:mod:`~framewatch.core.movie_io.growing`) follows such a file and decodes
each frame as soon as it is on disk.

Formats, chosen by suffix through the table in :mod:`~framewatch.core.movie_io.registry`:

- MRC (``.mrc``, ``.mrcs``, ``.st``): modes 0, 1, 2, 6, 12 and 101, header parsed here
  (:mod:`~framewatch.core.movie_io.mrc`, :mod:`~framewatch.core.movie_io.mrc_header`; 4-bit packing
  and IMOD's mode-0 signedness rule are described there);
- TIFF (``.tif``, ``.tiff``): one page per frame, decoded with tifffile
  (:mod:`~framewatch.core.movie_io.tiff`; the page directory walk of the probe is
  :mod:`~framewatch.core.movie_io.tiff_ifd`);
- EER (``.eer``, ``.ecc``): Falcon electron events, decoded by our own kernels
  (:mod:`~framewatch.core.movie_io.eer_decode`) and grouped into fractions
  (:mod:`~framewatch.core.movie_io.eer_grouping`) by :mod:`~framewatch.core.movie_io.eer`.

Writers (MRC, TIFF; :func:`write_movie`, :func:`write_image_mrc`) are in
:mod:`~framewatch.core.movie_io.write`.

Orientation convention: MRC rows are stored bottom-up (row 0 is the bottom of the image as IMOD shows
it) and TIFF rows top-down. IMOD, SerialEM, MotionCor2 and RELION therefore flip TIFF frames in Y
when they read or write them; so does this package (``page[::-1, :]`` on read, the same flip on
write). The same movie written as MRC and as TIFF reads back identical, and a gain reference with a
rotation/flip setting that works in those programs works here. EER frames are not flipped.

Pixel size: from the MRC header (``cella.x / mx``), or from TIFF resolution tags when the unit is
centimetre and the value corresponds to 0.05-100 A per pixel, or from EER's ``sensorPixelSize``;
else ``None``.

Errors about the file raise :class:`~framewatch.core.errors.MovieFormatError`, whose message names
the file, what is wrong and what to do.

The modules import each other without a cycle: ``base``/``file_progress`` at the bottom, then
``mrc_header``, ``tiff_ifd``, ``eer_decode``, ``eer_grouping``, then ``mrc``, ``tiff``, ``eer``,
then ``registry``, then ``write``; the growing-file reader ``growing`` sits on top of ``registry``
with its per-format parts (``follower``, then ``growing_mrc``, ``growing_pages``, then
``growing_eer``); none imports this package.
"""
from __future__ import annotations

from .base import MovieReader, ReadOptions, tiff_pages
from .eer import EER_SUFFIXES
from .file_progress import FileProgress
from .growing import GrowingMovie
from .mrc import unpack_4bit
from .mrc_header import (
    IMOD_FLAG_4BIT_BYTES,
    IMOD_FLAG_SIGNED_BYTES,
    IMOD_STAMP,
    MRC_HEADER_BYTES,
    MRC_MODE_4BIT,
    MRC_SUFFIXES,
    _size_can_be_4bit_k2_super_res,
)
from .registry import FORMATS, MovieFormat, format_for, movie_suffixes, open_movie, probe_file, watch_patterns
from .tiff import TIFF_SUFFIXES
from .write import write_image_mrc, write_movie

SUPPORTED_SUFFIXES = movie_suffixes()

__all__ = [
    "EER_SUFFIXES",
    "FORMATS",
    "FileProgress",
    "GrowingMovie",
    "IMOD_FLAG_4BIT_BYTES",
    "IMOD_FLAG_SIGNED_BYTES",
    "IMOD_STAMP",
    "MRC_HEADER_BYTES",
    "MRC_MODE_4BIT",
    "MRC_SUFFIXES",
    "MovieFormat",
    "MovieReader",
    "ReadOptions",
    "SUPPORTED_SUFFIXES",
    "TIFF_SUFFIXES",
    "_size_can_be_4bit_k2_super_res",
    "format_for",
    "movie_suffixes",
    "open_movie",
    "probe_file",
    "tiff_pages",
    "unpack_4bit",
    "watch_patterns",
    "write_image_mrc",
    "write_movie",
]
