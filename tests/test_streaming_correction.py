"""core.streaming_correction: frames given one at a time give the result of the whole movie.

Simulated movies (core.simulate) with hot pixels, a gain reference and local motion; the streamed
result must equal ``correct_movie`` of the same frames (the acceptance of issue 15 asks correlation
> 0.9999 per sum and shifts to 0.01 px), and both must follow the simulated trajectory.

Value for value (``_same``) when every frame was transformed with the final mask or transformed
again; up to float32 rounding (``_close``) when some spectra were updated in Fourier space (a few
changed pixels' transform added to the streamed spectrum rounds differently from a new transform).
"""
from __future__ import annotations

import numpy as np
import pytest
from sim_helpers import simulated

from framewatch.core.correct import correct_movie
from framewatch.core.errors import MovieFormatError
from framewatch.core.frame_arithmetic import sum_frames
from framewatch.core.movie_correction import MovieCorrection
from framewatch.core.settings import CorrectionSettings
from framewatch.core.streaming_correction import FOURIER_UPDATE_MAX_POINTS, StreamingCorrection

SUMS = ("dose_weighted_sum", "even_sum", "odd_sum")


def _stream(frames, settings, **kw):
    stream = StreamingCorrection(settings, frames[0].shape, **kw)
    for frame in frames:
        stream.add_frame(frame)
    return stream, stream.finish()


def _same(a, b):
    """Identical: the same frames through the same transforms."""
    for key in (*SUMS, "shifts_px", "replaced_pixels"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)


def _close(a, b):
    """Equal up to float32 rounding, for results where spectra were updated in Fourier space: the
    acceptance (correlation > 0.9999 per sum, shifts within 0.01 px) and, tighter, every value within
    1e-5 of the sum's largest (measured on these movies: <= 1.4e-6; shifts differ by ~2e-8 px). The
    replaced pixels (the final mask) are the same."""
    for key in SUMS:
        x, y = getattr(a, key), getattr(b, key)
        assert np.corrcoef(x.ravel(), y.ravel())[0, 1] > 0.9999, key
        assert np.abs(x - y).max() <= 1e-5 * np.abs(y).max(), key
    np.testing.assert_allclose(a.shifts_px, b.shifts_px, rtol=0, atol=0.01)
    np.testing.assert_array_equal(a.replaced_pixels, b.replaced_pixels)


def _final_mask(frames, settings, gain=None):
    """The mask ``correct_movie`` ends with (bad gain, dead and hot pixels on the sum)."""
    return MovieCorrection(settings, frames[0].shape, None).bad_mask(sum_frames(list(frames)), gain, None)


