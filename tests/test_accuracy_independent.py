"""Whole-frame accuracy on movies from the second simulator (tests/independent_sim.py), which shares
no code with framewatch's own: CTF-shaped random-field specimens, a B-factor damage law, pixel
integration, its own motion paths. Issue 12's whole-frame acceptance (10 % contrast, 3 e/Å² over
10 frames of 2048², 1.5 Å/px): trajectory RMSE <= 0.08 px, and FRC against the ideal over the
oracle's (true shifts) >= 0.98 in the three lower quarter bands; the top band, where the middle
frame's own measurement error shifts the whole sum (README, "Whole-frame alignment"), >= 0.97."""
import numpy as np
import pytest
from independent_sim import independent_movie, oracle_correction, trajectory_px
from sim_helpers import quarter_band_frc, trajectory_rmse_px

from framewatch.core.correct import correct_movie

TILT = dict(pixel_size_a=1.5, dose_per_frame_e_per_a2=0.3, patches=(0, 0), threads=2)


def _scores(sim):
    ours = correct_movie(sim.frames, gain=sim.gain, **TILT)
    oracle = oracle_correction(sim, **TILT)
    frc = quarter_band_frc(ours.dose_weighted_sum, sim.ideal) / quarter_band_frc(oracle.dose_weighted_sum, sim.ideal)
    return trajectory_rmse_px(ours.shifts_px, sim.shifts_px), frc


def test_the_second_simulator_keeps_designs_conventions():
    """Its truth is what framewatch measures on an easy movie (30 % contrast, 1 e/Å² per frame), in
    DESIGN.md's sign; its ideal is registered to the middle frame (the true shifts score higher
    against it than the same shifts reversed)."""
    sim = independent_movie(size=512, path="beam", seed=3, contrast_rms=0.3, dose_per_frame_e_per_a2=1.0)
    kw = dict(TILT, dose_per_frame_e_per_a2=1.0, threads=1)
    ours = correct_movie(sim.frames, gain=sim.gain, **kw)
    assert trajectory_rmse_px(ours.shifts_px, sim.shifts_px) < 0.03
    assert trajectory_rmse_px(-ours.shifts_px, sim.shifts_px) > 1.0
    right = correct_movie(sim.frames, gain=sim.gain, shifts_px=sim.shifts_px, **kw)
    wrong = correct_movie(sim.frames, gain=sim.gain, shifts_px=-sim.shifts_px, **kw)
    assert np.all(quarter_band_frc(right.dose_weighted_sum, sim.ideal)[1:]
                  > quarter_band_frc(wrong.dose_weighted_sum, sim.ideal)[1:] + 0.05)


@pytest.mark.parametrize("path", ["beam", "walk", "wobble"])
def test_the_paths_start_at_the_origin_and_differ_in_shape(path):
    pos = trajectory_px(path, 10, np.random.default_rng(0))
    assert pos.shape == (10, 2) and np.all(pos[0] == 0)
    steps = np.linalg.norm(np.diff(pos, axis=0), axis=1)
    if path == "beam":  # fast early, then slow
        assert steps[0] > 3 * steps[-1]
    assert np.ptp(pos, axis=0).max() > 0.5


@pytest.mark.slow
@pytest.mark.parametrize("path,exponent,seed", [("beam", 1.0, 1), ("walk", 2.0, 1), ("wobble", 1.0, 2)])
def test_whole_frame_accuracy_on_the_second_simulator(path, exponent, seed):
    # measured (python -m benchmarks.relion_accuracy --simulator independent --seeds 2): RMSE 0.056,
    # 0.038, 0.043 px; lower bands >= 0.992, top band 0.984, 1.004, 0.989 (RELION 5: 0.219, 0.095, 0.172 px)
    sim = independent_movie(size=2048, path=path, exponent=exponent, seed=seed)
    rmse, frc = _scores(sim)
    assert rmse <= 0.08
    assert np.all(frc[:3] >= 0.98) and frc[3] >= 0.97


@pytest.mark.slow
@pytest.mark.parametrize("contrast,applied_top_band", [(0.10, 0.93), (0.05, None)])
def test_local_motion_on_the_second_simulator_never_hurts_and_pays_where_measurable(contrast, applied_top_band):
    """A 3 px field of the second simulator (a tilt plane and three Gaussian bumps, growing as the
    square root of the dose), 2048² x 10, 3 e/Å²: the defaults (``--patches auto``, the evidence
    rule) never lose more than 1 % of whole-frame's FRC in any band; at 10 % contrast the field is
    applied and the top band rises from whole-frame's 0.876 to 0.960 of the oracle (measured; the
    oracle applies the true field)."""
    sim = independent_movie(size=2048, path="beam", exponent=1.0, contrast_rms=contrast, local_amplitude_px=3.0, seed=7)
    kw = dict(TILT)
    del kw["patches"]
    whole = correct_movie(sim.frames, gain=sim.gain, patches=(0, 0), **kw)
    defaults = correct_movie(sim.frames, gain=sim.gain, **kw)
    oracle = oracle_correction(sim, **kw)
    best = quarter_band_frc(oracle.dose_weighted_sum, sim.ideal)
    frc_whole = quarter_band_frc(whole.dose_weighted_sum, sim.ideal) / best
    frc_defaults = quarter_band_frc(defaults.dose_weighted_sum, sim.ideal) / best
    assert np.all(frc_defaults >= 0.99 * frc_whole)
    if applied_top_band is not None:
        assert defaults.statistics.local_motion == "applied"
        assert frc_defaults[3] >= applied_top_band and frc_defaults[3] > frc_whole[3] + 0.04
