"""Cubic B-spline resampling through a displacement field (framewatch.core.resample)."""
import numpy as np
import pytest
import scipy.fft
from scipy import ndimage

from framewatch.core.resample import bspline_prefilter, field_grid_shape, prefilter_factors, warp_image

RNG = np.random.default_rng(20240611)
BORDER = 10  # px excluded where the mirror boundary and periodic references differ


def _band_limited(shape, cutoff_cycles_per_px, *, smooth_px=0.0, rng=RNG):
    """Periodic random image: white noise, Gaussian-smoothed (sigma ``smooth_px``), then
    low-passed with a hard cut at ``cutoff`` cycles/px."""
    spec = scipy.fft.rfft2(rng.standard_normal(shape))
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    freq = np.hypot(ky, kx)
    spec *= np.exp(-2 * np.pi**2 * smooth_px**2 * freq**2)
    spec[freq > cutoff_cycles_per_px] = 0
    img = scipy.fft.irfft2(spec, s=shape)
    return (img / img.std()).astype(np.float32)


def _fourier_sample(img, dx, dy):
    """Exact (periodic) ``img(x + dx, y + dy)`` of a band-limited image, by a phase ramp."""
    ky = np.fft.fftfreq(img.shape[0])[:, None]
    kx = np.fft.rfftfreq(img.shape[1])[None, :]
    spec = scipy.fft.rfft2(img.astype(np.float64)) * np.exp(2j * np.pi * (kx * dx + ky * dy))
    return scipy.fft.irfft2(spec, s=img.shape)


def _bilinear_field(field, shape, step):
    """NumPy reference of the kernel's field interpolation: bilinear from the coarse grid."""
    gy, gx = field.shape
    y = np.arange(shape[0]) / step
    x = np.arange(shape[1]) / step
    j = np.minimum(np.floor(y).astype(int), max(gy - 2, 0))
    i = np.minimum(np.floor(x).astype(int), max(gx - 2, 0))
    fy = (y - j)[:, None]
    fx = (x - i)[None, :]
    j1 = np.minimum(j + 1, gy - 1)
    i1 = np.minimum(i + 1, gx - 1)
    f = field.astype(np.float64)
    top = f[j][:, i] * (1 - fx) + f[j][:, i1] * fx
    bottom = f[j1][:, i] * (1 - fx) + f[j1][:, i1] * fx
    return top * (1 - fy) + bottom * fy


def _interior(a):
    return a[BORDER:-BORDER, BORDER:-BORDER]


def _rel_rms(a, b):
    return float(np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(b**2)))


def _ring_mean(values, shape, freq, half_width=0.01):
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    ring = np.abs(np.hypot(ky, kx) - freq) <= half_width
    return float(values[ring].mean())


def test_field_grid_shape_covers_the_image():
    assert field_grid_shape((4092, 5760), 64) == (65, 91)
    assert field_grid_shape((4096, 4096), 64) == (65, 65)  # last node at 4096 >= 4095
    assert field_grid_shape((4097, 4097), 64) == (65, 65)  # last node exactly on the last pixel
    assert field_grid_shape((1, 1), 8) == (1, 1)
    with pytest.raises(ValueError):
        field_grid_shape((10, 10), 0)


@pytest.mark.parametrize("shape", [(61, 77), (8, 5), (2, 3), (1, 9), (9, 1), (1, 1), (130, 70)])
def test_prefilter_interpolates_the_samples(shape):
    img = RNG.standard_normal(shape).astype(np.float32)
    coef = bspline_prefilter(img)
    assert coef.dtype == np.float32 and coef.shape == shape
    # the scipy reference of the same (mirror) coefficients
    ref = ndimage.spline_filter(img.astype(np.float64), order=3, mode="mirror")
    np.testing.assert_allclose(coef, ref, rtol=0, atol=1e-5 * max(1.0, np.abs(ref).max()))
    # evaluation at integer positions: the sampled kernel (1, 4, 1) / 6 along each axis
    back = coef.astype(np.float64)
    for axis in (0, 1):
        if shape[axis] > 1:
            back = ndimage.correlate1d(back, [1 / 6, 4 / 6, 1 / 6], axis=axis, mode="mirror")
    np.testing.assert_allclose(back, img, rtol=0, atol=1e-4 * np.abs(img).max())
    # and through the warp kernel with a zero field
    zero = np.zeros(field_grid_shape(shape, 4), np.float32)
    out = warp_image(img, zero, zero, grid_step_px=4)
    np.testing.assert_allclose(out, img, rtol=0, atol=1e-4 * np.abs(img).max())


