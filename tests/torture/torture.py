"""The torture run of ``framewatch watch``: simulated tilt series are written into the watch
directory frame by frame (the way SerialEM writes them) while faults are injected, and at the end
every promise of the daemon is checked.

Series are written two to a directory (as PACEtomo writes them: one ``frames/``, one mdoc each),
their tilts interleaved at random; the first movie is there before the daemon first starts. Faults,
each with how it is injected and what must come of it (every bad movie is listed in its series'
mdoc, as SerialEM would list it; a bad one may be a series' first tilt):

- ``sigkill_start_up`` / ``sigkill_running`` / ``sigkill_mid_append`` / ``sigkill_mid_stream``: a
  thread SIGKILLs the daemon and starts it again, during start-up (recovery, warm-up), at any moment
  of the work, the moment a stack is seen under its working name ``.NAME.appending``, or just after
  a worker started following a movie still being written (a ``stream_started`` line). Nothing lost
  or doubled.
- ``sigterm_restart``: now and then a clean stop (SIGTERM, drain) and a start instead. Exit 0.
- ``truncated``: the MRC header promises n frames, fewer are written, never more. Failed: truncated.
- ``zero_byte``: an empty .tif. Failed: empty file.
- ``corrupt_tiff_page``: a TIFF whose middle page's data is overwritten (the last page decodes).
  Failed: cannot be decoded.
- ``nan_frame``: a float32 MRC movie with one frame all NaN. Failed: NaN.
- ``frame_mdoc_count``: the frame mdoc's NumSubFrames says n + 2, the TIFF has n. Failed: NumSubFrames.
- ``mrc_nz_count``: an MRC with n + 2 frames of data behind a header saying n. Failed: longer
  than its header.
- ``mdoc_count``: a TIFF of n - 2 pages, the tilt-series mdoc says n. Failed: frames, the mdoc says n.
- ``deleted_while_read``: the movie is deleted while a worker holds it open (faults.py
  ``FRAMEWATCH_HOLD_DIR`` holds the worker at ``worker_reading`` until it is gone). Failed: disappeared.
- ``permission_denied``: the movie is created mode 000; as root the daemon runs without
  CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (``setpriv --bounding-set``), so it cannot read it.
  Failed: Permission denied.
- ``half_written_mdoc``: a good tilt's mdoc section is written in two parts, cut at a random byte,
  with a pause between. Good.
- ``mdoc_junk``: NUL bytes and unparsable lines inside a series mdoc, and a garbage
  ``junk.mrc.mdoc`` beside it. Good, and an ``mdoc_warning``.
- ``hostile_files`` (issue 14), beside a good movie once it is written: ``hostile_fifo`` (a FIFO
  mdoc, a FIFO named like the movie's frame mdoc, a FIFO named like a movie), ``hostile_symlink``
  (the movie's other frame-mdoc name and another mdoc linked to ``/dev/zero``), ``hostile_bad_name``
  (an mdoc and a gain-like movie name with a byte that is not UTF-8), ``hostile_bad_date`` (an mdoc
  dated in the year 1). Good (the movie), and nothing hangs. The memory bombs (issue 14, row 9)
  are not in this list: their checks are another branch's.
- ``mdoc_rewrite``: the whole mdoc rewritten in place (truncated, written again in two parts with
  a pause). Good.
- ``disk_full``: OUT is a small tmpfs (``mount -t tmpfs``), filled to the last byte while a good
  movie is corrected and appended, freed seconds later (without mount: RLIMIT_FSIZE on the daemon
  for that while, when the stacks are big enough for it to hit them alone). Good: appended once
  there is room, in its place.
- ``disk_full_completion``: the tmpfs full after the last tilt, while the series complete (the
  sorted stacks cannot be written) until the daemon says so. Every series completed afterwards.

Checked at the end: every good movie is in its series' stacks exactly once, in acquisition order,
each section equal to ``correct_movie_file`` of that movie with the same settings; every bad one
has exactly one failure record with its reason in the journal and exactly one ``movie_failed`` in
the drift log; every stack passes ``mrcfile.validate`` (also read live during the run); the tilt
tables and ``.rawtlt`` agree with the stacks and the journal; the sorted outputs with the growing
stacks; the daemon is still running, and exits 0 on SIGTERM.

The seed fixes the plan (series, which tilt gets which fault, kill delays); thread timing makes
each run's interleaving of writer, killer and daemon different.
"""
from __future__ import annotations

import io
import json
import os
import random
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import mrcfile
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "daemon"))  # the daemon tests' helpers
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tiff_bombs
from daemon_helpers import (  # noqa: E402
    DaemonProc,
    StackWatcher,
    add_section,
    corrupt_tiff_page,
    fill_filesystem,
    mount_tmpfs,
    read_journal,
    unmount,
)
from tiff_bombs import deflate_bomb_tiff  # noqa: E402

from framewatch.daemon.commands.simulated_acquisition import (  # noqa: E402
    Acquisition,
    dose_symmetric_angles,
    movie_name,
    mrc_header_for,
    write_mrc_frame_by_frame,
    write_tiff_frame_by_frame,
)

GOOD = "good"
DOSE_PER_TILT = 3.0  # the mdoc ExposureDose of every tilt (add_section writes 3 too)
PIXEL_SIZE_A = 1.5

BAD_KINDS: dict[str, str] = {  # fault -> a fragment of the expected failure reason
    "truncated": "truncated",
    "zero_byte": "empty file",
    "corrupt_tiff_page": "cannot be decoded",
    "nan_frame": "NaN",
    "frame_mdoc_count": "NumSubFrames",
    "mrc_nz_count": "longer than its header",
    "mdoc_count": "frames, the tilt-series mdoc says",
    "deleted_while_read": "disappeared",
    "permission_denied": "Permission denied",
}
GOOD_MODS = ("half_written_mdoc", "mdoc_junk", "mdoc_rewrite", "disk_full", "hostile_files")

CONFIG = """\
[processing]
pixel_size_a = {px}

[watch]
scan_period_s = 1.0
settle_s = 2.0
tiff_stable_s = 1.0
mdoc_wait_s = 3.0
retry_backoff_s = 0.3
max_attempts = 3
# the torture kills the daemon ~20 times at random: a movie in a worker at two of those moments
# would be failed by the default (2), which is meant for movies that crash the daemon themselves
max_interruptions = 1000

[series]
mdoc_quiet_s = 2.5
idle_s = 600.0

[scheduler]
workers = {workers}
backlog_log_s = 2.0
"""

DISK_CONFIG = """
[disk]
# OUT is a tmpfs of a few hundred MB here: the default thresholds (GB) would pause it for good
warn_below_gb = 0.0
floor_gb = 0.0
resume_margin_gb = 0.0
check_period_s = 1.0
"""


