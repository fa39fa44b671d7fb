"""The dose-weighted full, even and odd sums of aligned frame spectra, in one pass over the frames.

Each frame ``i`` is shifted to the reference position by a separable phase ``py_i[ky] px_i[kx]``
and filtered by ``q_i(k) = exp(-N_i v(k))`` (:mod:`framewatch.core.dose`: ``v = 1 / (2 Ne(k))``,
``N_i`` the accumulated dose at the end of frame ``i``). A sum over a subset T of frames is
``sum_{i in T} q_i F_i * sqrt(|T| / sum_{i in T} q_i**2)``, so its zero frequency equals the plain
sum (see :mod:`framewatch.core.dose`).

The kernel walks the spectra row by row: for one row ``ky`` it streams that row of every frame
through per-row accumulators, so each spectrum is read once and the outputs are written once
(memory-bound: a 4096 x 4096 x 10 movie reads 640 MiB of spectra). The doses grow by the same
step, so ``q_{i+1} = q_i * exp(-step v)``: two ``exp`` per frequency for the whole movie instead
of one per frequency and frame (float64 recurrence; the result differs from ``exp`` per frame by
float32 rounding, ~1e-7 relative).
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from .array_addresses import array_addresses, complex64_frame
from .fourier import shift_phase_vectors

__all__ = ["WeightedSums", "weighted_sums"]


@dataclass(frozen=True)
class WeightedSums:
    """Half spectra ``(ny, nx//2+1)`` complex64: ``full``, ``even`` (frames 0, 2, ...), ``odd`` (all
    zero for a one-frame movie) and ``plain`` (shifted, unweighted sum; ``None`` unless asked for)."""

    full: np.ndarray
    even: np.ndarray
    odd: np.ndarray
    plain: np.ndarray | None


@numba.njit(cache=True, parallel=True, fastmath=True, nogil=True)
def _weighted_sums_kernel(spectra, phase_y, phase_x, inv2ne, first_dose, dose_step,  # pragma: no cover - compiled
                          full, even, odd, plain):
    """``spectra``: the frames' addresses (:func:`~framewatch.core.array_addresses.array_addresses`)."""
    n = spectra.shape[0]
    ny, nkx = inv2ne.shape
    n_even = (n + 1) // 2
    n_odd = n // 2
    do_plain = plain.shape[0] == ny
    for y in numba.prange(ny):
        q = np.empty(nkx, np.float64)
        r = np.empty(nkx, np.float64)
        w_even = np.zeros(nkx, np.float64)
        w_odd = np.zeros(nkx, np.float64)
        a = np.zeros(nkx, np.complex64)
        b = np.zeros(nkx, np.complex64)
        p = np.zeros(nkx if do_plain else 0, np.complex64)
        for x in range(nkx):
            v = np.float64(inv2ne[y, x])
            q[x] = np.exp(-first_dose * v)
            r[x] = np.exp(-dose_step * v)
        for i in range(n):
            row = complex64_frame(spectra, i, ny, nkx)[y]
            fy = phase_y[i, y]
            px = phase_x[i]
            acc = a if i % 2 == 0 else b
            w = w_even if i % 2 == 0 else w_odd
            for x in range(nkx):
                qx = q[x]
                shifted = row[x] * (fy * px[x])
                acc[x] += np.float32(qx) * shifted
                w[x] += qx * qx
                q[x] = qx * r[x]
                if do_plain:
                    p[x] += shifted
        for x in range(nkx):
            even[y, x] = a[x] * np.float32(np.sqrt(n_even / w_even[x]))
            if n_odd > 0:
                odd[y, x] = b[x] * np.float32(np.sqrt(n_odd / w_odd[x]))
            else:
                odd[y, x] = 0
            full[y, x] = (a[x] + b[x]) * np.float32(np.sqrt(n / (w_even[x] + w_odd[x])))
            if do_plain:
                plain[y, x] = p[x]