def _far_from(mask, *, distance=6):
    """A good pixel (y, x) with no bad pixel within ``distance`` (its replacement window stays clear)."""
    from scipy import ndimage

    clear = ~ndimage.binary_dilation(mask, iterations=distance)
    clear[:distance] = clear[-distance:] = False
    clear[:, :distance] = clear[:, -distance:] = False
    ys, xs = np.nonzero(clear)
    return int(ys[ys.size // 2]), int(xs[ys.size // 2])


@pytest.mark.parametrize("patches", [(0, 0), (3, 3)])
def test_streamed_equals_whole_movie_with_gain_and_hot_pixels(patches):
    sim = simulated(ny=384, nx=384, n_frames=8, dose_per_frame_e_per_a2=1.0, n_hot_pixels=6, trajectory="jerky",
                    local_amplitude_px=1.5 if patches != (0, 0) else 0.0, seed=41)
    settings = CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=1.0, patches=patches, threads=1)
    stream, streamed = _stream(list(sim.frames), settings, gain=sim.gain)
    whole = correct_movie(sim.frames, gain=sim.gain, settings=settings)
    # the provisional masks (refreshed on partial sums) missed hot pixels: those frames' spectra were
    # updated in Fourier space, so the result equals the whole movie's up to rounding
    assert stream.frames_updated_in_fourier_space >= 1
    _close(streamed, whole)
    if patches != (0, 0):
        # the patches were measured on the streamed patch spectra (core/streamed_patches.py): the same
        # decision, its z within 0.1 (measured 0.971 against 0.943), the patch shifts within 0.02 px
        assert stream.patches_from_stream
        assert streamed.local_motion.decision == whole.local_motion.decision
        assert abs(streamed.local_motion.evidence.z - whole.local_motion.evidence.z) < 0.1
        np.testing.assert_allclose(streamed.local_motion.patches.shifts_px, whole.local_motion.patches.shifts_px,
                                   rtol=0, atol=0.02)
    else:
        assert streamed.statistics.local_motion == whole.statistics.local_motion
    truth = sim.shifts_px - sim.shifts_px[sim.shifts_px.shape[0] // 2]
    got = streamed.shifts_px - streamed.shifts_px[streamed.shifts_px.shape[0] // 2]
    assert np.abs(got - truth).max() < 0.2  # 384^2 x 8 frames at 1 e/A^2
    found = {tuple(p) for p in sim.hot_pixels_xy.tolist()} & {tuple(p) for p in streamed.replaced_pixels.tolist()}
    assert len(found) >= 5  # of 6 simulated (the whole-movie correction finds the same set: checked above)
    assert stream.frames_transformed_again + stream.frames_updated_in_fourier_space <= 8
    assert streamed.timings_s["streamed_s"] > 0 and streamed.timings_s["fourier_update_s"] > 0


def test_a_hot_pixel_found_only_at_the_end_updates_the_frames_transformed_without_it():
    sim = simulated(ny=256, nx=256, n_frames=6, dose_per_frame_e_per_a2=1.0, seed=42)
    frames = [f.astype(np.float32) for f in sim.frames]
    frames[-1][100, 120] += 400.0  # hot in the last frame only: the sums so far never saw it
    settings = CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=1.0, patches=(0, 0), threads=1)
    stream, streamed = _stream(frames, settings)
    _close(streamed, correct_movie(frames, settings=settings))
    assert [120, 100] in streamed.replaced_pixels.tolist()
    # every frame had a mask without that pixel; one pixel changed in each: updated in Fourier space
    assert (stream.frames_updated_in_fourier_space, stream.frames_transformed_again) == (6, 0)


def test_bad_frames_and_empty_streams_are_named_errors():
    settings = CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=1.0, patches=(0, 0), threads=1)
    stream = StreamingCorrection(settings, (64, 64), movie_path="m.tif")
    with pytest.raises(MovieFormatError, match="m.tif: .*has zero frames"):
        stream.finish()
    with pytest.raises(MovieFormatError, match=r"frame 0 has shape \(32, 64\)"):
        stream.add_frame(np.zeros((32, 64), np.uint8))
    bad = np.ones((64, 64), np.float32)
    bad[3, 3] = np.nan
    with pytest.raises(MovieFormatError, match="NaN"):
        stream.add_frame(bad)


def test_the_previous_movies_mask_spares_the_second_transform():
    # hot pixels of 20 counts per frame: found in every movie of the camera, not on one or two frames
    camera = dict(ny=384, nx=384, n_frames=8, n_hot_pixels=6, hot_counts_per_frame=20.0, seed=44)
    settings = CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=1.0, patches=(0, 0), threads=1)
    first = simulated(dose_per_frame_e_per_a2=1.0, **camera)
    stream, _ = _stream(list(first.frames), settings, gain=first.gain)
    # the first frame's own sum could not show them
    assert stream.frames_transformed_again + stream.frames_updated_in_fourier_space >= 1
    # the next movie of the same camera (same gain and hot pixels: same seed, another dose)
    second = simulated(dose_per_frame_e_per_a2=0.9, **camera)
    settings2 = CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=0.9, patches=(0, 0), threads=1)
    again, streamed = _stream(list(second.frames), settings2, gain=second.gain, expected_mask=stream.final_mask)
    _same(streamed, correct_movie(second.frames, gain=second.gain, settings=settings2))
    assert again.frames_transformed_again == again.frames_updated_in_fourier_space == 0


def test_an_expected_mask_of_another_frame_size_is_only_a_hint_and_ignored():
    # the daemon's workers carry the last movie's mask per camera; a movie of another size must not fail on it
    sim = simulated(ny=256, nx=256, n_frames=6, dose_per_frame_e_per_a2=1.0, n_hot_pixels=3, seed=43)
    settings = CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=1.0, patches=(0, 0), threads=1)
    stream, streamed = _stream(list(sim.frames), settings, gain=sim.gain,
                               expected_mask=np.ones((128, 128), dtype=bool))
    # as without a hint: masks refreshed on partial sums, the early frames updated in Fourier space
    # (equal up to rounding; a 128 x 128 mask of ones would have failed or replaced everything)
    assert stream.frames_updated_in_fourier_space >= 1
    _close(streamed, correct_movie(sim.frames, gain=sim.gain, settings=settings))


