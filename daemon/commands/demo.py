"""``framewatch demo [DIR]``: watch framewatch work on a simulated acquisition.

Writes ``DIR/framewatch.toml``, starts ``framewatch watch DIR/acquisition --out DIR/out --state
DIR/state`` as a separate process, simulates a short dose-symmetric tilt series into
``DIR/acquisition`` (movies written frame by frame, TIFF and MRC alternating, with the growing
tilt-series mdoc) and shows the live drift table until the series is complete. Then it stops the
daemon (SIGTERM: a clean drain) and tells where the outputs are. Without DIR a temporary
directory is used and kept.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from framewatch.daemon.commands.simulated_acquisition import Acquisition
from framewatch.daemon.commands.tail import follow, format_line, header


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="simulate a tilt-series acquisition, run the daemon on it and show the live table",
        description="Simulate a short dose-symmetric tilt series written frame by frame (with its mdoc) in DIR, "
        "run `framewatch watch` on it and show the live drift table until the series is complete.",
    )
    p.add_argument("dir", nargs="?", metavar="DIR", help="working directory (default: a new temporary one)")
    p.add_argument("--tilts", type=int, default=9, help="tilts in the series (default 9)")
    p.add_argument("--step", type=float, default=3.0, help="tilt step in degrees (default 3)")
    p.add_argument("--size", type=int, default=384, help="frame size in pixels (default 384)")
    p.add_argument("--frames", type=int, default=8, help="frames per movie (default 8)")
    p.add_argument("--frame-interval", type=float, default=0.1, help="seconds between frames (default 0.1)")
    p.add_argument("--tilt-interval", type=float, default=1.5, help="seconds between movies (default 1.5)")
    p.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds (default 300)")
    p.add_argument("--no-color", action="store_true", help="no ANSI colours")
    p.set_defaults(func=run)


CONFIG = """\
# written by `framewatch demo`
[processing]
pixel_size_a = {px}
# the dose comes from the mdoc's ExposureDose

[watch]
scan_period_s = 2.0
settle_s = 5.0

[series]
mdoc_quiet_s = {quiet}
idle_s = 60.0
"""


DEMO_PIXEL_SIZE_A = 1.5


@dataclass(frozen=True)
class DemoDirs:
    """Where the demo writes: the simulated acquisition, the daemon's outputs, state, configuration and log."""

    base: Path
    acquisition: Path
    out: Path
    state: Path
    config: Path
    daemon_log: Path


def run(args: argparse.Namespace, *, stream=None) -> int:
    stream = stream or sys.stdout
    dirs = _prepare(args, stream)
    log_file = open(dirs.daemon_log, "ab")
    daemon = _start_daemon(dirs, log_file)
    acq = Acquisition(dirs.acquisition, n_tilts=args.tilts, step_deg=args.step, shape=(args.size, args.size),
                      n_frames=args.frames, pixel_size_a=DEMO_PIXEL_SIZE_A, frame_interval_s=args.frame_interval,
                      tilt_interval_s=args.tilt_interval)
    stop = threading.Event()
    errors: list[BaseException] = []

    def acquire():
        try:
            acq.run(stop=stop)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    done = threading.Event()
    color = not args.no_color and hasattr(stream, "isatty") and stream.isatty()
    code = 1
    threading.Thread(target=_watchdog, args=(daemon, time.time() + args.timeout, done), daemon=True).start()
    try:
        code = _show_until_complete(dirs.out / "framewatch.jsonl", threading.Thread(target=acquire, daemon=True),
                                    done, stream=stream, color=color)
    except KeyboardInterrupt:
        pass
    finally:
        done.set()
        stop.set()
        _stop_daemon(daemon)
        log_file.close()
    if errors:
        print(f"framewatch demo: the simulated acquisition failed: {errors[0]}", file=sys.stderr)
        return 1
    if code != 0:
        print(f"framewatch demo: the series did not complete (daemon log: {dirs.daemon_log})", file=sys.stderr)
        return 1
    _list_outputs(dirs.out, stream)
    return 0


def _prepare(args: argparse.Namespace, stream) -> DemoDirs:
    """Make the demo's directories and configuration and say what will run."""
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="framewatch-demo-"))
    dirs = DemoDirs(base, base / "acquisition", base / "out", base / "state", base / "framewatch.toml", base / "daemon.log")
    for d in (dirs.acquisition, dirs.out, dirs.state):
        d.mkdir(parents=True, exist_ok=True)
    dirs.config.write_text(CONFIG.format(px=DEMO_PIXEL_SIZE_A, quiet=max(3.0, 2 * args.tilt_interval)))
    print(f"framewatch demo in {base}", file=stream)
    print(f"  acquisition: {dirs.acquisition}  (simulated: {args.tilts} tilts, {args.frames} frames of {args.size} x "
          f"{args.size} px)", file=stream)
    print(f"  daemon:      framewatch watch {dirs.acquisition} --out {dirs.out} --state {dirs.state} --config {dirs.config}",
          file=stream, flush=True)
    return dirs


def _start_daemon(dirs: DemoDirs, log_file) -> subprocess.Popen:
    """``framewatch watch`` on the demo's directories, in its own session, its output to ``log_file``."""
    cmd = [sys.executable, "-m", "framewatch.daemon.commands.cli", "watch", str(dirs.acquisition), "--out", str(dirs.out),
           "--state", str(dirs.state), "--config", str(dirs.config)]
    return subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)


def _watchdog(daemon: subprocess.Popen, deadline: float, done: threading.Event) -> None:
    """Set ``done`` at the deadline (epoch seconds) or when the daemon has exited."""
    while not done.is_set():
        if time.time() > deadline or daemon.poll() is not None:
            done.set()
            return
        time.sleep(0.2)


def _show_until_complete(log: Path, acquisition: threading.Thread, done: threading.Event, *, stream, color: bool) -> int:
    """Follow the drift log ``log``: start ``acquisition`` when the daemon is ready, print the live
    table; 0 once the series is complete, 1 when ``done`` ends it first."""
    started = False
    for ev in follow(log, once=False, stop=done):
        kind = ev.get("event")
        if kind == "daemon_ready" and not started:
            print(f"daemon ready ({ev.get('backend')}); acquiring ...\n", file=stream)
            print(header(), file=stream, flush=True)
            started = True
            acquisition.start()
        line = format_line(ev, color=color)
        if line is not None:
            print(line, file=stream, flush=True)
        if kind == "series_completed":
            return 0
    return 1


def _stop_daemon(daemon: subprocess.Popen) -> None:
    """SIGTERM (a clean drain), then a kill after 60 s."""
    if daemon.poll() is None:
        os.kill(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()


def _list_outputs(out_dir: Path, stream) -> None:
    series = sorted(p for p in out_dir.iterdir() if p.is_dir())
    print(f"\noutputs in {out_dir}:", file=stream)
    for s in series:
        for f in sorted(s.iterdir()):
            if not f.name.startswith("."):
                print(f"  {f.relative_to(out_dir)}", file=stream)
    print(f"  framewatch.jsonl (drift log; `framewatch tail {out_dir}` shows it again)", file=stream)