def weighted_sums(
    spectra: list,
    *,
    shape: tuple[int, int],
    shifts_px: np.ndarray,
    inv2ne: np.ndarray,
    doses_e_per_a2: np.ndarray,
    unweighted: bool = False,
    consume: bool = False,
    frequency_factors: tuple[np.ndarray, np.ndarray] | None = None,
) -> WeightedSums:
    """Shift every frame by ``-shifts_px[i]`` and sum with dose weights (see the module docstring).

    ``spectra``: ``n`` complex64 ``(ny, nx//2+1)`` half spectra of images ``shape``; ``shifts_px``
    ``(n, 2)`` (x, y) of each frame relative to the reference position, in pixels of ``shape``;
    ``inv2ne``: float32 ``(ny, nx//2+1)``
    (:func:`framewatch.core.dose.half_inverse_critical_exposure`); ``doses_e_per_a2`` ``(n,)``
    accumulated dose per frame, growing by the same step. ``unweighted``: also the plain sum.
    ``consume``: the caller gives up ``spectra`` (emptied here): the sums are written over the first
    frames' spectra (each row is read before it is written), which saves three spectra of memory.
    ``frequency_factors``: ``(fy, fx)`` real ``(ny,)`` and ``(nx//2+1,)``: every frame is also
    multiplied by ``fy[ky] * fx[kx]`` (folded into its phase vectors, at no cost), e.g. the B-spline
    prefilter of warped frames (:func:`framewatch.core.bspline_prefilter.prefilter_factors`).
    """
    n = len(spectra)
    spec_shape = inv2ne.shape
    doses = np.asarray(doses_e_per_a2, dtype=np.float64)
    if n == 0 or doses.shape != (n,) or np.shape(shifts_px) != (n, 2):
        raise ValueError(f"{n} spectra need ({n},) doses and ({n}, 2) shifts, got {doses.shape} and {np.shape(shifts_px)}")
    step = float(doses[1] - doses[0]) if n > 1 else 0.0
    if n > 2 and not np.allclose(np.diff(doses), step, rtol=1e-6, atol=1e-9):
        raise ValueError("accumulated doses must grow by the same dose per frame")
    for spec in spectra:
        if spec.shape != spec_shape or spec.dtype != np.complex64:
            raise ValueError(f"spectra must be complex64 {spec_shape}, got {spec.dtype} {spec.shape}")
    frames = [np.ascontiguousarray(spec) for spec in spectra]  # the addresses below are valid while this lives
    addresses = array_addresses(frames, shape=spec_shape)
    phase_y = np.empty((n, spec_shape[0]), np.complex64)
    phase_x = np.empty((n, spec_shape[1]), np.complex64)
    for i, (dx, dy) in enumerate(np.asarray(shifts_px, dtype=np.float64)):
        phase_y[i], phase_x[i] = shift_phase_vectors(shape, -dx, -dy)
    if frequency_factors is not None:
        fy, fx = (np.asarray(f, np.float32) for f in frequency_factors)
        if fy.shape != (spec_shape[0],) or fx.shape != (spec_shape[1],):
            raise ValueError(f"frequency factors {fy.shape} and {fx.shape} do not fit spectra {spec_shape}")
        phase_y *= fy
        phase_x *= fx
    reusable = [frames[i] for i in range(n)] if consume else []
    if consume:
        spectra.clear()
    full, even, odd = (reusable.pop(0) if reusable else np.empty(spec_shape, np.complex64) for _ in range(3))
    plain = (reusable.pop(0) if reusable else np.empty(spec_shape, np.complex64)) if unweighted else \
        np.empty((0, 0), np.complex64)
    del reusable
    _weighted_sums_kernel(addresses, phase_y, phase_x, inv2ne, doses[0], step, full, even, odd, plain)
    return WeightedSums(full, even, odd, plain if unweighted else None)
