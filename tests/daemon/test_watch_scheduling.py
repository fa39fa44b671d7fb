"""Scheduling and resuming: a bounded queue with back-pressure and the backlog logged; a restart
recomputes nothing; changed settings go to a new output set."""
import time

from daemon_helpers import TEST_CONFIG, DaemonProc, read_journal

from framewatch.daemon.commands.simulated_acquisition import Acquisition
from framewatch.daemon.processing.scheduler import QueueItem, ReadyQueue


def test_ready_queue_order_and_bound():
    q = ReadyQueue(3)
    for t, mid in ((30.0, 3), (10.0, 1), (20.0, 2)):
        q.put(QueueItem(t, mid, ready_at=100 + mid, series_id=1))
    assert q.full() and q.oldest_ready_at() == 101
    try:
        q.put(QueueItem(5.0, 9, 0, 1))
        raise AssertionError("a full queue must refuse")
    except OverflowError:
        pass
    assert [q.pop().movie_id for _ in range(3)] == [1, 2, 3]  # oldest acquisition first
    q = ReadyQueue(10, newest_first_backlog=2)
    for t in range(5):
        q.put(QueueItem(float(t), t, 0, 1))
    assert [q.pop().movie_id for _ in range(5)] == [4, 3, 2, 0, 1]  # newest while more than 2 wait


def test_backlog_resume_and_changed_settings(tmp_path):
    cfg = TEST_CONFIG + "\n[scheduler]\nworkers = 2\nqueue_size = 2\nbacklog_log_s = 0.2\n"
    d = DaemonProc(tmp_path, cfg)
    try:
        acq = Acquisition(d.acq, n_tilts=5, shape=(128, 128), n_frames=6, frame_interval_s=0.0, tilt_interval_s=0.0)
        acq.run()  # the whole series is there before the daemon starts
        d.start()
        d.wait_event(lambda e: e["event"] == "series_completed", timeout=60)
        assert d.stop() == 0
        events = d.events()
        backlog = [e for e in events if e["event"] == "backlog"]
        assert backlog, "backlog not logged"
        assert max(e["queued"] for e in backlog) <= 2  # bounded; the rest stays watched
        assert any(e["watching"] > 0 for e in backlog) and all(e["oldest_wait_s"] is not None for e in backlog if e["queued"])
        assert backlog[-1]["queued"] == 0 and backlog[-1]["processing"] == 0
        # two workers may finish out of order; sections are still appended in acquisition order
        tilts = [e for e in events if e["event"] == "tilt_corrected"]
        assert [e["z"] for e in tilts] == list(range(5)) and [e["acquisition_index"] for e in tilts] == list(range(5))
        assert len({r["info"]["worker"]["pid"] for r in read_journal(d.state)}) == 2
        stack = d.out / "TS_01" / "TS_01.mrc"
        before = stack.stat().st_mtime_ns

        # restart with the same settings: nothing is recomputed; a done movie rewritten is reported, not redone
        n = len(events)
        with open(acq.written[1].path, "ab") as f:  # an MRC movie
            f.write(b"\0")
        d.start()
        d.wait_ready()
        time.sleep(1.5)  # a full scan at least
        assert d.stop() == 0
        later = d.events()[n:]
        names = [e["event"] for e in later]
        assert "tilt_corrected" not in names and "movie_interrupted" not in names
        changed = [e for e in later if e["event"] == "movie_changed_after_done"]
        assert len(changed) == 1 and changed[0]["movie"] == str(acq.written[1].path) and changed[0]["z"] == 1
        assert stack.stat().st_mtime_ns == before

        # changed settings: a new output set, the first one untouched
        n = len(d.events())
        d.start("--pixel-size-a", "1.6")
        d.wait_event(lambda e: e["event"] == "series_completed", timeout=60, after=n)
        assert d.stop() == 0
        new = d.events()[n:]
        out_set = next(e for e in new if e["event"] == "output_set")
        assert out_set["new"] and out_set["output_dir"].startswith(str(d.out / "settings-"))
        tilts = [e for e in new if e["event"] == "tilt_corrected"]
        failed = [e for e in new if e["event"] == "movie_failed"]
        assert len(failed) == 1 and "longer than its header" in failed[0]["reason"]  # the rewritten movie
        tilts = [e for e in new if e["event"] == "tilt_corrected"]
        assert len(tilts) == 4 and all(e["output_dir"].startswith(out_set["output_dir"]) for e in tilts)
        assert all(e["pixel_size_a"] == 1.6 for e in tilts)
        assert stack.stat().st_mtime_ns == before
        rows = read_journal(d.state)
        assert len(rows) == 10 and sorted(r["state"] for r in rows) == ["done"] * 9 + ["failed"]
        assert len({r["settings_hash"] for r in rows}) == 2
    finally:
        d.cleanup()