@pytest.mark.parametrize(
    ("smooth_px", "tolerance"),
    [
        (1.0, 0.01),  # smooth random image (amplitude 0.17 at the 0.3 cycles/px cut): measured 0.8 %
        (0.0, 0.025),  # flat spectrum up to 0.3 cycles/px: measured 1.85 %, the cubic B-spline's own
        # error there (|H(f) - exp(2 pi i f t)| = 0.064 at f = 0.3, t = 0.37)
    ],
)
def test_constant_subpixel_field_equals_fourier_shift(smooth_px, tolerance):
    shape = (160, 192)
    img = _band_limited(shape, 0.3, smooth_px=smooth_px, rng=np.random.default_rng(3))
    dx, dy = 0.37, -1.62
    grid = field_grid_shape(shape, 16)
    out = warp_image(img, np.full(grid, dx), np.full(grid, dy), grid_step_px=16)
    ref = _fourier_sample(img, dx, dy)
    err = _rel_rms(_interior(out), _interior(ref))
    assert err < tolerance, f"relative rms error {err:.4f} vs the Fourier shift (smooth_px={smooth_px})"


def test_direction_out_equals_image_at_x_plus_dx():
    shape = (48, 56)
    img = RNG.standard_normal(shape).astype(np.float32)
    grid = field_grid_shape(shape, 8)
    out = warp_image(img, np.full(grid, 3.0), np.full(grid, -2.0), grid_step_px=8)
    # out(x, y) = image(x + 3, y - 2)  <=>  out[y, x] == image[y - 2, x + 3]
    np.testing.assert_allclose(_interior(out), img[BORDER - 2 : -BORDER - 2, BORDER + 3 : -BORDER + 3], atol=1e-4)


def test_kernel_matches_scipy_map_coordinates_with_smooth_field():
    shape, step = (150, 170), 16
    img = _band_limited(shape, 0.45)
    gy, gx = field_grid_shape(shape, step)
    jj, ii = np.mgrid[0:gy, 0:gx] * step
    fdx = (1.3 + 2.0 * np.sin(2 * np.pi * ii / 170.0) * np.cos(np.pi * jj / 150.0)).astype(np.float32)
    fdy = (-0.6 + 1.5 * np.cos(2 * np.pi * jj / 150.0) + 0.01 * ii).astype(np.float32)
    out = warp_image(img, fdx, fdy, grid_step_px=step)
    dx = _bilinear_field(fdx, shape, step)
    dy = _bilinear_field(fdy, shape, step)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    ref = ndimage.map_coordinates(img.astype(np.float64), [y + dy, x + dx], order=3, mode="mirror", prefilter=True)
    err = _rel_rms(_interior(out), _interior(ref))
    assert err < 1e-3, f"relative rms {err:.2e} vs scipy.ndimage.map_coordinates"
    # the mirror boundary is the scipy one too, up to the frame edge
    np.testing.assert_allclose(out, ref, atol=1e-3 * np.abs(ref).max())


