"""core.sparse_spectrum.add_point_spectrum: the half spectrum of a few points added in place, against
the slow NumPy reference (np.fft.rfft2 of an image holding those points, in float64).

Tolerance: relative error < 1e-5 of the spectrum's scale (its largest magnitude); the update is
float64 and rounded once to complex64, so the error is that of complex64 itself (~1e-7)."""
from __future__ import annotations

import numpy as np
import pytest

from framewatch.core.fourier import rfft2
from framewatch.core.sparse_spectrum import add_point_spectrum

TOLERANCE = 1e-5


def reference(image64: np.ndarray, flat: np.ndarray, values: np.ndarray) -> np.ndarray:
    """np.fft.rfft2 of ``image64`` plus the points (float64 throughout; a pixel listed twice adds twice)."""
    points = np.zeros(image64.size)
    np.add.at(points, flat, values)
    return np.fft.rfft2(image64 + points.reshape(image64.shape))


def relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(got.astype(np.complex128) - expected).max() / np.abs(expected).max())


def edge_points(ny: int, nx: int, rng, n_random: int) -> np.ndarray:
    """The four corners, the middle of every edge, and random pixels (one of them twice)."""
    corners = [0, nx - 1, (ny - 1) * nx, ny * nx - 1, nx // 2, (ny // 2) * nx, (ny // 2) * nx + nx - 1,
               (ny - 1) * nx + nx // 2]
    random = rng.choice(ny * nx, n_random)
    return np.concatenate([corners, random, random[:1]]).astype(np.int64)


@pytest.mark.parametrize("shape", [(64, 64), (64, 96), (63, 96), (64, 95), (33, 17), (7, 9), (1, 8), (8, 1), (256, 250)])
def test_points_on_a_spectrum_equal_the_transform_of_the_image_with_them(shape):
    ny, nx = shape
    rng = np.random.default_rng(ny * 1000 + nx)
    image = rng.poisson(2.0, shape).astype(np.float32)
    spectrum = rfft2(image.copy(), threads=1)
    assert spectrum.dtype == np.complex64 and spectrum.shape == (ny, nx // 2 + 1)
    flat = edge_points(ny, nx, rng, n_random=min(20, ny * nx))
    values = rng.normal(0.0, 30.0, flat.size)  # e.g. a hot pixel's excess, of either sign
    add_point_spectrum(spectrum, shape, flat, values)
    assert relative_error(spectrum, reference(image.astype(np.float64), flat, values)) < TOLERANCE


@pytest.mark.parametrize("shape", [(128, 128), (127, 129)])
def test_points_alone_on_a_zero_spectrum(shape):
    """Only the points: every frequency, including Nyquist rows and columns, matches."""
    ny, nx = shape
    rng = np.random.default_rng(7)
    flat = edge_points(ny, nx, rng, n_random=40)
    values = rng.uniform(-5.0, 5.0, flat.size)
    spectrum = np.zeros((ny, nx // 2 + 1), np.complex64)
    add_point_spectrum(spectrum, shape, flat, values.astype(np.float32))
    assert relative_error(spectrum, reference(np.zeros(shape), flat, values.astype(np.float32))) < TOLERANCE


def test_a_large_frame_is_accurate_at_high_frequencies():
    """4096 columns, points at the far edge: the fastest phases (kx x up to ~8e6) stay accurate."""
    ny, nx = 16, 4096
    flat = np.array([nx - 1, 5 * nx + 4093, 15 * nx + 2047], dtype=np.int64)
    values = np.array([3.0, -2.0, 1.5])
    spectrum = np.zeros((ny, nx // 2 + 1), np.complex64)
    add_point_spectrum(spectrum, (ny, nx), flat, values)
    assert relative_error(spectrum, reference(np.zeros((ny, nx)), flat, values)) < 1e-6


def test_adding_and_subtracting_restores_the_spectrum():
    rng = np.random.default_rng(8)
    image = rng.normal(10.0, 1.0, (96, 80)).astype(np.float32)
    spectrum = rfft2(image.copy(), threads=1)
    before = spectrum.copy()
    flat = rng.choice(image.size, 12, replace=False)
    values = rng.normal(0.0, 100.0, 12)
    add_point_spectrum(spectrum, image.shape, flat, values)
    assert relative_error(spectrum, before.astype(np.complex128)) > 1e-3  # it did change
    add_point_spectrum(spectrum, image.shape, flat, -values)
    assert relative_error(spectrum, before.astype(np.complex128)) < TOLERANCE


def test_no_points_leave_the_spectrum_unchanged():
    spectrum = np.ones((8, 5), np.complex64)
    add_point_spectrum(spectrum, (8, 8), np.zeros(0, np.int64), np.zeros(0))
    assert (spectrum == 1).all()


def test_bad_arguments_are_named():
    spectrum = np.zeros((8, 5), np.complex64)
    one, value = np.array([3]), np.array([1.0])
    with pytest.raises(ValueError, match=r"complex64 array of shape \(8, 5\)"):
        add_point_spectrum(spectrum.astype(np.complex128), (8, 8), one, value)
    with pytest.raises(ValueError, match=r"shape \(8, 4\)"):
        add_point_spectrum(spectrum, (8, 7), one, value)
    with pytest.raises(ValueError, match="C-contiguous"):
        add_point_spectrum(np.zeros((8, 10), np.complex64)[:, ::2], (8, 8), one, value)
    read_only = spectrum.copy()
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        add_point_spectrum(read_only, (8, 8), one, value)
    with pytest.raises(ValueError, match="one length"):
        add_point_spectrum(spectrum, (8, 8), np.array([1, 2]), value)
    with pytest.raises(ValueError, match=r"lie in \[0, 64\)"):
        add_point_spectrum(spectrum, (8, 8), np.array([64]), value)
    with pytest.raises(ValueError, match="integers"):
        add_point_spectrum(spectrum, (8, 8), np.array([1.0]), value)
    with pytest.raises(ValueError, match="finite"):
        add_point_spectrum(spectrum, (8, 8), one, np.array([np.nan]))
    assert (spectrum == 0).all()


def test_point_spectra_update_each_frame_and_its_alignment_copy():
    from framewatch.core.fourier import fourier_crop
    from framewatch.core.sparse_spectrum import PointSpectra

    shape, out = (48, 64), (24, 32)
    rng = np.random.default_rng(11)
    spectra = [rfft2(rng.standard_normal(shape).astype(np.float32), threads=1) for _ in range(4)]
    flat = np.array([5, 130, 3001])
    values = rng.uniform(-40, 40, (4, flat.size))
    values[2] = 0.0  # a frame without a change
    points = PointSpectra(shape, flat, values)
    for i, spec in enumerate(spectra):
        image = np.fft.irfft2(spec, s=shape)
        image.flat[flat] += values[i]
        want = np.fft.rfft2(image)
        got = spec.copy()
        points.add_to(i, got)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max())
        if i == 2:
            np.testing.assert_array_equal(got, spec)
        # the crop of the update: what fourier_crop of the updated spectrum adds to the frame's crop
        crop = fourier_crop(got, shape, out) - fourier_crop(spec, shape, out)
        np.testing.assert_allclose(points.cropped(i, out), crop, rtol=0, atol=1e-4 * max(np.abs(crop).max(), 1.0))
    with pytest.raises(ValueError, match="must lie in"):
        PointSpectra(shape, np.array([48 * 64]), np.zeros((1, 1)))
