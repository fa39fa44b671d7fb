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

import numba
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


@numba.njit(cache=True, parallel=True, fastmath=True)
def _accumulate_kernel(spec, py, px, inv2ne, dose, acc, plain):  # pragma: no cover - compiled
    """acc += q * phase * spec with q = exp(-dose * inv2ne); plain += phase * spec (when it has rows)."""
    ny, nkx = spec.shape
    do_plain = plain.shape[0] == ny
    for y in numba.prange(ny):
        fy = py[y]
        for x in range(nkx):
            v = spec[y, x] * (fy * px[x])
            acc[y, x] += np.exp(-dose * inv2ne[y, x]) * v
            if do_plain:
                plain[y, x] += v


def accumulate_weighted(
    spectrum: np.ndarray,
    *,
    phase_y: np.ndarray,
    phase_x: np.ndarray,
    inv2ne: np.ndarray,
    dose_e_per_a2: float,
    acc: np.ndarray,
    plain: np.ndarray | None = None,
) -> None:
    """Add one frame's shifted, dose-filtered spectrum ``q * phase * spectrum`` to ``acc`` in place.

    ``spectrum``, ``acc``: complex64 ``(ny, nkx)``; ``inv2ne``: float32 ``(ny, nkx)`` from
    :func:`half_inverse_critical_exposure`; ``dose_e_per_a2``: accumulated dose at the end of the
    frame; ``phase_y`` ``(ny,)``, ``phase_x`` ``(nkx,)`` from
    :func:`framewatch.core.fourier.shift_phase_vectors`; ``plain`` (optional) accumulates the
    shifted, unweighted spectrum.
    """
    shape = spectrum.shape
    for name, arr, dtype in (("acc", acc, np.complex64), ("inv2ne", inv2ne, np.float32)):
        if arr.shape != shape or arr.dtype != dtype:
            raise ValueError(f"{name} must be {dtype.__name__} {shape}, got {arr.dtype} {arr.shape}")
    if phase_y.shape != (shape[0],) or phase_x.shape != (shape[1],):
        raise ValueError("phase vectors do not match the spectrum")
    if plain is None:
        plain = np.zeros((0, 0), dtype=np.complex64)
    _accumulate_kernel(
        np.ascontiguousarray(spectrum, dtype=np.complex64),
        phase_y.astype(np.complex64),
        phase_x.astype(np.complex64),
        inv2ne,
        np.float32(dose_e_per_a2),
        acc,
        plain,
    )


@numba.njit(cache=True, parallel=True, fastmath=True)
def _finalize_kernel(acc_even, acc_odd, inv2ne, first_dose, dose_step, n, out_full, out_even, out_odd):  # pragma: no cover
    """Normalise with q_i^2 = exp(-2 N_i v), N_i = first_dose + i * dose_step, by recurrence."""
    ny, nkx = acc_even.shape
    n_even = (n + 1) // 2
    n_odd = n // 2
    for y in numba.prange(ny):
        for x in range(nkx):
            v = inv2ne[y, x]
            q2 = np.exp(-2.0 * first_dose * v)
            r = np.exp(-2.0 * dose_step * v)
            w_even = np.float32(0.0)
            w_odd = np.float32(0.0)
            for i in range(n):
                if i % 2 == 0:
                    w_even += q2
                else:
                    w_odd += q2
                q2 *= r
            a = acc_even[y, x]
            b = acc_odd[y, x]
            out_even[y, x] = a * np.sqrt(n_even / w_even)
            out_odd[y, x] = b * np.sqrt(n_odd / w_odd) if n_odd > 0 else 0
            out_full[y, x] = (a + b) * np.sqrt(n / (w_even + w_odd))


def finalize_weighted_sums(
    acc_even: np.ndarray, acc_odd: np.ndarray, *, inv2ne: np.ndarray, doses_e_per_a2: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalise the even- and odd-frame accumulators; returns ``(full, even, odd)`` spectra.

    Each is ``sum_{i in T} q_i F_i * sqrt(|T| / sum_{i in T} q_i**2)`` over its own frames T
    (all, even 0-based indices, odd). ``doses_e_per_a2``: ``(n_frames,)`` accumulated dose per frame.
    """
    if acc_even.shape != acc_odd.shape or acc_even.shape != inv2ne.shape:
        raise ValueError("accumulators and inv2ne must have the same shape")
    doses = np.asarray(doses_e_per_a2, dtype=np.float64)
    step = float(doses[1] - doses[0]) if doses.size > 1 else 0.0
    if doses.size > 2 and not np.allclose(np.diff(doses), step, rtol=1e-6, atol=1e-9):
        raise ValueError("accumulated doses must grow by the same dose per frame")
    outs = [np.empty_like(acc_even) for _ in range(3)]
    _finalize_kernel(acc_even, acc_odd, inv2ne, float(doses[0]), step, int(doses.size), *outs)
    return outs[0], outs[1], outs[2]