@pytest.mark.parametrize(
    ("wave_px", "tolerance"),
    [
        (0.0, 1e-5),  # a constant subpixel shift: the filters commute exactly (float rounding)
        # a field changing by 0.0056 px per px (a 0.2 px wave over 224 px; a fitted local model changes
        # by ~3 px over a patch spacing of ~800 px, 0.004 px per px); measured 3.8e-3, and ~0.65 x the
        # gradient in general: the prefilter's few taps see a slightly different shift after the warp
        (0.2, 5e-3),
    ],
)
def test_prefilter_factors_after_the_warp_equal_the_prefilter_before_it(wave_px, tolerance):
    """The correction warps raw pixels and applies the prefilter in Fourier space; away from the
    edges that is the prefiltered warp, for a smooth field; the factors of a cropped spectrum are
    those of the same frequencies."""
    shape, step = (192, 224), 16
    img = _band_limited(shape, 0.49, rng=np.random.default_rng(11))  # power up to Nyquist
    gy, gx = field_grid_shape(shape, step)
    jj, ii = np.mgrid[0:gy, 0:gx] * step
    fdx = (0.4 + wave_px * np.sin(2 * np.pi * ii / 224.0) * np.cos(np.pi * jj / 192.0)).astype(np.float32)
    fdy = (-1.3 + 0.8 * wave_px * np.cos(2 * np.pi * jj / 192.0)).astype(np.float32)
    want = warp_image(img, fdx, fdy, grid_step_px=step)  # prefiltered first
    taps_only = warp_image(img, fdx, fdy, grid_step_px=step, coefficients=img)
    assert _rel_rms(_interior(taps_only), _interior(want)) > 0.3  # the taps alone blur
    spectrum = scipy.fft.rfft2(taps_only.astype(np.float64))
    fy, fx = prefilter_factors(spectrum.shape, image_shape=shape)
    got = scipy.fft.irfft2(spectrum * fy[:, None] * fx[None, :], s=shape)
    err = _rel_rms(_interior(got), _interior(want))
    assert err < tolerance, f"relative rms {err:.2e} between prefiltering after and before the warp"
    assert fy[0] == fx[0] == 1.0 and fx[-1] == pytest.approx(3.0)  # 1 / (2/3 + cos(pi)/3) at Nyquist
    cropped = (96, 112)  # rows: frequencies 0..47 and -48..-1 of the full 192, as fourier_crop keeps them
    cy, cx = prefilter_factors((cropped[0], cropped[1] // 2 + 1), image_shape=shape)
    np.testing.assert_allclose(cy, np.concatenate([fy[:48], fy[-48:]]), rtol=1e-6)
    np.testing.assert_allclose(cx, fx[: cropped[1] // 2 + 1], rtol=1e-6)
    with pytest.raises(ValueError, match="not that of"):
        prefilter_factors((400, 113), image_shape=shape)


def test_large_and_rough_fields_match_scipy_including_edges():
    shape, step = (64, 72), 7
    img = RNG.standard_normal(shape).astype(np.float32)
    grid = field_grid_shape(shape, step)
    fdx = (RNG.standard_normal(grid) * 15).astype(np.float32)  # taps far outside the frame
    fdy = (RNG.standard_normal(grid) * 15).astype(np.float32)
    out = warp_image(img, fdx, fdy, grid_step_px=step)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    ref = ndimage.map_coordinates(
        img.astype(np.float64),
        [y + _bilinear_field(fdy, shape, step), x + _bilinear_field(fdx, shape, step)],
        order=3,
        mode="mirror",
    )
    np.testing.assert_allclose(out, ref, atol=1e-4 * np.abs(ref).max())


def test_half_pixel_transfer_cubic_beats_bilinear(record_property):
    shape = (256, 256)
    img = RNG.standard_normal(shape).astype(np.float32)  # white noise
    grid = field_grid_shape(shape, 32)
    cubic = warp_image(img, np.full(grid, 0.5), np.full(grid, 0.5), grid_step_px=32)
    # bilinear reference: sample at (x + 0.5, y + 0.5) = mean of the 2 x 2 neighbours (periodic)
    img64 = img.astype(np.float64)
    right = np.roll(img64, -1, axis=1)
    bilinear = 0.25 * (img64 + right + np.roll(img64, -1, axis=0) + np.roll(right, -1, axis=0))
    f_in = np.abs(scipy.fft.rfft2(img64))
    freq = 0.4  # cycles/px = 0.8 Nyquist
    t_cubic = _ring_mean(np.abs(scipy.fft.rfft2(cubic.astype(np.float64))) / f_in, shape, freq)
    t_bilinear = _ring_mean(np.abs(scipy.fft.rfft2(bilinear)) / f_in, shape, freq)
    message = f"amplitude transfer at 0.8 Nyquist, half-pixel shift: cubic B-spline {t_cubic:.3f}, bilinear {t_bilinear:.3f}"
    record_property("transfer_cubic_0p4", round(t_cubic, 4))
    record_property("transfer_bilinear_0p4", round(t_bilinear, 4))
    print(message)  # shown with `pytest -s` / -rP
    assert t_cubic > t_bilinear + 0.3, message
    assert 0.65 < t_cubic < 0.9 and 0.25 < t_bilinear < 0.4, message


def test_precomputed_coefficients_and_out_buffer():
    shape = (40, 50)
    img = RNG.standard_normal(shape).astype(np.float32)
    grid = field_grid_shape(shape, 10)
    fdx = RNG.uniform(-2, 2, grid).astype(np.float32)
    fdy = RNG.uniform(-2, 2, grid).astype(np.float32)
    coef = bspline_prefilter(img)
    buf = np.empty(shape, np.float32)
    got = warp_image(img, fdx, fdy, grid_step_px=10, coefficients=coef, out=buf)
    assert got is buf
    np.testing.assert_array_equal(got, warp_image(img, fdx, fdy, grid_step_px=10))
    pre = np.empty(shape, np.float32)
    assert bspline_prefilter(img, out=pre) is pre
    np.testing.assert_array_equal(pre, coef)


def test_validation_errors():
    img = np.zeros((20, 30), np.float32)
    grid = field_grid_shape(img.shape, 8)
    ok = np.zeros(grid, np.float32)
    with pytest.raises(TypeError):
        warp_image(img.astype(np.float64), ok, ok, grid_step_px=8)
    with pytest.raises(ValueError, match="field_dx"):
        warp_image(img, np.zeros((2, 2)), ok, grid_step_px=8)
    with pytest.raises(ValueError, match="non-finite"):
        warp_image(img, ok, np.full(grid, np.nan), grid_step_px=8)
    with pytest.raises(ValueError, match="out"):
        warp_image(img, ok, ok, grid_step_px=8, out=img)
    with pytest.raises(ValueError, match="coefficients"):
        warp_image(img, ok, ok, grid_step_px=8, coefficients=np.zeros((20, 31), np.float32))
    with pytest.raises(ValueError):
        bspline_prefilter(np.zeros((3, 4, 5), np.float32))
    with pytest.raises(ValueError):
        bspline_prefilter(img, out=img)
