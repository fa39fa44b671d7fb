"""Correct a movie file while it is being written: :func:`stream_correct_file`.

The file is followed with :class:`~framewatch.core.movie_io.GrowingMovie` (each frame decoded once,
as soon as all its bytes are on disk) and every frame goes to
:class:`~framewatch.core.streaming_correction.StreamingCorrection` as soon as it is readable. The
caller says through a :class:`StreamControl` when the movie is complete (and with how many frames:
MRC sections, TIFF pages, EER raw frames) or that the stream is cancelled. The result equals
:func:`~framewatch.core.correct.correct_movie_file` of the finished file.

The frames are decoded by a reader thread of the stream's own, one frame per poll, while the caller's
thread transforms those already decoded: when several frames are on disk at once (a stream that
starts late, a movie renamed into place before its writer's signal, EER raw frames arriving faster
than fractions are transformed), decoding frame i + 1 overlaps the work on frame i, as the two
readers of a complete movie do. The same thread decodes the frames left once the movie is complete.

What can go wrong and what the caller does:

- :class:`~framewatch.core.errors.MovieChangedError` (the file was truncated, replaced, rewritten, or
  its final frame count is not the one announced; also :class:`~framewatch.core.errors.StreamStalled`,
  the file stopped growing for ``stall_s`` while ``end()`` still said ``None``): drop the stream and
  read the finished file the ordinary way;
- :class:`~framewatch.core.errors.StreamCancelled`: ``control.cancelled()`` answered True;
- :class:`~framewatch.core.errors.StreamNotStarted` (only with ``stop_if_not_started``): the movie
  was complete before the stream had corrected a frame (its reader thread had decoded at most
  :data:`NOT_STARTED_MAX_READ`): read the finished file the ordinary way (faster than following it:
  the final defect mask is known before any transform, two readers decode at once);
- any other :class:`~framewatch.core.errors.FramewatchError`: as ``correct_movie_file`` raises it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .defects import read_defect_file
from .errors import MovieFormatError, StreamCancelled, StreamNotStarted, StreamSettingsChanged, StreamStalled
from .gain import load_gain_for_movie
from .movie_io import GrowingMovie
from .result import MovieResult
from .settings import CorrectionSettings, GainOrientation, movie_reading_options
from .streaming_correction import StreamingCorrection

__all__ = ["DEFAULT_STALL_S", "StreamControl", "StreamEnd", "StreamedMovie", "stream_correct_file"]

DEFAULT_STALL_S = 600.0
# stop_if_not_started: frames (EER: raw frames) the reader thread may have decoded, none of them
# corrected yet, for the stream to count as not started (they are read again with the whole movie)
NOT_STARTED_MAX_READ = 2


@dataclass(frozen=True)
class StreamEnd:
    """What the caller knows once the movie is complete: its frame count (MRC sections, TIFF pages,
    EER raw frames) and, when they were only known then (e.g. from the mdoc line written after the
    movie), the final ``settings`` and the dose of the whole movie (``None``: those given at the start)."""

    n_frames: int
    settings: CorrectionSettings | None = None
    movie_dose_e_per_a2: float | None = None


class StreamControl(Protocol):
    """What :func:`stream_correct_file` asks its caller between polls."""

    def end(self) -> int | StreamEnd | None:
        """``None`` while the movie is still being written; then its final frame count (MRC
        sections, TIFF pages, EER raw frames), or a :class:`StreamEnd` with the final settings."""

    def cancelled(self) -> bool:
        """True to stop the stream (:class:`~framewatch.core.errors.StreamCancelled` is raised)."""


@dataclass(frozen=True)
class StreamedMovie:
    """The outcome of :func:`stream_correct_file`.

    Attributes:
        result: the correction, equal to ``correct_movie_file`` of the finished file.
        frames_before_end: frames (EER: fractions) already given to the correction when ``end()``
            first answered.
        streamed_s: seconds from the start of the stream to ``end()`` answering.
        finish_s: seconds from ``end()`` answering to the result.
        final_mask: bool ``(ny, nx)``, this movie's final defect mask: pass it as the next movie's
            ``expected_mask`` (same camera).
    """

    result: MovieResult
    frames_before_end: int
    streamed_s: float
    finish_s: float
    final_mask: np.ndarray


class _Feed:
    """The correction side of a stream: gain and defects loaded once the frame shape is known, the
    :class:`StreamingCorrection` made at the first frame (when an EER movie's dose per fraction is known)."""

    def __init__(self, movie: GrowingMovie, *, settings: CorrectionSettings, gain, defects_path,
                 expected_mask: np.ndarray | None) -> None:
        self._movie = movie
        self._settings = settings
        self._gain_source = gain
        self._defects_path = defects_path
        self._expected_mask = expected_mask
        self._loaded = False
        self._gain: np.ndarray | None = None
        self._defect_mask: np.ndarray | None = None
        self.stream: StreamingCorrection | None = None

    @property
    def n_frames(self) -> int:
        return 0 if self.stream is None else self.stream.n_frames

    def movie_settings(self, settings: CorrectionSettings) -> CorrectionSettings:
        """``settings`` with an EER movie's dose per fraction (as ``read_movie`` gives them)."""
        fraction_dose = self._movie.dose_per_fraction_e_per_a2
        if fraction_dose is not None:
            settings = dataclasses.replace(settings, dose_per_frame_e_per_a2=float(fraction_dose))
        return settings

    def load_references(self) -> None:
        """Gain and defects, once, as soon as the movie's shape is known."""
        shape = self._movie.shape
        if self._loaded or shape is None:
            return
        self._gain, self._defect_mask = gain_and_defects(
            self._gain_source, self._defects_path, settings=self._settings, shape=shape, movie_path=self._movie.path)
        self._loaded = True

    def add(self, frames: list[np.ndarray]) -> None:
        if not frames:
            return
        self.load_references()
        if self.stream is None:
            self.stream = StreamingCorrection(self.movie_settings(self._settings), self._movie.shape, gain=self._gain,
                                              defect_mask=self._defect_mask, expected_mask=self._expected_mask,
                                              movie_path=self._movie.path)
        for frame in frames:
            self.stream.add_frame(frame)


def gain_and_defects(gain, defects_path, *, settings: CorrectionSettings, shape: tuple[int, int],
                     movie_path: Path) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The gain ``(ny, nx)`` float32 in movie orientation and the defect mask ``(ny, nx)`` bool (or ``None``s).

    ``gain``: a file (oriented by ``settings.gain_orientation``, resampled at half or twice the size)
    or an array already in movie orientation, as :func:`~framewatch.core.correct.correct_movie_file`.
    """
    gain_arr = None
    if gain is not None:
        is_file = isinstance(gain, (str, Path)) or hasattr(gain, "__fspath__")
        gain_arr = load_gain_for_movie(gain, orientation=settings.gain_orientation if is_file else GainOrientation(),
                                       movie_shape=shape, movie_path=movie_path, allow_resample=True)
    defect_mask = read_defect_file(defects_path, shape) if defects_path is not None else None
    return gain_arr, defect_mask


def stream_correct_file(
    path: str | Path,
    *,
    settings: CorrectionSettings,
    control: StreamControl,
    gain: np.ndarray | str | Path | None = None,
    defects_path: str | Path | None = None,
    movie_dose_e_per_a2: float | None = None,
    expected_mask: np.ndarray | None = None,
    poll_s: float = 0.05,
    stall_s: float = DEFAULT_STALL_S,
    stop_if_not_started: bool = False,
) -> StreamedMovie:
    """Correct the movie ``path`` while it is written (see the module docstring).

    Polls the file every ``poll_s`` seconds until ``control.end()`` gives the frame count, then
    reads the remaining frames and finishes. ``gain``, ``defects_path`` and ``movie_dose_e_per_a2``
    as in :func:`~framewatch.core.correct.correct_movie_file`; ``expected_mask``: bool ``(ny, nx)``,
    the previous movie's ``final_mask`` (see :class:`StreamingCorrection`). ``stall_s``: raise
    :class:`~framewatch.core.errors.StreamStalled` when the file has not grown for that long while
    ``end()`` is still ``None``. When ``end()`` gives final settings (:class:`StreamEnd`) that differ
    from ``settings`` in what the frames read so far depend on, raises
    :class:`~framewatch.core.errors.StreamSettingsChanged` (read the finished file with them instead).
    ``stop_if_not_started``: raise :class:`~framewatch.core.errors.StreamNotStarted` when ``end()``
    answers before any frame was corrected and at most :data:`NOT_STARTED_MAX_READ` frames (EER:
    raw frames) were decoded.
    """
    started = time.perf_counter()
    reading = movie_reading_options(settings, movie_dose_e_per_a2)
    with GrowingMovie(path, **reading) as movie:
        feed = _Feed(movie, settings=settings, gain=gain, defects_path=defects_path, expected_mask=expected_mask)
        with _FrameReader(movie, poll_s=poll_s) as reader:
            end = _follow(movie, feed, control, reader, stall_s=stall_s)
            ended = time.perf_counter()
            frames_before_end = feed.n_frames
            reader.stop()  # after the frame it is decoding, if any
            if stop_if_not_started and frames_before_end == 0 and movie.raw_frames_read <= NOT_STARTED_MAX_READ:
                raise StreamNotStarted("the movie was complete before the stream had corrected a frame",
                                       path=Path(path), fix="read the finished file as a complete movie")
            feed.add(reader.take(0.0))
        # where the time between end() and finish() goes: the frames decoded by then (the reader
        # stopped after its current frame), the frames left, the check of the whole file
        after_end = {"frames_at_end_s": time.perf_counter() - ended}
        final = end if isinstance(end, StreamEnd) else StreamEnd(int(end))
        final_settings = final.settings or settings
        final_dose = final.movie_dose_e_per_a2 if final.settings is not None else movie_dose_e_per_a2
        final_reading = movie_reading_options(final_settings, final_dose)
        if movie.format == "eer":
            if {**final_reading, "eer_total_dose_e_per_a2": None} != {**reading, "eer_total_dose_e_per_a2": None}:
                raise StreamSettingsChanged("the EER grouping options of the final settings differ from those it was "
                                            "followed with", path=Path(path),
                                            fix="correct the finished file with the final settings")
            movie.set_total_dose(final_dose, final.n_frames)  # the grouping by dose needs it
        # the frames left, decoded by a reader of their own while those before them are transformed
        t = time.perf_counter()
        with _FrameReader(movie, poll_s=0.0, until_none_left=True) as reader:
            reader.go()
            while True:
                ended_reading = reader.ended()
                feed.add(reader.take(0.0 if ended_reading else poll_s))  # raises what the reader raised
                if ended_reading:
                    break
        after_end["last_frames_s"] = time.perf_counter() - t
        t = time.perf_counter()
        # checks that the file holds final.n_frames (and nothing changed); EER without a raw frame
        # count in its metadata: every fraction, built only now
        feed.add(movie.rest(final.n_frames))
        after_end["rest_check_s"] = time.perf_counter() - t
    if feed.stream is None:
        raise MovieFormatError("has zero frames", path=Path(path), fix="check the acquisition wrote the frames")
    result = feed.stream.finish(settings=feed.movie_settings(final_settings))
    result.timings_s.update(after_end)
    return StreamedMovie(result=result, frames_before_end=frames_before_end, streamed_s=ended - started,
                         finish_s=time.perf_counter() - ended, final_mask=feed.stream.final_mask)


_READER_ENDED = object()  # what a _FrameReader's thread queues last


class _FrameReader:
    """Decodes the frames of a followed movie in a thread of its own, one frame per poll, while the
    caller transforms those already decoded (:meth:`take`): decoding frame i + 1 overlaps the work on
    frame i, as the two readers of a complete movie do (core/movie_decoding.py). Frames come in
    order; the thread is the only caller of ``movie``'s methods until :meth:`stop` returns (the
    caller reads its attributes: shape, size, EER dose per fraction). ``until_none_left``:
    the movie is complete; the thread ends at the first poll that finds no new frame."""

    def __init__(self, movie: GrowingMovie, *, poll_s: float, until_none_left: bool = False) -> None:
        self._movie = movie
        self.poll_s = poll_s
        self._until_none_left = until_none_left
        self._frames: queue.SimpleQueue = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._going = threading.Event()  # the first poll waits for go(): the caller asks end() first
        self._error: BaseException | None = None
        self._ended = False  # take() met the thread's last item: every frame has been taken
        self._thread = threading.Thread(target=self._run, name="framewatch-stream-reader", daemon=True)

    def __enter__(self) -> "_FrameReader":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def go(self) -> None:
        """Start polling (the caller saw the movie is not complete yet)."""
        self._going.set()

    def _run(self) -> None:
        self._going.wait()
        try:
            while not self._stopping.is_set():
                frames = self._movie.poll(max_frames=1)
                for frame in frames:
                    self._frames.put(frame)
                if not frames:
                    if self._until_none_left:
                        return
                    self._stopping.wait(self.poll_s)
        except BaseException as err:  # noqa: BLE001 - raised in the caller's thread by take()
            self._error = err
        finally:
            self._frames.put(_READER_ENDED)  # wakes a take() waiting for a frame that will not come

    def take(self, timeout_s: float) -> list[np.ndarray]:
        """The frames decoded and not yet taken (waiting up to ``timeout_s`` for a first one); raises
        what the thread's poll raised (MovieChangedError, a decode error ...)."""
        frames = []
        with contextlib.suppress(queue.Empty):  # no frame (more) decoded yet
            frames.append(self._frames.get(timeout=timeout_s) if timeout_s > 0 else self._frames.get_nowait())
            while True:
                frames.append(self._frames.get_nowait())
        if self._error is not None:
            raise self._error
        if any(frame is _READER_ENDED for frame in frames):
            self._ended = True
            frames = [frame for frame in frames if frame is not _READER_ENDED]
        return frames

    def ended(self) -> bool:
        """The thread has ended: a :meth:`take` now gets every frame left (or raises its error)."""
        return self._ended or not self._thread.is_alive()

    def stop(self) -> None:
        """End the thread after its current poll; frames already decoded stay for :meth:`take`."""
        self._stopping.set()
        self._going.set()
        if self._thread.is_alive():
            self._thread.join()


def _follow(movie: GrowingMovie, feed: _Feed, control: StreamControl, reader: _FrameReader, *, stall_s: float
            ) -> int | StreamEnd:
    """Take the frames ``reader`` decodes until ``control.end()`` answers; returns its answer."""
    last_size, last_growth = -1, time.monotonic()
    while True:
        if control.cancelled():
            raise StreamCancelled("the stream was cancelled before the movie was complete", path=movie.path)
        end = control.end()
        if end is not None:
            return end
        reader.go()
        feed.add(reader.take(reader.poll_s))
        feed.load_references()
        now = time.monotonic()
        if movie.size_bytes != last_size:
            last_size, last_growth = movie.size_bytes, now
        elif now - last_growth > stall_s:
            raise StreamStalled(
                f"the file has not grown for {now - last_growth:.0f} s ({last_size} bytes, "
                f"{movie.frames_returned} frames read) and its writer has not said it is complete",
                path=movie.path, fix="read the finished file the ordinary way once it is complete",
            )
