"""Cubic B-spline prefilter of a frame: the coefficients that interpolate it exactly (mirror boundary).

The inverse of the sampled kernel ``(1, 4, 1) / 6`` along each axis, as a causal and an anti-causal
first-order recursive filter with the pole ``z = sqrt(3) - 2`` and gain ``(1 - z)(1 - 1/z) = 6``
(Unser, Aldroubi & Eden 1991); whole-sample mirror boundary. Images are float32 ``(ny, nx)``, C
order. The numba kernel runs in parallel over strips of rows. The resampling as a whole is described
in :mod:`framewatch.core.resample`; the warp that evaluates the coefficients is
:mod:`framewatch.core.image_warp`.
"""
from __future__ import annotations

import math

import numba
import numpy as np

_POLE = math.sqrt(3.0) - 2.0  # pole of the cubic B-spline prefilter
_GAIN = (1.0 - _POLE) * (1.0 - 1.0 / _POLE)  # = 6
_HORIZON = int(math.ceil(math.log(1e-10) / math.log(abs(_POLE))))  # |z|**horizon < 1e-10
_STRIP_ROWS = 64  # output rows per strip of the prefilter (strip + margins stay in L2)

__all__ = ["bspline_prefilter", "prefilter_factors"]


def _causal_init_weights(n: int) -> np.ndarray:
    """Weights ``w`` with ``c+[0] = sum_k w[k] s[k]`` for a mirror-extended signal of length ``n``.

    For ``n`` longer than the filter horizon the geometric series is truncated (error < 1e-10);
    otherwise the exact sum over the periodic (period ``2n - 2``) mirror extension is used.
    """
    z = _POLE
    if n == 1:
        return np.ones(1)  # unused: an axis of length 1 is not filtered
    if n > _HORIZON:
        return z ** np.arange(_HORIZON, dtype=np.float64)
    period = 2 * n - 2
    k = np.arange(n, dtype=np.float64)
    w = (z**k + z ** (period - k)) / (1.0 - z**period)
    w[0] = 1.0 / (1.0 - z**period)
    w[n - 1] = z ** (n - 1) / (1.0 - z**period)
    return w



def prefilter_factors(spectrum_shape: tuple[int, int], *, image_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The prefilter as a separable factor on a half spectrum: ``(fy, fx)``, float32 ``(sy,)`` and
    ``(sx,)``, ``fy[ky] * fx[kx] = 1 / (B(ky) B(kx))`` with ``B(f) = 2/3 + cos(2 pi f) / 3`` (the
    sampled kernel ``(1, 4, 1) / 6``), ``f`` in cycles per pixel of ``image_shape`` ``(ny, nx)``.

    ``spectrum_shape`` ``(sy, sx)``: the half spectrum of ``image_shape`` itself
    ``(ny, nx//2+1)``, or of a Fourier-cropped copy (``(oy, ox//2+1)``, its rows the frequencies
    ``k / ny`` of ``fftfreq(oy) * oy``). Interpolating the raw image with the B-spline taps and
    multiplying its spectrum by these factors equals prefiltering first, up to the boundary (periodic
    here, mirrored in :func:`bspline_prefilter`: a band of about ``_HORIZON`` pixels) and, for a
    warp, the field's change across the kernel's few pixels. The factors are 1 at zero frequency and
    3 at Nyquist.
    """
    sy, sx = (int(v) for v in spectrum_shape)
    ny, nx = (int(v) for v in image_shape)
    oy, ox = sy, 2 * (sx - 1)
    if oy > ny or ox > nx:
        raise ValueError(f"a spectrum {spectrum_shape} is not that of {image_shape} or of a cropped copy")
    fy = np.fft.fftfreq(oy) * (oy / ny)
    fx = np.fft.rfftfreq(ox) * (ox / nx)
    return tuple((1.0 / (2.0 / 3.0 + np.cos(2.0 * np.pi * f) / 3.0)).astype(np.float32) for f in (fy, fx))


def bspline_prefilter(image: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """Cubic B-spline coefficients of a float32 image ``(ny, nx)`` (mirror boundary).

    Returns a new float32 ``(ny, nx)`` array ``c`` with
    ``sum_{k,l} c[l, k] b3(x - k) b3(y - l) == image[y, x]`` at every pixel (to float32
    precision). Separable causal + anti-causal recursions with the pole ``sqrt(3) - 2``, first
    along y (vectorised across x), then along x. To stream the image through memory once, the
    frame is processed in strips of rows: each strip runs the vertical recursions over a margin of
    ``_HORIZON`` rows either side (the filter's influence decays as ``|z|**k``, below 1e-10 beyond
    the margin), then filters its rows horizontally. An axis of length 1 is left unfiltered.

    ``out`` (keyword-only, optional): a float32 ``(ny, nx)`` C-contiguous array to write into,
    e.g. reused from frame to frame; it must not overlap ``image``.
    """
    image = _check_image(image, "image")
    ny, nx = image.shape
    out = _check_out(out, image.shape, image)
    nchunks = max(1, min(numba.get_num_threads(), -(-ny // _STRIP_ROWS)))
    _prefilter_kernel(image, out, _causal_init_weights(ny), _causal_init_weights(nx), _STRIP_ROWS, _HORIZON, nchunks)
    return out



def _check_out(out: np.ndarray | None, shape: tuple[int, int], *inputs: np.ndarray) -> np.ndarray:
    """Allocate, or validate a caller's output array (float32, C-contiguous, not aliasing inputs)."""
    if out is None:
        return np.empty(shape, dtype=np.float32)
    if out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"out must be a writeable C-contiguous float32 array of shape {shape}")
    if any(np.may_share_memory(out, a) for a in inputs):
        raise ValueError("out must not overlap the input arrays")
    return out



