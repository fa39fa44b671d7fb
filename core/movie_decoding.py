"""Decode every frame of an open movie, with a second reader on the same file decoding alongside,
and add the frames to the movie's sum in order as they arrive.

Decoding a compressed TIFF page (LZW, deflate) is single-threaded and releases the GIL, so two
readers (two file handles) decoding alternate frames take about half the time on two cores. The
calling thread meanwhile adds each frame, in frame order, to the float32 sum the defect detection
needs (:func:`framewatch.core.frame_arithmetic.sum_frames` gives the same array). An error is
raised for the first frame (in frame order) that failed, as a sequential read would.

Formats whose frames are a copy from the file (MRC) or already decode in parallel (EER) are read
by the one reader.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .frame_arithmetic import add_frame
from .movie_io.base import MovieReader

__all__ = ["DecodedFrames", "decode_frames"]

PARALLEL_FORMATS = ("tiff",)


@dataclass(frozen=True)
class DecodedFrames:
    """``frames``: the ``(ny, nx)`` frames in their native dtype; ``total``: float32 ``(ny, nx)`` sum."""

    frames: list
    total: np.ndarray


def decode_frames(reader: MovieReader, *, open_again: Callable[[], MovieReader], threads: int) -> DecodedFrames:
    """Every frame of ``reader`` and their sum. ``open_again()`` opens a second reader on the same
    file (used when ``threads >= 2`` and the format decodes in one thread; closed here)."""
    n = reader.n_frames
    total = np.zeros(tuple(reader.shape), dtype=np.float32)
    if threads < 2 or n < 2 or reader.format not in PARALLEL_FORMATS:
        frames = []
        for i in range(n):
            frames.append(reader.read_frame(i))
            add_frame(total, frames[i])
        return DecodedFrames(frames, total)
    frames: list = [None] * n
    errors: list = [None] * n
    ready = [threading.Event() for _ in range(n)]
    stop = threading.Event()

    def work(first: int, make_reader: Callable[[], MovieReader] | None) -> None:
        i = first
        try:
            other = make_reader() if make_reader is not None else None
            try:
                for i in range(first, n, 2):
                    if stop.is_set():
                        break
                    frames[i] = (other or reader).read_frame(i)
                    ready[i].set()
            finally:
                if other is not None:
                    other.close()
        except BaseException as err:  # handed to the caller at this frame's turn
            errors[i] = err
        finally:
            for j in range(first, n, 2):
                ready[j].set()

    workers = [threading.Thread(target=work, args=(k, open_again if k else None), name=f"framewatch-decode-{k}",
                                daemon=True) for k in (0, 1)]
    for worker in workers:
        worker.start()
    try:
        for i in range(n):
            ready[i].wait()
            if errors[i] is not None:
                raise errors[i]
            add_frame(total, frames[i])
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    return DecodedFrames(frames, total)
