"""Checks of a movie's values and gain that keep garbage out of the outputs (never silently).

- **Gain**: a multiplicative gain pixel that is zero, negative or not finite is a defect: it is
  replaced like a known bad pixel (:func:`framewatch.core.defects.bad_gain_mask`) and counted in a
  note. When more than :data:`MAX_BAD_GAIN_FRACTION` of the gain is bad, the gain is refused
  (:class:`GainError`): it is not a gain of this camera mode (a dark reference, an offset-subtracted
  or wrongly scaled image), and replacing that many pixels would invent the image.
- **Signal**: a movie whose frame sum is zero everywhere (beam blanked, camera fault), or whose
  sum is mostly negative (more than half its pixels, or a mean <= 0: not detector counts, e.g.
  unsigned bytes read as signed, a dark-subtracted or normalised export), is refused with
  :class:`MovieContentError`.
- **Magnitude**: float32 sums of frames whose values times the gain reach ~1e37 overflow in the
  transforms; such a movie is refused before correction (:func:`check_value_magnitude`), and any
  corrected image holding NaN or Inf is never returned (:func:`require_finite_images`).
"""
from __future__ import annotations

from pathlib import Path

import numba
import numpy as np

from .errors import GainError, MovieContentError

MAX_BAD_GAIN_FRACTION = 0.05
# the sums of a correction reach (largest value) x (pixels) x (frames); float32 ends at 3.4e38
FLOAT32_SUM_LIMIT = 1e37


def check_gain_defects(bad: np.ndarray, *, path: str | Path) -> str | None:
    """Refuse a gain whose bad-pixel mask ``bad`` (bool ``(ny, nx)``) covers too much; else a note.

    Returns ``None`` when no gain pixel is bad, or a note saying how many were replaced.
    """
    n_bad = int(np.count_nonzero(bad))
    if n_bad == 0:
        return None
    fraction = n_bad / bad.size
    if fraction > MAX_BAD_GAIN_FRACTION:
        raise GainError(
            f"gain reference has {fraction:.1%} of its pixels zero, negative or not finite "
            f"(at most {MAX_BAD_GAIN_FRACTION:.0%} can be replaced as defects)",
            path=path,
            fix="this is not a multiplicative gain of this camera mode: give the right gain file "
            "(a count-type gain needs --gain-invert), or no gain",
        )
    return f"gain: {n_bad} pixels zero, negative or not finite replaced as defects"


@numba.njit(cache=True, parallel=True, nogil=True)
def _signal_summary_kernel(frame_sum):  # pragma: no cover - compiled
    """``(nonzero pixels, negative pixels, float64 sum)`` of a 2-D array, in one pass."""
    ny, nx = frame_sum.shape
    nonzero = 0
    negative = 0
    total = 0.0
    for y in numba.prange(ny):
        row = 0.0
        for x in range(nx):
            v = frame_sum[y, x]
            if v != 0:
                nonzero += 1
            if v < 0:
                negative += 1
            row += np.float64(v)
        total += row
    return nonzero, negative, total


def signal_summary(frame_sum: np.ndarray) -> tuple[int, int, float]:
    """``(nonzero, negative, mean)`` of ``frame_sum`` ``(ny, nx)``: how many pixels are not 0, how
    many are below 0, and the float64 mean (NaN counts as not 0)."""
    a = np.asarray(frame_sum)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"frame_sum must be a non-empty 2-D array, got shape {a.shape}")
    nonzero, negative, total = _signal_summary_kernel(np.ascontiguousarray(a))
    return int(nonzero), int(negative), float(total) / a.size


def check_movie_signal(frame_sum: np.ndarray, *, path: str | Path) -> None:
    """Refuse a movie whose raw frame sum ``(ny, nx)`` is all zero or mostly negative."""
    nonzero, negative_px, mean = signal_summary(frame_sum)
    if not nonzero:
        raise MovieContentError(
            "holds no signal: every pixel of every frame is 0",
            path=path, fix="the beam was blanked, the shutter closed or the camera failed; exclude the movie",
        )
    negative = negative_px / np.size(frame_sum)
    if negative > 0.5 or mean <= 0:
        raise MovieContentError(
            f"is not detector counts: {negative:.0%} of the pixels of the frame sum are negative (mean {mean:.3g})",
            path=path,
            fix="give the raw movie (unsigned counts); a dark-subtracted or normalised export, or unsigned "
            "bytes read as signed (an MRC mode-0 file without IMOD's flags), cannot be corrected",
        )


def _peak_abs(frame: np.ndarray) -> float:
    a = np.asarray(frame)
    if a.dtype.kind in "ui":  # no scan needed: the type bounds it
        info = np.iinfo(a.dtype)
        return float(max(info.max, -int(info.min)))
    return float(max(abs(float(np.max(a))), abs(float(np.min(a)))))


def check_value_magnitude(frames, gain: np.ndarray | None, *, path: str | Path) -> None:
    """Refuse frames (``(ny, nx)`` each) whose values times the gain would overflow float32 sums."""
    frames = [f for f in frames if f is not None]
    if not frames:
        return
    peak = max(_peak_abs(f) for f in frames)
    gain_peak = 1.0 if gain is None else _peak_abs(gain)
    pixels = int(np.size(frames[0]))
    with np.errstate(over="ignore"):
        reach = np.float64(peak) * np.float64(gain_peak) * pixels * len(frames)
    if not np.isfinite(reach) or reach > FLOAT32_SUM_LIMIT:
        raise MovieContentError(
            f"values up to {peak:.3g} times a gain up to {gain_peak:.3g} over {len(frames)} frames of {pixels} pixels "
            f"overflow float32 sums ({reach:.3g} > {FLOAT32_SUM_LIMIT:.0e}); nothing was corrected",
            path=path,
            fix="the movie or the gain holds absurd values (damaged file, wrong mode or a gain of the wrong kind); "
            "exclude the movie or give the right gain",
        )


def require_finite_images(images: dict, *, path: str | Path) -> None:
    """Raise :class:`MovieContentError` when any image (name -> ``(ny, nx)`` array) holds NaN or Inf."""
    for name, image in images.items():
        if image is None:
            continue
        bad = int(np.size(image) - np.count_nonzero(np.isfinite(image)))
        if bad:
            raise MovieContentError(
                f"the corrected {name} image has {bad} NaN or Inf values (numerical overflow); it was not written",
                path=path,
                fix="the movie or the gain holds values too large to sum in float32; exclude the movie or give the right gain",
            )
