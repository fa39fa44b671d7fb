"""Following a TIFF-structured movie while it is written: the page chain both TIFF and EER follow
(:class:`PageChain`), tifffile pages read at known directory offsets (:func:`pages_at`), and the
TIFF part of :class:`~framewatch.core.movie_io.growing.GrowingMovie` (:class:`TiffFollower`).

A page is readable when the directory walk of the probe (:func:`~framewatch.core.movie_io.tiff_ifd.walk_ifds`)
reaches it and finds its directory entry and strips inside the file. The walk is repeated at each poll
(a few kB read); the pages already read must come back with the same directory offset, compression
and data extent, else the file was rewritten (:class:`~framewatch.core.errors.MovieChangedError`).
New pages are decoded with tifffile from their directory offsets, so tifffile never walks a chain
that is still being written.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import numpy as np

from ..decode_limits import check_decoded_size, check_tiff_storage
from ..errors import MovieFormatError
from .base import check_finite
from .follower import Follower, changed
from .tiff import check_page_format, decode_page, first_page_format
from .tiff_ifd import IfdChain, TiffPage, walk_ifds

__all__ = ["PageChain", "TiffFollower", "pages_at"]


class PageChain:
    """The page directory of a growing TIFF/EER file, walked again at each poll.

    :meth:`walk` returns the chain and checks that the first ``len(kept)`` pages are those kept by
    :meth:`keep` (the pages already used)."""

    def __init__(self, path: Path, *, extra_tags: tuple[int, ...] = ()) -> None:
        self.path = path
        self._extra_tags = extra_tags
        self.kept: list[TiffPage] = []

    def walk(self, f: BinaryIO, size: int) -> IfdChain:
        chain = walk_ifds(f, size, extra_tags=self._extra_tags)
        pages = chain.pages
        for index, old in enumerate(self.kept):
            if index >= len(pages):
                raise changed(self.path, f"its page directory lost page {index} after it was read "
                              f"({chain.stop_reason or 'the chain ends earlier'})")
            if pages[index] != old:
                raise changed(self.path, f"its page directory changed at page {index} after it was read")
        return chain

    def keep(self, pages) -> None:
        self.kept.extend(pages)


@contextmanager
def pages_at(f: BinaryIO, path: Path) -> Iterator[Callable[[int, int], object]]:
    """``page(ifd_offset, index)``: the tifffile page whose directory is at ``ifd_offset``, valid
    inside the ``with`` (the file ``f`` stays open after it)."""
    import tifffile

    f.seek(0)
    try:
        tiff = tifffile.TiffFile(f)
    except Exception as err:
        raise MovieFormatError(f"not a readable TIFF file ({err})", path=path,
                               fix="the file is damaged; re-copy it") from err

    def page(ifd_offset: int, index: int):
        tiff.filehandle.seek(ifd_offset)
        try:
            return tifffile.TiffPage(tiff, index=index)
        except Exception as err:
            raise MovieFormatError(f"TIFF page {index} cannot be read ({err})", path=path,
                                   fix="the file is damaged; re-copy it") from err

    try:
        yield page
    finally:
        tiff.close()


class TiffFollower(Follower):
    """A TIFF movie followed as it grows: one page per frame."""

    def __init__(self, path: Path, options) -> None:
        super().__init__(path, options)
        self._chain = PageChain(path)
        self._dtype: np.dtype | None = None

    def poll(self, f: BinaryIO, size: int, max_frames: int | None = None) -> list[np.ndarray]:
        chain = self._chain.walk(f, size)
        return self._decode(f, size, chain.pages, max_frames)

    def rest(self, f: BinaryIO, size: int, n_frames: int) -> list[np.ndarray]:
        chain = self._chain.walk(f, size)
        if chain.stop_reason is not None:
            raise changed(self.path, f"its writer said it is complete with {n_frames} frames, but its page "
                          f"directory is not whole: {chain.stop_reason}")
        if len(chain.pages) != n_frames:
            raise changed(self.path, f"its writer said it is complete with {n_frames} frames, the file holds "
                          f"{len(chain.pages)} pages")
        return self._decode(f, size, chain.pages)

    def _decode(self, f: BinaryIO, size: int, pages: tuple[TiffPage, ...], max_frames: int | None = None
                ) -> list[np.ndarray]:
        """The pages after those already returned (at most ``max_frames``), decoded; the decode limits
        checked on all of ``pages`` first."""
        new = pages[self.frames_returned:]
        if max_frames is not None:
            new = new[:max(0, int(max_frames))]
        if not new:
            return []
        frames = []
        with pages_at(f, self.path) as page_at:
            if self.shape is None:
                self.shape, self._dtype = first_page_format(page_at(pages[0].ifd_offset, 0), self.path)
            limits = self.options.limits
            check_decoded_size(path=self.path, frame_shape=self.shape, n_frames=len(pages),
                               itemsize=self._dtype.itemsize, limits=limits)
            check_tiff_storage(path=self.path, page_decoded_bytes=[int(np.prod(self.shape)) * self._dtype.itemsize]
                               * len(pages), page_compressions=[p.compression for p in pages], file_bytes=size,
                               limits=limits)
            for index, entry in enumerate(new, start=self.frames_returned):
                page = page_at(entry.ifd_offset, index)
                check_page_format(page, index, self.shape, self._dtype, self.path)
                frame = decode_page(page, index, self.shape, self._dtype, self.path)
                if self.options.check_values:
                    check_finite(frame, index, self.path)
                frames.append(frame)
        self._chain.keep(new)
        self.frames_returned += len(frames)
        return frames
