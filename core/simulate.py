"""Synthetic detector movies with exact ground truth.

The physical model
------------------
*Specimen.* A projected density ``B(x, y)`` that is a sum of many isotropic Gaussian blobs
("particles") at random positions, sigmas in 0.6-4 px drawn with ``1 / sigma**2`` uniform (many
small blobs, fewer large ones), each with about the same integrated mass and a random sign (peak
amplitude ~ ``+-1 / sigma**2``). The small blobs carry structure up to Nyquist and a spectrum that
is flat down to the lowest frequencies (signal for alignment); the larger ones add
low-resolution power; the signs (phase contrast) and the numbers keep the field near-Gaussian. A
few large, weak blobs (sigma 5-12 % of the field width) add smooth ice-thickness-like features.
Each blob is ``a * exp(-r**2 / (2 sigma**2))`` truncated to the square
``|x - cx|, |y - cy| <= 4 sigma`` (the truncation is part of the specimen, not an approximation of
it). Blob centres fill the field plus a margin wide enough that motion never uncovers an empty
border. At the default 60 blobs per 1000 px^2 and 15 % rms contrast, the variance of the ideal
image splits about 36 / 44 / 16 / 3 % over the quarter bands of Nyquist.

*Spectral shape* (``blob_mass_exponent`` = e, default 0). A blob's integrated mass scales as
``sigma**e`` (peak ``~ sigma**(e - 2)``), so e > 0 moves power from the small blobs (high
frequencies) to the large ones: a steeper, power-law-like fall-off. Quarter-band variance split of
the ideal image (1024^2, 10 % contrast, one seed): e = 0: 45 / 38 / 14 / 2.9 %; e = 1: 55 / 33 /
10 / 1.8 %; e = 2: 77 / 19 / 3.9 / 0.6 %; e = 3: 93 / 6 / 0.6 / 0.1 %. Real ice-embedded
specimens at tomography dose sit around e = 1-2.

*Exactness.* A detector pixel ``(i, j)`` covers ``[i - 1/2, i + 1/2) x [j - 1/2, j + 1/2)`` (pixel
centres at integer coordinates, x = column, y = row). Every rendered value is the exact integral of
the continuous density over the pixel's area, computed in closed form with ``erf`` (the Gaussian
and its truncation are separable). Nothing is ever interpolated or resampled: the image of frame
``t`` is the same analytic specimen, moved, and integrated over the pixels again. An integer shift
therefore gives exactly a shifted image, and a sub-pixel shift gives exactly what a detector would
record of the moved specimen.

*Motion.* The position of the specimen point that is at ``(x, y)`` in frame 0 is, in frame ``t``,
``(x, y) + s(t) + d(x, y, t)``: ``s(t) = shifts_px[t]`` is the global trajectory (DESIGN.md sign
convention, ``s(0) = (0, 0)``) and ``d(x, y, t) = a(t) * (u(x, y), v(x, y))`` a smooth local
deformation, ``a(t) = (1 - exp(-t / tau)) / (1 - exp(-(n - 1) / tau))`` (``tau = 2`` frames: fast
early, 0 at frame 0, 1 at the last frame). ``u, v`` are sums of three plane waves of wavelength at
least the field width, with their mean over the field removed (so ``s(t)`` is the mean motion) and
scaled so that ``max |(u, v)|`` over the field is ``local_amplitude_px``; plus ``local_bumps``
localised Gaussian bumps, each ``A_b exp(-|(x, y) - c_b|^2 / (2 sigma_b^2))`` times a random unit
direction, ``A_b = local_bump_amplitude_px``, ``sigma_b = local_bump_sigma_px`` (default 1/16 of the
shorter side), centres uniform over the field. The mean of waves plus bumps over the field is
removed (so ``s(t)`` stays the mean motion). ``tau`` is ``local_tau_frames``. A blob is small, so it
moves rigidly with the local field evaluated at its own frame-0 centre (the usual "particle moves
with its local field" model): each blob stays an exact Gaussian.

*Global trajectories* (``trajectory``). ``"drift_jump"`` (default): a jump of ``jump_px`` over frames
0-2, a linear drift of ``drift_px_per_frame`` at 60-120 degrees to it, 0.05 px jitter.
``"subpixel"``: smooth, extent < 0.9 px. ``"smooth"``: a drift of 0.75-1.25 x
``drift_px_per_frame`` whose direction turns steadily by up to 90 degrees. ``"jerky"``: a straight
drift of ``drift_px_per_frame`` plus an independent kick ``N(0, jerk_rms_px)`` per axis every frame
(a random walk: no smooth model fits it). ``"fast_early"`` (beam-induced): ``jump_px * (1 -
exp(-t)) / (1 - exp(-(n - 1)))`` (time constant 1 frame: 63 % of it in the first step) in a random
direction plus a slow drift of ``drift_px_per_frame / 4`` in another. ``"none"``, or an explicit
``(n_frames, 2)`` array.

*Transmission and dose.* Relative transmission ``T = g(1 + c (B - beta))``, where ``g`` is the
identity above 0.5 and below it bends smoothly (same value and slope) towards a floor of 0.3 that
it never reaches, so ``T > 0.3`` everywhere while almost every pixel is linear in ``B``. ``c`` is
solved so that the rms contrast ``std(T) / mean(T)`` is ``contrast_rms`` and ``beta`` so that
``mean(T) = 1``, both over the field at the middle frame's configuration (the image every
correction is registered to); they are constants of the specimen, shared by every frame. Expected
counts per pixel and frame: ``lambda(x) = dose_per_frame_e_per_a2 * pixel_size_a**2 * T(x)``, so the
mean count per pixel and frame is the dose times the pixel area.

*Detector.* ``raw ~ Poisson(lambda_t(x) * sensitivity(x))`` with ``sensitivity = 1 + pixel noise
(gain_rms) + column banding (gain_columns_rms)``, kept >= 0.1 and normalised to mean 1. The true multiplicative gain
reference is ``1 / sensitivity`` (``raw * true_gain`` has expectation ``lambda``); the gain a user
"has" is the true gain times ``1 + N(0, gain_reference_error_rms)``, a residual fixed pattern. Hot
pixels get an extra ``Poisson(hot_counts_per_frame)`` in every frame; a dead column reads 0 in every
frame (its gain stays finite: the corrector must find it from the data). Poisson counts come from a
counter-based generator keyed by (seed, frame, pixel), so frames are reproducible whatever the
number of threads.

*Ideal image.* The noiseless, gain-free expected counts per frame at the middle frame's
configuration, ``m = n_frames // 2``: ``render_expected(sim, m)``.

Scoring (what every accuracy test uses)
---------------------------------------
``quarter_band_frc(image, sim.ideal)``: FRC of an output against the noiseless image in the middle
frame's configuration, averaged over the four quarter bands of Nyquist (low to high).
``oracle_correction(sim, **options)``: ``correct_movie`` of the same noisy frames with the true
global motion and, with local motion, the true local field (``true_local_displacement(sim)``,
registered to the middle frame): the oracle sum; accuracy is ``quarter_band_frc`` of an output over
that of the oracle, per band. All new options default to the behaviour before they existed: the same
seed gives the same movie.

Randomness is split by component (specimen, trajectory, local field, gain, hot pixels, counts, bumps):
the same seed with, say, another dose or gain option gives the same specimen and trajectory. (The
specimen does depend on the largest motion, which sets the margin of blob centres.)
"""
from __future__ import annotations

