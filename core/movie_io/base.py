"""What every movie reader shares: :class:`MovieReader` (frame count, shape, dtype, one frame at a
time), :class:`ReadOptions` (what :func:`~framewatch.core.movie_io.open_movie` passes to a format's
opener) and :func:`tiff_pages`. The format modules (``mrc.py``, ``tiff.py``, ``eer.py``) build on
it, so none of them imports another at load time.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..decode_limits import DecodeLimits
from ..errors import MovieFormatError


@dataclass(frozen=True, kw_only=True)
class ReadOptions:
    """How to open a movie; the ``eer_*`` fields are read by the EER opener only.

    See :func:`framewatch.core.movie_io.open_movie` for each field.
    """

    check_values: bool = True
    limits: DecodeLimits | None = None
    eer_fraction_dose_e_per_a2: float | None = None
    eer_group_frames: int | None = None
    eer_upsampling: int = 1
    eer_total_dose_e_per_a2: float | None = None


class MovieReader:
    """An open movie: frame count, frame shape and dtype, and one-frame-at-a-time access.

    Made by :func:`open_movie`; use it as a context manager or call :meth:`close`.

    Attributes:
        path: the movie file.
        n_frames: number of frames.
        shape: ``(ny, nx)`` of one frame.
        dtype: native numpy dtype of decoded frames.
        pixel_size_a: pixel size in Angstrom from the file's header, or ``None``.
        format: ``"mrc"``, ``"tiff"`` or ``"eer"``.
    """

    path: Path
    n_frames: int
    shape: tuple[int, int]
    dtype: np.dtype
    pixel_size_a: float | None
    format: str

    def __init__(self, path: Path, *, check_values: bool, limits: DecodeLimits | None = None) -> None:
        self.path = path
        self._check_values = check_values
        self._limits = DecodeLimits() if limits is None else limits
        self._closed = False

    # subclasses implement _read_raw(index) -> (ny, nx) native, C-contiguous, orientation applied
    def _read_raw(self, index: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _close(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def read_frame(self, index: int) -> np.ndarray:
        """Frame ``index`` (0-based; negative counts from the end) as ``(ny, nx)`` native dtype.

        The array is C-contiguous and writable, with the TIFF Y flip applied. With
        ``check_values`` a float frame holding NaN or Inf raises :class:`MovieFormatError`.
        """
        if self._closed:
            raise ValueError(f"{self.path}: movie reader is closed")
        index = int(index)
        if index < 0:
            index += self.n_frames
        if not 0 <= index < self.n_frames:
            raise IndexError(f"{self.path}: frame {index} out of range (the movie has {self.n_frames} frames)")
        frame = self._read_raw(index)
        if self._check_values:
            check_finite(frame, index, self.path)
        return frame

    def __iter__(self) -> Iterator[np.ndarray]:
        for index in range(self.n_frames):
            yield self.read_frame(index)

    def __len__(self) -> int:
        return self.n_frames

    def close(self) -> None:
        """Release the file; further reads raise ``ValueError``. Safe to call twice."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> "MovieReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.path)!r}, n_frames={self.n_frames}, shape={self.shape}, "
            f"dtype={self.dtype}, pixel_size_a={self.pixel_size_a})"
        )


def check_finite(frame: np.ndarray, index: int, path: Path) -> None:
    """Raise :class:`MovieFormatError` when the float frame ``index`` holds NaN or Inf."""
    if frame.dtype.kind == "f" and not _all_finite(frame):
        raise MovieFormatError(
            f"frame {index} contains NaN or Inf values",
            path=path,
            fix="the file is damaged or was written with invalid values; re-export or exclude the movie",
        )


def _all_finite(frame: np.ndarray) -> bool:
    """True when no element is NaN or Inf: one float64 sum, the full test only if the sum is not finite."""
    if np.isfinite(np.add.reduce(frame, axis=None, dtype=np.float64)):
        return True
    return bool(np.isfinite(frame).all())


def tiff_pages(tiff, path: Path) -> list:
    """All pages of an open ``tifffile.TiffFile``; a damaged page directory is a MovieFormatError."""
    try:
        return list(tiff.pages)
    except Exception as err:
        raise MovieFormatError(
            f"cannot read the TIFF page directory ({err})", path=path, fix="the file is damaged or incomplete; re-copy it"
        ) from err
