"""Local motion through correct_movie: the automatic grid, the evidence rule, forcing, bad patches.

1024 x 1024, 10 frames, 0.3 e/A^2 per frame (3 e/A^2 per tilt), 1.5 A/px: the automatic grid is
3 x 3 patches of 512 px. Scores are quarter-band FRCs against the simulator's ideal image (the
middle frame's configuration), relative to whole-frame alignment or to the oracle (true motion).
The 2048^2 acceptance grid is in test_accuracy_local.py.
"""
import numpy as np
import pytest
from sim_helpers import simulated

from framewatch.core.correct import correct_movie
from framewatch.core.local_motion import choose_patch_grid
from framewatch.core.result import result_summary
from framewatch.core.simulate import oracle_correction, quarter_band_frc

MOVIE = dict(ny=1024, nx=1024, n_frames=10, pixel_size_a=1.5, dose_per_frame_e_per_a2=0.3)
OPTIONS = dict(pixel_size_a=1.5, dose_per_frame_e_per_a2=0.3)


def frc(result, sim):
    return quarter_band_frc(result.dose_weighted_sum, sim.ideal)


def test_a_real_field_is_applied_by_default_and_pays():
    sim = simulated(**MOVIE, contrast_rms=0.15, local_amplitude_px=3.0, seed=7)
    whole = correct_movie(sim.frames, gain=sim.gain, patches=(0, 0), **OPTIONS)
    default = correct_movie(sim.frames, gain=sim.gain, **OPTIONS)
    oracle = oracle_correction(sim)
    stats = default.statistics
    assert stats.local_motion == "applied", stats.local_motion
    assert stats.local_patches == "3x3" and stats.local_evidence_z >= 3.0
    assert 0 < stats.local_field_uncertainty_px < 0.5 * stats.local_field_rms_px
    f_whole, f_default, f_oracle = frc(whole, sim), frc(default, sim), frc(oracle, sim)
    # measured: whole-frame 0.99/0.94/0.85/0.80 of the oracle, defaults 0.998/0.986/0.968/0.954
    assert np.all(f_default / f_oracle >= 0.93), np.round(f_default / f_oracle, 4)
    assert f_default[3] >= 1.1 * f_whole[3], (f_default[3], f_whole[3])
    summary = result_summary(default)["local_motion"]
    assert summary["decision"] == "applied" and summary["evidence"]["supported"]
    assert summary["model"]["model"].startswith("separable")
    assert summary["patch_weighting"] == "spectral_snr"  # the patches weighted by the movie's own spectral SNR


def test_without_local_motion_the_evidence_declines_and_the_result_is_whole_frame():
    sim = simulated(**MOVIE, contrast_rms=0.15, local_amplitude_px=0.0, seed=7)
    whole = correct_movie(sim.frames, gain=sim.gain, patches=(0, 0), **OPTIONS)
    default = correct_movie(sim.frames, gain=sim.gain, **OPTIONS)
    assert default.statistics.local_motion.startswith("declined (not supported by held-out frames: z = ")
    assert default.local_motion.model is None and default.local_motion.fitted_model is not None
    assert any(n.startswith("local_motion: declined (") and "whole-frame only" in n for n in default.notes)
    # declined means whole-frame: the very same sums
    assert np.array_equal(default.dose_weighted_sum, whole.dose_weighted_sum)
    assert np.array_equal(default.even_sum, whole.even_sum) and np.array_equal(default.shifts_px, whole.shifts_px)
    assert whole.statistics.local_motion == "off (--patches 0 0)" and whole.local_motion is None


def test_forcing_applies_the_fit_against_the_evidence_and_says_so():
    sim = simulated(**MOVIE, contrast_rms=0.15, local_amplitude_px=0.0, seed=7)
    forced = correct_movie(sim.frames, gain=sim.gain, patches=(3, 3), local_force=True, **OPTIONS)
    assert forced.statistics.local_motion.startswith("forced (--local-force; not supported")
    assert forced.local_motion.model is not None
    assert any(n.startswith("local_motion: forced") for n in forced.notes)


