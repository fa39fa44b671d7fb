"""Fourier ring correlation between two images given as half spectra, and its crossings."""
from __future__ import annotations

import numba
import numpy as np


def ring_index(shape: tuple[int, int]) -> np.ndarray:
    """int ``(ny, nx//2+1)``: ring number ``round(r * min(ny, nx))`` of each half-spectrum element
    (ring i ~ i / min(ny, nx) cycles per pixel; ring min/2 is Nyquist)."""
    ny, nx = shape
    ky = np.fft.fftfreq(ny)
    kx = np.fft.rfftfreq(nx)
    r = np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
    return np.rint(r * min(ny, nx)).astype(np.int64)


def _half_weights(shape: tuple[int, int]) -> np.ndarray:
    """Each half-spectrum column counts twice except kx = 0 and the Nyquist column."""
    ny, nx = shape
    w = np.full(nx // 2 + 1, 2.0)
    w[0] = 1.0
    if nx % 2 == 0:
        w[-1] = 1.0
    return np.broadcast_to(w, (ny, nx // 2 + 1))


_RING_BLOCKS = 16  # row blocks of the ring sums, each on a thread of its own, summed in order (deterministic)


@numba.njit(cache=True, fastmath=True, parallel=True)
def _ring_sums_kernel(a, b, ny, nx, n_rings, num, pa, pb):  # pragma: no cover - compiled
    """Ring sums over row blocks (``_RING_BLOCKS``), each with its own accumulators, added in block
    order afterwards: the result does not depend on the number of threads."""
    nkx = a.shape[1]
    scale = min(ny, nx)
    n_blocks = min(_RING_BLOCKS, ny)
    acc = np.zeros((n_blocks, 3, n_rings))
    for blk in numba.prange(n_blocks):
        y0 = blk * ny // n_blocks
        y1 = (blk + 1) * ny // n_blocks
        for y in range(y0, y1):
            fy = (y if y < (ny + 1) // 2 else y - ny) / ny
            for x in range(nkx):
                fx = x / nx
                ring = int(np.rint(np.sqrt(fy * fy + fx * fx) * scale))
                if ring >= n_rings:
                    continue
                w = 1.0 if (x == 0 or (nx % 2 == 0 and x == nkx - 1)) else 2.0
                va = a[y, x]
                vb = b[y, x]
                acc[blk, 0, ring] += w * (va.real * vb.real + va.imag * vb.imag)
                acc[blk, 1, ring] += w * (va.real * va.real + va.imag * va.imag)
                acc[blk, 2, ring] += w * (vb.real * vb.real + vb.imag * vb.imag)
    for blk in range(n_blocks):
        for r in range(n_rings):
            num[r] += acc[blk, 0, r]
            pa[r] += acc[blk, 1, r]
            pb[r] += acc[blk, 2, r]


def frc_curve(spec_a: np.ndarray, spec_b: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """FRC of two images of ``shape`` from their half spectra ``(ny, nx//2+1)``.

    Ring i holds the frequencies with ``round(|k| * min(ny, nx)) == i`` (k in cycles per pixel).
    Returns ``(frequency_cycles_per_px, frc)``, each ``(n_rings,)`` for rings 1 .. Nyquist.
    """
    ny, nx = shape
    if spec_a.shape != (ny, nx // 2 + 1) or spec_b.shape != spec_a.shape:
        raise ValueError(f"spectra {spec_a.shape}, {spec_b.shape} do not belong to an image {shape}")
    n_rings = min(shape) // 2 + 1
    num, pa, pb = (np.zeros(n_rings) for _ in range(3))
    _ring_sums_kernel(spec_a, spec_b, ny, nx, n_rings, num, pa, pb)
    with np.errstate(invalid="ignore", divide="ignore"):
        frc = np.nan_to_num(num / np.sqrt(pa * pb))
    freq = np.arange(n_rings) / min(shape)
    return freq[1:], frc[1:]


def _frc_reference(spec_a: np.ndarray, spec_b: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Slow NumPy version of :func:`frc_curve` (for tests)."""
    rings = ring_index(shape)
    w = _half_weights(shape)
    n_rings = min(shape) // 2 + 1
    sel = rings < n_rings
    idx, ww, a, b = rings[sel], w[sel], spec_a[sel], spec_b[sel]
    num = np.bincount(idx, weights=ww * (a * np.conj(b)).real, minlength=n_rings)
    pa = np.bincount(idx, weights=ww * np.abs(a) ** 2, minlength=n_rings)
    pb = np.bincount(idx, weights=ww * np.abs(b) ** 2, minlength=n_rings)
    with np.errstate(invalid="ignore", divide="ignore"):
        frc = np.nan_to_num(num / np.sqrt(pa * pb))
    return np.arange(n_rings)[1:] / min(shape), frc[1:]


CROSSING_SMOOTHING_RINGS = 5


def frc_crossing_a(freq_cycles_per_px: np.ndarray, frc: np.ndarray, threshold: float, *, pixel_size_a: float) -> float:
    """Resolution (A) where the FRC first falls below ``threshold``; the Nyquist resolution
    ``2 * pixel_size_a`` when it never does.

    The curve is first smoothed by a running mean over ``CROSSING_SMOOTHING_RINGS`` rings, so one
    noisy low-frequency ring (few pixels) does not end it early; the crossing is interpolated
    linearly between rings.
    """
    frc = np.asarray(frc, dtype=np.float64)
    w = min(CROSSING_SMOOTHING_RINGS, frc.size)
    if w > 1:
        padded = np.pad(frc, (w // 2, w - 1 - w // 2), mode="edge")
        frc = np.convolve(padded, np.ones(w) / w, mode="valid")
    below = np.flatnonzero(frc < threshold)
    if below.size == 0:
        return 2.0 * pixel_size_a
    i = int(below[0])
    if i == 0:
        f = freq_cycles_per_px[0]
    else:
        f0, f1 = freq_cycles_per_px[i - 1], freq_cycles_per_px[i]
        v0, v1 = frc[i - 1], frc[i]
        f = f0 + (v0 - threshold) / (v0 - v1) * (f1 - f0) if v0 != v1 else f1
    return float(pixel_size_a / f)


def band_averaged_frc(freq_cycles_per_px: np.ndarray, frc: np.ndarray, *, n_bands: int = 4) -> np.ndarray:
    """Mean FRC in ``n_bands`` equal bands from 0 to Nyquist (0.5 cycles/px): ``(n_bands,)``."""
    edges = np.linspace(0.0, 0.5, n_bands + 1)
    return np.array(
        [frc[(freq_cycles_per_px > lo) & (freq_cycles_per_px <= hi)].mean() for lo, hi in zip(edges[:-1], edges[1:])]
    )
