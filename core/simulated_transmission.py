"""The simulator's transmission: projected density ``B`` -> expected counts per pixel and frame.

``T = g(1 + c (B - beta))`` with ``g`` the identity above the knee ``T = 0.5`` and, below it, a smooth
approach (same value and slope at the knee) to the floor ``T = 0.3``; expected counts are
``dose_per_frame * pixel_size**2 * T``. ``c`` and ``beta`` are constants of the specimen
(:func:`solve_transmission`). The numba kernel :func:`_counts_of_density` and its NumPy twin
:func:`transmission` compute the same ``g``.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .errors import SettingsError

__all__ = ["TRANSMISSION_FLOOR", "TRANSMISSION_KNEE", "transmission", "solve_transmission",
           "kernel_constants"]

TRANSMISSION_FLOOR = 0.3
TRANSMISSION_KNEE = 0.5  # below this T the soft floor takes over (continuous slope)
_KNEE_WIDTH = TRANSMISSION_KNEE - TRANSMISSION_FLOOR


@njit(cache=True, inline="always")
def _counts_of_density(d, c, beta, scale):  # pragma: no cover - compiled
    """Expected counts ``scale * T`` of projected density ``d``, ``T = g(1 + c (d - beta))``.

    ``g`` is the identity above the knee ``T = 0.5`` and below it decays smoothly (same value and
    slope at the knee) towards the floor ``T = 0.3``, which it never reaches.
    """
    t = 1.0 + c * (d - beta)
    if t < TRANSMISSION_KNEE:
        t = TRANSMISSION_FLOOR + _KNEE_WIDTH * math.exp((t - TRANSMISSION_KNEE) / _KNEE_WIDTH)
    return scale * t



@njit(cache=True, nogil=True)
def _density_to_counts(buf, c, beta, scale):  # pragma: no cover - compiled
    """In place: projected density (ny, nx) float64 -> expected counts per pixel."""
    ny, nx = buf.shape
    for j in range(ny):
        for i in range(nx):
            buf[j, i] = _counts_of_density(buf[j, i], c, beta, scale)



def kernel_constants(sim) -> tuple[float, float, float]:
    """(c, beta, scale) of counts(d) = scale * g(1 + c (d - beta)), scale = counts per frame and pixel."""
    return sim.contrast_scale, sim.density_offset, sim.counts_per_frame_px



def transmission(density: np.ndarray, c: float, beta: float) -> np.ndarray:
    """T = g(1 + c (B - beta)) (numpy twin of ``_counts_of_density`` with scale 1)."""
    t = 1.0 + c * (density - beta)
    low = t < TRANSMISSION_KNEE
    t[low] = TRANSMISSION_FLOOR + _KNEE_WIDTH * np.exp((t[low] - TRANSMISSION_KNEE) / _KNEE_WIDTH)
    return t



def solve_transmission(density: np.ndarray, contrast_rms: float) -> tuple[float, float]:
    """(c, beta) such that std(T) = contrast_rms and mean(T) = 1 over ``density`` (ny, nx).

    ``c`` by bisection on std(T) / mean(T) over a strided subsample, then ``beta`` by Newton
    steps on the full image (the soft floor lifts the mean a little).
    """
    beta = float(density.mean(dtype=np.float64))
    if contrast_rms == 0:
        return 0.0, beta
    step = max(1, int(math.sqrt(density.size / 2.0**18)))
    sample = density[::step, ::step].ravel()
    sample_mean = float(sample.mean())

    def ratio(c: float) -> float:
        tr = transmission(sample, c, sample_mean)
        return float(tr.std() / tr.mean())

    std = float(sample.std())
    if std == 0:
        raise SettingsError("the specimen has no contrast (empty field?)", fix="raise blob_density_per_kpx2")
    lo, hi = 0.0, contrast_rms / std
    while ratio(hi) < contrast_rms:
        lo, hi = hi, hi * 2.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if ratio(mid) < contrast_rms:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-6 * hi:
            break
    c = 0.5 * (lo + hi)
    for _ in range(2):  # d mean(T) / d beta = -c wherever T is above the knee
        beta += (float(transmission(density, c, beta).mean(dtype=np.float64)) - 1.0) / c
    return c, beta
