"""Local (patch) motion against the simulator's deformation field.

2048 x 2048, 10 frames, 3 e/A^2, 1.5 A/px, 5 x 5 patches. Tolerances: the recovered total motion
(whole-frame + local, relative to the middle frame) at patch centres within 0.3 px RMS of the truth;
FRC against the ideal >= 0.95 of an oracle sum (true global and local motion) in each quarter band;
with no local motion, within 1 % of whole-frame alignment.
"""
import numpy as np
import pytest
from sim_helpers import quarter_band_frc, simulated

from framewatch.core.correct import correct_movie
from framewatch.core.simulate import local_displacement_px

MOVIE = dict(ny=2048, nx=2048, n_frames=10, pixel_size_a=1.5, dose_per_frame_e_per_a2=0.3)
OPTIONS = dict(pixel_size_a=1.5, dose_per_frame_e_per_a2=0.3)


def true_local(sim):
    """The simulator's local motion in the middle frame's registered coordinates (zero there)."""
    m = sim.spec.n_frames // 2
    s_m = sim.shifts_px[m]

    def displacement(x, y, t):
        x0, y0 = np.asarray(x) - s_m[0], np.asarray(y) - s_m[1]
        ax, ay = local_displacement_px(sim, x0, y0, int(round(t)))
        bx, by = local_displacement_px(sim, x0, y0, m)
        return ax - bx, ay - by

    return displacement


def field_rmse_px(result, sim) -> float:
    """RMS error of whole-frame + local motion relative to the middle frame, at patch centres."""
    n, m = sim.spec.n_frames, sim.spec.n_frames // 2
    centres = result.local_motion.patches.centres_px
    truth = true_local(sim)
    errors = []
    for t in range(n):
        est = result.shifts_px[t] - result.shifts_px[m]
        ref = sim.shifts_px[t] - sim.shifts_px[m]
        tx, ty = truth(centres[:, 0], centres[:, 1], t)
        dx, dy = result.local_motion.model.displacement(centres[:, 0], centres[:, 1], float(t))
        errors.append(np.stack([est[0] + dx - ref[0] - tx, est[1] + dy - ref[1] - ty], axis=1))
    return float(np.sqrt(np.mean(np.sum(np.square(errors), axis=-1))))


@pytest.mark.parametrize("amplitude_px", [2.0, 3.0])
def test_local_motion_recovers_the_field_and_approaches_the_oracle(amplitude_px):
    sim = simulated(**MOVIE, local_amplitude_px=amplitude_px, seed=9)
    whole = correct_movie(sim.frames, gain=sim.gain, **OPTIONS)
    local = correct_movie(sim.frames, gain=sim.gain, patches=(5, 5), **OPTIONS)
    oracle = correct_movie(sim.frames, gain=sim.gain, patches=(5, 5), shifts_px=sim.shifts_px,
                           local_displacement_px=true_local(sim), **OPTIONS)
    assert local.local_motion.model is not None, local.notes
    rmse = field_rmse_px(local, sim)
    assert rmse <= 0.3, f"local field RMSE {rmse:.3f} px"
    f_whole, f_local, f_oracle = (quarter_band_frc(r.dose_weighted_sum, sim.ideal) for r in (whole, local, oracle))
    assert np.all(f_local / f_oracle >= 0.95), f"local/oracle {np.round(f_local / f_oracle, 4)}"
    assert f_local[3] > f_whole[3] * 1.1, f"top band: local {f_local[3]:.4f} vs whole-frame {f_whole[3]:.4f}"
    stats = local.statistics
    assert stats.patch_residual_mean_px < 0.3 and stats.patches_rejected_fraction <= 0.2


def test_without_local_motion_the_local_step_does_no_harm():
    sim = simulated(**MOVIE, local_amplitude_px=0.0, seed=9)
    whole = correct_movie(sim.frames, gain=sim.gain, **OPTIONS)
    local = correct_movie(sim.frames, gain=sim.gain, patches=(5, 5), **OPTIONS)
    ratio = quarter_band_frc(local.dose_weighted_sum, sim.ideal) / quarter_band_frc(whole.dose_weighted_sum, sim.ideal)
    assert np.all(ratio >= 0.99), np.round(ratio, 4)


def test_a_featureless_patch_is_rejected_and_does_not_pull_its_neighbours():
    # the centre patch of a 5 x 5 grid (movie pixels 683-1365) has no specimen at all
    sim = simulated(**MOVIE, local_amplitude_px=2.0, seed=12, n_large_features=0,
                    featureless_box_px=(640, 640, 768, 768))
    result = correct_movie(sim.frames, gain=sim.gain, patches=(5, 5), **OPTIONS)
    patches = result.local_motion.patches
    assert patches.rejected[12] and patches.rejected.sum() <= 2, patches.significance.round(1)
    assert field_rmse_px(result, sim) <= 0.3


def test_no_signal_falls_back_to_whole_frame_with_a_reason():
    sim = simulated(ny=1024, nx=1024, n_frames=10, contrast_rms=0.0, seed=3)
    result = correct_movie(sim.frames, gain=sim.gain, patches=(5, 5), **OPTIONS)
    assert result.local_motion.model is None
    assert result.local_motion.fallback_reason and any("whole-frame only" in note for note in result.notes)
