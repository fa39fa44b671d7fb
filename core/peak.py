"""Cross-correlation peaks: integer search and sub-pixel refinement.

The sub-pixel offset along each axis comes from a 3-point Gaussian fit through the integer maximum
and its two neighbours, exact for a Gaussian peak, which is what the B-factor-filtered
cross-correlation of white-ish signals is; a parabola through the same points is biased towards
whole pixels ("pixel locking"). Where a neighbour is not positive the parabola is used instead.
Correlation maps are ``(ny, nx)`` with zero shift at index (0, 0) (wrapped, as an inverse FFT gives).

A filter that is not a Gaussian (the data-derived weight of :mod:`framewatch.core.spectral_weight`)
makes a peak the 3-point fit would bias; :func:`refine_peak` then takes Newton steps on the exact
correlation (its value, gradient and Hessian at any fractional offset by one pass over the
cross-power), which is unbiased for any peak shape.
"""
from __future__ import annotations

import functools
import math

import numba
import numpy as np


def gaussian_offset(f_minus: float, f_zero: float, f_plus: float) -> float:
    """Sub-pixel offset of a peak from three samples at -1, 0, +1 (``f_zero`` the largest), in [-0.5, 0.5]."""
    if f_minus > 0 and f_zero > 0 and f_plus > 0:
        lm, l0, lp = math.log(f_minus), math.log(f_zero), math.log(f_plus)
        denom = 2.0 * (lm - 2.0 * l0 + lp)
        delta = (lm - lp) / denom if denom < 0 else 0.0
    else:
        denom = 2.0 * (f_minus - 2.0 * f_zero + f_plus)
        delta = (f_minus - f_plus) / denom if denom < 0 else 0.0
    return max(-0.5, min(0.5, delta))


def offset_mask(shape: tuple[int, int], max_radius_px: float) -> np.ndarray:
    """Bool ``(ny, nx)``: wrapped offsets within ``max_radius_px`` of zero (where a peak may be)."""
    ny, nx = shape
    dy = np.fft.fftfreq(ny) * ny
    dx = np.fft.fftfreq(nx) * nx
    return (dy[:, None] ** 2 + dx[None, :] ** 2) <= max_radius_px**2


