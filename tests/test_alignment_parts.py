"""Peak estimator, trajectory regularisation, drift statistics and FRC against hand computations."""
import numpy as np
import pytest
import scipy.fft
from hypothesis import given, settings
from hypothesis import strategies as st

from framewatch.core.dose import accumulated_dose_e_per_a2
from framewatch.core.drift_stats import accumulated_motion, tilt_motion
from framewatch.core.frc import band_averaged_frc, frc_crossing_a, frc_curve
from framewatch.core.peak import (
    find_peak,
    find_peak_within,
    gaussian_offset,
    offset_mask,
    peak_window_fits,
    peaks_near_zero,
)
from framewatch.core.trajectory import regularise_trajectory


def _gaussian_map(shape, x0, y0, sigma):
    ny, nx = shape
    dy = (np.arange(ny)[:, None] - y0 + ny / 2) % ny - ny / 2
    dx = (np.arange(nx)[None, :] - x0 + nx / 2) % nx - nx / 2
    return np.exp(-(dx**2 + dy**2) / (2 * sigma**2))


@settings(max_examples=60, deadline=None)
@given(x0=st.floats(-5, 5), y0=st.floats(-5, 5), sigma=st.floats(0.7, 4.0))
def test_gaussian_peak_fit_is_exact_for_gaussian_peaks(x0, y0, sigma):
    dx, dy, _ = find_peak(_gaussian_map((32, 40), x0, y0, sigma))
    assert dx == pytest.approx(x0, abs=1e-6)
    assert dy == pytest.approx(y0, abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(x0=st.floats(-3, 3), y0=st.floats(-3, 3), sigma=st.floats(0.8, 3.0), radius=st.sampled_from([2.0, 2.5, 4.0]),
       shape=st.sampled_from([(40, 40), (41, 38), (64, 48)]), seed=st.integers(0, 2**16))
def test_peaks_near_zero_equal_the_search_on_the_inverse_transform(x0, y0, sigma, radius, shape, seed):
    # the reference: find_peak on the whole map from numpy's inverse transform, masked to the radius
    rng = np.random.default_rng(seed)
    maps = [_gaussian_map(shape, x0, y0, sigma) + 0.05 * rng.standard_normal(shape) for _ in range(3)]
    xps = np.stack([np.fft.rfft2(m) for m in maps]).astype(np.complex64)
    got = peaks_near_zero(xps, shape, radius)
    for xp, row in zip(xps, got):
        cc = np.fft.irfft2(xp.astype(np.complex128), s=shape)
        ref = find_peak(cc, offset_mask(shape, radius))
        assert row[0] == pytest.approx(ref[0], abs=1e-4) and row[1] == pytest.approx(ref[1], abs=1e-4)
        assert row[2] == pytest.approx(ref[2], rel=1e-4, abs=1e-5)


def test_peaks_near_zero_refuses_a_window_larger_than_half_the_map():
    assert peak_window_fits((40, 40), 10.0) is False and peak_window_fits((40, 40), 8.0) is True
    with pytest.raises(ValueError, match="does not fit"):
        peaks_near_zero(np.zeros((1, 40, 21), np.complex64), (40, 40), 10.0)


def test_patch_trajectories_by_direct_search_equal_those_by_transform(monkeypatch):
    from framewatch.core import local_align

    rng = np.random.default_rng(5)
    size = 64
    k2 = np.fft.fftfreq(size)[:, None] ** 2 + np.fft.rfftfreq(size)[None, :] ** 2
    # a smooth specimen (a Gaussian correlation peak, which the 3-point fit resolves exactly)
    base = np.fft.irfft2(np.fft.rfft2(rng.standard_normal((size, size))) * np.exp(-k2 * 2 * np.pi**2 * 1.5**2), s=(size, size))
    true = rng.uniform(-1.5, 1.5, (3, 5, 2))
    spectra = np.empty((3, 5, size, size // 2 + 1), np.complex64)
    for p in range(3):
        for i in range(5):
            shifted = scipy.fft.irfft2(_shifted(np.fft.rfft2(base), (size, size), *true[p, i]), s=(size, size))
            spectra[p, i] = np.fft.rfft2(shifted + 0.02 * base.std() * rng.standard_normal((size, size)))
    kw = dict(shape=(size, size), filt=np.ones((size, size // 2 + 1), np.float32), max_radius_px=3.0, iterations=2, threads=1)
    direct = local_align.patch_trajectories(spectra, **kw)
    monkeypatch.setattr(local_align, "peak_window_fits", lambda shape, radius: False)
    by_transform = local_align.patch_trajectories(spectra, **kw)
    assert np.allclose(direct[0], by_transform[0], atol=1e-4) and np.allclose(direct[1], by_transform[1], rtol=1e-4)
    # and they find the shifts relative to each patch's mean position (two leave-one-out passes over
    # shifts of up to 1.5 px keep a pull toward the mean of up to 0.1 px: measured 0.10)
    expect = true - true.mean(axis=1, keepdims=True)
    assert np.abs(direct[0] - expect).max() < 0.15


def _shifted(spec, shape, dx, dy):
    ny, nx = shape
    ky = np.fft.fftfreq(ny)[:, None]
    kx = np.fft.rfftfreq(nx)[None, :]
    return spec * np.exp(-2j * np.pi * (kx * dx + ky * dy))


def test_parabola_would_lock_to_pixels_but_gaussian_does_not():
    # a peak at +0.3 px: the parabola through the same three samples is biased toward 0
    f = [np.exp(-((i - 0.3) ** 2) / (2 * 1.0**2)) for i in (-1, 0, 1)]
    parabola = (f[0] - f[2]) / (2 * (f[0] - 2 * f[1] + f[2]))
    assert abs(parabola - 0.3) > 0.02
    assert gaussian_offset(*f) == pytest.approx(0.3, abs=1e-9)


def test_regularisation_keeps_a_jump_and_replaces_an_outlier():
    t = np.arange(10, dtype=float)
    true = np.stack([0.4 * t + 2.5 * (t >= 1), -0.3 * t], axis=1)
    measured = true.copy()
    measured[6] += (3.0, -2.0)  # one frame whose correlation found no real peak
    heights = np.full(10, 5.0)
    heights[6] = 0.5
    out = regularise_trajectory(measured, dose_per_frame_e_per_a2=0.3, outlier_floor=0.5, peak_heights=heights)
    assert out.outliers.tolist() == [i == 6 for i in range(10)]
    np.testing.assert_allclose(out.positions, true, atol=0.03)  # the 2.5 px jump is kept


def test_low_dose_regularisation_rejects_a_far_outlier_by_its_residual():
    t = np.arange(30, dtype=float)
    true = np.stack([0.05 * t, 0.02 * t], axis=1)
    measured = true.copy()
    measured[12] += (4.0, 0.0)
    out = regularise_trajectory(measured, dose_per_frame_e_per_a2=0.01, outlier_floor=0.5)
    assert out.outliers.tolist() == [i == 12 for i in range(30)]
    np.testing.assert_allclose(out.positions, true, atol=0.05)


def test_regularisation_is_stronger_at_low_dose():
    rng = np.random.default_rng(0)
    true = np.stack([np.linspace(0, 3, 40), np.zeros(40)], axis=1)
    noisy = true + rng.normal(0, 0.3, true.shape)
    low = regularise_trajectory(noisy, dose_per_frame_e_per_a2=0.01, outlier_floor=5)
    high = regularise_trajectory(noisy, dose_per_frame_e_per_a2=1.0, outlier_floor=5)
    err = lambda r: np.sqrt(np.mean((r.positions - true) ** 2))  # noqa: E731
    assert err(low) < 0.7 * err(high)


def test_accumulated_motion_equals_hand_computation():
    shifts = np.array([[0, 0], [3, 4], [3, 5], [4, 5], [4, 5], [4, 8]], dtype=float)
    # steps: 5, 1, 1, 0, 3 ; dose 1.2 e/A^2 per frame, prior 0.5: end doses 1.7, 2.9, 4.1, 5.3, 6.5, 7.7
    doses = accumulated_dose_e_per_a2(6, dose_per_frame_e_per_a2=1.2, prior_dose_e_per_a2=0.5)
    np.testing.assert_allclose(doses, [1.7, 2.9, 4.1, 5.3, 6.5, 7.7])
    m = accumulated_motion(shifts, doses)
    assert m.total_px == pytest.approx(10.0)
    assert m.early_px == pytest.approx(5.0)  # only the step into frame 1 (2.9 <= 4)
    assert m.late_px == pytest.approx(5.0)
    assert m.max_step_px == pytest.approx(5.0)
    # a later tilt (prior dose above the cutoff) has no early motion
    assert accumulated_motion(shifts, doses + 10).early_px == 0.0


def test_tilt_motion_per_tilt_and_relion_by_hand():
    """Per tilt: cutoff min(4, own dose / 3) from the start of the exposure; RELION: 4 with the prior."""
    shifts = np.array([[0, 0], [3, 4], [3, 5], [4, 5], [4, 5], [4, 8]], dtype=float)  # steps 5, 1, 1, 0, 3
    doses = accumulated_dose_e_per_a2(6, dose_per_frame_e_per_a2=1.2, prior_dose_e_per_a2=10.0)  # own: 1.2 ... 7.2
    m = tilt_motion(shifts, doses, prior_dose_e_per_a2=10.0)
    assert m.per_tilt_cutoff_e_per_a2 == pytest.approx(2.4)  # 7.2 / 3 < 4
    assert (m.per_tilt.early_px, m.per_tilt.late_px) == (pytest.approx(5.0), pytest.approx(5.0))  # into frame 1 (2.4)
    assert (m.relion.early_px, m.relion.late_px) == (0.0, pytest.approx(10.0))  # 11.2 > 4 already
    big = accumulated_dose_e_per_a2(6, dose_per_frame_e_per_a2=3.0, prior_dose_e_per_a2=0.0)  # 18 e/A^2: RELION's 4
    assert tilt_motion(shifts, big, prior_dose_e_per_a2=0.0).per_tilt_cutoff_e_per_a2 == 4.0


def test_frc_of_image_with_itself_is_one_and_with_noise_matches_snr():
    rng = np.random.default_rng(3)
    shape = (128, 128)
    signal = rng.standard_normal(shape)
    a = signal + rng.standard_normal(shape)
    b = signal + rng.standard_normal(shape)
    freq, frc = frc_curve(scipy.fft.rfft2(a), scipy.fft.rfft2(a), shape)
    np.testing.assert_allclose(frc, 1.0, atol=1e-9)
    freq, frc = frc_curve(scipy.fft.rfft2(a), scipy.fft.rfft2(b), shape)
    # white signal and noise of equal power: FRC = SNR / (1 + SNR) = 0.5 in every ring
    assert band_averaged_frc(freq, frc) == pytest.approx([0.5] * 4, abs=0.04)


def test_frc_crossing_interpolates_and_reports_nyquist_when_never_crossed():
    freq = np.linspace(0.01, 0.5, 50)
    frc = 1.0 - 2.0 * freq  # falls through 0.5 at 0.25 cycles/px
    assert frc_crossing_a(freq, frc, 0.5, pixel_size_a=2.0) == pytest.approx(2.0 / 0.25, rel=1e-6)
    assert frc_crossing_a(freq, np.ones(50), 0.143, pixel_size_a=2.0) == pytest.approx(4.0)


def test_frc_crossing_is_not_ended_by_one_noisy_low_ring():
    freq = np.linspace(0.01, 0.5, 50)
    frc = 1.0 - 2.0 * freq
    frc[4] = 0.1  # a ring with few pixels dips by chance
    assert frc_crossing_a(freq, frc, 0.143, pixel_size_a=1.0) == pytest.approx(1.0 / 0.4285, rel=0.02)


@settings(max_examples=40, deadline=None)
@given(radius=st.floats(1.0, 30.0), shape=st.sampled_from([(64, 64), (48, 80), (96, 50)]), seed=st.integers(0, 10**6))
def test_peak_within_a_radius_equals_the_masked_search(radius, shape, seed):
    # the window search reads (2w+1)^2 offsets; the masked search the whole map: same peak
    rng = np.random.default_rng(seed)
    cc = rng.standard_normal(shape)
    assert find_peak_within(cc, radius) == find_peak(cc, offset_mask(shape, radius))
