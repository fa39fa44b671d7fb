"""Fourier-space helpers: real-to-complex transforms, Fourier cropping and sub-pixel phase shifts.

Spectra are the half spectra of ``scipy.fft.rfft2``: an image ``(ny, nx)`` has a spectrum
``(ny, nx // 2 + 1)``; row ``ky`` holds frequency ``ky`` for ``ky < ny / 2`` and ``ky - ny``
otherwise. Shifting an image by ``(dx, dy)`` pixels (content moves to larger x, y) multiplies its
spectrum by ``exp(-2 pi i (kx dx / nx + ky dy / ny))``.
"""
from __future__ import annotations

import os

import numba
import numpy as np
import scipy.fft


def resolve_threads(threads: int) -> int:
    """``threads`` 0 means every core this process may use."""
    if threads > 0:
        return threads
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def rfft2(image: np.ndarray, *, threads: int) -> np.ndarray:
    """Forward real-to-complex transform of a float32 ``(ny, nx)`` image -> complex64 ``(ny, nx//2+1)``."""
    return scipy.fft.rfft2(image, workers=threads, overwrite_x=True)


def irfft2(spectrum: np.ndarray, shape: tuple[int, int], *, threads: int) -> np.ndarray:
    """Inverse of :func:`rfft2`: complex64 half spectrum -> float32 image of ``shape``."""
    return scipy.fft.irfft2(spectrum, s=shape, workers=threads, overwrite_x=True).astype(np.float32, copy=False)


def irfft2_consuming(spectrum: np.ndarray, shape: tuple[int, int], *, threads: int) -> np.ndarray:
    """:func:`irfft2` of a spectrum the caller gives up (its values are destroyed): the column
    transforms run in place, then the row transforms. The same values as :func:`irfft2` (the same
    pocketfft passes in the same order; to float32 rounding) without its copy of the spectrum: at
    4096² with two threads 41-47 ms against 47-56 ms per image. Other dtypes, layouts, row counts or
    a read-only spectrum: :func:`irfft2`."""
    if (spectrum.dtype != np.complex64 or not spectrum.flags.c_contiguous or not spectrum.flags.writeable
            or spectrum.ndim != 2 or spectrum.shape != (shape[0], shape[1] // 2 + 1)):
        return irfft2(spectrum, shape, threads=threads)
    columns = scipy.fft.ifft(spectrum, axis=0, workers=threads, overwrite_x=True)
    return scipy.fft.irfft(columns, n=shape[1], axis=1, workers=threads, overwrite_x=True).astype(np.float32, copy=False)


def crop_shape(shape: tuple[int, int], *, bin_factor: float) -> tuple[int, int]:
    """Even image shape after Fourier cropping ``shape`` ``(ny, nx)`` by ``bin_factor`` (>= 1).

    Each side is rounded to an even size and never exceeds the input's largest even size, so an
    odd side (251 -> 250 at ``bin_factor`` 1) is cropped by one frequency row, never padded.
    Sides must be at least 2 pixels.
    """
    ny, nx = shape
    if min(ny, nx) < 2:
        raise ValueError(f"cannot Fourier-crop {tuple(shape)}: both sides must be at least 2 pixels")

    def side(n: int) -> int:
        return min(n - n % 2, max(2, 2 * int(round(n / bin_factor / 2))))

    return (side(int(ny)), side(int(nx)))


def fourier_crop(spectrum: np.ndarray, full_shape: tuple[int, int], out_shape: tuple[int, int]) -> np.ndarray:
    """Crop a half spectrum of an image ``full_shape`` to that of a smaller image ``out_shape``.

    Keeps the lowest frequencies (a box low-pass), scales by the pixel-count ratio so the mean is
    preserved, and zeroes the new Nyquist row and column. Returns complex64 ``(oy, ox//2+1)``.
    """
    ny, nx = full_shape
    oy, ox = out_shape
    if oy > ny or ox > nx or oy % 2 or ox % 2:
        raise ValueError(f"cannot Fourier-crop {full_shape} to {out_shape}")
    out = np.empty((oy, ox // 2 + 1), dtype=np.complex64)
    h = oy // 2
    out[:h] = spectrum[:h, : ox // 2 + 1]
    out[h:] = spectrum[ny - h :, : ox // 2 + 1]
    out[h, :] = 0
    out[:, ox // 2] = 0
    out *= np.float32(oy * ox / (ny * nx))
    return out


def shift_phase_vectors(shape: tuple[int, int], dx: float, dy: float) -> tuple[np.ndarray, np.ndarray]:
    """Separable phase factors that shift an image ``(ny, nx)`` by ``(dx, dy)`` pixels.

    Returns ``(py, px)``: complex64 ``(ny,)`` and ``(nx//2+1,)``; the shifted spectrum is
    ``spectrum * py[:, None] * px[None, :]``.
    """
    ny, nx = shape
    ky = np.fft.fftfreq(ny)  # cycles per pixel, wrapped
    kx = np.fft.rfftfreq(nx)
    py = np.exp(-2j * np.pi * ky * dy).astype(np.complex64)
    px = np.exp(-2j * np.pi * kx * dx).astype(np.complex64)
    return py, px


def shift_spectrum(spectrum: np.ndarray, shape: tuple[int, int], dx: float, dy: float) -> np.ndarray:
    """Return ``spectrum`` of an image ``shape`` shifted by ``(dx, dy)`` pixels (new array)."""
    py, px = shift_phase_vectors(shape, dx, dy)
    out = np.empty_like(spectrum)
    _apply_phase_kernel(spectrum, py, px, out)
    return out


@numba.njit(cache=True, fastmath=True, nogil=True)
def _apply_phase_kernel(spec, py, px, out):  # pragma: no cover - compiled
    ny, nkx = spec.shape
    for y in range(ny):
        fy = py[y]
        for x in range(nkx):
            out[y, x] = spec[y, x] * (fy * px[x])


def radial_frequency(shape: tuple[int, int]) -> np.ndarray:
    """``(ny, nx//2+1)`` float32 radial spatial frequency in cycles per pixel of an image ``shape``."""
    ny, nx = shape
    ky = np.fft.fftfreq(ny).astype(np.float32)
    kx = np.fft.rfftfreq(nx).astype(np.float32)
    return np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
