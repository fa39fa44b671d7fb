"""Streaming (issue 15): the daemon corrects a movie while the acquisition writes it, and nothing of
exactly-once breaks when the file misbehaves mid-stream.

The daemon runs as a real process; movies are written frame by frame on disk by the project's
acquisition simulator (MRC with the final nz first, TIFF pages appended) or by hand here (a movie
rewritten, replaced by rename, truncated for good, or the daemon SIGKILLed mid-stream). Every section
is compared with ``correct_movie_file`` of the finished file.
"""
from __future__ import annotations

import os
import time

import mrcfile
import numpy as np
from daemon_helpers import TEST_CONFIG, DaemonProc, holding_half_written, read_journal

from framewatch.core.correct import correct_movie_file
from framewatch.core.settings import CorrectionSettings
from framewatch.daemon.commands.simulated_acquisition import (
    Acquisition,
    WrittenMovie,
    movie_name,
    write_frame_mdoc,
    write_mrc_frame_by_frame,
    write_tiff_frame_by_frame,
)

DOSE_PER_TILT = 3.0
NO_MDOC_CONFIG = TEST_CONFIG.replace("pixel_size_a = 1.5", f"pixel_size_a = 1.5\ndose_per_tilt_e_per_a2 = {DOSE_PER_TILT}")


def _events(d, name):
    return [e for e in d.events() if e["event"] == name]


def _stack(d: DaemonProc, series: str) -> np.ndarray:
    with mrcfile.open(d.out / series / f"{series}.mrc") as m:
        return m.data.reshape(-1, *m.data.shape[-2:]).copy()


def _reference(path, n_frames: int, prior_tilts: int = 0) -> np.ndarray:
    s = CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=DOSE_PER_TILT / n_frames,
                           prior_dose_e_per_a2=DOSE_PER_TILT * prior_tilts)
    return correct_movie_file(path, settings=s).dose_weighted_sum


def _assert_same(section: np.ndarray, ref: np.ndarray) -> None:
    np.testing.assert_allclose(section, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()))
    assert np.corrcoef(section.ravel(), ref.ravel())[0, 1] > 0.9999


def _frames(n_frames: int, seed: int, shape=(256, 256)) -> np.ndarray:
    """Simulated counts ``(n_frames, ny, nx)`` (the project's simulator, as the acquisition writes them)."""
    from framewatch.core.simulate import SimulationSpec, simulate_movie

    spec = SimulationSpec(ny=shape[0], nx=shape[1], n_frames=n_frames, pixel_size_a=1.5,
                          dose_per_frame_e_per_a2=DOSE_PER_TILT / n_frames, gain_rms=0.0, seed=seed)
    return simulate_movie(spec, threads=1).frames


def test_movies_are_corrected_while_they_are_written(daemon, verify):
    """Every movie written while the daemon runs is followed by a worker from its first frames on
    (``stream_started``; ``streamed_frames`` ≥ 1 on its ``tilt_corrected`` line); the sections are
    those of ``correct_movie_file`` of the finished files (verify_series), each once, in order.
    The daemon is stopped and started again after the third: every stream but the very first starts
    from the final defect mask of the movie before it, the one after the restart too (kept in the state
    directory)."""
    acq = Acquisition(daemon.acq, n_tilts=5, shape=(256, 256), n_frames=8, dose_per_tilt_e_per_a2=DOSE_PER_TILT,
                      pixel_size_a=1.5, frame_interval_s=0.12, tilt_interval_s=0.8, frame_mdoc_every=2, dead_column=100)
    acq.start_mdoc()
    daemon.start()
    daemon.wait_ready()
    for i in range(acq.n_tilts):
        if i == 3:
            daemon.wait_event(lambda e: e["event"] == "tilt_corrected" and e["movie"] == str(acq.written[2].path))
            assert daemon.stop() == 0
            daemon.start()
            daemon.wait_ready()
        acq.write_tilt(i)
        time.sleep(acq.tilt_interval_s)
    daemon.wait_event(lambda e: e["event"] == "series_completed", timeout=90)
    assert daemon.stop() == 0
    verify(daemon, acq, acq.written, dose_per_tilt=DOSE_PER_TILT)
    rows = sorted(read_journal(daemon.state), key=lambda r: r["id"])
    assert [r["path"] for r in rows] == [str(m.path) for m in acq.written]
    workers = [r["info"]["worker"] for r in rows]
    assert all(w["n_replaced_pixels"] >= 256 for w in workers), workers  # the dead column, at least
    assert "mask_hint_pixels" not in workers[0]
    assert [w["mask_hint_pixels"] for w in workers[1:]] == [w["n_replaced_pixels"] for w in workers[:-1]]
    assert (daemon.state / "defect-mask.npz").exists()
    started = [os.path.basename(e["movie"]) for e in _events(daemon, "stream_started")]
    assert sorted(started) == sorted(m.path.name for m in acq.written), started
    assert _events(daemon, "stream_dropped") == []
    tilts = _events(daemon, "tilt_corrected")
    assert all(e.get("streamed_frames", 0) >= 1 for e in tilts), [(e["movie"], e.get("streamed_frames")) for e in tilts]
    assert {m.fmt for m in acq.written} == {"mrc", "tiff"}


