"""Is a movie complete? The first signal that applies decides.

(a) ``frame_mdoc``: SerialEM's per-movie ``MOVIE.mdoc`` / ``MOVIE.tif.mdoc`` exists (SerialEM writes
    it only after the frames are saved) and its ``NumSubFrames`` equals the frames in the file;
(b) format self-check: ``mrc_size`` -- an MRC file's size equals header + extended header + nz
    sections (SerialEM writes the final nz at the first frame, so this is exact);
    ``tiff_expected_pages`` -- a TIFF has the number of pages the tilt-series mdoc's
    ``NumSubFrames`` promises and its last page decodes; ``tiff_pages_stable`` -- without a
    promised count, page count and size unchanged for ``tiff_stable_s`` and the last page decodes.
    EER files are TIFFs with one page per raw frame and no frame count to trust while written, so
    the same TIFF rules apply with "decodes" meaning the last raw frame's electron events decode
    (framewatch's EER decoder) and the frame count being the raw frame (page) count;
(c) ``settled``: size, mtime and ctime unchanged for ``settle_s`` (files of no registered format, and
    of a registered format without a rule here, once its probe says complete).

The structure of a movie (MRC header and size, TIFF/EER page directory) is read by core's probes
through the format registry (:func:`framewatch.core.movie_io.probe_file`); decoding the last TIFF
page or EER raw frame, and the rules above, are the daemon's. A movie a streaming job follows is not
decoded here (``decode_last=False``): the job decodes every frame once, and a page that does not
decode fails there.

A file whose size has been unchanged for ``settle_s`` but whose check still fails (empty, MRC
shorter than its header says, TIFF page that does not decode, frame count different from the mdoc)
is *broken*: the daemon records it failed with the reason. If it changes later it is looked at
again as a new version.

Stability is measured from the daemon's own observations, never from mtime (clocks of a network
share's server need not agree with ours).
"""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from framewatch.core.decode_limits import DecodeLimits, check_decoded_size, check_tiff_storage
from framewatch.core.movie_io import MRC_HEADER_BYTES, FileProgress, format_for, open_movie, probe_file
from framewatch.daemon.intake.mdoc import frame_mdoc_for, read_mdoc
from framewatch.daemon.intake.safe_open import open_regular


@dataclass(frozen=True)
class Probe:
    """What a quick look at a movie file found."""

    fmt: str  # "mrc" | "tiff" | "eer" | "other"
    size: int
    n_frames: int | None = None  # complete frames present
    header_frames: int | None = None  # MRC: nz in the header
    complete_by_format: bool = False  # MRC: size matches the header exactly
    last_page_ok: bool | None = None  # TIFF: the last page decodes
    problem: str | None = None


def movie_format(path: str | Path) -> str:
    """``"mrc"``, ``"tiff"``, ``"eer"`` (core's format registry) or ``"other"``."""
    fmt = format_for(path)
    return "other" if fmt is None else fmt.name


def probe_movie(path: str | Path, *, size: int | None = None, root=None, decode_last: bool = True) -> Probe:
    """A quick look at a movie (regular files under ``root`` only: safe_open.py). The structure
    comes from core's probe (:func:`framewatch.core.movie_io.probe_file`); the last TIFF page or EER
    raw frame is decoded here when the structure is whole, unless ``decode_last`` is False (a
    streaming job follows the movie and decodes every frame itself: one read per movie)."""
    p = Path(path)
    if size is None:
        size = os.stat(p).st_size
    fmt = movie_format(p)
    if fmt == "mrc" and size < MRC_HEADER_BYTES:
        return Probe("mrc", size, problem="empty file" if size == 0 else f"only {size} bytes: shorter than an MRC header")
    if fmt in ("tiff", "eer") and size == 0:
        return Probe(fmt, 0, problem="empty file")
    fd = open_regular(p, root=root)  # never a FIFO or a device, never outside the root
    if fmt == "other":
        os.close(fd)
        return Probe(fmt, size, problem=None if size else "empty file")
    with os.fdopen(fd, "rb") as fh:
        progress = probe_file(p, file=fh)
        if fmt == "mrc":
            return _mrc_probe(progress, size)
        if not progress.complete:
            return Probe(fmt, size, n_frames=progress.frames_readable or None, problem=progress.reason, last_page_ok=False)
        if not decode_last:
            return Probe(fmt, size, n_frames=progress.frames_readable, last_page_ok=True)
        if fmt == "tiff":
            return _last_tiff_page_probe(p, fh, size, progress.frames_readable)
    if fmt == "eer":
        return _last_eer_frame_probe(p, size)
    # another registered format: its probe's word, then the settle time (decide, rule c)
    return Probe(fmt, size, n_frames=progress.frames_readable, last_page_ok=True)


