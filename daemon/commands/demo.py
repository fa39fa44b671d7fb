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


def run(args: argparse.Namespace, *, stream=None) -> int:
    stream = stream or sys.stdout
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="framewatch-demo-"))
    acq_dir, out_dir, state_dir = base / "acquisition", base / "out", base / "state"
    for d in (acq_dir, out_dir, state_dir):
        d.mkdir(parents=True, exist_ok=True)
    px = 1.5
    cfg = base / "framewatch.toml"
    cfg.write_text(CONFIG.format(px=px, quiet=max(3.0, 2 * args.tilt_interval)))
    print(f"framewatch demo in {base}", file=stream)
    print(f"  acquisition: {acq_dir}  (simulated: {args.tilts} tilts, {args.frames} frames of {args.size} x {args.size} px)",
          file=stream)
    print(f"  daemon:      framewatch watch {acq_dir} --out {out_dir} --state {state_dir} --config {cfg}",
          file=stream, flush=True)
    log_file = open(base / "daemon.log", "ab")
    cmd = [sys.executable, "-m", "framewatch.daemon.commands.cli", "watch", str(acq_dir), "--out", str(out_dir),
           "--state", str(state_dir), "--config", str(cfg)]
    daemon = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    acq = Acquisition(acq_dir, n_tilts=args.tilts, step_deg=args.step, shape=(args.size, args.size), n_frames=args.frames,
                      pixel_size_a=px, frame_interval_s=args.frame_interval, tilt_interval_s=args.tilt_interval)
    stop = threading.Event()
    errors: list[BaseException] = []

    def acquire():
        try:
            acq.run(stop=stop)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    log = out_dir / "framewatch.jsonl"
    color = not args.no_color and hasattr(stream, "isatty") and stream.isatty()
    started = False
    thread = threading.Thread(target=acquire, daemon=True)
    deadline = time.time() + args.timeout
    done = threading.Event()
    code = 1

    def watchdog():
        while not done.is_set():
            if time.time() > deadline or daemon.poll() is not None:
                done.set()
                return
            time.sleep(0.2)

    threading.Thread(target=watchdog, daemon=True).start()
    try:
        for ev in follow(log, once=False, stop=done):
            kind = ev.get("event")
            if kind == "daemon_ready" and not started:
                print(f"daemon ready ({ev.get('backend')}); acquiring ...\n", file=stream)
                print(header(), file=stream, flush=True)
                started = True
                thread.start()
            line = format_line(ev, color=color)
            if line is not None:
                print(line, file=stream, flush=True)
            if kind == "series_completed":
                code = 0
                break
    except KeyboardInterrupt:
        pass
    finally:
        done.set()
        stop.set()
        if daemon.poll() is None:
            os.kill(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                daemon.kill()
        log_file.close()
    if errors:
        print(f"framewatch demo: the simulated acquisition failed: {errors[0]}", file=sys.stderr)
        return 1
    if code != 0:
        print(f"framewatch demo: the series did not complete (daemon log: {base / 'daemon.log'})", file=sys.stderr)
        return 1
    series = sorted(p for p in out_dir.iterdir() if p.is_dir())
    print(f"\noutputs in {out_dir}:", file=stream)
    for s in series:
        for f in sorted(s.iterdir()):
            if not f.name.startswith("."):
                print(f"  {f.relative_to(out_dir)}", file=stream)
    print(f"  framewatch.jsonl (drift log; `framewatch tail {out_dir}` shows it again)", file=stream)
    return 0

