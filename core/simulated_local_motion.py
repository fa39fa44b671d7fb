"""The simulator's local motion: a smooth deformation field ``d(x, y, t) = a(t) * (u(x, y), v(x, y))``.

``u, v`` are three plane waves per component (wavelength at least the field width) plus optional
Gaussian bumps, with their mean over the field removed; ``a(t)`` is :func:`local_time_profile`.
The model and its parameters are described in :mod:`framewatch.core.simulate`. Coordinates are
frame-0 movie pixels (x = column, y = row); displacements in pixels.
"""
from __future__ import annotations

import math

import numpy as np

from .simulation_spec import LOCAL_TAU_FRAMES, SimulatedMovie, SimulationSpec

__all__ = ["local_time_profile", "local_displacement_px", "true_local_displacement", "local_field_modes",
           "local_bumps", "field_mean"]

_FIELD_SAMPLES = 257  # per axis, for the field's mean and maximum


def local_time_profile(n_frames: int, *, tau_frames: float = LOCAL_TAU_FRAMES) -> np.ndarray:
    """a(t), (n_frames,) float64: 0 at frame 0, 1 at the last frame, fast early (time constant tau)."""
    if n_frames < 2:
        return np.zeros(n_frames)
    t = np.arange(n_frames, dtype=np.float64)
    return (1.0 - np.exp(-t / tau_frames)) / (1.0 - math.exp(-(n_frames - 1) / tau_frames))



def _local_unit_sum(modes: np.ndarray, nx: int, ny: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sum of plane waves ``sum_k A_k sin(2 pi (p_k x / nx + q_k y / ny) + phi_k)`` (modes (k, 4))."""
    out = np.zeros(np.broadcast(x, y).shape)
    for p, q, amp, phase in modes:
        out += amp * np.sin(2 * np.pi * (p * x / nx + q * y / ny) + phase)
    return out



def _bump_sum(bumps: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) of Gaussian bumps ``(n, 5)`` rows (x_px, y_px, sigma_px, ax_px, ay_px)."""
    shape = np.broadcast(x, y).shape
    u, v = np.zeros(shape), np.zeros(shape)
    for cx, cy, sigma, ax, ay in bumps:
        g = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2.0 * sigma**2))
        u += ax * g
        v += ay * g
    return u, v



def _local_field_at(modes: np.ndarray, bumps: np.ndarray, nx: int, ny: int, x, y) -> tuple[np.ndarray, np.ndarray]:
    """Waves plus bumps at (x, y), before the field mean is removed."""
    u = _local_unit_sum(modes[0], nx, ny, x, y)
    v = _local_unit_sum(modes[1], nx, ny, x, y)
    if bumps.shape[0]:
        bu, bv = _bump_sum(bumps, x, y)
        u, v = u + bu, v + bv
    return u, v



def local_bumps(spec: SimulationSpec, rng: np.random.Generator) -> np.ndarray:
    """(n, 5): bump centres uniform over the field, width ``spec.bump_sigma_px``, displacement
    ``local_bump_amplitude_px`` in a uniformly random direction."""
    n = spec.local_bumps if spec.local_bump_amplitude_px > 0 else 0
    if n == 0:
        return np.zeros((0, 5))
    angle = rng.uniform(0, 2 * np.pi, n)
    amp = spec.local_bump_amplitude_px
    return np.column_stack([rng.uniform(0, spec.nx - 1, n), rng.uniform(0, spec.ny - 1, n),
                            np.full(n, spec.bump_sigma_px), amp * np.cos(angle), amp * np.sin(angle)])



def _field_samples(spec: SimulationSpec) -> tuple[np.ndarray, np.ndarray]:
    """Sample positions ``(gy, gx)``, each ``(257, 257)``, spanning the field (pixel centres 0 .. n - 1)."""
    return np.meshgrid(np.linspace(0, spec.ny - 1, _FIELD_SAMPLES), np.linspace(0, spec.nx - 1, _FIELD_SAMPLES),
                       indexing="ij")


def field_mean(modes: np.ndarray, bumps: np.ndarray, spec: SimulationSpec) -> np.ndarray:
    """Mean (u, v) of waves plus bumps over the field (257 x 257 samples)."""
    gy, gx = _field_samples(spec)
    u, v = _local_field_at(modes, bumps, spec.nx, spec.ny, gx, gy)
    return np.array([u.mean(), v.mean()])



def local_field_modes(spec: SimulationSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random smooth (u, v) modes scaled to max |(u, v)| = local_amplitude_px over the field."""
    n_modes = 3
    modes = np.zeros((2, n_modes, 4))
    for c in range(2):
        for k in range(n_modes):
            # wave vector in cycles per field: |(p, q)| in [0.35, 1] (wavelength >= field size)
            norm = rng.uniform(0.35, 1.0)
            angle = rng.uniform(0, 2 * np.pi)
            modes[c, k] = (norm * np.cos(angle), norm * np.sin(angle), rng.uniform(0.5, 1.0),
                           rng.uniform(0, 2 * np.pi))
    offset = np.zeros(2)
    if spec.local_amplitude_px <= 0:
        modes[:, :, 2] = 0.0
        return modes, offset
    gy, gx = _field_samples(spec)
    u = _local_unit_sum(modes[0], spec.nx, spec.ny, gx, gy)
    v = _local_unit_sum(modes[1], spec.nx, spec.ny, gx, gy)
    mu, mv = u.mean(), v.mean()
    scale = spec.local_amplitude_px / np.sqrt((u - mu) ** 2 + (v - mv) ** 2).max()
    modes[:, :, 2] *= scale
    offset[:] = (mu * scale, mv * scale)
    return modes, offset



def local_displacement_px(sim, x, y, t) -> tuple[np.ndarray, np.ndarray]:
    """Local part of the motion at frame ``t`` of the specimen point at (x, y) in frame 0.

    ``x, y`` broadcastable arrays of frame-0 pixel coordinates; ``t`` a frame index (int or an
    array broadcastable with x, y). Returns (dx, dy) in pixels; the full position in frame t is
    ``(x, y) + shifts_px[t] + (dx, dy)``. Zero at t = 0; zero everywhere without local motion.
    """
    spec = sim.spec
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    a = local_time_profile(spec.n_frames, tau_frames=spec.local_tau_frames)[np.asarray(t)]
    if not spec.has_local_motion:
        zero = np.zeros(np.broadcast(x, y, a).shape)
        return zero, zero.copy()
    u, v = _local_field_at(sim.local_modes, sim.local_bumps, spec.nx, spec.ny, x, y)
    return a * (u - sim.local_offset_px[0]), a * (v - sim.local_offset_px[1])



def true_local_displacement(sim: SimulatedMovie):
    """The simulator's local motion in the middle frame's registered coordinates, as a function.

    Returns ``f(x, y, t) -> (dx, dy)``: ``x, y`` arrays of pixel coordinates of the registered
    (middle-frame) image, ``t`` a frame index; zero at the middle frame. This is what
    ``correct_movie(..., local_displacement_px=f)`` expects for an oracle sum (DESIGN.md: every
    correction registers to the middle frame; a static deformation relative to the undeformed
    specimen is not identifiable from the frames, so the truth is taken relative to that frame).
    """
    m = sim.spec.n_frames // 2
    s_m = sim.shifts_px[m]

    def displacement(x, y, t):
        x0, y0 = np.asarray(x) - s_m[0], np.asarray(y) - s_m[1]
        ax, ay = local_displacement_px(sim, x0, y0, int(round(float(t))))
        bx, by = local_displacement_px(sim, x0, y0, m)
        return ax - bx, ay - by

    return displacement