def test_a_featureless_patch_is_rejected_and_the_field_still_pays():
    # the centre patch of the 3 x 3 grid (movie pixels 256-767) has no specimen at all
    sim = simulated(**MOVIE, contrast_rms=0.15, local_amplitude_px=3.0, seed=12, n_large_features=0,
                    featureless_box_px=(280, 280, 464, 464))
    whole = correct_movie(sim.frames, gain=sim.gain, patches=(0, 0), **OPTIONS)
    result = correct_movie(sim.frames, gain=sim.gain, **OPTIONS)
    patches = result.local_motion.patches
    assert patches.rejected[4] and patches.rejected.sum() == 1, patches.significance.round(1)
    assert result.statistics.local_motion == "applied"
    assert frc(result, sim)[3] > frc(whole, sim)[3]


def test_no_signal_switches_local_motion_off_with_a_reason():
    sim = simulated(**MOVIE, contrast_rms=0.0, seed=3)
    result = correct_movie(sim.frames, gain=sim.gain, **OPTIONS)
    assert result.local_motion.model is None
    assert result.statistics.local_motion.startswith(("off (--patches auto: too little signal", "declined ("))


@pytest.mark.parametrize(("align_shape", "bin_factor", "significance", "patches"), [
    ((1024, 1024), 2.0, 30.0, (5, 5)),  # 2k: patches of 683 px
    ((1024, 1024), 4.0, 30.0, (5, 5)),  # 4k: patches of 1365 px
    ((1024, 1024), 1.0, 30.0, (3, 3)),  # 1k: patches of 512 px
    ((512, 512), 1.0, 30.0, (0, 0)),  # too small for 512 px patches
    ((710, 1000), 5.76, 30.0, (7, 5)),  # K3 5760 x 4092 at 1000 px on the long side
    ((1024, 1024), 2.0, 4.5, (0, 0)),  # whole-frame peaks at the noise level
])
def test_automatic_grid_from_frame_size_and_signal(align_shape, bin_factor, significance, patches):
    choice = choose_patch_grid(align_shape, bin_factor=bin_factor, whole_frame_significance=significance)
    assert choice.patches == patches, choice.reason
    assert choice.reason


@pytest.mark.parametrize("noise_px,at_most", [(0.3, 0.92), (0.05, 1.02)])
def test_the_cross_validation_chooses_the_fields_smoothness_by_its_noise(monkeypatch, noise_px, at_most):
    """Patch measurements of a known smooth field (test_separable_motion's plane waves, 0.4 px rms,
    5 x 5 patches x 10 frames) with per-measurement noise: choosing the second-difference penalty
    with the control grid lowers the field's error where the patches are noisy and costs nothing where
    they are not. Measured over 12 seeds (rms error, choice / light penalty only): 0.141 / 0.166 px
    (0.85) at 0.3 px noise, 0.0338 / 0.0338 at 0.05 px."""
    import test_separable_motion as sep

    from framewatch.core import local_motion
    from framewatch.core.local_align import PatchMeasurements

    def field_error(candidates) -> float:
        monkeypatch.setattr(local_motion, "FIELD_SMOOTHNESS_CANDIDATES", candidates)
        errors = []
        for seed in range(12):
            rng = np.random.default_rng(seed)
            truth = sep.true_model(rng, rms_px=0.4)
            shifts = sep.measurements(rng, truth, noise_px=noise_px)
            meas = PatchMeasurements(shifts, sep.CENTRES, sep.TIMES, np.full(len(sep.CENTRES), 20.0),
                                     np.zeros(len(sep.CENTRES), bool), 1)
            local = local_motion.local_motion_from_patches(meas, n_frames=sep.N_FRAMES, grid=(5, 5),
                                                           image_shape=sep.FIELD, force=True)
            errors.append(sep.error_rms(local.model, truth))
        return float(np.sqrt(np.mean(np.square(errors))))

    candidates = local_motion.FIELD_SMOOTHNESS_CANDIDATES
    light_only = field_error(candidates[:1])
    chosen = field_error(candidates)
    assert chosen <= at_most * light_only, (chosen, light_only)
