"""core.streamed_patches: local motion's patch spectra built frame by frame while a movie streams.

The streamed measurements must be those of ``measure_patches`` on the alignment copy registered by
the final whole-frame shifts: exactly (to float32 rounding) when the final shifts are the
preliminary ones, and to well below the noise after the difference is taken out. When they cannot
be (a failed preliminary correlation, another grid or grouping at the end, too much memory), they
are refused with the reason and the caller measures as before.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
from sim_helpers import simulated

import framewatch.core.streamed_patches as streamed_patches
from framewatch.core.correct import correct_movie
from framewatch.core.fourier import irfft2, shift_spectrum
from framewatch.core.local_align import PatchOptions, measure_patches, patch_layout, taper_window
from framewatch.core.settings import CorrectionSettings
from framewatch.core.streamed_patches import StreamedPatches
from framewatch.core.streaming_correction import StreamingCorrection

SIZE = 512
OPTIONS = PatchOptions(patches=(3, 3), overlap=0.5, bfactor_px2=40.0, max_iterations=10, tolerance_px=0.01, threads=1)
# 3 x 3 patches of 256 px at 1.5 A: 0.3 e/A^2 per frame puts 44 000 electrons in a patch, so frames
# are measured in groups of 3 (and 10 frames leave a remainder that joins the last group)
DOSE = 0.3


def _layout(n_frames: int, options: PatchOptions = OPTIONS):
    return patch_layout((SIZE, SIZE), n_frames=n_frames, bin_factor=1.0, pixel_size_a=1.5,
                        dose_per_frame_e_per_a2=DOSE, options=options)


def _crops(n_frames: int = 10, seed: int = 3) -> list[np.ndarray]:
    """The alignment spectra of a simulated movie at its own size (no binning)."""
    sim = simulated(ny=SIZE, nx=SIZE, n_frames=n_frames, dose_per_frame_e_per_a2=2.0, local_amplitude_px=1.5,
                    trajectory="jerky", seed=seed)
    return [scipy.fft.rfft2(f.astype(np.float32)).astype(np.complex64) for f in sim.frames]


def _streamed(crops, **kw) -> StreamedPatches:
    layout = _layout(len(crops))
    stream = StreamedPatches(align_shape=(SIZE, SIZE), grid=layout.grid, group_size=kw.pop("group_size", 3),
                             window=taper_window(layout.grid.size_px), bfactor_px2=100.0, max_shift_px=40.0,
                             threads=1)
    for crop in crops:
        stream.add(crop)
    return stream


def _registered(crops, shifts_px) -> np.ndarray:
    return np.stack([irfft2(shift_spectrum(c, (SIZE, SIZE), -dx, -dy), (SIZE, SIZE), threads=1)
                     for c, (dx, dy) in zip(crops, shifts_px)])


def test_the_streamed_groups_give_the_measurements_of_the_registered_copy():
    crops = _crops()
    layout = _layout(len(crops))
    assert layout.group_size == 3 and layout.bounds[-1] == (6, 10)  # the remainder joined the last group
    stream = _streamed(crops)
    shifts = np.array(stream.preliminary_px)  # final = preliminary: nothing to take out
    got = stream.measurements(shifts, layout=layout, bin_factor=1.0, options=OPTIONS)
    want = measure_patches(_registered(crops, shifts), bin_factor=1.0, pixel_size_a=1.5,
                           dose_per_frame_e_per_a2=DOSE, options=OPTIONS)
    assert stream.used and stream.dropped is None
    # the group sums are summed spectra here, summed images there: float32 rounding only
    np.testing.assert_allclose(got.shifts_px, want.shifts_px, rtol=0, atol=1e-3)
    np.testing.assert_allclose(got.significance, want.significance, rtol=1e-3)
    np.testing.assert_array_equal(got.group_times, want.group_times)
    assert np.abs(want.shifts_px).max() > 0.1  # the patches did move (0.22 px): the comparison is not of zeros


def test_the_difference_to_the_final_shifts_is_taken_out():
    crops = _crops()
    layout = _layout(len(crops))
    stream = _streamed(crops)
    # final shifts that drift away from the preliminary ones by 0.04 px per frame, with 0.03 px of
    # jitter (a 4096² movie showed at most 0.034 alignment px); within a group of 3 frames the spread
    # blurs the group sum differently from the final copy's (with 0.4 px of jitter the measurements
    # differed by up to 0.054 px)
    drift = 0.04 * np.arange(len(crops))[:, None] * np.array([1.0, -0.5])
    final = np.array(stream.preliminary_px) + drift + np.random.default_rng(5).uniform(-0.03, 0.03, (len(crops), 2))
    final -= final[0]
    got = stream.measurements(final, layout=layout, bin_factor=1.0, options=OPTIONS)
    want = measure_patches(_registered(crops, final), bin_factor=1.0, pixel_size_a=1.5,
                           dose_per_frame_e_per_a2=DOSE, options=OPTIONS)
    np.testing.assert_allclose(got.shifts_px, want.shifts_px, rtol=0, atol=0.02)
    untaken = np.array([np.mean(final[a:b] - np.array(stream.preliminary_px)[a:b], axis=0) for a, b in layout.bounds])
    assert np.abs(untaken - untaken[0]).max() > 0.2  # what the measurements would be off by otherwise


def test_the_preliminary_shifts_follow_the_trajectory():
    sim = simulated(ny=SIZE, nx=SIZE, n_frames=10, dose_per_frame_e_per_a2=2.0, local_amplitude_px=1.5,
                    trajectory="jerky", seed=3)
    stream = _streamed(_crops())
    truth = sim.shifts_px - sim.shifts_px[0]
    assert np.abs(np.array(stream.preliminary_px) - truth).max() < 0.3
    assert np.abs(truth).max() > 2.0


def test_spectra_that_do_not_fit_the_end_are_refused_with_the_reason():
    crops = _crops()
    shifts = np.array(_streamed(crops).preliminary_px)
    far = shifts.copy()
    far[4] += (1.5, 0.0)  # a preliminary correlation 1.5 px off
    cases = [
        (far, _layout(10), "preliminary shift was 1.50 alignment px"),
        (shifts, _layout(10, PatchOptions(**{**OPTIONS.__dict__, "patches": (2, 2)})), "patches (2, 2)"),
        (shifts[:8], _layout(8), "10 frames streamed, 8 aligned"),
    ]
    for final, layout, reason in cases:
        stream = _streamed(crops)
        assert stream.measurements(final, layout=layout, bin_factor=1.0, options=OPTIONS) is None
        assert reason in stream.dropped and not stream.used
    # streamed in groups of 2 while the end groups by 3 (the dose changed with the final settings)
    stream = _streamed(crops, group_size=2)
    assert stream.measurements(shifts, layout=_layout(10), bin_factor=1.0, options=OPTIONS) is None
    assert "streamed groups of 2" in stream.dropped


def test_more_spectra_than_the_memory_bound_are_dropped(monkeypatch):
    monkeypatch.setattr(streamed_patches, "STREAMED_PATCHES_MAX_BYTES", 3 << 20)  # one group is 2.4 MB
    crops = _crops()
    stream = _streamed(crops)
    assert "more than 3 MiB" in stream.dropped
    assert len(stream.preliminary_px) == 4  # the frames after the second group's first were not taken
    assert stream.measurements(np.zeros((10, 2)), layout=_layout(10), bin_factor=1.0, options=OPTIONS) is None


def _streamed_and_whole(size: int, amplitude_px: float = 2.0):
    """A ``size``² x 10-frame movie with ``amplitude_px`` of local motion (1 e/A^2 per frame), streamed
    frame by frame and corrected whole with the defaults: ``(stream, streamed result, whole result)``."""
    sim = simulated(ny=size, nx=size, n_frames=10, dose_per_frame_e_per_a2=1.0, local_amplitude_px=amplitude_px, seed=7)
    settings = CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=1.0, threads=1)
    stream = StreamingCorrection(settings, sim.frames[0].shape)
    for frame in sim.frames:
        stream.add_frame(frame)
    return stream, stream.finish(), correct_movie(sim.frames, settings=settings)


def test_a_streamed_movie_with_local_motion_ends_as_the_complete_one():
    # 1024²: local motion applied by both, on the streamed spectra by the stream
    stream, streamed, whole = _streamed_and_whole(1024)
    assert stream.patches_from_stream and stream.streamed_patches_dropped is None
    assert streamed.local_motion.decision == whole.local_motion.decision == "applied"
    # measured: patch shifts within 0.0011 px, sums correlated to 1 - 7e-8, the same whole-frame shifts
    np.testing.assert_allclose(streamed.local_motion.patches.shifts_px, whole.local_motion.patches.shifts_px,
                               rtol=0, atol=0.01)
    ys, xs = np.mgrid[0:1024:64, 0:1024:64]
    for t in range(10):
        a = np.hypot(*np.subtract(streamed.local_motion.model.displacement(xs, ys, t),
                                  whole.local_motion.model.displacement(xs, ys, t)))
        assert a.max() < 0.01
    for key in ("dose_weighted_sum", "even_sum", "odd_sum"):
        x, y = getattr(streamed, key), getattr(whole, key)
        assert np.corrcoef(x.ravel(), y.ravel())[0, 1] > 0.9999, key
    np.testing.assert_allclose(streamed.shifts_px, whole.shifts_px, rtol=0, atol=0.01)


def test_near_the_evidence_threshold_the_final_copy_decides():
    # 896² with 1.5 px: the evidence (z = 2.6 against 2.5) is within the margin, so the stream's
    # patches are dropped and the movie is measured as correct_movie measures it: the same numbers
    stream, streamed, whole = _streamed_and_whole(896, 1.5)
    assert abs(whole.local_motion.evidence.z - 2.5) < 0.25
    assert not stream.patches_from_stream
    assert "near its threshold" in stream.streamed_patches_dropped
    assert streamed.statistics.local_motion == whole.statistics.local_motion
    np.testing.assert_allclose(streamed.local_motion.patches.shifts_px, whole.local_motion.patches.shifts_px,
                               rtol=0, atol=1e-5)


@pytest.mark.parametrize("patches", [(0, 0)])
def test_no_patches_no_streamed_spectra(patches):
    settings = CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=1.0, patches=patches, threads=1)
    stream = StreamingCorrection(settings, (256, 256))
    for frame in simulated(ny=256, nx=256, n_frames=4, dose_per_frame_e_per_a2=1.0, seed=2).frames:
        stream.add_frame(frame)
    result = stream.finish()
    assert not stream.patches_from_stream and stream.streamed_patches_dropped is None
    assert "streamed_patches_s" not in result.timings_s
