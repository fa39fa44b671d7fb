"""A drift plot whose drawing the daemon did not finish (killed while the plot thread drew it:
a stale plot and a ``.tmp`` left; found by the torture run) is drawn again at the next start."""
import os
import time

from framewatch.daemon.commands.simulated_acquisition import Acquisition


def test_unfinished_plot_is_redrawn_at_start(daemon):
    acq = Acquisition(daemon.acq, n_tilts=3, shape=(128, 128), n_frames=6, frame_interval_s=0.0, tilt_interval_s=0.0)
    acq.start_mdoc()
    for i in range(3):
        acq.write_tilt(i)
    daemon.start()
    daemon.wait_event(lambda e: e["event"] == "series_completed", timeout=60)
    assert daemon.stop() == 0
    plot = daemon.out / "TS_01" / "TS_01.drift.png"
    tmp = plot.with_name(f".{plot.name}.tmp")
    assert plot.exists() and not tmp.exists()
    # what a SIGKILL in the middle of drawing the last tilt leaves: an older plot and a cut .tmp
    os.utime(plot, (time.time() - 3600, time.time() - 3600))
    tmp.write_bytes(b"\x89PNG")
    daemon.start()
    daemon.wait_ready()
    deadline = time.time() + 30
    while tmp.exists() or plot.stat().st_mtime < time.time() - 600:
        assert time.time() < deadline, daemon.output()
        time.sleep(0.1)
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert daemon.stop() == 0
