"""A growing MRC image stack (mode 2, float32) that a reader always finds valid.

Appending one section:

1. the stack is renamed to a hidden working name ``.NAME.appending`` in the same directory, so the
   visible name never shows a half-written file; after a short grace period (20 ms), so that a
   reader that opened it just before has read its header and size, the file is changed;
2. the section's data is written at the end of the data block, flushed and ``fsync``'d (straight
   to the disk when it can be: :func:`write_at`);
3. the header is rewritten with the new ``nz`` and statistics (``dmin``, ``dmax``, ``dmean``,
   ``rms`` kept exact enough for ``mrcfile.validate``), flushed and ``fsync``'d (steps 2 and 3 run
   for the stacks of one tilt in threads of their own, side by side);
4. the file is renamed back and the directory ``fsync``'d.

The first section creates the file under ``.NAME.tmp`` and renames it into place. The header is
the MRC2014 header mrcfile writes for an image stack (``ispg = 0``, ``mz = 1``, pixel size in
``cella / mx``), so IMOD's ``header`` shows the pixel size.

:func:`repair` brings a stack back to the number of sections the journal knows: it finds the file
under either name, drops a torn tail (data written, header not yet grown) or sections the journal
never recorded, recomputes the statistics when sections were dropped, and renames it back. A stack
it must change at its visible name is first renamed to the working name (after the same grace
period), so a reader never sees a header that declares sections the file does not hold.
"""
from __future__ import annotations

import errno
import fcntl
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from mrcfile.dtypes import HEADER_DTYPE

from framewatch.core.atomic_write import atomic_path, fsync_dir
from framewatch.core.movie_io.mrc_image import HEADER_BYTES, MODE_FLOAT32, Stats, make_header, set_header_stats
from framewatch.daemon.outputs.no_follow import open_file
from framewatch.daemon.state import faults

_DTYPE = np.dtype("<f4")
# after a stack is renamed to its working name and before it is changed: a reader that opened it
# just before has read its header and size by then
READER_GRACE_S = 0.02
# O_DIRECT asks the buffer's address, the offset and the length to be multiples of the device's
# logical block (512 bytes on most disks, 4096 on some): tried when they are multiples of 512, and
# a device that wants more refuses the first write (EINVAL), which then goes through the page cache
DIRECT_ALIGN = 512


def hidden_name(path: Path, suffix: str) -> Path:
    return path.with_name(f".{path.name}.{suffix}")


def read_header(f) -> np.ndarray:
    f.seek(0)
    raw = f.read(HEADER_BYTES)
    if len(raw) < HEADER_BYTES:
        raise ValueError("file is shorter than an MRC header")
    h = np.frombuffer(raw, dtype=HEADER_DTYPE).copy().reshape(())
    if bytes(h["map"]) != b"MAP ":
        raise ValueError("not an MRC file (no 'MAP ' id)")
    if int(h["mode"]) != MODE_FLOAT32:
        raise ValueError(f"stack mode {int(h['mode'])} is not 2 (float32)")
    return h


def _write_header(f, h) -> None:
    f.seek(0)
    f.write(h.tobytes())


def write_stack(path: str | Path, sections: Iterable[np.ndarray], *, pixel_size_a: float, label: str = "framewatch",
                publish: bool = True) -> int:
    """Write a whole stack atomically (``.NAME.tmp`` + fsync + rename); returns the number of sections.

    Sections are streamed one at a time, so memory holds one section. ``publish=False`` writes
    ``path`` itself (a working name already hidden from readers).
    """
    path = Path(path)
    if publish:  # the one atomic writer (core/atomic_write.py): .NAME.tmp, fsync, rename, fsync of the directory
        with atomic_path(path) as tmp:
            return _write_stack_file(tmp, sections, pixel_size_a, label)
    try:
        return _write_stack_file(path, sections, pixel_size_a, label)
    except BaseException:
        path.unlink(missing_ok=True)  # e.g. the disk is full: leave nothing half-written behind
        raise


def _write_stack_file(tmp: Path, sections, pixel_size_a: float, label: str) -> int:
    stats = Stats()
    nz = 0
    shape = None
    with open_file(tmp, "wb") as f:
        f.write(b"\0" * HEADER_BYTES)
        for sec in sections:
            a = np.ascontiguousarray(sec, dtype=_DTYPE)
            if shape is None:
                shape = a.shape
            elif a.shape != shape:
                raise ValueError(f"section shape {a.shape} differs from {shape}")
            f.write(memoryview(a).cast("B"))
            stats.add(a)
            nz += 1
        if shape is None:
            raise ValueError("a stack needs at least one section")
        h = make_header(nx=shape[1], ny=shape[0], nz=nz, pixel_size_a=pixel_size_a, stats=stats, label=label)
        f.flush()
        os.fsync(f.fileno())
        _write_header(f, h)
        f.flush()
        os.fsync(f.fileno())
    return nz


