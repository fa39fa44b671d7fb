"""Correct a movie while its frames arrive (a file still being written), with the result of the whole.

:class:`StreamingCorrection` takes frames one at a time (:meth:`~StreamingCorrection.add_frame`)
and does the first pass of :class:`~framewatch.core.movie_correction.MovieCorrection` on each at
once: gain, defect replacement, the forward transform and the Fourier-cropped alignment copy.
:meth:`~StreamingCorrection.finish` does the rest when the movie is complete: the final defect
mask, alignment, local motion, dose weighting, half sums. The result equals
``correct_movie`` of all the frames, value for value.

Hot and dead pixels are found on the sum of all frames, which is only known at the end. While
frames arrive, each is transformed with a provisional mask; at the end, every frame whose mask
differs from the final one is transformed again from its decoded copy (``frames_transformed_again``
says how many), so the result never depends on the provisional mask, only the time does. The
decoded frames are kept (native dtype) until then.

The provisional mask is ``expected_mask`` when the caller has one (the final mask of the previous
movie from the same camera, :attr:`StreamingCorrection.final_mask`: a camera's hot pixels change
little within a session, so usually nothing is transformed again). Without it: bad gain, the defect
list, and dead and hot pixels on the sum so far, refreshed after frames 1, 2, 4, 8, .... Measured on
simulated 1024² movies with 6 hot pixels of a few counts per frame, the partial sums do not show
them until the last refresh, so 7 of 8 (1 e/Å² per frame) or 7 of 10 (0.3 e/Å²) frames are
transformed again: pass the previous movie's mask.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .content_checks import check_value_magnitude
from .defects import PixelReplacer, bad_gain_mask
from .errors import FramewatchError, MovieFormatError, StreamSettingsChanged
from .frame_arithmetic import add_frame, apply_gain
from .movie_correction import MovieCorrection
from .result import MovieResult
from .settings import CorrectionSettings

__all__ = ["StreamingCorrection"]


class StreamingCorrection:
    """One movie corrected frame by frame as it is written (see the module docstring).

    ``shape``: ``(ny, nx)`` of every frame; ``gain``: float32 ``(ny, nx)`` in movie orientation or
    ``None``; ``defect_mask``: bool ``(ny, nx)`` of known bad pixels or ``None``; ``expected_mask``:
    bool ``(ny, nx)``, the mask this movie will probably end with (no refreshes then; one of another
    shape is ignored)."""

    def __init__(self, settings: CorrectionSettings, shape: tuple[int, int], *, gain: np.ndarray | None = None,
                 defect_mask: np.ndarray | None = None, expected_mask: np.ndarray | None = None,
                 movie_path: str | Path | None = None):
        self._engine = MovieCorrection(settings, shape, movie_path)
        self._shape = (int(shape[0]), int(shape[1]))
        self._path = movie_path if movie_path is not None else "movie"
        self._gain = self._engine.checked_gain(gain)
        self._defect_mask = defect_mask
        self._raw: list = []
        self._total = np.zeros(self._shape, dtype=np.float32)
        self._masks: list[np.ndarray] = []  # provisional masks; a frame remembers the index of its own
        self._replacer: PixelReplacer | None = None
        self._first_pass: list[tuple[np.ndarray, np.ndarray, int]] = []
        self._stream_s = 0.0
        self.frames_transformed_again = 0
        known = np.zeros(self._shape, dtype=bool) if self._gain is None else bad_gain_mask(self._gain)
        if defect_mask is not None:
            if np.shape(defect_mask) != self._shape:
                raise MovieFormatError(f"defect mask {np.shape(defect_mask)} does not match the movie {self._shape}",
                                       path=self._path)
            known |= defect_mask
        if expected_mask is not None and np.shape(expected_mask) != self._shape:
            expected_mask = None  # only a hint (another camera's or frame size's mask): refresh as without one
        self._refreshing = expected_mask is None
        if expected_mask is not None:
            known = known | np.asarray(expected_mask, dtype=bool)
        self.final_mask: np.ndarray | None = None  # after finish(): carry it to the next movie of the camera
        self._masks.append(known)  # before any frame: what the gain and the defect list say
        self._replacer = PixelReplacer(known)

    @property
    def n_frames(self) -> int:
        return len(self._raw)

    def add_frame(self, frame: np.ndarray) -> None:
        """Take the next frame ``(ny, nx)`` (any real dtype) and transform it now."""
        t = time.perf_counter()
        i = len(self._raw)
        if np.ndim(frame) != 2 or np.shape(frame) != self._shape:
            raise MovieFormatError(f"frame {i} has shape {np.shape(frame)}, expected {self._shape}", path=self._path)
        if np.issubdtype(np.asarray(frame).dtype, np.floating) and not np.isfinite(frame).all():
            raise MovieFormatError(f"frame {i} contains NaN or Inf values", path=self._path, fix="the movie is corrupt")
        self._raw.append(frame)
        add_frame(self._total, frame)
        if self._refreshing and (i + 1) & i == 0:  # after frames 1, 2, 4, 8, ...: the mask on the sum so far
            self._refresh_mask()
        image = apply_gain(frame, self._gain)
        self._replacer.apply(image, i)
        spec, crop = self._engine.first_pass_frame(image)
        self._first_pass.append((spec, crop, len(self._masks) - 1))
        self._stream_s += time.perf_counter() - t

    def finish(self, *, settings: CorrectionSettings | None = None) -> MovieResult:
        """The corrected movie, from every frame added (the same as ``correct_movie`` of them).

        ``settings``: the final settings when they became known only now (an mdoc line written after
        the movie: dose, prior dose, voltage, pixel size, hot-pixel threshold, local motion ...); the
        result is then ``correct_movie`` of the frames with them. Raises
        :class:`~framewatch.core.errors.StreamSettingsChanged` when they change what the frames were
        transformed with (frame and alignment geometry, gain orientation)."""
        if not self._raw:
            raise MovieFormatError("has zero frames", path=self._path, fix="check the acquisition wrote the frames")
        engine = self._final_engine(settings)
        timings = {"read_s": 0.0, "streamed_s": self._stream_s}
        t = time.perf_counter()
        check_value_magnitude(self._raw, self._gain, path=self._path)
        final = engine.bad_mask(self._total.copy(), self._gain, self._defect_mask)
        self.final_mask = final
        replacer = self._replacer if np.array_equal(final, self._masks[-1]) else PixelReplacer(final)
        same = [np.array_equal(final, mask) for mask in self._masks]
        first_pass = [(spec, crop) if same[version] else None for spec, crop, version in self._first_pass]
        self.frames_transformed_again = sum(entry is None for entry in first_pass)
        self._first_pass = []
        timings["defects_s"] = time.perf_counter() - t
        raw, self._raw = self._raw, []
        return engine.finish(raw, self._gain, replacer, timings, first_pass=first_pass)

    def _final_engine(self, settings: CorrectionSettings | None) -> MovieCorrection:
        """The pipeline to finish with: this one, or one with the final ``settings`` when the frames
        transformed so far do not depend on what changed."""
        if settings is None or settings == self._engine.cfg:
            return self._engine
        engine = MovieCorrection(settings, self._shape, self._path)
        old = self._engine
        if (settings.gain_orientation != old.cfg.gain_orientation
                or (engine.shape, engine.align_shape) != (old.shape, old.align_shape)):
            raise StreamSettingsChanged(
                f"the final settings transform the frames differently (output {engine.shape}, alignment copy "
                f"{engine.align_shape}, gain {settings.gain_orientation}) than the ones they were streamed with "
                f"({old.shape}, {old.align_shape}, {old.cfg.gain_orientation})",
                path=self._path, fix="correct the finished file with the final settings")
        engine.input_notes = list(old.input_notes)  # what the gain check noticed
        return engine

    def _refresh_mask(self) -> None:
        try:
            mask = self._engine.bad_mask(self._total.copy(), self._gain, self._defect_mask, final=False)
        except FramewatchError:  # a provisional mask that cannot be used: keep the last one (finish decides)
            return
        if not np.array_equal(mask, self._masks[-1]):
            self._use_mask(mask)

    def _use_mask(self, mask: np.ndarray) -> None:
        try:
            replacer = PixelReplacer(mask)
        except FramewatchError:  # e.g. every pixel flagged on a very sparse partial sum
            return
        self._masks.append(mask)
        self._replacer = replacer