# ------------------------------------------------------------ the final mask differs from the expected one

CAMERA = dict(ny=256, nx=256, n_frames=6, dose_per_frame_e_per_a2=1.0, n_hot_pixels=5, hot_counts_per_frame=20.0,
              trajectory="jerky", seed=45)
SETTINGS = CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=1.0, patches=(0, 0), threads=1)


@pytest.mark.parametrize("difference", ["one_extra_pixel", "hot_pixels_missing", "both"])
def test_a_few_pixels_of_difference_update_every_frame_in_fourier_space(difference):
    sim = simulated(**CAMERA)
    final = _final_mask(sim.frames, SETTINGS, sim.gain)
    hot = [(y, x) for x, y in sim.hot_pixels_xy.tolist()]
    assert all(final[p] for p in hot)  # 20 counts per frame: all found
    expected = final.copy()
    if difference in ("one_extra_pixel", "both"):
        expected[_far_from(final)] = True  # a pixel the last movie called hot, this one does not
    if difference in ("hot_pixels_missing", "both"):
        for p in hot:
            expected[p] = False  # new hot pixels since the last movie
    stream, streamed = _stream(list(sim.frames), SETTINGS, gain=sim.gain, expected_mask=expected)
    whole = correct_movie(sim.frames, gain=sim.gain, settings=SETTINGS)
    _close(streamed, whole)
    np.testing.assert_array_equal(stream.final_mask, final)
    assert stream.frames_updated_in_fourier_space == CAMERA["n_frames"]
    assert stream.frames_transformed_again == 0
    # whole-frame (no local motion to work beside): every spectrum updated at once
    assert stream.deferred_update_points == 0
    # with patches, at most DEFERRED_UPDATE_MAX_POINTS in all: the alignment copies updated first, the
    # spectra beside the local motion; the same result as the whole movie's
    local = CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=1.0, patches=(2, 2), threads=1)
    stream, streamed = _stream(list(sim.frames), local, gain=sim.gain, expected_mask=expected)
    assert stream.deferred_update_points == {"one_extra_pixel": 1, "hot_pixels_missing": 5, "both": 6}[difference]
    _close(streamed, correct_movie(sim.frames, gain=sim.gain, settings=local))
    truth = sim.shifts_px - sim.shifts_px[CAMERA["n_frames"] // 2]
    got = streamed.shifts_px - streamed.shifts_px[CAMERA["n_frames"] // 2]
    assert np.abs(got - truth).max() < 0.3


def test_without_the_update_the_missed_hot_pixels_would_stay_in_the_sums(monkeypatch):
    """The check above can fail: with the update made a no-op, the frames keep the values of the
    provisional mask (hot pixels not replaced) and the sums are far from the whole movie's."""
    import framewatch.core.streaming_correction as streaming

    sim = simulated(**CAMERA)
    expected = _final_mask(sim.frames, SETTINGS, sim.gain)
    for x, y in sim.hot_pixels_xy.tolist():
        expected[y, x] = False
    whole = correct_movie(sim.frames, gain=sim.gain, settings=SETTINGS)
    import framewatch.core.sparse_spectrum as sparse_spectrum

    monkeypatch.setattr(streaming, "add_point_spectrum", lambda *args: None)
    monkeypatch.setattr(sparse_spectrum, "add_point_spectrum", lambda *args: None)  # the deferred update
    stream, streamed = _stream(list(sim.frames), SETTINGS, gain=sim.gain, expected_mask=expected)
    assert stream.frames_updated_in_fourier_space == CAMERA["n_frames"]
    error = np.abs(streamed.dose_weighted_sum - whole.dose_weighted_sum).max()
    assert error > 1e-2 * np.abs(whole.dose_weighted_sum).max()  # vs <= 1e-5 with the update


def test_without_the_deferred_points_the_sums_would_keep_the_old_pixel(monkeypatch):
    """The deferred update can fail too: with the points dropped, the sums keep the frames' values
    of the provisional mask at the pixel the last movie called hot."""
    from framewatch.core.movie_correction import MovieCorrection

    sim = simulated(**CAMERA)
    settings = CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=1.0, patches=(2, 2), threads=1)
    final = _final_mask(sim.frames, settings, sim.gain)
    expected = final.copy()
    expected[_far_from(final)] = True
    whole = correct_movie(sim.frames, gain=sim.gain, settings=settings)
    stream, streamed = _stream(list(sim.frames), settings, gain=sim.gain, expected_mask=expected)
    assert stream.deferred_update_points == 1
    _close(streamed, whole)
    finish = MovieCorrection.finish
    monkeypatch.setattr(MovieCorrection, "finish", lambda self, *a, **kw: finish(self, *a, **{**kw, "first_pass_points": None}))
    stream, streamed = _stream(list(sim.frames), settings, gain=sim.gain, expected_mask=expected)
    assert stream.deferred_update_points == 1
    error = np.abs(streamed.dose_weighted_sum - whole.dose_weighted_sum).max()
    assert error > 1e-3 * np.abs(whole.dose_weighted_sum).max()  # vs <= 1e-5 with the points


@pytest.mark.parametrize("difference", ["dead_column", "500_extra_pixels"])
def test_many_pixels_of_difference_transform_the_frames_again(difference):
    sim = simulated(**CAMERA)
    frames = [f.astype(np.float32) for f in sim.frames]
    if difference == "dead_column":
        for f in frames:
            f[:, 77] = 0.0
    final = _final_mask(frames, SETTINGS, sim.gain)
    expected = final.copy()
    if difference == "dead_column":
        assert final[:, 77].all()
        expected[:, 77] = False  # the column died since the last movie: ~200 pixels change per frame
    else:
        rng = np.random.default_rng(3)
        good = np.flatnonzero(~final)
        expected.flat[rng.choice(good, 500, replace=False)] = True
    stream, streamed = _stream(frames, SETTINGS, gain=sim.gain, expected_mask=expected)
    _same(streamed, correct_movie(frames, gain=sim.gain, settings=SETTINGS))  # the same transforms: identical
    assert stream.frames_transformed_again == CAMERA["n_frames"]
    assert stream.frames_updated_in_fourier_space == 0


def test_a_binned_output_transforms_the_frames_again():
    """With Fourier binning the streamed spectrum is cropped, not the plain rfft2 of the frame: no update."""
    sim = simulated(**CAMERA)
    settings = CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=1.0, patches=(0, 0), threads=1,
                                  fourier_bin=2)
    final = _final_mask(sim.frames, settings, sim.gain)
    expected = final.copy()
    expected[_far_from(final)] = True
    stream, streamed = _stream(list(sim.frames), settings, gain=sim.gain, expected_mask=expected)
    _same(streamed, correct_movie(sim.frames, gain=sim.gain, settings=settings))
    assert (stream.frames_transformed_again, stream.frames_updated_in_fourier_space) == (CAMERA["n_frames"], 0)


