"""Gain references: reading, orienting to the movie, and checking that they match it.

A gain reference is multiplicative: ``corrected = raw * gain``. It is a float32 ``(ny, nx)`` image
read from an MRC file (any supported mode, first section) or a TIFF file (first page, flipped in Y
exactly like TIFF movie frames, see :mod:`framewatch.core.movie_io`).

Orientation (MotionCor2 ``-RotGain``/``-FlipGain``/``-InvGain``, RELION ``--gain_rot``/``--gain_flip``)
-------------------------------------------------------------------------------------------------
The operations are defined on the image *as displayed with y up*: row 0 at the bottom, the way IMOD
shows an MRC file. numpy's own picture of an array has row 0 at the top, i.e. the same image mirrored
top-to-bottom. A mirror reverses the sense of rotation, so a counter-clockwise quarter turn in the
y-up display is a *clockwise* quarter turn in numpy's row-0-at-top picture::

    rotate k x 90 deg counter-clockwise (y up)  ==  np.rot90(gain, -k)

Worked example (``k = 1``), values written as displayed with y up (top row printed first)::

    gain = [[1, 2, 3],        displayed:   4 5 6        CCW turn:   6 3
            [4, 5, 6]]                     1 2 3                    5 2
                                                                    4 1
    np.rot90(gain, -1) = [[4, 1], [5, 2], [6, 3]]   (row 0 = bottom row "4 1")

The bright pixel ``1`` at the bottom-left goes to the bottom-right, as a CCW quarter turn should.
Then the flip: ``"y"`` turns the image upside down (``g[::-1, :]``), ``"x"`` mirrors it left-right
(``g[:, ::-1]``); up/down and left/right are the same in both pictures. Rotation first, then flip,
as MotionCor2 does. Finally ``invert`` maps ``g -> 1/g`` (for count-type gains such as EER ones),
with zero and non-finite pixels set to 0 (they are defects either way).

:func:`unorient_gain` undoes the three steps in reverse order (invert, flip, ``np.rot90(g, +k)``).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import GainError, MovieFormatError
from .movie_io import SUPPORTED_SUFFIXES, open_movie
from .settings import GainOrientation


def read_gain(path: str | os.PathLike) -> np.ndarray:
    """Read a gain reference as float32 ``(ny, nx)``: an MRC file's first section or a TIFF's first page.

    TIFF gains are flipped in Y like TIFF movie frames. Raises :class:`GainError` when the file is
    missing, cannot be read, or holds no positive finite value.
    """
    path = Path(path)
    if not path.is_file():
        raise GainError("gain reference not found", path=path, fix="check the --gain path")
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise GainError(
            f"unknown gain reference format {path.suffix or '(no suffix)'!r}",
            path=path,
            fix=f"give an MRC or TIFF gain ({', '.join(SUPPORTED_SUFFIXES)}); convert dm4 gains with IMOD dm2mrc",
        )
    try:
        with open_movie(path, check_values=False) as reader:
            gain = reader.read_frame(0).astype(np.float32)
    except MovieFormatError as err:
        raise GainError(f"cannot read the gain reference: {err.what}", path=path, fix=err.fix) from err
    _check_gain_values(gain, path=path)
    return gain


def _check_gain_values(gain: np.ndarray, *, path: Path | None) -> None:
    if gain.ndim != 2 or min(gain.shape) == 0:
        raise GainError(
            f"gain reference has shape {gain.shape}, not a 2-D image",
            path=path,
            fix="give a single 2-D gain image",
        )
    finite = np.isfinite(gain)
    if not np.any(gain[finite] != 0):
        raise GainError("gain reference is all zero (or not finite)", path=path, fix="give the correct gain file")
    if not np.any(gain[finite] > 0):
        raise GainError("gain reference has no positive values", path=path, fix="give the correct gain file")


def _rot_k(orientation: GainOrientation) -> int:
    return int(orientation.rotate_ccw_90) % 4


def _flip(gain: np.ndarray, flip: str) -> np.ndarray:
    if flip == "y":
        return gain[::-1, :]
    if flip == "x":
        return gain[:, ::-1]
    return gain


def _invert(gain: np.ndarray) -> np.ndarray:
    """``1/g`` as float32 with zero and non-finite pixels (in or out) set to 0."""
    g = gain.astype(np.float64)
    out = np.zeros(g.shape, dtype=np.float64)
    good = np.isfinite(g) & (g != 0)
    np.divide(1.0, g, out=out, where=good)
    out[~np.isfinite(out)] = 0.0
    return out.astype(np.float32)


def orient_gain(gain: np.ndarray, orientation: GainOrientation) -> np.ndarray:
    """Turn a stored gain ``(ny, nx)`` to match the movie: rotate, then flip, then invert.

    Returns a new C-contiguous float32 array (shape ``(nx, ny)`` after an odd number of quarter
    turns). See the module docstring for the convention.
    """
    g = np.asarray(gain)
    if g.ndim != 2:
        raise ValueError(f"gain must be 2-D, got shape {g.shape}")
    g = np.rot90(g, -_rot_k(orientation))
    g = _flip(g, orientation.flip)
    if orientation.invert:
        return np.ascontiguousarray(_invert(g))
    return np.array(g, dtype=np.float32, order="C", copy=True)


def unorient_gain(gain: np.ndarray, orientation: GainOrientation) -> np.ndarray:
    """The inverse of :func:`orient_gain`: invert, undo the flip, rotate back (float32 copy).

    Used to store a simulated gain the way a camera would, so that ``orientation`` recovers it.
    """
    g = np.asarray(gain)
    if g.ndim != 2:
        raise ValueError(f"gain must be 2-D, got shape {g.shape}")
    if orientation.invert:
        g = _invert(g)
    g = _flip(g, orientation.flip)
    g = np.rot90(g, _rot_k(orientation))
    return np.array(g, dtype=np.float32, order="C", copy=True)


def load_gain_for_movie(
    path_or_array,
    *,
    orientation: GainOrientation,
    movie_shape: tuple[int, int],
    movie_path: str | os.PathLike | None = None,
) -> np.ndarray:
    """The gain to multiply the frames of one movie with: float32 ``movie_shape`` ``(ny, nx)``.

    Reads the gain (a path) or takes an array, orients it, and checks its shape against the movie.
    Non-finite gain pixels become 0 (so they are replaced as defects). A shape mismatch raises
    :class:`GainError` with a hint: 2x or 0.5x the movie size (super-resolution vs. binned/counting),
    or transposed (a quarter turn missing or too many).
    """
    gain_path = None
    if isinstance(path_or_array, (str, os.PathLike)):
        gain_path = Path(path_or_array)
        raw = read_gain(gain_path)
    else:
        raw = np.asarray(path_or_array)
        _check_gain_values(raw, path=None)
    gain = orient_gain(raw, orientation)
    gain[~np.isfinite(gain)] = 0.0
    _check_shape(gain.shape, tuple(int(v) for v in movie_shape), orientation, gain_path, movie_path)
    return gain


def _check_shape(gain_shape, movie_shape, orientation: GainOrientation, gain_path, movie_path) -> None:
    if tuple(gain_shape) == tuple(movie_shape):
        return
    gy, gx = gain_shape
    my, mx = movie_shape
    movie = f" of {movie_path}" if movie_path is not None else ""
    what = f"gain reference is {gx} x {gy} (nx x ny) after orientation, the movie{movie} is {mx} x {my}"
    k = _rot_k(orientation)
    if (gy, gx) == (2 * my, 2 * mx):
        fix = (
            "the gain is twice the movie size: it looks like a super-resolution gain for a binned (counting-mode) "
            "movie; bin the gain by 2 or use the gain recorded for this mode"
        )
    elif 2 * gy == my and 2 * gx == mx:
        fix = (
            "the gain is half the movie size: it looks like a counting-mode gain for a super-resolution movie; "
            "bin the movies by 2 or use the super-resolution gain"
        )
    elif (gy, gx) == (mx, my):
        fix = (
            f"the gain is transposed relative to the movie: try --gain-rot {(k + 1) % 4} "
            f"(or {(k + 3) % 4}) instead of {k}"
        )
    else:
        fix = "use the gain reference recorded with this camera and mode"
    raise GainError(what, path=gain_path, fix=fix)
