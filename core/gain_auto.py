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
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from scipy import ndimage

from .errors import GainError, MovieFormatError
from .gain import match_gain_to_movie
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

CANDIDATES: tuple[GainOrientation, ...] = tuple(
    GainOrientation(rotate_ccw_90=k, flip=f) for f in ("none", "y") for k in range(4)
)
Z_MIN = 10.0  # correlation of the best candidate, in standard errors
MARGIN_MIN = 10.0  # best minus runner-up, in standard errors of the difference
EQUIVALENT_RHO = 0.999  # patterns this alike are the same gain
HIGH_PASS_WINDOW_PX = 7
DEFAULT_MAX_MOVIES = 3
_RF = re.compile(r"\br/f\s*(-?\d+)")


@dataclass(frozen=True)
class CandidateScore:
    """One candidate: ``correlation`` r and ``z = r sqrt(N)``; both ``None`` when its shape cannot fit."""

    orientation: GainOrientation
    correlation: float | None
    z: float | None


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


def canonical_orientation(orientation: GainOrientation) -> GainOrientation:
    """The same operation with the flip ``"none"`` or ``"y"``: (k, x) == (k + 2, y); ``invert`` kept."""
    if orientation.flip == "x":
        return GainOrientation(rotate_ccw_90=(orientation.rotate_ccw_90 + 2) % 4, flip="y", invert=orientation.invert)
    return orientation


def _describe(o: GainOrientation) -> str:
    return f"--gain-rot {o.rotate_ccw_90} --gain-flip {o.flip}"


def _high_pass(image: np.ndarray) -> np.ndarray:
    return image - ndimage.uniform_filter(image, size=HIGH_PASS_WINDOW_PX, mode="reflect")


def _orient_view(a: np.ndarray, o: GainOrientation) -> np.ndarray:
    """Rotate/flip a 2-D array as :func:`framewatch.core.gain.orient_gain` does (a view, no invert)."""
    v = np.rot90(a, -o.rotate_ccw_90)
    return v[::-1, :] if o.flip == "y" else v


def _oriented_coords(ys: np.ndarray, xs: np.ndarray, shape: tuple[int, int], o: GainOrientation,
                     *, transpose: bool) -> tuple[np.ndarray, np.ndarray]:
    """Where stored pixels ``(ys, xs)`` of an array of ``shape`` land in ``_orient_view(array, o)``
    (then transposed if asked): ``np.rot90(m, -k)`` moves (y, x) to (x, H-1-y) for k = 1,
    (H-1-y, W-1-x) for k = 2 and (W-1-x, y) for k = 3; the y flip to (H'-1-y, x)."""
    h, w = shape
    k = o.rotate_ccw_90 % 4
    if k == 0:
        oy, ox, rows = ys, xs, h
    elif k == 1:
        oy, ox, rows = xs, h - 1 - ys, w
    elif k == 2:
        oy, ox, rows = h - 1 - ys, w - 1 - xs, h
    else:
        oy, ox, rows = w - 1 - xs, ys, w
    if o.flip == "y":
        oy = rows - 1 - oy
    return (ox, oy) if transpose else (oy, ox)


