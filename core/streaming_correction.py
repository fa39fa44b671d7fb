"""Correct a movie while its frames arrive (a file still being written), with the result of the whole.

:class:`StreamingCorrection` takes frames one at a time (:meth:`~StreamingCorrection.add_frame`)
and does the first pass of :class:`~framewatch.core.movie_correction.MovieCorrection` on each at
once: gain, defect replacement, the forward transform and the Fourier-cropped alignment copy.
:meth:`~StreamingCorrection.finish` does the rest when the movie is complete: the final defect
mask, alignment, local motion, dose weighting, half sums. The result equals ``correct_movie`` of
all the frames: value for value when every frame was transformed with the final mask or again,
to float32 rounding (measured: 1e-6 of the sums' largest value, shifts 1e-8 px) when some frame
was updated in Fourier space; with patches, the patch shifts to within 0.016 px (below).

Hot and dead pixels are found on the sum of all frames, which is only known at the end. While
frames arrive, each is transformed with a provisional mask. At the end, a frame whose mask differs
from the final one differs, once corrected, only at pixels bad in either mask (a bad pixel's random
replacement depends only on the seed, the frame and the pixel, :mod:`~framewatch.core.pixel_replacement`),
and only at those whose own status or candidates changed. Their old and new values are read from
the decoded frame (the pixels and their replacements only); when at most
:data:`FOURIER_UPDATE_MAX_POINTS` of them differ and the output is movie size (no Fourier binning:
the spectrum is the plain ``rfft2`` of the frame), the transform of the difference is added to the
frame's spectrum (:func:`~framewatch.core.sparse_spectrum.add_point_spectrum`) and its alignment
copy is cropped again (``frames_updated_in_fourier_space``). Otherwise (more pixels, e.g. a column
that died, or a binned output) the frame is transformed again from its decoded copy
(``frames_transformed_again``). So the result never depends on the provisional mask, only the time
does. The decoded frames are kept (native dtype) until then.

When the changes of all frames cover at most :data:`DEFERRED_UPDATE_MAX_POINTS` pixels and patches are
measured, only the alignment copies are updated at once; the spectra get theirs on one thread while
the local motion is measured (``deferred_update_points``).

With patches, local motion's patch spectra are built while the frames arrive, each frame registered
by a preliminary shift (:mod:`~framewatch.core.streamed_patches`; ``patches_from_stream``, or
``streamed_patches_dropped`` with the reason they were not used, after :meth:`finish`): the
patches' shifts then differ from those of ``correct_movie`` by up to 0.016 px, and the decision is
``correct_movie``'s whenever the evidence lies near its thresholds.

The provisional mask is ``expected_mask`` when the caller has one (the final mask of the previous
movie from the same camera, :attr:`StreamingCorrection.final_mask`: a camera's hot pixels change
little within a session; the 0-2 pixels Poisson noise makes "hot" in one movie and not the next are
updated in Fourier space). Without it: bad gain, the defect list, and dead and hot pixels on the
sum so far, refreshed after frames 1, 2, 4, 8, .... Measured on simulated 1024² movies with 6 hot
pixels of a few counts per frame, the partial sums do not show them until the last refresh, so 7 of
8 (1 e/Å² per frame) or 7 of 10 (0.3 e/Å²) frames were corrected at the end (before the Fourier-space
update: transformed again): pass the previous movie's mask.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .content_checks import check_value_magnitude
from .defects import PixelReplacer, bad_gain_mask
from .errors import FramewatchError, MovieFormatError, StreamSettingsChanged
from .fourier import fourier_crop
from .frame_arithmetic import add_frame, apply_gain, gain_corrected_at
from .movie_correction import MovieCorrection
from .result import MovieResult
from .settings import CorrectionSettings
from .sparse_spectrum import PointSpectra, add_point_spectrum

__all__ = ["DEFERRED_UPDATE_MAX_POINTS", "FOURIER_UPDATE_MAX_POINTS", "StreamingCorrection"]

# A frame whose corrected image changes at no more pixels than this is updated in Fourier space,
# else transformed again. Measured on a 4096 x 4096 frame (core/sparse_spectrum.py): the update of
# 2 pixels costs 14 ms, of 32 pixels 75 ms, of 64 pixels 210 ms, one rfft2 80 ms (one thread; two
# threads: 8, 42, 127 and 46 ms). At 32 the update costs about one transform, which also needs the
# gain and the replacement over the whole frame (the whole re-transform of a frame: 83 ms).
FOURIER_UPDATE_MAX_POINTS = 32
# When the frames updated in Fourier space change at no more pixels than this in all (the one or two
# marginal hot pixels a camera's mask gains or loses from one movie to the next, and the replacements
# of bad pixels beside them) and patches are measured, their alignment copies are updated at once and
# their spectra on one thread beside the local motion, which works on the copies
# (MovieCorrection.finish): 0.09 -> 0.02 s at 4096² x 10 frames with 2 points. More points, or no
# patches: each spectrum is updated first, on both cores.
DEFERRED_UPDATE_MAX_POINTS = 8


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
        self._replacers: list[PixelReplacer] = []  # one per provisional mask
        self._first_pass: list[tuple[np.ndarray, np.ndarray, int]] = []
        self._stream_s = 0.0
        self.frames_transformed_again = 0  # after finish(): frames transformed again from their decoded copy
        self.frames_updated_in_fourier_space = 0  # after finish(): frames whose spectrum got the few changed pixels
        self.deferred_update_points = 0  # after finish(): changed pixels added to the spectra after the alignment
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
        self._patches = self._engine.streamed_patches()  # local motion's patch spectra, frame by frame
        self.patches_from_stream = False  # after finish(): local motion measured on the streamed patch spectra
        self.streamed_patches_dropped: str | None = None  # after finish(): why they were not used, if so
        self._masks.append(known)  # before any frame: what the gain and the defect list say
        self._replacers.append(PixelReplacer(known))

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
        self._replacers[-1].apply(image, i)
        spec, crop = self._engine.first_pass_frame(image)
        self._first_pass.append((spec, crop, len(self._masks) - 1))
        if self._patches is not None:
            self._patches.add(crop)
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
        replacer = self._replacers[-1] if np.array_equal(final, self._masks[-1]) else PixelReplacer(final)
        timings["defects_s"] = time.perf_counter() - t
        t = time.perf_counter()
        first_pass, points = self._settled_first_pass(final, replacer, engine)
        self.deferred_update_points = 0 if points is None else int(points.flat_px.size)
        self.frames_transformed_again = sum(entry is None for entry in first_pass)
        self._first_pass = []
        timings["fourier_update_s"] = time.perf_counter() - t
        raw, self._raw = self._raw, []
        patches, self._patches = self._patches, None
        if patches is not None:
            timings["streamed_patches_s"] = patches.seconds
            # a frame transformed again changed at many pixels (a column that died): its streamed
            # patches are not those of the final frame (the few pixels of a Fourier update are noise)
            patches = patches if self.frames_transformed_again == 0 else None
        result = engine.finish(raw, self._gain, replacer, timings, first_pass=first_pass, streamed_patches=patches,
                               first_pass_points=points)
        self.patches_from_stream = patches is not None and patches.used and patches.dropped is None
        self.streamed_patches_dropped = None if patches is None else patches.dropped
        return result

    def _settled_first_pass(self, final: np.ndarray, replacer: PixelReplacer,
                            engine: MovieCorrection) -> tuple[list, PointSpectra | None]:
        """Every frame's ``(spectrum, cropped)`` for the ``final`` mask (its ``replacer``): as streamed
        when its provisional mask was the final one, updated in Fourier space when its corrected image
        changes at few pixels (at most :data:`FOURIER_UPDATE_MAX_POINTS`; movie-size output only), else
        ``None`` (the engine transforms it again). When all the updated frames change at no more than
        :data:`DEFERRED_UPDATE_MAX_POINTS` pixels in all and patches are measured, their alignment
        copies are updated here and the point spectra returned, for the engine to add to the spectra
        beside the local motion; otherwise each spectrum is updated here and ``None`` is returned."""
        sparse = engine.cfg.fourier_bin == 1  # the spectrum is the plain rfft2 of the corrected frame
        differing: dict[int, np.ndarray | None] = {}  # per mask version: pixels drawn differently, None: same mask
        settled: list = []
        changes: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # frame -> (flat pixels, new - old)
        for i, (spec, crop, version) in enumerate(self._first_pass):
            if version not in differing:
                same = np.array_equal(final, self._masks[version])
                differing[version] = None if same else self._replacers[version].pixels_drawn_differently(replacer)
            pixels = differing[version]
            if pixels is None:
                settled.append((spec, crop))
                continue
            if sparse:
                where, delta = self._correction_change(i, pixels, self._replacers[version], replacer)
                if where.size <= FOURIER_UPDATE_MAX_POINTS:
                    settled.append((spec, crop))
                    changes[i] = (where, delta)
                    continue
            settled.append(None)
        self.frames_updated_in_fourier_space = len(changes)
        if not changes:
            return settled, None
        union = np.unique(np.concatenate([where for where, _ in changes.values()]))
        if union.size <= DEFERRED_UPDATE_MAX_POINTS and engine.local:  # whole-frame: nothing to work beside
            values = np.zeros((len(settled), union.size))
            for i, (where, delta) in changes.items():
                np.add.at(values[i], np.searchsorted(union, where), delta)
            points = PointSpectra(self._shape, union, values)
            for i in changes:
                spec, crop = settled[i]
                settled[i] = (spec, crop + points.cropped(i, engine.align_shape))
            return settled, points
        for i, (where, delta) in changes.items():
            spec, _ = settled[i]
            add_point_spectrum(spec, self._shape, where, delta)
            settled[i] = (spec, fourier_crop(spec, engine.shape, engine.align_shape))
        return settled, None

    def _correction_change(self, i: int, pixels: np.ndarray, old: PixelReplacer,
                           new: PixelReplacer) -> tuple[np.ndarray, np.ndarray]:
        """Where and by how much frame ``i`` corrected with ``new`` differs from it corrected with
        ``old`` (``pixels``: those whose replacement may differ): flat indices int64 ``(m,)`` and
        float64 ``(m,)`` new - old (the float32 values subtracted in float64), nonzero. Reads only
        the pixels whose values the two take."""
        src_old, src_new = old.source_pixels(pixels, i), new.source_pixels(pixels, i)
        moved = src_old != src_new
        pixels, src_old, src_new = pixels[moved], src_old[moved], src_new[moved]
        values = gain_corrected_at(self._raw[i], self._gain, np.concatenate([src_new, src_old])).astype(np.float64)
        delta = values[: pixels.size] - values[pixels.size:]
        keep = delta != 0
        return pixels[keep], delta[keep]

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
        self._replacers.append(replacer)
