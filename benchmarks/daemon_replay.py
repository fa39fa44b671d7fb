"""Replay a simulated tilt series into a watched directory at a real pace and time the daemon (issue 15).

    python -m benchmarks.daemon_replay [--format tiff|mrc|eer] [--arrival frames|rename] [--patches auto|0]
        [--no-streaming] [--tilts 8] [--size 4096] [--frames 10] [--frame-interval-s 0.2] [--pace-s 8]
        [--eer-raw-frames 400] [--eer-group-frames 40] [--dask-workers N] [--restart-after K]
        [--no-full-size-warmup] [--gain] [--keep DIR] [--json F]

Before the clock starts, every tilt is simulated (``Acquisition.frames_for``: 0.3 e/A^2 per frame,
3 e/A^2 per tilt, 1.5 A pixels) and encoded once into a staging folder of the run's temporary
directory (the cache: nothing outlives the run): TIFF LZW (framewatch's writer: rows flipped, one
page per frame), MRC, or EER (the tests' encoder: each fraction's counts split over its raw frames,
``numberOfFrames`` in the metadata). EER fractions: ``--eer-group-frames 40`` is passed to the daemon,
as a RELION user passes ``--eer_grouping 40``: 10 fractions of 0.3 e/A^2 at 3 e/A^2 per tilt, the
fractions of the daemon's default dose target too (``--eer-group-frames 0`` runs that default, whose
total dose is known only once the mdoc line is written). ``framewatch watch`` then runs as its own
process (one worker, defaults but for the pixel size and ``--patches``); tilt ``i`` starts ``i * pace``
after the first and arrives

- ``frames``: written in place frame by frame as a detector does (tests/growing_writer.py: MRC
  header with the final nz first, then each frame; TIFF/EER pages linked once whole), one frame every
  ``--frame-interval-s`` (EER: the raw frames spread over the same exposure), or
- ``rename``: the staged file renamed into the watch folder in whole.

Right after the movie is closed (renamed), its SerialEM frame mdoc and tilt-series mdoc section are
written (``NumSubFrames``: the file's frames; EER raw frames). The latency of a tilt is from the moment
the movie was closed to the ``timestamp`` of its ``tilt_corrected`` line. The floor is measured in a
fresh process in the same run (benchmarks/child.py ``floor``: decode + one rfft2 per frame of tilt 0,
EER decoded into the fractions the daemon makes). The run fails (exit 1) if a tilt is missing or failed.

``--restart-after K`` stops the daemon (SIGTERM) once the first K tilts are logged and starts it again
on the same output and state directories; the rest of the tilts arrive at their pace from its second
READY. Tilt K + 1 is then the first tilt after a start whose journal knows the detector's size, which
the start's warm-up corrects once as a synthetic movie (``[service] warmup_full_size``; switched off by
``--no-full-size-warmup``).

``--gain`` gives the daemon a gain reference (``--gain``: ones, float32 MRC of the frame size, as a
counting-mode setup has one; the movies are unchanged): the very first start of a state directory
then warms up at the gain's size.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
THREADS = 2  # the floor's FFT threads: this machine's cores, as the daemon's default (0 = all cores)

CONFIG = """\
[processing]
pixel_size_a = 1.5

