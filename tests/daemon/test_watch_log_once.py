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
