"""Defect lists: MotionCor-style rectangle files read into a bad-pixel mask.

Masks are bool ``(ny, nx)`` in movie pixels (row 0 is the first row of a frame as
:func:`framewatch.core.movie_io.open_movie` returns it, i.e. after the TIFF Y flip, which is the row
order MotionCor2 uses for its defect files). The detection of hot and dead pixels and their
replacement are :mod:`framewatch.core.defects`.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import DefectFileError

__all__ = ["read_defect_file"]


def read_defect_file(path: str | os.PathLike, shape: tuple[int, int]) -> np.ndarray:
    """Read a MotionCor-style defect list into a bool ``shape`` ``(ny, nx)`` mask.

    One rectangle per line: ``x y w h`` (first column, first row, 0-based movie pixels; width and
    height in pixels), separated by spaces, tabs or commas. Blank lines and ``#`` comments are
    ignored. A malformed line or a rectangle reaching outside the frame raises
    :class:`DefectFileError` naming the line.
    """
    path = Path(path)
    ny, nx = (int(v) for v in shape)
    if not path.is_file():
        raise DefectFileError("defect file not found", path=path, fix="check the --defects path")
    mask = np.zeros((ny, nx), dtype=bool)
    text = path.read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0].replace(",", " ").split()
        if not content:
            continue
        if len(content) != 4:
            raise DefectFileError(
                f"line {number}: expected 4 numbers 'x y w h', found {len(content)} fields",
                path=path,
                fix="write one rectangle per line as: first-column first-row width height (0-based pixels)",
            )
        x, y, w, h = (_whole_number(token, number, path) for token in content)
        if w < 1 or h < 1:
            raise DefectFileError(
                f"line {number}: width {w} and height {h} must be at least 1", path=path, fix="fix the rectangle"
            )
        if x < 0 or y < 0 or x + w > nx or y + h > ny:
            raise DefectFileError(
                f"line {number}: rectangle x={x} y={y} w={w} h={h} reaches outside the {nx} x {ny} frame",
                path=path,
                fix="defect coordinates are 0-based movie pixels; check the list was made for this camera mode "
                "(super-resolution vs. counting) and orientation",
            )
        mask[y : y + h, x : x + w] = True
    return mask



def _whole_number(token: str, number: int, path: Path) -> int:
    try:
        return int(token)
    except ValueError:
        pass
    try:
        value = float(token)
    except ValueError:
        raise DefectFileError(
            f"line {number}: {token!r} is not a number", path=path, fix="each line must be four whole numbers 'x y w h'"
        ) from None
    if not value.is_integer():
        raise DefectFileError(
            f"line {number}: {token!r} is not a whole number", path=path, fix="defect coordinates are whole pixels"
        )
    return int(value)
