"""correct_movie against ground truth on the acceptance cases of the engine issue.

Movies: 2048 x 2048, 10 frames, 3 e/A^2 per tilt (0.3 per frame), 1.5 A/px: about 0.7 counts per
pixel per frame, the tomography case. Tolerances: trajectory RMSE <= 0.08 px after removing a
constant offset; FRC against the ideal image >= 0.98 of an oracle sum (same noisy frames, true
shifts) in each quarter band to Nyquist.
"""
import numpy as np
import pytest
from sim_helpers import quarter_band_frc, simulated, trajectory_rmse_px

from framewatch.core.correct import correct_movie
from framewatch.core.drift_stats import accumulated_motion, tilt_motion

TILT = dict(ny=2048, nx=2048, n_frames=10, pixel_size_a=1.5, dose_per_frame_e_per_a2=0.3)
OPTIONS = dict(pixel_size_a=1.5, dose_per_frame_e_per_a2=0.3)


def _check_against_truth(sim, **extra):
    result = correct_movie(sim.frames, gain=sim.gain, **OPTIONS, **extra)
    oracle = correct_movie(sim.frames, gain=sim.gain, shifts_px=sim.shifts_px, **OPTIONS, **extra)
    rmse = trajectory_rmse_px(result.shifts_px, sim.shifts_px)
    ratio = quarter_band_frc(result.dose_weighted_sum, sim.ideal) / quarter_band_frc(oracle.dose_weighted_sum, sim.ideal)
    return result, rmse, ratio


@pytest.mark.parametrize("trajectory", ["drift_jump", "subpixel"])
def test_whole_frame_alignment_recovers_trajectory_and_image(trajectory):
    sim = simulated(**TILT, trajectory=trajectory, seed=11, n_hot_pixels=25, dead_column=333)
    if trajectory == "subpixel":
        assert np.abs(sim.shifts_px).max() < 1.0  # every shift is sub-pixel
    result, rmse, ratio = _check_against_truth(sim)
    assert rmse <= 0.08, f"trajectory RMSE {rmse:.3f} px"
    assert np.all(ratio >= 0.98), f"FRC / oracle FRC per quarter band {np.round(ratio, 4)}"
    assert np.array_equal(result.shifts_px[0], [0.0, 0.0])
    # hot pixels and the dead column were found and replaced
    replaced = {tuple(p) for p in result.replaced_pixels.tolist()}
    assert {tuple(p) for p in sim.hot_pixels_xy.tolist()} <= replaced
    assert {(333, y) for y in range(2048)} <= replaced
    assert len(replaced) < 25 + 2048 + 20  # few false positives
    # statistics are RELION's definitions applied to the recovered trajectory
    motion = accumulated_motion(result.shifts_px, result.accumulated_dose_e_per_a2)
    assert result.statistics.total_motion_px == pytest.approx(motion.total_px)
    assert result.statistics.total_motion_a == pytest.approx(motion.total_px * 1.5)
    assert result.statistics.relion_early_motion_px == pytest.approx(motion.total_px)  # RELION: 3 e/A^2 <= 4, all early
    # per tilt: early = steps into frames within min(4, 3/3) = 1.0 e/A^2 of this exposure (frames 1, 2)
    steps = np.linalg.norm(np.diff(result.shifts_px, axis=0), axis=1)
    assert result.statistics.early_dose_cutoff_e_per_a2 == pytest.approx(1.0)
    assert result.statistics.early_motion_px == pytest.approx(steps[:2].sum())
    assert result.statistics.late_motion_px == pytest.approx(steps[2:].sum())


def test_strong_fixed_pattern_gain_does_not_pull_shifts_to_zero():
    # 30 % pixel gain variation, 10 % column banding, and a gain reference with 5 % residual error
    sim = simulated(**TILT, trajectory="subpixel", seed=5, gain_rms=0.3, gain_columns_rms=0.1, gain_reference_error_rms=0.05)
    _, rmse, ratio = _check_against_truth(sim)
    assert rmse <= 0.08, f"trajectory RMSE {rmse:.3f} px"
    assert np.all(ratio >= 0.98), np.round(ratio, 4)


