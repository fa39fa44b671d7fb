"""Writing movies (MRC, TIFF) and MRC images, each to a temporary name renamed into place.

:func:`write_movie` chooses the format by suffix (through the registry); EER cannot be written.
MRC uint8 frames are written as mode 0 with IMOD's stamp and the signed-bytes flag clear, so they
read back as uint8 (:mod:`~framewatch.core.movie_io.mrc`); TIFF frames are flipped in Y, the
convention the TIFF reader undoes (:mod:`~framewatch.core.movie_io.tiff`).
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from ..atomic_write import atomic_path
from ..errors import MovieFormatError
from .mrc_header import IMOD_STAMP, MRC_MODE_DTYPES
from .mrc_image import write_float32_mrc
from .registry import require_format
from .tiff import ANGSTROM_PER_CM, TIFF_DTYPES

_DTYPE_TO_MRC_MODE = {"int8": 0, "uint8": 0, "int16": 1, "float32": 2, "uint16": 6, "float16": 12}
_TIFF_COMPRESSIONS = {"lzw": "lzw", "zlib": "zlib", "deflate": "zlib", "zip": "zlib", "none": None}


def _as_stack(frames) -> np.ndarray:
    stack = np.asarray(frames)
    if stack.ndim == 2:
        stack = stack[np.newaxis]
    if stack.ndim != 3 or min(stack.shape) == 0:
        raise ValueError(f"frames must be a non-empty (n, ny, nx) or (ny, nx) array, got shape {stack.shape}")
    return stack


def _set_imod_unsigned_bytes(header) -> None:
    """Write IMOD's stamp with the signed-bytes flag clear (mode-0 data are unsigned)."""
    extra2 = bytearray(header.extra2.tobytes())
    struct.pack_into("<2i", extra2, 40, IMOD_STAMP, 0)
    header.extra2 = bytes(extra2)


def _mrc_target_dtype(source: np.dtype, mrc_mode: int | None) -> np.dtype:
    if mrc_mode is None:
        if source.name not in _DTYPE_TO_MRC_MODE:
            raise ValueError(
                f"no MRC mode for dtype {source}; convert to int8, uint8, int16, uint16, float16 or float32 or give mrc_mode"
            )
        return np.dtype(source.name)
    if mrc_mode not in MRC_MODE_DTYPES:
        raise ValueError(f"MRC mode {mrc_mode} is not one of {sorted(MRC_MODE_DTYPES)}")
    if mrc_mode == 0:
        return np.dtype(np.uint8 if source.kind == "u" else np.int8)
    return np.dtype(MRC_MODE_DTYPES[mrc_mode])


def _convert_frame(frame: np.ndarray, target: np.dtype) -> np.ndarray:
    if frame.dtype == target:
        return frame
    converted = frame.astype(target)
    if not np.can_cast(frame.dtype, target, casting="safe") and not np.array_equal(
        converted.astype(frame.dtype), frame, equal_nan=frame.dtype.kind == "f"
    ):
        raise ValueError(f"frame values of dtype {frame.dtype} do not fit {target} exactly; choose another mode")
    return converted


class _RunningStats:
    """min, max, mean and standard deviation over frames added one at a time (Chan et al. merging)."""

    def __init__(self) -> None:
        self.low, self.high = np.inf, -np.inf
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, frame: np.ndarray) -> None:
        with np.errstate(invalid="ignore", over="ignore"):
            values = frame.astype(np.float64)
            frame_mean = float(values.mean())
            frame_m2 = float(np.square(values - frame_mean).sum())
            total = self.count + values.size
            delta = frame_mean - self.mean
            self.m2 += frame_m2 + delta * delta * self.count * values.size / total
            self.mean += delta * values.size / total
            self.count = total
            self.low, self.high = min(self.low, float(frame.min())), max(self.high, float(frame.max()))

    @property
    def std(self) -> float:
        return float(np.sqrt(self.m2 / self.count))


