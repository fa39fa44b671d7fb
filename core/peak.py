"""Cross-correlation peaks: integer search and sub-pixel refinement.

The sub-pixel offset along each axis comes from a 3-point Gaussian fit through the integer maximum
and its two neighbours, exact for a Gaussian peak, which is what the B-factor-filtered
cross-correlation of white-ish signals is; a parabola through the same points is biased towards
whole pixels ("pixel locking"). Where a neighbour is not positive the parabola is used instead.
Correlation maps are ``(ny, nx)`` with zero shift at index (0, 0) (wrapped, as an inverse FFT gives).
"""
from __future__ import annotations

import functools
import math

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
    f0 = float(cc[iy, ix])
    ox = gaussian_offset(float(cc[iy, (ix - 1) % nx]), f0, float(cc[iy, (ix + 1) % nx]))
    oy = gaussian_offset(float(cc[(iy - 1) % ny, ix]), f0, float(cc[(iy + 1) % ny, ix]))
    dx = (ix if ix <= nx // 2 else ix - nx) + ox
    dy = (iy if iy <= ny // 2 else iy - ny) + oy
    return float(dx), float(dy), f0


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
