"""Fourier ring correlation between two images given as half spectra, and its crossings."""
from __future__ import annotations

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


def frc_curve(spec_a: np.ndarray, spec_b: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """FRC of two images of ``shape`` from their half spectra.

    Returns ``(frequency_cycles_per_px, frc)``, each ``(n_rings,)`` for rings 1 .. Nyquist.
    """
    rings = ring_index(shape)
    w = _half_weights(shape)
    n_rings = min(shape) // 2 + 1
    sel = rings < n_rings
    idx = rings[sel]
    ww = w[sel]
    a = spec_a[sel]
    b = spec_b[sel]
    num = np.bincount(idx, weights=ww * (a * np.conj(b)).real, minlength=n_rings)
    pa = np.bincount(idx, weights=ww * np.abs(a) ** 2, minlength=n_rings)
    pb = np.bincount(idx, weights=ww * np.abs(b) ** 2, minlength=n_rings)
    with np.errstate(invalid="ignore", divide="ignore"):
        frc = num / np.sqrt(pa * pb)
    frc = np.nan_to_num(frc)
    freq = np.arange(n_rings) / min(shape)
    return freq[1:], frc[1:]


def frc_crossing_a(freq_cycles_per_px: np.ndarray, frc: np.ndarray, threshold: float, *, pixel_size_a: float) -> float:
    """Resolution (A) where the FRC first falls below ``threshold`` (linear interpolation between
    rings); the Nyquist resolution ``2 * pixel_size_a`` when it never does."""
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