@dataclass(frozen=True)
class Profile:
    name: str
    n_series: int
    tilts: int  # per series
    size: int  # movie width = height, px
    frames: int
    restarts: int  # at least this many SIGKILLs
    fault_repeats: int  # each bad kind this often
    half_written: int
    mdoc_junk: int
    disk_full: int
    kill_after_s: tuple[float, float]  # the next SIGKILL this long after a (re)start ...
    early_kill_s: tuple[float, float]  # ... or, with early_fraction, during start-up and recovery
    early_fraction: float
    mid_append_fraction: float  # ... or the moment a stack is being appended to
    mid_stream_fraction: float  # ... or just after a worker started following a movie being written
    frame_interval_s: float
    tilt_interval_s: float
    tmpfs_mb: int
    final_timeout_s: float
    workers: int = 1
    sigterm_fraction: float = 0.1  # ... or a clean stop (SIGTERM) and start


PROFILES = {
    "short": Profile("short", n_series=2, tilts=10, size=256, frames=6, restarts=5, fault_repeats=1, half_written=1,
                     mdoc_junk=1, disk_full=1, kill_after_s=(2.2, 4.5), early_kill_s=(0.3, 1.6), early_fraction=0.2,
                     mid_append_fraction=0.2, mid_stream_fraction=0.15, frame_interval_s=0.08, tilt_interval_s=0.15,
                     tmpfs_mb=96, final_timeout_s=90.0),
    "long": Profile("long", n_series=4, tilts=14, size=320, frames=8, restarts=22, fault_repeats=2, half_written=3,
                    mdoc_junk=2, disk_full=2, kill_after_s=(2.2, 5.0), early_kill_s=(0.3, 1.6), early_fraction=0.2,
                    mid_append_fraction=0.25, mid_stream_fraction=0.2, frame_interval_s=0.08, tilt_interval_s=0.3,
                    tmpfs_mb=400, final_timeout_s=180.0,
                    workers=2),
}


@dataclass
class Slot:
    """One tilt of the plan."""

    series: str
    index: int  # acquisition index in its series (= its place in the mdoc)
    angle: float
    kind: str = GOOD
    mods: list[str] = field(default_factory=list)
    path: str | None = None
    note: str = ""

    @property
    def expect(self) -> str:
        return GOOD if self.kind == GOOD else "bad"

    @property
    def reason(self) -> str | None:
        return BAD_KINDS.get(self.kind)

    @property
    def name(self) -> str:
        return Path(self.path).name if self.path else f"{self.series}#{self.index}"


# ---------------------------------------------------------------------------------------- the plan
def make_plan(rng: random.Random, prof: Profile, kinds: list[str]) -> list[Slot]:
    """Tilts of every series in a random interleaving (each series in its own order); bad kinds
    replace random tilts (a series' first too); modifiers go on good tilts."""
    names = [f"TS_{k + 1:02d}" for k in range(prof.n_series)]
    angles = dose_symmetric_angles(prof.tilts, 3.0)
    slots = {s: [Slot(s, i, angles[i]) for i in range(prof.tilts)] for s in names}
    free = [(s, i) for s in names for i in range(prof.tilts)]
    rng.shuffle(free)
    bad = [k for k in kinds for _ in range(prof.fault_repeats)]
    rng.shuffle(bad)
    if len(bad) > len(free) // 2:
        raise ValueError("too many faults for the number of tilts")
    for kind in bad:
        s, i = free.pop()
        slots[s][i].kind = kind
    order: list[Slot] = []
    pos = {s: 0 for s in names}
    while any(pos[s] < prof.tilts for s in names):
        s = rng.choice([s for s in names if pos[s] < prof.tilts])
        order.append(slots[s][pos[s]])
        pos[s] += 1
    good_later = [sl for k, sl in enumerate(order) if sl.kind == GOOD and sl.index > 0 and k > len(order) // 3]
    rng.shuffle(good_later)
    for mod, n in (("disk_full", prof.disk_full), ("half_written_mdoc", prof.half_written), ("mdoc_junk", prof.mdoc_junk),
                   ("mdoc_rewrite", prof.half_written), ("hostile_files", prof.mdoc_junk)):
        for _ in range(n):
            if good_later:
                good_later.pop().mods.append(mod)
    return order


# --------------------------------------------------------------------------------- the environment
def permission_prefix(scratch: Path) -> tuple[list[str] | None, str | None]:
    """How to make a chmod 000 file unreadable to the daemon: ([] when not root; a setpriv prefix
    that drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH when root), or (None, why not)."""
    if os.geteuid() != 0:
        return [], None
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None, "running as root (which reads a chmod 000 file) and setpriv is not installed"
    prefix = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--"]
    probe = scratch / "perm-probe"
    probe.write_text("x")
    probe.chmod(0)
    r = subprocess.run([*prefix, sys.executable, "-c", f"open({str(probe)!r}).read()"], capture_output=True, text=True)
    if r.returncode == 0 or "PermissionError" not in r.stderr:
        return None, f"root still reads a chmod 000 file under setpriv ({r.stderr.strip()[-200:]})"
    return prefix, None


class OutputDisk:
    """The output directory on a small file system that can be made full: a tmpfs when mount
    works, else RLIMIT_FSIZE on the daemon while "full"; ``method`` is None when neither."""

    def __init__(self, out: Path, size_mb: int, force: str | None = None):
        self.out = out
        self.method: str | None = None
        self.why_not: str | None = None
        self.mounted = False
        out.mkdir(parents=True, exist_ok=True)
        if force in (None, "tmpfs"):
            self.why_not = mount_tmpfs(out, size_mb)
            if self.why_not is None:
                self.method, self.mounted = "tmpfs", True
                return
        if force in (None, "rlimit"):
            self.method = "rlimit"

    def fill(self) -> int:
        """Fill the tmpfs to the last byte; returns the bytes written."""
        return fill_filesystem(self.out / ".torture-filler")

    def release(self) -> None:
        try:
            os.unlink(self.out / ".torture-filler")
        except FileNotFoundError:
            pass

    def rlimit_bytes(self, state: Path, series: str) -> tuple[int | None, str | None]:
        """A file-size limit that stops the series' stack from growing (and any as big) but no
        other file the daemon writes (journal, WAL, drift log, tables): (limit, None) or (None, why not)."""
        stack = self.out / series / f"{series}.mrc"
        others = [p.stat().st_size for d in (self.out, state) for p in d.rglob("*") if p.is_file() and p.suffix != ".mrc"]
        if not stack.exists():
            return None, f"no stack of {series} yet"
        limit = stack.stat().st_size + 1
        need = max(others, default=0) + (1 << 20)  # room for the journal's WAL, the drift log, plots to grow
        if limit <= need:
            return None, f"the stack of {series} ({limit - 1} B) is not 1 MB larger than the other files ({need - (1 << 20)} B)"
        return limit, None

    def unmount(self) -> None:
        if self.mounted:
            unmount(self.out)
            self.mounted = False


def _set_fsize(limit: int):
    def preexec():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


# -------------------------------------------------------------------------------------- the run
@dataclass
class Summary:
    seed: int
    profile: str
    workers: int = 1
    faults: Counter = field(default_factory=Counter)
    restarts: int = 0
    kills: int = 0
    unexpected_exits: list[str] = field(default_factory=list)
    good: int = 0
    bad: int = 0
    good_ok: int = 0
    bad_ok: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    series: int = 0
    stacks_checked: int = 0
    tilt_images_checked: int = 0
    interop_tables_checked: int = 0
    live_checks: int = 0
    live_races: int = 0
    streams_started: int = 0
    streams_dropped: int = 0
    tilts_streamed: int = 0
    daemon_running_at_end: bool = False
    exit_code: int | None = None
    duration_s: float = 0.0
    skipped: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def text(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.faults.items()))
        lines = [
            f"torture run: seed {self.seed}, profile {self.profile}, {self.series} series, {self.good + self.bad} movies, "
            f"{self.workers} worker(s), "
            f"{self.duration_s:.0f} s on {os.cpu_count()} cores",
            f"faults injected: {kinds}",
            f"restarts: {self.restarts} ({self.kills} after SIGKILL at random moments, "
            f"{self.restarts - self.kills} after SIGTERM); "
            f"unexpected daemon exits: {len(self.unexpected_exits)}",
            f"movies: good {self.good}, bad {self.bad}",
            "good movies in their stacks exactly once, in acquisition order, equal to correct_movie_file: "
            f"{self.good_ok}/{self.good}",
            f"bad movies with exactly one failure record (journal + movie_failed) and their reason: {self.bad_ok}/{self.bad}",
            f"lost {self.lost}, duplicated {self.duplicated}, out of order {self.out_of_order}",
            f"streaming: {self.streams_started} movies followed while written, {self.streams_dropped} streams dropped, "
            f"{self.tilts_streamed} tilt_corrected lines of streamed movies",
            f"stacks passing mrcfile.validate: {self.stacks_checked} files; "
            f"live reader checks during the run: {self.live_checks} "
            f"(+ {self.live_races} reads that overlapped an append, not counted)",
            f"per-tilt images whole and equal to their sections: {self.tilt_images_checked} files; RELION/AreTomo/IMOD tables "
            f"agreeing with the journal: {self.interop_tables_checked} series",
            f"daemon running at the end: {'yes' if self.daemon_running_at_end else 'NO'}; "
            f"exit code after SIGTERM: {self.exit_code}",
        ]
        for s in self.skipped:
            lines.append(f"skipped: {s}")
        for e in self.unexpected_exits:
            lines.append(f"UNEXPECTED EXIT: {e}")
        lines.append(f"problems: {len(self.problems)}" + ("" if self.problems else " (none)"))
        lines += [f"  - {p}" for p in self.problems[:60]]
        if len(self.problems) > 60:
            lines.append(f"  ... {len(self.problems) - 60} more")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["faults"] = dict(self.faults)
        return d


