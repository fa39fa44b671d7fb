"""The smallest frame the engine aligns, and the check that refuses smaller ones with a reason.

Any frame size from :data:`MIN_FRAME_SIDE_PX` up is corrected: odd and prime sides (251 x 257,
mode-101 odd widths) are transformed at their own size, and the Fourier-cropped alignment copy is
rounded to an even size no larger than the frame (:func:`framewatch.core.fourier.crop_shape`), so
outputs keep the movie's size. Below it, cross-correlation has too few pixels to find a peak: on
simulated movies with 2.5 px jumps and 0.4 px/frame drift the shift error (RMSE over frames, four
seeds) was 2.5-7.6 px at 32 x 33 px and 0.26-0.41 px at 48 x 49 px.
"""
from __future__ import annotations

from pathlib import Path

from .errors import MovieContentError

MIN_FRAME_SIDE_PX = 48


def require_alignable_shape(shape: tuple[int, int], *, path: str | Path | None) -> None:
    """Raise :class:`MovieContentError` when a ``(ny, nx)`` frame is too small to align."""
    ny, nx = (int(v) for v in shape)
    if min(ny, nx) < MIN_FRAME_SIDE_PX:
        raise MovieContentError(
            f"frames of {nx} x {ny} px are too small to align (framewatch needs at least "
            f"{MIN_FRAME_SIDE_PX} x {MIN_FRAME_SIDE_PX} px)",
            path=path if path is not None else "movie",
            fix="this is not a detector movie, or it was cropped; exclude it",
        )