def _mrc_probe(progress: FileProgress, size: int) -> Probe:
    """The MRC self-check from core's probe: complete when the size is exactly the header's nz frames."""
    header_frames = progress.frames_expected
    return Probe("mrc", size, n_frames=None if header_frames is None else progress.frames_readable,
                 header_frames=header_frames, complete_by_format=progress.complete,
                 problem=None if progress.complete else progress.reason)


def _error_problem(err: Exception) -> str:
    return f"{type(err).__name__}: {err}".splitlines()[0][:300]


def _last_tiff_page_probe(path: Path, fh, size: int, n_pages: int) -> Probe:
    """Decode the last of ``n_pages`` pages (after the decode limits allow it)."""
    import tifffile

    try:
        fh.seek(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with tifffile.TiffFile(fh, name=os.path.basename(str(path))) as tif:
                page = tif.pages[n_pages - 1]
                _check_page_limits(path, page, size)  # a decompression bomb is refused, never decoded here
                page.asarray()
    except Exception as err:  # noqa: BLE001 - any decode error means "not (yet) readable"
        return Probe("tiff", size, problem=_error_problem(err), last_page_ok=False)
    return Probe("tiff", size, n_frames=n_pages, last_page_ok=True)


def _last_eer_frame_probe(path: Path, size: int) -> Probe:
    try:
        n = _last_eer_frame_decodes(path)
    except Exception as err:  # noqa: BLE001 - any decode error means "not (yet) readable"
        return Probe("eer", size, problem=_error_problem(err), last_page_ok=False)
    return Probe("eer", size, n_frames=n, last_page_ok=True)


def _check_page_limits(path: Path, page, file_bytes: int, limits: DecodeLimits = DecodeLimits()) -> None:
    """Raise DecodeLimitError before the daemon's own process decodes a TIFF page that declares more
    than the decode limits allow, or more than its stored bytes can hold (core.decode_limits; the
    defaults: a worker applies the configured ``[limits]`` when it reads the whole movie)."""
    shape = tuple(int(v) for v in page.shape)
    itemsize = np.dtype(page.dtype).itemsize
    check_decoded_size(path=path, frame_shape=shape[-2:], n_frames=int(np.prod(shape[:-2], dtype=np.int64)),
                       itemsize=itemsize, limits=limits)
    stored = min(sum(int(c) for c in page.databytecounts), file_bytes)
    check_tiff_storage(path=path, page_decoded_bytes=[int(np.prod(shape, dtype=np.int64)) * itemsize],
                       page_compressions=[int(page.compression)], file_bytes=stored, limits=limits)


def _last_eer_frame_decodes(path: Path) -> int:
    """Decode the last raw frame of an EER file (raises, like a TIFF page, when it does not);
    returns the number of raw frames (a TIA integrated image in front is not one)."""
    with open_movie(path, check_values=False, eer_group_frames=1) as reader:
        reader.read_frame(reader.n_frames - 1)
        return int(reader.n_raw_frames)


@dataclass(frozen=True)
class Decision:
    state: str  # "wait" | "ready" | "broken"
    signal: str | None = None  # which rule said complete
    reason: str | None = None  # why waiting, or why broken
    n_frames: int | None = None


@dataclass
class Observation:
    """The daemon's own record of one file's stat over time."""

    stat_key: tuple
    stable_since: float
    probe: Probe | None = None
    probe_key: tuple | None = None
    pages_key: tuple | None = None
    pages_since: float | None = None

    def observe(self, stat_key: tuple, now: float) -> bool:
        """Record a stat; True when it changed."""
        if stat_key != self.stat_key:
            self.stat_key = stat_key
            self.stable_since = now
            return True
        return False

    def stable_for(self, now: float) -> float:
        return now - self.stable_since


def stat_key(st: os.stat_result) -> tuple:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def frame_mdoc_frames(movie: Path, *, root=None) -> tuple[Path | None, int | None, str | None]:
    """The frame mdoc of a movie, its NumSubFrames, and a problem reading it."""
    fm = frame_mdoc_for(movie)
    if fm is None:
        return None, None, None
    try:
        m = read_mdoc(fm, root=root)
    except OSError as err:
        return fm, None, f"cannot read {fm.name}: {err}"
    return frame_mdoc_count(fm, m, None)


def frame_mdoc_count(fm: Path | None, m, problem: str | None) -> tuple[Path | None, int | None, str | None]:
    """(frame mdoc, its NumSubFrames, problem) from a frame mdoc already read (or not: ``m`` None)."""
    if fm is None or m is None:
        return fm, None, problem
    fs = m.sections_of("FrameSet")
    if m.kind != "frame_set" or not fs:
        return fm, None, f"{fm.name} is not a frame mdoc ({m.kind})"
    return fm, fs[0].num_sub_frames, None


def decide(
    path: Path,
    obs: Observation,
    now: float,
    *,
    settle_s: float,
    tiff_stable_s: float,
    expected_frames: int | None = None,
    expected_source: str = "tilt-series mdoc",
    frame_mdoc: tuple | None = None,
) -> Decision:
    """Apply the rules to a file observed by ``obs`` (its probe refreshed when the stat changed).
    ``frame_mdoc``: (path, NumSubFrames, problem) of its frame mdoc when the caller read it already."""
    probe = obs.probe
    if probe is None:
        return Decision("wait", reason="not probed yet")
    settled = obs.stable_for(now) >= settle_s
    fm, fm_frames, fm_problem = frame_mdoc if frame_mdoc is not None else frame_mdoc_frames(path)
    # (a) frame mdoc
    if fm is not None and fm_frames is not None:
        if (probe.n_frames == fm_frames and probe.problem is None and probe.last_page_ok is not False
                and (probe.fmt != "mrc" or probe.complete_by_format)):
            return Decision("ready", "frame_mdoc", n_frames=probe.n_frames)
        if settled:
            why = probe.problem or f"the file has {probe.n_frames} frames, {fm.name} says NumSubFrames = {fm_frames}"
            return Decision("broken", reason=why, n_frames=probe.n_frames)
        return Decision("wait", reason=f"{fm.name} says {fm_frames} frames, file has {probe.n_frames}")
    # (b) format self-check
    if probe.fmt == "mrc":
        if probe.complete_by_format:
            if expected_frames is not None and probe.n_frames != expected_frames:
                if settled:
                    return Decision("broken",
                                    reason=f"the file has {probe.n_frames} frames, the {expected_source} says {expected_frames}",
                                    n_frames=probe.n_frames)
                return Decision("wait", reason="frame count differs from the mdoc")
            return Decision("ready", "mrc_size", n_frames=probe.n_frames)
        if settled:
            return Decision("broken", reason=probe.problem or "incomplete MRC file", n_frames=probe.n_frames)
        return Decision("wait", reason=probe.problem)
    if probe.fmt in ("tiff", "eer"):
        good = probe.problem is None and probe.last_page_ok
        if good and expected_frames is not None:
            if probe.n_frames == expected_frames:
                return Decision("ready", "tiff_expected_pages", n_frames=probe.n_frames)
            if settled:
                return Decision("broken",
                                reason=f"the file has {probe.n_frames} frames, the {expected_source} says {expected_frames}",
                                n_frames=probe.n_frames)
            return Decision("wait", reason=f"{probe.n_frames} of {expected_frames} pages")
        if (good and obs.pages_since is not None and now - obs.pages_since >= tiff_stable_s
                and obs.stable_for(now) >= tiff_stable_s):
            return Decision("ready", "tiff_pages_stable", n_frames=probe.n_frames)
        if settled:
            if good:
                return Decision("ready", "settled", n_frames=probe.n_frames)
            return Decision("broken", reason=probe.problem or "the last TIFF page does not decode", n_frames=probe.n_frames)
        return Decision("wait", reason=probe.problem or "TIFF page count not yet stable")
    # (c) settle time
    if settled:
        if probe.problem:
            return Decision("broken", reason=probe.problem, n_frames=probe.n_frames)
        return Decision("ready", "settled", n_frames=probe.n_frames)
    return Decision("wait", reason="settling")


def refresh_probe(path: Path, obs: Observation, now: float, *, root=None, decode_last: bool = True) -> None:
    """Probe again when the stat changed since the last probe; track TIFF page-count stability
    (``decode_last``: as for :func:`probe_movie`)."""
    if obs.probe is not None and obs.probe_key == obs.stat_key:
        return
    try:
        probe = probe_movie(path, size=obs.stat_key[0], root=root, decode_last=decode_last)
    except OSError as err:
        probe = Probe(movie_format(path), obs.stat_key[0], problem=f"cannot read: {err}")
    obs.probe = probe
    obs.probe_key = obs.stat_key
    pk = (probe.n_frames, probe.size)
    if pk != obs.pages_key:
        obs.pages_key = pk
        obs.pages_since = now


def wall_time() -> float:
    return time.time()