import dataclasses
import math
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .simulated_counts import _poisson_frame, frame_key
from .simulated_detector import add_defects, detector_gains
from .simulated_local_motion import (
    field_mean,
    local_bumps,
    local_displacement_px,
    local_field_modes,
    local_time_profile,
    true_local_displacement,
)
from .simulated_specimen import BLOB_SIGMA_RANGE_PX, BLOB_TRUNCATION_SIGMAS, blob_table, damage_density, render_density
from .simulated_trajectory import global_trajectory
from .simulated_transmission import _density_to_counts, kernel_constants, solve_transmission
from .simulation_spec import DTYPE_MAX_COUNT, SHIFT_CONVENTION, SimulatedMovie, SimulationSpec
from .simulation_truth import oracle_correction, quarter_band_frc, truth_dict, write_simulation

__all__ = [
    "SimulationSpec",
    "SimulatedMovie",
    "simulate_movie",
    "render_expected",
    "local_displacement_px",
    "true_local_displacement",
    "oracle_correction",
    "quarter_band_frc",
    "local_time_profile",
    "truth_dict",
    "write_simulation",
    "SHIFT_CONVENTION",
]


def render_expected(sim: SimulatedMovie, frame_index: int) -> np.ndarray:
    """Noiseless, gain-free expected counts (ny, nx) float32 of the specimen as it is in frame ``frame_index``."""
    n = sim.spec.n_frames
    if not -n <= frame_index < n:
        raise IndexError(f"frame {frame_index} of a {n}-frame simulation")
    buf = np.empty((sim.spec.ny, sim.spec.nx), dtype=np.float64)
    render_density(sim, int(frame_index) % n, buf)
    _density_to_counts(buf, *kernel_constants(sim))
    return buf.astype(np.float32)


