"""`framewatch watch` with the Dask backend on a real scheduler and worker processes on localhost:
a replayed series gives the same sections as the local backend."""
import threading

import mrcfile
import numpy as np
from daemon_helpers import DaemonProc, verify_series

from framewatch.daemon.commands.simulated_acquisition import Acquisition


def _replay(d: DaemonProc, acq: Acquisition, *extra: str) -> None:
    d.start(*extra)
    d.wait_ready(timeout=300)
    for i in range(acq.n_tilts):
        if not any(m.index == i for m in acq.written):
            acq.write_tilt(i)
            threading.Event().wait(acq.tilt_interval_s)
    d.wait_event(lambda e: e["event"] == "series_completed", timeout=300)
    assert d.stop() == 0


def test_watch_on_dask_gives_the_local_backends_sections(tmp_path, cluster):
    cluster.start_scheduler()
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    on_dask = DaemonProc(tmp_path / "dask-run")
    acq = Acquisition(on_dask.acq, n_tilts=4, shape=(192, 192), n_frames=6, dose_per_tilt_e_per_a2=3.0, pixel_size_a=1.5,
                      frame_interval_s=0.02, tilt_interval_s=0.3, seed=3)
    acq.start_mdoc()
    acq.write_tilt(0)  # there before the daemon starts
    try:
        _replay(on_dask, acq, "--dask-address", cluster.address)
    finally:
        on_dask.cleanup()
    res = verify_series(on_dask, acq, acq.written, dose_per_tilt=3.0)  # exactly once, in order, tables, log keys
    events = res["events"]
    started = next(e for e in events if e["event"] == "daemon_started")
    assert started["processing_backend"] == f"dask {cluster.address}"
    ready = {e["worker"] for e in events if e["event"] == "dask_worker_ready"}
    assert len(ready) == 2
    tilts = [e for e in events if e["event"] == "tilt_corrected"]
    assert {e["worker"] for e in tilts} <= ready, (tilts, ready)

    # the same movies through the local backend
    local = DaemonProc(tmp_path / "local-run")
    local.acq = on_dask.acq
    try:
        local.start()
        local.wait_event(lambda e: e["event"] == "series_completed", timeout=300)
        assert local.stop() == 0
    finally:
        local.cleanup()
    local_workers = {e["worker"] for e in local.events() if e["event"] == "tilt_corrected"}
    assert len(local_workers) == 1 and next(iter(local_workers)).startswith("local:"), local_workers
    for k in ("", "_EVN", "_ODD"):
        a = mrcfile.read(on_dask.out / "TS_01" / f"TS_01{k}.mrc")
        b = mrcfile.read(local.out / "TS_01" / f"TS_01{k}.mrc")
        assert a.shape == b.shape == (acq.n_tilts, 192, 192)
        for z in range(acq.n_tilts):
            corr = np.corrcoef(a[z].ravel(), b[z].ravel())[0, 1]
            assert corr > 0.9999, (k, z, corr)
