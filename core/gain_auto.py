"""Automatic gain orientation: which of the 8 rotations/flips makes the gain match the movies.

The 8 candidates
----------------
Rotations by ``k`` quarter turns counter-clockwise (``k = 0..3``), each without or with the ``"y"``
flip (:class:`~framewatch.core.settings.GainOrientation` and :mod:`framewatch.core.gain` define the
operations). The ``"x"`` flip adds nothing: rotate ``k`` then flip x equals rotate ``k + 2`` then
flip y (:func:`canonical_orientation`). For a non-square frame only the 4 candidates with an even
``k`` fit; the others are reported as impossible.

The criterion (measurable, documented, cheap)
---------------------------------------------
A raw (not gain-normalized) sum of counts ``S`` over many frames has expectation
``E[S](x) = lambda(x) s(x)``: dose times the detector's sensitivity, and the true multiplicative
gain is ``g = c / s``. So the pixel-to-pixel pattern of ``S`` follows ``1 / g``. With ``hp(X) =
X - box7(X)`` (the 7 x 7 moving average, reflected at the edges, removed: this keeps the
pixel-scale fixed pattern and drops the specimen's and the illumination's smooth parts), the
score of candidate ``c`` is the Pearson correlation

    ``r_c = corr(hp(S), hp(1 / G_c))``  over pixels where both are valid,

``G_c`` the stored gain oriented by ``c``. The right orientation gives ``r ~ sigma_g / sqrt(sigma_g^2
+ 1 / mean(S) + specimen)``, a wrong one ``r ~ 0`` (or the part of the pattern a symmetry shares,
such as column banding under a y flip). Pixels of ``S`` above ``mean + 8 sqrt(mean) + 8`` (hot
pixels) and gain pixels that are 0 or not finite (defects) are left out.

Significance: for ``N`` pixels and no relation, ``r`` has standard error ``1 / sqrt(N)`` (the 7 x 7
high-pass barely correlates neighbours: the correction is ~2 %). ``z_c = r_c sqrt(N)``. Two
candidates whose patterns correlate by ``rho`` differ by ``r_1 - r_2`` with standard error
``sqrt((2 - 2 rho) / N)``, so the **margin** is ``(r_best - r_second) / sqrt((2 - 2 rho) / N)``.

Decision
--------
- ``z_best >= 10`` (**signal**) and margin ``>= 10`` standard errors (**clear winner**): accepted.
- If the best and runner-up patterns are the same (``rho >= 0.999``: the gain is symmetric under
  the operation relating them), they are equivalent for correction: accepted, the hint (if it is
  one of them) or the best.
- If the signal is there but the margin is not, a SerialEM ``r/f`` hint that is the best or the
  runner-up decides; otherwise refused.
- Too little signal: refused, whatever the hint; the reason asks for ``--gain-rot``/``--gain-flip``.
- A clearly *negative* best correlation means the gain is a count (sensitivity) image: refused,
  the reason says to set ``invert``.

Both thresholds are 10 standard errors of a null that is standard normal: a wrong acceptance needs a
model error far beyond noise. For scale: one 4K movie of 3 e/A^2 at 0.75 A/px (1.7 counts per
pixel) with a 5 % rms pixel gain gives ``r ~ 0.06`` and ``z ~ 260``; 256 x 256 pixels of 3 e/A^2 at
1.5 A/px with 10 % gain give ``z ~ 60``.

The SerialEM hint
-----------------
SerialEM's plugin titles every frame stack ``... r/f N`` (``r/f 0 need M`` when frames are saved
unrotated). SerialEM's help (``about_camera.htm``): "This value is the rotation counterclockwise
divided by 90 (i.e. 1, 2, or 3 for angles of 90, 180 or 270) plus 4 for a flip around the Y axis
before the rotation", and the gain reference "may need to be rotated and/or flipped by the same
operations". A flip around the Y axis mirrors x (IMOD ``rotateflip.c``: "Flip X coordinates for a
flip"), and SerialEM's operations are defined on the picture as displayed, as ours are. So ``N``
means: mirror left-right, then rotate ``N % 4`` quarter turns CCW; in our rotate-then-flip order
that is ``(N % 4, flip x)`` for even ``N % 4`` and ``(N % 4, flip y)`` for odd, returned in the
canonical none/y form by :func:`orientation_hint_from_labels`.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from .errors import MovieFormatError
from .gain_hints import orientation_hint_from_labels, orientation_hint_from_movie
from .gain_orientation_scores import (
    CANDIDATES,
    CandidateScore,
    canonical_orientation,
    fixed_patterns,
    pattern_correlation,
    score_candidates,
)
from .settings import GainOrientation

__all__ = [
    "CANDIDATES",
    "Z_MIN",
    "MARGIN_MIN",
    "CandidateScore",
    "OrientationChoice",
    "canonical_orientation",
    "choose_gain_orientation",
    "OrientationAccumulator",
    "accumulate_for_orientation",
    "orientation_hint_from_labels",
    "orientation_hint_from_movie",
]

Z_MIN = 10.0  # correlation of the best candidate, in standard errors
MARGIN_MIN = 10.0  # best minus runner-up, in standard errors of the difference
EQUIVALENT_RHO = 0.999  # patterns this alike are the same gain
DEFAULT_MAX_MOVIES = 3


@dataclass(frozen=True)
class OrientationChoice:
    """The outcome of :func:`choose_gain_orientation`.

    ``orientation``: the choice (``invert`` as requested), or ``None`` when refused. ``scores``: the 8
    candidates in :data:`CANDIDATES` order. ``margin``: best minus runner-up in standard errors
    (``inf`` when only one candidate fits). ``best_z``: the best candidate's z. ``accepted`` and a
    one-line ``reason`` (for the log; on refusal it says what to set). ``n_pixels``: pixels used;
    ``mean_counts_per_pixel``: of the raw sum; ``n_frames_summed`` as given.
    """

    orientation: GainOrientation | None
    scores: tuple[CandidateScore, ...]
    margin: float
    best_z: float
    accepted: bool
    reason: str
    n_pixels: int
    mean_counts_per_pixel: float
    n_frames_summed: int


def _describe(o: GainOrientation) -> str:
    return f"--gain-rot {o.rotate_ccw_90} --gain-flip {o.flip}"


def choose_gain_orientation(
    raw_sum: np.ndarray,
    gain: np.ndarray,
    *,
    n_frames_summed: int,
    hint: GainOrientation | None = None,
    invert: bool = False,
    allow_resample: bool = False,
) -> OrientationChoice:
    """Choose the orientation of a stored gain from a raw sum of movie frames (module docstring).

    Args:
        raw_sum: ``(ny, nx)`` sum of raw (not gain-corrected) frames, e.g. from
            :func:`accumulate_for_orientation`; more movies give more signal.
        gain: the stored gain reference ``(gy, gx)`` as read by :func:`framewatch.core.gain.read_gain`.
        n_frames_summed: frames in ``raw_sum`` (reported; must be >= 1).
        hint: an orientation suggested by the files (SerialEM ``r/f``), used only to break a tie.
        invert: the gain is a count image (EER MRC gains): candidates use ``1 / gain``.
        allow_resample: bin/replicate a gain that is 2x or 0.5x the frames first.

    Steps: the two fixed patterns and the 8 scores (:mod:`framewatch.core.gain_orientation_scores`);
    refuse an anti-correlated gain; the margin of the best over the runner-up; the decision.
    Raises :class:`GainError` when no candidate's shape fits the frames.
    """
    patterns = fixed_patterns(raw_sum, gain, n_frames_summed=n_frames_summed, invert=invert,
                              allow_resample=allow_resample)
    scores, n_used = score_candidates(patterns)
    fitted = [i for i, sc in enumerate(scores) if sc.correlation is not None]
    order = sorted(fitted, key=lambda i: scores[i].correlation, reverse=True)
    best_z = float(scores[order[0]].z)
    common = dict(scores=scores, best_z=best_z, n_pixels=n_used, mean_counts_per_pixel=patterns.mean_counts,
                  n_frames_summed=int(n_frames_summed))
    hint_c = None if hint is None else canonical_orientation(GainOrientation(hint.rotate_ccw_90, hint.flip))
    stats = f"from {int(n_frames_summed)} frames, {patterns.mean_counts:.3g} counts/pixel, {n_used} pixels"
    worst = scores[order[-1]]
    if -float(worst.z) >= Z_MIN and -float(worst.z) > best_z:
        return OrientationChoice(
            None, margin=0.0, accepted=False,
            reason=(
                f"gain orientation not chosen: the gain anti-correlates with the frames "
                f"(z = {worst.z:.1f} at {_describe(worst.orientation)}), so it looks like a count "
                f"image; set the gain's invert option ({'off' if invert else 'on'}), or give --gain-rot/--gain-flip "
                f"explicitly ({stats})"
            ),
            **common,
        )
    margin, rho = _margin_over_runner_up(scores, order, patterns.b, n_used)
    return _decide(scores, order, margin=margin, rho=rho, hint_c=hint_c, invert=invert, stats=stats, common=common)


def _margin_over_runner_up(scores: tuple[CandidateScore, ...], order: list[int], b: np.ndarray,
                           n_used: int) -> tuple[float, float]:
    """``(margin, rho)``: best minus runner-up correlation in standard errors of the difference, and
    the correlation of their patterns (``(inf, 0)`` when only one candidate fits)."""
    if len(order) == 1:
        return math.inf, 0.0
    best, second = scores[order[0]], scores[order[1]]
    rho = pattern_correlation(b, best.orientation, second.orientation)
    se = math.sqrt(max(2.0 - 2.0 * rho, 1e-12) / max(n_used, 1))
    return (best.correlation - second.correlation) / se, rho


def _decide(scores: tuple[CandidateScore, ...], order: list[int], *, margin: float, rho: float,
            hint_c: GainOrientation | None, invert: bool, stats: str, common: dict) -> OrientationChoice:
    """Accept or refuse by the rules of the module docstring (signal, margin, equivalence, hint)."""
    best_z = common["best_z"]
    best_o = scores[order[0]].orientation

    def with_invert(o: GainOrientation) -> GainOrientation:
        return GainOrientation(rotate_ccw_90=o.rotate_ccw_90, flip=o.flip, invert=bool(invert))

    if best_z < Z_MIN:
        return OrientationChoice(
            None, margin=margin, accepted=False,
            reason=(
                f"gain orientation not chosen: too little signal (best z = {best_z:.1f} < {Z_MIN:g} at "
                f"{_describe(best_o)}; {stats}; frames already gain-normalized also show none); give --gain-rot "
                "and --gain-flip explicitly"
                + (f" (the frame header suggests {_describe(hint_c)})" if hint_c is not None else "")
            ),
            **common,
        )
    if margin >= MARGIN_MIN:
        note = ""
        if hint_c is not None:
            note = "; agrees with the frame header's r/f" if hint_c == best_o else (
                f"; the frame header's r/f suggested {_describe(hint_c)}, the data disagree")
        return OrientationChoice(
            with_invert(best_o), margin=margin, accepted=True,
            reason=(f"gain orientation {_describe(best_o)}: z = {best_z:.1f}, margin {margin:.1f} standard errors "
                    f"over the runner-up ({stats}){note}"),
            **common,
        )
    tied = [best_o, scores[order[1]].orientation]
    if rho >= EQUIVALENT_RHO:
        pick = hint_c if hint_c in tied else best_o
        return OrientationChoice(
            with_invert(pick), margin=margin, accepted=True,
            reason=(f"gain orientation {_describe(pick)}: {_describe(tied[0])} and {_describe(tied[1])} give the "
                    f"same gain pattern (correlation {rho:.4f}), either is right; z = {best_z:.1f} ({stats})"),
            **common,
        )
    if hint_c is not None and hint_c in tied:
        return OrientationChoice(
            with_invert(hint_c), margin=margin, accepted=True,
            reason=(f"gain orientation {_describe(hint_c)} from the frame header's r/f: the data cannot separate "
                    f"{_describe(tied[0])} and {_describe(tied[1])} (margin {margin:.1f} < {MARGIN_MIN:g}; {stats})"),
            **common,
        )
    return OrientationChoice(
        None, margin=margin, accepted=False,
        reason=(f"gain orientation not chosen: no clear winner ({_describe(tied[0])} leads {_describe(tied[1])} by "
                f"{margin:.1f} < {MARGIN_MIN:g} standard errors; {stats}); give --gain-rot and --gain-flip explicitly"),
        **common,
    )


# ---------------------------------------------------------------------------------- accumulation


class OrientationAccumulator:
    """Sums the raw frames of the first ``max_movies`` movies of a session for the orientation choice.

    ``add`` takes a movie path (opened with :func:`framewatch.core.movie_io.open_movie` and
    ``open_kwargs``, e.g. the EER options), an open reader, or an ``(n, ny, nx)``/``(ny, nx)`` array;
    it returns ``False`` (and reads nothing) once ``max_movies`` are in. ``raw_sum`` is float64
    ``(ny, nx)``. Movies of another frame size raise :class:`MovieFormatError`.
    """

    def __init__(self, *, max_movies: int = DEFAULT_MAX_MOVIES) -> None:
        if max_movies < 1:
            raise ValueError(f"max_movies must be >= 1, got {max_movies}")
        self.max_movies = int(max_movies)
        self.raw_sum: np.ndarray | None = None
        self.n_frames_summed = 0
        self.n_movies = 0

    @property
    def full(self) -> bool:
        return self.n_movies >= self.max_movies

    def _add_frame(self, frame: np.ndarray, source) -> None:
        frame = np.asarray(frame)
        if self.raw_sum is None:
            self.raw_sum = np.zeros(frame.shape, dtype=np.float64)
        elif frame.shape != self.raw_sum.shape:
            raise MovieFormatError(
                f"frames are {frame.shape[1]} x {frame.shape[0]}, the movies summed so far are "
                f"{self.raw_sum.shape[1]} x {self.raw_sum.shape[0]}",
                path=source if isinstance(source, (str, os.PathLike)) else None,
                fix="sum only movies of one camera mode for the gain orientation",
            )
        self.raw_sum += frame
        self.n_frames_summed += 1

    def add(self, movie, **open_kwargs) -> bool:
        if self.full:
            return False
        if isinstance(movie, (str, os.PathLike)):
            from .movie_io import open_movie

            with open_movie(movie, **open_kwargs) as reader:
                for frame in reader:
                    self._add_frame(frame, movie)
        elif hasattr(movie, "read_frame") and hasattr(movie, "n_frames"):
            for index in range(movie.n_frames):
                self._add_frame(movie.read_frame(index), getattr(movie, "path", None))
        else:
            frames = np.asarray(movie)
            for frame in frames.reshape((-1,) + frames.shape[-2:]):
                self._add_frame(frame, None)
        self.n_movies += 1
        return True

    def choose(self, gain: np.ndarray, *, hint: GainOrientation | None = None, invert: bool = False,
               allow_resample: bool = False) -> OrientationChoice:
        if self.raw_sum is None:
            raise ValueError("no movie has been added")
        return choose_gain_orientation(self.raw_sum, gain, n_frames_summed=self.n_frames_summed, hint=hint,
                                       invert=invert, allow_resample=allow_resample)



def accumulate_for_orientation(movies: Iterable, *, max_movies: int = DEFAULT_MAX_MOVIES,
                               **open_kwargs) -> tuple[np.ndarray, int]:
    """Sum the raw frames of at most ``max_movies`` movies: ``(raw_sum float64 (ny, nx), n_frames_summed)``."""
    acc = OrientationAccumulator(max_movies=max_movies)
    for movie in movies:
        if not acc.add(movie, **open_kwargs):
            break
    if acc.raw_sum is None:
        raise ValueError("no movie to sum")
    return acc.raw_sum, acc.n_frames_summed