def ideal_image(sim: SimulatedMovie) -> np.ndarray:
    """The ideal image: ``render_expected`` at the middle frame (n_frames // 2), (ny, nx) float32."""
    return render_expected(sim, sim.middle_frame)


def simulate_movie(spec: SimulationSpec, *, threads: int = 0) -> SimulatedMovie:
    """Simulate one movie (see the module docstring for the model).

    ``threads``: frames rendered concurrently (0 = all cores). The result does not depend on it.
    Steps: the motion and the specimen (:func:`_specimen_in_motion`), the transmission constants and
    the ideal image (:func:`_with_transmission`), the detector, every frame's Poisson counts
    (:func:`_render_frames`), then hot pixels and the dead column.
    """
    seeds = np.random.SeedSequence(spec.seed).spawn(7)  # the first six as before: same seed, same movie
    rng_specimen, rng_traj, rng_local, rng_gain, rng_hot, _, rng_bumps = (np.random.default_rng(s) for s in seeds)
    counts_seed = int(seeds[5].generate_state(2, dtype=np.uint64)[0])

    sim = _specimen_in_motion(spec, rng_traj=rng_traj, rng_local=rng_local, rng_bumps=rng_bumps,
                              rng_specimen=rng_specimen)
    sim, ideal = _with_transmission(sim)
    sens, true_gain, gain = detector_gains(spec, rng_gain)
    frames = np.empty((spec.n_frames, spec.ny, spec.nx), dtype=np.dtype(spec.dtype))
    max_count = DTYPE_MAX_COUNT[spec.dtype]
    n_clipped = _render_frames(sim, sens, counts_seed, frames, threads=threads)
    hot_xy, n_hot_clipped = add_defects(frames, spec, rng_hot, max_count)
    n_clipped += n_hot_clipped
    if n_clipped:
        warnings.warn(
            f"{n_clipped} pixel counts exceeded {spec.dtype} and were clipped; use dtype='uint16'",
            RuntimeWarning,
            stacklevel=2,
        )
    return dataclasses.replace(
        sim, frames=frames, gain=gain, true_gain=true_gain, hot_pixels_xy=hot_xy, ideal=ideal,
        n_clipped_counts=n_clipped,
    )


