"""Issue 14, engine rows: finite and plausible numbers (5, 11), any frame size (10), gains and
movies that would give garbage (20). Each test failed on 7e3f13d (NaN sections, tracebacks,
"cannot Fourier-crop (251, 257) to (252, 256)", silent acceptance)."""
import subprocess
import sys

import numpy as np
import pytest
from sim_helpers import simulated, trajectory_rmse_px
from test_mode101 import pack_4bit_reference, write_packed_mrc

from framewatch.core import CorrectionSettings, correct_movie
from framewatch.core.correct import correct_movie_file
from framewatch.core.errors import GainError, MovieContentError, SettingsError
from framewatch.core.fourier import crop_shape, fourier_crop
from framewatch.core.frame_size import MIN_FRAME_SIDE_PX
from framewatch.core.movie_io import write_movie

# ----------------------------------------------------------------------------- rows 5 and 11: ranges

ABSURD = [
    ("pixel_size_a", float("inf"), "pixel size inf A is not a finite number"),
    ("pixel_size_a", 1e-300, "pixel size 1e-300 A is outside the plausible range (0.05-100 A)"),
    ("pixel_size_a", 1e300, "outside the plausible range"),
    ("dose_per_frame_e_per_a2", 1e300 / 8, "dose per frame"),  # mdoc ExposureDose 1e300 over 8 frames
    ("dose_per_frame_e_per_a2", float("nan"), "not a finite number"),
    ("prior_dose_e_per_a2", 1e300, "prior dose"),  # mdoc PriorRecordDose 1e300
    ("voltage_kv", 1e300, "voltage"),
    ("patches", (100000, 100000), "patches"),
    ("eer_fraction_dose_e_per_a2", float("inf"), "EER dose per fraction"),
]


@pytest.mark.parametrize("key, value, message", ABSURD)
def test_settings_refuse_absurd_numbers(key, value, message):
    kwargs = {"pixel_size_a": 1.5, "dose_per_frame_e_per_a2": 0.4, key: value}
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        CorrectionSettings(**kwargs)


@pytest.mark.parametrize("flags, message", [
    (["--pixel-size-a", "inf", "--dose-per-tilt", "3"], "pixel size inf A is not a finite number"),
    (["--pixel-size-a", "1.5", "--dose-per-tilt", "inf"], "dose per tilt inf e/A^2 is not a finite number"),
    (["--pixel-size-a", "1.5", "--dose-per-tilt", "1e-300"], "dose per tilt 1e-300 e/A^2 is outside"),
    (["--pixel-size-a", "1e-300", "--dose-per-tilt", "3"], "pixel size 1e-300 A is outside"),
    (["--pixel-size-a", "1.5", "--dose-per-tilt", "1e6"], "dose per tilt 1e+06 e/A^2 is outside"),
    (["--pixel-size-a", "1.5", "--dose-per-tilt", "3", "--voltage-kv", "1e300"], "voltage 1e+300 kV is outside"),
    (["--pixel-size-a", "1.5", "--dose-per-tilt", "3", "--patches", "100000", "100000"], "patches"),
])
def test_correct_command_gives_one_line_and_exit_2(tmp_path, flags, message):
    sim = simulated(ny=96, nx=96, n_frames=4, seed=3)
    movie = tmp_path / "good.tif"
    write_movie(movie, sim.frames)
    proc = subprocess.run([sys.executable, "-m", "framewatch.daemon.commands.cli", "correct",
                           str(movie), "--out", str(tmp_path / "n"),
                           *flags], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "n.mrc").exists()


def test_values_near_float32_max_are_refused_not_returned_as_nan():
    sim = simulated(ny=96, nx=96, n_frames=4, seed=4)
    huge = sim.frames.astype(np.float32) * np.float32(3e37) / max(1, int(sim.frames.max()))
    with pytest.raises(MovieContentError, match="near.mrc: values up to 3e\\+37.*overflow float32"):
        correct_movie(huge, pixel_size_a=1.5, dose_per_frame_e_per_a2=0.4, movie_path="near.mrc")
    with pytest.raises(MovieContentError, match="gain up to 3e\\+38"):
        correct_movie(sim.frames, pixel_size_a=1.5, dose_per_frame_e_per_a2=0.4,
                      gain=np.full(sim.frames.shape[1:], 3e38, np.float32), movie_path="g.tif")


def test_a_non_finite_image_is_never_returned(monkeypatch):
    """The last guard, independent of the input checks: an image with NaN raises instead of returning."""
    import framewatch.core.movie_correction as correct_module

    sim = simulated(ny=96, nx=96, n_frames=4, seed=5)
    real_irfft2 = correct_module.irfft2_consuming

    def poisoned(spec, shape, *, threads):
        image = real_irfft2(spec, shape, threads=threads)
        image[0, 0] = np.nan
        return image

    monkeypatch.setattr(correct_module, "irfft2_consuming", poisoned)  # stands in for an overflow we cannot otherwise provoke
    with pytest.raises(MovieContentError, match="m.tif: the corrected .* image has 1 NaN or Inf values"):
        correct_movie(sim.frames, pixel_size_a=1.5, dose_per_frame_e_per_a2=0.4, movie_path="m.tif")


