"""A movie deleted after it was found complete (found by the torture run): one failure record with
the reason, never a silent disappearance, and the series still completes -- whether it goes while
a worker reads it or while the daemon is down."""
import os
import time

from daemon_helpers import read_journal

from framewatch.daemon.commands.simulated_acquisition import Acquisition


def one_failure(d, name):
    failed = [e for e in d.events() if e["event"] == "movie_failed"]
    assert [os.path.basename(e["movie"]) for e in failed] == [name]
    assert "disappeared" in failed[0]["reason"] and failed[0]["series"] == "TS_01"
    rows = [r for r in read_journal(d.state) if r["path"].endswith(name)]
    assert [(r["state"], "disappeared" in r["error"]) for r in rows] == [("failed", True)]


def test_deleted_while_a_worker_reads_it(daemon, verify):
    hold = daemon.base / "hold"
    hold.mkdir()
    daemon.env_extra["FRAMEWATCH_HOLD_DIR"] = str(hold)
    acq = Acquisition(daemon.acq, n_tilts=4, shape=(128, 128), n_frames=6, frame_interval_s=0.0, tilt_interval_s=0.0)
    acq.start_mdoc()
    daemon.start()
    daemon.wait_ready()
    acq.write_tilt(0)
    (hold / "worker_reading.hold").write_text("TS_01_001_3.0.mrc")  # the worker stops there with it
    gone = acq.write_tilt(1)
    deadline = time.time() + 60
    while not (hold / "worker_reading.held").exists():
        assert time.time() < deadline, daemon.output()
        time.sleep(0.02)
    os.unlink(gone.path)
    (hold / "worker_reading.hold").unlink()
    daemon.wait_event(lambda e: e["event"] == "movie_failed")
    acq.write_tilt(2)
    acq.write_tilt(3)
    daemon.wait_event(lambda e: e["event"] == "series_completed", timeout=60)
    assert daemon.stop() == 0
    one_failure(daemon, gone.path.name)
    verify(daemon, acq, [m for m in acq.written if m is not gone], dose_per_tilt=3.0, compare_sections=False)


def test_deleted_while_the_daemon_is_down(daemon, verify):
    acq = Acquisition(daemon.acq, n_tilts=3, shape=(128, 128), n_frames=6, frame_interval_s=0.0, tilt_interval_s=0.0)
    acq.start_mdoc()
    acq.write_tilt(0)
    daemon.start()
    daemon.wait_ready()
    daemon.wait_event(lambda e: e["event"] == "tilt_corrected")
    daemon.kill()
    gone = acq.write_tilt(1)
    daemon.start(pause_at="worker_corrected")
    daemon.wait_marker("worker_corrected")  # it was complete and being processed ...
    daemon.kill()
    os.unlink(gone.path)  # ... and is deleted before the next start
    daemon.start()
    daemon.wait_ready()
    acq.write_tilt(2)
    daemon.wait_event(lambda e: e["event"] == "series_completed", timeout=60)  # never stuck waiting for it
    assert daemon.stop() == 0
    one_failure(daemon, gone.path.name)
    verify(daemon, acq, [m for m in acq.written if m is not gone], dose_per_tilt=3.0, compare_sections=False)