def append_section(path: str | Path, image: np.ndarray, *, pixel_size_a: float, label: str = "framewatch",
                   grace_s: float = 0.0) -> int:
    """Append one (ny, nx) section; returns its 0-based z. Crash-safe as the module describes."""
    return append_sections([(Path(path), image)], pixel_size_a=pixel_size_a, label=label, grace_s=grace_s)[0]


def append_sections(items, *, pixel_size_a: float, label: str = "framewatch", grace_s: float = READER_GRACE_S,
                    between=None) -> list[int]:
    """Append one section to each of several stacks (the dose-weighted, even and odd stacks of a tilt).

    All stacks are first renamed to their working names, then -- after ``grace_s``, so that a
    reader that opened a stack just before has read its header and size -- each gets its data
    (fsync) and then its header (fsync), each stack in a thread of its own, and all are renamed back.
    ``between(i)`` is called after stack ``i`` is complete (for crash tests; the later stacks may be
    mid-write then). Returns the z of each new section.
    """
    prepared = []
    for path, image in items:
        path = Path(path)
        a = np.ascontiguousarray(image, dtype=_DTYPE)
        if a.ndim != 2:
            raise ValueError(f"a section must be 2-D, got shape {a.shape}")
        prepared.append((path, a))
    work_of = {path: hidden_name(path, "appending") for path, _ in prepared}
    # check shapes before touching anything
    for path, a in prepared:
        src = path if path.exists() else work_of[path] if work_of[path].exists() else None
        if src is not None:
            with open_file(src, "rb") as f:  # a link planted at a stack is refused here, before anything moves
                h = read_header(f)
            if (int(h["ny"]), int(h["nx"])) != a.shape:
                raise ValueError(f"section shape {a.shape} differs from the stack's {(int(h['ny']), int(h['nx']))} in {path}")
    moved = []
    for path, _ in prepared:
        if path.exists():
            os.replace(path, work_of[path])
            moved.append(path)
    if moved and grace_s > 0:
        time.sleep(grace_s)

    def append_one(path: Path, a: np.ndarray) -> int:
        work = work_of[path]
        if not work.exists():
            write_stack(work, [a], pixel_size_a=pixel_size_a, label=label, publish=False)
            return 0
        return _append_in_place(work, a)

    # one thread per stack: the page-cache writes, the statistics kernel (no GIL) and the fsyncs of
    # the three 64 MiB sections of a 4096² tilt overlap (0.9 -> 0.3-0.5 s here)
    with ThreadPoolExecutor(max_workers=len(prepared), thread_name_prefix="framewatch-append") as pool:
        futures = [pool.submit(append_one, path, a) for path, a in prepared]
        zs = []
        for i, future in enumerate(futures):
            zs.append(future.result())  # an error leaves the with-block once every thread has stopped
            if between is not None:
                between(i)
    for path, _ in prepared:
        os.replace(work_of[path], path)
    for d in {path.parent for path, _ in prepared}:
        fsync_dir(d)
    return zs


def _append_in_place(work: Path, a: np.ndarray) -> int:
    with open_file(work, "r+b") as f:
        h = read_header(f)
        nx, ny, nz = int(h["nx"]), int(h["ny"]), int(h["nz"])
        offset = HEADER_BYTES + int(h["nsymbt"])
        section_bytes = nx * ny * _DTYPE.itemsize
        end = offset + nz * section_bytes
        f.truncate(end)  # drop a torn tail from an earlier crash
        write_at(f, end, a)
        os.fsync(f.fileno())
        faults.checkpoint("append_data_written")
        stats = Stats.from_header(h, nz * nx * ny)
        stats.add(a)
        h["nz"] = nz + 1
        set_header_stats(h, stats)
        _write_header(f, h)
        f.flush()
        os.fsync(f.fileno())
    return nz


def write_at(f, offset: int, a: np.ndarray) -> bool:
    """Write the array ``a`` at ``offset`` of the open file ``f`` (flushed); True when it went
    straight to the disk (``O_DIRECT``), False when through the page cache.

    Straight to the disk when the file system takes ``O_DIRECT`` and the array's address, the offset
    and the length are aligned (:data:`DIRECT_ALIGN`; a section handed over from a local worker is a
    page-aligned mapping). It skips the copy into the page cache, whose fresh pages are what the
    write costs on a VM that hands freed memory back to its host (a 4096² tilt's three sections in
    their threads: 0.24-0.41 s through the cache, 0.11-0.14 s direct, here). The ``fsync`` that
    follows is still needed (the disk's own cache). Anything refused on the way (a file system
    without ``O_DIRECT``, a device with larger blocks) writes the rest through the page cache."""
    a = np.ascontiguousarray(a)
    data = memoryview(a).cast("B")  # no 64 MiB copy (tobytes) at 4096²
    f.flush()
    aligned = a.ctypes.data % DIRECT_ALIGN == 0 and offset % DIRECT_ALIGN == 0 and data.nbytes % DIRECT_ALIGN == 0
    done = _write_direct(f.fileno(), data, offset) if aligned else 0
    if done < data.nbytes:
        f.seek(offset + done)
        f.write(data[done:])
        f.flush()
        return False
    return done > 0


