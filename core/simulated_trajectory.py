"""The simulator's global trajectories: ``shifts_px[t]`` (x, y) of the whole specimen, frame 0 = (0, 0).

One function per kind of :attr:`SimulationSpec.trajectory` (the kinds are described in
:mod:`framewatch.core.simulate`); each returns ``(shifts (n_frames, 2) float64, info dict)`` and
draws from the trajectory's own generator only.
"""
from __future__ import annotations

import math

import numpy as np

from .simulation_spec import SimulationSpec

__all__ = ["global_trajectory", "JITTER_RMS_PX", "FAST_EARLY_TAU_FRAMES", "SUBPIXEL_AMPLITUDE_PX"]

JITTER_RMS_PX = 0.05
FAST_EARLY_TAU_FRAMES = 1.0
SUBPIXEL_AMPLITUDE_PX = (0.33, 0.27)  # any two positions lie < 0.86 px apart


def global_trajectory(spec: SimulationSpec, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """``(shifts (n_frames, 2) float64, info)`` of ``spec.trajectory`` (a kind or an explicit array)."""
    n = spec.n_frames
    kind = spec.trajectory
    if not isinstance(kind, str):
        return np.array(kind, dtype=np.float64).reshape(n, 2), {"kind": "explicit"}
    if kind == "none":
        return np.zeros((n, 2)), {"kind": "none"}
    t = np.arange(n, dtype=np.float64)
    return _KINDS[kind](spec, rng, t)


def _direction(angle: float) -> np.ndarray:
    """Unit vector (2,) at ``angle`` radians from the x axis."""
    return np.array([np.cos(angle), np.sin(angle)])


def _subpixel(spec: SimulationSpec, rng: np.random.Generator, t: np.ndarray) -> tuple[np.ndarray, dict]:
    """Smooth, extent < 0.9 px: a sine arc per axis."""
    n = spec.n_frames
    phases = rng.uniform(0, 2 * np.pi, 2)
    omega = 1.5 * np.pi / max(n - 1, 1)
    shifts = np.empty((n, 2))
    for axis in range(2):
        amp = SUBPIXEL_AMPLITUDE_PX[axis]
        shifts[:, axis] = amp * (np.sin(omega * t + phases[axis]) - np.sin(phases[axis]))
    info = {"kind": "subpixel", "amplitude_px": list(SUBPIXEL_AMPLITUDE_PX), "omega_rad_per_frame": omega,
            "phase_rad": phases.tolist()}
    return shifts, info


def _smooth(spec: SimulationSpec, rng: np.random.Generator, t: np.ndarray) -> tuple[np.ndarray, dict]:
    """A drift whose direction turns steadily by up to 90 degrees over the movie."""
    n = spec.n_frames
    theta0 = rng.uniform(0, 2 * np.pi)
    turn = rng.uniform(-0.5 * np.pi, 0.5 * np.pi)
    theta = theta0 + turn * t / max(n - 1, 1)
    speed = spec.drift_px_per_frame * rng.uniform(0.75, 1.25)
    steps = np.zeros((n, 2))
    steps[1:] = speed * np.column_stack([np.cos(theta[1:]), np.sin(theta[1:])])
    shifts = np.cumsum(steps, axis=0)
    info = {"kind": "smooth", "speed_px_per_frame": speed, "start_direction_deg": math.degrees(theta0) % 360.0,
            "turn_deg": math.degrees(turn)}
    return shifts, info


def _jerky(spec: SimulationSpec, rng: np.random.Generator, t: np.ndarray) -> tuple[np.ndarray, dict]:
    """A straight drift plus independent random kicks every frame (a random walk): no smooth model fits."""
    theta0 = rng.uniform(0, 2 * np.pi)
    kicks = rng.normal(0.0, spec.jerk_rms_px, (spec.n_frames, 2))
    kicks[0] = 0.0
    shifts = spec.drift_px_per_frame * t[:, None] * _direction(theta0) + np.cumsum(kicks, axis=0)
    info = {"kind": "jerky", "drift_px_per_frame": spec.drift_px_per_frame,
            "drift_direction_deg": math.degrees(theta0) % 360.0, "jerk_rms_px_per_axis": spec.jerk_rms_px}
    return shifts, info


def _fast_early(spec: SimulationSpec, rng: np.random.Generator, t: np.ndarray) -> tuple[np.ndarray, dict]:
    """Beam-induced: an exponential approach of ``jump_px`` (time constant 1 frame: most of it in the
    first two steps), then a slow drift at a quarter of ``drift_px_per_frame`` in another direction."""
    n = spec.n_frames
    jump_angle = rng.uniform(0, 2 * np.pi)
    drift_angle = jump_angle + rng.uniform(np.pi / 4, 7 * np.pi / 4)
    tau = FAST_EARLY_TAU_FRAMES
    early = (1.0 - np.exp(-t / tau)) / (1.0 - math.exp(-max(n - 1, 1) / tau))
    slow = 0.25 * spec.drift_px_per_frame
    shifts = (spec.jump_px * early[:, None] * _direction(jump_angle)
              + slow * t[:, None] * _direction(drift_angle))
    info = {"kind": "fast_early", "jump_px": spec.jump_px, "tau_frames": tau,
            "jump_direction_deg": math.degrees(jump_angle) % 360.0, "slow_drift_px_per_frame": slow,
            "drift_direction_deg": math.degrees(drift_angle) % 360.0}
    return shifts, info


def _drift_jump(spec: SimulationSpec, rng: np.random.Generator, t: np.ndarray) -> tuple[np.ndarray, dict]:
    """A jump of ``jump_px`` over frames 0-2, a linear drift at 60-120 degrees to it, 0.05 px jitter."""
    n = spec.n_frames
    jump_angle = rng.uniform(0, 2 * np.pi)
    drift_angle = jump_angle + rng.choice([-1.0, 1.0]) * rng.uniform(np.pi / 3, 2 * np.pi / 3)
    jump_profile = np.minimum(np.array([0.0, 0.75] + [1.0] * max(n - 2, 0))[:n], 1.0)
    jitter = rng.normal(0.0, JITTER_RMS_PX, (n, 2))
    jitter[0] = 0.0
    shifts = (
        spec.jump_px * jump_profile[:, None] * _direction(jump_angle)
        + spec.drift_px_per_frame * t[:, None] * _direction(drift_angle)
        + jitter
    )
    info = {"kind": "drift_jump", "jump_px": spec.jump_px, "jump_profile": jump_profile.tolist(),
            "jump_direction_deg": math.degrees(jump_angle) % 360.0,
            "drift_px_per_frame": spec.drift_px_per_frame,
            "drift_direction_deg": math.degrees(drift_angle) % 360.0, "jitter_rms_px": JITTER_RMS_PX}
    return shifts, info


_KINDS = {"subpixel": _subpixel, "smooth": _smooth, "jerky": _jerky, "fast_early": _fast_early,
          "drift_jump": _drift_jump}