[watch]
scan_period_s = 2.0
"""


def _test_helpers():
    """tests/growing_writer.py and tests/eer_encoder.py (the test-side writers: a detector's order of writes)."""
    if str(ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests"))
    import eer_encoder
    import growing_writer

    return growing_writer, eer_encoder


@dataclass(frozen=True)
class StagedMovie:
    """One tilt's finished file in the staging folder: its name in the watch folder, its frames on
    disk (``file_frames``: EER raw frames) and the dose per frame the frame mdoc gives."""

    index: int
    angle_deg: float
    name: str
    staged: Path
    file_frames: int


# ----------------------------------------------------------------------------- the movies
def split_into_raw_frames(counts: np.ndarray, raw_per_fraction: int, rng):
    """Events of ``raw_per_fraction`` raw frames per fraction ``counts (n, ny, nx)`` (uint8): a pixel
    with ``c`` counts gets one event in ``c`` consecutive raw frames (cyclic) from a random one, so the
    raw frames of a fraction sum to it. Returns the tests' ``Events`` per raw frame, in order."""
    _, enc = _test_helpers()
    out = []
    for frame in counts:
        pos = np.flatnonzero(frame)
        c = frame.ravel()[pos].astype(np.int64)
        if c.max(initial=0) > raw_per_fraction:
            raise SystemExit(f"a pixel has {c.max()} counts in a fraction of {raw_per_fraction} raw frames: "
                             "raise --eer-raw-frames")
        start = np.repeat(rng.integers(0, raw_per_fraction, pos.size), c)
        first = np.repeat(np.cumsum(c) - c, c)
        raw = (start + np.arange(int(c.sum())) - first) % raw_per_fraction
        order = np.argsort(raw, kind="stable")  # positions stay sorted within each raw frame
        where = np.repeat(pos, c)[order]
        bounds = np.concatenate([[0], np.cumsum(np.bincount(raw, minlength=raw_per_fraction))])
        for k in range(raw_per_fraction):
            p = where[bounds[k]:bounds[k + 1]]
            out.append(enc.Events(p, rng.integers(0, 4, p.size), rng.integers(0, 4, p.size)))
    return out


def stage_movies(acq, *, fmt: str, tilts: int, eer_raw_frames: int, stage: Path) -> list[StagedMovie]:
    """Simulate and encode every tilt once, into ``stage`` (see the module docstring)."""
    from framewatch.core.movie_io import write_movie
    from framewatch.daemon.commands.simulated_acquisition import movie_name

    _, enc = _test_helpers()
    stage.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(tilts):
        frames = acq.frames_for(i)
        ext = {"tiff": "tif", "mrc": "mrc", "eer": "eer"}[fmt]
        name = movie_name(acq.series, i, acq.angles[i], ext)
        path = stage / name
        if fmt == "eer":
            if eer_raw_frames % len(frames):
                raise SystemExit(f"--eer-raw-frames {eer_raw_frames} is not a multiple of --frames {len(frames)}")
            raws = split_into_raw_frames(frames, eer_raw_frames // len(frames), np.random.default_rng(i))
            enc.write_eer(path, enc.encode_movie(raws, shape=frames.shape[1:]), shape=frames.shape[1:])
            n = eer_raw_frames
        else:
            write_movie(path, frames, pixel_size_a=acq.pixel_size_a)  # TIFF: LZW, rows flipped
            n = len(frames)
        out.append(StagedMovie(i, acq.angles[i], name, path, n))
        del frames
    return out


def frame_writes(data: bytes, fmt: str, n: int) -> tuple[list, list[list]]:
    """The writes of a finished file as its writer makes them: (``head``: before the first frame,
    ``per_frame``: the writes that complete frame ``k``), from tests/growing_writer.py's steps."""
    gw, _ = _test_helpers()
    if fmt == "mrc":
        steps = gw.mrc_steps(data, n, nz_growing=False)
        return steps[:1], [steps[1 + 2 * k: 3 + 2 * k] for k in range(n)]
    steps = gw.page_steps(data)  # per page: two halves, then the pointer that links it
    per_frame = [steps[3 * k: 3 * k + 3] for k in range(n)]
    per_frame[-1] = per_frame[-1] + steps[3 * n:]
    return [], per_frame


def write_in_place(dest: Path, movie: StagedMovie, fmt: str, exposure_s: float) -> float:
    """Write ``movie`` to ``dest`` frame by frame over ``exposure_s`` (frame ``k`` complete at
    ``(k + 1) / n`` of it); returns the wall time the file was closed."""
    head, per_frame = frame_writes(movie.staged.read_bytes(), fmt, movie.file_frames)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for offset, chunk in head:
            os.pwrite(fd, chunk, offset)
        t0 = time.perf_counter()
        for k, writes in enumerate(per_frame):
            delay = t0 + (k + 1) * exposure_s / len(per_frame) - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            for offset, chunk in writes:
                os.pwrite(fd, chunk, offset)
    finally:
        os.close(fd)
    return time.time()


def arrive(acq, movie: StagedMovie, *, fmt: str, arrival: str, exposure_s: float) -> float:
    """One tilt arrives (module docstring); its frame mdoc and mdoc section follow. Returns the wall
    time the movie was closed (renamed)."""
    from framewatch.daemon.commands.simulated_acquisition import WrittenMovie, write_frame_mdoc

    dest = acq.frames_dir / movie.name
    if arrival == "rename":
        time.sleep(exposure_s)
        os.rename(movie.staged, dest)
        closed = time.time()
    else:
        closed = write_in_place(dest, movie, fmt, exposure_s)
    per_frame = acq.dose_per_tilt_e_per_a2 / movie.file_frames
    write_frame_mdoc(dest, movie.file_frames, angle=movie.angle_deg, pixel_size_a=acq.pixel_size_a,
                     dose_per_frame=per_frame)
    m = WrittenMovie(dest, movie.index, movie.angle_deg, movie.file_frames, fmt, closed, closed, closed)
    with open(acq.mdoc_path, "a", newline="\n") as f:
        f.write(acq.section_text(m, movie.index * acq.dose_per_tilt_e_per_a2))
    return closed


# ----------------------------------------------------------------------------- the measurements
def _cpu_sample() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, wall time) from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:8]]
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(v) - v[3] - v[4]) / tick, time.time()