class Torture:
    def __init__(self, base: Path, *, seed: int, profile: Profile, restarts: int | None = None, log=print,
                 disk_method: str | None = None):
        self.base = Path(base)
        self.seed = seed
        self.prof = profile
        self.min_restarts = profile.restarts if restarts is None else restarts
        self.rng = random.Random(seed)
        self.log = log
        self.summary = Summary(seed, profile.name, profile.workers)
        self.d = DaemonProc(self.base)
        self.dlock = threading.RLock()
        self.stopping = False
        self.writer_done = threading.Event()
        self._keep_open = threading.Event()
        self.bombs: list[str] = []  # decompression bombs planted beside good movies (issue 14)
        self.scratch = self.base / "scratch"
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.hold_dir = self.base / "hold"
        self.hold_dir.mkdir(exist_ok=True)
        self.d.env_extra["FRAMEWATCH_HOLD_DIR"] = str(self.hold_dir)
        self.disk = OutputDisk(self.d.out, profile.tmpfs_mb, force=disk_method)
        if self.disk.method is None:
            self.summary.skipped.append(f"disk_full: {self.disk.why_not}; RLIMIT_FSIZE not selected")
        elif self.disk.method == "rlimit" and self.disk.why_not:
            self.summary.skipped.append(f"disk_full by tmpfs ({self.disk.why_not}): RLIMIT_FSIZE on the daemon instead")
        prefix, why = permission_prefix(self.scratch)
        kinds = list(BAD_KINDS)
        if prefix is None:
            kinds.remove("permission_denied")
            self.summary.skipped.append(f"permission_denied: {why}")
        else:
            self.d.prefix = prefix
        config = CONFIG.format(px=PIXEL_SIZE_A, workers=profile.workers)
        if _has_disk_options():
            config += DISK_CONFIG
        self.d.config.write_text(config)
        self.plan = make_plan(self.rng, profile, kinds)
        if self.disk.method is None:
            for s in self.plan:
                if "disk_full" in s.mods:
                    s.mods.remove("disk_full")
        self.kill_rng = random.Random(seed * 7919 + 1)
        self._stream_scan = (0, 0)  # (bytes of the drift log read, stream_started lines in them)
        self.acqs = {}
        for k, name in enumerate(sorted({s.series for s in self.plan})):
            # two series to a directory, as PACEtomo writes them (frames/ shared, one mdoc each)
            acq = Acquisition(self.d.acq / f"grid{k // 2 + 1}", series=name, n_tilts=profile.tilts,
                              shape=(profile.size, profile.size),
                              n_frames=profile.frames, dose_per_tilt_e_per_a2=DOSE_PER_TILT, pixel_size_a=PIXEL_SIZE_A,
                              frame_interval_s=profile.frame_interval_s, tilt_interval_s=0.0, seed=seed * 100 + k)
            self.acqs[name] = acq
        self.summary.series = len(self.acqs)
        self.watcher: StackWatcher | None = None

    # ------------------------------------------------------------------------- daemon lifecycle
    def _start(self) -> None:
        self.d.start()

    def restart(self, why: str = "running") -> None:
        with self.dlock:
            if self.stopping:
                return
            p = self.d.proc
            if why == "sigterm":
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                    try:
                        rc = p.wait(120)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        rc = f"no exit 120 s after SIGTERM ({p.wait(30)})"
                    if rc != 0:
                        self.summary.problems.append(f"run {self.d.runs}: exit status {rc} after SIGTERM")
                self.summary.faults["sigterm_restart"] += 1
            else:
                if p is not None and p.poll() is None:
                    os.kill(p.pid, signal.SIGKILL)
                    p.wait(30)
                self.summary.kills += 1
                self.summary.faults[f"sigkill_{why}"] += 1
            self.summary.restarts += 1
            self._start()

    def check_alive(self) -> None:
        """An exit nobody asked for is a crash: record it with the end of its output, restart."""
        with self.dlock:
            p = self.d.proc
            if self.stopping or p is None or p.poll() is None:
                return
            out = self.base / f"daemon-{self.d.runs}.out"
            tail = out.read_text(errors="replace")[-1500:] if out.exists() else ""
            self.summary.unexpected_exits.append(f"run {self.d.runs} exited with {p.returncode}: ...{tail}")
            self.log(f"!! daemon run {self.d.runs} exited by itself with {p.returncode}")
            self._start()

    def _chaos(self) -> None:
        rng = self.kill_rng
        while True:
            u = rng.random()
            f1 = self.prof.early_fraction
            f2 = f1 + self.prof.mid_append_fraction
            f3 = f2 + self.prof.mid_stream_fraction
            f4 = f3 + self.prof.sigterm_fraction
            why = ("start_up" if u < f1 else "mid_append" if u < f2 else "mid_stream" if u < f3
                   else "sigterm" if u < f4 else "running")
            delay = rng.uniform(*(self.prof.early_kill_s if why == "start_up" else self.prof.kill_after_s))
            stream_delay = rng.uniform(0.0, 3 * self.prof.frame_interval_s)  # a frame or three into the movie
            t0 = time.monotonic()
            t_end = t0 + delay
            streams_before = self._streams_started()
            while time.monotonic() < t_end:
                if self.stopping:
                    return
                self.check_alive()
                if why == "mid_append" and time.monotonic() - t0 > 0.3 and self._appending():
                    break
                if why == "mid_stream" and self._streams_started() > streams_before:
                    time.sleep(stream_delay)
                    break
                time.sleep(0.002 if why in ("mid_append", "mid_stream") else 0.05)
            else:
                if why in ("mid_append", "mid_stream"):
                    why = "running"  # no append (no new stream) in that time: an ordinary kill
            if self.writer_done.is_set() and self.summary.kills >= self.min_restarts:
                return
            self.restart(why)
            what = "SIGTERM" if why == "sigterm" else "SIGKILL"
            self.log(f"   {what} + restart #{self.summary.restarts} ({why}, after {time.monotonic() - t0:.2f} s)")

    def _streams_started(self) -> int:
        """``stream_started`` lines in the drift log so far (a worker follows a movie being written);
        the log is read on from where the last call stopped."""
        try:
            with open(self.d.out / "framewatch.jsonl", "rb") as f:
                f.seek(self._stream_scan[0])
                data = f.read()
        except OSError:
            return self._stream_scan[1]
        whole = data[: data.rfind(b"\n") + 1]  # complete lines only
        self._stream_scan = (self._stream_scan[0] + len(whole), self._stream_scan[1] + whole.count(b'"stream_started"'))
        return self._stream_scan[1]

    def _appending(self) -> bool:
        """A stack is under its working name: the daemon is appending right now."""
        try:
            with os.scandir(self.d.out) as it:
                dirs = [e.path for e in it if e.is_dir()]
            for d in dirs:
                with os.scandir(d) as it:
                    if any(e.name.endswith(".appending") for e in it):
                        return True
        except OSError:
            pass
        return False

    # ------------------------------------------------------------------------------- writing
    def _path(self, slot: Slot, ext: str) -> Path:
        acq = self.acqs[slot.series]
        return acq.frames_dir / movie_name(slot.series, slot.index, slot.angle, ext)

    def _frames(self, slot: Slot) -> np.ndarray:
        return self.acqs[slot.series].frames_for(slot.index)

    def _chunks(self, path: Path, data: bytes, *, mode: int = 0o644, n: int | None = None) -> None:
        """Write ``data`` in place in pieces (as a detector writes a movie), creating the file with ``mode``."""
        n = n or self.prof.frames
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            for j in range(n):
                os.write(fd, data[j * len(data) // n : (j + 1) * len(data) // n])
                time.sleep(self.prof.frame_interval_s)
        finally:
            os.close(fd)

    def _tiff_bytes(self, frames: np.ndarray) -> bytes:
        tmp = self.scratch / "movie.tif"
        tmp.unlink(missing_ok=True)
        write_tiff_frame_by_frame(tmp, frames, 0.0)
        return tmp.read_bytes()

    def write(self, slot: Slot) -> None:
        acq = self.acqs[slot.series]
        n = self.prof.frames
        kind = slot.kind
        if "disk_full" in slot.mods:
            self._disk_full_begin(slot)
        try:
            if kind == GOOD and "half_written_mdoc" in slot.mods:
                acq.write_mdoc = False
                m = acq.write_tilt(slot.index)
                acq.write_mdoc = True
                text = acq.section_text(m, prior=slot.index * DOSE_PER_TILT)
                cut = self.rng.randrange(1, len(text) - 1)
                with open(acq.mdoc_path, "a") as f:
                    f.write(text[:cut])
                time.sleep(self.rng.uniform(0.3, 2.0))
                with open(acq.mdoc_path, "a") as f:
                    f.write(text[cut:])
                slot.path = str(m.path)
                slot.note = f"mdoc section cut at byte {cut} of {len(text)}"
            elif kind == GOOD:
                slot.path = str(acq.write_tilt(slot.index).path)
            elif kind == "truncated":
                p = self._path(slot, "mrc")
                k = self.rng.randrange(1, n)
                write_mrc_frame_by_frame(p, self._frames(slot), self.prof.frame_interval_s, pixel_size_a=PIXEL_SIZE_A,
                                         n_written=k)
                add_section(acq, p.name, slot.angle, slot.index, frames=n)
                slot.path, slot.note = str(p), f"{k} of {n} frames"
            elif kind == "zero_byte":
                p = self._path(slot, "tif")
                p.write_bytes(b"")
                add_section(acq, p.name, slot.angle, slot.index, frames=n)
                slot.path = str(p)
            elif kind == "corrupt_tiff_page":
                p = self._path(slot, "tif")
                data = self._tiff_bytes(self._frames(slot))
                page = self.rng.randrange(1, n - 1)
                self._chunks(p, corrupt_tiff_page(p, page, data=data))
                add_section(acq, p.name, slot.angle, slot.index, frames=n)
                slot.path, slot.note = str(p), f"page {page}"
            elif kind == "nan_frame":
                frames = self._frames(slot).astype(np.float32)
                k = self.rng.randrange(n)
                frames[k] = np.nan
                slot.path, slot.note = str(acq.write_tilt(slot.index, fmt="mrc", frames=frames).path), f"frame {k}"
            elif kind == "frame_mdoc_count":
                acq.frame_mdoc_every = 1
                try:
                    slot.path = str(acq.write_tilt(slot.index, fmt="tiff", mdoc_frames=n + 2).path)
                finally:
                    acq.frame_mdoc_every = 0
            elif kind == "mrc_nz_count":
                p = self._path(slot, "mrc")
                frames = np.concatenate([self._frames(slot), self._frames(slot)[:2]])
                header = mrc_header_for(frames[:n], pixel_size_a=PIXEL_SIZE_A)
                self._chunks(p, header + np.ascontiguousarray(frames).tobytes(), n=n + 2)
                add_section(acq, p.name, slot.angle, slot.index, frames=n)
                slot.path = str(p)
            elif kind == "mdoc_count":
                p = self._path(slot, "tif")
                write_tiff_frame_by_frame(p, self._frames(slot), self.prof.frame_interval_s, n_written=n - 2)
                add_section(acq, p.name, slot.angle, slot.index, frames=n)
                slot.path = str(p)
            elif kind == "deleted_while_read":
                self._delete_while_read(slot)
            elif kind == "permission_denied":
                p = self._path(slot, "tif")
                self._chunks(p, self._tiff_bytes(self._frames(slot)), mode=0)
                add_section(acq, p.name, slot.angle, slot.index, frames=n)
                slot.path = str(p)
            else:  # pragma: no cover
                raise ValueError(kind)
            if kind != GOOD:
                self.summary.faults[kind] += 1
            for mod in slot.mods:
                if mod == "half_written_mdoc":
                    self.summary.faults[mod] += 1
                elif mod == "mdoc_junk":
                    self._mdoc_junk(slot)
                elif mod == "mdoc_rewrite":
                    self._mdoc_rewrite(slot)
                elif mod == "hostile_files":
                    self._hostile_files(slot)
        finally:
            if "disk_full" in slot.mods:
                self._disk_full_end(slot)

    def _delete_while_read(self, slot: Slot) -> None:
        acq = self.acqs[slot.series]
        hold, held = self.hold_dir / "worker_reading.hold", self.hold_dir / "worker_reading.held"
        held.unlink(missing_ok=True)
        name = movie_name(slot.series, slot.index, slot.angle, "tif" if slot.index % 2 == 0 else "mrc")
        hold.write_text(name)
        try:
            m = acq.write_tilt(slot.index)
            assert m.path.name == name
            slot.path = str(m.path)
            deadline = time.monotonic() + 45
            while not held.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            if not held.exists():
                slot.note = "no worker reached the movie within 45 s; deleted anyway"
            os.unlink(m.path)
        finally:
            hold.unlink(missing_ok=True)
            held.unlink(missing_ok=True)

    def _mdoc_junk(self, slot: Slot) -> None:
        acq = self.acqs[slot.series]
        with open(acq.mdoc_path, "ab") as f:  # what a crash of the writer or the file server leaves
            f.write(b"\x00" * 64 + b"\n" + b"\xff\xfe this line is not key = value\n" + b"%%%%\n\n")
        (acq.directory / "junk.mrc.mdoc").write_bytes(b"\x00\xffnot an mdoc\n[ZValue = ]\nTiltAngle ==\n")
        self.summary.faults["mdoc_junk"] += 1

    def _hostile_files(self, slot: Slot) -> None:
        """Issue 14: files beside a good movie that must not stop, hang or fool the daemon."""
        acq = self.acqs[slot.series]
        movie = Path(slot.path)
        tag = f"{slot.series}_{slot.index}"
        os.mkfifo(acq.directory / f"fifo_{tag}.mdoc")  # a FIFO mdoc
        os.mkfifo(movie.with_suffix(".mdoc"))  # a FIFO named like the good movie's frame mdoc
        os.mkfifo(movie.parent / f"fifo_{tag}_000_0.0.tif")  # a FIFO named like a movie
        self.summary.faults["hostile_fifo"] += 1
        os.symlink("/dev/zero", movie.with_name(movie.name + ".mdoc"))  # its other frame-mdoc name, to /dev/zero
        os.symlink("/dev/zero", acq.directory / f"zero_{tag}.mrc.mdoc")
        self.summary.faults["hostile_symlink"] += 1
        junk = bytes(self.rng.randrange(256) for _ in range(4096))
        with open(os.fsencode(str(acq.directory)) + f"/bad_{tag}".encode() + b"\xff.mdoc", "wb") as f:  # not UTF-8
            f.write(junk)
        with open(os.fsencode(str(movie.parent)) + f"/bad_{tag}".encode() + b"\xff_gain.tif", "wb") as f:  # ignored, logged
            f.write(junk)
        self.summary.faults["hostile_bad_name"] += 1
        (acq.directory / f"dated_{tag}.mrc.mdoc").write_text(
            f"[ZValue = 0]\nTiltAngle = 0\nSubFramePath = D:\\x\\nowhere_{tag}_000_0.0.tif\nDateTime = 01-Jan-0001  00:00:01\n\n")
        self.summary.faults["hostile_bad_date"] += 1
        bomb = movie.parent / f"bomb_{tag}_000_0.0.tif"  # 16 kB declaring one 30208 x 30000 uint16 page (1.8 GB)
        deflate_bomb_tiff(bomb, width=30208, height=30000, n_pages=1)
        self.bombs.append(str(bomb))
        self.summary.faults["hostile_memory_bomb"] += 1
        slot.note += " hostile files beside it"

    def _mdoc_rewrite(self, slot: Slot) -> None:
        path = self.acqs[slot.series].mdoc_path
        data = path.read_bytes()
        cut = self.rng.randrange(1, len(data))
        with open(path, "wb") as f:  # truncated: a reader now finds part of the file, or nothing
            time.sleep(self.rng.uniform(0.05, 0.5))
            f.write(data[:cut])
            f.flush()
            time.sleep(self.rng.uniform(0.2, 1.2))
            f.write(data[cut:])
        slot.note += f" mdoc rewritten (cut at byte {cut} of {len(data)})"
        self.summary.faults["mdoc_rewrite"] += 1

    def _touch_until(self, done: threading.Event) -> None:
        while not done.wait(0.5):
            self._touch_mdocs()

    def _disk_full_at_completion(self, keep_open: threading.Event) -> None:
        """Full while the series complete (their sorted stacks cannot be written), then room again."""
        if self.disk.method != "tmpfs":
            self.summary.skipped.append("disk_full_completion: needs the tmpfs "
                                        "(RLIMIT_FSIZE cannot stop the sorted stacks alone)")
            return
        # the mdocs keep changing (a blank line every 0.5 s) until every movie is done or failed, so
        # no series can complete before the disk is full
        deadline = time.monotonic() + self.prof.final_timeout_s
        while not self._all_final() and time.monotonic() < deadline:
            time.sleep(0.25)
        n = self.disk.fill()
        keep_open.set()
        self._touch_mdocs()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30 and not (time.monotonic() - t0 > 6 and self._said('"what": "sorted stacks"')):
            time.sleep(0.2)  # until a completion found no room (its stdout says so: the log is full)
        self.log(f"  -- output disk full after the last tilt ({n} B) for {time.monotonic() - t0:.1f} s")
        self.disk.release()
        self.summary.faults["disk_full_completion"] += 1

    def _said(self, text: str) -> bool:
        for p in self.base.glob("daemon-*.out"):
            if text in p.read_text(errors="replace"):
                return True
        return False

    def _touch_mdocs(self) -> None:
        for acq in self.acqs.values():
            with open(acq.mdoc_path, "a") as f:
                f.write("\n")

    def _all_final(self) -> bool:
        rows, _ = self._journal_state()
        if rows is None:
            return False
        latest = {r["path"]: r for r in rows}
        return all(s.path in latest and latest[s.path]["state"] in ("done", "failed") for s in self.plan)

    def _disk_full_begin(self, slot: Slot) -> None:
        if self.disk.method == "tmpfs":
            n = self.disk.fill()
            slot.note = f"output tmpfs filled ({n} B)"
        else:
            limit, why = self.disk.rlimit_bytes(self.d.state, slot.series)
            if limit is None:
                slot.mods.remove("disk_full")
                self.summary.skipped.append(f"disk_full (RLIMIT_FSIZE) before {slot.name}: {why}")
                return
            self.d.preexec_fn = _set_fsize(limit)
            self.restart("disk_full")
            slot.note = f"RLIMIT_FSIZE {limit} B"
        self.summary.faults["disk_full"] += 1
        self._disk_full_since = time.monotonic()

    def _disk_full_end(self, slot: Slot) -> None:
        if "disk_full" not in slot.mods:
            return
        time.sleep(max(0.0, self.rng.uniform(2.5, 4.5) - (time.monotonic() - self._disk_full_since)))
        if self.disk.method == "tmpfs":
            self.disk.release()
        else:
            self.d.preexec_fn = None
            self.restart("disk_full")

    # ------------------------------------------------------------------------------ the run
    def run(self) -> Summary:
        t0 = time.monotonic()
        try:
            for acq in self.acqs.values():
                acq.start_mdoc()
            first = self.plan[0]
            if not first.mods and first.kind != "deleted_while_read":  # there before the first start
                self.write(first)
                self.log(f"  1/{len(self.plan)} {first.name:28s} {first.kind} (before the first start) {first.note}")
            self._start()
            self.d.wait_ready(timeout=180)
            self.watcher = StackWatcher(self.d.out)
            self.watcher.start()
            chaos = threading.Thread(target=self._chaos, name="chaos", daemon=True)
            chaos.start()
            for k, slot in enumerate(self.plan):
                if slot.path is not None:
                    continue
                self.write(slot)
                mods = f" + {','.join(slot.mods)}" if slot.mods else ""
                self.log(f"{k + 1:3d}/{len(self.plan)} {slot.name:28s} {slot.kind}{mods} {slot.note}")
                time.sleep(self.prof.tilt_interval_s)
            self.writer_done.set()
            keep_open = self._keep_open  # the mdocs keep changing: no series completes before the disk is full
            toucher = threading.Thread(target=self._touch_until, args=(keep_open,), daemon=True)
            if self.disk.method == "tmpfs":
                toucher.start()
            chaos.join()
            self._disk_full_at_completion(keep_open)  # (no kills now: a series must live long enough to complete)
            self.check_alive()
            self.log(f"   writing done, {self.summary.restarts} restarts; waiting for the daemon to finish")
            self._wait_final(self.prof.final_timeout_s)
            with self.dlock:
                self.stopping = True
                self.summary.daemon_running_at_end = self.d.proc.poll() is None
                if self.summary.daemon_running_at_end:
                    self.summary.exit_code = self.d.stop(timeout=120)
            self.watcher.finish()
            self.summary.live_checks = self.watcher.checks
            self.summary.live_races = self.watcher.races
            for f in self.watcher.failures:
                self.summary.problems.append(f"live reader: {f}")
            (self.base / "plan.json").write_text(json.dumps([s.__dict__ for s in self.plan], indent=1))
            self.verify()
        finally:
            self.stopping = True
            self._keep_open.set()
            if self.watcher is not None:
                self.watcher.finish()
            self.d.cleanup()
            self.disk.release()
            self.summary.duration_s = time.monotonic() - t0
        return self.summary

    def close(self, *, save_outputs: bool = False) -> None:
        if save_outputs and self.disk.mounted:  # the tmpfs goes away: keep a copy for a post-mortem
            shutil.copytree(self.d.out, self.base / "out-saved", dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns(".torture-filler"))
        self.disk.unmount()
        for p in self.plan:  # let anyone clean up
            if p.kind == "permission_denied" and p.path and os.path.exists(p.path):
                os.chmod(p.path, 0o644)

    def _journal_state(self):
        try:
            rows = read_journal(self.d.state)
            db = sqlite3.connect(f"file:{self.d.state / 'framewatch.sqlite'}?mode=ro", uri=True)
            db.row_factory = sqlite3.Row
            series = [dict(r) for r in db.execute("SELECT * FROM series")]
            db.close()
            return rows, series
        except sqlite3.Error:
            return None, None

    def _wait_final(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            rows, series = self._journal_state()
            if rows is not None:
                latest = {}
                for r in rows:
                    latest[r["path"]] = r
                final = all(s.path in latest and latest[s.path]["state"] in ("done", "failed") for s in self.plan)
                done_series = {r["series_id"] for r in rows if r["state"] == "done"}
                complete = all(s["complete"] for s in series if s["id"] in done_series) and len(done_series) == len(self.acqs)
                if final and complete:
                    return
            time.sleep(0.25)
        self.summary.problems.append(f"not everything final and every series complete {timeout:.0f} s after the acquisition")

    # ----------------------------------------------------------------------------- checking
    def _verify_interop(self, name, ser, done, tsv, data, order) -> None:
        _verify_interop_outputs(self, name, ser, done, tsv, data, order)

    def verify(self) -> None:
        from framewatch.core.correct import correct_movie_file
        from framewatch.core.settings import CorrectionSettings
        from framewatch.daemon.outputs.tilt_table import read_tsv

        S = self.summary
        problems = S.problems
        rows, series = self._journal_state()
        if rows is None:
            problems.append("cannot read the journal")
            return
        by_path = defaultdict(list)
        for r in rows:
            by_path[r["path"]].append(r)
            if r["state"] not in ("done", "failed"):
                problems.append(f"journal: {Path(r['path']).name} left in state {r['state']}")
        for bomb in self.bombs:  # refused unread: one failure record naming the decode limit
            rs = by_path.get(bomb, [])
            if [r["state"] for r in rs] != ["failed"] or "decoded" not in (rs[0]["error"] or ""):
                problems.append(f"memory bomb {Path(bomb).name}: journal {[(r['state'], r['error']) for r in rs]}")
        events, bad_lines = [], 0
        for k, line in enumerate(self.d.log.read_text(errors="replace").splitlines()):
            if not line.strip():
                continue
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                bad_lines += 1
                problems.append(f"drift log line {k + 1} is not JSON: {line[:120]!r}")
        tilt_lines = Counter(e["movie"] for e in events if e.get("event") == "tilt_corrected")
        self.summary.streams_started = sum(e.get("event") == "stream_started" for e in events)
        self.summary.streams_dropped = sum(e.get("event") == "stream_dropped" for e in events)
        self.summary.tilts_streamed = sum(e.get("event") == "tilt_corrected" and e.get("streamed_frames") is not None
                                          for e in events)
        failed_lines = defaultdict(list)
        for e in events:
            if e.get("event") == "movie_failed":
                failed_lines[e["movie"]].append(e)
        slot_of = {s.path: s for s in self.plan}
        S.good = sum(1 for s in self.plan if s.expect == GOOD)
        S.bad = len(self.plan) - S.good
        ok_movie = {}
        for s in self.plan:
            rs = by_path.get(s.path, [])
            done = [r for r in rs if r["state"] == "done"]
            failed = [r for r in rs if r["state"] == "failed"]
            where = f"{s.name} ({s.kind}{'+' + ','.join(s.mods) if s.mods else ''})"
            before = len(problems)
            if s.expect == GOOD:
                if not done:
                    S.lost += 1
                    problems.append(f"LOST {where}: journal {[(r['state'], r['error']) for r in rs]}")
                elif len(done) > 1:
                    S.duplicated += 1
                    problems.append(f"DUPLICATED {where}: {len(done)} done rows")
                if failed or failed_lines.get(s.path):
                    problems.append(f"{where}: failure records {[r['error'] for r in failed]} / "
                                    f"{[e['reason'] for e in failed_lines.get(s.path, [])]}")
                if tilt_lines[s.path] != 1:
                    problems.append(f"{where}: {tilt_lines[s.path]} tilt_corrected lines in the drift log")
            else:
                if done:
                    problems.append(f"{where}: a bad movie was appended (z={[r['z'] for r in done]})")
                if len(failed) != 1:
                    problems.append(f"{where}: {len(failed)} failed journal rows (want 1) "
                                    f"{[(r['state'], r['error']) for r in rs]}")
                elif s.reason.lower() not in (failed[0]["error"] or "").lower():
                    problems.append(f"{where}: journal reason {failed[0]['error']!r} lacks {s.reason!r}")
                lines = failed_lines.get(s.path, [])
                if len(lines) != 1:
                    problems.append(f"{where}: {len(lines)} movie_failed lines (want 1)")
                elif s.reason.lower() not in lines[0]["reason"].lower():
                    problems.append(f"{where}: movie_failed reason {lines[0]['reason']!r} lacks {s.reason!r}")
            ok_movie[s.path] = len(problems) == before
        # stacks, tables, sorted outputs
        warned = {e.get("mdoc") for e in events if e.get("event") == "mdoc_warning"}
        for s in self.plan:
            if "mdoc_junk" in s.mods and str(self.acqs[s.series].mdoc_path) not in warned:
                problems.append(f"no mdoc_warning for the junk in {self.acqs[s.series].mdoc_path.name}")
        for ser in series:
            paths = {k: self.d.out / ser["out_rel"] / f"{ser['name']}{k}.mrc" for k in ("", "_EVN", "_ODD")}
            done = sorted((r for r in rows if r["series_id"] == ser["id"] and r["state"] == "done"), key=lambda r: r["z"])
            name = ser["name"]
            if [r["z"] for r in done] != list(range(len(done))):
                problems.append(f"{name}: journal z values {[r['z'] for r in done]}")
            data = {}
            for k, p in paths.items():
                if not done:
                    continue
                buf = io.StringIO()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    if not mrcfile.validate(str(p), print_file=buf):
                        problems.append(f"{p.name} fails mrcfile.validate: {buf.getvalue()[-300:]}")
                S.stacks_checked += 1
                with mrcfile.open(p, permissive=True) as m:
                    data[k] = m.data.reshape(-1, *m.data.shape[-2:]).copy()
                if data[k].shape[0] != len(done):
                    problems.append(f"{p.name} has {data[k].shape[0]} sections, the journal {len(done)}")
            idx = [slot_of[r["path"]].index if r["path"] in slot_of else -1 for r in done]
            if idx != sorted(idx) or len(set(idx)) != len(idx):
                S.out_of_order += 1
                problems.append(f"{name}: sections not in acquisition order: {idx}")
            for r in done:
                s = slot_of.get(r["path"])
                if s is None:
                    problems.append(f"{name}: a section of a movie nobody planned: {r['path']}")
                    continue
                if len(data) < 3 or r["z"] >= min(len(v) for v in data.values()):
                    continue
                st = CorrectionSettings(pixel_size_a=PIXEL_SIZE_A, dose_per_frame_e_per_a2=DOSE_PER_TILT / self.prof.frames,
                                        prior_dose_e_per_a2=DOSE_PER_TILT * s.index)
                ref = correct_movie_file(s.path, settings=st)
                for k, img in (("", ref.dose_weighted_sum), ("_EVN", ref.even_sum), ("_ODD", ref.odd_sum)):
                    got = data[k][r["z"]]
                    if not np.allclose(got, img, rtol=1e-4, atol=1e-4 * float(np.abs(img).max())):
                        ok_movie[s.path] = False
                        problems.append(f"{name} z={r['z']}{k}: section differs from correct_movie_file({s.name})")
            if not done:
                continue
            tsv = read_tsv(self.d.out / ser["out_rel"] / f"{name}.tilts.tsv")
            if [int(t["z"]) for t in tsv] != [r["z"] for r in done]:
                problems.append(f"{name}.tilts.tsv has z {[t['z'] for t in tsv]}, the journal {[r['z'] for r in done]}")
            for t, r in zip(tsv, done):
                s = slot_of.get(r["path"])
                want = (Path(r["path"]).name, s.angle if s else None, DOSE_PER_TILT * s.index if s else None)
                got = (t["movie"], float(t["tilt_angle_deg"]), float(t["prior_dose_e_per_a2"]))
                if (got[0] != want[0] or abs(got[1] - want[1]) > 0.01 or abs(got[2] - want[2]) > 1e-6
                        or abs(float(t["tilt_angle_deg"]) - r["angle_deg"]) > 1e-3):
                    problems.append(f"{name}.tilts.tsv z={t['z']}: {got} != {want} (journal angle {r['angle_deg']})")
            rawtlt = [float(a) for a in (self.d.out / ser["out_rel"] / f"{name}.rawtlt").read_text().split()]
            if len(rawtlt) != len(tsv) or any(abs(a - float(t["tilt_angle_deg"])) > 0.01 for a, t in zip(rawtlt, tsv)):
                problems.append(f"{name}.rawtlt {rawtlt} disagrees with the tilt table")
            if not ser["complete"]:
                problems.append(f"{name}: not complete at the end")
                continue
            sorted_p = self.d.out / ser["out_rel"] / f"{name}_sorted.mrc"
            order = sorted(range(len(done)), key=lambda z: float(tsv[z]["tilt_angle_deg"]))
            for k in ("", "_EVN", "_ODD"):
                p = self.d.out / ser["out_rel"] / f"{name}_sorted{k}.mrc"
                buf = io.StringIO()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    if not mrcfile.validate(str(p), print_file=buf):
                        problems.append(f"{p.name} fails mrcfile.validate: {buf.getvalue()[-300:]}")
                S.stacks_checked += 1
            with mrcfile.open(sorted_p, permissive=True) as m:
                sd = m.data.reshape(-1, *m.data.shape[-2:])
                if sd.shape[0] != len(order) or any(not np.array_equal(sd[j], data[""][z]) for j, z in enumerate(order)):
                    problems.append(f"{sorted_p.name} is not the stack in angle order")
            tlt = [float(a) for a in (self.d.out / ser["out_rel"] / f"{name}.tlt").read_text().split()]
            if len(tlt) != len(order) or any(abs(a - float(tsv[z]["tilt_angle_deg"])) > 0.01 for a, z in zip(tlt, order)):
                problems.append(f"{name}.tlt disagrees with the tilt table")
            self._verify_interop(name, ser, done, tsv, data, order)
            left = [p.name for p in (self.d.out / ser["out_rel"]).iterdir() if p.name.startswith(".")]
            if left:
                problems.append(f"{name}: working files left: {left}")
        S.good_ok = sum(1 for s in self.plan if s.expect == GOOD and ok_movie.get(s.path))
        S.bad_ok = sum(1 for s in self.plan if s.expect != GOOD and ok_movie.get(s.path))
        if not S.daemon_running_at_end:
            problems.append("the daemon was not running at the end")
        elif S.exit_code != 0:
            problems.append(f"exit code {S.exit_code} after SIGTERM")
        if S.unexpected_exits:
            problems.append(f"{len(S.unexpected_exits)} unexpected daemon exit(s)")
        if S.kills < self.min_restarts:
            problems.append(f"only {S.kills} SIGKILL restarts, wanted {self.min_restarts}")


def _verify_interop_outputs(t: "Torture", name: str, ser: dict, done: list[dict], tsv: list[dict], data: dict,
                            order: list[int]) -> None:
    """The new files of issue 13 after the run: every done tilt has its three per-tilt images, whole
    and equal to its sections (no half-written image after a SIGKILL, none of a movie not done, no
    temporary left); SERIES.star (read with starfile from OUT, the default RELION project), the
    global tilt_series.star, _sorted_TLT.txt and _sorted.rawtlt agree with the tilt table and journal."""
    import starfile

    from framewatch.daemon.outputs.relion_tables import tomo_name
    from framewatch.daemon.outputs.tilt_images import tilt_image_paths

    S, problems = t.summary, t.summary.problems
    sdir = t.d.out / ser["out_rel"]
    expected = set()
    for r in done:
        for k, p in zip(("", "_EVN", "_ODD"), tilt_image_paths(sdir, r["path"])):
            expected.add(p.name)
            try:
                with mrcfile.open(p) as m:
                    img = m.data.copy()
            except (OSError, ValueError) as err:
                problems.append(f"{name}: per-tilt image {p.name} unreadable: {err}")
                continue
            if img.ndim != 2 or (k in data and r["z"] < len(data[k]) and not np.array_equal(img, data[k][r["z"]])):
                problems.append(f"{name}: per-tilt image {p.name} is not section z={r['z']} of the stack")
            S.tilt_images_checked += 1
    tilts = sdir / "tilts"
    present = {p.name for p in tilts.iterdir()} if tilts.is_dir() else set()
    if present - expected:
        problems.append(f"{name}: files in tilts/ of no done movie (or half-written): {sorted(present - expected)[:5]}")
    here = os.getcwd()
    os.chdir(t.d.out)
    try:
        glob = starfile.read(Path(ser["out_rel"]).parent / "tilt_series.star", always_dict=True)["global"]
        g = glob[glob["rlnTomoName"] == tomo_name(name)]
        if len(g) != 1:
            problems.append(f"tilt_series.star lists {name} {len(g)} times")
            return
        df = starfile.read(g["rlnTomoTiltSeriesStarFile"].iloc[0], always_dict=True)[tomo_name(name)]
        by_z = sorted(range(len(done)), key=lambda i: (done[i]["acq_index"], done[i]["z"]))
        want_angles = [done[i]["angle_deg"] for i in by_z]
        if len(df) != len(done) or not np.allclose(df["rlnTomoNominalStageTiltAngle"], want_angles, atol=1e-4):
            problems.append(f"{name}.star angles {list(df['rlnTomoNominalStageTiltAngle'])} != journal {want_angles}")
        elif not np.allclose(df["rlnMicrographPreExposure"], [float(tsv[i]["prior_dose_e_per_a2"]) for i in by_z], rtol=1e-5):
            problems.append(f"{name}.star rlnMicrographPreExposure disagrees with the tilt table")
        elif not np.allclose(df["rlnAccumMotionTotal"], [float(tsv[i]["total_motion_a"]) for i in by_z], rtol=1e-4):
            problems.append(f"{name}.star rlnAccumMotionTotal disagrees with the tilt table")
        elif ([os.path.basename(p) for p in df["rlnMicrographName"]]
              != [tilt_image_paths(sdir, done[i]["path"])[0].name for i in by_z]):
            problems.append(f"{name}.star rlnMicrographName does not name the per-tilt images in acquisition order")
    except (OSError, KeyError, ValueError, IndexError) as err:
        problems.append(f"{name}: RELION tables unreadable: {type(err).__name__}: {err}")
        return
    finally:
        os.chdir(here)
    tlt = [line.split() for line in (sdir / f"{name}_sorted_TLT.txt").read_text().splitlines() if line.strip()]
    want = [float(tsv[z]["tilt_angle_deg"]) for z in order]
    if ([round(float(x[0]), 2) for x in tlt] != [round(a, 2) for a in want]
            or sorted(int(x[1]) for x in tlt) != list(range(1, len(order) + 1))):
        problems.append(f"{name}_sorted_TLT.txt disagrees with the sorted stack")
    rawtlt = [float(a) for a in (sdir / f"{name}_sorted.rawtlt").read_text().split()]
    if len(rawtlt) != len(order) or any(abs(a - w) > 0.01 for a, w in zip(rawtlt, want)):
        problems.append(f"{name}_sorted.rawtlt disagrees with the sorted stack")
    S.interop_tables_checked += 1


def _has_disk_options() -> bool:
    from framewatch.daemon.config.configuration import DaemonConfig

    return hasattr(DaemonConfig(), "disk")


def run_torture(base: Path, *, seed: int, profile: str | Profile = "short", restarts: int | None = None, log=print,
                disk_method: str | None = None, save_outputs: bool = False) -> Summary:
    """Run it in ``base``; ``save_outputs`` copies OUT (a tmpfs, unmounted at the end) to ``base/out-saved``."""
    prof = PROFILES[profile] if isinstance(profile, str) else profile
    t = Torture(base, seed=seed, profile=prof, restarts=restarts, log=log, disk_method=disk_method)
    try:
        return t.run()
    finally:
        t.close(save_outputs=save_outputs)
