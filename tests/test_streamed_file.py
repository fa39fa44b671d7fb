"""core.streamed_file.stream_correct_file: a movie corrected while a background thread writes it on
disk (every frame in two halves, a few ms apart) gives correct_movie_file of the finished file.

The streamed and the whole-file corrections take the same decoded frames through the same engine, so
they are compared exactly (the acceptance of issue 15: correlation > 0.9999 per sum, shifts to
0.01 px). Fallbacks: a file truncated, replaced or ending with another frame count than announced
is a MovieChangedError naming it; a cancelled stream is StreamCancelled; a file that stops growing
is StreamStalled.
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from growing_writer import GrowingWriter, WriterControl
from sim_helpers import simulated
from test_growing_movie import EER_OPTIONS, KINDS, N_FRAMES, case_bytes, sim_frames

from framewatch.core.correct import correct_movie_file
from framewatch.core.errors import (
    MovieChangedError,
    StreamCancelled,
    StreamNotStarted,
    StreamSettingsChanged,
    StreamStalled,
)
from framewatch.core.movie_io import GrowingMovie, write_image_mrc
from framewatch.core.settings import CorrectionSettings
from framewatch.core.streamed_file import StreamEnd, stream_correct_file

SUMS = ("dose_weighted_sum", "even_sum", "odd_sum")


def settings_for(suffix: str) -> CorrectionSettings:
    extra = {"eer_group_frames": EER_OPTIONS["eer_group_frames"]} if suffix == ".eer" else {}
    return CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=1.0, patches=(0, 0), threads=1, **extra)


def streamed(tmp_path, kind, *, pause_s=0.004, hooks=None, stop_at=None, end_count=None, **kw):
    """Write case ``kind`` in a thread and stream-correct it; returns (StreamedMovie, path, settings)."""
    suffix, _, steps, n = case_bytes(kind, tmp_path, sim_frames())
    path = tmp_path / f"movie{suffix}"
    writer = GrowingWriter(path, steps, pause_s=pause_s, hooks=hooks, stop_at=stop_at)
    settings = settings_for(suffix)
    control = WriterControl(writer, n if end_count is None else end_count, cancel_after_s=kw.pop("cancel_after_s", None))
    writer.start()
    try:
        out = stream_correct_file(path, settings=settings, control=control, poll_s=0.002, **kw)
    finally:
        writer.join(timeout=30)
    assert writer.error is None, writer.error
    return out, path, settings


def assert_same(streamed_result, whole):
    for key in SUMS:
        a, b = getattr(streamed_result, key), getattr(whole, key)
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9999, key
        np.testing.assert_array_equal(a, b, err_msg=key)
    np.testing.assert_allclose(streamed_result.shifts_px, whole.shifts_px, atol=0.01)
    np.testing.assert_array_equal(streamed_result.shifts_px, whole.shifts_px)


@pytest.mark.parametrize("kind", KINDS)
def test_a_movie_corrected_while_written_equals_the_finished_files_correction(tmp_path, kind):
    gain = simulated(ny=256, nx=256, n_frames=N_FRAMES, dose_per_frame_e_per_a2=1.0, seed=5).gain
    out, path, settings = streamed(tmp_path, kind, gain=gain)
    whole = correct_movie_file(path, settings=settings, gain=gain)
    assert_same(out.result, whole)
    if kind == "eer_no_count":  # no fraction is known before the raw-frame count (growing_eer.py)
        assert out.frames_before_end == 0
    else:
        assert out.frames_before_end >= 1  # it really streamed
    assert out.final_mask.shape == (256, 256) and out.final_mask.dtype == bool
    assert out.streamed_s > 0 and out.finish_s > 0


@pytest.mark.parametrize("kind", ["tiff_lzw", "mrc_nz_final", "eer_count"])
def test_a_movie_complete_before_its_first_frame_was_read(tmp_path, kind):
    """A movie renamed into place in whole, its end known at the first look: asked to, the stream
    stops before decoding anything (the caller reads it as a complete movie); else it is followed."""
    suffix, _, steps, n = case_bytes(kind, tmp_path, sim_frames())
    path = tmp_path / f"movie{suffix}"
    writer = GrowingWriter(path, steps, pause_s=0.0)
    writer.start()
    writer.join(timeout=30)
    assert writer.error is None and writer.done.is_set()
    settings = settings_for(suffix)
    with pytest.raises(StreamNotStarted, match="before the stream had corrected a frame") as err:
        stream_correct_file(path, settings=settings, control=WriterControl(writer, n), poll_s=0.002,
                            stop_if_not_started=True)
    assert err.value.path == path
    out = stream_correct_file(path, settings=settings, control=WriterControl(writer, n), poll_s=0.002)
    assert out.frames_before_end == 0
    assert_same(out.result, correct_movie_file(path, settings=settings))


@pytest.mark.parametrize("kind", ["tiff_lzw", "eer_no_count"])
def test_a_stream_that_read_frames_is_not_stopped(tmp_path, kind):
    """``stop_if_not_started`` stops nothing once a frame (EER: a raw frame parsed, though no
    fraction could be made before the end) was read."""
    out, path, settings = streamed(tmp_path, kind, stop_if_not_started=True)
    assert_same(out.result, correct_movie_file(path, settings=settings))


def test_frames_are_decoded_by_a_reader_thread_one_at_a_time(tmp_path, monkeypatch):
    """Decoding overlaps the transforms: every poll runs in the stream's reader thread and asks for
    one frame, so the caller transforms frame i while frame i + 1 decodes."""
    polls = []
    poll = GrowingMovie.poll

    def spy(self, max_frames=None):
        polls.append((threading.current_thread().name, max_frames))
        return poll(self, max_frames)

    monkeypatch.setattr(GrowingMovie, "poll", spy)
    out, path, settings = streamed(tmp_path, "tiff_lzw")
    assert len(polls) >= N_FRAMES
    assert set(polls) == {("framewatch-stream-reader", 1)}, set(polls)
    assert_same(out.result, correct_movie_file(path, settings=settings))


def test_a_gain_file_defects_and_the_previous_movies_mask(tmp_path):
    sim = simulated(ny=256, nx=256, n_frames=N_FRAMES, dose_per_frame_e_per_a2=1.0, seed=5)
    gain_path = tmp_path / "gain.mrc"
    write_image_mrc(gain_path, sim.gain.astype(np.float32), pixel_size_a=1.5)
    defects = tmp_path / "defects.txt"
    defects.write_text("10 20 1 1\n")
    first, path, settings = streamed(tmp_path, "mrc_nz_final", gain=gain_path, defects_path=defects)
    whole = correct_movie_file(path, settings=settings, gain=gain_path, defects_path=defects)
    assert_same(first.result, whole)
    again, path, _ = streamed(tmp_path, "tiff_lzw", gain=gain_path, defects_path=defects, expected_mask=first.final_mask)
    assert_same(again.result, correct_movie_file(path, settings=settings, gain=gain_path, defects_path=defects))


def test_an_eer_movie_grouped_by_dose_sets_the_dose_per_fraction(tmp_path):
    suffix, _, steps, n = case_bytes("eer_count", tmp_path, sim_frames())
    path = tmp_path / "movie.eer"
    writer = GrowingWriter(path, steps)
    settings = CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=1.0, patches=(0, 0), threads=1,
                                  eer_fraction_dose_e_per_a2=1.5)
    writer.start()
    out = stream_correct_file(path, settings=settings, control=WriterControl(writer, n), movie_dose_e_per_a2=6.0,
                              poll_s=0.002)
    writer.join()
    assert_same(out.result, correct_movie_file(path, settings=settings, movie_dose_e_per_a2=6.0))
    assert out.frames_before_end >= 1 and out.result.dose_weighted_sum.shape == (256, 256)


class FinalControl:
    """A writer's control that answers with final settings (a :class:`StreamEnd`), as the daemon does
    once the mdoc line written after the movie is read."""

    def __init__(self, inner: WriterControl, **final):
        self._inner, self._final = inner, final

    def end(self):
        n = self._inner.end()
        return None if n is None else StreamEnd(n, **self._final)

    def cancelled(self) -> bool:
        return self._inner.cancelled()


def _stream_with_final(tmp_path, kind, provisional, *, movie_dose=None, **final):
    suffix, _, steps, n = case_bytes(kind, tmp_path, sim_frames())
    path = tmp_path / f"movie{suffix}"
    writer = GrowingWriter(path, steps)
    writer.start()
    try:
        out = stream_correct_file(path, settings=provisional, control=FinalControl(WriterControl(writer, n), **final),
                                  movie_dose_e_per_a2=movie_dose, poll_s=0.002)
    finally:
        writer.join(timeout=30)
    return out, path


def test_the_final_settings_given_at_the_end_are_those_of_the_result(tmp_path):
    provisional = settings_for(".mrc")
    final = CorrectionSettings(pixel_size_a=1.4, dose_per_frame_e_per_a2=0.4, prior_dose_e_per_a2=6.0, voltage_kv=200.0,
                               patches=(0, 0), threads=1)
    out, path = _stream_with_final(tmp_path, "mrc_nz_final", provisional, settings=final)
    assert out.frames_before_end >= 1
    assert_same(out.result, correct_movie_file(path, settings=final))


@pytest.mark.parametrize("kind", ["eer_count", "eer_no_count"])
def test_an_eer_movie_whose_dose_is_known_only_at_the_end(tmp_path, kind):
    """Fractions by a dose target, the movie's dose from the mdoc line written after it: the stream
    groups the raw frames at the end (with a count in the metadata too: no grouping before the dose)."""
    settings = CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=1.0, patches=(0, 0), threads=1,
                                  eer_fraction_dose_e_per_a2=1.5)
    out, path = _stream_with_final(tmp_path, kind, settings, settings=settings, movie_dose_e_per_a2=6.0)
    assert_same(out.result, correct_movie_file(path, settings=settings, movie_dose_e_per_a2=6.0))
    assert out.result.settings.dose_per_frame_e_per_a2 == pytest.approx(1.5)


def test_a_final_dose_that_regroups_fractions_already_streamed_is_a_settings_change(tmp_path):
    settings = CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=1.0, patches=(0, 0), threads=1,
                                  eer_fraction_dose_e_per_a2=1.5)
    with pytest.raises(StreamSettingsChanged, match="grouped"):
        _stream_with_final(tmp_path, "eer_count", settings, movie_dose=6.0, settings=settings, movie_dose_e_per_a2=3.0)


def test_final_settings_that_change_the_first_pass_are_a_settings_change(tmp_path):
    provisional = settings_for(".mrc")
    final = CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=1.0, patches=(0, 0), threads=1, fourier_bin=2)
    with pytest.raises(StreamSettingsChanged, match="transform the frames differently"):
        _stream_with_final(tmp_path, "tiff_lzw", provisional, settings=final)


# ------------------------------------------------------------------------------------------ fallbacks


def test_a_file_truncated_mid_stream_is_a_changed_movie(tmp_path):
    with pytest.raises(MovieChangedError, match="movie.mrc: truncated while it was read"):
        streamed(tmp_path, "mrc_nz_final", hooks={9: lambda p: (os.truncate(p, 2000), time.sleep(0.2))})


def test_a_file_replaced_mid_stream_is_a_changed_movie(tmp_path):
    def replace(path):
        other = path.with_name("other.tif")
        other.write_bytes(path.read_bytes())
        os.replace(other, path)

    with pytest.raises(MovieChangedError, match="movie.tif: replaced by another file"):
        streamed(tmp_path, "tiff_lzw", hooks={9: replace})


@pytest.mark.parametrize("kind", ["mrc_nz_growing", "tiff_none", "eer_no_count"])
def test_a_final_count_other_than_the_files_is_a_changed_movie(tmp_path, kind):
    n = case_bytes(kind, tmp_path, sim_frames())[3]
    with pytest.raises(MovieChangedError, match=f"movie.*: its writer said it is complete with {n - 1} "):
        streamed(tmp_path, kind, end_count=n - 1)


def test_a_cancelled_stream_stops(tmp_path):
    with pytest.raises(StreamCancelled, match="movie.tif: the stream was cancelled"):
        streamed(tmp_path, "tiff_lzw", pause_s=0.05, cancel_after_s=0.1)


def test_a_stream_whose_file_stops_growing_raises_after_the_stall_limit(tmp_path):
    with pytest.raises(StreamStalled, match=r"movie.mrc: the file has not grown for 0 s .*frames read"):
        streamed(tmp_path, "mrc_nz_final", stop_at=6, stall_s=0.3)
    assert issubclass(StreamStalled, MovieChangedError)  # the caller falls back as for a changed file
