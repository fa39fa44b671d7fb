"""Scores of the 8 gain orientations: the correlation of a raw sum's fixed pattern with each candidate's.

The criterion is described in :mod:`framewatch.core.gain_auto`: ``r_c = corr(hp(S), hp(1 / G_c))``
over the pixels valid in both, ``hp`` the 7 x 7 high pass, ``S`` the raw sum ``(ny, nx)`` and
``G_c`` the stored gain oriented by candidate ``c``; ``z_c = r_c sqrt(N)``. This module computes
the patterns, the 8 scores and the correlation of two candidates' patterns; the decision is
:func:`framewatch.core.gain_auto.choose_gain_orientation`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .errors import GainError
from .gain import match_gain_to_movie
from .settings import GainOrientation

__all__ = ["CANDIDATES", "HIGH_PASS_WINDOW_PX", "CandidateScore", "Patterns", "canonical_orientation", "fixed_patterns",
           "score_candidates", "pattern_correlation"]

CANDIDATES: tuple[GainOrientation, ...] = tuple(
    GainOrientation(rotate_ccw_90=k, flip=f) for f in ("none", "y") for k in range(4)
)
HIGH_PASS_WINDOW_PX = 7


@dataclass(frozen=True)
class CandidateScore:
    """One candidate: ``correlation`` r and ``z = r sqrt(N)``; both ``None`` when its shape cannot fit."""

    orientation: GainOrientation
    correlation: float | None
    z: float | None


@dataclass(frozen=True, eq=False)
class Patterns:
    """The high-passed fixed patterns both sides of the correlation, in stored orientation.

    ``a`` ``(ny, nx)`` float64: high pass of the raw sum, 0 where ``s_ok`` is False (hot, negative or
    not finite pixels); ``b`` ``(gy, gx)`` float64: high pass of the stored gain's sensitivity
    ``1 / gain``, 0 where ``gain_ok`` is False (gain defects); ``fits`` ``(8,)``: which of
    :data:`CANDIDATES` give the frame shape; ``mean_counts`` of the raw sum per pixel.
    """

    a: np.ndarray
    s_ok: np.ndarray
    b: np.ndarray
    gain_ok: np.ndarray
    fits: tuple[bool, ...]
    mean_counts: float


def canonical_orientation(orientation: GainOrientation) -> GainOrientation:
    """The same operation with the flip ``"none"`` or ``"y"``: (k, x) == (k + 2, y); ``invert`` kept."""
    if orientation.flip == "x":
        return GainOrientation(rotate_ccw_90=(orientation.rotate_ccw_90 + 2) % 4, flip="y", invert=orientation.invert)
    return orientation


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


def fixed_patterns(raw_sum: np.ndarray, gain: np.ndarray, *, n_frames_summed: int, invert: bool,
                   allow_resample: bool) -> Patterns:
    """Validate the inputs and build both high-passed patterns (arguments as
    :func:`framewatch.core.gain_auto.choose_gain_orientation`). Raises :class:`GainError` when no
    candidate's shape fits the frames or the gain has no usable pixel."""
    s = np.asarray(raw_sum, dtype=np.float64)
    if s.ndim != 2 or min(s.shape) < 2 * HIGH_PASS_WINDOW_PX:
        raise ValueError(f"raw_sum must be a 2-D image of at least {2 * HIGH_PASS_WINDOW_PX} px a side, got {s.shape}")
    if int(n_frames_summed) < 1:
        raise ValueError(f"n_frames_summed must be >= 1, got {n_frames_summed}")
    g = _prepare_gain(gain, s.shape, allow_resample)
    if g.ndim != 2:
        raise ValueError(f"gain must be 2-D, got shape {g.shape}")
    fits = tuple((_orient_view(g, o).shape == s.shape) for o in CANDIDATES)
    if not any(fits):
        raise GainError(
            f"gain reference {g.shape[1]} x {g.shape[0]} fits the frames ({s.shape[1]} x {s.shape[0]}) in no "
            "rotation",
            fix="use the gain recorded for this camera and mode (or allow resampling for a 2x super-resolution gain)",
        )
    b, gain_ok = _gain_pattern(g, invert)
    a, s_ok, mean_counts = _sum_pattern(s)
    return Patterns(a=a, s_ok=s_ok, b=b, gain_ok=gain_ok, fits=fits, mean_counts=mean_counts)


