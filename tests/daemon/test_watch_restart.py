"""SIGKILL the daemon at several points (mid-read, after correction, mid-append, between stacks,
before the journal knows), restart it, and check nothing is lost, nothing appended twice, stacks valid."""
import io
import os
import signal

import mrcfile
import numpy as np
import pytest
from daemon_helpers import TEST_CONFIG, DaemonProc, read_journal

from framewatch.daemon.commands.simulated_acquisition import Acquisition
from framewatch.daemon.outputs.tilt_images import tilt_image_paths

POINTS = ["worker_reading", "worker_corrected", "append_data_written", "append_between_stacks", "before_journal_done",
          "before_images_written"]


def visible_stacks_valid(d):
    for p in d.out.glob("*/*.mrc"):
        assert mrcfile.validate(str(p), print_file=io.StringIO()), p


def test_sigkill_at_several_points_then_resume(tmp_path, verify):
    # the interrupted movie is redone first after each restart, so it may meet several pause points
    d = DaemonProc(tmp_path, TEST_CONFIG.replace("max_attempts = 3", "max_attempts = 3\nmax_interruptions = 10"))
    try:
        acq = Acquisition(d.acq, n_tilts=6, shape=(256, 256), n_frames=8, frame_interval_s=0.02, tilt_interval_s=0.0)
        acq.start_mdoc()
        acq.write_tilt(0)
        acq.write_tilt(1)
        written = 2
        for k, point in enumerate(POINTS):
            d.start(pause_at=point)
            d.wait_marker(point)
            d.kill()  # SIGKILL: no clean-up at all
            visible_stacks_valid(d)
            if point == "before_images_written":  # done and logged, its per-tilt images not yet written
                unsynced = [r for r in read_journal(d.state) if r["images_synced"] == 0]
                assert len(unsynced) == 1, unsynced
                lost = unsynced[0]
                assert not any(p.exists() for p in tilt_image_paths(d.out / "TS_01", lost["path"]))
                star = (d.out / "TS_01" / "TS_01.star").read_text()
                assert os.path.basename(lost["path"]).split(".")[0] not in star  # listed once its images are there
            if point in ("worker_reading", "worker_corrected", "before_journal_done", "before_images_written"):
                acq.write_tilt(written)
                written += 1
        d.start()
        d.wait_ready()
        d.wait_event(lambda e: e["event"] == "series_completed", timeout=90)
        assert d.stop() == 0
        assert written == acq.n_tilts
        res = verify(d, acq, acq.written, dose_per_tilt=3.0)
        events = res["events"]
        names = [e["event"] for e in events]
        assert names.count("daemon_started") == len(POINTS) + 1
        assert "movie_interrupted" in names and "stack_repaired" in names
        # a row per movie: nothing done twice, nothing failed
        rows = read_journal(d.state)
        assert sorted(r["state"] for r in rows) == ["done"] * acq.n_tilts
        assert sum(r["interruptions"] for r in rows) >= 3
        # each done movie records its frame shape; a start after the first done movie corrects a
        # synthetic movie of that size before READY (the first start had none to go by)
        assert all(r["info"]["worker"]["frame_shape"] == [256, 256] for r in rows)
        warmed = [e for e in events if e["event"] == "kernels_warmed"]
        assert len(warmed) == len(POINTS) + 1 and warmed[0]["full_size"] is None
        assert warmed[-1]["full_size"] == [8, 256, 256] and "full_size 8x256x256" in warmed[-1]["steps_s"]
        # every tilt logged exactly once as corrected (a replay of a lost log line is marked)
        tilts = [e for e in events if e["event"] == "tilt_corrected" and not e.get("replayed")]
        assert sorted(e["movie"] for e in tilts) == sorted(str(m.path) for m in acq.written)
        # the images the kill kept from being written were written from the stacks at the next
        # start; every done movie's images are there, equal to its stack sections, and in the STAR
        # (also those of a movie done just before another kill, if the journal had not heard yet)
        rewritten = [e for e in events if e["event"] == "tilt_images_rewritten"]
        assert lost["path"] in [e["movie"] for e in rewritten], rewritten
        assert all(e["reason"] == "not known to be on disk when the daemon stopped" for e in rewritten)
        assert all(r["images_synced"] == 1 for r in rows)
        for r in rows:
            for p, k in zip(tilt_image_paths(d.out / "TS_01", r["path"]), ("", "_EVN", "_ODD")):
                with mrcfile.open(p, permissive=False) as m, mrcfile.mmap(d.out / "TS_01" / f"TS_01{k}.mrc") as st:
                    assert np.array_equal(m.data, st.data[r["z"]]), p
        star = (d.out / "TS_01" / "TS_01.star").read_text()
        assert all(tilt_image_paths(d.out / "TS_01", r["path"])[0].name in star for r in rows)
    finally:
        d.cleanup()


@pytest.mark.slow
def test_movie_interrupted_twice_fails_and_series_goes_on(tmp_path, verify):
    d = DaemonProc(tmp_path)
    try:
        acq = Acquisition(d.acq, n_tilts=3, shape=(128, 128), n_frames=6, frame_interval_s=0.0, tilt_interval_s=0.0)
        acq.start_mdoc()
        acq.write_tilt(0)
        for _ in range(2):
            d.start(pause_at="worker_corrected")
            d.wait_marker("worker_corrected")
            d.kill()
        acq.write_tilt(1)
        acq.write_tilt(2)
        d.start()
        d.wait_ready()
        failed = d.wait_event(lambda e: e["event"] == "movie_failed")
        assert failed["movie"].endswith("TS_01_000_0.0.tif") and "interrupted 2 times" in failed["reason"]
        d.wait_event(lambda e: e["event"] == "series_completed", timeout=60)
        assert d.stop() == 0
        # the series goes on without it; prior doses still count the failed tilt's exposure
        verify(d, acq, acq.written[1:], dose_per_tilt=3.0, compare_sections=False)
    finally:
        d.cleanup()



def test_worker_process_killed_is_redone(daemon, verify):
    """A worker that dies (OOM killer, segfault) stops neither the daemon nor the series: the
    movie is redone in a new worker process."""
    acq = Acquisition(daemon.acq, n_tilts=3, shape=(128, 128), n_frames=6, frame_interval_s=0.0, tilt_interval_s=0.0)
    acq.start_mdoc()
    acq.write_tilt(0)
    daemon.start(pause_at="worker_corrected")
    marker = daemon.base / "pause" / "worker_corrected.reached"
    daemon.wait_marker("worker_corrected", keep=True)
    worker_pid = int(marker.read_text())
    (daemon.base / "pause" / "worker_corrected.release").write_text("")  # the redo may pass
    os.kill(worker_pid, signal.SIGKILL)
    ev = daemon.wait_event(lambda e: e["event"] == "movie_interrupted")
    assert ev["movie"].endswith("TS_01_000_0.0.tif") and "worker process died" in ev["reason"]
    acq.write_tilt(1)
    acq.write_tilt(2)
    daemon.wait_event(lambda e: e["event"] == "series_completed")
    assert daemon.stop() == 0
    verify(daemon, acq, acq.written, dose_per_tilt=3.0, compare_sections=False)
