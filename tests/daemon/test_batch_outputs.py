"""`framewatch batch` (local pool) ends with every tilt's per-tilt images written and listed: the
images follow the tilt_corrected line in a writer thread (tilt_appender.py), and the batch completes
its series only after the last of them is in place."""
import subprocess
import sys

import mrcfile
import numpy as np
from daemon_helpers import read_journal

from framewatch.daemon.commands.simulated_acquisition import Acquisition
from framewatch.daemon.outputs.tilt_images import tilt_image_paths


def test_batch_lists_every_tilt_with_its_images(tmp_path):
    acq = Acquisition(tmp_path / "session", n_tilts=3, shape=(128, 128), n_frames=6, frame_interval_s=0.0,
                      tilt_interval_s=0.0)
    acq.start_mdoc()
    for i in range(3):
        acq.write_tilt(i)
    out, state = tmp_path / "out", tmp_path / "state"
    r = subprocess.run([sys.executable, "-m", "framewatch.daemon.commands.cli", "batch", str(acq.directory), "--out",
                        str(out), "--state", str(state), "--pixel-size-a", "1.5"], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = read_journal(state)
    assert [r["state"] for r in rows] == ["done"] * 3 and [r["images_synced"] for r in rows] == [1] * 3
    series = out / "TS_01"
    star = (series / "TS_01.star").read_text()
    for row in rows:
        paths = tilt_image_paths(series, row["path"])
        assert paths[0].name in star
        for p, k in zip(paths, ("", "_EVN", "_ODD")):
            with mrcfile.open(p) as m, mrcfile.mmap(series / f"TS_01{k}.mrc") as st:
                assert np.array_equal(m.data, st.data[row["z"]]), p
