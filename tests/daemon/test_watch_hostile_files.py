"""Issue 14 (intake side), acceptance: hostile files dropped into the watch directory all at once --
a FIFO mdoc, a FIFO named like a frame mdoc, a FIFO and a socket named like movies, a frame mdoc
and a movie linked to /dev/zero, an mdoc linked to a file outside the root, a movie whose name is
not UTF-8, a series mdoc dated in the year 1, a 5 MB mdoc of random bytes appended to again and
again, a movie named like a gain reference -- then good movies. The real daemon process must take
the good movies, keep its own RSS under 1.5 GB (read from /proc), log a bounded amount per mdoc
change, stop within 30 s of SIGTERM, and no stack may hold a non-finite value."""
import os
import shutil
import signal
import socket
import threading
import time

import mrcfile
import numpy as np
from daemon_helpers import TEST_CONFIG, DaemonProc
from tiff_bombs import deflate_bomb_tiff

from framewatch.daemon.commands.simulated_acquisition import Acquisition

RSS_LIMIT_KB = 1.5 * 1024 * 1024  # 1.5 GB


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class RssSampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak_kb, self.samples = pid, 0, 0
        self.stop_event = threading.Event()

    def run(self):
        while not self.stop_event.is_set():
            try:
                self.peak_kb = max(self.peak_kb, _rss_kb(self.pid))
                self.samples += 1
            except OSError:
                return
            time.sleep(0.05)


def test_hostile_files_at_once_then_good_movies(tmp_path):
    # plots off: six series complete at the end, and their plots (a thread of the daemon) are not
    # what is tested here (a plot thread still rendering when the daemon exits can abort the exit)
    daemon = DaemonProc(tmp_path / "d", TEST_CONFIG + "\n[plots]\nenabled = false\n")
    try:
        _run(daemon, tmp_path)
    finally:
        daemon.cleanup()