def busy_cores(window_s: float = 5.0) -> float:
    """Cores busy on this machine over ``window_s`` (every process, ours included)."""
    b1, t1 = _cpu_sample()
    time.sleep(window_s)
    b2, t2 = _cpu_sample()
    return (b2 - b1) / (t2 - t1)


class ForeignCpu:
    """Cores busy with other work than this run (its daemon and workers, reaped when it stops) between
    ``start()`` and ``stop()``: a run shared with another benchmark says so."""

    def start(self) -> None:
        self._busy, self._wall = _cpu_sample()
        self._mine = self._own()

    @staticmethod
    def _own() -> float:
        import resource

        return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
                   for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))

    def stop(self) -> float:
        busy, wall = _cpu_sample()
        return max(0.0, (busy - self._busy) - (self._own() - self._mine)) / max(1e-9, wall - self._wall)


def wait_until_quiet(max_busy_cores: float, timeout_s: float = 1800.0) -> float:
    """Wait (after the staging, before the floor) until other work leaves the machine; returns the wait."""
    start = time.time()
    while busy_cores() > max_busy_cores and time.time() - start < timeout_s:
        pass
    return time.time() - start


def floor_s(movie: Path) -> dict:
    """benchmarks/child.py ``floor`` of ``movie`` in a fresh process (best of two in it)."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.child", "floor", str(movie), str(THREADS)],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _events(drift: Path) -> list[dict]:
    if not drift.exists():
        return []
    return [json.loads(x) for x in drift.read_text().splitlines() if x.strip()]


def _wait_for(drift: Path, proc, what, timeout_s: float, workdir: Path) -> list[dict]:
    deadline = time.time() + timeout_s
    while True:
        events = _events(drift)
        if what(events):
            return events
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited ({proc.returncode}); see {workdir / 'daemon.out'}")
        if time.time() > deadline:
            return events
        time.sleep(0.2)


def run_daemon(acq, movies: list[StagedMovie], *, fmt: str, arrival: str, patches: str, streaming: bool,
               pace_s: float, exposure_s: float, workdir: Path, extra: tuple[str, ...] = (),
               restart_after: int = 0, full_size_warmup: bool = True) -> tuple[list[dict], dict[str, float], list[dict]]:
    """Start ``framewatch watch``, let every tilt arrive at its pace, wait for its lines, stop it;
    with ``restart_after`` K > 0 the daemon is stopped (SIGTERM) once the first K tilts are logged and
    started again on the same output and state, and the rest arrive at their pace from its READY.
    Returns (drift-log events, movie path -> closed wall time, journal rows)."""
    config = workdir / "framewatch.toml"
    config.write_text(CONFIG + ("" if full_size_warmup else "\n[service]\nwarmup_full_size = false\n"))
    out, state = workdir / "out", workdir / "state"
    cmd = [sys.executable, "-m", "framewatch.daemon.commands.cli", "watch", str(acq.directory), "--out", str(out),
           "--state", str(state), "--config", str(config), "--patches", *(["auto"] if patches == "auto" else ["0", "0"])]
    if not streaming:
        cmd.append("--no-streaming")
    cmd += extra
    drift = out / "framewatch.jsonl"
    acq.frames_dir.mkdir(parents=True)
    closed: dict[str, float] = {}
    parts = [movies[:restart_after], movies[restart_after:]] if 0 < restart_after < len(movies) else [movies]
    with open(workdir / "daemon.out", "wb") as log:
        for k, part in enumerate(parts):
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            try:
                def ready(ev, k=k):
                    return sum(e["event"] == "daemon_ready" for e in ev) > k

                if not ready(_wait_for(drift, proc, ready, 300, workdir)):
                    raise SystemExit(f"the daemon did not become ready; see {workdir / 'daemon.out'}")
                if k == 0:
                    acq.start_mdoc()
                start = time.time()
                for i, m in enumerate(part):
                    time.sleep(max(0.0, start + i * pace_s - time.time()))
                    closed[str(acq.frames_dir / m.name)] = arrive(acq, m, fmt=fmt, arrival=arrival, exposure_s=exposure_s)

                def finished(ev):
                    ends = {e.get("movie") for e in ev if e["event"] in ("tilt_corrected", "movie_failed")}
                    return all(p in ends for p in closed)

                _wait_for(drift, proc, finished, 120 + 10 * len(part), workdir)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=120)
    db = sqlite3.connect(state / "framewatch.sqlite")
    db.row_factory = sqlite3.Row
    rows = [dict(r) for r in db.execute("SELECT * FROM movies")]
    db.close()
    return _events(drift), closed, rows


def _stamp(event: dict) -> float:
    return dt.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def per_tilt(events: list[dict], closed: dict[str, float], rows: list[dict]) -> tuple[list[dict], list[str]]:
    """One row per tilt (closed -> tilt_corrected latency, the daemon's own timings) and the problems
    (a tilt missing or failed)."""
    lines = {e["movie"]: e for e in events if e["event"] == "tilt_corrected"}
    failed = {e["movie"]: e.get("reason") for e in events if e["event"] == "movie_failed"}
    journal = {r["path"]: r for r in rows}
    out, problems = [], []
    for path, t_closed in closed.items():
        e = lines.get(path)
        if e is None:
            problems.append(f"{Path(path).name}: " + (f"failed: {failed[path]}" if path in failed else "no tilt_corrected line"))
            continue
        row = journal.get(path, {})
        timings = json.loads(row.get("timings_json") or "{}")
        out.append({
            "movie": Path(path).name, "latency_s": _stamp(e) - t_closed, "daemon_latency_s": e.get("latency_s"),
            "found_complete_after_s": (row["complete_at"] - t_closed) if row.get("complete_at") else None,
            "wait_s": e.get("wait_s"), "correct_s": e.get("correct_s"), "append_s": e.get("append_s"),
            "streamed_frames": e.get("streamed_frames"), "n_frames": e.get("n_frames"),
            "complete_signal": e.get("complete_signal"), "engine_s": timings.get("engine", {}),
        })
    return out, problems


def _watch_flags(o) -> tuple[str, ...]:
    eer = ("--eer-group-frames", str(o.eer_group_frames)) if o.format == "eer" and o.eer_group_frames else ()
    return eer + (("--dose-per-tilt", "3") if o.dose_per_tilt else ())


@dataclass(frozen=True)
class ReplayOptions:
    """One replay (the command line's options, module docstring)."""

    tilts: int = 8
    size: int = 4096
    frames: int = 10
    pace_s: float = 8.0
    frame_interval_s: float = 0.2
    format: str = "tiff"
    arrival: str = "frames"
    patches: str = "auto"
    streaming: bool = True
    eer_raw_frames: int = 400
    eer_group_frames: int = 40
    dose_per_tilt: bool = False
    quiet_cores: float = 0.0
    dask_workers: int = 0
    restart_after: int = 0
    full_size_warmup: bool = True
    gain: bool = False


def _dask_cluster(directory: Path, workers: int):
    """A scheduler and ``workers`` one-thread worker processes on localhost (tests/dask/dask_helpers.py)."""
    if str(ROOT / "tests" / "dask") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests" / "dask"))
    from dask_helpers import LocalDask

    cluster = LocalDask(directory)
    cluster.start_scheduler()
    for i in range(workers):
        cluster.start_worker(f"w{i + 1}")
    return cluster


def replay(*, workdir: Path, **options) -> dict:
    """Run one replay in ``workdir`` (keyword options: :class:`ReplayOptions`); the results as a dict."""
    from framewatch.daemon.commands.simulated_acquisition import Acquisition

    o = ReplayOptions(**options)
    acq = Acquisition(workdir / "acq", n_tilts=o.tilts, shape=(o.size, o.size), n_frames=o.frames,
                      dose_per_tilt_e_per_a2=3.0)
    t = time.perf_counter()
    movies = stage_movies(acq, fmt=o.format, tilts=o.tilts, eer_raw_frames=o.eer_raw_frames, stage=workdir / "stage")
    staged_s = time.perf_counter() - t
    waited_quiet_s = wait_until_quiet(o.quiet_cores) if o.quiet_cores else 0.0
    load_at_start = os.getloadavg()
    foreign = ForeignCpu()
    foreign.start()
    floor = floor_s(movies[0].staged)
    cluster = _dask_cluster(workdir / "dask", o.dask_workers) if o.dask_workers else None
    try:
        extra = _watch_flags(o) + (("--dask-address", cluster.address) if cluster else ())
        if o.gain:
            from framewatch.core.movie_io.write import write_image_mrc

            write_image_mrc(workdir / "gain.mrc", np.ones((o.size, o.size), np.float32), pixel_size_a=acq.pixel_size_a)
            extra += ("--gain", str(workdir / "gain.mrc"))
        events, closed, rows = run_daemon(acq, movies, fmt=o.format, arrival=o.arrival, patches=o.patches,
                                          streaming=o.streaming, pace_s=o.pace_s,
                                          exposure_s=o.frames * o.frame_interval_s, workdir=workdir, extra=extra,
                                          restart_after=o.restart_after, full_size_warmup=o.full_size_warmup)
    finally:
        if cluster is not None:
            cluster.cleanup()  # reaped before the foreign-work count: its processes are this run's
    foreign_cores = foreign.stop()
    tilts, problems = per_tilt(events, closed, rows)
    lat = [t["latency_s"] for t in tilts]
    if tilts and floor["n_frames"] != tilts[0]["n_frames"]:
        problems.append(f"the floor decoded {floor['n_frames']} frames, the daemon corrected {tilts[0]['n_frames']}")
    backlog = [e.get("queued", 0) for e in events if e["event"] == "backlog"]
    warmed = [{"warmup_s": e.get("warmup_s"), "full_size": e.get("full_size"), "full_size_from": e.get("full_size_from")}
              for e in events if e["event"] == "kernels_warmed"]
    return {
        **o.__dict__, "file_frames": movies[0].file_frames, "staged_s": staged_s,
        "waited_quiet_s": waited_quiet_s, "foreign_cores": foreign_cores, "load_average_at_start": load_at_start,
        "floor_s": floor["seconds"], "floor": floor, "per_tilt": tilts, "problems": problems,
        "latency_s": lat, "latency_median_s": statistics.median(lat) if lat else None,
        "latency_max_s": max(lat) if lat else None, "correct_s": [t["correct_s"] for t in tilts],
        "peak_backlog": max(backlog, default=0), "warmups": warmed,
        "stream_started": sum(e["event"] == "stream_started" for e in events),
        "stream_dropped": [e.get("reason") for e in events if e["event"] == "stream_dropped"],
        "load_average": os.getloadavg(),
    }


def report(res: dict) -> str:
    floor = res["floor_s"]
    head = (f"{res['format']} {res['size']}^2 x {res['frames']} ({res['file_frames']} frames in the file), "
            f"arrival {res['arrival']}, patches {res['patches']}, streaming {'on' if res['streaming'] else 'off'}, "
            + (f"Dask backend ({res['dask_workers']} one-thread workers on localhost), " if res.get("dask_workers") else "")
            + f"{len(res['per_tilt'])}/{res['tilts']} tilts at one per {res['pace_s']:g} s")
    lines = [head, f"floor (fresh process, decode + rfft2 per frame): {floor:.2f} s"]
    if res["latency_median_s"] is not None:
        lines.append(f"closed -> tilt_corrected: median {res['latency_median_s']:.2f} s = "
                     f"{res['latency_median_s'] / floor:.2f} x floor, max {res['latency_max_s']:.2f} s = "
                     f"{res['latency_max_s'] / floor:.2f} x floor")
    lines.append(f"{'movie':24} {'latency':>8} {'found':>6} {'wait':>6} {'correct':>8} {'append':>7} "
                 f"{'streamed':>8} signal")
    for t in res["per_tilt"]:
        found = "-" if t["found_complete_after_s"] is None else f"{t['found_complete_after_s']:.2f}"
        lines.append(f"{t['movie']:24} {t['latency_s']:8.2f} {found:>6} {t['wait_s'] or 0:6.2f} "
                     f"{t['correct_s'] or 0:8.2f} {t['append_s'] or 0:7.2f} {str(t['streamed_frames']):>8} "
                     f"{t['complete_signal']}")
    if res["per_tilt"]:
        mid = sorted(res["per_tilt"], key=lambda t: t["latency_s"])[len(res["per_tilt"]) // 2]
        lines.append(f"engine stages of {mid['movie']} (s): "
                     + " ".join(f"{k} {v:.2f}" for k, v in mid["engine_s"].items()))
    for i, w in enumerate(res.get("warmups", [])):
        lines.append(f"start {i + 1}: warm-up {w['warmup_s']:.2f} s"
                     + (f", with a full-size movie {w['full_size']} (from the {w.get('full_size_from')})"
                        if w["full_size"] else "")
                     + (f" (before tilt {res['restart_after'] + 1})" if i == 1 else ""))
    lines.append(f"streams started {res['stream_started']}, dropped {len(res['stream_dropped'])}"
                 + "".join(f"\n  dropped: {r}" for r in res["stream_dropped"]))
    lines.append("load average at the start (after the staging and any quiet wait of "
                 f"{res['waited_quiet_s']:.0f} s): " + " ".join(f"{x:.2f}" for x in res["load_average_at_start"])
                 + "; at the end: " + " ".join(f"{x:.2f}" for x in res["load_average"]))
    lines.append(f"other work on the machine during the floor and the run: {res['foreign_cores']:.2f} cores (mean)")
    lines += [f"PROBLEM: {p}" for p in res["problems"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.daemon_replay", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tilts", type=int, default=8)
    p.add_argument("--size", type=int, default=4096, help="frame size in pixels (square)")
    p.add_argument("--frames", type=int, default=10, help="frames per movie (EER: fractions)")
    p.add_argument("--pace-s", type=float, default=8.0, help="seconds from one tilt's start to the next")
    p.add_argument("--frame-interval-s", type=float, default=0.2,
                   help="seconds between frames while writing (the exposure is frames x this)")
    p.add_argument("--format", choices=("tiff", "mrc", "eer"), default="tiff", help="tiff: LZW")
    p.add_argument("--arrival", choices=("frames", "rename"), default="frames")
    p.add_argument("--patches", choices=("auto", "0"), default="auto",
                   help="[processing] patches: auto (local motion by evidence) or 0 (whole frame)")
    p.add_argument("--no-streaming", action="store_true", help="pass --no-streaming to framewatch watch")
    p.add_argument("--eer-raw-frames", type=int, default=400, help="EER: raw frames per movie")
    p.add_argument("--eer-group-frames", type=int, default=40,
                   help="EER: raw frames per fraction (RELION's --eer_grouping); 0 = the daemon's default rule "
                        "(a dose target of 0.3 e/A^2 per fraction)")
    p.add_argument("--dose-per-tilt", action="store_true",
                   help="pass the tilt dose (3 e/A^2) to the daemon, as a Tomography 5 user does (known before the mdoc line)")
    p.add_argument("--quiet-cores", type=float, default=0.0, metavar="C",
                   help="after the staging, wait until fewer than C cores are busy (5 s samples) before the floor")
    p.add_argument("--dask-workers", type=int, default=0, metavar="N",
                   help="run the daemon on the Dask backend: a scheduler and N one-thread workers on localhost")
    p.add_argument("--restart-after", type=int, default=0, metavar="K",
                   help="stop the daemon after K tilts and start it again on the same state (the first tilt after a start)")
    p.add_argument("--no-full-size-warmup", action="store_true", help="[service] warmup_full_size = false")
    p.add_argument("--gain", action="store_true", help="give the daemon a gain reference of ones (module docstring)")
    p.add_argument("--keep", type=Path, help="work in this (new) folder and keep it")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    options = {k: v for k, v in vars(args).items() if k not in ("keep", "json", "no_streaming", "no_full_size_warmup")}
    options["streaming"] = not args.no_streaming
    options["full_size_warmup"] = not args.no_full_size_warmup
    if args.keep is not None:
        args.keep.mkdir(parents=True)
        res = replay(workdir=args.keep, **options)
    else:
        with tempfile.TemporaryDirectory(prefix="framewatch-replay-") as tmp:
            res = replay(workdir=Path(tmp), **options)
    print(report(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    return 1 if res["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