def _specimen_in_motion(spec: SimulationSpec, *, rng_traj: np.random.Generator, rng_local: np.random.Generator,
                        rng_bumps: np.random.Generator, rng_specimen: np.random.Generator) -> SimulatedMovie:
    """A provisional movie (no frames, no gain, transmission constants 0) that carries the geometry
    for rendering: the global trajectory, the local field, and the blob table with a margin wide
    enough that the motion never uncovers an empty border."""
    shifts, traj_info = global_trajectory(spec, rng_traj)
    shifts[0] = 0.0
    modes, offset = local_field_modes(spec, rng_local)
    bumps = local_bumps(spec, rng_bumps)
    if bumps.shape[0]:
        offset = field_mean(modes, bumps, spec)
    max_motion = float(np.abs(shifts).max(initial=0.0)) + spec.local_amplitude_px
    if bumps.shape[0]:
        max_motion += spec.local_bump_amplitude_px * min(bumps.shape[0], 4)
    margin = math.ceil(max_motion + BLOB_TRUNCATION_SIGMAS * BLOB_SIGMA_RANGE_PX[1] + 2)
    blobs = blob_table(spec, margin, rng_specimen)
    sim = SimulatedMovie(
        spec=spec, frames=np.empty((0, 0, 0), np.uint8), gain=np.empty((0, 0), np.float32),
        true_gain=np.empty((0, 0), np.float32), shifts_px=shifts, hot_pixels_xy=np.empty((0, 2), np.int64),
        dead_column=spec.dead_column, ideal=np.empty((0, 0), np.float32), blobs=blobs, local_modes=modes,
        local_offset_px=offset, blob_local_px=np.zeros((blobs.shape[0], 2)), contrast_scale=0.0,
        density_offset=0.0, trajectory_info=traj_info, local_bumps=bumps,
    )
    if spec.has_local_motion:
        u, v = local_displacement_px(sim, blobs[:, 0], blobs[:, 1], spec.n_frames - 1)  # a(t) = 1
        sim = dataclasses.replace(sim, blob_local_px=np.column_stack([u, v]))
    return sim


def _with_transmission(sim: SimulatedMovie) -> tuple[SimulatedMovie, np.ndarray]:
    """``sim`` with the transmission constants ``c`` and ``beta`` solved at the middle frame, and
    the ideal image there: expected counts ``(ny, nx)`` float32."""
    spec = sim.spec
    density = render_density(sim, spec.n_frames // 2, np.empty((spec.ny, spec.nx), dtype=np.float64))
    c, beta = solve_transmission(density, spec.contrast_rms)
    sim = dataclasses.replace(sim, contrast_scale=c, density_offset=beta)
    _density_to_counts(density, *kernel_constants(sim))
    return sim, density.astype(np.float32)


def _render_frames(sim: SimulatedMovie, sens: np.ndarray, counts_seed: int, frames: np.ndarray, *, threads: int) -> int:
    """Every frame's Poisson counts into ``frames`` ``(n_frames, ny, nx)`` (``sens`` ``(ny, nx)`` the
    detector's sensitivity), ``threads`` frames at a time (0 = all cores); returns the counts clipped."""
    spec = sim.spec
    constants = kernel_constants(sim)
    max_count = DTYPE_MAX_COUNT[spec.dtype]
    n_workers = min(spec.n_frames, threads if threads > 0 else _available_cores())
    per_thread = threading.local()

    def one_frame(t: int) -> int:
        buf = getattr(per_thread, "buf", None)
        if buf is None:
            buf = per_thread.buf = np.empty((spec.ny, spec.nx), dtype=np.float64)
        render_density(sim, t, buf)
        if spec.radiation_damage:
            damage_density(buf, spec, t)
        return int(_poisson_frame(buf, *constants, sens, frame_key(counts_seed, t), frames[t], max_count))

    if n_workers <= 1:
        return sum(one_frame(t) for t in range(spec.n_frames))
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        return sum(pool.map(one_frame, range(spec.n_frames)))


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
