"""Bad input in the middle of a series: each bad movie gives one movie_failed with its reason (a
broken mdoc a warning), and the rest of the series completes."""
import numpy as np
from daemon_helpers import add_section, corrupt_tiff_page, read_journal

from framewatch.daemon.commands.simulated_acquisition import Acquisition, write_mrc_frame_by_frame, write_tiff_frame_by_frame


def test_bad_inputs_fail_alone(daemon, verify):
    acq = Acquisition(daemon.acq, n_tilts=9, shape=(128, 128), n_frames=8, frame_interval_s=0.01, tilt_interval_s=0.0)
    acq.start_mdoc()
    daemon.start()
    daemon.wait_ready()
    good = []
    good.append(acq.write_tilt(0))
    # 1: zero-byte file (listed in the mdoc as a tilt)
    zero = acq.write_tilt(1, fmt="tiff", frames=np.zeros((8, 128, 128), np.uint8))
    zero.path.write_bytes(b"")
    good.append(acq.write_tilt(2))
    # 3: an MRC movie that never completes (header says 8 frames, 4 written)
    trunc = acq.frames_dir / "TS_01_003_-6.0.mrc"
    write_mrc_frame_by_frame(trunc, acq.frames_for(3), 0.0, n_written=4)
    add_section(acq, trunc.name, -6.0, 3)
    # 4: a TIFF movie with a page that does not decode (the last page is fine)
    bad_page = acq.write_tilt(4, fmt="tiff")
    corrupt_tiff_page(bad_page.path, 3)
    # 5: wrong frame count: the mdoc says 8, the file has 6
    wrong = acq.frames_dir / "TS_01_005_9.0.tif"
    write_tiff_frame_by_frame(wrong, acq.frames_for(5), 0.0, n_written=6)
    add_section(acq, wrong.name, 9.0, 5)
    # a broken mdoc next to the series (a warning, nothing else)
    (daemon.acq / "TS_99.mrc.mdoc").write_bytes(b"\x00\xffnot an mdoc\n[ZValue = ]\nTiltAngle ==\n")
    good += [acq.write_tilt(6), acq.write_tilt(7), acq.write_tilt(8)]
    daemon.wait_event(lambda e: e["event"] == "series_completed", timeout=90)
    assert daemon.stop() == 0
    events = daemon.events()
    failed = {e["movie"].rsplit("/", 1)[-1]: e for e in events if e["event"] == "movie_failed"}
    assert sorted(failed) == ["TS_01_001_3.0.tif", "TS_01_003_-6.0.mrc", "TS_01_004_6.0.tif", "TS_01_005_9.0.tif"]
    assert [e["event"] for e in events].count("movie_failed") == 4  # one each
    assert "empty" in failed["TS_01_001_3.0.tif"]["reason"]
    assert "truncated" in failed["TS_01_003_-6.0.mrc"]["reason"]
    assert "cannot be decoded" in failed["TS_01_004_6.0.tif"]["reason"]
    assert failed["TS_01_004_6.0.tif"]["stage"] == "correct"
    assert "6 frames" in failed["TS_01_005_9.0.tif"]["reason"] and "says 8" in failed["TS_01_005_9.0.tif"]["reason"]
    assert all(e["series"] == "TS_01" for e in failed.values())
    retries = [e for e in events if e["event"] == "movie_retry"]
    assert len(retries) == 2 and all(e["movie"].endswith("TS_01_004_6.0.tif") for e in retries)  # back-off, then failed
    warnings = [e for e in events if e["event"] == "mdoc_warning"]
    assert any(e["mdoc"].endswith("TS_99.mrc.mdoc") for e in warnings)
    rows = read_journal(daemon.state)
    assert {r["path"].rsplit("/", 1)[-1]: r["state"] for r in rows if r["state"] == "failed"}.keys() == failed.keys()
    assert all(r["error"] for r in rows if r["state"] == "failed")
    # the good tilts form the series; prior doses count every earlier exposure, failed ones included
    verify(daemon, acq, good, dose_per_tilt=3.0, compare_sections=False)
