"""Gain references: reading the files facilities have, orienting them, matching them to the movie.

A gain reference is multiplicative: ``corrected = raw * gain``. :func:`read_gain` returns a float32
``(ny, nx)`` image; :func:`load_gain_for_movie` orients it and matches it to a movie.

Files (by suffix and name; sources in brackets)
-----------------------------------------------
- ``.mrc``/``.mrcs``/``.st``: the first section, any mode :mod:`framewatch.core.movie_io` reads
  (float32 as MotionCor3 requires, or integer modes, 4-bit included), rows as stored (MRC
  convention, no flip).
- SerialEM's ``CountRef_*.mrc`` and ``SuperRef_*.mrc`` (also ``Count...Ref_``/``Super...Ref_``
  variants such as ``CountCDSRef_``): copies of DigitalMicrograph's gain reference that SerialEM's
  plugin puts next to frames saved *unnormalized*; ``Count`` is for counting-mode (physical) pixels,
  ``Super`` for super-resolution pixels (twice the size in x and y). They are already multiplicative
  (SerialEM's help normalizes such frames with ``clip mult frames gainReference``, and IMOD's
  alignframes "multiplies frames by" its ``-gain`` file), so they are read like any MRC gain, never
  inverted. They are stored in the camera's raw orientation: frames saved with a rotation/flip need
  the same operation on the gain, which SerialEM writes in the frame stack's title as ``r/f N``
  (see :func:`framewatch.core.gain_auto.orientation_hint_from_labels`). [SerialEM help
  ``about_camera.htm``, "Gain-normalizing frames during post-processing";
  ``hidd_k2_save_options.htm``; on-the-fly.md §SerialEM]
- ``.tif``/``.tiff``: the first page, any real pixel type (float32, uint8/16/32, ...), flipped in
  Y exactly like TIFF movie frames.
- ``.gain`` (Thermo Fisher, for EER): a float TIFF, multiplicative, read **without** the TIFF Y flip.
  RELION reads it through its TIFF reader (which flips) and then "reverts the Y flip"
  (``renderEER.h::loadEERGain``), because EER frames are rendered unflipped; the net effect is the
  file's own row order, which is what this module returns.
- EER count gains (an MRC gain given for an EER movie): RELION treats every EER gain that is not a
  ``.gain`` file as a count image and multiplies by ``mean / count`` (0 stays 0 = defect).
  Here: use ``GainOrientation(invert=True)`` (``1 / count``; the mean factor is a constant scale);
  :func:`eer_gain_is_count_image` says when RELION's rule applies.
- Gatan ``.dm4``/``.dm3``: not read. The two maintained Python readers pull in large dependency
  trees for one function (ncempy: matplotlib, h5py, hdf5plugin, pillow; rosettasciio: dask, pint,
  fsspec ...) and neither ships a dm4 file to test against; RELION rejects dm4 gains and MotionCor3
  reads only MRC/TIFF. A clear :class:`GainError` says to convert with IMOD's ``dm2mrc`` (as
  SerialEM's help does; Murfey does the same).

Super-resolution and physical pixels (``allow_resample=True``)
-------------------------------------------------------------
A gain exactly twice the movie in x and y is **binned** 2 x 2 by the *harmonic* mean
``G = 4 / sum_j (1 / g_j)``; a gain half the movie is **replicated** 2 x 2 (as MotionCor3's
``GAugmentRef`` and RELION do). Why the harmonic mean: sub-pixel ``j`` records counts with
sensitivity ``s_j`` and its multiplicative gain is ``g_j = c / s_j``. A physical pixel records
``C = sum_j n_j`` with ``E[C] = lambda * sum_j s_j``, so its gain must be
``G = c' / sum_j s_j = (c' / c) / sum_j (1 / g_j)``; with ``c' = 4c`` the corrected sums match the
super-resolution ones (``E[C G] = sum_j E[n_j g_j] = 4 c lambda``) and a uniform gain stays the
same. The arithmetic mean is biased by ``var(g) / mean(g)`` (about 1 % of the gain for a 10 % rms
sub-pixel pattern, itself a fixed pattern). RELION bins 8K EER *count* gains by summing counts
before inverting, which is the same rule. A binned pixel any of whose four sub-pixels is 0 or not
finite (a defect) is 0. Replication cannot know the sensitivity differences inside a physical
pixel; it flattens the physical pixels and leaves those. Other size mismatches raise
:class:`GainError`.

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

import logging
import os
import re
from pathlib import Path

import numpy as np

from .errors import GainError, MovieFormatError
from .movie_io import EER_SUFFIXES, MRC_SUFFIXES, TIFF_SUFFIXES, open_movie
from .settings import GainOrientation

logger = logging.getLogger(__name__)

THERMO_GAIN_SUFFIXES = (".gain",)
GATAN_SUFFIXES = (".dm4", ".dm3")
GAIN_SUFFIXES = MRC_SUFFIXES + TIFF_SUFFIXES + THERMO_GAIN_SUFFIXES
_SERIALEM_REF = re.compile(r"^(Count|Super)[A-Za-z]*Ref_", re.IGNORECASE)


def gain_file_kind(path: str | os.PathLike) -> str:
    """What a gain file is, from its name: ``"serialem_count_ref"``, ``"serialem_super_ref"``,
    ``"thermo_gain"``, ``"mrc"``, ``"tiff"``, ``"gatan_dm"`` or ``"unknown"`` (see the module docstring)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in THERMO_GAIN_SUFFIXES:
        return "thermo_gain"
    if suffix in GATAN_SUFFIXES:
        return "gatan_dm"
    match = _SERIALEM_REF.match(path.name)
    if match and suffix in MRC_SUFFIXES + TIFF_SUFFIXES:
        return "serialem_count_ref" if match.group(1).lower() == "count" else "serialem_super_ref"
    if suffix in MRC_SUFFIXES:
        return "mrc"
    if suffix in TIFF_SUFFIXES:
        return "tiff"
    return "unknown"