def _check_image(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name} must be a 2-D (ny, nx) array, got shape {a.shape}")
    if a.dtype != np.float32:
        raise TypeError(f"{name} must be float32, got {a.dtype}")
    return np.ascontiguousarray(a)


# ---------------------------------------------------------------------------------------------
# numba kernels


@numba.njit(cache=True, parallel=True, fastmath=True, nogil=True)
def _prefilter_kernel(src, dst, init_wy, init_wx, strip, margin, nchunks):  # pragma: no cover - compiled
    """Separable cubic B-spline prefilter ``src -> dst``; ``nchunks`` parallel ranges of strips."""
    ny, nx = src.shape
    z = np.float32(_POLE)
    lam = np.float32(_GAIN)
    anti = np.float32(_POLE / (_POLE * _POLE - 1.0))
    nstrips = (ny + strip - 1) // strip
    per = (nstrips + nchunks - 1) // nchunks
    bufs = np.empty((nchunks, min(ny, strip + 2 * margin), nx), dtype=np.float32)
    for c in numba.prange(nchunks):
        buf = bufs[c]
        scratch = np.zeros((6, nx), dtype=np.float32)  # stand-ins for missing rows of a group of 4
        for s in range(c * per, min(nstrips, (c + 1) * per)):
            y0 = s * strip
            y1 = min(ny, y0 + strip)
            ys = max(0, y0 - margin)
            ye = min(ny, y1 + margin)
            nr = ye - ys
            # vertical pass over rows ys..ye-1 into buf[0..nr-1]
            if ny == 1:
                for x in range(nx):
                    buf[0, x] = src[0, x]
            else:
                if ys == 0:  # exact mirror initialisation at the top edge
                    for x in range(nx):
                        buf[0, x] = np.float32(0.0)
                    for k in range(init_wy.shape[0]):
                        wk = np.float32(lam * init_wy[k])
                        for x in range(nx):
                            buf[0, x] += wk * src[k, x]
                else:  # zero state `margin` rows before the strip
                    for x in range(nx):
                        buf[0, x] = lam * src[ys, x]
                for r in range(1, nr):
                    for x in range(nx):
                        buf[r, x] = lam * src[ys + r, x] + z * buf[r - 1, x]
                last = nr - 1
                if ye == ny:  # exact mirror initialisation at the bottom edge
                    for x in range(nx):
                        buf[last, x] = anti * (buf[last, x] + z * buf[last - 1, x])
                else:  # zero anti-causal state `margin` rows after the strip
                    for x in range(nx):
                        buf[last, x] = -z * buf[last, x]
                for r in range(last - 1, y0 - ys - 1, -1):
                    for x in range(nx):
                        buf[r, x] = z * (buf[r + 1, x] - buf[r, x])
            # horizontal pass of the strip's rows, four independent recursions at a time
            for y in range(y0, y1, 4):
                b = y - ys
                n = min(4, y1 - y)
                s1 = buf[b + 1] if n > 1 else scratch[0]
                s2 = buf[b + 2] if n > 2 else scratch[1]
                s3 = buf[b + 3] if n > 3 else scratch[2]
                d1 = dst[y + 1] if n > 1 else scratch[3]
                d2 = dst[y + 2] if n > 2 else scratch[4]
                d3 = dst[y + 3] if n > 3 else scratch[5]
                _prefilter_rows4(buf[b], s1, s2, s3, dst[y], d1, d2, d3, init_wx)



@numba.njit(cache=True, fastmath=True, nogil=True)
def _prefilter_rows4(r0, r1, r2, r3, d0, d1, d2, d3, init_w):  # pragma: no cover - compiled
    """Horizontal prefilter of four rows ``r* -> d*`` (interleaved, to hide the recursion latency)."""
    nx = r0.shape[0]
    if nx == 1:
        d0[0] = r0[0]
        d1[0] = r1[0]
        d2[0] = r2[0]
        d3[0] = r3[0]
        return
    z = _POLE
    lam = _GAIN
    anti = _POLE / (_POLE * _POLE - 1.0)
    a0 = 0.0
    a1 = 0.0
    a2 = 0.0
    a3 = 0.0
    for k in range(init_w.shape[0]):
        w = init_w[k]
        a0 += w * r0[k]
        a1 += w * r1[k]
        a2 += w * r2[k]
        a3 += w * r3[k]
    a0 *= lam
    a1 *= lam
    a2 *= lam
    a3 *= lam
    d0[0] = a0
    d1[0] = a1
    d2[0] = a2
    d3[0] = a3
    for k in range(1, nx):
        a0 = lam * r0[k] + z * a0
        a1 = lam * r1[k] + z * a1
        a2 = lam * r2[k] + z * a2
        a3 = lam * r3[k] + z * a3
        d0[k] = a0
        d1[k] = a1
        d2[k] = a2
        d3[k] = a3
    a0 = anti * (d0[nx - 1] + z * d0[nx - 2])
    a1 = anti * (d1[nx - 1] + z * d1[nx - 2])
    a2 = anti * (d2[nx - 1] + z * d2[nx - 2])
    a3 = anti * (d3[nx - 1] + z * d3[nx - 2])
    d0[nx - 1] = a0
    d1[nx - 1] = a1
    d2[nx - 1] = a2
    d3[nx - 1] = a3
    for k in range(nx - 2, -1, -1):
        a0 = z * (a0 - d0[k])
        a1 = z * (a1 - d1[k])
        a2 = z * (a2 - d2[k])
        a3 = z * (a3 - d3[k])
        d0[k] = a0
        d1[k] = a1
        d2[k] = a2
        d3[k] = a3
