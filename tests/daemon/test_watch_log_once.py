"""One drift-log line per final state, across SIGKILL (found by the torture run: a movie journalled
failed whose movie_failed line a kill kept out of the log had none, ever): a line the crash lost is
written again at the next start (``replayed``), a line that made it is not written twice."""
import pytest
from daemon_helpers import read_journal

from framewatch.daemon.commands.simulated_acquisition import Acquisition


def lines(d, event, movie):
    return [e for e in d.events() if e["event"] == event and e["movie"] == str(movie)]


@pytest.mark.parametrize("point", ["before_failed_logged", "after_failed_logged"])
def test_failure_line_once(daemon, point):
    acq = Acquisition(daemon.acq, n_tilts=2, shape=(128, 128), n_frames=6, frame_interval_s=0.0, tilt_interval_s=0.0)
    acq.start_mdoc()
    acq.write_tilt(0)
    empty = acq.write_tilt(1)
    empty.path.write_bytes(b"")  # fails at readiness once it has settled
    daemon.start(pause_at=point)
    daemon.wait_marker(point)
    daemon.kill()  # journalled failed; the line not yet written / written, the journal not yet told
    assert [r["state"] for r in read_journal(daemon.state) if r["path"] == str(empty.path)] == ["failed"]
    daemon.start()
    daemon.wait_event(lambda e: e["event"] == "series_completed", timeout=60)
    assert daemon.stop() == 0
    got = lines(daemon, "movie_failed", empty.path)
    assert len(got) == 1, got
    assert got[0]["stage"] == "readiness" and "empty" in got[0]["reason"]
    assert got[0].get("replayed", False) == (point == "before_failed_logged")
    assert all(r["logged"] for r in read_journal(daemon.state))


def test_tilt_line_once(daemon):
    acq = Acquisition(daemon.acq, n_tilts=2, shape=(128, 128), n_frames=6, frame_interval_s=0.0, tilt_interval_s=0.0)
    acq.start_mdoc()
    first = acq.write_tilt(0)
    daemon.start(pause_at="after_tilt_logged")
    daemon.wait_marker("after_tilt_logged")
    daemon.kill()  # the tilt_corrected line is written, the journal does not know yet
    acq.write_tilt(1)
    daemon.start()
    daemon.wait_event(lambda e: e["event"] == "series_completed", timeout=60)
    assert daemon.stop() == 0
    assert len(lines(daemon, "tilt_corrected", first.path)) == 1


def test_per_tilt_images_that_cannot_be_written_follow_from_the_stacks(daemon):
    """The per-tilt images are written after the tilt_corrected line; one that cannot be written (here
    a directory squats on its working name: a real failure of the write) is reported once, the tilt
    stays out of the RELION table and the series does not complete, and once the write can succeed
    the images are written from the stacks (retried every IMAGE_RETRY_S)."""
    import shutil

    import mrcfile
    import numpy as np

    from framewatch.daemon.outputs.tilt_images import tilt_image_paths

    acq = Acquisition(daemon.acq, n_tilts=2, shape=(128, 128), n_frames=6, frame_interval_s=0.0, tilt_interval_s=0.0)
    acq.start_mdoc()
    first = acq.write_tilt(0)
    series_dir = daemon.out / "TS_01"
    images = tilt_image_paths(series_dir, first.path)
    squat = images[0].with_name(f".{images[0].name}.tmp")
    squat.mkdir(parents=True)
    daemon.start()
    failed = daemon.wait_event(lambda e: e["event"] == "output_write_failed" and e["what"] == "per-tilt images", timeout=120)
    assert failed["movie"] == str(first.path) and "Is a directory" in failed["reason"]
    assert [r["images_synced"] for r in read_journal(daemon.state)] == [0]
    star = series_dir / "TS_01.star"
    assert not star.exists() or first.path.name not in star.read_text()
    acq.write_tilt(1)
    daemon.wait_event(lambda e: e["event"] == "tilt_corrected" and e["movie"].endswith("_001_3.0.mrc"), timeout=60)
    shutil.rmtree(squat)
    rewritten = daemon.wait_event(lambda e: e["event"] == "tilt_images_rewritten", timeout=60)
    assert rewritten["movie"] == str(first.path)
    daemon.wait_event(lambda e: e["event"] == "series_completed", timeout=60)
    assert daemon.stop() == 0
    assert len([e for e in daemon.events() if e["event"] == "output_write_failed" and e["what"] == "per-tilt images"]) == 1
    rows = read_journal(daemon.state)
    assert [r["images_synced"] for r in rows] == [1, 1]
    text = star.read_text()
    for r in rows:
        assert tilt_image_paths(series_dir, r["path"])[0].name in text
        for p, k in zip(tilt_image_paths(series_dir, r["path"]), ("", "_EVN", "_ODD")):
            with mrcfile.open(p) as m, mrcfile.mmap(series_dir / f"TS_01{k}.mrc") as st:
                assert np.array_equal(m.data, st.data[r["z"]]), p