def _write_direct(fd: int, data: memoryview, offset: int) -> int:
    """Write ``data`` (aligned) at ``offset`` with ``O_DIRECT`` set on ``fd`` for the while; returns
    the bytes written: 0 when the file system or device refuses, fewer when a write came back short
    of a whole block (the caller writes the rest through the page cache)."""
    direct = getattr(os, "O_DIRECT", 0)  # Linux
    if not direct:
        return 0
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | direct)
    except OSError:  # e.g. some network or FUSE file systems
        return 0
    done = 0
    try:
        while done < data.nbytes and done % DIRECT_ALIGN == 0:
            done += os.pwrite(fd, data[done:], offset + done)
    except OSError as err:
        if err.errno != errno.EINVAL:  # a device with larger blocks refuses with EINVAL
            raise
    finally:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags)
    return done


@dataclass(frozen=True)
class StackState:
    path: Path
    exists: bool
    n_sections: int  # complete sections the header declares and the file holds
    header_nz: int
    extra_bytes: int  # bytes beyond the header's sections (a torn append)
    under_work_name: bool


def inspect_stack(path: str | Path) -> StackState:
    path = Path(path)
    work = hidden_name(path, "appending")
    src = work if work.exists() else path
    if not src.exists():
        return StackState(path, False, 0, 0, 0, False)
    with open_file(src, "rb") as f:
        try:
            h = read_header(f)
        except ValueError:
            return StackState(path, True, 0, 0, os.fstat(f.fileno()).st_size, src == work)
        size = os.fstat(f.fileno()).st_size
    nx, ny, nz = int(h["nx"]), int(h["ny"]), int(h["nz"])
    offset = HEADER_BYTES + int(h["nsymbt"])
    sb = nx * ny * _DTYPE.itemsize
    present = max(0, (size - offset) // sb) if sb else 0
    n = min(nz, present)
    return StackState(path, True, n, nz, size - offset - n * sb, src == work)


def read_section(path: str | Path, z: int) -> np.ndarray:
    with open(path, "rb") as f:
        h = read_header(f)
        nx, ny = int(h["nx"]), int(h["ny"])
        f.seek(HEADER_BYTES + int(h["nsymbt"]) + z * nx * ny * 4)
        buf = f.read(nx * ny * 4)
    if len(buf) < nx * ny * 4:
        raise ValueError(f"{path}: section {z} is not in the file")
    return np.frombuffer(buf, dtype=_DTYPE).reshape(ny, nx).copy()


def iter_sections(path: str | Path, order: Iterable[int]):
    for z in order:
        yield read_section(path, z)


def repair(path: str | Path, n_expected: int) -> tuple[int, str]:
    """Bring the stack to ``n_expected`` sections (the journal's count) where the file allows.

    Returns ``(n_sections_now, what_was_done)``; ``n_sections_now < n_expected`` means sections
    the journal counted are missing from the file (the caller must redo them). Stale ``.tmp``
    files are removed; a file under the working name is renamed back.
    """
    path = Path(path)
    tmp = hidden_name(path, "tmp")
    if tmp.exists():
        tmp.unlink()
    work = hidden_name(path, "appending")
    if work.exists() and path.exists():
        # cannot happen with renames, but never lose the visible one
        work.unlink()
    st = inspect_stack(path)
    if not st.exists:
        return 0, "missing" if n_expected else "ok"
    src = work if st.under_work_name else path
    actions = []
    if st.under_work_name:
        actions.append("renamed back from the working name")
    n_keep = min(n_expected, st.n_sections)
    if src == path and 0 < n_keep and (st.header_nz != n_keep or st.extra_bytes):  # it will be changed
        # truncated and given a new header under the working name, as an append is: a reader never
        # finds a header whose sections are not (yet, or any more) in the file
        os.replace(path, work)
        src = work
        time.sleep(READER_GRACE_S)
    if n_keep == 0:
        src.unlink()
        fsync_dir(path.parent)
        return 0, "removed (no section the journal knows)" if st.n_sections or st.extra_bytes else "removed empty file"
    with open_file(src, "r+b") as f:
        h = read_header(f)
        nx, ny, nz = int(h["nx"]), int(h["ny"]), int(h["nz"])
        offset = HEADER_BYTES + int(h["nsymbt"])
        sb = nx * ny * 4
        end = offset + n_keep * sb
        size = os.fstat(f.fileno()).st_size
        if size != end:
            f.truncate(end)
            actions.append(f"truncated {size - end} bytes")
        if nz != n_keep:
            stats = Stats()
            for z in range(n_keep):
                f.seek(offset + z * sb)
                stats.add(np.frombuffer(f.read(sb), dtype=_DTYPE))
            h["nz"] = n_keep
            set_header_stats(h, stats)
            _write_header(f, h)
            actions.append(f"nz {nz} -> {n_keep}, statistics recomputed")
        f.flush()
        os.fsync(f.fileno())
    if src != path:
        os.replace(src, path)
    fsync_dir(path.parent)
    return n_keep, "; ".join(actions) or "ok"
