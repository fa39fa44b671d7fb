"""Opening a file found under the watch root without ever blocking, and without leaving the root.

Anything can sit in a microscope share: a FIFO named like an mdoc (``open()`` would wait for a
writer forever), a socket, a device node, a symbolic link to ``/dev/zero`` or to a file anywhere on
the machine. Every mdoc and movie the daemon's own process opens goes through :func:`open_regular`:

1. the real path (symbolic links resolved) must be inside the watch root;
2. ``stat`` must say a regular file (a FIFO, socket or device is never opened at all);
3. the file is opened read-only with ``O_NONBLOCK`` (so even a FIFO swapped in after step 2
   cannot block), and ``fstat`` of the open descriptor must again be a regular file, the same one
   (device and inode) that step 1 resolved to;
4. :func:`read_regular` reads at most ``max_bytes``.

Each refusal raises :class:`RefusedFile` (an ``OSError``) naming the file and why.
"""
from __future__ import annotations

import os
import stat as _stat

from framewatch.daemon.state.name_escape import shown


class RefusedFile(OSError):
    """A path the daemon will not read: not a regular file, outside the watch root, or too large."""


def _kind(mode: int) -> str:
    kinds = ((_stat.S_ISFIFO, "a FIFO (named pipe)"), (_stat.S_ISSOCK, "a socket"), (_stat.S_ISCHR, "a character device"),
             (_stat.S_ISBLK, "a block device"), (_stat.S_ISDIR, "a directory"))
    for test, name in kinds:
        if test(mode):
            return name
    return "not a regular file"


def inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def open_regular(path, *, root: str | os.PathLike | None) -> int:
    """A read-only, non-blocking descriptor of the regular file ``path`` (see the module's steps).
    ``root``: the watch root (already resolved); None skips step 1 (a file named by the user)."""
    p = os.fspath(path)
    real = os.path.realpath(p)
    if root is not None and not inside(real, os.fspath(root)):
        raise RefusedFile(f"{shown(p)} leads outside the watch root (to {shown(real)}): not read")
    st = os.stat(real)
    if not _stat.S_ISREG(st.st_mode):
        raise RefusedFile(f"{shown(p)} is {_kind(st.st_mode)}: only regular files are read")
    fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fst = os.fstat(fd)
        if not _stat.S_ISREG(fst.st_mode) or (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
            raise RefusedFile(f"{shown(p)} was replaced while it was opened: not read")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path, *, root, max_bytes: int, offset: int = 0) -> tuple[bytes, os.stat_result]:
    """The bytes of a regular file from ``offset`` (and its ``fstat``); :class:`RefusedFile` when it
    is larger than ``max_bytes`` (nothing is read then)."""
    fd = open_regular(path, root=root)
    try:
        st = os.fstat(fd)
        if st.st_size > max_bytes:
            raise RefusedFile(f"{shown(path)} is {st.st_size} bytes, more than the limit of {max_bytes} bytes: not read "
                              "(raise [watch] mdoc_max_mb if it is a real mdoc)")
        chunks = []
        want = max(0, st.st_size - offset)
        pos = offset
        while want > 0:
            b = os.pread(fd, min(want, 1 << 20), pos)
            if not b:
                break
            chunks.append(b)
            pos += len(b)
            want -= len(b)
        # a file still growing past its fstat size: what was there when it was opened is enough
        return b"".join(chunks), st
    finally:
        os.close(fd)