def eer_gain_is_count_image(gain_path: str | os.PathLike, *, movie_path: str | os.PathLike) -> bool:
    """RELION's rule: for an EER movie, a gain that is not a Thermo ``.gain`` file is a count image
    (use ``invert=True``); ``False`` for non-EER movies and ``.gain`` files."""
    return Path(movie_path).suffix.lower() in EER_SUFFIXES and gain_file_kind(gain_path) != "thermo_gain"


def _read_tiff_gain(path: Path, *, flip_y: bool) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.pages:
                raise GainError("gain TIFF has no pages", path=path, fix="give the correct gain file")
            page = tif.pages[0]
            image = page.asarray()
    except GainError:
        raise
    except Exception as err:
        raise GainError(
            f"cannot read the gain reference as TIFF ({type(err).__name__}: {err})",
            path=path,
            fix="the file is damaged or not a TIFF gain; re-copy it",
        ) from err
    image = np.squeeze(image)
    if image.ndim != 2 or image.dtype.kind not in "uif":
        raise GainError(
            f"gain TIFF page 0 is {image.shape} {image.dtype}, not a single-channel 2-D image",
            path=path,
            fix="give a grey-scale gain image",
        )
    if flip_y:
        image = image[::-1, :]
    return np.ascontiguousarray(image, dtype=np.float32)


def read_gain(path: str | os.PathLike) -> np.ndarray:
    """Read a gain reference as float32 ``(ny, nx)`` (file kinds and conventions: module docstring).

    MRC: first section; TIFF: first page, flipped in Y like TIFF movie frames; Thermo ``.gain``:
    first page, not flipped. Raises :class:`GainError` when the file is missing, of an unsupported
    kind (Gatan dm4: convert with ``dm2mrc``), cannot be read, or holds no positive finite value.
    """
    path = Path(path)
    if not path.is_file():
        raise GainError("gain reference not found", path=path, fix="check the --gain path")
    kind = gain_file_kind(path)
    if kind == "gatan_dm":
        mrc_name = path.with_suffix(".mrc").name
        raise GainError(
            "Gatan DigitalMicrograph gain references are not read directly",
            path=path,
            fix=f"convert it with IMOD: dm2mrc {path.name} {mrc_name} (SerialEM's help does the same), "
            f"then give --gain {mrc_name}",
        )
    if kind == "unknown":
        raise GainError(
            f"unknown gain reference format {path.suffix or '(no suffix)'!r}",
            path=path,
            fix=f"give an MRC, TIFF or Thermo .gain file ({', '.join(GAIN_SUFFIXES)}); convert dm4 gains with IMOD dm2mrc",
        )
    if kind in ("tiff", "thermo_gain") or (path.suffix.lower() in TIFF_SUFFIXES):
        gain = _read_tiff_gain(path, flip_y=kind != "thermo_gain")
    else:
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


