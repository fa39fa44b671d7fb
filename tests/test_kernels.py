"""Numba kernels against slow NumPy references."""
import numpy as np
import pytest
import scipy.fft

from framewatch.core.dose import critical_exposure_e_per_a2, frame_weights, half_inverse_critical_exposure
from framewatch.core.fourier import fourier_crop, shift_phase_vectors, shift_spectrum
from framewatch.core.frame_arithmetic import apply_gain, sum_frames
from framewatch.core.global_align import bfactor_filter, loo_cross_power, loo_cross_power_rms
from framewatch.core.peak import correlation_at
from framewatch.core.weighted_sums import weighted_sums

RNG = np.random.default_rng(7)
SHAPE = (48, 64)


def _spec(shape=SHAPE):
    return scipy.fft.rfft2(RNG.standard_normal(shape).astype(np.float32))


def test_phase_shift_kernel_matches_numpy_and_moves_content():
    img = RNG.standard_normal(SHAPE).astype(np.float32)
    spec = scipy.fft.rfft2(img)
    out = shift_spectrum(spec, SHAPE, 3.0, -2.0)
    ky = np.fft.fftfreq(SHAPE[0])[:, None]
    kx = np.fft.rfftfreq(SHAPE[1])[None, :]
    ref = spec * np.exp(-2j * np.pi * (kx * 3.0 + ky * -2.0))
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4)
    # integer shift = np.roll: content moves to larger x, smaller y
    back = scipy.fft.irfft2(out, s=SHAPE)
    np.testing.assert_allclose(back, np.roll(img, (-2, 3), axis=(0, 1)), atol=1e-4)


def test_loo_cross_power_kernel_matches_numpy():
    f, t = _spec(), _spec()
    filt = bfactor_filter(SHAPE, bfactor_px2=50.0)
    ref = f * np.conj(t - f) * filt
    np.testing.assert_allclose(loo_cross_power(f.astype(np.complex64), t.astype(np.complex64), filt), ref, rtol=1e-4, atol=1e-3)


def test_power_sum_kernel_matches_numpy():
    """``estimate_spectral_snr``'s power sum: float64 squares of the float32 parts, added in order."""
    from framewatch.core.spectral_weight import _add_power_kernel

    specs = [_spec().astype(np.complex64) for _ in range(3)]
    got = np.zeros(specs[0].shape)
    for spec in specs:
        _add_power_kernel(spec, got)
    want = sum(spec.real.astype(np.float64) ** 2 + spec.imag.astype(np.float64) ** 2 for spec in specs)
    np.testing.assert_array_equal(got, want)


def test_bfactor_filter_zeroes_dc_and_central_cross():
    filt = bfactor_filter(SHAPE, bfactor_px2=100.0)
    assert filt[0, :].max() == 0 and filt[:, 0].max() == 0
    s2 = np.fft.fftfreq(SHAPE[0])[5] ** 2 + np.fft.rfftfreq(SHAPE[1])[7] ** 2
    assert filt[5, 7] == pytest.approx(np.exp(-100.0 * s2 / 4), rel=1e-6)


def test_correlation_at_equals_inverse_fft():
    xp = _spec().astype(np.complex64)
    full = scipy.fft.irfft2(xp, s=SHAPE)
    xs = np.array([0.0, 1.0, 5.0, -3.0])
    ys = np.array([0.0, -1.0, 2.0])
    got = correlation_at(xp, SHAPE, xs, ys)
    want = np.array([[full[int(y) % SHAPE[0], int(x) % SHAPE[1]] for x in xs] for y in ys])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(full).max())


def _k_per_a(pixel_size_a):
    return np.sqrt(np.fft.fftfreq(SHAPE[0])[:, None] ** 2 + np.fft.rfftfreq(SHAPE[1])[None, :] ** 2) / pixel_size_a


