"""The patches' correlation filter from the whole-frame spectral SNR (core.local_align.patch_filter).

Against the ground truth of a movie without local motion (every patch's true residual is zero, the
frames registered by their true whole-frame shifts), on the second simulator's steep spectrum under a
3 um defocus CTF, where the constant B-factor does not fit: the spread of the measured patch shifts
is the measurement error. Measured at 1024², 10 % contrast, 3 x 3 patches, seeds 5-7: 0.174, 0.178,
0.174 px with B = 40 px²; 0.142, 0.153, 0.133 px with the spectral weight (0.77-0.86 x).
"""
import numpy as np
import pytest
from independent_sim import independent_movie

from framewatch.core.fourier import crop_shape, fourier_crop, irfft2, rfft2, shift_spectrum
from framewatch.core.global_align import bfactor_filter
from framewatch.core.local_align import PatchOptions, measure_patches, patch_filter
from framewatch.core.spectral_weight import SpectralSNR, estimate_spectral_snr, spectral_snr_weight

OPTIONS = PatchOptions(patches=(3, 3), overlap=0.5, bfactor_px2=40.0, max_iterations=10, tolerance_px=0.01, threads=2)


def _registered(sim, size: int) -> tuple[np.ndarray, SpectralSNR, float]:
    """The alignment copy ``(n, 1024, 1024)`` registered by the true shifts, its spectral SNR, the bin factor."""
    shape = (size, size)
    align = crop_shape(shape, bin_factor=size / 1024)
    b = size / align[0]
    crops = [shift_spectrum(fourier_crop(rfft2((f * sim.gain).astype(np.float32), threads=2), shape, align), align,
                            -dx / b, -dy / b) for f, (dx, dy) in zip(sim.frames, sim.shifts_px)]
    estimate = estimate_spectral_snr(crops, np.sum(crops, axis=0), align)
    return np.stack([irfft2(c, align, threads=2) for c in crops]), estimate, b


def test_the_spectral_weight_measures_patches_more_precisely_than_the_bfactor():
    sim = independent_movie(size=1024, path="beam", exponent=2.0, contrast_rms=0.10, seed=5)
    registered, estimate, b = _registered(sim, 1024)
    spread = {}
    for name, snr in (("bfactor", None), ("spectral_snr", estimate)):
        meas = measure_patches(registered, bin_factor=b, pixel_size_a=1.5, dose_per_frame_e_per_a2=0.3,
                               options=OPTIONS, spectral_snr=snr)
        assert meas.weighting == name
        residual = meas.shifts_px - meas.shifts_px.mean(axis=1, keepdims=True)  # the truth: zero
        spread[name] = float(np.sqrt(np.mean(residual**2)))
    # measured 0.174 and 0.142 px
    assert spread["spectral_snr"] <= 0.16
    assert spread["spectral_snr"] <= 0.9 * spread["bfactor"], spread


def _estimate(signal: float, n_bins: int = 200) -> SpectralSNR:
    freq = (np.arange(n_bins) + 0.5) / n_bins * 0.75
    p_s = np.full(n_bins, signal) / (1.0 + 100.0 * freq**2)
    return SpectralSNR(freq, p_s, np.ones(n_bins), np.full(n_bins, 1e-3), p_s > 3e-3, 10)


@pytest.mark.parametrize("size", [64, 340])
def test_the_patch_filter_is_the_whole_frame_weight_at_the_patch_frequencies(size):
    estimate = _estimate(0.05)
    filt, name = patch_filter(size, spectral_snr=estimate, bfactor_px2=40.0)
    assert name == "spectral_snr"
    np.testing.assert_array_equal(filt, spectral_snr_weight(estimate, (size, size)))
    assert filt.shape == (size, size // 2 + 1) and 0.5 < filt.max() <= 1.0
    assert not filt[0, :].any() and not filt[:, 0].any()


def test_without_a_usable_estimate_the_patch_filter_is_the_bfactor():
    for estimate in (None, _estimate(0.0)):  # none, or no significant bin
        filt, name = patch_filter(64, spectral_snr=estimate, bfactor_px2=40.0)
        assert name == "bfactor"
        np.testing.assert_array_equal(filt, bfactor_filter((64, 64), bfactor_px2=40.0))