HOLD_CONFIG = holding_half_written(NO_MDOC_CONFIG)


def _no_mdoc_daemon(tmp_path, config_text: str = NO_MDOC_CONFIG) -> DaemonProc:
    d = DaemonProc(tmp_path, config_text)
    d.start()
    d.wait_ready()
    return d


def _corrected_once(d: DaemonProc, path, n_frames: int = 8) -> None:
    """``path`` is appended exactly once (one line, one ``done`` row, one section), and its section is
    ``correct_movie_file`` of the finished file."""
    d.wait_event(lambda e: e["event"] == "tilt_corrected" and e["movie"].endswith(path.name), timeout=60)
    time.sleep(1.0)  # nothing more comes of it
    tilts = _events(d, "tilt_corrected")
    assert len(tilts) == 1 and _events(d, "movie_failed") == [], tilts
    assert [r["state"] for r in read_journal(d.state) if r["path"] == str(path)] == ["done"]
    stack = _stack(d, tilts[0]["series"])
    assert stack.shape[0] == 1
    _assert_same(stack[0], _reference(path, n_frames))


def _corrected_once_after_one_drop(d: DaemonProc, path) -> None:
    """The file changed under its stream: one ``stream_dropped`` (MovieChangedError), the movie once;
    the daemon stops cleanly."""
    _corrected_once(d, path)
    dropped = _events(d, "stream_dropped")
    assert len(dropped) == 1 and "MovieChangedError" in dropped[0]["reason"], dropped
    assert d.stop() == 0


def _wait_stream(d: DaemonProc, name: str, timeout: float = 30.0) -> None:
    d.wait_event(lambda e: e["event"] == "stream_started" and e["movie"].endswith(name), timeout=timeout)


def test_movies_renamed_into_place_with_their_frame_mdoc_close_behind(daemon, verify):
    """Movies copied in whole (written elsewhere, renamed into the watched folder), each frame mdoc
    and mdoc section written right after, as SerialEM does once the movie is closed: a free worker
    may start following a movie before its mdoc says it is complete (here one of five, typically).
    Whatever the race gives, every movie is corrected once and equals ``correct_movie_file``
    (verify_series) and nothing is dropped. A stream that had corrected no frame reads the movie
    whole, so no line says ``streamed_frames`` 0 (the worker-level test,
    tests/daemon/test_stream_worker.py, makes that case happen every time)."""
    acq = Acquisition(daemon.acq, n_tilts=5, shape=(256, 256), n_frames=8, dose_per_tilt_e_per_a2=DOSE_PER_TILT,
                      pixel_size_a=1.5, frame_mdoc_every=1)
    acq.start_mdoc()
    staging = daemon.base / "staging"  # outside the watched folder, same file system
    staging.mkdir()
    daemon.start()
    daemon.wait_ready()
    for i in range(acq.n_tilts):
        frames = acq.frames_for(i)
        fmt = acq.formats[i % len(acq.formats)]
        name = movie_name(acq.series, i, acq.angles[i], "tif" if fmt == "tiff" else "mrc")
        staged, path = staging / name, acq.frames_dir / name
        if fmt == "tiff":
            write_tiff_frame_by_frame(staged, frames, 0.0)
        else:
            write_mrc_frame_by_frame(staged, frames, 0.0, pixel_size_a=1.5)
        renamed = time.time()
        os.rename(staged, path)
        write_frame_mdoc(path, len(frames), angle=acq.angles[i], pixel_size_a=1.5, dose_per_frame=acq.dose_per_frame)
        movie = WrittenMovie(path, i, acq.angles[i], len(frames), fmt, renamed, renamed, time.time())
        with open(acq.mdoc_path, "a", newline="\n") as f:
            f.write(acq.section_text(movie, prior=i * DOSE_PER_TILT))
        acq.written.append(movie)
        time.sleep(0.8)
    daemon.wait_event(lambda e: e["event"] == "series_completed", timeout=90)
    assert daemon.stop() == 0
    verify(daemon, acq, acq.written, dose_per_tilt=DOSE_PER_TILT)
    assert _events(daemon, "stream_dropped") == []
    tilts = _events(daemon, "tilt_corrected")
    assert all(e.get("streamed_frames") != 0 for e in tilts), [(e["movie"], e.get("streamed_frames")) for e in tilts]


