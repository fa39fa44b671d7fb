"""Intake (found by the torture run and under load): a movie found complete by its line in the
tilt-series mdoc is queued with what that line says, even when the mdoc is re-read, mid-rewrite and
without the line, before the movie is queued (it was resolved by its file name instead and failed,
"no dose"); and a movie's complete time is never before its last write."""
import io
import time

from daemon_helpers import TEST_CONFIG

from framewatch.daemon.commands.simulated_acquisition import Acquisition
from framewatch.daemon.config.configuration import load_config
from framewatch.daemon.config.processing_options import ProcessingOptions
from framewatch.daemon.service.daemon import Daemon


def test_ready_movie_keeps_its_mdoc_line(tmp_path):
    (tmp_path / "acq").mkdir()
    acq = Acquisition(tmp_path / "acq", n_tilts=2, shape=(64, 64), n_frames=4, frame_interval_s=0.0)
    acq.start_mdoc()
    movie = acq.write_tilt(0).path  # TIFF, 4 pages, listed with NumSubFrames = 4 and ExposureDose = 3
    (tmp_path / "framewatch.toml").write_text(TEST_CONFIG)
    d = Daemon(tmp_path / "acq", tmp_path / "out", state_dir=tmp_path / "state",
               config=load_config(str(tmp_path / "framewatch.toml")), options=ProcessingOptions(pixel_size_a=1.5),
               stdout=io.StringIO())
    d._setup()
    try:
        now = time.time()
        d.intake.scan(now)
        ready = d.intake.evaluate(d.intake.cands[str(movie)], now)
        assert ready is not None and ready[2].signal == "tiff_expected_pages"
        # the acquisition software rewrites the mdoc; another movie's check reads it half-written
        text = acq.mdoc_path.read_text()
        acq.mdoc_path.write_text(text[: text.index("[ZValue = 0]")])
        d.index.note_mdoc(acq.mdoc_path, time.time())
        assert d.index.entry_for(movie) is None
        d.intake.admit([ready], time.time())
        row = d.journal.latest(str(movie), d.hash)
        assert row["state"] == "ready", row["error"]
        assert row["info"]["tilt"]["grouping"] == "mdoc" and row["info"]["resolved"]["dose_e_per_a2"] == 3.0
    finally:
        d._shutdown()


def test_complete_time_counts_from_the_last_change(tmp_path):
    """A TIFF whose writer stalls longer than tiff_stable_s looks complete, waits for its mdoc line,
    then gets its last page: it was complete only then (complete_at never before the last write)."""
    import numpy as np
    from daemon_helpers import add_section

    from framewatch.daemon.commands.simulated_acquisition import write_tiff_frame_by_frame

    (tmp_path / "acq").mkdir()
    acq = Acquisition(tmp_path / "acq", n_tilts=1, shape=(64, 64), n_frames=8, frame_interval_s=0.0)
    acq.start_mdoc()  # the series mdoc is there: the movie waits for its line
    movie = acq.frames_dir / "TS_01_000_0.0.tif"
    frames = np.random.default_rng(0).poisson(1.0, (8, 64, 64)).astype(np.uint8)
    write_tiff_frame_by_frame(movie, frames[:7], 0.0)
    (tmp_path / "framewatch.toml").write_text(TEST_CONFIG.replace("tiff_stable_s = 1.0", "tiff_stable_s = 0.2")
                                              .replace("mdoc_wait_s = 3.0", "mdoc_wait_s = 30.0"))
    d = Daemon(tmp_path / "acq", tmp_path / "out", state_dir=tmp_path / "state",
               config=load_config(str(tmp_path / "framewatch.toml")), options=ProcessingOptions(pixel_size_a=1.5),
               stdout=io.StringIO())
    d._setup()
    try:
        d.intake.scan(time.time())
        cand = d.intake.cands[str(movie)]
        assert d.intake.evaluate(cand, time.time()) is None  # first look
        time.sleep(0.3)
        assert d.intake.evaluate(cand, time.time()) is None  # 7 pages, stable: complete, but waits for its line
        assert cand.complete_since is not None
        time.sleep(0.05)
        last_write = time.time()
        write_tiff_frame_by_frame(movie, frames[7:], 0.0)  # the writer goes on
        add_section(acq, movie.name, 0.0, 0, frames=8)
        d.index.note_mdoc(acq.mdoc_path, time.time())
        ready = d.intake.evaluate(cand, time.time())
        assert ready is not None and ready[2].n_frames == 8
        d.intake.admit([ready], time.time())
        row = d.journal.latest(str(movie), d.hash)
        assert row["state"] == "ready" and row["complete_at"] >= last_write
    finally:
        d._shutdown()


def test_movie_waits_for_the_rest_of_its_mdoc_line(tmp_path):
    """A movie's mdoc line read half-written (SubFramePath there, DateTime not yet) is not used as
    it is: the movie waits for the rest, so its acquisition time comes from the mdoc DateTime like
    its neighbours' (with the file's mtime it was queued out of order)."""
    (tmp_path / "acq").mkdir()
    acq = Acquisition(tmp_path / "acq", n_tilts=3, shape=(64, 64), n_frames=4, frame_interval_s=0.0)
    acq.start_mdoc()
    acq.write_tilt(0)
    acq.write_tilt(1)
    acq.write_mdoc = False
    m = acq.write_tilt(2)
    section = acq.section_text(m, prior=6.0)
    cut = section.index("DateTime")
    with open(acq.mdoc_path, "a") as f:
        f.write(section[:cut])  # everything up to DateTime
    (tmp_path / "framewatch.toml").write_text(TEST_CONFIG)
    d = Daemon(tmp_path / "acq", tmp_path / "out", state_dir=tmp_path / "state",
               config=load_config(str(tmp_path / "framewatch.toml")), options=ProcessingOptions(pixel_size_a=1.5),
               stdout=io.StringIO())
    d._setup()
    try:
        d.intake.scan(time.time())
        cand = d.intake.cands[str(m.path)]
        assert d.index.entry_for(m.path) is not None  # its line is there, without DateTime yet
        assert d.intake.evaluate(cand, time.time()) is None  # waits for the rest of its line
        with open(acq.mdoc_path, "a") as f:
            f.write(section[cut:])
        d.index.note_mdoc(acq.mdoc_path, time.time())
        ready = d.intake.evaluate(cand, time.time())
        assert ready is not None
        info = ready[3]
        assert info.order_source == "mdoc DateTime" and info.acquisition_index == 2
    finally:
        d._shutdown()
