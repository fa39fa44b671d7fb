"""`framewatch watch` as a real subprocess under a fake systemd: the notify protocol (READY only
after the warm-up, then STATUS and WATCHDOG, STOPPING on SIGTERM), the metrics endpoint after a
simulated series, the plot, a second instance, SIGTERM during a correction, SIGHUP reloads."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mrcfile
from daemon_helpers import TEST_CONFIG, DaemonProc, read_journal

from framewatch.daemon.commands.simulated_acquisition import Acquisition

SERVICE_CONFIG = TEST_CONFIG + """
[service]
shutdown_timeout_s = 30.0
stuck_movie_s = 300.0

[metrics]
address = "127.0.0.1:0"
"""


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def n_sections(path) -> int:
    if not path.exists():
        return 0
    with mrcfile.open(path, header_only=True, permissive=True) as m:
        return int(m.header.nz)


def test_notify_metrics_plot_and_stop(tmp_path, notify_socket, monkeypatch):
    """READY after the warm-up; STATUS and WATCHDOG while it works; metrics and the plot after a
    series; STOPPING on SIGTERM and exit 0."""
    d = DaemonProc(tmp_path, SERVICE_CONFIG)
    seen_at_ready = {}

    def on_message(msg):
        if msg.startswith("READY=1") and "events" not in seen_at_ready:
            seen_at_ready["events"] = [e["event"] for e in d.events()]

    notify_socket.on_message = on_message
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.path)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")  # 1 s: a ping every 0.5 s
    try:
        d.start()
        t_ready, ready = notify_socket.wait_for(lambda m: m.startswith("READY=1"), timeout=120)
        # READY only after every kernel was compiled (the drift log is written before READY is sent)
        assert "kernels_warmed" in seen_at_ready["events"] and "daemon_ready" in seen_at_ready["events"]
        warmed = next(e for e in d.events() if e["event"] == "kernels_warmed")
        assert {"whole_frame", "patches_2x2_warp"} <= set(warmed["steps_s"])
        assert warmed["daemon_s"] >= 0  # the daemon's own kernels (the stacks' header statistics) too
        before = [m for t, m in notify_socket.messages if t < t_ready]
        assert "WATCHDOG=1" not in before and any(m.startswith("STATUS=compiling kernels") for m in before)
        serving = next(e for e in d.events() if e["event"] == "metrics_serving")
        assert serving["address"] == "127.0.0.1"
        url = f"http://127.0.0.1:{serving['port']}/metrics"

        acq = Acquisition(d.acq, n_tilts=3, shape=(128, 128), n_frames=6, frame_interval_s=0.0, tilt_interval_s=0.0)
        acq.run()
        tilts = []
        for z in range(3):
            tilts.append(d.wait_event(lambda e, z=z: e["event"] == "tilt_corrected" and e["z"] == z, timeout=90))
        notify_socket.wait_for(lambda m: m.startswith("STATUS=") and "last TS_01 z=2" in m, timeout=10)
        notify_socket.wait_for(lambda m: m == "WATCHDOG=1", timeout=5)
        print("correction time of the first, second, third movie after READY (s):", [t["correct_s"] for t in tilts])

        # metrics, after the series
        v = scrape(url)
        assert v["framewatch_movies_seen_total"] == 3
        assert v["framewatch_movies_done_total"] == 3
        assert v['framewatch_series_tilts_done{series="TS_01"}'] == 3
        assert v["framewatch_queue_depth"] == 0 and v["framewatch_movies_processing"] == 0
        assert v["framewatch_last_tilt_total_motion_angstrom"] == tilts[-1]["total_motion_a"]
        assert v["framewatch_last_tilt_early_motion_angstrom"] == tilts[-1]["early_motion_a"]
        assert abs(v["framewatch_correction_seconds_sum"] - sum(t["correct_s"] for t in tilts)) < 1e-3
        assert v["framewatch_correction_seconds_count"] == 3
        assert v["framewatch_processing_lag_seconds_count"] == 3
        flagged = sum(1 for e in d.events() if e["event"] == "tilt_flagged")
        assert v["framewatch_tilts_flagged_total"] == flagged
        assert v["framewatch_kernel_warmup_seconds"] == next(e for e in d.events() if e["event"] == "daemon_ready")["warmup_s"]
        assert v["framewatch_output_free_bytes"] > 0 and v["framewatch_intake_paused"] == 0
        assert "framewatch_oldest_waiting_movie_age_seconds" in v

        # the plot of the series, redrawn after the last tilt
        png = d.out / "TS_01" / "TS_01.drift.png"
        deadline = time.time() + 20
        while not png.exists() and time.time() < deadline:
            time.sleep(0.1)
        assert png.read_bytes()[:4] == b"\x89PNG"
        # the drift log carries each tilt's trajectory, so `framewatch plot` can redraw it
        assert len(tilts[0]["shifts_px"]) == 6 and tilts[0]["shifts_px"][0] == [0.0, 0.0]

        t_term = time.time()
        assert d.stop(timeout=60) == 0
        stopping = [m for t, m in notify_socket.messages if m.startswith("STOPPING=1")]
        assert stopping and [t for t, m in notify_socket.messages if m.startswith("STOPPING=1")][0] >= t_term
        assert d.events()[-1]["event"] == "daemon_stopped"

        # on demand, from the daemon's own tilt table and drift log
        from framewatch.daemon.commands.cli import main
        from framewatch.daemon.outputs.plots import load_series

        data = load_series(d.out / "TS_01")
        assert len(data.records) == 3 and sorted(data.trajectories) == [0, 1, 2]
        assert main(["plot", str(d.out / "TS_01"), "-o", str(tmp_path / "again.png")]) == 0
        assert (tmp_path / "again.png").read_bytes()[:4] == b"\x89PNG"
    finally:
        d.cleanup()


def test_second_instance_is_refused(tmp_path):
    """A second daemon on the same state directory exits at once, naming the pid and the directory."""
    d = DaemonProc(tmp_path)
    try:
        first = d.start()
        d.wait_ready()
        cmd = [sys.executable, "-m", "framewatch.daemon.commands.cli", "watch", str(d.acq), "--out", str(d.out),
               "--state", str(d.state),
               "--config", str(d.config)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert p.returncode == 2
        assert f"another framewatch (pid {first.pid}) is already running on the state directory {d.state}" in p.stderr, p.stderr
        assert first.poll() is None  # the first one is untouched
        assert d.stop() == 0
    finally:
        d.cleanup()


def _catches(pid: int, signum: int) -> bool:
    """Whether the process has a handler for ``signum`` (its SigCgt mask in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def test_sigterm_during_the_imports_stops_cleanly(tmp_path):
    """A SIGTERM while ``framewatch watch`` still imports numpy, scipy and numba (the first second
    of a start) is held and acted on once the main loop runs: exit 0 and a ``daemon_stopped`` line,
    not death by signal 15."""
    d = DaemonProc(tmp_path)
    try:
        proc = d.start()
        deadline = time.time() + 30
        while not _catches(proc.pid, signal.SIGTERM):
            assert proc.poll() is None and time.time() < deadline, d.output()
            time.sleep(0.001)
        loaded = Path(f"/proc/{proc.pid}/maps").read_text()
        os.kill(proc.pid, signal.SIGTERM)
        assert "numpy" not in loaded, "the SIGTERM handler came only after numpy was imported"
        assert proc.wait(120) == 0, d.output()
        events = [e["event"] for e in d.events()]
        assert "daemon_started" in events and events[-1] == "daemon_stopped", events
    finally:
        d.cleanup()


def test_sigterm_during_correction_abandons_cleanly_then_completes(tmp_path):
    """A movie still in a worker when the shutdown timeout ends is abandoned: exit 0, no section of
    it anywhere, journalled as not done; the next start corrects it."""
    d = DaemonProc(tmp_path, TEST_CONFIG + "\n[service]\nshutdown_timeout_s = 1.0\n")
    try:
        acq = Acquisition(d.acq, n_tilts=2, shape=(128, 128), n_frames=6, frame_interval_s=0.0, tilt_interval_s=0.0)
        acq.start_mdoc()
        acq.write_tilt(0)
        d.start(pause_at="worker_reading")  # the worker stops inside the correction
        d.wait_marker("worker_reading")
        t0 = time.time()
        os.kill(d.proc.pid, signal.SIGTERM)
        assert d.proc.wait(30) == 0
        assert time.time() - t0 < 15
        ev = {e["event"]: e for e in d.events()}
        assert ev["movie_abandoned"]["movie"].endswith(acq.written[0].path.name)
        assert "shutdown_timeout_s = 1" in ev["movie_abandoned"]["reason"]
        assert "tilt_corrected" not in ev and "movie_interrupted" not in ev
        for suffix in ("", "_EVN", "_ODD"):
            assert n_sections(d.out / "TS_01" / f"TS_01{suffix}.mrc") == 0
        rows = read_journal(d.state)
        assert [(r["state"], r["z"], r["interruptions"]) for r in rows] == [("seen", None, 0)]

        n = len(d.events())
        d.start()
        d.wait_event(lambda e: e["event"] == "tilt_corrected" and e["z"] == 0, after=n, timeout=90)
        acq.write_tilt(1)
        d.wait_event(lambda e: e["event"] == "tilt_corrected" and e["z"] == 1, after=n, timeout=60)
        assert d.stop() == 0
        done = sorted((r["z"], r["path"]) for r in read_journal(d.state) if r["state"] == "done")
        assert done == [(0, str(acq.written[0].path)), (1, str(acq.written[1].path))]
        for suffix in ("", "_EVN", "_ODD"):
            assert n_sections(d.out / "TS_01" / f"TS_01{suffix}.mrc") == 2
    finally:
        d.cleanup()


def test_sighup_reload(tmp_path):
    """A broken file on SIGHUP: logged, the old configuration stays; a valid one: applied."""
    d = DaemonProc(tmp_path)
    try:
        acq = Acquisition(d.acq, n_tilts=2, shape=(128, 128), n_frames=6, frame_interval_s=0.0, tilt_interval_s=0.0)
        acq.start_mdoc()
        d.start()
        d.wait_ready()
        good = d.config.read_text()
        d.config.write_text(good.replace("settle_s = 2.0", "setle_s = 2.0"))
        n = len(d.events())
        os.kill(d.proc.pid, signal.SIGHUP)
        failed = d.wait_event(lambda e: e["event"] == "config_reload_failed", after=n, timeout=20)
        assert "unknown key 'setle_s' in [watch]; did you mean 'settle_s'?" in failed["reason"]
        assert d.proc.poll() is None
        # still running, on the old configuration (total motion limit 15 A: no flag)
        acq.write_tilt(0)
        t0 = d.wait_event(lambda e: e["event"] == "tilt_corrected" and e["z"] == 0, timeout=60)
        assert not [f for f in t0["flags"] if f.startswith("total motion")]
        # a valid change takes effect
        d.config.write_text(good.replace("total_motion_a = 15.0", "total_motion_a = 0.01").replace("[scheduler]", "[scheduler]"))
        n = len(d.events())
        os.kill(d.proc.pid, signal.SIGHUP)
        ok = d.wait_event(lambda e: e["event"] == "config_reloaded", after=n, timeout=20)
        assert ok["changed"] == ["thresholds.total_motion_a"] and ok["needs_restart"] == []
        acq.write_tilt(1)
        t1 = d.wait_event(lambda e: e["event"] == "tilt_corrected" and e["z"] == 1, timeout=60)
        assert any(f.startswith("total motion") and "0.01 A" in f for f in t1["flags"]), t1["flags"]
        assert d.stop() == 0
    finally:
        d.cleanup()
