"""Per-tilt images: one single-section MRC per tilt, with its even and odd halves, the layout
RELION 5's MotionCorr job writes and its later tomography jobs read one by one::

    OUT/SERIES/tilts/<movie stem, dots -> underscores>.mrc, ..._EVN.mrc, ..._ODD.mrc

Characters other than letters, digits, ``_``, ``+`` and ``-`` in the stem also become ``_``, so the
names are safe in the shell scripts and symlinks RELION makes from them. Each file is written
atomically (core/atomic_write.py): a reader never sees half an image. The header is the MRC2014
header of the growing stacks (mode 2, pixel size in the cell), one section.
"""
from __future__ import annotations

import re
from pathlib import Path

from framewatch.core.atomic_write import remove_leftovers
from framewatch.core.movie_io.mrc_image import mrc_image_parts
from framewatch.daemon.outputs.no_follow import atomic_write_bytes, ensure_real_dir
from framewatch.daemon.outputs.stack import read_section
from framewatch.daemon.state.output_names import fit_name, movie_stem

TILTS_DIR = "tilts"
SUFFIXES = ("", "_EVN", "_ODD")
_UNSAFE = re.compile(r"[^A-Za-z0-9_+-]")


def tilt_image_stem(movie: str | Path) -> str:
    """``TS_01_003_-6.0.tif`` -> ``TS_01_003_-6_0`` (RELION MotionCorr's naming, shell-safe)."""
    # short enough for ".STEM_EVN.mrc.tmp" within a file system's 255-byte names (output_names.py)
    return fit_name(_UNSAFE.sub("_", movie_stem(movie)) or "tilt", max_bytes=MAX_STEM_BYTES)


MAX_STEM_BYTES = 200


def tilt_image_paths(series_dir: str | Path, movie: str | Path) -> tuple[Path, Path, Path]:
    """(dose-weighted, even, odd) image paths of one movie."""
    d = Path(series_dir) / TILTS_DIR
    stem = tilt_image_stem(movie)
    return tuple(d / f"{stem}{s}.mrc" for s in SUFFIXES)  # type: ignore[return-value]


def write_tilt_images(series_dir: str | Path, movie: str | Path, images, *, pixel_size_a: float) -> tuple[Path, Path, Path]:
    """Write the dose-weighted, even and odd images ``(ny, nx)`` of one movie atomically."""
    paths = tilt_image_paths(series_dir, movie)
    ensure_real_dir(series_dir, paths[0].parent)  # never through a link planted in OUT (no_follow.py)
    label = f"framewatch: {Path(movie).name}"
    for path, image in zip(paths, images):
        atomic_write_bytes(path, mrc_image_parts(image, pixel_size_a=pixel_size_a, label=label))
    return paths


def restore_tilt_images(series_dir: str | Path, movie: str | Path, stacks, z: int, *,
                        pixel_size_a: float) -> tuple[Path, Path, Path]:
    """Write a done movie's per-tilt images again, durably, from section ``z`` of its series'
    dose-weighted, even and odd ``stacks`` (the images are copies of those sections)."""
    return write_tilt_images(series_dir, movie, [read_section(p, z) for p in stacks], pixel_size_a=pixel_size_a)


def remove_tilt_images(series_dir: str | Path, movie: str | Path) -> None:
    for p in tilt_image_paths(series_dir, movie):
        p.unlink(missing_ok=True)


def tidy_tilt_images(series_dir: str | Path, movies) -> list[Path]:
    """At start-up: remove the temporaries a crash left and images of movies not in ``movies``
    (the done movies of the series: one that failed after its images were written leaves none)."""
    d = Path(series_dir) / TILTS_DIR
    if not d.is_dir():
        return []
    removed = remove_leftovers(d)
    keep = {p.name for m in movies for p in tilt_image_paths(series_dir, m)}
    for p in d.iterdir():
        if p.is_file() and not p.name.startswith(".") and p.suffix == ".mrc" and p.name not in keep:
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