def _write_mrc_movie(path: Path, stack: np.ndarray, *, mrc_mode: int | None, pixel_size_a: float | None) -> None:
    import mrcfile

    target = _mrc_target_dtype(stack.dtype, mrc_mode)
    stats = _RunningStats()
    with atomic_path(path) as tmp:
        with mrcfile.new_mmap(tmp, shape=stack.shape, mrc_mode=_DTYPE_TO_MRC_MODE[target.name], overwrite=True) as mrc:
            data = mrc.data.view(np.uint8) if target == np.uint8 else mrc.data
            for i in range(stack.shape[0]):
                frame = _convert_frame(stack[i], target)
                data[i] = frame
                stats.add(frame)
            mrc.set_image_stack()
            if pixel_size_a is not None:
                mrc.voxel_size = float(pixel_size_a)
            if target == np.uint8:
                _set_imod_unsigned_bytes(mrc.header)
                mrc.reset_header_stats()  # mrcfile reads mode 0 as signed: leave the statistics undetermined
            else:
                mrc.header.dmin, mrc.header.dmax, mrc.header.dmean = stats.low, stats.high, stats.mean
                # float16: mrcfile.validate recomputes the rms in float16, which overflows; leave it undetermined
                mrc.header.rms = -1.0 if target == np.float16 else stats.std
            mrc.flush()


def _write_tiff_movie(path: Path, stack: np.ndarray, *, tiff_compression: str | None, pixel_size_a: float | None) -> None:
    import tifffile

    key = "none" if tiff_compression is None else str(tiff_compression).lower()
    if key not in _TIFF_COMPRESSIONS:
        raise ValueError(f"TIFF compression {tiff_compression!r} is not one of lzw, zlib/deflate/zip, none")
    if stack.dtype.name not in TIFF_DTYPES:
        raise ValueError(f"TIFF movies hold {', '.join(sorted(TIFF_DTYPES))}; got {stack.dtype}")
    options = dict(photometric="minisblack", compression=_TIFF_COMPRESSIONS[key], metadata=None, contiguous=False)
    if pixel_size_a is not None:
        per_cm = ANGSTROM_PER_CM / float(pixel_size_a)
        options.update(resolution=(per_cm, per_cm), resolutionunit="CENTIMETER")
    bigtiff = stack.nbytes > 2**32 - 2**26
    with atomic_path(path) as tmp:
        with tifffile.TiffWriter(tmp, bigtiff=bigtiff) as writer:
            for i in range(stack.shape[0]):
                # rows flipped in Y, the TIFF convention of IMOD, SerialEM, MotionCor2 and RELION
                writer.write(np.ascontiguousarray(stack[i, ::-1, :]), **options)


def write_movie(
    path: str | os.PathLike,
    frames,
    *,
    mrc_mode: int | None = None,
    tiff_compression: str | None = "lzw",
    pixel_size_a: float | None = None,
) -> None:
    """Write a movie ``(n, ny, nx)`` (or one ``(ny, nx)`` frame) as MRC or TIFF, chosen by suffix.

    MRC: the mode follows the dtype (int8/uint8 -> 0, int16 -> 1, float32 -> 2, uint16 -> 6,
    float16 -> 12; uint8 with IMOD's unsigned-bytes flag) unless ``mrc_mode`` is given, in which
    case values must fit the mode's type exactly. An image stack (ispg 0) with the pixel size in
    the header. TIFF: one page per frame, dtype preserved, rows flipped in Y (the convention
    :func:`open_movie` undoes), ``tiff_compression`` "lzw", "zlib" (aliases "deflate", "zip") or
    None/"none"; the pixel size goes to the resolution tags (pixels per centimetre).

    The file is written to a temporary name in the same folder, fsync'd and renamed into place.
    """
    path = Path(path)
    kind = require_format(path).name
    stack = _as_stack(frames)
    if kind == "eer":
        raise MovieFormatError("writing EER movies is not supported", path=path, fix="write the movie as MRC or TIFF")
    if pixel_size_a is not None and not (pixel_size_a > 0):
        raise ValueError(f"pixel_size_a must be positive, got {pixel_size_a}")
    if kind == "mrc":
        _write_mrc_movie(path, stack, mrc_mode=mrc_mode, pixel_size_a=pixel_size_a)
    else:
        _write_tiff_movie(path, stack, tiff_compression=tiff_compression, pixel_size_a=pixel_size_a)


def write_image_mrc(path: str | os.PathLike, image, *, pixel_size_a: float, label: str = "framewatch") -> None:
    """Write a float32 image ``(ny, nx)`` or image stack ``(n, ny, nx)`` as an MRC file (mode 2).

    The header carries ``pixel_size_a`` and correct statistics, so the file passes
    ``mrcfile.validate``. It is written to a temporary file in the same folder, fsync'd and renamed
    over ``path`` (readers never see a partial file). Without mrcfile's copies of the image
    (:mod:`framewatch.core.movie_io.mrc_image`).
    """
    if not (pixel_size_a > 0):
        raise ValueError(f"pixel_size_a must be positive, got {pixel_size_a}")
    write_float32_mrc(path, np.asarray(image), pixel_size_a=pixel_size_a, label=label)
