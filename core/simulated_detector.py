"""The simulator's detector: sensitivity and gain references, hot pixels and a dead column.

``raw ~ Poisson(lambda * sensitivity)``; the true multiplicative gain is ``1 / sensitivity`` and the
user's gain carries an extra fixed-pattern error (see :mod:`framewatch.core.simulate`).
"""
from __future__ import annotations

import numpy as np

from .simulation_spec import SimulationSpec

__all__ = ["detector_gains", "add_defects"]


def detector_gains(spec: SimulationSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sensitivity, true gain, user gain: (ny, nx) float32 each."""
    shape = (spec.ny, spec.nx)
    sens = np.ones(shape, dtype=np.float32)
    if spec.gain_rms:
        sens += np.float32(spec.gain_rms) * rng.standard_normal(shape, dtype=np.float32)
    if spec.gain_columns_rms:
        sens += np.float32(spec.gain_columns_rms) * rng.standard_normal((1, spec.nx), dtype=np.float32)
    np.maximum(sens, np.float32(0.1), out=sens)
    sens /= np.float32(sens.mean(dtype=np.float64))
    true_gain = (np.float32(1.0) / sens).astype(np.float32)
    if spec.gain_reference_error_rms:
        err = np.float32(1.0) + np.float32(spec.gain_reference_error_rms) * rng.standard_normal(shape, dtype=np.float32)
        gain = true_gain * np.maximum(err, np.float32(0.05))
    else:
        gain = true_gain.copy()
    return sens, true_gain, gain.astype(np.float32, copy=False)


def add_defects(frames: np.ndarray, spec: SimulationSpec, rng: np.random.Generator, max_count: float) -> tuple[np.ndarray, int]:
    """Hot pixels and the dead column, in place in ``frames`` ``(n_frames, ny, nx)``.

    ``spec.n_hot_pixels`` distinct pixels (never on the dead column) get an extra
    ``Poisson(hot_counts_per_frame)`` in every frame, clipped to ``max_count``; the dead column reads
    0 in every frame. Returns ``(hot_pixels_xy (n, 2) int64 (x, y), number of counts clipped)``.
    """
    hot_xy = np.empty((0, 2), dtype=np.int64)
    n_clipped = 0
    if spec.n_hot_pixels:
        n_cols = spec.nx - (1 if spec.dead_column is not None else 0)
        flat = rng.choice(spec.ny * n_cols, size=spec.n_hot_pixels, replace=False)
        hy, hx = np.divmod(flat, n_cols)
        if spec.dead_column is not None:
            hx = hx + (hx >= spec.dead_column)
        hot_xy = np.column_stack([hx, hy]).astype(np.int64)
        extra = rng.poisson(spec.hot_counts_per_frame, (spec.n_frames, spec.n_hot_pixels))
        values = frames[:, hy, hx].astype(np.float64) + extra
        n_clipped += int(np.count_nonzero(values > max_count))
        frames[:, hy, hx] = np.minimum(values, max_count).astype(frames.dtype)
    if spec.dead_column is not None:
        frames[:, :, spec.dead_column] = 0
    return hot_xy, n_clipped