def _weighted_sums_reference(spectra, shifts, doses, pixel_size_a, voltage_kv):
    """NumPy: q_i = exp(-N_i / 2Ne) per frame (float64), shift, sum, normalise each subset."""
    q = frame_weights(_k_per_a(pixel_size_a), doses, voltage_kv=voltage_kv)
    shifted = []
    for spec, (dx, dy) in zip(spectra, shifts):
        py, px = shift_phase_vectors(SHAPE, -dx, -dy)
        shifted.append(spec.astype(np.complex128) * py[:, None] * px[None, :])
    shifted = np.array(shifted)

    def subset(idx):
        if len(idx) == 0:
            return np.zeros(shifted.shape[1:])
        return (q[idx] * shifted[idx]).sum(0) * np.sqrt(len(idx) / (q[idx] ** 2).sum(0))

    n = len(spectra)
    return subset(np.arange(n)), subset(np.arange(0, n, 2)), subset(np.arange(1, n, 2)), shifted.sum(0), q


@pytest.mark.parametrize("n_frames", [1, 6, 7])
def test_weighted_sums_kernel_matches_numpy(n_frames):
    pixel_size_a, voltage_kv = 1.1, 200
    doses = 4.0 + 3.0 * np.arange(1, n_frames + 1)
    spectra = [_spec().astype(np.complex64) for _ in range(n_frames)]
    shifts = RNG.uniform(-3, 3, (n_frames, 2))
    inv2ne = half_inverse_critical_exposure(SHAPE, pixel_size_a=pixel_size_a, voltage_kv=voltage_kv)
    got = weighted_sums(spectra, shape=SHAPE, shifts_px=shifts, inv2ne=inv2ne, doses_e_per_a2=doses, unweighted=True)
    full, even, odd, plain, q = _weighted_sums_reference(spectra, shifts, doses, pixel_size_a, voltage_kv)
    scale = np.abs(plain).max()
    for name, want in (("full", full), ("even", even), ("odd", odd), ("plain", plain)):
        np.testing.assert_allclose(getattr(got, name), want, rtol=1e-4, atol=1e-5 * scale, err_msg=name)
    assert q[0, 0, 0] == 1.0  # the zero frequency is not weighted: it is the plain sum
    np.testing.assert_allclose(got.full[0, 0], plain[0, 0], rtol=1e-5)
    no_plain = weighted_sums(spectra, shape=SHAPE, shifts_px=shifts, inv2ne=inv2ne, doses_e_per_a2=doses)
    assert no_plain.plain is None
    np.testing.assert_array_equal(no_plain.full, got.full)
    given = [spec.copy() for spec in spectra]
    consumed = weighted_sums(given, shape=SHAPE, shifts_px=shifts, inv2ne=inv2ne, doses_e_per_a2=doses,
                             unweighted=True, consume=True)
    assert given == []  # the sums were written over the first frames' spectra
    for name in ("full", "even", "odd", "plain"):
        np.testing.assert_array_equal(getattr(consumed, name), getattr(got, name), err_msg=name)


