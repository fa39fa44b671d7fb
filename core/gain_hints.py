"""The gain orientation a movie's header suggests: SerialEM's ``r/f N`` title.

SerialEM's plugin titles every frame stack ``... r/f N`` (``r/f 0 need M`` when frames are saved
unrotated); ``N = k + 4 f`` means: mirror left-right if ``f``, then rotate ``k`` quarter turns
counter-clockwise (the reasoning, with its sources, is in :mod:`framewatch.core.gain_auto`). The hint
only breaks a tie of the data-driven choice.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

from .errors import MovieFormatError
from .gain_orientation_scores import canonical_orientation
from .settings import GainOrientation

__all__ = ["orientation_hint_from_labels", "orientation_hint_from_movie"]

_RF = re.compile(r"\br/f\s*(-?\d+)")


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
