"""Dose weighting after Grant & Grigorieff (2015, eLife 4:e06980).

Critical exposure at 300 kV: ``Ne(k) = 0.24499 * k**-1.6649 + 2.8141`` e/A^2, k in 1/A.
Other voltages scale ``Ne`` by MotionCor's piecewise-linear factor (1.0 at >= 300 kV,
``0.8 + 0.002 (kV - 200)`` for 200-300 kV, ``0.45 + 0.004375 (kV - 120)`` for 120-200 kV, 0.45
below 120 kV): exactly 0.8 at 200 kV as cisTEM and IMOD use.
Frame filter ``q_i(k) = exp(-N_i / (2 Ne(k)))`` with ``N_i = prior + (i + 1) * dose_per_frame``, the
accumulated dose at the *end* of frame i. A weighted sum over a subset T of frames is
``sum_{i in T} q_i F_i * sqrt(|T| / sum_{i in T} q_i**2)``: DESIGN.md's ``sum q F / sqrt(sum q^2)``
scaled by ``sqrt(|T|)`` so that the zero frequency (where every q is 1, i.e. unweighted) and the low
frequencies equal the plain sum of the subset. The normalisation is computed over T itself, so
each half sum has its own.
"""
from __future__ import annotations

import functools

import numpy as np

NE_A = 0.24499
NE_B = -1.6649
NE_C = 2.8141


def voltage_factor(voltage_kv: float) -> float:
    """Multiplier of the 300 kV critical exposure at ``voltage_kv`` (MotionCor3's rule; 0.8 at 200 kV)."""
    if voltage_kv >= 300:
        return 1.0
    if voltage_kv >= 200:
        return 0.8 + 0.002 * (voltage_kv - 200)
    if voltage_kv >= 120:
        return 0.45 + 0.004375 * (voltage_kv - 120)
    return 0.45


def critical_exposure_e_per_a2(k_per_a: np.ndarray, *, voltage_kv: float = 300.0) -> np.ndarray:
    """Critical exposure ``Ne(k)`` in e/A^2 at spatial frequencies ``k_per_a`` (1/A); inf at k = 0."""
    k = np.asarray(k_per_a, dtype=np.float64)
    with np.errstate(divide="ignore"):
        ne = (NE_A * np.power(k, NE_B) + NE_C) * voltage_factor(voltage_kv)
    return np.where(k > 0, ne, np.inf)


def accumulated_dose_e_per_a2(n_frames: int, *, dose_per_frame_e_per_a2: float, prior_dose_e_per_a2: float) -> np.ndarray:
    """``(n_frames,)`` dose at the end of each frame: ``prior + (i + 1) * dose_per_frame``."""
    return prior_dose_e_per_a2 + dose_per_frame_e_per_a2 * np.arange(1, n_frames + 1, dtype=np.float64)


def frame_weights(k_per_a: np.ndarray, accumulated_dose: np.ndarray, *, voltage_kv: float = 300.0) -> np.ndarray:
    """``q_i(k)`` for every frame: ``(n_frames,) + k.shape`` float64 (slow reference, for tests)."""
    ne = critical_exposure_e_per_a2(k_per_a, voltage_kv=voltage_kv)
    return np.exp(-np.asarray(accumulated_dose)[(...,) + (None,) * ne.ndim] / (2.0 * ne))


@functools.lru_cache(maxsize=4)
def half_inverse_critical_exposure(shape: tuple[int, int], *, pixel_size_a: float, voltage_kv: float) -> np.ndarray:
    """``1 / (2 Ne(k))`` on the half spectrum of an image ``shape``: float32 ``(ny, nx//2+1)``, 0 at DC.

    ``q_i = exp(-N_i * v)`` with this map ``v``. Cached per geometry (read-only array): a session
    corrects many movies of one size.
    """
    ny, nx = shape
    ky = np.fft.fftfreq(ny) / pixel_size_a
    kx = np.fft.rfftfreq(nx) / pixel_size_a
    k = np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
    v = (0.5 / critical_exposure_e_per_a2(k, voltage_kv=voltage_kv)).astype(np.float32)
    v.setflags(write=False)
    return v
