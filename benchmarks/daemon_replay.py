"""Replay a simulated tilt series into a watched directory at a real pace and measure the daemon.

    python -m benchmarks.daemon_replay [--tilts 10] [--size 2048] [--frames 10] [--pace-s 4] [--json F]

Movies are written frame by frame (MRC and TIFF alternating, with the growing SerialEM mdoc) by
:class:`framewatch.daemon.commands.simulated_acquisition.Acquisition`; ``framewatch watch`` runs as a real process with
default settings. Reported: the complete->appended latency of every tilt (from the drift log's
``latency_s``), the correction time, the peak backlog and whether it kept up.
"""
from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = """\
[processing]
pixel_size_a = 1.5

[watch]
scan_period_s = 2.0
"""


def replay(*, tilts: int, size: int, frames: int, pace_s: float, frame_interval_s: float, workdir: Path) -> dict:
    from framewatch.daemon.commands.simulated_acquisition import Acquisition

    acq_dir, out, state = workdir / "acq", workdir / "out", workdir / "state"
    acq_dir.mkdir(parents=True)
    config = workdir / "framewatch.toml"
    config.write_text(CONFIG)
    acq = Acquisition(acq_dir, n_tilts=tilts, shape=(size, size), n_frames=frames, frame_interval_s=frame_interval_s,
                      tilt_interval_s=0.0, dose_per_tilt_e_per_a2=3.0)
    movies = [acq.frames_for(i) for i in range(tilts)]  # simulate before the clock starts
    log = open(workdir / "daemon.out", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "framewatch.daemon.commands.cli", "watch", str(acq_dir), "--out", str(out),
                             "--state", str(state), "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
    drift = out / "framewatch.jsonl"
    try:
        deadline = time.time() + 300
        while not (drift.exists() and "daemon_ready" in drift.read_text()):
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError(f"daemon did not become ready; see {workdir / 'daemon.out'}")
            time.sleep(0.2)
        acq.start_mdoc()
        start = time.time()
        for i in range(tilts):
            t0 = time.time()
            acq.write_tilt(i, frames=movies[i])
            time.sleep(max(0.0, pace_s - (time.time() - t0)))
        deadline = time.time() + 120 + tilts * 30
        while True:
            events = [json.loads(x) for x in drift.read_text().splitlines() if x.strip()]
            done = [e for e in events if e.get("event") == "tilt_corrected"]
            if len(done) >= tilts or time.time() > deadline:
                break
            time.sleep(0.5)
        wall = time.time() - start
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()
    latency = [e["latency_s"] for e in done if e.get("latency_s") is not None]
    correction = [e.get("correct_s") for e in done]
    backlog = [e.get("queued", 0) for e in events if e.get("event") == "backlog"]
    return {
        "tilts": tilts, "size": size, "frames": frames, "pace_s": pace_s, "tilts_done": len(done),
        "wall_s": wall, "latency_s": latency,
        "latency_median_s": statistics.median(latency) if latency else None,
        "latency_max_s": max(latency) if latency else None,
        "correct_s": [c for c in correction if c is not None],
        "peak_backlog": max(backlog) if backlog else 0,
        "kept_up": len(done) == tilts and (max(latency) if latency else 1e9) < pace_s + 5,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.daemon_replay", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tilts", type=int, default=10)
    p.add_argument("--size", type=int, default=2048, help="frame size in pixels (square)")
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--pace-s", type=float, default=4.0, help="seconds from one tilt's start to the next")
    p.add_argument("--frame-interval-s", type=float, default=0.05, help="seconds between frames while writing")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="framewatch-replay-") as tmp:
        res = replay(tilts=args.tilts, size=args.size, frames=args.frames, pace_s=args.pace_s,
                     frame_interval_s=args.frame_interval_s, workdir=Path(tmp))
    lat = res["latency_s"]
    print(f"{res['tilts_done']}/{res['tilts']} tilts of {args.size}^2 x {args.frames} at one per {args.pace_s:g} s "
          f"in {res['wall_s']:.1f} s; complete->appended latency median {res['latency_median_s']:.2f} s, "
          f"max {res['latency_max_s']:.2f} s; peak backlog {res['peak_backlog']}; kept up: {res['kept_up']}")
    if lat:
        print("latency per tilt (s): " + " ".join(f"{x:.2f}" for x in lat))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
