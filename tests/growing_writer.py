"""Writing a movie file on disk frame by frame, as a detector does, for the growing-file tests.

A finished movie's bytes (written by framewatch's writer, tifffile or the EER encoder) are cut into
*steps* ``(offset, bytes)`` in the order a writer produces them, and :class:`GrowingWriter` applies
them in a background thread with a flush and a short sleep after each:

- MRC with the final ``nz`` in the header from the start (SerialEM), or with ``nz = 0`` raised after
  each frame (and the header's statistics written at the end);
- TIFF and EER: each page's bytes (directory, tag values, strips) with every "next directory"
  pointer zeroed, and the pointer to page ``k`` written only after page ``k`` is whole (as libtiff
  links a directory after writing it).

Every frame (page) is written in two halves with a pause between, so readers see partial frames.
"""
from __future__ import annotations

import io
import os
import struct
import threading
import time
from pathlib import Path

import numpy as np

from framewatch.core.movie_io import write_movie
from framewatch.core.movie_io.mrc_header import MRC_HEADER_BYTES
from framewatch.core.movie_io.tiff_ifd import walk_ifds

Steps = list[tuple[int, bytes]]


def halves(offset: int, data: bytes) -> Steps:
    """``data`` at ``offset`` as two writes."""
    half = len(data) // 2
    return [(offset, data[:half]), (offset + half, data[half:])]


def mrc_steps(final: bytes, n_frames: int, *, nz_growing: bool) -> Steps:
    """The writes of an MRC movie ``final`` of ``n_frames`` frames (see the module docstring)."""
    nsymbt = struct.unpack_from("<i", final, 92)[0]
    start = MRC_HEADER_BYTES + nsymbt
    frame_bytes = (len(final) - start) // n_frames
    header = bytearray(final[:start])
    if nz_growing:
        struct.pack_into("<i", header, 8, 0)
        header[76:88] = bytes(12)  # dmin, dmax, dmean: written at the end
    steps: Steps = [(0, bytes(header))]
    for k in range(n_frames):
        steps += halves(start + k * frame_bytes, final[start + k * frame_bytes: start + (k + 1) * frame_bytes])
        if nz_growing:
            steps.append((8, struct.pack("<i", k + 1)))
    if nz_growing:
        steps.append((0, final[:MRC_HEADER_BYTES]))
    return steps


def page_steps(final: bytes) -> Steps:
    """The writes of a TIFF or EER file ``final``, page by page, each page linked once it is whole."""
    big = final[2:4] in (b"+\x00", b"\x00+")
    order = "<" if final[:2] == b"II" else ">"
    count_code, entry_bytes, pointer_bytes = ("Q", 20, 8) if big else ("H", 12, 4)
    chain = walk_ifds(io.BytesIO(final), len(final))
    assert chain.stop_reason is None, chain.stop_reason
    pointers = [8 if big else 4]  # pointers[k] links page k; pointers[k + 1] is page k's "next" field
    cuts = []
    for page in chain.pages:
        n_entries = struct.unpack_from(order + count_code, final, page.ifd_offset)[0]
        next_field = page.ifd_offset + struct.calcsize(count_code) + n_entries * entry_bytes
        pointers.append(next_field)
        cuts.append(max(next_field + pointer_bytes, page.data_end))
    zeroed = bytearray(final)
    for at in pointers:
        zeroed[at: at + pointer_bytes] = bytes(pointer_bytes)
    steps: Steps = []
    written = 0
    for k, cut in enumerate(cuts):
        assert cut > written and chain.pages[k].ifd_offset >= written, "pages are not laid out one after another"
        steps += halves(written, bytes(zeroed[written:cut]))
        steps.append((pointers[k], final[pointers[k]: pointers[k] + pointer_bytes]))
        written = cut
    if written < len(final):
        steps.append((written, bytes(zeroed[written:])))
    return steps


def movie_bytes(tmp: Path, frames: np.ndarray, suffix: str, **kw) -> bytes:
    """The bytes framewatch's writer gives ``frames`` as ``suffix`` (``.mrc``, ``.tif``)."""
    path = tmp / f"whole{suffix}"
    write_movie(path, frames, **kw)
    data = path.read_bytes()
    path.unlink()
    return data


class GrowingWriter(threading.Thread):
    """Applies ``steps`` to ``path`` (created empty) with a flush and ``pause_s`` after each.

    ``hooks``: ``{step index: callable(path)}`` run (after a pause of ``hook_pause_s``) before that
    step, e.g. to truncate or replace the file; ``stop_at``: stop before that step (the file stays
    incomplete). ``done`` is set when every step is written; ``error`` holds what the thread raised.
    """

    def __init__(self, path: Path, steps: Steps, *, pause_s: float = 0.004, hooks=None, stop_at: int | None = None,
                 hook_pause_s: float = 0.3) -> None:
        super().__init__(daemon=True)
        self.path = Path(path)
        self.steps = steps
        self.pause_s = pause_s
        self.hooks = hooks or {}
        self.stop_at = len(steps) if stop_at is None else stop_at
        self.hook_pause_s = hook_pause_s
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.path.write_bytes(b"")

    def run(self) -> None:
        try:
            f = open(self.path, "r+b")
            try:
                for index, (offset, data) in enumerate(self.steps[: self.stop_at]):
                    if index in self.hooks:
                        time.sleep(self.hook_pause_s)
                        f.close()
                        self.hooks[index](self.path)
                        f = open(self.path, "r+b")
                    f.seek(offset)
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno()) if index == 0 else None
                    time.sleep(self.pause_s)
            finally:
                f.close()
            if self.stop_at >= len(self.steps):
                self.done.set()
        except BaseException as err:  # pragma: no cover - reported by the test
            self.error = err


class WriterControl:
    """A stream control: ``end()`` gives ``n_frames`` once the writer is done; ``cancel_after_s``
    makes ``cancelled()`` true that long after the first call."""

    def __init__(self, writer: GrowingWriter, n_frames: int, *, cancel_after_s: float | None = None) -> None:
        self.writer = writer
        self.n_frames = n_frames
        self.cancel_after_s = cancel_after_s
        self._started: float | None = None

    def end(self) -> int | None:
        return self.n_frames if self.writer.done.is_set() else None

    def cancelled(self) -> bool:
        if self._started is None:
            self._started = time.monotonic()
        return self.cancel_after_s is not None and time.monotonic() - self._started > self.cancel_after_s