def test_prior_dose_changes_statistics_not_the_image():
    sim = simulated(ny=512, nx=512, n_frames=10, trajectory="drift_jump", seed=2)
    first = correct_movie(sim.frames, gain=sim.gain, **OPTIONS)
    later = correct_movie(sim.frames, gain=sim.gain, prior_dose_e_per_a2=30.0, **OPTIONS)
    np.testing.assert_allclose(later.accumulated_dose_e_per_a2, 30.0 + 0.3 * np.arange(1, 11))
    # RELION's rule counts the prior dose: a later tilt has no early motion
    assert first.statistics.relion_early_motion_px > 0 and later.statistics.relion_early_motion_px == 0.0
    assert later.statistics.relion_late_motion_px == pytest.approx(first.statistics.total_motion_px)
    # per tilt (the live outputs): counted from the start of each exposure, the prior dose does not matter
    assert first.statistics.early_motion_px > 0
    assert later.statistics.early_motion_px == pytest.approx(first.statistics.early_motion_px)
    # and it is the jump the simulator put at the start of the exposure (frames 0-2), within 0.2 px
    own = 0.3 * np.arange(1, 11)
    truth = tilt_motion(sim.shifts_px, 30.0 + own, prior_dose_e_per_a2=30.0)
    assert truth.per_tilt.early_px > 2.0  # the 2.5 px jump and a little drift
    assert later.statistics.early_motion_px == pytest.approx(truth.per_tilt.early_px, abs=0.2)
    assert later.statistics.late_motion_px == pytest.approx(truth.per_tilt.late_px, abs=0.3)
    # with per-subset normalisation the prior dose is a common factor of every frame's weight
    np.testing.assert_allclose(later.dose_weighted_sum, first.dose_weighted_sum, rtol=1e-4, atol=1e-3)


def test_even_odd_half_sums_hold_half_the_frames_with_their_own_normalisation():
    # a flat specimen: every sum is pure Poisson noise, whose power is known exactly. Each weighted
    # sub-sum has the noise power of a plain sum of its own frames: var = n_sub * mean(lambda * gain).
    sim = simulated(ny=512, nx=512, n_frames=10, trajectory="none", seed=4, contrast_rms=0.0, dose_per_frame_e_per_a2=3.0)
    result = correct_movie(
        sim.frames, gain=sim.gain, shifts_px=np.zeros((10, 2)), pixel_size_a=1.5, dose_per_frame_e_per_a2=3.0
    )
    lam = 3.0 * 1.5**2
    per_frame_var = lam * float(np.mean(sim.true_gain))
    for image, n_sub in ((result.even_sum, 5), (result.odd_sum, 5), (result.dose_weighted_sum, 10)):
        assert image.mean() == pytest.approx(n_sub * lam, rel=0.01)  # zero frequency unweighted: plain sum
        assert image.var() == pytest.approx(n_sub * per_frame_var, rel=0.03)
    # independent halves: no correlation between even and odd noise
    assert abs(np.corrcoef(result.even_sum.ravel(), result.odd_sum.ravel())[0, 1]) < 0.01


def test_dose_weighting_raises_high_frequency_frc_on_a_high_dose_movie():
    # 30 e/A^2 over 10 frames with radiation damage in the simulator: weighting must help at high
    # frequency; at 3 e/A^2 it changes the image little.
    high = simulated(ny=1024, nx=1024, n_frames=10, dose_per_frame_e_per_a2=3.0, radiation_damage=True, seed=6)
    r = correct_movie(high.frames, gain=high.gain, pixel_size_a=1.5, dose_per_frame_e_per_a2=3.0, unweighted_sum=True)
    weighted, plain = quarter_band_frc(r.dose_weighted_sum, high.ideal), quarter_band_frc(r.unweighted_sum, high.ideal)
    assert weighted[2] > plain[2] + 0.02 and weighted[3] > plain[3] + 0.015, (weighted, plain)
    assert weighted[0] == pytest.approx(plain[0], abs=0.01)
    low = simulated(ny=1024, nx=1024, n_frames=10, dose_per_frame_e_per_a2=0.3, radiation_damage=True, seed=6)
    r = correct_movie(low.frames, gain=low.gain, pixel_size_a=1.5, dose_per_frame_e_per_a2=0.3, unweighted_sum=True)
    weighted, plain = quarter_band_frc(r.dose_weighted_sum, low.ideal), quarter_band_frc(r.unweighted_sum, low.ideal)
    np.testing.assert_allclose(weighted, plain, atol=0.01)