def _run(daemon, tmp_path):
    acq = Acquisition(daemon.acq, n_tilts=3, shape=(128, 128), n_frames=8, frame_interval_s=0.01, tilt_interval_s=0.0)
    acq.start_mdoc()
    first = acq.write_tilt(0)
    proc = daemon.start("--dose-per-tilt", "3")
    daemon.wait_ready(timeout=600)  # the kernels compile first (slow on a loaded machine)
    rss = RssSampler(proc.pid)
    rss.start()
    w = daemon.acq
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.mrc.mdoc").write_text("[ZValue = 0]\nTiltAngle = 63\nSubFramePath = D:\\x\\TS_01_001_3.0.mrc\n")
    log_before = daemon.log.stat().st_size
    # --- all at once
    os.mkfifo(w / "f.mdoc")  # a FIFO mdoc
    os.mkfifo(w / "m_000_0.0.tif.mdoc")  # a FIFO named like the frame mdoc of the movie next to it
    shutil.copy(first.path, w / "m_000_0.0.tif")
    os.mkfifo(w / "p_000_0.0.tif")  # a FIFO named like a movie
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(w / "s_000_0.0.mrc"))  # a socket named like a movie
    os.symlink("/dev/zero", w / "z_000_0.0.tif.mdoc")  # a frame mdoc leading to /dev/zero
    shutil.copy(first.path, w / "z_000_0.0.tif")
    os.symlink("/dev/zero", w / "zz_000_0.0.mrc")  # a movie leading to /dev/zero
    os.symlink(outside / "secret.mrc.mdoc", w / "link.mrc.mdoc")  # an mdoc leading out of the root
    bad = os.fsencode(str(w)) + b"/bad\xff_001_0.0.tif"  # not UTF-8
    shutil.copy(first.path, bad)
    d1 = w / "dated"
    d1.mkdir()
    shutil.copy(first.path, d1 / "Y1_000_0.0.tif")
    (d1 / "Y1.mrc.mdoc").write_text("[ZValue = 0]\nTiltAngle = 0\nExposureDose = 3\nSubFramePath = D:\\x\\Y1_000_0.0.tif\n"
                                    "NumSubFrames = 8\nDateTime = 01-Jan-0001  00:00:01\n\n")
    junk = w / "j.mdoc"
    # put in place whole (written outside, then renamed): a read of the 5 MB while it is being written
    # would be one more version of the file, and one more line, than the changes counted below
    (outside / "j.mdoc").write_bytes(np.random.default_rng(7).integers(0, 256, 5_000_000, dtype=np.uint8).tobytes())
    os.replace(outside / "j.mdoc", junk)
    shutil.copy(first.path, w / "TS_again_001_0.0.tif")  # "gain" only inside a word: a movie
    shutil.copy(first.path, w / "TS_01_gain.tif")  # a gain reference: ignored, said once
    # a 16 kB deflate bomb declaring one 30208 x 30000 uint16 page (1.8 GB): refused unread
    deflate_bomb_tiff(w / "bomb_000_0.0.tif", width=30208, height=30000, n_pages=1)
    # --- then the good movies of the series
    acq.write_tilt(1)
    acq.write_tilt(2)
    for _ in range(9):  # the junk mdoc changes again and again (each change: one bounded warning)
        with open(junk, "ab") as f:
            f.write(np.random.default_rng().integers(0, 256, 2000, dtype=np.uint8).tobytes())
        time.sleep(0.3)
    daemon.wait_event(lambda e: e["event"] == "series_completed" and e["series"] == "TS_01", timeout=120)
    daemon.wait_event(lambda e: e["event"] == "tilt_corrected" and e["movie"].endswith("bad\\xff_001_0.0.tif"), timeout=60)
    daemon.wait_event(lambda e: e["event"] == "tilt_corrected" and e["movie"].endswith("Y1_000_0.0.tif"), timeout=60)
    daemon.wait_event(lambda e: e["event"] == "tilt_corrected" and e["movie"].endswith("TS_again_001_0.0.tif"), timeout=60)
    daemon.wait_event(lambda e: e["event"] == "tilt_corrected" and e["movie"].endswith("/m_000_0.0.tif"), timeout=60)
    assert proc.poll() is None, daemon.output()
    # --- SIGTERM ends it within 30 s
    t0 = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(30) == 0
    stop_s = time.monotonic() - t0
    rss.stop_event.set()
    rss.join(5)
    sock.close()
    assert rss.samples > 10
    assert rss.peak_kb < RSS_LIMIT_KB, f"daemon RSS peaked at {rss.peak_kb / 1024:.0f} MB"
    assert stop_s < 30
    events = daemon.events()
    corrected = {os.path.basename(e["movie"]) for e in events if e["event"] == "tilt_corrected"}
    assert {p.path.name for p in acq.written} <= corrected
    assert {"bad\\xff_001_0.0.tif", "Y1_000_0.0.tif", "TS_again_001_0.0.tif", "m_000_0.0.tif", "z_000_0.0.tif"} <= corrected
    assert "TS_01_gain.tif" not in corrected and "p_000_0.0.tif" not in corrected and "zz_000_0.0.mrc" not in corrected
    ignored = [e for e in events if e["event"] == "file_ignored"]
    assert [os.path.basename(e["path"]) for e in ignored] == ["TS_01_gain.tif"]  # said once
    # the year-1 DateTime: a warning, the mtime orders the tilt
    y1 = next(e for e in events if e["event"] == "tilt_corrected" and e["movie"].endswith("Y1_000_0.0.tif"))
    assert y1["sources"]["acquisition_order"] == "mtime"
    warns = [e for e in events if e["event"] == "mdoc_warning"]
    assert any(e["mdoc"].endswith("Y1.mrc.mdoc") and "DateTime" in " ".join(e["warnings"]) for e in warns)
    # FIFOs, sockets and links out of the root: refused, by name, never opened
    text = {e["mdoc"].rsplit("/", 1)[-1]: " ".join(e["warnings"]) for e in warns}
    assert "FIFO" in text["m_000_0.0.tif.mdoc"] and "/dev/zero" in text["z_000_0.0.tif.mdoc"]
    assert sum(e["mdoc"].endswith("/m_000_0.0.tif.mdoc") for e in warns) == 1  # said once
    assert "link.mrc.mdoc" not in text  # a link out of the root is never followed (not even read to warn)
    bomb = [e for e in events if e["event"] == "movie_failed" and e["movie"].endswith("bomb_000_0.0.tif")]
    assert len(bomb) == 1 and ("nothing was decoded" in bomb[0]["reason"] or "need at least" in bomb[0]["reason"]), bomb
    rejected = {os.path.basename(e["path"]) for e in events if e["event"] == "file_rejected"}
    assert "p_000_0.0.tif" in rejected and "s_000_0.0.mrc" in rejected
    # the junk mdoc: one bounded line per change (at most 10 samples of at most 200 characters)
    junk_lines = [e for e in warns if e["mdoc"].endswith("/j.mdoc")]
    assert 1 <= len(junk_lines) <= 10 + 1
    assert all(len(e["warnings"]) <= 10 and all(len(x) <= 200 for x in e["warnings"]) for e in junk_lines)
    assert junk_lines[0]["n_warnings"] > 1000
    with open(daemon.log, "rb") as f:
        f.seek(log_before)
        longest = max(len(line) for line in f)
    assert longest < 20_000, f"a log line of {longest} bytes"
    # no stack holds a non-finite value; the angle of TS_01_001 is its own mdoc's, not the outside one's
    stacks = list(daemon.out.glob("*/*.mrc"))
    assert len(stacks) >= 3
    for p in stacks:
        with mrcfile.open(p, permissive=True) as m:
            assert np.isfinite(m.data).all(), p
    t1 = next(e for e in events if e["event"] == "tilt_corrected" and e["movie"].endswith("TS_01_001_3.0.mrc"))
    assert abs(t1["tilt_angle_deg"] - 3.0) < 0.01
    assert (daemon.out / "bad\\xff").is_dir()  # its series, named by the shown text