def bin_gain_2x2(gain: np.ndarray) -> np.ndarray:
    """Bin a multiplicative gain ``(2 ny, 2 nx)`` to ``(ny, nx)`` float32 by the harmonic mean of each
    2 x 2 block, ``4 / sum(1 / g)``; a block with a 0 or non-finite sub-pixel gives 0 (module docstring)."""
    g = np.asarray(gain, dtype=np.float64)
    if g.ndim != 2 or g.shape[0] % 2 or g.shape[1] % 2:
        raise ValueError(f"gain must be 2-D with even sides to bin by 2, got {g.shape}")
    blocks = g.reshape(g.shape[0] // 2, 2, g.shape[1] // 2, 2)
    good = np.isfinite(blocks) & (blocks > 0)
    inverse = np.zeros(blocks.shape)
    np.divide(1.0, blocks, out=inverse, where=good)
    all_good = good.all(axis=(1, 3))
    out = np.zeros(all_good.shape)
    np.divide(4.0, inverse.sum(axis=(1, 3)), out=out, where=all_good)
    return out.astype(np.float32)


def replicate_gain_2x2(gain: np.ndarray) -> np.ndarray:
    """Replicate a gain ``(ny, nx)`` to ``(2 ny, 2 nx)`` float32: every pixel becomes a 2 x 2 block."""
    g = np.asarray(gain, dtype=np.float32)
    if g.ndim != 2:
        raise ValueError(f"gain must be 2-D, got {g.shape}")
    return np.ascontiguousarray(np.repeat(np.repeat(g, 2, axis=0), 2, axis=1))


def match_gain_to_movie(gain: np.ndarray, movie_shape: tuple[int, int]) -> tuple[np.ndarray, str | None]:
    """Bin (gain 2x the movie) or replicate (gain 0.5x) an oriented gain to ``movie_shape``.

    Returns ``(gain, note)``: the gain unchanged with ``note = None`` when the shapes agree, else
    the resampled float32 gain and a sentence saying what was done. Raises ``ValueError`` for any
    other mismatch.
    """
    gy, gx = gain.shape
    my, mx = (int(v) for v in movie_shape)
    if (gy, gx) == (my, mx):
        return gain, None
    if (gy, gx) == (2 * my, 2 * mx):
        return bin_gain_2x2(gain), (
            f"gain {gx} x {gy} is twice the movie ({mx} x {my}): binned 2 x 2 by the harmonic mean "
            "(a super-resolution gain for physical pixels)"
        )
    if (2 * gy, 2 * gx) == (my, mx):
        return replicate_gain_2x2(gain), (
            f"gain {gx} x {gy} is half the movie ({mx} x {my}): each pixel replicated 2 x 2 "
            "(a physical-pixel gain for a super-resolution or 8K EER movie)"
        )
    raise ValueError(f"gain {gx} x {gy} cannot be matched to a {mx} x {my} movie by binning or replicating by 2")


def load_gain_for_movie(
    path_or_array,
    *,
    orientation: GainOrientation,
    movie_shape: tuple[int, int],
    movie_path: str | os.PathLike | None = None,
    allow_resample: bool = False,
) -> np.ndarray:
    """The gain to multiply the frames of one movie with: float32 ``movie_shape`` ``(ny, nx)``.

    Reads the gain (a path, see :func:`read_gain`) or takes an array, orients it (rotate, flip,
    invert), and matches its shape to the movie. Non-finite gain pixels become 0 (so they are
    replaced as defects). With ``allow_resample`` a gain exactly 2x the movie is binned 2 x 2 (harmonic
    mean) and one 0.5x the movie is replicated 2 x 2, and a note is logged (logger
    ``framewatch.core.gain``, INFO). Any other shape mismatch, or a 2x/0.5x one without
    ``allow_resample``, raises :class:`GainError` with a hint (super-resolution vs. physical pixels,
    or transposed: a quarter turn missing or too many).
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
    movie_shape = tuple(int(v) for v in movie_shape)
    if allow_resample and gain.shape != movie_shape:
        try:
            gain, note = match_gain_to_movie(gain, movie_shape)
        except ValueError:
            pass
        else:
            where = "" if movie_path is None else f" for {movie_path}"
            logger.info("%s%s: %s", gain_path if gain_path is not None else "gain array", where, note)
    _check_shape(gain.shape, movie_shape, orientation, gain_path, movie_path)
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
            "movie; allow resampling (bins it 2 x 2 by the harmonic mean) or use the gain recorded for this mode"
        )
    elif 2 * gy == my and 2 * gx == mx:
        fix = (
            "the gain is half the movie size: it looks like a counting-mode gain for a super-resolution movie; "
            "allow resampling (replicates it 2 x 2), bin the movies by 2, or use the super-resolution gain"
        )
    elif (gy, gx) == (mx, my):
        fix = (
            f"the gain is transposed relative to the movie: try --gain-rot {(k + 1) % 4} "
            f"(or {(k + 3) % 4}) instead of {k}"
        )
    else:
        fix = "use the gain reference recorded with this camera and mode"
    raise GainError(what, path=gain_path, fix=fix)
