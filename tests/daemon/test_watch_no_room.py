"""The output disk full (found by the torture run): a movie whose append finds no room is not
failed but appended once there is room again, in its place; the daemon neither crashes nor stops
starting while the disk is full; tables and the drift log catch up; nothing is appended twice."""
import io
import os
import time

import mrcfile
import pytest
from daemon_helpers import TEST_CONFIG, DaemonProc, fill_filesystem, mount_tmpfs, unmount

from framewatch.daemon.commands.simulated_acquisition import Acquisition


def wait_output(d, run, text, timeout=60.0):
    """Wait for ``text`` in the stdout of daemon run ``run`` (the drift log may be unwritable)."""
    p = d.base / f"daemon-{run}.out"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if p.exists() and text in p.read_text(errors="replace"):
            return
        assert d.proc.poll() is None, f"daemon exited:\n{d.output()}"
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the output of run {run}:\n{d.output()}")


@pytest.fixture
def small_out(tmp_path):
    d = DaemonProc(tmp_path, TEST_CONFIG)  # its [disk] floor is 0
    why = mount_tmpfs(d.out, 16)
    if why:
        pytest.skip(f"needs a small file system for OUT: {why}")
    yield d
    d.cleanup()
    unmount(d.out)


def test_disk_full_during_append_and_restart(small_out, verify):
    d = small_out
    acq = Acquisition(d.acq, n_tilts=5, shape=(128, 128), n_frames=6, frame_interval_s=0.0, tilt_interval_s=0.0)
    acq.start_mdoc()
    d.start()
    d.wait_ready()
    acq.write_tilt(0)
    d.wait_event(lambda e: e["event"] == "tilt_corrected")
    filler = d.out / ".filler"
    fill_filesystem(filler)
    acq.write_tilt(1)
    wait_output(d, 1, "output disk full")  # the append found no room: queued again, not failed
    d.kill()
    d.start()  # starting with the output disk full (tables cannot be rewritten) must work
    wait_output(d, 2, '"daemon_ready"')
    time.sleep(1.0)
    assert d.proc.poll() is None
    for p in d.out.glob("TS_01/*.mrc"):
        assert mrcfile.validate(str(p), print_file=io.StringIO()), p
    os.unlink(filler)
    for i in range(2, acq.n_tilts):
        acq.write_tilt(i)
    d.wait_event(lambda e: e["event"] == "series_completed", timeout=90)
    assert d.stop() == 0
    res = verify(d, acq, acq.written, dose_per_tilt=3.0)  # all five, in order, each once, sections exact
    events = res["events"]
    assert not [e for e in events if e["event"] == "movie_failed"]
    tilts = [e["movie"] for e in events if e["event"] == "tilt_corrected"]
    assert sorted(tilts) == sorted(str(m.path) for m in acq.written)  # once each, none replayed twice
    retries = [e for e in events if e["event"] == "movie_retry"]
    assert retries and all("output disk full" in e["reason"] for e in retries)  # written later, from the spill
    assert not (d.state / "framewatch.jsonl.pending").exists()
    assert not list((d.out / "TS_01").glob(".*"))  # no working or temporary names left
