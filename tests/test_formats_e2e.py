"""Formats end to end: super-resolution binned to the physical pixel, EER grouped into fractions."""
import dataclasses

import numpy as np
from eer_encoder import encode_movie, events_from_mask, split_counts_into_raw_frames, write_eer
from sim_helpers import simulated, trajectory_rmse_px

from framewatch.core.correct import correct_movie, correct_movie_file
from framewatch.core.movie_io import write_movie
from framewatch.core.settings import CorrectionSettings


def test_super_resolution_movie_binned_by_two_recovers_shifts_in_physical_pixels():
    # a K3-style super-resolution movie: 0.75 A super-resolution pixels, 1.5 A physical
    sim = simulated(ny=2048, nx=2048, n_frames=10, pixel_size_a=0.75, dose_per_frame_e_per_a2=0.3, seed=31)
    result = correct_movie(sim.frames, gain=sim.gain, pixel_size_a=0.75, dose_per_frame_e_per_a2=0.3, fourier_bin=2)
    assert result.dose_weighted_sum.shape == (1024, 1024) and result.pixel_size_a == 1.5
    rmse = trajectory_rmse_px(result.shifts_px, sim.shifts_px / 2.0)
    assert rmse <= 0.08, f"RMSE {rmse:.3f} physical px"
    assert result.statistics.total_motion_a == result.statistics.total_motion_px * 1.5


def test_eer_movie_is_corrected_like_the_same_counts_as_mrc(tmp_path):
    sim = simulated(ny=512, nx=512, n_frames=8, pixel_size_a=1.5, dose_per_frame_e_per_a2=0.4, seed=32)
    raw_per_fraction = 10
    masks = split_counts_into_raw_frames(sim.frames, [raw_per_fraction] * 8, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    strips = encode_movie([events_from_mask(m, rng) for m in masks], shape=(512, 512))
    write_eer(tmp_path / "m.eer", strips, shape=(512, 512))
    write_movie(tmp_path / "m.mrc", sim.frames)
    settings = CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=1.0, eer_fraction_dose_e_per_a2=0.4)
    eer = correct_movie_file(tmp_path / "m.eer", settings=settings, gain=sim.gain, movie_dose_e_per_a2=8 * 0.4)
    assert eer.n_frames == 8 and eer.settings.dose_per_frame_e_per_a2 == 0.4  # the dose per fraction
    mrc = correct_movie_file(tmp_path / "m.mrc", settings=dataclasses.replace(settings, dose_per_frame_e_per_a2=0.4),
                             gain=sim.gain)
    np.testing.assert_allclose(eer.shifts_px, mrc.shifts_px, atol=1e-9)
    np.testing.assert_allclose(eer.dose_weighted_sum, mrc.dose_weighted_sum, rtol=1e-5, atol=1e-4)
    assert trajectory_rmse_px(eer.shifts_px, sim.shifts_px) <= 0.15
