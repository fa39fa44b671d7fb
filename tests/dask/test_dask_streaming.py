"""Streaming on the Dask backend (issue 15): a Dask worker follows a movie while it is written and hears
through the scheduler that it is complete or dropped. A real scheduler and real worker processes on
localhost, the daemon as a real process, movies written frame by frame on disk."""
from __future__ import annotations

import os
import time

import mrcfile
import numpy as np
from daemon_helpers import TEST_CONFIG, DaemonProc, holding_half_written, read_journal, verify_series

from framewatch.core.correct import correct_movie_file
from framewatch.core.settings import CorrectionSettings
from framewatch.daemon.commands.simulated_acquisition import Acquisition, write_tiff_frame_by_frame

DOSE_PER_TILT = 3.0
NO_MDOC_CONFIG = TEST_CONFIG.replace("pixel_size_a = 1.5", f"pixel_size_a = 1.5\ndose_per_tilt_e_per_a2 = {DOSE_PER_TILT}")
HOLD_CONFIG = holding_half_written(NO_MDOC_CONFIG)  # the tests below hold movies half-written


def _events(d: DaemonProc, name: str) -> list[dict]:
    return [e for e in d.events() if e["event"] == name]


def _frames(n_frames: int, seed: int, shape=(192, 192)) -> np.ndarray:
    from framewatch.core.simulate import SimulationSpec, simulate_movie

    spec = SimulationSpec(ny=shape[0], nx=shape[1], n_frames=n_frames, pixel_size_a=1.5,
                          dose_per_frame_e_per_a2=DOSE_PER_TILT / n_frames, gain_rms=0.0, seed=seed)
    return simulate_movie(spec, threads=1).frames


def _half_written(d: DaemonProc, name: str, frames: np.ndarray) -> tuple:
    """The first half of a TIFF's bytes in the watch folder (the rest returned), once a stream follows it."""
    whole = d.base / f"whole-{name}"
    write_tiff_frame_by_frame(whole, frames, 0.0)
    data = whole.read_bytes()
    path = d.acq / name
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    d.wait_event(lambda e: e["event"] == "stream_started" and e["movie"].endswith(name), timeout=120)
    return path, data[len(data) // 2:]


def _daemon_on_one_worker(tmp_path, cluster, config_text: str = HOLD_CONFIG) -> DaemonProc:
    """A scheduler, one one-thread worker and a ready daemon on them (no mdoc: the dose from the config)."""
    cluster.start_scheduler()
    cluster.start_worker("w1")
    d = DaemonProc(tmp_path / "run", config_text)
    d.start("--dask-address", cluster.address)
    try:
        d.wait_ready(timeout=300)
    except BaseException:
        d.cleanup()
        raise
    return d


def test_movies_stream_on_dask_workers(tmp_path, cluster):
    """Every movie written while the daemon runs is followed by a Dask worker from its first frames on
    and gives the section of ``correct_movie_file`` of the finished file (verify_series), each once."""
    cluster.start_scheduler()
    cluster.start_worker("w1")
    cluster.start_worker("w2", env_extra={"MALLOC_ARENA_MAX": "8"})  # its ready line advises one arena
    d = DaemonProc(tmp_path / "run")
    acq = Acquisition(d.acq, n_tilts=3, shape=(192, 192), n_frames=8, dose_per_tilt_e_per_a2=DOSE_PER_TILT,
                      pixel_size_a=1.5, frame_interval_s=0.15, tilt_interval_s=0.8, frame_mdoc_every=2, seed=5)
    acq.start_mdoc()
    try:
        d.start("--dask-address", cluster.address)
        d.wait_ready(timeout=300)
        for i in range(acq.n_tilts):
            acq.write_tilt(i)
            time.sleep(acq.tilt_interval_s)
        d.wait_event(lambda e: e["event"] == "series_completed", timeout=300)
        assert d.stop() == 0
    finally:
        d.cleanup()
    verify_series(d, acq, acq.written, dose_per_tilt=DOSE_PER_TILT)
    started = sorted(os.path.basename(e["movie"]) for e in _events(d, "stream_started"))
    assert started == sorted(m.path.name for m in acq.written), started
    assert _events(d, "stream_dropped") == []
    ready = {e["worker"] for e in _events(d, "dask_worker_ready")}
    advice = {e["worker_name"]: e.get("advice") for e in _events(d, "dask_worker_ready")}
    assert advice["w1"] is None and "MALLOC_ARENA_MAX=1" in advice["w2"], advice
    tilts = _events(d, "tilt_corrected")
    assert all(e.get("streamed_frames", 0) >= 1 for e in tilts), [(e["movie"], e.get("streamed_frames")) for e in tilts]
    assert {e["worker"] for e in tilts} <= ready, (tilts, ready)


def test_a_deleted_movie_drops_its_dask_stream_and_the_worker_goes_on(tmp_path, cluster):
    """A movie deleted mid-stream: its stream comes back dropped with the reason, nothing is appended,
    and the one worker thread takes the next movie (streamed, corrected once)."""
    d = _daemon_on_one_worker(tmp_path, cluster)
    try:
        path, _ = _half_written(d, "deleted_001.tif", _frames(8, seed=1))
        time.sleep(1.0)  # the worker follows it by now
        path.unlink()
        dropped = d.wait_event(lambda e: e["event"] == "stream_dropped", timeout=60)
        # the daemon cancels it, or the worker finds the file gone first: either way, for the deletion
        assert "no longer watched" in dropped["reason"] or "deleted or moved away" in dropped["reason"], dropped
        good, rest = _half_written(d, "good_002.tif", _frames(8, seed=2))
        with open(good, "ab") as f:
            f.write(rest)
        tilt = d.wait_event(lambda e: e["event"] == "tilt_corrected", timeout=120)
        assert tilt["movie"].endswith(good.name) and tilt.get("streamed_frames", 0) >= 1, tilt
        assert d.stop() == 0
    finally:
        d.cleanup()
    assert len(_events(d, "tilt_corrected")) == 1 and _events(d, "movie_failed") == []
    assert [r["state"] for r in read_journal(d.state) if r["path"] == str(good)] == ["done"]


def test_daemon_killed_mid_stream_frees_the_dask_worker_and_restart_corrects_once(tmp_path, cluster):
    """The daemon is SIGKILLed while its only Dask worker thread follows a movie. The worker notices
    that nobody waits for the task (it would otherwise follow the file for the 600 s stall limit and
    hold the only thread); after the restart the movie is corrected from disk, once, with the section
    of ``correct_movie_file`` of the finished file."""
    d = _daemon_on_one_worker(tmp_path, cluster)
    try:
        path, rest = _half_written(d, "killed_001.tif", _frames(8, seed=3))
        d.kill()
        with open(path, "ab") as f:
            f.write(rest)
        d.start("--dask-address", cluster.address)
        d.wait_ready(timeout=300)
        d.wait_event(lambda e: e["event"] == "tilt_corrected", timeout=120)
        time.sleep(1.0)  # nothing more comes of it
        assert d.stop() == 0
    finally:
        d.cleanup()
    tilts = _events(d, "tilt_corrected")
    assert len(tilts) == 1 and tilts[0]["movie"].endswith(path.name), tilts
    assert [r["state"] for r in read_journal(d.state)] == ["done"]
    with mrcfile.open(d.out / tilts[0]["series"] / f"{tilts[0]['series']}.mrc") as m:
        stack = m.data.reshape(-1, *m.data.shape[-2:]).copy()
    assert stack.shape[0] == 1
    ref = correct_movie_file(path, settings=CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=DOSE_PER_TILT / 8)
                             ).dose_weighted_sum
    np.testing.assert_allclose(stack[0], ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()))


