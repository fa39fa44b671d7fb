"""The disk floor in a running daemon (in-process, with a patched free-space probe): below the
floor movies are found and journalled but not corrected; when space returns they are."""
from __future__ import annotations

import threading
import time

from daemon_helpers import read_journal

from framewatch.daemon.commands.simulated_acquisition import Acquisition
from framewatch.daemon.config.configuration import config_from_dict
from framewatch.daemon.config.processing_options import ProcessingOptions
from framewatch.daemon.service.daemon import Daemon
from framewatch.daemon.service.disk_space import GB


def events(out):
    import json

    p = out / "framewatch.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()] if p.exists() else []


def wait(pred, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = pred()
        if r:
            return r
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_disk_floor_pauses_and_resumes(tmp_path):
    acq_dir, out, state = tmp_path / "acq", tmp_path / "out", tmp_path / "state"
    acq_dir.mkdir()
    cfg = config_from_dict({
        "watch": {"scan_period_s": 0.5, "settle_s": 1.0, "tiff_stable_s": 0.5, "mdoc_wait_s": 1.0},
        "series": {"mdoc_quiet_s": 60.0, "idle_s": 600.0},
        "disk": {"warn_below_gb": 50.0, "floor_gb": 5.0, "resume_margin_gb": 1.0, "check_period_s": 0.1},
        "metrics": {"address": "127.0.0.1:0"},
        "plots": {"enabled": False},
    })
    free = {"bytes": 2 * GB}
    daemon = Daemon(acq_dir, out, state_dir=state, config=cfg, options=ProcessingOptions(pixel_size_a=1.5),
                    disk_probe=lambda path: free["bytes"], stdout=open(tmp_path / "stdout.log", "w"))
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("rc", daemon.run()), daemon=True)
    t.start()
    try:
        wait(lambda: any(e["event"] == "daemon_ready" for e in events(out)), timeout=120)
        floor = next(e for e in events(out) if e["event"] == "disk_floor")
        assert floor["free_bytes"] == 2 * GB and floor["floor_bytes"] == 5 * GB
        acq = Acquisition(acq_dir, n_tilts=2, shape=(128, 128), n_frames=6, frame_interval_s=0.0, tilt_interval_s=0.0)
        acq.run()
        # found, complete and journalled ("ready", queued), but not handed to a worker
        wait(lambda: sorted(r["state"] for r in read_journal(state)) == ["ready", "ready"], timeout=30)
        time.sleep(1.0)
        assert not any(e["event"] == "tilt_corrected" for e in events(out))
        assert daemon.service.metrics.paused._value.get() == 1
        assert "PAUSED: output disk 2.0 GB free < floor 5.0 GB" in daemon._status()
        free["bytes"] = int(5.5 * GB)  # above the floor, inside the resume margin: still paused
        time.sleep(0.5)
        assert not any(e["event"] == "tilt_corrected" for e in events(out))
        free["bytes"] = 20 * GB  # space is back (but below the warning threshold)
        wait(lambda: sum(e["event"] == "tilt_corrected" for e in events(out)) == 2, timeout=60)
        names = [e["event"] for e in events(out)]
        assert names.index("disk_resumed") < names.index("tilt_corrected")
        assert "disk_low" in names
        assert daemon.service.metrics.paused._value.get() == 0
        assert daemon.service.metrics.free_bytes._value.get() == 20 * GB
    finally:
        daemon.stop("test")
        t.join(60)
    assert result.get("rc") == 0
