"""Correct several movie files one after another, reading the next while correcting this one.

Decoding a movie (LZW or zip TIFF pages, EER events) is mostly single-threaded and releases the
GIL; the correction keeps both cores busy only in its transforms. :func:`correct_movie_files`
therefore decodes movie k+1 in a background thread while movie k is corrected, and prepares it
there too (gain, checks, hot and dead pixels on its sum: :func:`~framewatch.core.correct.prepare_movie`),
loads and orients a gain file once for all movies that share it, and reports each movie's outcome
in the order given.
A movie that cannot be read or corrected (a :class:`~framewatch.core.errors.FramewatchError` or an
``OSError``) gives an outcome with its error; the others go on.

Memory: at most two decoded movies (this one and the next, in their native dtype) plus one
correction in flight.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .correct import DecodedMovie, PreparedMovie, correct_prepared_movie, prepare_movie, read_movie
from .errors import FramewatchError
from .gain import load_gain_for_movie
from .result import MovieResult
from .settings import CorrectionSettings

__all__ = ["MovieJob", "MovieOutcome", "correct_movie_files"]


@dataclass(frozen=True, kw_only=True)
class MovieJob:
    """One movie to correct: its path, settings and calibration (as for ``correct_movie_file``)."""

    path: Path
    settings: CorrectionSettings
    gain: np.ndarray | str | Path | None = None
    defects_path: str | Path | None = None
    movie_dose_e_per_a2: float | None = None


@dataclass(frozen=True)
class MovieOutcome:
    """What came of one :class:`MovieJob`: ``result`` or ``error`` (the other is ``None``).

    ``waited_s``: how long the correction waited for this movie's frames (read and prepared) after
    the previous movie was done (about 0 when reading ahead kept up; the whole read for the first movie)."""

    job: MovieJob
    result: MovieResult | None
    error: FramewatchError | OSError | None
    waited_s: float


class _GainCache:
    """Gain files loaded and oriented once per (file, orientation, movie shape)."""

    def __init__(self):
        self._arrays: dict[tuple, np.ndarray] = {}

    def for_movie(self, movie: DecodedMovie, gain):
        if gain is None or isinstance(gain, np.ndarray):
            return gain
        key = (str(Path(gain).resolve()), movie.settings.gain_orientation, movie.shape)
        if key not in self._arrays:
            self._arrays[key] = load_gain_for_movie(gain, orientation=movie.settings.gain_orientation,
                                                    movie_shape=movie.shape, movie_path=movie.path,
                                                    allow_resample=True)
        return self._arrays[key]


def _read(job: MovieJob, gains: _GainCache, *, threads: int | None = None) -> PreparedMovie:
    """Read and prepare one movie (``gains`` is used by one thread only). ``threads=1`` in the reading
    thread: one decoder and single-threaded kernels beside the correction, which has the cores."""
    movie = read_movie(job.path, settings=job.settings, movie_dose_e_per_a2=job.movie_dose_e_per_a2, threads=threads)
    return prepare_movie(movie, gain=gains.for_movie(movie, job.gain), defects_path=job.defects_path, threads=threads)


def correct_movie_files(jobs: Iterable[MovieJob], *, read_ahead: bool = True) -> Iterator[MovieOutcome]:
    """Correct ``jobs`` in order, yielding one :class:`MovieOutcome` per job as it finishes.

    ``read_ahead``: decode the next movie in a background thread while this one is corrected
    (``False``: strictly one after another, e.g. to measure the difference)."""
    jobs = list(jobs)
    gains = _GainCache()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="framewatch-read") as reader:
        pending: Future | None = reader.submit(_read, jobs[0], gains) if jobs and read_ahead else None
        for k, job in enumerate(jobs):
            t = time.perf_counter()
            try:
                movie = pending.result() if pending is not None else _read(job, gains)
            except (FramewatchError, OSError) as err:
                movie, error = None, err
            else:
                error = None
            waited_s = time.perf_counter() - t
            pending = reader.submit(_read, jobs[k + 1], gains, threads=1) if read_ahead and k + 1 < len(jobs) else None
            result = None
            if movie is not None:
                try:
                    result = correct_prepared_movie(movie)
                except (FramewatchError, OSError) as err:
                    error = err
                movie = None  # the frames go before the caller gets the result
            outcome = MovieOutcome(job, result, error, waited_s)
            result = None  # the generator keeps no result while the next movie is read and corrected
            yield outcome
            outcome = None
