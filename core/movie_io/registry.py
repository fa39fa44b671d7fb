"""The detector formats framewatch knows: one row per format, and everything derived from them.

:data:`FORMATS` pairs each format's suffixes with its opener (a reader on
:class:`~framewatch.core.movie_io.base.MovieReader`), its probe (how far a file is written,
:class:`~framewatch.core.movie_io.file_progress.FileProgress`) and whether gain references come in
that format. :func:`open_movie`, :func:`probe_file`, :func:`movie_suffixes`, :func:`watch_patterns`
and :func:`gain_suffixes` all read this table, and so does the daemon (its default watch patterns,
the suffixes stripped from output names and mdoc names, the readiness self-check), so a new format
is one module and one row here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..decode_limits import DecodeLimits
from ..errors import MovieFormatError
from .base import MovieReader, ReadOptions
from .eer import EER_SUFFIXES, open_eer, probe_eer
from .file_progress import FileProgress, ProbeSource
from .mrc import open_mrc, probe_mrc
from .mrc_header import MRC_SUFFIXES
from .tiff import TIFF_SUFFIXES, open_tiff, probe_tiff


@dataclass(frozen=True, kw_only=True)
class MovieFormat:
    """One detector format.

    Attributes:
        name: ``"mrc"``, ``"tiff"``, ``"eer"`` (a reader's ``format``).
        suffixes: lower-case file suffixes with the dot, e.g. ``(".tif", ".tiff")``.
        opener: ``opener(path, options) -> MovieReader`` (options: :class:`ReadOptions`).
        probe: ``probe(path_or_open_file, *, frames_expected=None) -> FileProgress``; reads only the
            file's structure and never raises for a short or garbage file.
        gain_files: gain references are also written in this format.
    """

    name: str
    suffixes: tuple[str, ...]
    opener: Callable[[Path, ReadOptions], MovieReader]
    probe: Callable[..., FileProgress]
    gain_files: bool


FORMATS: tuple[MovieFormat, ...] = (
    MovieFormat(name="mrc", suffixes=MRC_SUFFIXES, opener=open_mrc, probe=probe_mrc, gain_files=True),
    MovieFormat(name="tiff", suffixes=TIFF_SUFFIXES, opener=open_tiff, probe=probe_tiff, gain_files=True),
    MovieFormat(name="eer", suffixes=EER_SUFFIXES, opener=open_eer, probe=probe_eer, gain_files=False),
)


def movie_suffixes() -> tuple[str, ...]:
    """Every movie suffix, lower case with the dot, in the order of :data:`FORMATS`."""
    return tuple(suffix for fmt in FORMATS for suffix in fmt.suffixes)


def watch_patterns() -> tuple[str, ...]:
    """Glob patterns of every movie suffix (``"*.mrc"``, ...), matched case-insensitively by the daemon."""
    return tuple(f"*{suffix}" for suffix in movie_suffixes())


def gain_suffixes() -> tuple[str, ...]:
    """The movie suffixes gain references also come in (MRC and TIFF; not EER)."""
    return tuple(suffix for fmt in FORMATS if fmt.gain_files for suffix in fmt.suffixes)


def format_for(path: str | os.PathLike) -> MovieFormat | None:
    """The format of ``path`` by its suffix (case-insensitive), or ``None`` for an unknown suffix."""
    suffix = Path(path).suffix.lower()
    for fmt in FORMATS:
        if suffix in fmt.suffixes:
            return fmt
    return None


def require_format(path: str | os.PathLike) -> MovieFormat:
    """:func:`format_for`, raising :class:`MovieFormatError` for an unknown suffix."""
    fmt = format_for(path)
    if fmt is None:
        suffix = Path(path).suffix.lower()
        raise MovieFormatError(
            f"unknown movie format {suffix or '(no suffix)'!r}",
            path=Path(path),
            fix=f"supported suffixes are {', '.join(movie_suffixes())}",
        )
    return fmt


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
    :class:`framewatch.core.movie_io.eer.EerReader` for its extra attributes and
    :mod:`framewatch.core.movie_io.eer_grouping` for the grouping rule.

    The header and page directory are checked here (truncation, zero frames, unknown mode,
    frame-count mismatch, inconsistent pages); frame data are decoded by ``read_frame``.
    """
    path = Path(path)
    fmt = require_format(path)
    if not path.is_file():
        raise MovieFormatError("movie file not found", path=path, fix="check the path and that the file was not moved")
    options = ReadOptions(
        check_values=check_values,
        limits=limits,
        eer_fraction_dose_e_per_a2=eer_fraction_dose_e_per_a2,
        eer_group_frames=eer_group_frames,
        eer_upsampling=eer_upsampling,
        eer_total_dose_e_per_a2=eer_total_dose_e_per_a2,
    )
    return fmt.opener(path, options)


def probe_file(path: str | os.PathLike, *, frames_expected: int | None = None,
               file: ProbeSource | None = None) -> FileProgress:
    """How far the movie ``path`` is written (its format's probe; nothing is decoded).

    ``file``: the same file already opened in binary mode by the caller (then ``path`` only names
    it and chooses the format). Raises :class:`MovieFormatError` for an unknown suffix and
    ``OSError`` when the file cannot be read; a short, growing or garbage file is
    ``complete=False`` with a reason.
    """
    fmt = require_format(path)
    return fmt.probe(path if file is None else file, frames_expected=frames_expected)
