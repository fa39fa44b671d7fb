"""A movie found complete by its line in the tilt-series mdoc is queued with what that line says,
even when the mdoc is re-read, mid-rewrite and without the line, before the movie is queued (found
by the torture run: the movie was resolved by its file name instead and failed, "no dose")."""
import io
import time

from framewatch.daemon.acquisition import Acquisition
from framewatch.daemon.config import load_config
from framewatch.daemon.pipeline import Daemon
from framewatch.daemon.processing_options import ProcessingOptions

from daemon_helpers import TEST_CONFIG


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
        d._scan(now)
        ready = d._evaluate(d.cands[str(movie)], now)
        assert ready is not None and ready[2].signal == "tiff_expected_pages"
        # the acquisition software rewrites the mdoc; another movie's check reads it half-written
        text = acq.mdoc_path.read_text()
        acq.mdoc_path.write_text(text[: text.index("[ZValue = 0]")])
        d.index.note_mdoc(acq.mdoc_path, time.time())
        assert d.index.entry_for(movie) is None
        d._admit([ready], time.time())
        row = d.journal.latest(str(movie), d.hash)
        assert row["state"] == "ready", row["error"]
        assert row["info"]["tilt"]["grouping"] == "mdoc" and row["info"]["resolved"]["dose_e_per_a2"] == 3.0
    finally:
        d._shutdown()