def test_weighted_sums_apply_frequency_factors_to_every_frame():
    pixel_size_a, voltage_kv = 1.3, 300
    doses = 0.5 * np.arange(1, 6)
    spectra = [_spec().astype(np.complex64) for _ in range(5)]
    shifts = RNG.uniform(-2, 2, (5, 2))
    fy = RNG.uniform(0.5, 3.0, SHAPE[0]).astype(np.float32)
    fx = RNG.uniform(0.5, 3.0, SHAPE[1] // 2 + 1).astype(np.float32)
    inv2ne = half_inverse_critical_exposure(SHAPE, pixel_size_a=pixel_size_a, voltage_kv=voltage_kv)
    got = weighted_sums(spectra, shape=SHAPE, shifts_px=shifts, inv2ne=inv2ne, doses_e_per_a2=doses,
                        unweighted=True, frequency_factors=(fy, fx))
    filtered = [spec * fy[:, None] * fx[None, :] for spec in spectra]
    full, even, odd, plain, _ = _weighted_sums_reference(filtered, shifts, doses, pixel_size_a, voltage_kv)
    scale = np.abs(plain).max()
    for name, want in (("full", full), ("even", even), ("odd", odd), ("plain", plain)):
        np.testing.assert_allclose(getattr(got, name), want, rtol=1e-4, atol=1e-5 * scale, err_msg=name)
    with pytest.raises(ValueError, match="do not fit"):
        weighted_sums(spectra, shape=SHAPE, shifts_px=shifts, inv2ne=inv2ne, doses_e_per_a2=doses,
                      frequency_factors=(fx, fy))


def test_weighted_sums_refuse_uneven_doses():
    spectra = [_spec().astype(np.complex64) for _ in range(3)]
    inv2ne = half_inverse_critical_exposure(SHAPE, pixel_size_a=1.0, voltage_kv=300)
    with pytest.raises(ValueError, match="same dose"):
        weighted_sums(spectra, shape=SHAPE, shifts_px=np.zeros((3, 2)), inv2ne=inv2ne,
                      doses_e_per_a2=np.array([1.0, 2.0, 4.0]))


def test_gain_kernel_matches_numpy():
    raw = RNG.integers(0, 5, SHAPE).astype(np.uint8)
    gain = RNG.uniform(0.5, 1.5, SHAPE).astype(np.float32)
    np.testing.assert_allclose(apply_gain(raw, gain), raw.astype(np.float32) * gain, rtol=1e-6)
    np.testing.assert_array_equal(apply_gain(raw, None), raw.astype(np.float32))
    out = np.full(SHAPE, np.nan, np.float32)
    assert apply_gain(raw, gain, out=out) is out
    np.testing.assert_allclose(out, raw.astype(np.float32) * gain, rtol=1e-6)
    with pytest.raises(ValueError, match="out must be"):
        apply_gain(raw, gain, out=np.empty(SHAPE, np.float64))
    frames = [RNG.integers(0, 9, SHAPE).astype(np.uint16) for _ in range(3)]
    np.testing.assert_array_equal(sum_frames(frames), np.sum(frames, axis=0).astype(np.float32))


def test_critical_exposure_matches_published_values():
    # Grant & Grigorieff 2015 at 300 kV (DESIGN.md / references: 10 A -> 14.1, 4 A -> 5.28 e/A^2)
    ne = critical_exposure_e_per_a2(np.array([1 / 10, 1 / 4, 1 / 2]))
    np.testing.assert_allclose(ne, [14.1, 5.28, 3.59], rtol=5e-3)
    assert critical_exposure_e_per_a2(np.array([0.25]), voltage_kv=200)[0] == pytest.approx(0.8 * ne[1])


def test_fourier_crop_preserves_mean_and_low_frequencies():
    img = RNG.standard_normal((64, 96)).astype(np.float32) + 3.0
    spec = scipy.fft.rfft2(img)
    small = fourier_crop(spec, (64, 96), (32, 48))
    out = scipy.fft.irfft2(small, s=(32, 48))
    assert out.mean() == pytest.approx(img.mean(), rel=1e-5)
    np.testing.assert_allclose(small[1, 2] / small[0, 0], spec[1, 2] / spec[0, 0], rtol=1e-5)


@pytest.mark.parametrize("shape", [(48, 64), (63, 50), (40, 33)])
def test_consuming_inverse_transform_equals_irfft2(shape):
    """The column-then-row inverse of a spectrum given up equals scipy's irfft2 to float32 rounding (even
    and odd widths and heights); a spectrum it cannot transform in place (complex128, a view, read-only) takes irfft2."""
    from framewatch.core.fourier import irfft2_consuming

    spec = scipy.fft.rfft2(RNG.standard_normal(shape).astype(np.float32))
    assert spec.dtype == np.complex64
    expected = scipy.fft.irfft2(spec.copy(), s=shape).astype(np.float32)
    got = irfft2_consuming(spec.copy(), shape, threads=2)
    assert got.dtype == np.float32 and got.shape == shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6 * float(np.abs(expected).max()))
    wide = spec.astype(np.complex128)
    np.testing.assert_allclose(irfft2_consuming(wide, shape, threads=1), expected, rtol=0, atol=1e-5)
    view = np.concatenate([spec, spec], axis=1)[:, : spec.shape[1]]
    np.testing.assert_array_equal(irfft2_consuming(view, shape, threads=1), scipy.fft.irfft2(view, s=shape).astype(np.float32))
    frozen = spec.copy()
    frozen.flags.writeable = False  # e.g. a read-only map: transformed, not written
    tolerance = 1e-6 * float(np.abs(expected).max())
    np.testing.assert_allclose(irfft2_consuming(frozen, shape, threads=1), expected, rtol=0, atol=tolerance)
    np.testing.assert_array_equal(frozen, spec)


