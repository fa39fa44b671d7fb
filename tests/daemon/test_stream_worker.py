"""A streaming job whose movie was complete before the stream read a frame (a movie renamed into
place in whole, its frame mdoc close behind) is corrected as a complete movie: the outcome is that of
``correct_movie_file`` of the file, with no streamed frames and no fallback (it is not a drop)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from framewatch.core.correct import correct_movie_file
from framewatch.core.movie_io import write_movie
from framewatch.core.settings import CorrectionSettings
from framewatch.core.simulate import SimulationSpec, simulate_movie
from framewatch.daemon.processing.stream_signals import StreamSignals
from framewatch.daemon.processing.worker import correct
from framewatch.daemon.state.records import CorrectionJob


@pytest.fixture
def movie(tmp_path):
    spec = SimulationSpec(ny=256, nx=256, n_frames=8, pixel_size_a=1.5, dose_per_frame_e_per_a2=0.4, seed=3)
    path = tmp_path / "TS_01_000_0.0.tif"
    write_movie(path, simulate_movie(spec, threads=1).frames, tiff_compression="lzw", pixel_size_a=1.5)
    return path


def _job(path, signals: StreamSignals, settings: CorrectionSettings, **kw) -> CorrectionJob:
    return CorrectionJob(1, str(path), settings=settings, stream=signals.channel, **kw)


def test_a_stream_ended_before_its_first_frame_is_read_as_a_complete_movie(tmp_path, movie):
    signals = StreamSignals(tmp_path / "streams")
    signals.reset()
    provisional = CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=0.4, threads=1, patches=(0, 0))
    final = dataclasses.replace(provisional, dose_per_frame_e_per_a2=0.375)  # the mdoc's dose, known at the end
    job = _job(movie, signals, provisional)
    signals.end(dataclasses.replace(job, settings=final, expected_frames=8))  # before the worker looks
    out = correct(job)
    assert out.error is None and not out.dropped, out.error
    assert out.streamed_frames is None and out.fallback is None  # read whole, not a drop
    want = correct_movie_file(movie, settings=final)
    for key in ("dose_weighted_sum", "even_sum", "odd_sum"):
        np.testing.assert_array_equal(getattr(out, key), getattr(want, key), err_msg=key)
    assert out.n_frames == 8 and out.dose_per_frame_e_per_a2 == 0.375


def test_a_frame_count_other_than_the_files_is_still_an_error(tmp_path, movie):
    signals = StreamSignals(tmp_path / "streams")
    signals.reset()
    settings = CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=0.4, threads=1, patches=(0, 0))
    job = _job(movie, signals, settings)
    signals.end(dataclasses.replace(job, expected_frames=9))
    out = correct(job)
    assert out.kind == "FrameCountChanged" and out.retryable, (out.kind, out.error)
    assert "9" in out.error