def _gain_pattern(g: np.ndarray, invert: bool) -> tuple[np.ndarray, np.ndarray]:
    """The multiplicative gain's inverse (a sensitivity pattern), defects filled with the mean, high
    passed and 0 at the defects; and the mask of usable gain pixels."""
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
    return b, gain_ok


def _sum_pattern(s: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The raw sum high passed with its hot pixels (above ``mean + 8 sqrt(mean) + 8``) at 0, the mask
    of usable pixels and the mean counts per pixel."""
    mean_counts = float(s.mean())
    cap = mean_counts + 8.0 * math.sqrt(max(mean_counts, 0.0)) + 8.0
    s_ok = np.isfinite(s) & (s >= 0) & (s <= cap)
    a = _high_pass(np.where(s_ok, s, mean_counts))
    a[~s_ok] = 0.0
    return a, s_ok, mean_counts


def score_candidates(p: Patterns) -> tuple[tuple[CandidateScore, ...], int]:
    """The 8 candidates' scores in :data:`CANDIDATES` order and the most pixels any of them used.

    Pearson correlation over the pixels valid in both, from masked sums: M = s_ok & gain_ok_c, a is
    0 outside s_ok and b outside gain_ok, so only the few defect/hot pixels need corrections.
    """
    a, s_ok, b = p.a, p.s_ok, p.b
    n_s = int(s_ok.sum())
    gain_bad = np.nonzero(~p.gain_ok)  # defects of the stored gain, few
    hot = np.nonzero(~s_ok)  # hot pixels of the sum, few
    sum_a, sum_aa = float(a.sum()), float(a.reshape(-1) @ a.reshape(-1))
    sum_b, sum_bb = float(b.sum()), float(b.reshape(-1) @ b.reshape(-1))  # the same in every orientation
    # An odd quarter turn is a transpose plus flips: candidates with odd k are scored in the
    # transposed frame, where their view of b is a flip only (copied at streaming speed).
    frames = {0: (a, s_ok), 1: None}
    buffers: dict[int, np.ndarray] = {}
    scores: list[CandidateScore] = []
    n_used = 0
    for o, fit in zip(CANDIDATES, p.fits):
        if not fit:
            scores.append(CandidateScore(o, None, None))
            continue
        parity = o.rotate_ccw_90 % 2
        if frames[parity] is None:
            frames[parity] = (np.ascontiguousarray(a.T), np.ascontiguousarray(s_ok.T))
        a_p, s_ok_p = frames[parity]
        b_view = _orient_view(b, o).T if parity else _orient_view(b, o)
        bad = _oriented_coords(*gain_bad, p.gain_ok.shape, o, transpose=bool(parity))
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
    return tuple(scores), n_used


def pattern_correlation(b: np.ndarray, o1: GainOrientation, o2: GainOrientation) -> float:
    """Correlation of the gain pattern ``b`` ``(gy, gx)`` under two orientations, over the whole
    frame (b's mean and variance do not depend on the orientation)."""
    sum_b, sum_bb = float(b.sum()), float(b.reshape(-1) @ b.reshape(-1))
    view_1, view_2 = _orient_view(b, o1), _orient_view(b, o2)
    if o1.rotate_ccw_90 % 2:  # score in the frame where the first is a flip only
        view_1, view_2 = view_1.T, view_2.T
    first = np.ascontiguousarray(view_1)
    cross = float(first.reshape(-1) @ np.ascontiguousarray(view_2).reshape(-1))
    del first
    size = b.size
    mean_b = sum_b / size
    var_b_all = sum_bb / size - mean_b * mean_b
    return (cross / size - mean_b * mean_b) / var_b_all if var_b_all > 0 else 1.0