# ---------------------------------------------------------------------------------- row 10: sizes


def test_crop_shape_never_exceeds_an_odd_frame():
    assert crop_shape((251, 257), bin_factor=1.0) == (250, 256)
    assert crop_shape((4096, 4095), bin_factor=4.0) == (1024, 1024)
    spec = np.fft.rfft2(np.random.default_rng(0).normal(size=(251, 257))).astype(np.complex64)
    assert fourier_crop(spec, (251, 257), (250, 256)).shape == (250, 129)
    with pytest.raises(ValueError, match="at least 2"):
        crop_shape((1, 64), bin_factor=1.0)


@pytest.mark.parametrize("ny, nx", [(251, 257), (256, 255), (97, 131)])
def test_odd_and_prime_sizes_recover_the_true_shifts(ny, nx):
    sim = simulated(ny=ny, nx=nx, n_frames=8, pixel_size_a=1.5, dose_per_frame_e_per_a2=1.0, seed=11)
    result = correct_movie(sim.frames, pixel_size_a=1.5, dose_per_frame_e_per_a2=1.0, gain=sim.gain)
    assert result.dose_weighted_sum.shape == (ny, nx) == result.even_sum.shape == result.odd_sum.shape
    assert np.isfinite(result.dose_weighted_sum).all()
    assert trajectory_rmse_px(result.shifts_px, sim.shifts_px) < 0.25  # measured 0.03-0.06 px


def test_mode_101_odd_width_file_is_corrected(tmp_path):
    sim = simulated(ny=160, nx=171, n_frames=6, pixel_size_a=1.5, dose_per_frame_e_per_a2=1.0, seed=12)
    frames = np.minimum(sim.frames, 15)
    path = tmp_path / "odd101.mrc"
    write_packed_mrc(path, pack_4bit_reference(frames), mode=101, nx_header=171)
    settings = CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=1.0)
    result = correct_movie_file(path, settings=settings, gain=sim.gain)
    assert result.dose_weighted_sum.shape == (160, 171)
    assert trajectory_rmse_px(result.shifts_px, sim.shifts_px) < 0.3


@pytest.mark.parametrize("shape", [(1, 300), (300, 1), (1, 1), (MIN_FRAME_SIDE_PX - 1, 256)])
def test_frames_too_small_to_align_get_a_clear_error(tmp_path, shape):
    path = tmp_path / "tiny.mrc"
    write_movie(path, np.ones((3, *shape), np.uint8))
    settings = CorrectionSettings(pixel_size_a=1.5, dose_per_frame_e_per_a2=1.0)
    with pytest.raises(MovieContentError, match=f"tiny.mrc: frames of {shape[1]} x {shape[0]} px are too small to align"):
        correct_movie_file(path, settings=settings)


# ------------------------------------------------------------------------- row 20: gains and signal


def test_gain_with_minus_one_in_half_its_rows_is_refused():
    sim = simulated(ny=96, nx=96, n_frames=4, seed=6)
    gain = sim.gain.copy()
    gain[::2] = -1
    with pytest.raises(GainError, match="50.0% of its pixels zero, negative or not finite"):
        correct_movie(sim.frames, pixel_size_a=1.5, dose_per_frame_e_per_a2=0.4, gain=gain, movie_path="m.tif")


def test_a_few_negative_gain_pixels_become_defects_with_a_note():
    sim = simulated(ny=128, nx=128, n_frames=6, dose_per_frame_e_per_a2=1.0, seed=7)
    gain = sim.gain.copy()
    bad_xy = [(10, 20), (70, 33), (100, 99)]
    for x, y in bad_xy:
        gain[y, x] = -1.0
    result = correct_movie(sim.frames, pixel_size_a=1.5, dose_per_frame_e_per_a2=1.0, gain=gain)
    replaced = {tuple(p) for p in result.replaced_pixels.tolist()}
    assert set(bad_xy) <= replaced
    assert any("3 pixels zero, negative or not finite replaced" in n for n in result.notes)
    clean = correct_movie(sim.frames, pixel_size_a=1.5, dose_per_frame_e_per_a2=1.0, gain=sim.gain)
    # the output is not dragged towards 0 (7e3f13d: the -1 pixels entered the sums)
    assert abs(result.dose_weighted_sum.mean() / clean.dose_weighted_sum.mean() - 1) < 0.01


def test_all_zero_movie_is_a_failure_not_a_section():
    with pytest.raises(MovieContentError, match="z.tif: holds no signal"):
        correct_movie(np.zeros((4, 96, 96), np.uint16), pixel_size_a=1.5, dose_per_frame_e_per_a2=0.4, movie_path="z.tif")


def test_mostly_negative_movie_is_a_failure():
    sim = simulated(ny=96, nx=96, n_frames=4, dtype="float32", seed=8)
    negative = -sim.frames.astype(np.float32) - 1
    with pytest.raises(MovieContentError, match="neg.mrc: is not detector counts: 100% of the pixels"):
        correct_movie(negative, pixel_size_a=1.5, dose_per_frame_e_per_a2=0.4, movie_path="neg.mrc")
