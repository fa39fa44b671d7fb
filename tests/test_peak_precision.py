"""The sandwich estimate of a correlation peak's precision against a NumPy reference and against the
scatter of peaks measured on many noisy realisations of a known shift."""
import numpy as np
import pytest

from framewatch.core.peak import refine_peak
from framewatch.core.peak_precision import peak_covariance

SHAPE = (64, 64)
KY = np.fft.fftfreq(SHAPE[0])[:, None]
KX = np.fft.rfftfreq(SHAPE[1])[None, :]


def _reference_covariance(xp, shape, x, y):
    """Slow NumPy: the gradient each independent half-spectrum element adds, its outer products summed,
    between two inverse Hessians from the full-spectrum correlation."""
    ny, nx = shape
    a = 2 * np.pi * np.arange(nx // 2 + 1) / nx
    b = 2 * np.pi * np.fft.fftfreq(ny)
    hw = np.where((np.arange(nx // 2 + 1) == 0) | (np.arange(nx // 2 + 1) == nx // 2), 1.0, 2.0)
    z = xp.astype(np.complex128) * np.exp(1j * (a[None, :] * x + b[:, None] * y))
    g = np.stack([np.broadcast_to(hw * a, z.shape) * z.imag, (hw[None, :] * b[:, None]) * z.imag]).reshape(2, -1)
    noise = g @ g.T / float(ny * nx) ** 2
    re = hw[None, :] * z.real
    aa, bb = np.meshgrid(a, b)
    hess = -np.array([[np.sum(aa * aa * re), np.sum(aa * bb * re)], [np.sum(aa * bb * re), np.sum(bb * bb * re)]])
    hess /= ny * nx
    inv = np.linalg.inv(hess)
    return inv @ noise @ inv


def _signal():
    return np.exp(-60.0 * (KX**2 + KY**2)) * (KX**2 + KY**2 > 0)


def test_kernel_matches_the_numpy_reference():
    rng = np.random.default_rng(3)
    s = _signal()
    xp = (s * np.exp(-2j * np.pi * (KX * 0.3 + KY * -0.2))
          + 0.02 * (rng.standard_normal(s.shape) + 1j * rng.standard_normal(s.shape))).astype(np.complex64)
    x, y, _ = refine_peak(xp, SHAPE, 0.0, 0.0)
    got = peak_covariance(xp, SHAPE, x, y)
    want = _reference_covariance(xp, SHAPE, x, y)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-6 * np.abs(want).max())


def test_predicted_spread_matches_the_spread_of_measured_peaks():
    """A frame (signal shifted by a known offset plus white noise) against a noisy reference, 400 times:
    the predicted variance per axis is within 20 % of the measured positions' variance."""
    rng = np.random.default_rng(7)
    s = np.sqrt(_signal()) * 40.0
    true = (0.37, -0.21)
    phase = np.exp(-2j * np.pi * (KX * true[0] + KY * true[1]))

    def noise():
        return rng.standard_normal(s.shape) + 1j * rng.standard_normal(s.shape)

    found, predicted = [], []
    for _ in range(400):
        frame = s * phase + noise()
        reference = s + 0.3 * noise()
        xp = (frame * np.conj(reference)).astype(np.complex64)
        xp[:, 0] = 0.0  # as whole-frame alignment zeroes the central cross
        xp[0, :] = 0.0
        peak = refine_peak(xp, SHAPE, *true)
        assert peak is not None
        cov = peak_covariance(xp, SHAPE, peak[0], peak[1])
        found.append(peak[:2])
        predicted.append(np.diag(cov))
    found = np.array(found)
    measured_var = found.var(axis=0)
    predicted_var = np.mean(predicted, axis=0)
    assert np.abs(found.mean(axis=0) - true).max() < 0.01  # unbiased
    np.testing.assert_allclose(predicted_var, measured_var, rtol=0.2)


def test_no_covariance_where_the_correlation_is_not_a_maximum():
    xp = (-_signal()).astype(np.complex64)  # a correlation with its minimum at zero shift
    assert peak_covariance(xp, SHAPE, 0.0, 0.0) is None
    assert peak_covariance(-xp, SHAPE, 0.0, 0.0) is not None
    with pytest.raises(ValueError, match="does not belong"):
        peak_covariance(xp[:, :-1], SHAPE, 0.0, 0.0)
