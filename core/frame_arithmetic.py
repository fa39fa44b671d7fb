"""Per-frame arithmetic of the correction: convert to float32 with the gain applied, and sum frames.

Numba kernels (private) behind typed wrappers that validate and allocate; tested against NumPy in
``tests/test_kernels.py``.
"""
from __future__ import annotations

import numba
import numpy as np

__all__ = ["add_frame", "apply_gain", "gain_corrected_at", "gain_where_good", "sum_frames"]


@numba.njit(cache=True, parallel=True, fastmath=True, nogil=True)
def _gain_kernel(raw, gain, out):  # pragma: no cover - compiled
    ny, nx = raw.shape
    for y in numba.prange(ny):
        for x in range(nx):
            out[y, x] = np.float32(raw[y, x]) * gain[y, x]


@numba.njit(cache=True, parallel=True, fastmath=True, nogil=True)
def _convert_kernel(raw, out):  # pragma: no cover - compiled
    ny, nx = raw.shape
    for y in numba.prange(ny):
        for x in range(nx):
            out[y, x] = np.float32(raw[y, x])


@numba.njit(cache=True, parallel=True, fastmath=True, nogil=True)
def _add_kernel(raw, total):  # pragma: no cover - compiled
    ny, nx = raw.shape
    for y in numba.prange(ny):
        for x in range(nx):
            total[y, x] += np.float32(raw[y, x])


@numba.njit(cache=True, parallel=True, nogil=True)
def _gain_where_good_kernel(total, gain, bad):  # pragma: no cover - compiled
    ny, nx = total.shape
    for y in numba.prange(ny):
        for x in range(nx):
            total[y, x] = np.float32(0.0) if bad[y, x] else total[y, x] * gain[y, x]


def _kernel_input(frame: np.ndarray) -> np.ndarray:
    """C-contiguous frame of a dtype the kernels take (float16, e.g. MRC mode 12, becomes float32)."""
    frame = np.asarray(frame)
    if frame.dtype == np.float16:
        return frame.astype(np.float32)
    return np.ascontiguousarray(frame)


def apply_gain(raw: np.ndarray, gain: np.ndarray | None, *, out: np.ndarray | None = None) -> np.ndarray:
    """float32 ``(ny, nx)`` = ``raw * gain`` (or ``raw`` as float32 without a gain), a new array or
    ``out`` (float32 C-contiguous ``(ny, nx)``, reused from frame to frame)."""
    raw = _kernel_input(raw)
    if out is None:
        out = np.empty(raw.shape, dtype=np.float32)
    elif out.shape != raw.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous float32 array of shape {raw.shape}")
    if gain is None:
        _convert_kernel(raw, out)
        return out
    if raw.shape != gain.shape:
        raise ValueError(f"raw {raw.shape} and gain {gain.shape} differ")
    _gain_kernel(raw, np.ascontiguousarray(gain, dtype=np.float32), out)
    return out


def gain_corrected_at(raw: np.ndarray, gain: np.ndarray | None, flat_px: np.ndarray) -> np.ndarray:
    """float32 ``(m,)``: the values :func:`apply_gain` gives at row-major flat pixels ``flat_px`` ``(m,)``
    of ``raw`` ``(ny, nx)`` (same float32 conversion and product), reading only those pixels."""
    raw = np.asarray(raw)
    flat = np.asarray(flat_px, dtype=np.int64)
    if raw.ndim != 2:
        raise ValueError(f"raw must be 2-D, got shape {raw.shape}")
    index = np.unravel_index(flat, raw.shape)  # raises for an index outside the frame
    values = raw[index].astype(np.float32)
    if gain is None:
        return values
    if np.shape(gain) != raw.shape:
        raise ValueError(f"raw {raw.shape} and gain {np.shape(gain)} differ")
    return values * np.asarray(gain)[index].astype(np.float32, copy=False)


def sum_frames(frames: list) -> np.ndarray:
    """float32 ``(ny, nx)`` sum of ``(ny, nx)`` frames of any real dtype."""
    total = np.zeros(np.shape(frames[0]), dtype=np.float32)
    for frame in frames:
        add_frame(total, frame)
    return total


def add_frame(total: np.ndarray, frame: np.ndarray) -> None:
    """``total += frame`` in place: ``total`` float32 ``(ny, nx)``, ``frame`` any real dtype, same shape."""
    if total.dtype != np.float32 or np.shape(frame) != total.shape:
        raise ValueError(f"total {total.dtype} {total.shape} and frame {np.shape(frame)} do not match")
    _add_kernel(_kernel_input(frame), total)


def gain_where_good(total: np.ndarray, gain: np.ndarray, bad: np.ndarray) -> None:
    """``total *= gain`` in place where ``bad`` is False, 0 where it is True (a bad gain pixel's
    value never reaches the sum): ``total`` and ``gain`` float32 ``(ny, nx)``, ``bad`` bool
    ``(ny, nx)``. One pass, no temporary (``total *= np.where(bad, 0, gain)`` made two, 192 MB at
    4096², fresh pages on every movie)."""
    if total.dtype != np.float32 or not total.flags.c_contiguous or np.shape(gain) != total.shape \
            or np.shape(bad) != total.shape:
        raise ValueError(f"total {total.dtype} {total.shape}, gain {np.shape(gain)} and bad {np.shape(bad)} "
                         "must be float32 arrays of one shape (total C-contiguous)")
    _gain_where_good_kernel(total, np.ascontiguousarray(gain, dtype=np.float32),
                            np.ascontiguousarray(bad, dtype=np.bool_))