@pytest.mark.parametrize("shape", [(48, 64), (63, 50), (4, 6)])
def test_frc_ring_kernel_matches_numpy(shape):
    from framewatch.core.frc import _frc_reference, frc_curve

    a = scipy.fft.rfft2(RNG.standard_normal(shape))
    b = a + scipy.fft.rfft2(RNG.standard_normal(shape))
    f1, c1 = frc_curve(a, b, shape)
    f2, c2 = _frc_reference(a, b, shape)
    np.testing.assert_allclose(f1, f2)
    np.testing.assert_allclose(c1, c2, rtol=1e-9, atol=1e-12)


def test_loo_cross_power_rms_equals_rms_of_the_map():
    """The fused kernel's map RMS (Parseval over the half spectrum) for even and odd widths, and the
    cross-power it writes into ``out``, against the NumPy reference."""
    for shape in ((48, 64), (40, 33)):
        f, t = _spec(shape).astype(np.complex64), _spec(shape).astype(np.complex64)
        filt = bfactor_filter(shape, bfactor_px2=20.0)
        out = np.empty(f.shape, np.complex64)
        xp, rms = loo_cross_power_rms(f, t, filt, shape, out=out)
        assert xp is out
        ref = f.astype(np.complex128) * np.conj(t.astype(np.complex128) - f) * filt
        np.testing.assert_allclose(xp, ref, rtol=1e-4, atol=1e-3)
        cc = scipy.fft.irfft2(xp.astype(np.complex128), s=shape)
        assert rms == pytest.approx(np.sqrt(np.mean(cc**2)), rel=1e-9)
    with pytest.raises(ValueError, match="do not belong"):
        loo_cross_power_rms(f, t, filt, (40, 40))



def test_array_addresses_refuse_what_a_kernel_could_not_view():
    """The only way a kernel gets frame pointers: C-contiguous complex64 arrays of one shape."""
    from framewatch.core.array_addresses import array_addresses

    good = [np.zeros((4, 3), np.complex64) for _ in range(2)]
    addresses = array_addresses(good, shape=(4, 3))
    assert addresses.dtype == np.uint64 and list(addresses) == [a.ctypes.data for a in good]
    for bad in (np.zeros((4, 3), np.complex128), np.zeros((4, 6), np.complex64)[:, ::2], np.zeros((3, 3), np.complex64)):
        with pytest.raises(ValueError, match="C-contiguous complex64"):
            array_addresses([good[0], bad], shape=(4, 3))


def test_gain_where_good_kernel_matches_numpy():
    from framewatch.core.frame_arithmetic import gain_where_good

    total = RNG.poisson(5.0, SHAPE).astype(np.float32)
    gain = RNG.uniform(0.5, 1.5, SHAPE).astype(np.float32)
    gain[3, 4], gain[7, 1], gain[0, 0] = np.nan, np.inf, -1.0
    bad = ~np.isfinite(gain) | (gain <= 0)
    ref = total * np.where(bad, 0.0, gain).astype(np.float32)
    gain_where_good(total, gain, bad)
    np.testing.assert_array_equal(total, ref)
    assert np.isfinite(total).all() and (total[bad] == 0).all()
    with pytest.raises(ValueError, match="float32"):
        gain_where_good(total.astype(np.float64), gain, bad)


def test_bad_gain_kernel_matches_numpy():
    from framewatch.core.defects import bad_gain_mask

    for dtype in (np.float32, np.float64):
        gain = RNG.uniform(-0.2, 2.0, SHAPE).astype(dtype)
        gain[1, 1], gain[2, 2], gain[3, 3], gain[4, 4] = np.nan, np.inf, -np.inf, 0.0
        np.testing.assert_array_equal(bad_gain_mask(gain), ~np.isfinite(gain) | (gain <= 0))
    ints = RNG.integers(-2, 3, SHAPE)  # not a float gain: the NumPy expression
    np.testing.assert_array_equal(bad_gain_mask(ints), ints <= 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_signal_summary_kernel_matches_numpy(dtype):
    from framewatch.core.content_checks import signal_summary

    frame_sum = (RNG.standard_normal(SHAPE) * 3).astype(dtype)
    frame_sum[:5] = 0
    nonzero, negative, mean = signal_summary(frame_sum)
    assert nonzero == np.count_nonzero(frame_sum) and negative == np.count_nonzero(frame_sum < 0)
    assert mean == pytest.approx(float(np.mean(frame_sum, dtype=np.float64)), rel=1e-12, abs=1e-12)