def find_peak(cc: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float, float]:
    """Peak of a wrapped correlation map ``(ny, nx)``: ``(dx, dy, height)``, sub-pixel, in pixels."""
    ny, nx = cc.shape
    search = cc if mask is None else np.where(mask, cc, -np.inf)
    iy, ix = np.unravel_index(int(np.argmax(search)), cc.shape)
    ox, oy, f0 = _gaussian_fit_at(cc, iy, ix)
    dx = (ix if ix <= nx // 2 else ix - nx) + ox
    dy = (iy if iy <= ny // 2 else iy - ny) + oy
    return float(dx), float(dy), f0


def find_peak_within(cc: np.ndarray, max_radius_px: float) -> tuple[float, float, float]:
    """``find_peak(cc, offset_mask(cc.shape, max_radius_px))``, reading only the ``(2 w + 1)^2``
    offsets around zero (``w`` the radius in whole pixels) instead of masking the whole map."""
    ny, nx = cc.shape
    w = int(math.floor(max_radius_px))
    if 2 * w + 1 >= min(ny, nx):
        return find_peak(cc, offset_mask(cc.shape, max_radius_px))
    offsets = np.arange(-w, w + 1)
    window = cc[np.ix_(offsets % ny, offsets % nx)]
    outside = offsets[:, None] ** 2 + offsets[None, :] ** 2 > max_radius_px**2
    j = int(np.argmax(np.where(outside, -np.inf, window)))
    iy, ix = int(offsets[j // offsets.size]) % ny, int(offsets[j % offsets.size]) % nx
    ox, oy, f0 = _gaussian_fit_at(cc, iy, ix)
    dx = (ix if ix <= nx // 2 else ix - nx) + ox
    dy = (iy if iy <= ny // 2 else iy - ny) + oy
    return float(dx), float(dy), f0


def _gaussian_fit_at(cc: np.ndarray, iy: int, ix: int) -> tuple[float, float, float]:
    """``(ox, oy, value)``: the 3-point Gaussian sub-pixel offsets around the sample ``cc[iy, ix]``
    of a wrapped map ``(ny, nx)``, and its value."""
    ny, nx = cc.shape
    f0 = float(cc[iy, ix])
    ox = gaussian_offset(float(cc[iy, (ix - 1) % nx]), f0, float(cc[iy, (ix + 1) % nx]))
    oy = gaussian_offset(float(cc[(iy - 1) % ny, ix]), f0, float(cc[(iy + 1) % ny, ix]))
    return ox, oy, f0


@functools.lru_cache(maxsize=32)
def _dft_matrices(shape: tuple[int, int], xs: tuple[float, ...], ys: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``ex`` ``(nkx, len(xs))`` (with the half-spectrum weights) and ``ey`` ``(len(ys), ny)``."""
    ny, nx = shape
    nkx = nx // 2 + 1
    kx = np.arange(nkx)
    weight = np.full(nkx, 2.0)
    weight[0] = 1.0
    if nx % 2 == 0:
        weight[-1] = 1.0
    ex = (weight[:, None] * np.exp(2j * np.pi * kx[:, None] * np.asarray(xs)[None, :] / nx)).astype(np.complex64)
    ky = np.fft.fftfreq(ny) * ny
    ey = np.exp(2j * np.pi * np.asarray(ys)[:, None] * ky[None, :] / ny).astype(np.complex64)
    ex.setflags(write=False)
    ey.setflags(write=False)
    return ex, ey


def correlation_at(cross_power: np.ndarray, shape: tuple[int, int], xs, ys) -> np.ndarray:
    """Exact correlation values at integer or fractional offsets, by a direct (matrix) DFT.

    ``cross_power`` is a half spectrum ``(ny, nx//2+1)`` of a map ``shape``; returns
    ``(len(ys), len(xs))`` equal to ``irfft2(cross_power)`` sampled at those offsets. Cheap for a
    handful of offsets: O(ny * nkx * len(xs)); the DFT matrices are cached per shape and offsets.
    """
    ny, nx = shape
    ex, ey = _dft_matrices((int(ny), int(nx)), tuple(float(x) for x in xs), tuple(float(y) for y in ys))
    return (ey @ (cross_power @ ex)).real / (ny * nx)


def peak_window_fits(shape: tuple[int, int], max_radius_px: float) -> bool:
    """Whether :func:`peaks_near_zero` can search maps ``shape`` by direct DFT: the offsets within
    ``max_radius_px`` and their neighbours take less than half the map along each axis."""
    w = int(math.floor(max_radius_px)) + 1
    return 2 * w + 1 <= min(shape) // 2


def peaks_near_zero(cross_powers: np.ndarray, shape: tuple[int, int], max_radius_px: float) -> np.ndarray:
    """``find_peak(irfft2(xp), offset_mask(shape, max_radius_px))`` of every cross-power ``xp`` in
    ``cross_powers`` ``(m, ny, nx//2+1)``, without the inverse transforms: ``(m, 3)`` rows
    ``(dx, dy, height)``.

    The correlation is evaluated only at the integer offsets within ``max_radius_px`` of zero and
    their neighbours, by a direct DFT in two matrix products over all ``m`` maps at once (one large
    product, which the BLAS runs well on every core; :func:`correlation_at` is the same for one map),
    then the largest value within the radius and its 3-point Gaussian fit, as :func:`find_peak`. For
    peaks known to be near zero (patches after whole-frame alignment: a radius of 2-8 px) this is far
    cheaper than transforming whole maps. Requires :func:`peak_window_fits`; equal to the transform's
    result to float32 rounding."""
    if not peak_window_fits(shape, max_radius_px):
        raise ValueError(f"a peak radius of {max_radius_px} px does not fit a {shape} map for a direct search")
    ny, nx = shape
    m = cross_powers.shape[0]
    w = int(math.floor(max_radius_px)) + 1
    offsets = tuple(float(v) for v in range(-w, w + 1))
    ex, ey = _dft_matrices((int(ny), int(nx)), offsets, offsets)
    rows = cross_powers.reshape(m * ny, -1) @ ex  # (m ny, W): every row's sum over kx, per x offset
    cc = (ey @ rows.reshape(m, ny, len(offsets))).real / (ny * nx)  # (m, W, W): (dy, dx)
    d = np.asarray(offsets)
    outside = d[:, None] ** 2 + d[None, :] ** 2 > max_radius_px**2
    out = np.empty((m, 3))
    for j in range(m):
        c = cc[j]
        iy, ix = np.unravel_index(int(np.argmax(np.where(outside, -np.inf, c))), c.shape)
        ox, oy, f0 = _gaussian_fit_at(c, iy, ix)  # the window holds the neighbours: no wrap
        out[j] = offsets[ix] + ox, offsets[iy] + oy, f0
    return out


@numba.njit(cache=True, fastmath=True, nogil=True)
def _correlation_derivatives_kernel(cross_power, ex, ey, ax, by, hw, noise, out):  # pragma: no cover - compiled
    """Correlation and its first and second derivatives at one (fractional) offset.

    ``cross_power`` complex64 ``(ny, nkx)``; ``ex`` ``(nkx,)``, ``ey`` ``(ny,)`` complex128 phase
    factors of the offset; ``ax`` ``(nkx,)``, ``by`` ``(ny,)`` the angular frequencies
    ``2 pi k / n``; ``hw`` ``(nkx,)`` half-spectrum multiplicities. ``out`` (9,) float64 receives
    ``c, dc/dx, dc/dy, d2c/dx2, d2c/dxdy, d2c/dy2`` (unnormalised sums) and, when ``noise``, the
    gradient's noise covariance ``sum a^2 im^2, sum a b im^2, sum b^2 im^2`` (``im`` the weighted
    imaginary part; :mod:`core.peak_precision`), else zeros.
    """
    ny, nkx = cross_power.shape
    c = 0.0
    gx = 0.0
    gy = 0.0
    hxx = 0.0
    hxy = 0.0
    hyy = 0.0
    nxx = 0.0
    nxy = 0.0
    nyy = 0.0
    for y in range(ny):
        eyy = ey[y]
        b = by[y]
        for x in range(nkx):
            z = cross_power[y, x] * ex[x] * eyy
            w = hw[x]
            re = w * z.real
            im = w * z.imag
            a = ax[x]
            c += re
            gx -= a * im
            gy -= b * im
            hxx -= a * a * re
            hxy -= a * b * re
            hyy -= b * b * re
            if noise:
                q = im * im
                nxx += a * a * q
                nxy += a * b * q
                nyy += b * b * q
    out[6] = nxx
    out[7] = nxy
    out[8] = nyy
    out[0] = c
    out[1] = gx
    out[2] = gy
    out[3] = hxx
    out[4] = hxy
    out[5] = hyy


@functools.lru_cache(maxsize=8)
def _angular_frequencies(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``ax`` ``(nkx,)``, ``by`` ``(ny,)`` (``2 pi k / n``, ky signed) and multiplicities ``(nkx,)``."""
    ny, nx = shape
    nkx = nx // 2 + 1
    ax = 2.0 * np.pi * np.arange(nkx) / nx
    by = 2.0 * np.pi * (np.fft.fftfreq(ny) * ny) / ny
    hw = np.full(nkx, 2.0)
    hw[0] = 1.0
    if nx % 2 == 0:
        hw[-1] = 1.0
    for arr in (ax, by, hw):
        arr.setflags(write=False)
    return ax, by, hw


def _derivative_sums(cross_power: np.ndarray, shape: tuple[int, int], x: float, y: float, *, noise: bool) -> np.ndarray:
    """``(9,)`` float64: the unnormalised sums of :func:`_correlation_derivatives_kernel`."""
    ny, nx = shape
    if cross_power.shape != (ny, nx // 2 + 1):
        raise ValueError(f"cross-power {cross_power.shape} does not belong to a map {shape}")
    ax, by, hw = _angular_frequencies((int(ny), int(nx)))
    out = np.zeros(9)
    _correlation_derivatives_kernel(np.ascontiguousarray(cross_power, dtype=np.complex64), np.exp(1j * ax * x),
                                    np.exp(1j * by * y), ax, by, hw, noise, out)
    return out


def correlation_derivatives(cross_power: np.ndarray, shape: tuple[int, int], x: float, y: float) -> np.ndarray:
    """``(6,)`` float64: the correlation ``irfft2(cross_power)`` continued to the offset ``(x, y)``
    (the band-limited interpolation a DFT defines) and its derivatives: ``c, c_x, c_y, c_xx, c_xy,
    c_yy``. ``cross_power`` is a half spectrum ``(ny, nx//2+1)`` of a map ``shape``."""
    return _derivative_sums(cross_power, shape, x, y, noise=False)[:6] / (shape[0] * shape[1])


def correlation_derivatives_with_noise(cross_power: np.ndarray, shape: tuple[int, int], x: float,
                                       y: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`correlation_derivatives` and, in one pass, ``(3,)`` float64 the covariance of the noise
    in the gradient ``(g_xx, g_xy, g_yy)`` estimated from the imaginary parts at ``(x, y)``, normalised
    as the derivatives (see :mod:`core.peak_precision`)."""
    n = float(shape[0] * shape[1])
    sums = _derivative_sums(cross_power, shape, x, y, noise=True)
    return sums[:6] / n, sums[6:] / n**2


def refine_peak(cross_power: np.ndarray, shape: tuple[int, int], x0: float, y0: float, *,
                max_steps: int = 4, max_move_px: float = 1.0) -> tuple[float, float, float] | None:
    """Newton steps on the exact (band-limited) correlation from ``(x0, y0)`` to its local maximum.

    Unlike a 3-point fit, this assumes no peak shape, so it has no pixel-locking bias whatever the
    filter. Returns ``(x, y, height)``, or ``None`` when the surface is not concave along the way
    or the maximum lies more than ``max_move_px`` from the start (then keep the 3-point estimate).
    """
    x, y = float(x0), float(y0)
    d = correlation_derivatives(cross_power, shape, x, y)
    for _ in range(max_steps):
        hxx, hxy, hyy = d[3], d[4], d[5]
        det = hxx * hyy - hxy * hxy
        if not (hxx < 0 and det > 0):
            return None
        step_x = -(hyy * d[1] - hxy * d[2]) / det
        step_y = -(-hxy * d[1] + hxx * d[2]) / det
        x += step_x
        y += step_y
        if abs(x - x0) > max_move_px or abs(y - y0) > max_move_px:
            return None
        d = correlation_derivatives(cross_power, shape, x, y)
        if abs(step_x) < 1e-4 and abs(step_y) < 1e-4:
            break
    return x, y, float(d[0])