def test_the_limit_is_where_the_update_stops():
    """Expected masks with k extra good pixels (far apart): each frame changes at those of the k whose
    value differs from their replacement. At most FOURIER_UPDATE_MAX_POINTS: updated; more: transformed
    again. Both results match the whole movie's."""
    sim = simulated(**CAMERA)
    final = _final_mask(sim.frames, SETTINGS, sim.gain)
    whole = correct_movie(sim.frames, gain=sim.gain, settings=SETTINGS)
    rng = np.random.default_rng(4)
    candidates = np.flatnonzero(~final)
    for k in (FOURIER_UPDATE_MAX_POINTS // 2, 4 * FOURIER_UPDATE_MAX_POINTS):
        expected = final.copy()
        expected.flat[rng.choice(candidates, k, replace=False)] = True
        stream, streamed = _stream(list(sim.frames), SETTINGS, gain=sim.gain, expected_mask=expected)
        _close(streamed, whole)
        if k <= FOURIER_UPDATE_MAX_POINTS:
            assert (stream.frames_updated_in_fourier_space, stream.frames_transformed_again) == (CAMERA["n_frames"], 0)
            assert stream.deferred_update_points == 0  # more than DEFERRED_UPDATE_MAX_POINTS: each spectrum at once
        else:  # 128 pixels at ~2 counts: far more than 32 of them differ from their replacement
            assert (stream.frames_updated_in_fourier_space, stream.frames_transformed_again) == (0, CAMERA["n_frames"])
