"""The two-step forward transform equals scipy's rfft2 bit for bit."""
import numpy as np
import pytest
import scipy.fft

from framewatch.core.fourier import fourier_crop
from framewatch.core.partial_transform import PartialSpectrum


@pytest.mark.parametrize("shape", [(64, 96), (50, 34)])
@pytest.mark.parametrize("threads", [1, 2])
def test_partial_then_complete_equals_rfft2(shape, threads):
    image = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    want = scipy.fft.rfft2(image)
    partial = PartialSpectrum(image.copy(), head_kx=9, threads=threads)
    np.testing.assert_array_equal(partial.head, want[:, :9])
    crop = (16, 16)
    np.testing.assert_array_equal(fourier_crop(partial.head, shape, crop), fourier_crop(want, shape, crop))
    full = partial.complete()
    assert full.dtype == np.complex64 and full.shape == want.shape
    np.testing.assert_array_equal(full, want)
    assert partial.complete() is full  # completed once


def test_head_as_wide_as_the_spectrum_is_complete_at_once():
    image = np.random.default_rng(4).standard_normal((32, 32)).astype(np.float32)
    partial = PartialSpectrum(image.copy(), head_kx=100, threads=1)
    np.testing.assert_array_equal(partial.complete(), scipy.fft.rfft2(image))