def test_a_movie_rewritten_mid_stream_is_corrected_from_the_finished_file(tmp_path):
    """A TIFF cut back to nothing and written again while a worker follows it: the stream is
    dropped (the file was truncated), and the movie is corrected once, from the finished file."""
    d = _no_mdoc_daemon(tmp_path)
    try:
        path = d.acq / "rewritten_001.tif"
        first, final = _frames(8, seed=3), _frames(8, seed=4)
        write_tiff_frame_by_frame(path, first, 0.15, n_written=5)
        _wait_stream(d, path.name)
        whole = tmp_path / "final.tif"
        write_tiff_frame_by_frame(whole, final, 0.0)
        data = whole.read_bytes()
        with open(path, "r+b") as f:  # cut back to nothing, then written again in place, in pieces
            f.truncate(0)
            for k in range(4):
                f.write(data[k * len(data) // 4: (k + 1) * len(data) // 4])
                f.flush()
                time.sleep(0.1)
        _corrected_once_after_one_drop(d, path)
    finally:
        d.cleanup()


def test_a_movie_replaced_by_rename_mid_stream_is_corrected_once(tmp_path):
    """An MRC half written, then another whole movie renamed over it (another inode): the stream
    drops what it read (before the new file is found complete, or after: then it reads the finished
    file afresh) and the new file is corrected once."""
    d = _no_mdoc_daemon(tmp_path, HOLD_CONFIG)
    try:
        path = d.acq / "replaced_001.mrc"
        write_mrc_frame_by_frame(path, _frames(8, seed=5), 0.15, pixel_size_a=1.5, n_written=4)
        _wait_stream(d, path.name)
        tmp = d.acq / ".incoming.tmp"
        write_mrc_frame_by_frame(tmp, _frames(8, seed=6), 0.0, pixel_size_a=1.5)
        os.rename(tmp, path)
        _corrected_once_after_one_drop(d, path)
    finally:
        d.cleanup()


def test_a_movie_truncated_for_good_fails_once_and_its_stream_is_cancelled(tmp_path):
    """An MRC whose header promises 8 frames, of which 5 are ever written: one failure record
    (readiness, truncated) and the stream that followed it comes back dropped, nothing appended."""
    d = _no_mdoc_daemon(tmp_path)
    try:
        path = d.acq / "truncated_001.mrc"
        write_mrc_frame_by_frame(path, _frames(8, seed=7), 0.1, pixel_size_a=1.5, n_written=5)
        failed = d.wait_event(lambda e: e["event"] == "movie_failed", timeout=60)
        assert failed["stage"] == "readiness" and path.name in failed["movie"]
        dropped = d.wait_event(lambda e: e["event"] == "stream_dropped", timeout=30)
        assert "failed" in dropped["reason"]
        assert _events(d, "tilt_corrected") == [] and len(_events(d, "movie_failed")) == 1
        rows = read_journal(d.state)
        assert [r["state"] for r in rows] == ["failed"]
        assert d.stop() == 0
    finally:
        d.cleanup()


def test_sigkill_mid_stream_then_restart_gives_the_section_once(tmp_path):
    """The daemon is SIGKILLed while a worker follows a movie being written (the worker dies with it);
    the rest of the movie is written while it is down; after the restart the movie is corrected from
    disk and appended exactly once."""
    d = _no_mdoc_daemon(tmp_path, HOLD_CONFIG)
    try:
        path = d.acq / "killed_001.tif"
        frames = _frames(8, seed=8)
        tif_bytes_dir = tmp_path / "scratch"
        tif_bytes_dir.mkdir()
        whole = tif_bytes_dir / "whole.tif"
        write_tiff_frame_by_frame(whole, frames, 0.0)
        data = whole.read_bytes()
        with open(path, "wb") as f:  # the first half of the file, then a pause: the worker follows it
            f.write(data[: len(data) // 2])
        _wait_stream(d, path.name)
        d.kill()
        with open(path, "ab") as f:
            f.write(data[len(data) // 2:])
        d.start()
        d.wait_ready()
        _corrected_once(d, path)
        assert d.stop() == 0
    finally:
        d.cleanup()
