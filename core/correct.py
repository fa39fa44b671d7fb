"""Correct one movie: gain and defects, whole-frame alignment, dose-weighted sum and half sums.

``correct_movie`` takes frames already in memory (an array ``(n_frames, ny, nx)`` or any sequence
of ``(ny, nx)`` frames); ``correct_movie_file`` reads a movie file frame by frame. Both return a
:class:`~framewatch.core.result.MovieResult`. ``read_movie``, ``prepare_movie`` (gain, checks,
defect mask) and ``correct_prepared_movie`` are the three steps of ``correct_movie_file``
(:mod:`framewatch.core.movie_sequence` reads and prepares the next movie while correcting this
one). The pipeline itself is :mod:`framewatch.core.movie_correction`.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .defects import read_defect_file
from .errors import MovieFormatError, SettingsError
from .fourier import resolve_threads
from .frame_pool import use_kernel_threads
from .gain import load_gain_for_movie
from .movie_correction import DefectsFound, MovieCorrection
from .movie_decoding import decode_frames
from .movie_io import open_movie
from .result import MovieResult
from .settings import CorrectionSettings, GainOrientation, movie_reading_options

__all__ = ["DecodedMovie", "PreparedMovie", "correct_decoded_movie", "correct_movie", "correct_movie_file",
           "correct_prepared_movie", "movie_reading_options", "prepare_movie", "read_movie"]


def _settings_from(settings: CorrectionSettings | None, options: dict) -> CorrectionSettings:
    if settings is not None:
        if options:
            raise SettingsError(f"give either settings= or keyword options, not both (got {sorted(options)})")
        return settings
    try:
        return CorrectionSettings(**options)
    except TypeError as err:
        raise SettingsError(str(err), fix="see framewatch.core.CorrectionSettings for the option names") from None


def correct_movie(
    frames: np.ndarray | Sequence[np.ndarray],
    *,
    settings: CorrectionSettings | None = None,
    gain: np.ndarray | None = None,
    defect_mask: np.ndarray | None = None,
    movie_path: str | Path | None = None,
    shifts_px: np.ndarray | None = None,
    local_displacement_px=None,
    **options,
) -> MovieResult:
    """Correct a movie held in memory.

    ``frames``: ``(n_frames, ny, nx)`` array or a sequence of ``(ny, nx)`` frames (any real dtype).
    ``gain``: ``(ny, nx)`` multiplicative gain already in movie orientation (corrected = raw x gain).
    ``defect_mask``: bool ``(ny, nx)``, True where a pixel is known bad.
    Options are those of :class:`CorrectionSettings` (``pixel_size_a``, ``dose_per_frame_e_per_a2``,
    ``prior_dose_e_per_a2=0``, ``voltage_kv=300``, ...) or one ``settings`` object.
    """
    cfg = _settings_from(settings, options)
    started = time.perf_counter()
    raw = list(frames)
    where = movie_path if movie_path is not None else "movie"
    if not raw:
        raise MovieFormatError("has zero frames", path=where, fix="check the acquisition wrote the frames")
    shape = np.shape(raw[0])
    for i, f in enumerate(raw):
        if np.ndim(f) != 2 or np.shape(f) != shape:
            raise MovieFormatError(f"frame {i} has shape {np.shape(f)}, expected {shape}", path=where)
        if np.issubdtype(np.asarray(f).dtype, np.floating) and not np.isfinite(f).all():
            raise MovieFormatError(f"frame {i} contains NaN or Inf values", path=where, fix="the movie is corrupt")
    if shifts_px is not None and np.shape(shifts_px) != (len(raw), 2):
        raise SettingsError(f"shifts_px has shape {np.shape(shifts_px)}, expected ({len(raw)}, 2)")
    if local_displacement_px is not None and (shifts_px is None or not cfg.local_requested):
        raise SettingsError("local_displacement_px needs shifts_px and patches (a known motion to apply)")
    return MovieCorrection(cfg, shape, movie_path).run(
        raw, gain, defect_mask, read_s=time.perf_counter() - started, known_shifts_px=shifts_px,
        known_local=local_displacement_px,
    )


@dataclass(frozen=True)
class DecodedMovie:
    """A movie file read into memory, ready to correct (:func:`read_movie`).

    ``frames``: the decoded ``(ny, nx)`` frames in their native dtype (EER: the fractions); the
    correction releases them as it goes, so a ``DecodedMovie`` is corrected once. ``settings``:
    those given, with the dose per fraction of an EER movie. ``read_s``: the seconds reading took.
    ``total``: float32 ``(ny, nx)`` sum of the frames (added while they were decoded), or ``None``.
    """

    path: Path
    frames: list
    shape: tuple[int, int]
    settings: CorrectionSettings
    read_s: float
    total: np.ndarray | None = None


def read_movie(
    path: str | Path, *, settings: CorrectionSettings, movie_dose_e_per_a2: float | None = None,
    threads: int | None = None,
) -> DecodedMovie:
    """Read and decode every frame of ``path`` (see :func:`correct_movie_file` for EER); with two or
    more ``threads`` (default: the settings'), a TIFF is decoded by two readers at once
    (:mod:`framewatch.core.movie_decoding`)."""
    started = time.perf_counter()
    options = movie_reading_options(settings, movie_dose_e_per_a2)
    threads = resolve_threads(settings.threads) if threads is None else threads
    use_kernel_threads(threads)
    with open_movie(path, **options) as reader:
        decoded = decode_frames(reader, open_again=lambda: open_movie(path, **options), threads=threads)
        shape = tuple(reader.shape)
        fraction_dose = getattr(reader, "dose_per_fraction_e_per_a2", None)
    if fraction_dose is not None:
        settings = dataclasses.replace(settings, dose_per_frame_e_per_a2=float(fraction_dose))
    return DecodedMovie(Path(path), decoded.frames, shape, settings, time.perf_counter() - started, decoded.total)


@dataclass(frozen=True)
class PreparedMovie:
    """A decoded movie with its engine, checked gain and defect mask: all that precedes the first
    transform (:func:`prepare_movie`); :func:`correct_prepared_movie` does the rest, once."""

    movie: DecodedMovie
    engine: MovieCorrection
    defects: DefectsFound


def prepare_movie(
    movie: DecodedMovie,
    *,
    gain: np.ndarray | str | Path | None = None,
    defects_path: str | Path | None = None,
    threads: int | None = None,
) -> PreparedMovie:
    """Load the gain (``gain`` as in :func:`correct_movie_file`) and the defect file, check the
    movie and find its bad pixels (:mod:`framewatch.core.movie_sequence` does this while the
    previous movie is corrected, with ``threads=1``; default: the settings')."""
    gain_arr = None
    if gain is not None:
        # a file is oriented by the settings; an array is already in movie orientation (the
        # daemon's workers pass the gain they oriented once and cached)
        is_file = isinstance(gain, (str, Path)) or hasattr(gain, "__fspath__")
        gain_arr = load_gain_for_movie(
            gain, orientation=movie.settings.gain_orientation if is_file else GainOrientation(),
            movie_shape=movie.shape, movie_path=movie.path, allow_resample=True,
        )
    defect_mask = read_defect_file(defects_path, movie.shape) if defects_path is not None else None
    engine = MovieCorrection(movie.settings, movie.shape, movie.path)
    return PreparedMovie(movie, engine, engine.prepare(movie.frames, gain_arr, defect_mask, read_s=movie.read_s,
                                                       total=movie.total, threads=threads))


def correct_prepared_movie(prepared: PreparedMovie) -> MovieResult:
    """Correct a movie made ready by :func:`prepare_movie` (its frames are released as they go)."""
    found = prepared.defects
    return prepared.engine.finish(prepared.movie.frames, found.gain, found.replacer, dict(found.timings))


def correct_decoded_movie(
    movie: DecodedMovie,
    *,
    gain: np.ndarray | str | Path | None = None,
    defects_path: str | Path | None = None,
) -> MovieResult:
    """Correct a movie read by :func:`read_movie` (``gain`` as in :func:`correct_movie_file`)."""
    return correct_prepared_movie(prepare_movie(movie, gain=gain, defects_path=defects_path))


def correct_movie_file(
    path: str | Path,
    *,
    settings: CorrectionSettings,
    gain: np.ndarray | str | Path | None = None,
    defects_path: str | Path | None = None,
    movie_dose_e_per_a2: float | None = None,
) -> MovieResult:
    """Read ``path`` frame by frame and correct it.

    ``gain``: a file (oriented by ``settings.gain_orientation``; a gain at half or twice the movie
    size is replicated or binned) or an array already in movie orientation. For EER movies the raw
    frames are grouped into fractions by ``settings.eer_group_frames`` or by the dose target
    ``settings.eer_fraction_dose_e_per_a2`` with ``movie_dose_e_per_a2`` (the dose of the whole
    movie); the dose per frame is then the dose per fraction.
    """
    movie = read_movie(path, settings=settings, movie_dose_e_per_a2=movie_dose_e_per_a2)
    return correct_decoded_movie(movie, gain=gain, defects_path=defects_path)