def _prepare_gain(gain: np.ndarray, target_shape: tuple[int, int], allow_resample: bool) -> np.ndarray:
    """The stored gain resampled by 2 if that makes it fit the target in some orientation."""
    g = np.asarray(gain, dtype=np.float64)
    if not allow_resample:
        return g
    shapes = {tuple(target_shape), tuple(target_shape[::-1])}
    if g.shape in shapes:
        return g
    for shape in shapes:
        try:
            resampled, _ = match_gain_to_movie(g, shape)
        except ValueError:
            continue
        return np.asarray(resampled, dtype=np.float64)
    return g


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

    Raises :class:`GainError` when no candidate's shape fits the frames.
    """
    s = np.asarray(raw_sum, dtype=np.float64)
    if s.ndim != 2 or min(s.shape) < 2 * HIGH_PASS_WINDOW_PX:
        raise ValueError(f"raw_sum must be a 2-D image of at least {2 * HIGH_PASS_WINDOW_PX} px a side, got {s.shape}")
    if int(n_frames_summed) < 1:
        raise ValueError(f"n_frames_summed must be >= 1, got {n_frames_summed}")
    g = _prepare_gain(gain, s.shape, allow_resample)
    if g.ndim != 2:
        raise ValueError(f"gain must be 2-D, got shape {g.shape}")
    fits = [(_orient_view(g, o).shape == s.shape) for o in CANDIDATES]
    if not any(fits):
        raise GainError(
            f"gain reference {g.shape[1]} x {g.shape[0]} fits the frames ({s.shape[1]} x {s.shape[0]}) in no "
            "rotation",
            fix="use the gain recorded for this camera and mode (or allow resampling for a 2x super-resolution gain)",
        )

    # the multiplicative gain's inverse (a sensitivity pattern), defects filled with the mean
    gm = 1.0 / g if invert else g
    with np.errstate(divide="ignore", invalid="ignore"):
        sens = np.where(np.isfinite(gm) & (gm > 0), 1.0 / gm, np.nan)
    del gm
    gain_ok = np.isfinite(sens)
    if not gain_ok.any():
        raise GainError("gain reference has no positive finite pixel", fix="give the correct gain file")
    sens[~gain_ok] = float(np.mean(sens[gain_ok]))
    b = _high_pass(sens)
    del sens
    b[~gain_ok] = 0.0  # defects take no part: their products vanish

    mean_counts = float(s.mean())
    cap = mean_counts + 8.0 * math.sqrt(max(mean_counts, 0.0)) + 8.0
    s_ok = np.isfinite(s) & (s >= 0) & (s <= cap)
    a = _high_pass(np.where(s_ok, s, mean_counts))
    a[~s_ok] = 0.0
    n_s = int(s_ok.sum())
    gain_bad = np.nonzero(~gain_ok)  # defects of the stored gain, few
    hot = np.nonzero(~s_ok)  # hot pixels of the sum, few
    sum_a, sum_aa = float(a.sum()), float(a.reshape(-1) @ a.reshape(-1))
    sum_b, sum_bb = float(b.sum()), float(b.reshape(-1) @ b.reshape(-1))  # the same in every orientation
    # An odd quarter turn is a transpose plus flips: candidates with odd k are scored in the
    # transposed frame, where their view of b is a flip only (copied at streaming speed).
    frames = {0: (a, s_ok), 1: None}
    buffers: dict[int, np.ndarray] = {}

    # Pearson correlation over the pixels valid in both, from masked sums: M = s_ok & gain_ok_c,
    # a is 0 outside s_ok and b outside gain_ok, so only the few defect/hot pixels need corrections.
    scores: list[CandidateScore] = []
    n_used = 0
    for o, fit in zip(CANDIDATES, fits):
        if not fit:
            scores.append(CandidateScore(o, None, None))
            continue
        parity = o.rotate_ccw_90 % 2
        if frames[parity] is None:
            frames[parity] = (np.ascontiguousarray(a.T), np.ascontiguousarray(s_ok.T))
        a_p, s_ok_p = frames[parity]
        b_view = _orient_view(b, o).T if parity else _orient_view(b, o)
        bad = _oriented_coords(*gain_bad, gain_ok.shape, o, transpose=bool(parity))
        n = n_s - int(np.count_nonzero(s_ok_p[bad]))
        sa = sum_a - float(a_p[bad].sum())
        saa = sum_aa - float(np.square(a_p[bad]).sum())
        b_at_hot = b_view[(hot[1], hot[0]) if parity else hot]
        sb = sum_b - float(b_at_hot.sum())
        sbb = sum_bb - float(np.square(b_at_hot).sum())
        buffer = buffers.setdefault(parity, np.empty(a_p.shape, dtype=np.float64))
        np.copyto(buffer, b_view)
        sab = float(a_p.reshape(-1) @ buffer.reshape(-1))
        cov = sab - sa * sb / n
        var_a = saa - sa * sa / n
        var_b = sbb - sb * sb / n
        r = cov / math.sqrt(var_a * var_b) if var_a > 0 and var_b > 0 else 0.0
        scores.append(CandidateScore(o, r, r * math.sqrt(n)))
        n_used = max(n_used, n)
    del frames

    fitted = [i for i, sc in enumerate(scores) if sc.correlation is not None]
    order = sorted(fitted, key=lambda i: scores[i].correlation, reverse=True)
    best = order[0]
    best_z = float(scores[best].z)
    common = dict(scores=tuple(scores), best_z=best_z, n_pixels=n_used, mean_counts_per_pixel=mean_counts,
                  n_frames_summed=int(n_frames_summed))
    hint_c = None if hint is None else canonical_orientation(GainOrientation(hint.rotate_ccw_90, hint.flip))

    def with_invert(o: GainOrientation) -> GainOrientation:
        return GainOrientation(rotate_ccw_90=o.rotate_ccw_90, flip=o.flip, invert=bool(invert))

    stats = f"from {int(n_frames_summed)} frames, {mean_counts:.3g} counts/pixel, {n_used} pixels"

    worst = order[-1]
    if -float(scores[worst].z) >= Z_MIN and -float(scores[worst].z) > best_z:
        return OrientationChoice(
            None, margin=0.0, accepted=False,
            reason=(
                f"gain orientation not chosen: the gain anti-correlates with the frames "
                f"(z = {scores[worst].z:.1f} at {_describe(scores[worst].orientation)}), so it looks like a count "
                f"image; set the gain's invert option ({'off' if invert else 'on'}), or give --gain-rot/--gain-flip "
                f"explicitly ({stats})"
            ),
            **common,
        )
    if len(order) == 1:
        margin = math.inf
        rho = 0.0
    else:
        second = order[1]
        # correlation of the two candidates' patterns over the whole frame (b's mean and variance
        # do not depend on the orientation)
        o1, o2 = scores[best].orientation, scores[second].orientation
        view_1, view_2 = _orient_view(b, o1), _orient_view(b, o2)
        if o1.rotate_ccw_90 % 2:  # score in the frame where the first is a flip only
            view_1, view_2 = view_1.T, view_2.T
        first = np.ascontiguousarray(view_1)
        cross = float(first.reshape(-1) @ np.ascontiguousarray(view_2).reshape(-1))
        del first
        size = b.size
        mean_b = sum_b / size
        var_b_all = sum_bb / size - mean_b * mean_b
        rho = (cross / size - mean_b * mean_b) / var_b_all if var_b_all > 0 else 1.0
        se = math.sqrt(max(2.0 - 2.0 * rho, 1e-12) / max(n_used, 1))
        margin = (scores[best].correlation - scores[second].correlation) / se

    best_o = scores[best].orientation
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
    tied = [scores[best].orientation, scores[order[1]].orientation]
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


# ------------------------------------------------------------------------------------------ hints


def orientation_hint_from_labels(labels: Iterable[str]) -> GainOrientation | None:
    """The gain orientation SerialEM's ``r/f N`` title implies (canonical none/y form), or ``None``.

    ``N = k + 4 f``: mirror left-right if ``f``, then ``k`` CCW quarter turns (module docstring).
    The first ``r/f`` found wins; values outside 0-7 give ``None``.
    """
    for label in labels:
        match = _RF.search(str(label))
        if not match:
            continue
        n = int(match.group(1))
        if not 0 <= n <= 7:
            return None
        k = n % 4
        if n < 4:
            return GainOrientation(rotate_ccw_90=k)
        return canonical_orientation(GainOrientation(rotate_ccw_90=k, flip="x" if k % 2 == 0 else "y"))
    return None


def orientation_hint_from_movie(path: str | os.PathLike) -> GainOrientation | None:
    """:func:`orientation_hint_from_labels` of an MRC movie's titles or a TIFF's ImageDescription."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".mrc", ".mrcs", ".st"):
            from .movie_io import open_movie

            with open_movie(path, check_values=False) as reader:
                return orientation_hint_from_labels(getattr(reader, "labels", ()))
        if suffix in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                description = tif.pages[0].description if tif.pages else ""
            return orientation_hint_from_labels([description or ""])
    except (OSError, MovieFormatError, ValueError):
        return None
    return None