def test_a_stream_lost_with_the_scheduler_is_sent_again_with_its_end(tmp_path, cluster):
    """The scheduler (and the worker following a movie) die mid-stream; the movie is found complete
    while no scheduler is reachable, so its end signal cannot be set. When a scheduler and a worker
    are back on the same address, the task is sent again with the end it missed, and the movie is
    corrected once, equal to ``correct_movie_file`` of the finished file."""
    fast = HOLD_CONFIG + "\n[dask]\nconnect_timeout_s = 1.0\nreconnect_max_s = 2.0\n"
    d = _daemon_on_one_worker(tmp_path, cluster, fast)
    try:
        path, rest = _half_written(d, "lost_001.tif", _frames(8, seed=4))
        time.sleep(1.0)  # the worker follows it by now
        cluster.scheduler.kill()
        cluster.scheduler.wait(10)
        cluster.kill_worker("w1")
        d.wait_event(lambda e: e["event"] in ("dask_disconnected", "dask_unreachable"), timeout=60)
        with open(path, "ab") as f:
            f.write(rest)
        deadline = time.monotonic() + 60  # found complete meanwhile: the stream is ended (journal: processing)
        while [r["state"] for r in read_journal(d.state)] != ["processing"]:
            # on a timeout the daemon's lines say which path the movie took
            assert time.monotonic() < deadline, (read_journal(d.state), [(e["event"], e.get("reason") or e.get("note"))
                                                                         for e in d.events()])
            time.sleep(0.2)
        assert _events(d, "tilt_corrected") == []
        cluster.start_scheduler()
        cluster.start_worker("w2")
        tilt = d.wait_event(lambda e: e["event"] == "tilt_corrected", timeout=180)
        time.sleep(1.0)  # nothing more comes of it
        assert d.stop() == 0
    finally:
        d.cleanup()
    assert tilt["movie"].endswith(path.name)
    assert len(_events(d, "tilt_corrected")) == 1 and _events(d, "movie_failed") == []
    resent = _events(d, "dask_task_resubmitted")
    assert resent and resent[0]["reason"] == "the connection to the scheduler was lost", resent
    assert [r["state"] for r in read_journal(d.state)] == ["done"]
    with mrcfile.open(d.out / tilt["series"] / f"{tilt['series']}.mrc") as m:
        section = m.data.reshape(-1, *m.data.shape[-2:])[0].copy()
    ref = correct_movie_file(path, settings=CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=DOSE_PER_TILT / 8)
                             ).dose_weighted_sum
    np.testing.assert_allclose(section, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()))
